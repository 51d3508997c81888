package netstat

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/tcpstat/tcpstat/internal/netnstest"
)

// netnsEnv carries, to a test binary started inside a test network
// namespace, the name of the test it runs there.
const netnsEnv = "TCPSTAT_NETSTAT_IN_NETNS"

// The interfaces of the test namespace, veth pairs (the kernel matrix's
// guests load veth, not bridge). Two names take all 15 characters Linux
// allows (IFNAMSIZ-1), one is named like the podman bridge whose long name
// once ran into /proc/net/igmp's colon, and one pair stays down.
const (
	nsVethA  = "abcdefghijklmno"
	nsVethB  = "pqrstuvwxyz0123"
	nsBridge = "cni-podman0"
	nsPeer   = "cni-podman0-p"
	nsDown   = "tcpstat-down-15"
	nsDownB  = "tcpstat-down-p"
)

// inNetns runs body in a network namespace of its own, filled by
// setupNetns: the test binary runs again under `ip netns exec` (which also
// mounts the namespace's /sys), selecting only this test, and the parent
// fails when the child fails or skips. /proc/net follows the process's
// namespace, not a thread's, so the whole process must move.
func inNetns(t *testing.T, body func(t *testing.T)) {
	t.Helper()
	if os.Getenv(netnsEnv) == t.Name() {
		body(t)
		return
	}
	needRoot(t, "ip")
	ns := netnstest.New(t).Name
	setupNetns(t, ns)
	var run []string
	for _, part := range strings.Split(t.Name(), "/") {
		run = append(run, "^"+regexp.QuoteMeta(part)+"$")
	}
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run", strings.Join(run, "/"), "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), netnsEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in netns %s: %v:\n%s", ns, err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) || strings.Contains(string(out), "--- SKIP") {
		t.Fatalf("in netns %s the test did not pass:\n%s", ns, out)
	}
}

// setupNetns makes the namespace's interfaces, addresses, routes and
// neighbours with ip(8), the reference the listings are compared with.
func setupNetns(t *testing.T, ns string) {
	t.Helper()
	for _, args := range [][]string{
		{"link", "add", nsVethA, "type", "veth", "peer", "name", nsVethB},
		{"link", "add", nsBridge, "type", "veth", "peer", "name", nsPeer},
		{"link", "add", nsDown, "type", "veth", "peer", "name", nsDownB},
		{"link", "set", nsVethA, "up"},
		{"link", "set", nsVethB, "up"},
		{"link", "set", nsBridge, "up"},
		{"link", "set", nsPeer, "up"},
		{"addr", "add", "10.5.0.1/24", "brd", "10.5.0.255", "dev", nsVethA},
		{"addr", "add", "10.4.0.2/24", "dev", nsVethB},
		{"addr", "add", "10.7.0.1/24", "dev", nsBridge},
		{"-6", "addr", "add", "2001:db8::1/64", "dev", nsVethA, "nodad"},
		{"-6", "addr", "add", "2001:db8:4::2/64", "dev", nsVethB, "nodad"},
		{"route", "add", "10.6.0.0/16", "via", "10.5.0.2", "dev", nsVethA},
		{"route", "add", "10.8.0.9", "via", "10.5.0.2", "dev", nsVethA, "metric", "7"},
		{"route", "add", "unreachable", "10.9.0.0/16"},
		// Default routes that refuse at once: a name lookup (netstat
		// without -n) must fail fast, never wait for an answer.
		{"route", "add", "prohibit", "default"},
		{"-6", "route", "add", "2001:db8:5::/48", "via", "2001:db8::2", "dev", nsVethA},
		{"-6", "route", "add", "2001:db8:6::1/128", "via", "2001:db8::2", "dev", nsVethA, "metric", "5"},
		{"-6", "route", "add", "prohibit", "default"},
		{"neigh", "replace", "10.5.0.3", "lladdr", "02:00:00:00:00:03", "dev", nsVethA, "nud", "permanent"},
		{"neigh", "replace", "10.7.0.254", "lladdr", "02:00:00:00:00:fe", "dev", nsBridge, "nud", "permanent"},
		{"neigh", "replace", "2001:db8::3", "lladdr", "02:00:00:00:00:03", "dev", nsVethA, "nud", "permanent"},
	} {
		full := append([]string{"-n", ns}, args...)
		if out, err := exec.Command("ip", full...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(full, " "), err, out)
		}
	}
}
