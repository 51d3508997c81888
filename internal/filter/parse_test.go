package filter

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// testEnv resolves services from testdata, namespaces and cgroups in a
// temporary tree, and devices from a fixed table; it parses as for a
// listing (dev and fwmark allowed).
func testEnv(t testing.TB) *env {
	e := defaultEnv()
	e.servicesPath = "testdata/services"
	e.listing = true
	e.linkIndex = func(name string) (uint32, error) {
		if i, ok := testLinks[name]; ok {
			return i, nil
		}
		return 0, snapshot.ErrNoLink
	}
	dir := t.TempDir()
	e.netnsDir = filepath.Join(dir, "netns")
	e.cgroupRoot = filepath.Join(dir, "cgroup")
	e.podLogDir = filepath.Join(dir, "pods")
	for _, d := range []string{e.netnsDir, filepath.Join(e.cgroupRoot, "system.slice/nginx.service/worker")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(e.netnsDir, "blue"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	hosts := map[string][]netip.Addr{
		"db.example": {netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("::ffff:10.0.0.5")},
		"v4only":     {netip.MustParseAddr("10.0.0.6")},
	}
	e.lookupHost = func(_ context.Context, name string) ([]netip.Addr, error) {
		if a, ok := hosts[name]; ok {
			return a, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return e
}

// testLinks are testEnv's devices: "7" is a device's name, as Linux
// allows, and an alternative name longer than an interface name.
var testLinks = map[string]uint32{"lo": 1, "eth0": 2, "vrf-blue": 3, "7": 4, "a-long-alternative-name": 2}

func TestParseCanonical(t *testing.T) {
	e := testEnv(t)
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"state established", "state established"},
		{"state ESTABLISHED state listening", "state established state listening"},
		{"state connected", "state connected"},
		{"state synchronized", "state synchronized"},
		{"state bucket", "state bucket"},
		{"state big", "state big"},
		{"state all", "state all"},
		{"exclude listening", "exclude listening"},
		{"exclude listening exclude time-wait", "exclude time-wait exclude listening"},
		{"state all exclude listening", "exclude listening"},
		{"state syn-rcv", "state syn-recv"},
		{"state closed", "state unconnected"},
		{"state LISTEN", "state listening"},
		{"state fin_wait2", "state fin-wait-2"},
		{"sport = :ssh", "sport = :22"},
		{"dst db.example", "dst 10.0.0.5 or dst 2001:db8::5"},
		{"dst inet:db.example:5432", "dst inet:10.0.0.5:5432"},
		{"not src v4only", "not src 10.0.0.6"},
		{"src v4only and dport = :80", "src 10.0.0.6 and dport = :80"},
		{"src db.example and dport = :80", "( src 10.0.0.5 or src 2001:db8::5 ) and dport = :80"},
		{"sport eq :ssh", "sport = :22"},
		{"sport == 22", "sport = :22"},
		{"sport :www", "sport = :80"},
		{"dport != :443", "dport != :443"},
		{"dport neq :https", "dport != :443"},
		{"dport > :1024", "dport > :1024"},
		{"dport gt 1024", "dport > :1024"},
		{"dport ge :1024", "dport >= :1024"},
		{"dport geq :1024", "dport >= :1024"},
		{"dport < :1024", "dport < :1024"},
		{"dport lt :1024", "dport < :1024"},
		{"dport <= :1024", "dport <= :1024"},
		{"dport le :1024 dport leq :2048", "dport <= :1024 and dport <= :2048"},
		{"dport = :*", "dst *"},
		{"dst 127.0.0.1", "dst 127.0.0.1"},
		{"dst = 127.0.0.0/8", "dst 127.0.0.0/8"},
		{"dst 127.1.2.3/8", "dst 127.0.0.0/8"},
		{"dst 10.0.0.1:8080", "dst 10.0.0.1:8080"},
		{"dst 10.0.0.0/8:http", "dst 10.0.0.0/8:80"},
		{"src [::1]", "src ::1"},
		{"src [::1]:22", "src [::1]:22"},
		{"src [fe80::/10]", "src fe80::/10"},
		{"src ::1", "src ::1"},
		{"src 2001:db8::/32", "src 2001:db8::/32"},
		{"src [::ffff:127.0.0.1]", "src ::ffff:127.0.0.1"},
		{"src *:22", "src *:22"},
		{"src :22", "src *:22"},
		{"src *", "src *"},
		{"src inet:*", "src inet:*"},
		{"dst inet6:[::1]:80", "dst inet6:[::1]:80"},
		{"src != 10.0.0.1", "not src 10.0.0.1"},
		{"sport = :22 or sport = :80 and dst 127.0.0.1", "( sport = :22 or sport = :80 ) and dst 127.0.0.1"},
		{"sport = :22 or ( sport = :80 and dst 127.0.0.1 )", "sport = :22 or ( sport = :80 and dst 127.0.0.1 )"},
		{"( dport = :80 or dport = :443 ) and not src [::1]", "( dport = :80 or dport = :443 ) and not src ::1"},
		{"(dport=:80||dport=:443)&&!src [::1]", "( dport = :80 or dport = :443 ) and not src ::1"},
		{"! ( sport = :22 dport = :22 )", "not ( sport = :22 and dport = :22 )"},
		{"not not sport = :22", "not not sport = :22"},
		{"sport = :22 | dport = :22 & state established", "( sport = :22 or dport = :22 ) and state established"},
		{"state established ( sport = :ssh or dport = :ssh )", "state established and ( sport = :22 or dport = :22 )"},
		{"pid 42", "pid = 42"},
		{"pid != 42", "pid != 42"},
		{"uid >= 1000", "uid >= 1000"},
		{"uid root", "uid = 0"},
		{"comm nginx", "comm nginx"},
		{"comm = ngin*", "comm ngin*"},
		{"comm != curl", "not comm curl"},
		{"comm systemd-resolved", "comm systemd-resolve"},
		{`comm a\ b`, `comm a\ b`},
		{`comm \and`, `comm \and`},
		{"netns 4026531833", "netns 4026531833"},
		{"reason reset", "reason reset"},
		{"reason != timewait", "not reason timewait"},
		{"family inet6", "family inet6"},
		{"family = inet", "family inet"},
		{"cgroup /system.slice/nginx.service", "cgroup /system.slice/nginx.service"},
		{"cgroup system.slice", "cgroup /system.slice"},
		{"autobound", "sport >= :32768 and sport <= :60999"},
		{"dev lo", "dev lo"},
		{"dev = eth0", "dev eth0"},
		{"dev eq eth0", "dev eth0"},
		{"dev != lo", "not dev lo"},
		{"dev ne 0", "not dev 0"},
		{"dev 0x2", "dev 0x2"},
		{"dev if3", "dev if3"},
		{"dev a-long-alternative-name", "dev a-long-alternative-name"},
		{"dev lo and sport = :22 or dev != eth0", "( dev lo and sport = :22 ) or not dev eth0"},
		{"fwmark 0x10", "fwmark 0x10"},
		{"fwmark 16", "fwmark 0x10"},
		{"fwmark 020", "fwmark 0x10"},
		{"fwmark = 0x10/0xf0", "fwmark 0x10/0xf0"},
		{"fwmark 0/0xFFFFFFFF", "fwmark 0x0"},
		{"fwmark != 0x1/1", "not fwmark 0x1/0x1"},
		{"fwmark 4294967295", "fwmark 0xffffffff"},
		{"not fwmark 0 and state established", "not fwmark 0x0 and state established"},
	} {
		f, err := parseEnv(tc.in, e)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		got := f.String()
		if tc.in == "autobound" {
			lo, hi := e.ephemeralRange()
			tc.want = "sport >= :" + strconv.FormatInt(lo, 10) + " and sport <= :" + strconv.FormatInt(hi, 10)
		}
		if got != tc.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tc.in, got, tc.want)
		}
		again, err := parseEnv(got, e)
		if err != nil || again.String() != got {
			t.Errorf("reparsing %q: %v, %q", got, err, again)
		}
	}
}

func TestParseNetns(t *testing.T) {
	e := testEnv(t)
	var want syscall.Stat_t
	if err := syscall.Stat(filepath.Join(e.netnsDir, "blue"), &want); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat("/proc/self/ns/net", &want); err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"netns pid:" + strconv.Itoa(os.Getpid()), "netns " + strconv.FormatUint(want.Ino, 10)} {
		f, err := parseEnv(in, e)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.String(); got != "netns "+strconv.FormatUint(want.Ino, 10) {
			t.Errorf("%s = %q, want inode %d", in, got, want.Ino)
		}
	}
	var blue syscall.Stat_t
	if err := syscall.Stat(filepath.Join(e.netnsDir, "blue"), &blue); err != nil {
		t.Fatal(err)
	}
	f, err := parseEnv("netns blue", e)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.String(), "netns "+strconv.FormatUint(uint64(uint32(blue.Ino)), 10); got != want {
		t.Errorf("netns blue = %q, want %q", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	e := testEnv(t)
	for _, tc := range []struct{ in, want string }{
		{"state establised", `filter: unknown state "establised" at column 7; did you mean "established"?`},
		{"state listen", ""},
		{"state", `filter: state needs a state name, found the end at column 6`},
		{"state new-syn-recv", `filter: state "new-syn-recv" is a kernel detail at column 7; request sockets are "syn-recv"`},
		{"dpot = :80", `filter: unknown condition "dpot" at column 1; did you mean "dport"?`},
		{"xyzzy", `filter: unknown condition "xyzzy" at column 1; conditions start with state, exclude, excl, src, dst, sport, dport, autobound, pid, comm, uid, netns, cgroup, container, pod, pod_namespace, reason, family, dev, fwmark`},
		{"sport = :99999", `filter: port "99999" is out of range at column 9`},
		{"sport = :nosuch", `filter: "nosuch" is neither a port nor a TCP service in testdata/services at column 9`},
		{"dport = :domain", `filter: "domain" is neither a port nor a TCP service in testdata/services at column 9`},
		{"sport =", `filter: sport needs a port, found the end at column 8`},
		{"sport = and", `filter: sport needs a port, found "and" at column 9`},
		{"dst 10.0.0.300", `filter: an address or prefix is expected rather than "10.0.0.300" at column 5; e.g. 10.0.0.0/8, [::1], 127.0.0.1:80, localhost`},
		{"dst [::1", `filter: missing "]" in "[::1" at column 5`},
		{"dst unix:/tmp/x", `filter: unix addresses are not TCP at column 5`},
		{"dst inet6:10.0.0.1", `filter: 10.0.0.1 is not an inet6 address at column 5`},
		{"dst > 10.0.0.1", `filter: dst takes = or !=, not ">" at column 5`},
		{"( sport = :22", `filter: unclosed "(" at column 1`},
		{"sport = :22 )", `filter: unmatched ")" at column 13`},
		{"( )", `filter: empty parentheses at column 3`},
		{"sport = :22 and", `filter: a condition is missing after "and" at column 16`},
		{"sport = :22 or )", `filter: a condition is missing after "or" at column 16`},
		{"not", `filter: a condition is missing after "not" at column 4`},
		{"and", `filter: expected a condition, found "and" at column 1`},
		{"= 3", `filter: expected a condition, found "=" at column 1`},
		{"sport = :22 !!", `filter: a condition is missing after "!" at column 15`},
		{"pid abc", `filter: pid needs a number, not "abc" at column 5`},
		{"uid nosuchuser", `filter: uid needs a number, not "nosuchuser" at column 5`},
		{"comm [", `filter: bad glob "[" at column 6`},
		{"reason rst", `filter: unknown reason "rst" at column 8; did you mean "reset"?`},
		{"family inet7", `filter: unknown family "inet7" at column 8; use inet or inet6`},
		{"netns red", `filter: no network namespace "red" (` + e.netnsDir + `/red: no such file or directory) at column 7`},
		{"netns ../x", `filter: netns "../x" is not a name under ` + e.netnsDir + ` at column 7`},
		{"cgroup /nope", `filter: no cgroup "/nope" under ` + e.cgroupRoot + ` at column 8`},
		{"dst nowhere.example", `filter: cannot resolve host name "nowhere.example": no such host at column 5`},
		{"src inet6:v4only", `filter: host name "v4only" has no inet6 address at column 5`},
		{"dst 10.0.0.0/33", `filter: an address or prefix is expected rather than "10.0.0.0/33" at column 5; e.g. 10.0.0.0/8, [::1], 127.0.0.1:80, localhost`},
		{"dev", `filter: dev needs a device name or index, found the end at column 4`},
		{"dev nosuch0", `filter: no device "nosuch0" at column 5; dev takes a name or index as ip link shows them, or 0 for sockets bound to none`},
		{"dev if0", `filter: no device "if0" at column 5; dev takes a name or index as ip link shows them, or 0 for sockets bound to none`},
		{"dev 0x", `filter: no device "0x" at column 5; dev takes a name or index as ip link shows them, or 0 for sockets bound to none`},
		{"dev -1", `filter: no device "-1" at column 5; dev takes a name or index as ip link shows them, or 0 for sockets bound to none`},
		{"dev 4294967296", `filter: no device "4294967296" at column 5; dev takes a name or index as ip link shows them, or 0 for sockets bound to none`},
		{"dev > 2", `filter: dev takes = or !=, not ">" at column 5`},
		{"sport = :22 and dev = ( lo )", `filter: dev needs a device name or index, found "(" at column 23`},
		{"fwmark", `filter: fwmark needs a mark or MARK/MASK, found the end at column 7`},
		{"fwmark x10", `filter: fwmark "x10" is not a 32-bit number at column 8`},
		{"fwmark 0x100000000", `filter: fwmark "0x100000000" is not a 32-bit number at column 8`},
		{"fwmark 1/", `filter: fwmark mask "" is not a 32-bit number at column 8`},
		{"fwmark 1/2/3", `filter: fwmark mask "2/3" is not a 32-bit number at column 8`},
		{"fwmark 08", `filter: fwmark "08" is not a 32-bit number at column 8`},
		{"fwmark 1_0", `filter: fwmark "1_0" is not a 32-bit number at column 8`},
		{"fwmark < 1", `filter: fwmark takes = or !=, not "<" at column 8`},
		{"fwnark 1", `filter: unknown condition "fwnark" at column 1; did you mean "fwmark"?`},
		{"sport = :22 && & dport", `filter: expected a condition, found "&" at column 16`},
	} {
		_, err := parseEnv(tc.in, e)
		got := ""
		if err != nil {
			got = err.Error()
			if _, ok := err.(*Error); !ok {
				t.Errorf("Parse(%q) error is %T, want *Error", tc.in, err)
			}
		}
		if got != tc.want {
			t.Errorf("Parse(%q) error\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

func TestMatch(t *testing.T) {
	e := testEnv(t)
	ap := netip.MustParseAddrPort
	v4 := Subject{State: tcp.Established, Local: ap("127.0.0.1:40000"), Remote: ap("127.0.0.1:22"), NetNS: 7,
		OwnerKnown: true, PID: 42, Comm: "ssh", UIDKnown: true, UID: 1000}
	v6 := Subject{IPv6: true, State: tcp.Listen, Local: ap("[::1]:8080"), Remote: ap("[::]:0"), NetNS: 8}
	mapped := Subject{IPv6: true, State: tcp.TimeWait, Local: ap("[::ffff:10.1.2.3]:443"), Remote: ap("[::ffff:192.168.0.9]:5555")}
	closed := Subject{State: tcp.Close, Local: ap("127.0.0.1:40001"), Remote: ap("127.0.0.1:9"), Reason: tracer.ReasonRefused}
	req := Subject{State: tcp.NewSynRecv, Local: ap("127.0.0.1:80"), Remote: ap("127.0.0.1:50000")}
	subjects := map[string]*Subject{"v4": &v4, "v6": &v6, "mapped": &mapped, "closed": &closed, "req": &req}
	for _, tc := range []struct {
		expr string
		want string // names of the subjects that match, in order v4 v6 mapped closed req
	}{
		{"", "v4 v6 mapped closed req"},
		{"state established", "v4"},
		{"state connected", "v4 mapped req"},
		{"state synchronized", "v4 mapped req"},
		{"state bucket", "mapped req"},
		{"state big", "v4 v6 closed"},
		{"state syn-recv", "req"},
		{"exclude listening exclude time-wait", "v4 closed req"},
		{"sport = :22", ""},
		{"dport = :ssh", "v4"},
		{"dport != :22", "v6 mapped closed req"},
		{"sport > :8080", "v4 closed"},
		{"sport >= :8080", "v4 v6 closed"},
		{"sport < :443", "req"},
		{"sport <= :443", "mapped req"},
		{"src 127.0.0.0/8", "v4 closed req"},
		{"src 10.0.0.0/8", "mapped"},
		{"src ::ffff:10.1.2.3", "mapped"},
		{"src [::1]", "v6"},
		{"src ::/0", "v6 mapped"},
		{"src 0.0.0.0/0", "v4 mapped closed req"},
		{"src *:8080", "v6"},
		{"src inet:*", "v4 closed req"},
		{"src inet6:*", "v6 mapped"},
		{"dst 192.168.0.9:5555", "mapped"},
		{"dst 192.168.0.9:5556", ""},
		{"dst 127.0.0.1:22 or src [::1]:8080", "v4 v6"},
		{"family inet6", "v6 mapped"},
		{"not family inet6", "v4 closed req"},
		{"netns 7", "v4"},
		{"pid 42", "v4"},
		{"not pid 42", "v6 mapped closed req"},
		{"uid >= 1000", "v4"},
		{"comm ssh", "v4"},
		{"comm s?h", "v4"},
		{"comm x*", ""},
		{"reason refused", "closed"},
		{"reason reset", ""},
		{"sport = :22 or sport = :80 and src 127.0.0.1", "req"},
		{"sport = :80 or sport = :40000 and src 127.0.0.1", "v4 req"},
		{"state established or state listening family inet6", "v6"},
		{"( state established or state listening ) and not family inet6", "v4"},
		{"autobound", "v4 closed"},
	} {
		f, err := parseEnv(tc.expr, e)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.expr, err)
			continue
		}
		var got []string
		for _, name := range []string{"v4", "v6", "mapped", "closed", "req"} {
			if f.Match(subjects[name]) {
				got = append(got, name)
			}
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("%q matches %q, want %q", tc.expr, g, tc.want)
		}
	}
}

func TestCgroupMatch(t *testing.T) {
	e := testEnv(t)
	f, err := parseEnv("cgroup /system.slice/nginx.service", e)
	if err != nil {
		t.Fatal(err)
	}
	id := func(p string) uint64 {
		t.Helper()
		fi, err := os.Stat(filepath.Join(e.cgroupRoot, p))
		if err != nil {
			t.Fatal(err)
		}
		return statIno(fi)
	}
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"system.slice/nginx.service", true},
		{"system.slice/nginx.service/worker", true},
		{"system.slice", false},
	} {
		s := Subject{OwnerKnown: true, Cgroup: id(tc.path)}
		if got := f.Match(&s); got != tc.want {
			t.Errorf("cgroup of %s: match %v, want %v", tc.path, got, tc.want)
		}
	}
	// A cgroup made after the filter was parsed is found by a rescan.
	late := filepath.Join(e.cgroupRoot, "system.slice/nginx.service/late")
	if err := os.Mkdir(late, 0o755); err != nil {
		t.Fatal(err)
	}
	f.root.(*cgroupNode).cg.scanned = f.root.(*cgroupNode).cg.scanned.Add(-2e9)
	if s := (Subject{OwnerKnown: true, Cgroup: id("system.slice/nginx.service/late")}); !f.Match(&s) {
		t.Error("a cgroup made after parsing does not match")
	}
	if s := (Subject{Cgroup: id("system.slice/nginx.service")}); f.Match(&s) {
		t.Error("a socket without an owner matches a cgroup")
	}
}

func TestSplit(t *testing.T) {
	assumeKernelCgroups(t)
	e := testEnv(t)
	for _, tc := range []struct{ in, kernel, user string }{
		{"sport = :22", "sport = :22", ""},
		{"state established", "", "state established"},
		{"dst 127.0.0.0/8 and state established", "dst 127.0.0.0/8", "state established"},
		{"dport = :443 and dst 10.0.0.0/8 and not comm curl", "dport = :443 and dst 10.0.0.0/8", "not comm curl"},
		{"sport = :22 or comm sshd", "", "sport = :22 or comm sshd"},
		{"( sport = :22 and comm sshd ) or ( sport = :80 and pid 1 )", "sport = :22 or sport = :80", "( sport = :22 and comm sshd ) or ( sport = :80 and pid = 1 )"},
		{"not ( sport = :22 and comm sshd )", "", "not ( sport = :22 and comm sshd )"},
		{"family inet6 netns 5 cgroup /system.slice", "family inet6 and netns 5 and cgroup /system.slice", ""},
	} {
		f, err := parseEnv(tc.in, e)
		if err != nil {
			t.Fatal(err)
		}
		sp := f.Split()
		if got := sp.Kernel.String(); got != tc.kernel {
			t.Errorf("Split(%q).Kernel = %q, want %q", tc.in, got, tc.kernel)
		}
		if got := sp.User.String(); got != tc.user {
			t.Errorf("Split(%q).User = %q, want %q", tc.in, got, tc.user)
		}
	}
}

// TestListOnly: dev and fwmark are conditions on a listing's sockets.
// Parsed for a view of events they are an error at their column; parsed
// for a listing, the kernel compiler refuses the expression and explain
// says where it runs.
func TestListOnly(t *testing.T) {
	e := testEnv(t)
	e.listing = false
	for _, tc := range []struct{ in, want string }{
		{"dev lo", `filter: "dev" works in tcpstat list only (events carry no device or mark) at column 1`},
		{"sport = :22 and not fwmark 0x10/0xf0", `filter: "fwmark" works in tcpstat list only (events carry no device or mark) at column 21`},
		{"( dev", `filter: "dev" works in tcpstat list only (events carry no device or mark) at column 3`},
	} {
		_, err := parseEnv(tc.in, e)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Parse(%q) for events: %v, want %s", tc.in, err, tc.want)
		}
	}
	// The default options are a view of events'.
	if _, err := ParseWith("dev lo", Options{}); err == nil || !strings.Contains(err.Error(), "tcpstat list only") {
		t.Errorf("ParseWith(dev lo, Options{}): %v, want list only", err)
	}
	if f, err := ParseWith("dev lo", Options{Listing: true}); err != nil || !f.Uses().Device || f.Uses().Mark {
		t.Errorf("ParseWith(dev lo, listing): %v, uses %+v", err, f.Uses())
	}

	e = testEnv(t)
	for _, tc := range []struct{ in, kerr, explain string }{
		{"dev lo and sport = :22", "dev works in tcpstat list only, which checks all of the expression in user space",
			"expression: dev lo and sport = :22\n" +
				"kernel:     (nothing: dev works in tcpstat list only, which checks all of the expression in user space)\n" +
				"user space: dev lo and sport = :22\n"},
		{"not fwmark 0 or dev eth0", "dev and fwmark work in tcpstat list only, which checks all of the expression in user space", ""},
	} {
		f, err := parseEnv(tc.in, e)
		if err != nil {
			t.Fatal(err)
		}
		kf, err := f.Kernel()
		var lo *ListOnlyError
		if kf != nil || !errors.As(err, &lo) || err.Error() != tc.kerr {
			t.Errorf("Kernel(%q) = %v, %v; want a ListOnlyError %q", tc.in, kf, err, tc.kerr)
		}
		if tc.explain != "" {
			if got := f.Explain(); got != tc.explain {
				t.Errorf("Explain(%q)\n%s\nwant\n%s", tc.in, got, tc.explain)
			}
		}
		// Split still never hands them to the kernel part.
		if k := f.Split().Kernel; k != nil && (k.Uses().Device || k.Uses().Mark) {
			t.Errorf("Split(%q).Kernel = %s", tc.in, k)
		}
	}
}

// TestMatchDevMark: dev compares the bound device's index (0: unbound),
// fwmark the masked mark, as ss's run_ssfilter does.
func TestMatchDevMark(t *testing.T) {
	e := testEnv(t)
	ap := netip.MustParseAddrPort
	subjects := []struct {
		name string
		s    Subject
	}{
		{"unbound", Subject{State: tcp.Established, Local: ap("127.0.0.1:40000"), Remote: ap("127.0.0.1:22")}},
		{"lo", Subject{State: tcp.Listen, Local: ap("127.0.0.1:22"), Dev: 1, Mark: 0x10}},
		{"eth0", Subject{State: tcp.Established, Local: ap("10.0.0.1:22"), Remote: ap("10.0.0.2:5000"), Dev: 2, Mark: 0x110}},
		{"named7", Subject{State: tcp.TimeWait, Local: ap("10.0.0.1:80"), Remote: ap("10.0.0.2:5001"), Dev: 4, Mark: 0x21}},
	}
	for _, tc := range []struct{ expr, want string }{
		{"dev lo", "lo"},
		{"dev 1", "lo"},
		{"dev if1", "lo"},
		{"dev 0x1", "lo"},
		{"dev 0", "unbound"},
		{"dev != 0", "lo eth0 named7"},
		{"not dev lo", "unbound eth0 named7"},
		{"dev 7", "named7"}, // a device called "7", not index 7
		{"dev 07", ""},      // octal 7: no socket is bound to index 7
		{"dev a-long-alternative-name", "eth0"},
		{"dev lo or dev eth0", "lo eth0"},
		{"dev eth0 and sport = :22", "eth0"},
		{"fwmark 0x10", "lo"},
		{"fwmark 0", "unbound"},
		{"not fwmark 0", "lo eth0 named7"},
		{"fwmark 0x10/0xf0", "lo eth0"},
		{"fwmark 0x10/0xf", ""}, // bits outside the mask never match, as in ss
		{"fwmark 0x1/0x1", "named7"},
		{"fwmark != 0x110", "unbound lo named7"},
		{"fwmark 0x0/0xf0", "unbound"},
		{"fwmark 0/0", "unbound lo eth0 named7"},
		{"state time-wait fwmark 0x21", "named7"},
	} {
		f, err := parseEnv(tc.expr, e)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.expr, err)
			continue
		}
		var got []string
		for i := range subjects {
			if f.Match(&subjects[i].s) {
				got = append(got, subjects[i].name)
			}
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("%q matches %q, want %q", tc.expr, g, tc.want)
		}
	}
}

// TestFromSocketDevMark: a listed socket's device and mark reach the
// subject.
func TestFromSocketDevMark(t *testing.T) {
	k := snapshot.Socket{Proto: snapshot.TCP, State: tcp.Listen, Dev: 3, Mark: 0x42, MarkKnown: true}
	if s := FromSocket(&k); s.Dev != 3 || s.Mark != 0x42 {
		t.Errorf("FromSocket: Dev %d Mark %#x, want 3 0x42", s.Dev, s.Mark)
	}
}
