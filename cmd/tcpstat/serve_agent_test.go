package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeInAgent runs serve as a build without the metrics server does:
// the process hands its arguments to tcpstat-agent (here another copy of
// this test binary, which has the server), found beside it or in PATH. The
// bad --metrics.by can only be refused by the agent's serve; without an
// agent the error says where it was looked for, and an agent that would
// hand over again says what it is instead.
func TestServeInAgent(t *testing.T) {
	const refused = `--metrics.by "bogus": want netns or pod`
	for _, tc := range []struct {
		name           string
		beside, inPATH bool
		how            string // the test hook's mode: "always" makes the agent hand over too
		want           string
	}{
		{"beside", true, false, "1", refused},
		{"in PATH", false, true, "1", refused},
		{"missing", false, false, "1", "tcpstat-agent, which is neither beside it nor in PATH"},
		{"a directory of that name beside", false, false, "1", "neither beside it nor in PATH"},
		{"an agent without the server", true, false, "always", "leaves the metrics server out too"},
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
			if strings.HasPrefix(tc.name, "a directory") {
				if err := os.Mkdir(filepath.Join(dir, agentName), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			// A hand-over that loops would run until killed.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "serve", "--metrics.by", "bogus")
			cmd.Env = append(os.Environ(), execAgentFirst+"="+tc.how, runAsTcpstat+"=1", "PATH="+path)
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
