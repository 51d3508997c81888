package netstat

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpstat/tcpstat/internal/golden"
	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/tcp"
)

// fixedSockets covers every column and cutting rule of the text layout.
var fixedSockets = []snapshot.Socket{
	{Proto: snapshot.TCP, State: tcp.Listen, Local: netip.MustParseAddrPort("0.0.0.0:22"), Remote: netip.MustParseAddrPort("0.0.0.0:0"),
		Inode: 1501, SendQ: 128, Owners: []snapshot.Owner{{PID: 812, Comm: "sshd", Cmd: "sshd"}, {PID: 9, Cmd: "init"}}},
	{Proto: snapshot.TCP, State: tcp.Established, Local: netip.MustParseAddrPort("10.1.2.3:22"), Remote: netip.MustParseAddrPort("10.9.8.7:51234"),
		Inode: 99, UID: 1000, RecvQ: 5, SendQ: 36, Timer: snapshot.TimerKeepalive, TimerLeft: 7184320 * time.Millisecond,
		Owners: []snapshot.Owner{{PID: 123456, Cmd: "a-very-long-program-name"}}},
	{Proto: snapshot.TCP, State: tcp.TimeWait, Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("127.0.0.1:40000"),
		Timer: snapshot.TimerTimeWait, TimerLeft: 59710 * time.Millisecond},
	{Proto: snapshot.TCP, State: tcp.NewSynRecv, Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("127.0.0.1:40001"),
		Timer: snapshot.TimerRetrans, TimerLeft: 200 * time.Millisecond, Retrans: 1},
	{Proto: snapshot.TCP, IPv6: true, State: tcp.Established, Local: netip.MustParseAddrPort("[2001:db8:1234:5678:9abc:def0:1234:5678]:443"),
		Remote: netip.MustParseAddrPort("[2001:db8::2]:60000"), Inode: 7},
	{Proto: snapshot.UDP, State: tcp.Close, Local: netip.MustParseAddrPort("0.0.0.0:68"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), Inode: 8},
	{Proto: snapshot.UDP, IPv6: true, State: tcp.Established, Local: netip.MustParseAddrPort("[::1]:5353"), Remote: netip.MustParseAddrPort("[::1]:53"), Inode: 9},
	{Proto: snapshot.RAW, State: tcp.Close, Local: netip.MustParseAddrPort("0.0.0.0:1"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), Inode: 10},
}

var fixedUnix = []snapshot.Socket{
	{Proto: snapshot.UNIX, State: tcp.Listen, UnixType: snapshot.UnixStream, RefCnt: 2, Inode: 2001, Path: "/run/dbus/system_bus_socket",
		Owners: []snapshot.Owner{{PID: 1, Cmd: "systemd"}}},
	{Proto: snapshot.UNIX, State: tcp.Established, UnixType: snapshot.UnixStream, RefCnt: 3, Inode: 2002},
	{Proto: snapshot.UNIX, State: tcp.Close, UnixType: snapshot.UnixDgram, RefCnt: 2, Inode: 2003, Path: "@abstract name"},
	{Proto: snapshot.UNIX, State: tcp.SynSent, UnixType: snapshot.UnixSeqPacket, RefCnt: 2, Inode: 2004},
}

func render(t *testing.T, args []string) string {
	t.Helper()
	c, err := Parse(args)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	tw := &textWriter{w: w, c: &c, names: newNames(), ctx: context.Background()}
	sel := c.selection()
	if len(sel.inet) > 0 {
		tw.header(true)
		for i := range fixedSockets {
			if c.wanted(&fixedSockets[i]) {
				tw.inetRow(&fixedSockets[i])
			}
		}
	}
	if sel.unix {
		tw.header(false)
		for i := range fixedUnix {
			if c.wanted(&fixedUnix[i]) {
				tw.unixRow(&fixedUnix[i])
			}
		}
	}
	w.Flush()
	return buf.String()
}

func TestGoldenLayouts(t *testing.T) {
	for _, args := range [][]string{{"-tuwanpeoW"}, {"-tuwanpeo"}, {"-tn"}, {"-tln"}, {"-xap"}, {"-xl"}} {
		name := strings.TrimLeft(strings.Join(args, "_"), "-")
		t.Run(name, func(t *testing.T) {
			got := render(t, args)
			golden.Check(t, "list_"+name+".golden", []byte(got))
		})
	}
	t.Run("statistics", func(t *testing.T) {
		secs, err := ParseCounters(strings.NewReader(sampleSNMP))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		writeStatsText(&buf, secs, nil)
		golden.Check(t, "statistics.golden", buf.Bytes())
	})
}

const sampleSNMP = `Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes ReasmTimeout ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates OutTransmits
Ip: 2 64 9195 0 0 0 0 0 9195 5017 0 3 0 0 0 0 0 0 0 5017
Icmp: InMsgs InErrors InCsumErrors InDestUnreachs InTimeExcds OutMsgs OutErrors OutDestUnreachs OutEchos
Icmp: 1 0 0 1 0 2 0 0 2
IcmpMsg: InType3 OutType8
IcmpMsg: 1 2
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 37 2 0 0 0 9116 4959 0 0 2 0
TcpExt: SyncookiesSent TW DelayedACKLost TCPTimeouts
TcpExt: 0 35 2 2
`

func TestDelta(t *testing.T) {
	prev := []Section{{Name: "Tcp", Keys: []string{"ActiveOpens", "CurrEstab"}, Values: []int64{10, 5}}}
	cur := []Section{{Name: "Tcp", Keys: []string{"ActiveOpens", "CurrEstab"}, Values: []int64{14, 3}}}
	want := []Section{{Name: "Tcp", Keys: []string{"ActiveOpens", "CurrEstab"}, Values: []int64{4, 3}}}
	if diff := cmp.Diff(want, Delta(cur, prev)); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestParseTables(t *testing.T) {
	ifs, err := ParseNetDev(strings.NewReader("Inter-|   Receive\n face |bytes\n    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0\n  eth0: 250 9173 1 2 3 0 0 0 439 5003 4 5 6 0 0 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Interface{{Name: "lo", RXOK: 29, TXOK: 29}, {Name: "eth0", RXOK: 9173, RXErr: 1, RXDrop: 2, RXOverrun: 3, TXOK: 5003, TXErr: 4, TXDrop: 5, TXOverrun: 6}}
	if diff := cmp.Diff(want, ifs, cmp.AllowUnexported(Interface{})); diff != "" {
		t.Errorf("netdev (-want +got)\n%s", diff)
	}
	if flagLetters(0x1043) != "BMRU" || flagLetters(0x49) != "LRU" {
		t.Errorf("flag letters: %q %q", flagLetters(0x1043), flagLetters(0x49))
	}
	// A 15-character name fills "%-10s" and runs into the colon.
	gs, err := ParseIGMP(strings.NewReader("Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n" +
		"1\tlo        :     1      V3\n\t\t\t\t010000E0     1 0:00000000\t\t0\n" +
		"4\tcni-podman0:     2      V3\n\t\t\t\t6A0000E0     1 0:00000000\t\t0\n"))
	wantGroups := []Group{{Interface: "lo", RefCnt: 1, Group: netip.MustParseAddr("224.0.0.1")},
		{Interface: "cni-podman0", RefCnt: 1, Group: netip.MustParseAddr("224.0.0.106")}}
	if diff := cmp.Diff(wantGroups, gs, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); err != nil || diff != "" {
		t.Errorf("igmp: %v (-want +got)\n%s", err, diff)
	}
	gs, err = ParseIGMP6(strings.NewReader("1    lo              ff020000000000000000000000000001     1 0000000C 0\n"))
	if err != nil || len(gs) != 1 || gs[0].Group != netip.MustParseAddr("ff02::1") {
		t.Errorf("igmp6: %v %v", gs, err)
	}
	for _, bad := range []string{"x\ny\nlo: 1 2\n", "a\nb\nlo: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x\n"} {
		if _, err := ParseNetDev(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseNetDev(%q): want an error", bad)
		}
	}
	if _, err := ParseCounters(strings.NewReader("Tcp: A B\nTcp: 1\n")); err == nil {
		t.Error("ParseCounters with a missing value: want an error")
	}
}

func FuzzParseCounters(f *testing.F) {
	f.Add([]byte(sampleSNMP))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseCounters(bytes.NewReader(b))
		ParseNetDev(bytes.NewReader(b))
		ParseRoutes(bytes.NewReader(b))
		ParseIGMP(bytes.NewReader(b))
		ParseIGMP6(bytes.NewReader(b))
	})
}

// TestGoldenJSON pins the documented JSON field names (docs/list.md).
func TestGoldenJSON(t *testing.T) {
	c, err := Parse([]string{"-tuwxo"})
	if err != nil {
		t.Fatal(err)
	}
	doc := jsonDoc{Time: "2026-01-02T03:04:05Z"}
	for i := range fixedSockets {
		doc.Sockets = append(doc.Sockets, toJSON(&fixedSockets[i], &c))
	}
	for i := range fixedUnix {
		doc.Sockets = append(doc.Sockets, toJSON(&fixedUnix[i], &c))
	}
	keys, counts := summarize(fixedSockets, fixedUnix)
	for _, k := range keys {
		doc.Summary = append(doc.Summary, jsonCount{k.Proto, k.State, counts[k]})
	}
	doc.Interfaces = []Interface{{Name: "lo", MTU: 65536, RXOK: 1, TXOK: 1, Flags: "LRU"}}
	doc.Routes = []Route{{Destination: netip.MustParseAddr("0.0.0.0"), Gateway: netip.MustParseAddr("192.0.2.1"),
		Genmask: netip.MustParseAddr("0.0.0.0"), Flags: "UG", Iface: "eth0"}}
	doc.Groups = []Group{{Interface: "lo", RefCnt: 1, Group: netip.MustParseAddr("224.0.0.1")}}
	var buf bytes.Buffer
	if err := writeJSON(&buf, &doc); err != nil {
		t.Fatal(err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, buf.Bytes(), "", "  "); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "list.json.golden", pretty.Bytes())
}
