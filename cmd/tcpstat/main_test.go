package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/testenv"
)

// syncBuffer is a bytes.Buffer safe to read while a command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"watch", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"watch", "-4", "-6"}, "-4 and -6 exclude each other"},
		{[]string{"watch", "--port", "70000"}, "--port 70000"},
		{[]string{"watch", "--port", "http"}, "invalid value"},
		{[]string{"watch", "extra"}, `filter: unknown condition "extra" at column 1`},
		{[]string{"watch", "state", "establised"}, `filter: unknown state "establised" at column 7; did you mean "established"?`},
		{[]string{"watch", "--ring-size", "1000"}, "power of two"},
		{[]string{"doctor", "extra"}, "doctor takes no arguments"},
		{[]string{"frobnicate"}, "unknown command"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), append([]string{"tcpstat"}, tc.args...), &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q (stderr %q)", err, tc.want, stderr.String())
			}
		})
	}
}

// TestWithoutPrivileges runs tcpstat as nobody: one readable message that
// names the capabilities, exit status 1, no stack trace.
func TestWithoutPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a process as another user")
	}
	cmd := tcpstatCommand(t, "watch")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1; stderr:\n%s", err, stderr.String())
	}
	msg := stderr.String()
	for _, want := range []string{"CAP_BPF", "CAP_PERFMON", "tcpstat list"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message does not mention %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "goroutine") || strings.Count(msg, "\n") != 1 {
		t.Errorf("want one line, no stack trace:\n%s", msg)
	}
}

// waitReady waits for watch's ready file: the programs are attached.
func waitReady(t *testing.T, path string, stderr *syncBuffer) {
	t.Helper()
	// Loading the BPF program takes seconds under emulation (the kernel matrix).
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ready file after 60 s; stderr: %s", stderr.String())
		}
	}
}

// seccompExec installs, on this thread, a filter refusing bpf() with EPERM
// and execs args under it (the filter is kept across exec and setuid).
func seccompExec(args []string) error {
	runtime.LockOSThread()
	path, err := exec.LookPath(args[0])
	if err != nil {
		return err
	}
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_BPF},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0); err != nil {
		return fmt.Errorf("install the seccomp filter: %w", err)
	}
	return syscall.Exec(path, args, os.Environ())
}

// runAsTcpstat makes this test binary act as tcpstat: tests run it in a
// child process (in test VMs there is no Go toolchain to build one).
const runAsTcpstat = "TCPSTAT_TEST_RUN_MAIN"

// execUnderSeccomp makes this test binary install a seccomp filter that
// answers bpf() with EPERM, as some container runtimes' default profiles do
// without CAP_SYS_ADMIN, and exec its arguments under it.
const execUnderSeccomp = "TCPSTAT_TEST_EXEC_UNDER_SECCOMP"

// execAgentFirst makes this test binary hand its arguments to
// tcpstat-agent, as serve does in a build without the metrics server
// ("1", or "always" for the agent too).
const execAgentFirst = "TCPSTAT_TEST_EXEC_AGENT"

func TestMain(m *testing.M) {
	if os.Getenv(execUnderSeccomp) == "1" {
		os.Unsetenv(execUnderSeccomp)
		if err := seccompExec(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(127)
		}
	}
	if how := os.Getenv(execAgentFirst); how != "" {
		// As a build without the metrics server runs serve; "always" makes
		// the agent such a build too.
		if how != "always" {
			os.Unsetenv(execAgentFirst)
		}
		fmt.Fprintf(os.Stderr, "tcpstat: %v\n", execAgent(os.Args))
		os.Exit(1)
	}
	if os.Getenv(runAsTcpstat) == "1" {
		os.Args = append([]string{"tcpstat"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// tcpstatCommand is a tcpstat process: this test binary, copied where every
// user can run it.
func tcpstatCommand(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	bin := copySelf(t, filepath.Join(t.TempDir(), "tcpstat"))
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), runAsTcpstat+"=1")
	return cmd
}

// copySelf copies this test binary to path, where every user can run it.
func copySelf(t *testing.T, path string) string {
	t.Helper()
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, self, 0o755); err != nil {
		t.Fatal(err)
	}
	for dir := filepath.Dir(path); dir != os.TempDir(); dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// TestWatchEndsOnSIGTERM: a signal ends watch cleanly: what was read is
// printed, the summary follows, the exit status is 0.
func TestWatchEndsOnSIGTERM(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the BPF program")
	}
	const port = "29161"
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := tcpstatCommand(t, "watch", "--json", "--port", port, "--ready-file", ready)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitReady(t, ready, &stderr)
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	// No waiting for the output: events read before the signal must be
	// printed before the process exits.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v; stderr: %s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		`"saddr":"127.0.0.1","sport":29161,"daddr":"0.0.0.0","dport":0,"old_state":"CLOSE","new_state":"LISTEN"`,
		`"saddr":"127.0.0.1","sport":29161,"daddr":"0.0.0.0","dport":0,"old_state":"LISTEN","new_state":"CLOSE"`,
	} {
		if strings.Count(out, want) != 1 {
			t.Errorf("output has not exactly one %s:\n%s", want, out)
		}
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, `{"type":"summary",`) || !strings.Contains(last, `,"lost":0,`) {
		t.Errorf("last line is not a summary without loss: %s", last)
	}
	if !summaryLine.MatchString(stderr.String()) || strings.Contains(stderr.String(), "output closed") {
		t.Errorf("stderr %q, want exactly one summary line without loss", stderr.String())
	}
}

func TestWatchJSON(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the BPF program")
	}
	const port = "29160"
	ready := filepath.Join(t.TempDir(), "ready")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"tcpstat", "watch", "--json", "--port", port, "--ready-file", ready}, &stdout, &stderr)
	}()
	waitReady(t, ready, &stderr)
	oneConnection(t, "127.0.0.1:"+port)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stdout.String(), `"old_state":"LISTEN","new_state":"CLOSE"`); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("listener's CLOSE never printed:\n%s", stdout.String())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch: %v", err)
	}

	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	types := map[string]int{}
	transitions := map[string]int{}
	for _, line := range lines {
		var obj struct {
			Type     string `json:"type"`
			Old      string `json:"old_state"`
			New      string `json:"new_state"`
			PID      *int   `json:"pid"`
			Inferred bool   `json:"inferred"`
		}
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("not JSON: %v: %s", err, line)
		}
		types[obj.Type]++
		if obj.Type == "transition" {
			transitions[obj.Old+"→"+obj.New]++
			if obj.PID != nil && *obj.PID != os.Getpid() {
				t.Errorf("owner %d, want this process %d: %s", *obj.PID, os.Getpid(), line)
			}
		}
	}
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, `{"type":"summary",`) || !strings.Contains(last, `,"lost":0,`) {
		t.Errorf("last line is not a summary without loss: %s", last)
	}
	want := map[string]int{
		"CLOSE→LISTEN": 1, "LISTEN→CLOSE": 1, "CLOSE→SYN_SENT": 1, "SYN_SENT→ESTABLISHED": 1,
		"LISTEN→SYN_RECV": 1, "SYN_RECV→ESTABLISHED": 1,
	}
	for tr, n := range want {
		if transitions[tr] != n {
			t.Errorf("%d × %s, want %d; all: %v", transitions[tr], tr, n, transitions)
		}
	}
	if types["accept"] != 1 {
		t.Errorf("%d accept objects, want 1", types["accept"])
	}
	if !summaryLine.MatchString(stderr.String()) {
		t.Errorf("stderr %q, want exactly one summary line without loss", stderr.String())
	}
}

// summaryLine is the exact stderr of a watch that lost nothing: the
// tracer's warnings (synthetic cookies before 5.12), then the summary.
var summaryLine = regexp.MustCompile(`^(tcpstat: warning: [^\n]+\n)*tcpstat: (output closed; )?\d+ events, 0 lost \(ring buffer full 0, recursion 0, corrupt 0\); \d+ nested transitions recovered by the second program\n$`)

// TestWatchHeadOne: `tcpstat watch | head -1` ends once head has its line
// and exits, though no event follows (nobody uses the port): tcpstat and
// head are real processes joined by a real pipe.
func TestWatchHeadOne(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the BPF program")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	watch := tcpstatCommand(t, "watch", "--port", "29162")
	var stderr syncBuffer
	watch.Stdout, watch.Stderr = w, &stderr
	head := exec.Command("head", "-1")
	var headOut bytes.Buffer
	head.Stdin, head.Stdout = r, &headOut
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	defer watch.Process.Kill()
	if err := head.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	w.Close()
	if err := head.Wait(); err != nil {
		t.Fatalf("head: %v", err)
	}
	headDone := time.Now()
	ended := make(chan error, 1)
	go func() { ended <- watch.Wait() }()
	select {
	case err := <-ended:
		t.Logf("watch ended %v after head", time.Since(headDone).Round(time.Millisecond))
		if err != nil {
			t.Fatalf("watch: %v; stderr: %s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("watch still runs 10 s after head exited; stderr: %s", stderr.String())
	}
	wantHead := "TIME            OWNER                  LOCAL                          REMOTE                         TRANSITION                     IN OLD STATE\n"
	if headOut.String() != wantHead {
		t.Errorf("head printed %q, want the header %q", headOut.String(), wantHead)
	}
	if got := stderr.String(); !summaryLine.MatchString(got) || !strings.Contains(got, "tcpstat: output closed; 0 events, ") {
		t.Errorf("stderr %q, want the summary of 0 events after the output closed", got)
	}
}

// oneConnection listens on addr, makes one connection to it, and closes
// all three sockets: a listener's and a connection's whole lives.
func oneConnection(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	testenv.CloseClientFirst(t, c, a)
	ln.Close()
}
