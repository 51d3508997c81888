package main

import (
	"bufio"
	"errors"
	"fmt"
	"github.com/tcpstat/tcpstat/internal/testenv"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/netnstest"
)

// Least privilege, as docs/deploy.md states it: each command runs as a
// non-root user (65534) with only the capabilities named for it, in a
// network namespace of its own as a sidecar's pod gives it.
const (
	traceCaps = "+bpf,+perfmon"
	// sidecarCapSet is deploy/sidecar.yaml's (sidecarCaps).
	sidecarCapSet = "+bpf,+perfmon,+sys_ptrace,+dac_read_search"
	agentCapSet   = "+bpf,+perfmon,+sys_admin,+sys_ptrace,+dac_read_search"
)

// confined is tcpstat run by `unshare --net` (lo up) and `setpriv` as
// user 65534 with exactly caps (inheritable, ambient and bounding sets).
type confined struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	netns  string // /proc/PID/ns/net
}

func startConfined(t *testing.T, caps string, args ...string) *confined {
	t.Helper()
	return startConfinedWith(t, "", nil, caps, args...)
}

// startConfinedWith is startConfined with setup: shell commands, each
// ending in " && ", run as root in tcpstat's network namespace and, when
// given, a mount namespace of its own (a container's mounts), before the
// user and capabilities are dropped; and wrap, a command that runs setpriv
// (its last argument).
func startConfinedWith(t *testing.T, setup string, wrap []string, caps string, args ...string) *confined {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: starts processes as another user with chosen capabilities")
	}
	for _, tool := range []string{"setpriv", "unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run scripts/deps.sh", tool)
		}
	}
	bin := tcpstatCommand(t).Path
	setpriv := []string{"setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
		"--inh-caps", "-all," + caps, "--ambient-caps", "-all," + caps, "--bounding-set", "-all," + caps, bin}
	script := `ip link set lo up && ` + setup + `exec "$@"`
	unshare := []string{"--net"}
	if setup != "" {
		unshare = append(unshare, "--mount")
	}
	cmd := exec.Command("unshare", append(append(append(unshare, "sh", "-c", script, "sh"), wrap...), append(setpriv, args...)...)...)
	cmd.Env = append(os.Environ(), runAsTcpstat+"=1")
	c := &confined{cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	cmd.Stdout, cmd.Stderr = c.stdout, c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c.netns = "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/net"
	return c
}

// inOwnNetNS waits until tcpstat runs (lo is up by then) in the
// namespace unshare made.
func (c *confined) inOwnNetNS(t *testing.T) {
	t.Helper()
	self := inode(t, "/proc/self/ns/net")
	comm := "/proc/" + strconv.Itoa(c.cmd.Process.Pid) + "/comm"
	waitUntil(t, 5*time.Second, "tcpstat in its own network namespace", func() bool {
		var st unix.Stat_t
		b, _ := os.ReadFile(comm)
		return string(b) == "tcpstat\n" && unix.Stat(c.netns, &st) == nil && uint32(st.Ino) != self
	})
}

func inode(t *testing.T, path string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

func waitUntil(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, d)
		}
	}
}

// wait returns the exit status.
func (c *confined) wait(t *testing.T) int {
	t.Helper()
	err := c.cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

// connectIn makes a listener on addr and a connection to it inside netns.
func connectIn(t *testing.T, netns, addr string) func() {
	t.Helper()
	var ln net.Listener
	var c net.Conn
	if err := netnstest.Do(netns, func() error {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return err
		}
		c, err = net.Dial("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return func() { c.Close(); s.Close(); ln.Close() }
}

// scrape fetches /metrics from addr inside netns: the socket is made
// there, on a thread that joined it.
func scrape(netns, addr string) (string, error) {
	var conn net.Conn
	if err := netnstest.Do(netns, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	}); err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", addr)
	b, err := io.ReadAll(bufio.NewReader(conn))
	return string(b), err
}

func TestLeastPrivilegeWatch(t *testing.T) {
	testenv.SkipInMinimalGuest(t, "busybox's setpriv has no --reuid and there is no setcap")
	ready := filepath.Join(t.TempDir(), "ready")
	os.Chmod(filepath.Dir(ready), 0o777)
	c := startConfined(t, traceCaps, "watch", "--json", "--port", "7400", "--ready-file", ready)
	c.inOwnNetNS(t)
	waitUntil(t, 10*time.Second, "ready file: "+c.stderr.String(), func() bool { _, err := os.Stat(ready); return err == nil })
	defer connectIn(t, c.netns, "127.0.0.1:7400")()
	want := fmt.Sprintf(`"netns":%d,`, inode(t, c.netns))
	waitUntil(t, 10*time.Second, "handshake in watch's output", func() bool {
		for _, l := range strings.Split(c.stdout.String(), "\n") {
			if strings.Contains(l, want) && strings.Contains(l, `"old_state":"SYN_SENT","new_state":"ESTABLISHED"`) {
				return true
			}
		}
		return false
	})
	c.cmd.Process.Signal(syscall.SIGTERM)
	if code := c.wait(t); code != 0 {
		t.Errorf("exit status %d; stderr: %s", code, c.stderr.String())
	}
}

func TestLeastPrivilegeTop(t *testing.T) {
	testenv.SkipInMinimalGuest(t, "busybox's setpriv has no --reuid and there is no setcap")
	c := startConfined(t, traceCaps, "top", "-b", "-n", "4", "-d", "0.5", "--netns", "self")
	c.inOwnNetNS(t)
	defer connectIn(t, c.netns, "127.0.0.1:7401")()
	if code := c.wait(t); code != 0 {
		t.Fatalf("exit status %d; stderr: %s", code, c.stderr.String())
	}
	frames := strings.Split(c.stdout.String(), "tcpstat top - ")
	last := frames[len(frames)-1]
	if !strings.Contains(last, "  tracing  ") || !strings.Contains(last, "127.0.0.1:7401") || !strings.Contains(last, "LISTEN") {
		t.Errorf("last frame has no traced LISTEN row on 127.0.0.1:7401:\n%s\nstderr: %s", last, c.stderr.String())
	}
}

func TestLeastPrivilegeServe(t *testing.T) {
	testenv.SkipInMinimalGuest(t, "busybox's setpriv has no --reuid and there is no setcap")
	c := startConfined(t, traceCaps, "serve", "--netns", "self", "--web.listen-address", "127.0.0.1:9977")
	c.inOwnNetNS(t)
	defer connectIn(t, c.netns, "127.0.0.1:7402")()
	var body string
	waitUntil(t, 10*time.Second, "metrics with both listeners", func() bool {
		var err error
		body, err = scrape(c.netns, "127.0.0.1:9977")
		return err == nil && strings.Contains(body, "\ntcpstat_connections{state=\"LISTEN\"} 2\n") && strings.Contains(body, "\ntcpstat_tracing 1\n")
	})
	// The one warning expected: tracefs is root's (0700), so without
	// CAP_DAC_READ_SEARCH the owners of accepted connections wait for
	// their close.
	for _, l := range strings.Split(strings.TrimSpace(c.stderr.String()), "\n") {
		if strings.Contains(l, "warning") && !strings.Contains(l, "tracefs") {
			t.Errorf("warning: %s", l)
		}
	}
}

// TestLeastPrivilegeSidecarTracefs runs watch with the sidecar's
// capabilities in a mount namespace with a /sys of its own, as a
// container has: no tracefs in it, the accept() tracepoints cannot be
// attached and a warning says so; with the host's tracefs mounted
// read-only at /sys/kernel/tracing (deploy/sidecar.yaml's host path) they
// are, and an accept names its owner; without CAP_DAC_READ_SEARCH the
// root-only tracefs cannot be read and the warning names the capability.
func TestLeastPrivilegeSidecarTracefs(t *testing.T) {
	testenv.SkipInMinimalGuest(t, "busybox's setpriv has no --reuid and there is no setcap")
	host := t.TempDir()
	ownSys := `mount -t sysfs sysfs /sys && `
	withTracefs := `mount --bind /sys/kernel/tracing ` + host + ` && ` + ownSys + `mount --bind -o ro ` + host + ` /sys/kernel/tracing && `
	for i, tc := range []struct {
		name, setup, caps string
		warning           string // "": none, the accept hooks attached
	}{
		{"container /sys", ownSys, sidecarCapSet, "tracefs is not mounted and mounting it at /sys/kernel/tracing failed: operation not permitted"},
		{"tracefs host path", withTracefs, sidecarCapSet, ""},
		{"tracefs host path without CAP_DAC_READ_SEARCH", withTracefs, traceCaps, "tracefs at /sys/kernel/tracing is not readable: reading its tracepoint ids needs CAP_DAC_READ_SEARCH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := strconv.Itoa(7404 + i)
			ready := filepath.Join(t.TempDir(), "ready")
			os.Chmod(filepath.Dir(ready), 0o777)
			c := startConfinedWith(t, tc.setup, nil, tc.caps, "watch", "--json", "--port", port, "--ready-file", ready)
			c.inOwnNetNS(t)
			waitUntil(t, 10*time.Second, "ready file: "+c.stderr.String(), func() bool { _, err := os.Stat(ready); return err == nil })
			// The test process listens, connects and accepts in
			// tcpstat's namespace.
			defer connectIn(t, c.netns, "127.0.0.1:"+port)()
			accept := `{"type":"accept",`
			owner := fmt.Sprintf(`"pid":%d,`, os.Getpid())
			accepted := func() bool {
				for _, l := range strings.Split(c.stdout.String(), "\n") {
					if strings.HasPrefix(l, accept) && strings.Contains(l, owner) && strings.Contains(l, `"sport":`+port+`,`) {
						return true
					}
				}
				return false
			}
			if tc.warning == "" {
				waitUntil(t, 10*time.Second, "accept by the test process in watch's output", accepted)
			} else {
				waitUntil(t, 10*time.Second, "handshake in watch's output", func() bool {
					return strings.Contains(c.stdout.String(), `"old_state":"SYN_RECV","new_state":"ESTABLISHED"`)
				})
			}
			c.cmd.Process.Signal(syscall.SIGTERM)
			if code := c.wait(t); code != 0 {
				t.Errorf("exit status %d; stderr: %s", code, c.stderr.String())
			}
			var warnings []string
			for _, l := range strings.Split(strings.TrimSpace(c.stderr.String()), "\n") {
				if strings.Contains(l, "warning") {
					warnings = append(warnings, l)
				}
			}
			switch {
			case tc.warning == "" && len(warnings) > 0:
				t.Errorf("warnings with tracefs mounted: %q", warnings)
			case tc.warning != "" && (len(warnings) != 1 || !strings.Contains(warnings[0], tc.warning)):
				t.Errorf("warnings %q, want one saying %q", warnings, tc.warning)
			case tc.warning != "" && accepted():
				t.Errorf("an accept without the accept() hooks:\n%s", c.stdout.String())
			}
		})
	}
}

// TestLeastPrivilegeSeccomp: with CAP_BPF and CAP_PERFMON but under a
// seccomp filter that answers bpf() with EPERM, as podman's default
// profile does without CAP_SYS_ADMIN (docs/deploy.md), watch fails with
// an error that names the filter, not the capabilities it holds.
func TestLeastPrivilegeSeccomp(t *testing.T) {
	testenv.SkipInMinimalGuest(t, "busybox's setpriv has no --reuid and there is no setcap")
	c := startConfinedWith(t, "", []string{"env", execUnderSeccomp + "=1", os.Args[0]}, traceCaps, "watch", "--port", "7407")
	code := c.wait(t)
	msg := strings.TrimSpace(c.stderr.String())
	want := "tcpstat has the capabilities tracing needs but runs under a seccomp filter, which may refuse bpf() and perf_event_open()"
	if code == 0 || !strings.Contains(msg, want) || strings.Count(msg, "\n") != 0 {
		t.Errorf("exit status %d, stderr %q; want one line saying %q", code, msg, want)
	}
}

// TestLeastPrivilegeMissing: with one capability fewer, each command
// fails with an error that names it.
func TestLeastPrivilegeMissing(t *testing.T) {
	testenv.SkipInMinimalGuest(t, "busybox's setpriv has no --reuid and there is no setcap")
	for _, tc := range []struct {
		caps, missing string
		args          []string
	}{
		{"+bpf", "CAP_PERFMON", []string{"watch"}},
		{"+perfmon", "CAP_BPF", []string{"watch"}},
		{"+bpf", "CAP_PERFMON", []string{"top", "-b", "-n", "1", "--netns", "self"}},
		{"+perfmon", "CAP_BPF", []string{"serve", "--netns", "self"}},
	} {
		c := startConfined(t, tc.caps, tc.args...)
		code := c.wait(t)
		msg := c.stderr.String()
		if tc.args[0] == "top" {
			// top without the tracer keeps the table from dumps and says why.
			msg += c.stdout.String()
			code = 1 - code
		}
		if code != 1 || !strings.Contains(msg, tc.missing) {
			t.Errorf("%v with %s: status %d, output %q; want it to name %s", tc.args, tc.caps, code, msg, tc.missing)
		}
	}
}

// TestLeastPrivilegeAgent: the node agent dumps other namespaces with
// CAP_SYS_ADMIN (and CAP_SYS_PTRACE to find them through /proc); without
// it, it says the namespaces were left out and names the capability.
func TestLeastPrivilegeAgent(t *testing.T) {
	testenv.SkipInMinimalGuest(t, "busybox's setpriv has no --reuid and there is no setcap")
	ns := netnstest.New(t)
	defer connectIn(t, ns.Path, "127.0.0.1:7403")()
	series := fmt.Sprintf("\ntcpstat_connections{netns=\"%d\",state=\"LISTEN\"} 1\n", ns.Inode)
	for _, tc := range []struct {
		caps string
		full bool
	}{{agentCapSet, true}, {traceCaps, false}} {
		c := startConfined(t, tc.caps, "serve", "--metrics.by", "netns", "--web.listen-address", "127.0.0.1:9978")
		c.inOwnNetNS(t)
		var body string
		waitUntil(t, 10*time.Second, "metrics", func() bool {
			var err error
			body, err = scrape(c.netns, "127.0.0.1:9978")
			return err == nil && strings.Contains(body, "tcpstat_netns_not_dumped")
		})
		if got := strings.Contains(body, series); got != tc.full {
			t.Errorf("caps %s: namespace %s's listener in the metrics: %v, want %v", tc.caps, ns.Name, got, tc.full)
		}
		warned := strings.Contains(c.stderr.String(), "CAP_SYS_ADMIN")
		if warned == tc.full || strings.Contains(body, "\ntcpstat_netns_not_dumped 0\n") != tc.full {
			var dumped []string // what the metrics said of the namespaces
			for _, l := range strings.Split(body, "\n") {
				if strings.HasPrefix(l, "tcpstat_netns_not_dumped") || strings.HasPrefix(l, "tcpstat_connections{") {
					dumped = append(dumped, l)
				}
			}
			t.Errorf("caps %s: warning %q, want one naming CAP_SYS_ADMIN: %v; metrics %q", tc.caps, c.stderr.String(), !tc.full, dumped)
		}
		c.cmd.Process.Signal(syscall.SIGTERM)
		c.wait(t)
	}
}

func TestLeastPrivilegeRecord(t *testing.T) {
	testenv.SkipInMinimalGuest(t, "busybox's setpriv has no --reuid and there is no setcap")
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	rec, ready := filepath.Join(dir, "rec"), filepath.Join(dir, "ready")
	c := startConfined(t, traceCaps, "record", "-w", rec, "--ready-file", ready)
	c.inOwnNetNS(t)
	waitUntil(t, 10*time.Second, "ready file: "+c.stderr.String(), func() bool { _, err := os.Stat(ready); return err == nil })
	connectIn(t, c.netns, "127.0.0.1:7404")()
	c.cmd.Process.Signal(syscall.SIGTERM)
	if code := c.wait(t); code != 0 {
		t.Fatalf("exit status %d; stderr: %s", code, c.stderr.String())
	}
	st, err := os.Stat(rec)
	if err != nil || st.Size() == 0 {
		t.Errorf("recording: %v, %v", st, err)
	}
}

// TestLeastPrivilegeFileCaps runs tcpstat as the image does in a pod:
// a non-root user, capabilities only in the bounding set and as the
// binary's permitted file capabilities (no ambient ones, which Kubernetes
// does not set). tcpstat raises them on every thread and traces.
func TestLeastPrivilegeFileCaps(t *testing.T) {
	testenv.SkipInMinimalGuest(t, "busybox's setpriv has no --reuid and there is no setcap")
	if os.Geteuid() != 0 {
		t.Skip("needs root: sets file capabilities, starts a process as another user")
	}
	setcap, err := exec.LookPath("setcap")
	if err != nil {
		t.Fatal("setcap not found: run scripts/deps.sh (Debian package libcap2-bin)")
	}
	cmd := tcpstatCommand(t)
	if out, err := exec.Command(setcap, "cap_bpf,cap_perfmon,cap_sys_admin,cap_sys_ptrace,cap_dac_read_search+p", cmd.Path).CombinedOutput(); err != nil {
		t.Fatalf("setcap: %v: %s", err, out)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	ready := filepath.Join(dir, "ready")
	run := exec.Command("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--bounding-set", "-all,"+traceCaps,
		cmd.Path, "watch", "--json", "--port", "7405", "--ready-file", ready)
	run.Env = cmd.Env
	var stdout, stderr syncBuffer
	run.Stdout, run.Stderr = &stdout, &stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { run.Process.Kill(); run.Wait() }()
	if cgoBuild() {
		// Go cannot change every thread's capabilities under cgo: the
		// binary says what to do instead (the image is built without cgo,
		// as are the kernel matrix's test binaries, which take the path below).
		run.Wait()
		if !strings.Contains(stderr.String(), "CGO_ENABLED=0") || !strings.Contains(stderr.String(), "+ep") {
			t.Errorf("cgo build: no warning saying how to get the capabilities:\n%s", stderr.String())
		}
		return
	}
	waitUntil(t, 10*time.Second, "ready file: "+stderr.String(), func() bool { _, err := os.Stat(ready); return err == nil })
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", run.Process.Pid))
	if err != nil || len(tasks) < 2 {
		t.Fatalf("threads: %v %v", tasks, err)
	}
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		if !strings.Contains(string(b), "CapEff:\t000000c000000000\n") {
			t.Errorf("%s: effective capabilities are not CAP_BPF and CAP_PERFMON:\n%s", task, b)
		}
	}
	defer connectIn(t, "/proc/self/ns/net", "127.0.0.1:7405")()
	waitUntil(t, 10*time.Second, "the handshake in watch's output", func() bool {
		return strings.Contains(stdout.String(), `"old_state":"SYN_SENT","new_state":"ESTABLISHED"`)
	})
}

// cgoBuild reports whether this binary was built with cgo.
func cgoBuild() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "CGO_ENABLED" {
			return s.Value == "1"
		}
	}
	return false
}
