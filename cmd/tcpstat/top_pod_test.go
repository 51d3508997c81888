package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
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
	sh := startPodShell(t, "top-test-0", uid, cid, "127.80.211.1")
	logs, srv := sh.logs, sh.srv
	sh.connect() // A

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
	sh.connect() // B
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
		if f := strings.Fields(line); len(f) >= 4 && strings.Contains(line, "pid="+strconv.Itoa(sh.cmd.Process.Pid)+",") {
			locals = append(locals, f[3])
		}
	}
	if len(locals) != 2 {
		t.Fatalf("ss shows %d connections of the shell to %s, want 2:\n%s", len(locals), srv, ss)
	}
	pid := uint32(sh.cmd.Process.Pid)
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

// podShell is a shell in a kubelet-shaped cgroup made by the test
// (containerd, systemd driver), whose pod /var/log/pods (a fake one,
// logs) names shop/NAME, and a listener of the test's on srv.
type podShell struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	said  *bufio.Reader
	logs  string
	srv   *net.TCPAddr
	t     *testing.T
}

func startPodShell(t *testing.T, name, uid, cid, ip string) *podShell {
	t.Helper()
	mount := cgroup2Mount(t)
	top := filepath.Join(mount, "tcpstat-test-"+name+"-"+strconv.Itoa(os.Getpid())+".slice")
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
	sh := &podShell{logs: t.TempDir(), t: t}
	if err := os.Mkdir(filepath.Join(sh.logs, "shop_"+name+"_"+uid), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
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
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range accepted {
			c.Close()
		}
	})
	sh.srv = ln.Addr().(*net.TCPAddr)
	// The shell joins the cgroup, then makes a connection for each line
	// it reads, holding them all until its stdin closes.
	sh.cmd = exec.Command("bash", "-c", `echo $$ > "$1/cgroup.procs" || exit 1
while read -r _; do exec {fd}<>"/dev/tcp/$2/$3" && echo connected; done`, "bash", leaf, ip, strconv.Itoa(sh.srv.Port))
	sh.cmd.Stderr = os.Stderr
	if sh.stdin, err = sh.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := sh.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sh.stdin.Close()
		sh.cmd.Process.Kill()
		sh.cmd.Wait()
	})
	sh.said = bufio.NewReader(stdout)
	return sh
}

// connect has the shell make one more connection to the listener.
func (sh *podShell) connect() {
	sh.t.Helper()
	fmt.Fprintln(sh.stdin, "connect")
	if line, err := sh.said.ReadString('\n'); err != nil || line != "connected\n" {
		sh.t.Fatalf("shell said %q (%v), want connected", line, err)
	}
}

// TestServeByPod: serve --metrics.by pod counts the connections of a
// process in a pod under the pod's name: one made before serve started
// (its owner found by the /proc scan, by pid) and one after (the tracer's
// owner, by cgroup id).
func TestServeByPod(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the BPF program, makes a cgroup")
	}
	sh := startPodShell(t, "serve-test-0", "8d1e0f9a-7b6c-4d5e-9f3a-2b1c0d9e8f7a",
		"6e5d4c3b2a1908f7e6d5c4b3a2918070f6e5d4c3b2a1908f7e6d5c4b3a291807", "127.80.211.2")
	sh.connect()
	const listen = "127.80.211.2:9981"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"tcpstat", "serve", "--web.listen-address", listen, "--metrics.by", "pod", "--pod-log-dir", sh.logs}, &out, &errOut)
	}()
	series := `tcpstat_connections{pod="serve-test-0",pod_namespace="shop",state="ESTABLISHED"} `
	value := func() string {
		resp, err := http.Get("http://" + listen + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, series); ok {
				return v
			}
		}
		return "none"
	}
	wait := func(want string) {
		t.Helper()
		var got string
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			select {
			case err := <-done:
				t.Fatalf("serve ended: %v (stderr %q)", err, errOut.String())
			default:
			}
			if got = value(); got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s is %q, want %s (stderr %q)", series, got, want, errOut.String())
			}
		}
	}
	wait("1")
	sh.connect()
	wait("2")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestListPod: list takes --pod-log-dir, as the other views do, and its
// pod condition selects the sockets of the pod's processes only (not the
// listener's end, held outside the pod).
func TestListPod(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a cgroup, reads every process's descriptors")
	}
	sh := startPodShell(t, "list-test-0", "2f3e4d5c-6b7a-4981-8f7e-6d5c4b3a2918",
		"0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9", "127.80.211.3")
	sh.connect()
	list := func(args ...string) string {
		var out, errOut syncBuffer
		if err := run(context.Background(), append([]string{"tcpstat", "list", "-tanp"}, args...), &out, &errOut); err != nil {
			t.Fatalf("list %q: %v (stderr %q)", args, err, errOut.String())
		}
		return out.String()
	}
	rows := func(text string) []string {
		var out []string
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, "tcp") {
				out = append(out, l)
			}
		}
		return out
	}
	got := rows(list("--pod-log-dir", sh.logs, "pod shop/list-test-0"))
	want := fmt.Sprintf("127.80.211.3:%d ESTABLISHED", sh.srv.Port)
	if len(got) != 1 || !strings.Contains(strings.Join(strings.Fields(got[0])[4:6], " "), want) || !strings.Contains(got[0], "/bash") {
		t.Errorf("list 'pod shop/list-test-0': rows %q, want the shell's one connection to %s", got, want)
	}
	// Without the pod logs the pod has no name: nothing matches.
	if got := rows(list("--pod-log-dir", t.TempDir(), "pod shop/list-test-0")); len(got) != 0 {
		t.Errorf("list with empty pod logs: rows %q, want none", got)
	}
}
