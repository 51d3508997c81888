package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/netnstest"
)

func TestFilterExplain(t *testing.T) {
	var out0, errOut0 bytes.Buffer
	if err := run(context.Background(), []string{"tcpstat", "filter", "explain", "sport = :22 or sport = :80 and src 127.0.0.1 and comm sshd"}, &out0, &errOut0); err != nil {
		t.Fatal(err)
	}
	want0 := "expression: ( sport = :22 or sport = :80 ) and src 127.0.0.1 and comm sshd\n" +
		"kernel:     ( sport = :22 or sport = :80 ) and src 127.0.0.1   [3 instructions, 1 prefixes]\n" +
		"user space: comm sshd\n"
	if out0.String() != want0 {
		t.Errorf("explain printed\n%s\nwant\n%s", out0.String(), want0)
	}
	var out, errOut bytes.Buffer
	args := []string{"tcpstat", "filter", "explain", "dport = :443 and dst 10.0.0.0/8 and not comm curl or state established"}
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	want := "expression: ( dport = :443 and dst 10.0.0.0/8 and not comm curl ) or state established\n" +
		"kernel:     (nothing: every transition reaches user space)\n" +
		"user space: ( dport = :443 and dst 10.0.0.0/8 and not comm curl ) or state established\n"
	if out.String() != want {
		t.Errorf("explain printed\n%s\nwant\n%s", out.String(), want)
	}
}

// TestFilterMistakes: a bad expression is one line on stderr pointing at
// the token, exit status 2, in every command that takes a filter.
func TestFilterMistakes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"filter", "explain", "state establised"}, `tcpstat: filter: unknown state "establised" at column 7; did you mean "established"?`},
		{[]string{"list", "-tan", "sport", "=", ":nosuchservice"}, `tcpstat: filter: "nosuchservice" is neither a port nor a TCP service in /etc/services at column 9`},
		{[]string{"watch", "(", "dport", "=", ":80"}, `tcpstat: filter: unclosed "(" at column 1`},
		{[]string{"top", "-b", "dst", "10.0.0.300"}, `tcpstat: filter: an address or prefix is expected rather than "10.0.0.300" at column 5; e.g. 10.0.0.0/8, [::1], 127.0.0.1:80, localhost`},
	} {
		cmd := tcpstatCommand(t, tc.args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("%q: %v, want exit status 2", tc.args, err)
		}
		if got := strings.TrimSuffix(stderr.String(), "\n"); got != tc.want {
			t.Errorf("%q: stderr\n%s\nwant\n%s", tc.args, got, tc.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("%q: stdout %q, want nothing", tc.args, stdout.String())
		}
	}
}

// ssComparisons are expressions from ss(8) and from what people type. The
// second form is what ss needs when it differs: ss takes state and
// exclude only before the expression.
var ssComparisons = []struct{ expr, ss string }{
	{"sport = :ssh", ""},
	{"sport = :22", ""},
	// Host names from the namespace's own hosts file (hostsFile): names
	// with one address, since ss matches only the first a name has.
	{"dst loop4.test", ""},
	{"src pg.test:5432", ""},
	{"dst inet6:loop6.test", ""},
	{"dst loop4.test and not sport = :22", ""},
	{"dport = :ssh", ""},
	{"sport eq :http", ""},
	{"sport == :https", ""},
	{"dport != :22", ""},
	{"sport != :22", ""},
	{"sport > :1024", ""},
	{"sport < :1024", ""},
	{"sport >= :443", ""},
	{"sport <= :443", ""},
	{"dport gt :1024", ""},
	{"dport lt :1024", ""},
	{"dport ge :443", ""},
	{"dport le :443", ""},
	{"sport geq :8080", ""},
	{"dport neq :80", ""},
	{"dport = :*", ""},
	{"src 127.0.0.1", ""},
	{"src 127.0.0.0/8", ""},
	{"dst 127.0.0.2", ""},
	{"dst = 127.0.0.3", ""},
	{"src [::1]", ""},
	{"dst [::1]:443", ""},
	{"src 127.0.0.1:22", ""},
	{"src *:8080", ""},
	{"src :5432", ""},
	{"src [::ffff:127.0.0.1]", ""},
	{"src [::ffff:127.0.0.0/104]", ""},
	{"dst 0.0.0.0/0", ""},
	{"src [::/0]", ""},
	{"dst 127.0.0.0/30:80", ""},
	{"( dport = :80 or dport = :443 ) and not src [::1]", ""},
	{"( sport = :22 or dport = :22 )", ""},
	{"sport = :22 or dport = :22", ""},
	{"sport = :ssh || dport = :ssh", ""},
	{"not sport = :22", ""},
	{"! ( sport = :80 || sport = :443 )", ""},
	{"sport = :22 or sport = :80 and src 127.0.0.1", ""},
	{"src 127.0.0.1 dport = :22", ""},
	{"src 127.0.0.1 or src [::1]", ""},
	{"not dst 127.0.0.1 and not dst [::1]", ""},
	{"autobound", ""},
	{"dst 127.0.0.0/8 and state established", "state established dst 127.0.0.0/8"},
	{"state established and dport > :1024", "state established dport > :1024"},
	{"state established", ""},
	{"state listening", ""},
	{"state time-wait", ""},
	{"state close-wait", ""},
	{"state fin-wait-2", ""},
	{"state syn-sent", ""},
	{"state connected", ""},
	{"state synchronized", ""},
	{"state bucket", ""},
	{"state big", ""},
	{"state all", ""},
	{"exclude listening", ""},
	{"exclude listening exclude time-wait", ""},
	{"state established state time-wait", ""},
	{"state established ( sport = :ssh or dport = :ssh )", ""},
	{"state listening src [::1]", ""},
	{"state connected dport = :5432", ""},
}

// TestListFilterMatchesSS gives each expression to ss -tan and to tcpstat
// list -tan, in a namespace of the test's own holding listeners,
// established connections, TIME_WAIT, CLOSE_WAIT and FIN_WAIT2 sockets over
// IPv4, IPv6 and v4-mapped IPv6; both must select the same sockets.
func TestListFilterMatchesSS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace")
	}
	ns := netnstest.New(t)
	// ip netns exec, which runs both ss and tcpstat here, mounts this file
	// on /etc/hosts.
	hostsDir := filepath.Join("/etc/netns", ns.Name)
	if err := os.MkdirAll(hostsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(hostsDir) })
	if err := os.WriteFile(filepath.Join(hostsDir, "hosts"), []byte("127.0.0.1 loop4.test\n127.0.0.2 pg.test\n::1 loop6.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var lns []net.Listener
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
		for _, l := range lns {
			l.Close()
		}
	})
	listen := func(network, addr string) net.Listener {
		var l net.Listener
		if err := ns.Do(func() (err error) { l, err = net.Listen(network, addr); return err }); err != nil {
			t.Fatal(err)
		}
		lns = append(lns, l)
		return l
	}
	// connect returns both ends of a connection from local (a host, or
	// "" for any) to l.
	connect := func(network, local string, l net.Listener) (client, server net.Conn) {
		d := net.Dialer{}
		if local != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
		}
		if err := ns.Do(func() (err error) { client, err = d.Dial(network, l.Addr().String()); return err }); err != nil {
			t.Fatal(err)
		}
		server, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return client, server
	}
	ssh := listen("tcp4", "127.0.0.1:22")
	web := listen("tcp4", "127.0.0.1:80")
	tls6 := listen("tcp6", "[::1]:443")
	dual := listen("tcp", "[::]:8080")
	pg := listen("tcp4", "127.0.0.2:5432")

	c, s := connect("tcp4", "", ssh) // established
	held = append(held, c, s)
	c, s = connect("tcp6", "", tls6) // established, IPv6
	held = append(held, c, s)
	c, s = connect("tcp4", "127.0.0.1", dual) // established, v4-mapped server side
	held = append(held, c, s)
	c, s = connect("tcp4", "127.0.0.3", web) // TIME_WAIT on the client
	c.Close()
	s.Close()
	c, s = connect("tcp6", "", tls6) // TIME_WAIT, IPv6
	c.Close()
	s.Close()
	c, s = connect("tcp4", "", pg) // FIN_WAIT2 client, CLOSE_WAIT server
	c.Close()
	held = append(held, s)

	want := []string{"LISTEN", "ESTAB", "TIME-WAIT", "CLOSE-WAIT", "FIN-WAIT-2"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		all := ssRows(t, ns, "state all")
		missing := ""
		for _, st := range want {
			if !strings.Contains(strings.Join(all, "\n"), st) {
				missing = st
			}
		}
		if missing == "" && len(all) == 15 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sockets not in place after 10 s (no %s):\n%s", missing, strings.Join(all, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	all := ssRows(t, ns, "")
	bin := tcpstatCommand(t).Path
	proper := 0
	for _, tc := range ssComparisons {
		ssExpr := tc.ss
		if ssExpr == "" {
			ssExpr = tc.expr
		}
		want := keys(ssRows(t, ns, ssExpr))
		got := keys(listRows(t, ns, bin, tc.expr))
		if !slices.Equal(got, want) {
			t.Errorf("%q: tcpstat list selects\n\t%s\nss selects\n\t%s", tc.expr, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
		if len(want) > 0 && len(want) < len(all) {
			proper++
		}
	}
	// The sockets must tell the expressions apart, not match all or none.
	if proper < len(ssComparisons)*3/4 {
		t.Errorf("only %d of %d expressions select some but not all sockets", proper, len(ssComparisons))
	}
}

// ssRows runs ss -tan with a filter in the namespace; it returns the rows
// as "STATE LOCAL PEER".
func ssRows(t *testing.T, ns *netnstest.NS, expr string) []string {
	t.Helper()
	// Word by word, as a shell passes it: ss looks for state and exclude
	// in whole arguments.
	args := append([]string{"netns", "exec", ns.Name, "ss", "-tanH"}, strings.Fields(expr)...)
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ss -tan %s: %v: %s", expr, err, out)
	}
	var rows []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 {
			if _, err := strconv.Atoi(f[0]); err == nil {
				// ss leaves the State column out when one state is asked for.
				f = append([]string{"-"}, f...)
			}
		}
		if len(f) >= 5 {
			rows = append(rows, f[0]+" "+endpoint(f[3])+" "+endpoint(f[4]))
		}
	}
	return rows
}

// listRows runs tcpstat list -tanW with a filter in the namespace; it
// returns the rows as "STATE LOCAL PEER".
func listRows(t *testing.T, ns *netnstest.NS, bin, expr string) []string {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns.Name, bin, "list", "-tanW", expr)
	cmd.Env = append(os.Environ(), runAsTcpstat+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tcpstat list -tanW %s: %v: %s", expr, err, out)
	}
	var rows []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && strings.HasPrefix(f[0], "tcp") {
			rows = append(rows, f[5]+" "+endpoint(f[3])+" "+endpoint(f[4]))
		}
	}
	return rows
}

// endpoint is an address:port as ss or netstat print it, in one form:
// the address parsed (a wildcard as *), the port a number (* as 0).
func endpoint(s string) string {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s
	}
	host, port := strings.Trim(s[:i], "[]"), s[i+1:]
	if port == "*" {
		port = "0"
	}
	if a, err := netip.ParseAddr(host); err == nil && !a.IsUnspecified() {
		host = a.String()
	} else {
		host = "*"
	}
	return host + ":" + port
}

// keys drops the state (ss and netstat name them differently) and sorts.
func keys(rows []string) []string {
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		_, k, _ := strings.Cut(r, " ")
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestListFilterOwners: pid, comm, uid and cgroup, which ss has no
// equivalent for, on a listener made by nobody and held by a sleep in a
// cgroup of the test's own, and one made and held by the test.
func TestListFilterOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a cgroup and read other processes' descriptors")
	}
	mine, err := net.Listen("tcp4", "127.80.91.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	// Made with nobody's file system uid: a socket's uid is its maker's.
	var theirs net.Listener
	func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		unix.Setfsuid(65534)
		defer unix.Setfsuid(0)
		theirs, err = net.Listen("tcp4", "127.80.91.2:0")
	}()
	if err != nil {
		t.Fatal(err)
	}
	f, err := theirs.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	sleep := exec.Command("sleep", "60")
	sleep.ExtraFiles = []*os.File{f}
	sleep.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleep.Wait()
	defer sleep.Process.Kill()
	f.Close()
	theirs.Close() // the sleep holds it alone now

	cgroot := cgroup2Root(t)
	name := fmt.Sprintf("tcpstat-filter-test-%d", os.Getpid())
	cg := filepath.Join(cgroot, name)
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(cg, "inner")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(cg)
	defer os.Remove(sub)
	if err := os.WriteFile(filepath.Join(sub, "cgroup.procs"), []byte(strconv.Itoa(sleep.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.WriteFile(filepath.Join(cgroot, "cgroup.procs"), []byte(strconv.Itoa(sleep.Process.Pid)), 0o644)

	mineAddr, theirAddr := mine.Addr().String(), theirs.Addr().String()
	scope := "( src 127.80.91.1 or src 127.80.91.2 ) and "
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{"comm sleep", []string{theirAddr}},
		{"comm sle*", []string{theirAddr}},
		{"not comm sleep", []string{mineAddr}},
		{"pid " + strconv.Itoa(sleep.Process.Pid), []string{theirAddr}},
		{"pid " + strconv.Itoa(os.Getpid()), []string{mineAddr}},
		{"uid 65534", []string{theirAddr}},
		{"uid 0", []string{mineAddr}},
		{"uid nobody", []string{theirAddr}},
		{"cgroup /" + name, []string{theirAddr}},
		{"cgroup /" + name + "/inner", []string{theirAddr}},
		{"not cgroup /" + name, []string{mineAddr}},
		{"reason reset", nil},
		{"not reason reset", []string{mineAddr, theirAddr}},
	} {
		var out, errOut bytes.Buffer
		args := []string{"tcpstat", "list", "-tlnW", scope + tc.expr}
		if err := run(context.Background(), args, &out, &errOut); err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		var got []string
		for _, line := range strings.Split(out.String(), "\n") {
			if f := strings.Fields(line); len(f) >= 4 && f[0] == "tcp" {
				got = append(got, f[3])
			}
		}
		slices.Sort(got)
		slices.Sort(tc.want)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: listed %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// cgroup2Root is where the cgroup v2 hierarchy is mounted.
func cgroup2Root(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "cgroup2" {
			return f[1]
		}
	}
	t.Fatal("no cgroup v2 hierarchy mounted")
	return ""
}

// watchLine is the part of watch's JSON a filter test looks at.
type watchLine struct {
	Type     string `json:"type"`
	Netns    uint32 `json:"netns"`
	Sport    uint16 `json:"sport"`
	Dport    uint16 `json:"dport"`
	OldState string `json:"old_state"`
	NewState string `json:"new_state"`
	Reason   string `json:"reason"`
}

// TestWatchFilter traces a namespace of the test's own: a refused connect,
// and a connection to a listener that the client closes first. The filter
// keeps the refused connect's last event (reason is about an event), and
// every event of the client socket, its CLOSE → SYN_SENT with port 0
// included (held until its port is known); nothing of the server side.
func TestWatchFilter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the BPF program")
	}
	ns := netnstest.New(t)
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:2222"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ready := filepath.Join(t.TempDir(), "ready")
	// ss groups left to right: the inner parentheses are needed.
	expr := fmt.Sprintf("netns %s and ( reason refused or ( sport > :30000 and dport = :2222 ) )", ns.Name)
	cmd := tcpstatCommand(t, "watch", "--json", "--ready-file", ready, expr)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitReady(t, ready, &stderr)

	var client net.Conn
	err := ns.Do(func() error {
		if _, err := net.Dial("tcp4", "127.0.0.1:9"); err == nil {
			return errors.New("connect to port 9 succeeded")
		}
		var err error
		client, err = net.Dial("tcp4", "127.0.0.1:2222")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(client.LocalAddr().(*net.TCPAddr).Port)
	client.Close()
	server.Close()
	want := []watchLine{
		{"transition", ns.Inode, 0, 9, "SYN_SENT", "CLOSE", "refused"},
		{"transition", ns.Inode, 0, 2222, "CLOSE", "SYN_SENT", ""},
		{"transition", ns.Inode, port, 2222, "SYN_SENT", "ESTABLISHED", ""},
		{"transition", ns.Inode, port, 2222, "ESTABLISHED", "FIN_WAIT1", ""},
		{"transition", ns.Inode, port, 2222, "FIN_WAIT1", "FIN_WAIT2", ""},
		{"transition", ns.Inode, port, 2222, "FIN_WAIT2", "TIME_WAIT", "timewait"},
	}
	var got []watchLine
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got = watchLines(t, stdout.String())
		if len(got) >= len(want) {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v; stderr: %s", err, stderr.String())
	}
	got = watchLines(t, stdout.String())
	// The refused connect's source port is whatever the kernel picked.
	if len(got) > 0 && got[0].Dport == 9 {
		got[0].Sport = 0
	}
	if !slices.Equal(got, want) {
		t.Errorf("watch %q printed\n%+v\nwant\n%+v\nstdout:\n%s", expr, got, want, stdout.String())
	}
}

func watchLines(t *testing.T, out string) []watchLine {
	var lines []watchLine
	for _, l := range strings.Split(out, "\n") {
		var w watchLine
		if l == "" || json.Unmarshal([]byte(l), &w) != nil || w.Type != "transition" {
			continue
		}
		lines = append(lines, w)
	}
	return lines
}
