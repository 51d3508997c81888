package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpstat/tcpstat/internal/container"
)

// podRow is a --json row's owner and container fields.
type podRow struct {
	State        string  `json:"state"`
	Saddr        string  `json:"saddr"`
	Sport        uint16  `json:"sport"`
	Daddr        string  `json:"daddr"`
	Dport        uint16  `json:"dport"`
	PID          *uint32 `json:"pid"`
	Comm         *string `json:"comm"`
	OwnerSource  *string `json:"owner_source"`
	Container    string  `json:"container"`
	Pod          string  `json:"pod"`
	PodUID       string  `json:"pod_uid"`
	PodNamespace string  `json:"pod_namespace"`
}

// podConn is what the test compares of a row.
type podConn struct {
	Local, Remote, State, Comm, Source string
	PID                                uint32
	Container, Pod, PodUID, PodNS      string
}

// TestTopPod puts a shell in a kubelet-shaped cgroup the test makes
// (containerd, systemd driver) with the pod's name in a fake
// /var/log/pods, and has it connect to the test's own listener once
// before top starts (its owner then comes from the /proc scan, by pid)
// and once while top runs (from the tracer, by cgroup id). `top -b
// --json` with the filter `pod shop/top-test-0` must show exactly those
// two connections, with the shell as owner and the pod and container
// named; `top -b` on the listener's address shows the POD column, with
// the pod for the shell's side and the test's own cgroup for the other.
func TestTopPod(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the BPF program, makes a cgroup")
	}
	const (
		cid = "5d4c3b2a19f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170f1e2"
		uid = "7c0d9e8f-6a5b-4c3d-8e2f-1a0b9c8d7e6f"
	)
	mount := cgroup2Mount(t)
	top := filepath.Join(mount, "tcpstat-test-top-"+strconv.Itoa(os.Getpid())+".slice")
	leaf := filepath.Join(top, "kubepods.slice", "kubepods-besteffort.slice",
		"kubepods-besteffort-pod"+strings.ReplaceAll(uid, "-", "_")+".slice", "cri-containerd-"+cid+".scope")
	if err := os.MkdirAll(leaf, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for d := leaf; strings.HasPrefix(d, top); d = filepath.Dir(d) {
			os.Remove(d)
		}
	})
	logs := t.TempDir()
	if err := os.Mkdir(filepath.Join(logs, "shop_top-test-0_"+uid), 0o755); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.80.211.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var (
		mu       sync.Mutex
		accepted []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range accepted {
			c.Close()
		}
	})
	srv := ln.Addr().(*net.TCPAddr)

	// The shell joins the cgroup, connects (A), and on each line it reads
	// connects again (B), holding both until its stdin closes.
	sh := exec.Command("bash", "-c", `echo $$ > "$1/cgroup.procs" || exit 1
exec 3<>/dev/tcp/127.80.211.1/$2 && echo A
read -r _ && exec 4<>/dev/tcp/127.80.211.1/$2 && echo B
read -r _`, "bash", leaf, strconv.Itoa(srv.Port))
	sh.Stderr = os.Stderr
	stdin, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := sh.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		sh.Process.Kill()
		sh.Wait()
	})
	said := bufio.NewReader(stdout)
	expect := func(word string) {
		t.Helper()
		if line, err := said.ReadString('\n'); err != nil || line != word+"\n" {
			t.Fatalf("shell said %q (%v), want %s", line, err, word)
		}
	}
	expect("A")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"tcpstat", "top", "-b", "--json", "-d", "0.2", "--pod-log-dir", logs, "pod shop/top-test-0"}, &out, &errOut)
	}()
	// rows reads the refreshes printed so far and returns the last one's
	// rows, once there is one.
	rows := func() ([]podConn, bool) {
		lines := strings.Split(out.String(), "\n")
		if len(lines) < 2 {
			return nil, false
		}
		var frame struct {
			Connections []podRow `json:"connections"`
		}
		last := lines[len(lines)-2] // the text ends with a newline
		if err := json.Unmarshal([]byte(last), &frame); err != nil {
			t.Fatalf("refresh is not JSON: %v: %s", err, last)
		}
		var got []podConn
		for _, c := range frame.Connections {
			r := podConn{Local: addr(c.Saddr, c.Sport), Remote: addr(c.Daddr, c.Dport), State: c.State,
				Container: c.Container, Pod: c.Pod, PodUID: c.PodUID, PodNS: c.PodNamespace}
			if c.PID != nil {
				r.PID, r.Comm, r.Source = *c.PID, *c.Comm, *c.OwnerSource
			}
			got = append(got, r)
		}
		slices.SortFunc(got, func(a, b podConn) int { return strings.Compare(a.Source, b.Source) })
		return got, true
	}
	waitRows := func(n int) []podConn {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			select {
			case err := <-done:
				t.Fatalf("top ended: %v (stderr %q)", err, errOut.String())
			default:
			}
			if got, ok := rows(); ok && len(got) >= n {
				return got
			}
			if time.Now().After(deadline) {
				got, _ := rows()
				t.Fatalf("no refresh with %d rows; the last has %+v (stderr %q)", n, got, errOut.String())
			}
		}
	}
	waitRows(1)
	fmt.Fprintln(stdin, "connect")
	expect("B")
	got := waitRows(2)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("top: %v", err)
	}
	// The shell's local addresses, from the kernel's socket list.
	ss, err := exec.Command("ss", "-Htnp", "dst", srv.String()).Output()
	if err != nil {
		t.Fatal(err)
	}
	var locals []string
	for _, line := range strings.Split(strings.TrimSpace(string(ss)), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && strings.Contains(line, "pid="+strconv.Itoa(sh.Process.Pid)+",") {
			locals = append(locals, f[3])
		}
	}
	if len(locals) != 2 {
		t.Fatalf("ss shows %d connections of the shell to %s, want 2:\n%s", len(locals), srv, ss)
	}
	pid := uint32(sh.Process.Pid)
	in := func(local, source string) podConn {
		return podConn{Local: local, Remote: srv.String(), State: "ESTABLISHED", Comm: "bash", Source: source, PID: pid,
			Container: cid, Pod: "top-test-0", PodUID: uid, PodNS: "shop"}
	}
	// A is older than top: its owner is the /proc scan's; B's is the
	// tracer's, seen at connect.
	want := []podConn{in("", "snapshot"), in("", "syscall")}
	for i := range got {
		if i < len(want) && slices.Contains(locals, got[i].Local) {
			want[i].Local = got[i].Local
		}
	}
	if diff := cmp.Diff(want, got); diff != "" || want[0].Local == want[1].Local {
		t.Errorf("top with pod shop/top-test-0 (-want +got):\n%s(the shell's connections: %v)", diff, locals)
	}

	// The text table: the POD column, the pod for the shell's side, the
	// test's own cgroup's name (none on a host) for the listener's.
	var text, textErr bytes.Buffer
	args := []string{"tcpstat", "top", "-b", "-n", "1", "--pod-log-dir", logs, "--filter", "src " + srv.String() + " or dst " + srv.String()}
	if err := run(context.Background(), args, &text, &textErr); err != nil {
		t.Fatalf("%v (stderr %q)", err, textErr.String())
	}
	self := container.NewResolver(container.Options{PodLogDir: logs}).LookupPID(uint32(os.Getpid())).Short()
	if self == "" {
		self = "-"
	}
	lines := strings.Split(text.String(), "\n")
	head := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), "PID ") })
	if head < 0 || !slices.Equal(strings.Fields(lines[head])[:3], []string{"PID", "COMM", "POD"}) {
		t.Fatalf("no POD column:\n%s", text.String())
	}
	pods := map[string]string{} // local → pod
	for _, l := range lines[head+1:] {
		if f := strings.Fields(l); len(f) >= 5 {
			pods[f[3]+" "+f[4]] = f[2]
		}
	}
	for _, local := range locals {
		if p := pods[local+" "+srv.String()]; p != "shop/top-test-0" {
			t.Errorf("shell's %s: POD %q, want shop/top-test-0\n%s", local, p, text.String())
		}
		if p := pods[srv.String()+" "+local]; p != self {
			t.Errorf("listener's side of %s: POD %q, want %q (the test's own)\n%s", local, p, self, text.String())
		}
	}
	if p := pods[srv.String()+" 0.0.0.0:0"]; p != self {
		t.Errorf("listener: POD %q, want %q\n%s", p, self, text.String())
	}
}
