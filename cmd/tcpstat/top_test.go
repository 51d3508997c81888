package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestTopBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"top", "-b", "--sort", "cpu"}, `unknown sort key "cpu"`},
		{[]string{"top", "--json"}, "--json needs -b"},
		{[]string{"top", "-b", "-d", "0"}, "want a positive number of seconds"},
		{[]string{"top", "-b", "-n", "-1"}, "want 0 or more"},
		{[]string{"top"}, "use -b for batch output"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), append([]string{"tcpstat"}, tc.args...), &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// topFrame is the part of a --json refresh the tests read.
type topFrame struct {
	Tracing     bool `json:"tracing"`
	Stale       bool `json:"stale"`
	Connections []struct {
		Cookie uint64  `json:"cookie"`
		State  string  `json:"state"`
		Saddr  string  `json:"saddr"`
		Sport  uint16  `json:"sport"`
		PID    *uint32 `json:"pid"`
	} `json:"connections"`
}

func readFrames(t *testing.T, out []byte) []topFrame {
	t.Helper()
	var frames []topFrame
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var f topFrame
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatalf("refresh %d is not JSON: %v", len(frames)+1, err)
		}
		frames = append(frames, f)
	}
	return frames
}

// TestTopBatchJSON prints two refreshes and finds the test's own listener
// in them, with this process as its owner.
func TestTopBatchJSON(t *testing.T) {
	ln, err := net.Listen("tcp", "127.80.201.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := netip.MustParseAddrPort(ln.Addr().String()).Port()
	var stdout, stderr bytes.Buffer
	args := []string{"tcpstat", "top", "-b", "-n", "2", "-d", "0.2", "--json", "--filter", "src 127.80.201.1"}
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("%v (stderr %q)", err, stderr.String())
	}
	frames := readFrames(t, stdout.Bytes())
	if len(frames) != 2 {
		t.Fatalf("%d refreshes, want 2", len(frames))
	}
	for i, f := range frames {
		if f.Tracing != (os.Geteuid() == 0) || f.Stale {
			t.Errorf("refresh %d: tracing %v stale %v; want tracing only as root, not stale", i+1, f.Tracing, f.Stale)
		}
		if len(f.Connections) != 1 {
			t.Fatalf("refresh %d: %d rows for 127.80.201.1, want the listener alone", i+1, len(f.Connections))
		}
		c := f.Connections[0]
		if c.State != "LISTEN" || c.Sport != port || c.Cookie == 0 {
			t.Errorf("refresh %d: %+v, want a LISTEN row on port %d", i+1, c, port)
		}
		if os.Geteuid() == 0 && (c.PID == nil || *c.PID != uint32(os.Getpid())) {
			t.Errorf("refresh %d: owner %v, want pid %d", i+1, c.PID, os.Getpid())
		}
	}
}

// TestTopWithoutPrivileges runs top as nobody: no tracer, so it polls
// dumps, says so, and still lists sockets.
func TestTopWithoutPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a process as another user")
	}
	cmd := tcpstatCommand(t, "top", "-b", "-n", "1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("top as nobody: %v; stderr:\n%s", err, stderr.String())
	}
	first, _, _ := strings.Cut(string(out), "\n")
	if !strings.Contains(first, "polling") || !strings.Contains(first, "no tracer") {
		t.Errorf("header does not say it polls without a tracer:\n%s", first)
	}
}
