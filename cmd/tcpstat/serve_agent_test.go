package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeInAgent runs serve as a build without the metrics server does:
// the process hands its arguments to tcpstat-agent (here another copy of
// this test binary, which has the server), found beside it or in PATH. The
// bad --metrics.by can only be refused by the agent's serve; without an
// agent the error says where it was looked for.
func TestServeInAgent(t *testing.T) {
	const refused = `--metrics.by "bogus": want netns or pod`
	for _, tc := range []struct {
		name           string
		beside, inPATH bool
		want           string
	}{
		{"beside", true, false, refused},
		{"in PATH", false, true, refused},
		{"missing", false, false, "tcpstat-agent, which is neither beside it nor in PATH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, path := t.TempDir(), t.TempDir()
			bin := copySelf(t, filepath.Join(dir, "tcpstat"))
			if tc.beside {
				copySelf(t, filepath.Join(dir, agentName))
			}
			if tc.inPATH {
				copySelf(t, filepath.Join(path, agentName))
			}
			cmd := exec.Command(bin, "serve", "--metrics.by", "bogus")
			cmd.Env = append(os.Environ(), execAgentFirst+"=1", runAsTcpstat+"=1", "PATH="+path)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("exit %v, want status 1; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) || strings.Count(string(out), "\n") != 1 {
				t.Fatalf("output:\n%s\nwant one line with %q", out, tc.want)
			}
		})
	}
}
