package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
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
	Tracing          bool     `json:"tracing"`
	Stale            bool     `json:"stale"`
	OwnersUnreadable int      `json:"owners_unreadable"`
	Connections      []topRow `json:"connections"`
}

type topRow struct {
	State       string  `json:"state"`
	Saddr       string  `json:"saddr"`
	Sport       uint16  `json:"sport"`
	Daddr       string  `json:"daddr"`
	Dport       uint16  `json:"dport"`
	PID         *uint32 `json:"pid"`
	Comm        *string `json:"comm"`
	OwnerFormer bool    `json:"owner_former"`
	OwnerSource *string `json:"owner_source"`
	Cookie      uint64  `json:"cookie"`
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

// ownRow is a row of the test's own sockets, as the tests compare them.
type ownRow struct {
	State         string
	Local, Remote string
	PID           uint32 // 0 when the owner is unknown
	Source        string
}

func addr(a string, port uint16) string {
	return netip.AddrPortFrom(netip.MustParseAddr(a), port).String()
}

// TestTopBatchJSON prints two refreshes and finds the test's own listener
// and connection in them, with this process as their owner, found by the
// owner scan (they are older than top).
func TestTopBatchJSON(t *testing.T) {
	ln, err := net.Listen("tcp", "127.80.201.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 80, 201, 2)}}
	client, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	srv, cli := ln.Addr().String(), client.LocalAddr().String()
	var stdout, stderr bytes.Buffer
	args := []string{"tcpstat", "top", "-b", "-n", "2", "-d", "0.2", "--json", "--filter", "src " + srv + " or dst " + srv}
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("%v (stderr %q)", err, stderr.String())
	}
	frames := readFrames(t, stdout.Bytes())
	if len(frames) != 2 {
		t.Fatalf("%d refreshes, want 2", len(frames))
	}
	me := uint32(os.Getpid())
	want := []ownRow{ // sorted by local, then remote address
		{"LISTEN", srv, "0.0.0.0:0", me, "snapshot"},
		{"ESTABLISHED", srv, cli, me, "snapshot"},
		{"ESTABLISHED", cli, srv, me, "snapshot"},
	}
	for i, f := range frames {
		if f.Tracing != (os.Geteuid() == 0) || f.Stale {
			t.Errorf("refresh %d: tracing %v stale %v; want tracing only as root, not stale", i+1, f.Tracing, f.Stale)
		}
		var got []ownRow
		for _, c := range f.Connections {
			r := ownRow{State: c.State, Local: addr(c.Saddr, c.Sport), Remote: addr(c.Daddr, c.Dport)}
			if c.PID != nil && c.OwnerSource != nil && !c.OwnerFormer {
				r.PID, r.Source = *c.PID, *c.OwnerSource
			}
			if c.Cookie == 0 {
				t.Errorf("refresh %d: %+v has no cookie", i+1, c)
			}
			got = append(got, r)
		}
		slices.SortFunc(got, func(a, b ownRow) int { return strings.Compare(a.Local+a.Remote, b.Local+b.Remote) })
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("refresh %d: rows for %s (-want +got):\n%s", i+1, srv, diff)
		}
	}
}

// TestTopWithoutPrivileges runs top as nobody: no tracer, so it polls
// dumps, says so, still lists sockets, and says that the owner scan could
// not read other users' processes, whose sockets show no owner.
func TestTopWithoutPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a process as another user")
	}
	ln, err := net.Listen("tcp", "127.80.202.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cmd := tcpstatCommand(t, "top", "-b", "-n", "1", "--filter", "src 127.80.202.1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("top as nobody: %v; stderr:\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) < 5 {
		t.Fatalf("top printed %d lines:\n%s", len(lines), out)
	}
	first := lines[0]
	if !strings.Contains(first, "polling") || !strings.Contains(first, "no tracer") {
		t.Errorf("header does not say it polls without a tracer:\n%s", first)
	}
	if !strings.Contains(first, "PARTIAL OWNERS: ") || !strings.Contains(first, " processes unreadable") {
		t.Errorf("header does not say the owner scan was partial:\n%s", first)
	}
	// The column header, then the listener alone, owned by a process
	// nobody cannot read.
	rows := lines[4:]
	if len(rows) != 2 || strings.Fields(rows[0])[0] != "PID" {
		t.Fatalf("want the column header and one row:\n%s", strings.Join(rows, "\n"))
	}
	f := strings.Fields(rows[1])
	want := []string{"-", "-", ln.Addr().String(), "0.0.0.0:0", "LISTEN"}
	if len(f) != 7 || !slices.Equal(f[:5], want) {
		t.Errorf("row %q, want fields %q, a time and a cookie", rows[1], want)
	}
}
