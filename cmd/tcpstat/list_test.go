package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
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
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"tcpstat", "list", "--listen"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "unknown flag --listen (did you mean --listening?)") {
		t.Errorf("list --listen: %v, want a suggestion", err)
	}
}

func TestListHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"tcpstat", "list", "--help"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-tanp", "1. Sockets (default)", "3. Net-to-media table   list --arp", "7. Routing tables", "9. DHCP",
		"on Linux -p is --programs", "-f flags:[+-]LETTERS"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("list --help lacks %q:\n%s", want, out.String())
		}
	}
}

// TestListRuns lists through the CLI and wants the rows of a listener and
// an established pair the test holds on loopback.
func TestListRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to list every socket")
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"tcpstat", "list", "-tan"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if !strings.HasPrefix(text, "Active Internet connections (servers and established)\nProto Recv-Q") {
		t.Errorf("unexpected header:\n%s", text)
	}
	server, client := ln.Addr().String(), c.LocalAddr().String()
	want := []string{
		fmt.Sprintf("tcp 0 0 %s 0.0.0.0:* LISTEN", server),
		fmt.Sprintf("tcp 0 0 %s %s ESTABLISHED", server, client),
		fmt.Sprintf("tcp 0 0 %s %s ESTABLISHED", client, server),
	}
	var got []string
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		// Both ends must be the test's: a client port is reused by
		// other tests' connections (in TIME_WAIT) to other ports.
		ours := func(a string) bool { return a == server || a == client }
		if len(f) == 6 && ours(f[3]) && (ours(f[4]) || f[4] == "0.0.0.0:*") {
			got = append(got, strings.Join(f, " "))
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("list -tan rows of the test's sockets (-want +got):\n%s", diff)
	}
}
