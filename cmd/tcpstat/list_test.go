package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestListUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"-tanz"}, {"-s", "-r"}, {"--state", "sideways"}, {"-P"}} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"tcpstat", "list"}, args...), &out, &errOut)
		var exit cli.ExitCoder
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("list %q: err = %v, want a usage error with exit code 2", args, err)
			continue
		}
		if !strings.Contains(err.Error(), "see tcpstat list --help") {
			t.Errorf("list %q: %q does not point to --help", args, err)
		}
	}
}

func TestListHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"tcpstat", "list", "--help"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "-tanp") {
		t.Errorf("list --help does not describe combined flags:\n%s", out.String())
	}
}

func TestListRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to list every socket")
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"tcpstat", "list", "-tan"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "Active Internet connections (servers and established)\nProto Recv-Q") {
		t.Errorf("unexpected output:\n%s", out.String())
	}
}
