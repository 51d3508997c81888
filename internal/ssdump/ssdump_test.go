package ssdump

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpstat/tcpstat/internal/tcp"
)

var addrCmp = cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })

const sample = `State      Recv-Q Send-Q    Local Address:Port     Peer Address:PortProcess
LISTEN     0      128            [::1]:57847         [::]:*     users:(("python3",pid=31774,fd=3)) ino:671261 sk:3b818 cgroup:/ v6only:1 <->
	 bbr cwnd:10
ESTAB      0      0          127.0.0.1:36891    127.0.0.1:42722 users:(("list bench",pid=30831,fd=2679),("sh",pid=7,fd=4)) timer:(keepalive,11sec,0) uid:1000 ino:460942 sk:3b80b cgroup:/ <->
	 ts sack bbr wscale:10,10 rto:200 rtt:0.002/0.001 mss:32768
TIME-WAIT  0      0          127.0.0.1:51764    127.0.0.1:36605 timer:(timewait,56sec,0) ino:0 sk:3b816
LISTEN     5      4096               *:22                 *:*   ino:1 sk:1 cgroup:/ <->
SYN-SENT   0      1      [fe80::1]%eth0:40000   [fe80::2]:443   users:(("curl",pid=9,fd=5)) ino:9 sk:ff
FIN-WAIT-2 0      0     127.0.0.53%lo:53        127.0.0.1:50000 timer:(timewait,59sec,0) ino:0 sk:10
FIN-WAIT-1 0      -577178654 127.0.0.1:50001    127.0.0.1:80    ino:0 sk:11
`

func TestParse(t *testing.T) {
	ap := netip.MustParseAddrPort
	want := []Socket{
		{State: tcp.Listen, RecvQ: 0, SendQ: 128, Local: ap("[::1]:57847"), Remote: ap("[::]:0"),
			Users: []User{{"python3", 31774, 3}}, Inode: 671261, Cookie: 0x3b818},
		{State: tcp.Established, Local: ap("127.0.0.1:36891"), Remote: ap("127.0.0.1:42722"),
			Users: []User{{"list bench", 30831, 2679}, {"sh", 7, 4}}, UID: 1000, Inode: 460942, Cookie: 0x3b80b, Timer: "keepalive"},
		{State: tcp.TimeWait, Local: ap("127.0.0.1:51764"), Remote: ap("127.0.0.1:36605"), Cookie: 0x3b816, Timer: "timewait"},
		{State: tcp.Listen, RecvQ: 5, SendQ: 4096, Local: ap("[::]:22"), Remote: ap("[::]:0"), Inode: 1, Cookie: 1},
		{State: tcp.SynSent, SendQ: 1, Local: ap("[fe80::1]:40000"), Remote: ap("[fe80::2]:443"),
			Users: []User{{"curl", 9, 5}}, Inode: 9, Cookie: 0xff},
		{State: tcp.FinWait2, Local: ap("127.0.0.53:53"), Remote: ap("127.0.0.1:50000"), Cookie: 0x10, Timer: "timewait"},
		// ss prints the kernel's u32 with %d (a 5.10 guest, CI).
		{State: tcp.FinWait1, SendQ: 1<<32 - 577178654, Local: ap("127.0.0.1:50001"), Remote: ap("127.0.0.1:80"), Cookie: 0x11},
	}
	got, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, addrCmp); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"ESTAB 0 0 127.0.0.1:1", "want at least 5 fields"},
		{"WEIRD 0 0 127.0.0.1:1 127.0.0.1:2", `unknown state "WEIRD"`},
		{"ESTAB x 0 127.0.0.1:1 127.0.0.1:2", "receive queue"},
		{"ESTAB 0 4294967296 127.0.0.1:1 127.0.0.1:2", `send queue "4294967296": out of a 32-bit range`},
		{"ESTAB 0 -2147483649 127.0.0.1:1 127.0.0.1:2", "send queue"},
		{"ESTAB 0 0 127.0.0.1 127.0.0.1:2", "has no port"},
		{"ESTAB 0 0 127.0.0.1:99999 127.0.0.1:2", "port in"},
		{"ESTAB 0 0 [::1:1 127.0.0.1:2", "unmatched ["},
		{"ESTAB 0 0 300.0.0.1:1 127.0.0.1:2", "address in"},
		{"ESTAB 0 0 127.0.0.1:1 127.0.0.1:2 sk:xyz", "socket cookie"},
		{`ESTAB 0 0 127.0.0.1:1 127.0.0.1:2 users:(("a",pid=x,fd=1)) sk:1`, "pid"},
		{`ESTAB 0 0 127.0.0.1:1 127.0.0.1:2 users:(("a",fd=1)) sk:1`, "no pid"},
		{`ESTAB 0 0 127.0.0.1:1 127.0.0.1:2 users:(("a",pid=1 sk:1`, "unterminated users"},
	} {
		_, err := Parse(strings.NewReader(tc.line + "\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) error = %v, want one containing %q", tc.line, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, l := range strings.Split(sample, "\n") {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line string) {
		socks, err := Parse(strings.NewReader(line))
		if lines := strings.Count(line, "\n") + 1; err == nil && len(socks) > lines {
			t.Errorf("%d lines gave %d sockets", lines, len(socks))
		}
	})
}
