package netstat

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/tcpstat/tcpstat/internal/golden"
)

// Fixtures in the kernel's own formats, with 15-character names and one
// of every kind of row the layouts treat apart.
const (
	fixtureRoute = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n" +
		"abcdefghijklmno\t0000050A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
		"abcdefghijklmno\t0900080A\t0200050A\t0007\t0\t0\t7\tFFFFFFFF\t1400\t0\t0\n" +
		"*\t0000090A\t00000000\t0201\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
	fixtureRoute6 = "20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001 abcdefghijklmno\n" +
		"20010db8000500000000000000000000 30 00000000000000000000000000000000 00 20010db8000000000000000000000002 00000400 00000001 00000000 00000003 abcdefghijklmno\n" +
		"00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000003 00000000 80200001       lo\n" +
		"00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n" +
		"20010db8000600000000000000000001 80 00000000000000000000000000000000 00 20010db8000000000000000000000002 00000000 00000001 00000000 01000003 abcdefghijklmno\n"
	fixtureIfInet6 = "20010db8000000000000000000000001 03 40 00 80 abcdefghijklmno\n" +
		"fe80000000000000106e55fffea2e2b1 03 40 20 80 abcdefghijklmno\n" +
		"00000000000000000000000000000001 01 80 10 80       lo\n"
	fixtureSockstat  = "sockets: used 250\nTCP: inuse 10 orphan 1 tw 2 alloc 12 mem 3\nUDP: inuse 5 mem 2\nUDPLITE: inuse 0\nRAW: inuse 1\nFRAG: inuse 0 memory 0\n"
	fixtureSockstat6 = "TCP6: inuse 3\nUDP6: inuse 2\nUDPLITE6: inuse 0\nRAW6: inuse 0\nFRAG6: inuse 0 memory 0\n"
	fixtureProtocols = "protocol  size sockets  memory press maxhdr  slab module     cl co di ac io in de sh ss gs se re bi br ha uh gp em\n" +
		"UNIX-STREAM 1152     12      -1   NI       0   yes  kernel      y  n  n  n  n  n  n  n  n  n  n  n  n  n  n  n  n  n\n" +
		"TCP       2304     10      3   no     320   yes  kernel      y  y  y  y  y  y  y  y  y  y  y  y  y  n  y  y  y  y\n"
	fixtureMrVIF = "Interface      BytesIn  PktsIn  BytesOut PktsOut Flags Local    Remote\n" +
		" 0 abcdefghijklmno     1000      10      2000      20 00008 00000003 00000000\n" +
		" 1 eth1              0       0         0       0 00000 0201A8C0 00000000\n"
	fixtureMrCache = "Group    Origin   Iif     Pkts    Bytes    Wrong Oifs\n" +
		"030201EF 0900050A 0          5      500        1  1:1    0:2  \n" +
		"040201EF 0A00050A -1         0        0        0\n"
	fixtureMr6VIF   = "Interface      BytesIn  PktsIn  BytesOut PktsOut Flags\n 0 eth0              0       0         0       0 00000\n"
	fixtureMr6Cache = "Group                            Origin                           Iif      Pkts  Bytes     Wrong  Oifs\n" +
		"ff0e:0000:0000:0000:0000:0000:0000:0001 2001:0db8:0000:0000:0000:0000:0000:0009 0          2      200        0  0:1  \n"
	fixtureARP = "IP address       HW type     Flags       HW address            Mask     Device\n" +
		"10.5.0.3         0x1         0x6         02:00:00:00:00:03     *        abcdefghijklmno\n" +
		"10.5.0.7         0x1         0x0         00:00:00:00:00:00     *        eth0\n" +
		"10.9.0.0         0x1         0xc         00:00:00:00:00:00     255.255.0.0 eth0\n"
	fixtureNetDev = "Inter-|   Receive                                                |  Transmit\n" +
		" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n" +
		"    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0\n" +
		"abcdefghijklmno: 1500000 9173 1 2 3 4 0 0 2200000000 5003 4 5 6 7 8 0\n"
)

// must returns v, or panics (failing the test) on a fixture that does
// not parse.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// fixtureIfaces is the -ie listing of the fixtures.
func fixtureIfaces(t *testing.T) []IfaceDetail {
	c := must(ParseNetDevFull(strings.NewReader(fixtureNetDev)))
	a6 := must(ParseIfInet6(strings.NewReader(fixtureIfInet6)))
	return []IfaceDetail{
		{Name: "abcdefghijklmno", FlagBits: 0x1043, FlagNames: ifconfigFlagNames(0x1043), MTU: 1500,
			IPv4: netip.MustParseAddr("10.5.0.1"), Netmask: netip.MustParseAddr("255.255.255.0"), Broadcast: netip.MustParseAddr("10.5.0.255"),
			IPv6: a6[:2], HWType: "ether", HWAddr: "12:6e:55:a2:e2:b1", TxQueueLen: 1000, Counters: c["abcdefghijklmno"], up: true},
		{Name: "lo", FlagBits: 0x49, FlagNames: ifconfigFlagNames(0x49), MTU: 65536,
			IPv4: netip.MustParseAddr("127.0.0.1"), Netmask: netip.MustParseAddr("255.0.0.0"),
			IPv6: a6[2:], HWType: "loop", TxQueueLen: 1000, Counters: c["lo"], up: true},
		{Name: "tun0", FlagBits: 0x10, MTU: 1500, HWType: "unspec", TxQueueLen: 500},
	}
}

// TestGoldenForms pins the text layout of every form but sockets and -s
// (TestGoldenLayouts) on fixtures.
func TestGoldenForms(t *testing.T) {
	routes := must(ParseRoutes(strings.NewReader(fixtureRoute)))
	routes6 := must(ParseRoutes6(strings.NewReader(fixtureRoute6)))
	parseCfg := func(args ...string) *Config {
		c := must(Parse(args))
		return &c
	}
	var mem SocketMemory
	var lines6 []SockstatLine
	mem.SocketsUsed, mem.Sockstat = must2(ParseSockstat(strings.NewReader(fixtureSockstat)))
	_, lines6 = must2(ParseSockstat(strings.NewReader(fixtureSockstat6)))
	mem.Sockstat = append(mem.Sockstat, lines6...)
	mem.Protocols = must(ParseProtocols(strings.NewReader(fixtureProtocols)))
	mc := &Multicast{
		VIFs:   must(ParseMrVIF(strings.NewReader(fixtureMrVIF), false)),
		Cache:  must(ParseMrCache(strings.NewReader(fixtureMrCache), false)),
		VIFs6:  must(ParseMrVIF(strings.NewReader(fixtureMr6VIF), true)),
		Cache6: must(ParseMrCache(strings.NewReader(fixtureMr6Cache), true)),
	}
	neigh := must(ParseARP(strings.NewReader(fixtureARP)))
	neigh = append(neigh, Neighbor{Family: "inet6", Iface: "abcdefghijklmno", Address: netip.MustParseAddr("2001:db8::3"), HWAddr: "02:00:00:00:00:03", Flags: "S", State: "PERMANENT"},
		Neighbor{Family: "inet6", Iface: "eth0", Address: netip.MustParseAddr("fe80::1"), HWAddr: "02:00:00:00:00:01", State: "REACHABLE", Router: true})
	ifs := must(ParseNetDev(strings.NewReader(fixtureNetDev)))
	for i := range ifs {
		ifs[i].up, ifs[i].MTU, ifs[i].Flags = true, 1500, "BMRU"
	}
	groups := must(ParseIGMP(strings.NewReader("Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n" +
		"4\tabcdefghijklmno:     2      V3\n\t\t\t\t6A0000E0     1 0:00000000\t\t0\n")))

	for name, write := range map[string]func(w *bytes.Buffer){
		"routes":          func(w *bytes.Buffer) { writeRoutesText(w, routes, true, 0) },
		"routes_e":        func(w *bytes.Buffer) { writeRoutesText(w, routes, true, 1) },
		"routes_ee":       func(w *bytes.Buffer) { writeRoutesText(w, routes, false, 2) },
		"routes6":         func(w *bytes.Buffer) { writeRoutes6Text(w, routes6, netip.Addr.String, false) },
		"routes6_names":   func(w *bytes.Buffer) { writeRoutes6Text(w, routes6, fixtureNames, false) },
		"routes6_cache":   func(w *bytes.Buffer) { writeRoutes6Text(w, routes6, netip.Addr.String, true) },
		"routes_cache":    func(w *bytes.Buffer) { writeRouteCacheText(w, 0) },
		"routes_cache_ee": func(w *bytes.Buffer) { writeRouteCacheText(w, 2) },
		"interfaces":      func(w *bytes.Buffer) { writeInterfacesText(w, ifs, false) },
		"ifconfig":        func(w *bytes.Buffer) { writeIfconfigText(w, fixtureIfaces(t), true) },
		"groups":          func(w *bytes.Buffer) { writeGroupsText(w, groups) },
		"memory":          func(w *bytes.Buffer) { writeMemoryText(w, &mem) },
		"multicast":       func(w *bytes.Buffer) { writeMulticastText(w, mc, parseCfg("-M")) },
		"multicast_stats": func(w *bytes.Buffer) {
			writeMulticastStatsText(w, &McastStats{VIFs: 2, CacheEntries: 2, Unresolved: 1, Forwarded: 5, ForwardedB: 500, WrongIf: 1, InMcast: 7, OutMcast: 8, InMcast6: 9, OutMcast6: 10})
		},
		"net_to_media": func(w *bytes.Buffer) {
			writeNeighborsText(context.Background(), w, neigh, parseCfg("--arp", "-n"), newNames())
		},
		"dhcp": func(w *bytes.Buffer) { w.WriteString(dhcpNote + "\n") },
		"interface_counts": func(w *bytes.Buffer) {
			writeIfaceCountsHeader(w, "abcdefghijklmno")
			c := IfaceCounts{Iface: PacketCounts{InPackets: 227681, OutPackets: 659471, OutErrs: 1, Colls: 502},
				Total: PacketCounts{InPackets: 261331, OutPackets: 99597, OutErrs: 1, Colls: 502}}
			writeIfaceCountsRow(w, &c)
			writeIfaceCountsRow(w, &IfaceCounts{Iface: PacketCounts{InPackets: 10}, Total: PacketCounts{InPackets: 10}})
		},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			write(&buf)
			golden.Check(t, "form_"+name+".golden", buf.Bytes())
		})
	}

	t.Run("json", func(t *testing.T) {
		doc := jsonDoc{Time: "2026-01-02T03:04:05Z", IntervalSeconds: 2, Delta: true,
			InterfaceDetails: fixtureIfaces(t)[:1], InterfaceCounts: &IfaceCounts{Iface: PacketCounts{Name: "eth0", InPackets: 1}, Total: PacketCounts{Name: "(Total)", InPackets: 2}},
			Routes: routes[:1], Routes6: routes6[:2], Memory: &mem, Multicast: mc, MulticastStats: &McastStats{VIFs: 2},
			DHCP: dhcpNote, NetToMedia: neigh[:1]}
		var buf, pretty bytes.Buffer
		if err := writeJSON(&buf, &doc); err != nil {
			t.Fatal(err)
		}
		if err := json.Indent(&pretty, buf.Bytes(), "", "  "); err != nil {
			t.Fatal(err)
		}
		golden.Check(t, "forms.json.golden", pretty.Bytes())
	})
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}

// fixtureNames names addresses as netstat does without -n, with an
// /etc/hosts that maps ::1 to localhost.
func fixtureNames(a netip.Addr) string {
	switch {
	case a.IsUnspecified():
		return "[::]"
	case a == netip.IPv6Loopback():
		return "localhost"
	}
	return a.String()
}

// TestRouteFilters checks the Solaris filter semantics on fixture rows.
func TestRouteFilters(t *testing.T) {
	routes := must(ParseRoutes(strings.NewReader(fixtureRoute)))
	routes6 := must(ParseRoutes6(strings.NewReader(fixtureRoute6)))
	for _, tt := range []struct {
		filters []string
		want    []string // destinations kept
	}{
		{nil, []string{"0.0.0.0", "10.5.0.0", "10.8.0.9", "10.9.0.0", "2001:db8::", "2001:db8:5::", "::1", "::", "2001:db8:6::1"}},
		{[]string{"outif:abcdefghijklmno"}, []string{"10.5.0.0", "10.8.0.9", "2001:db8::", "2001:db8:5::", "2001:db8:6::1"}},
		{[]string{"outif:abcdefghijklmno", "outif:eth0"}, []string{"0.0.0.0", "10.5.0.0", "10.8.0.9", "2001:db8::", "2001:db8:5::", "2001:db8:6::1"}},
		{[]string{"outif:none"}, []string{"10.9.0.0"}},
		{[]string{"dst:10.0.0.0/8"}, []string{"10.5.0.0", "10.8.0.9", "10.9.0.0"}},
		{[]string{"dst:10.8.0.0/16"}, []string{"10.8.0.9"}},
		{[]string{"dst:10.5.0.0/16"}, []string{"10.5.0.0"}},
		{[]string{"dst:10.5.0.0/28"}, nil}, // 10.5.0.0/24 is less specific
		{[]string{"dst:2001:db8::/32", "flags:+G"}, []string{"2001:db8:5::", "2001:db8:6::1"}},
		{[]string{"flags:+U-G"}, []string{"10.5.0.0", "2001:db8::", "::1"}},
		{[]string{"flags:UGH"}, []string{"10.8.0.9"}},
		{[]string{"dst:none"}, []string{"0.0.0.0", "::"}},
		{[]string{"dst:any", "outif:lo"}, []string{"::1"}},
		{[]string{"src:none", "flags:!"}, []string{"10.9.0.0"}},
	} {
		var fs []RouteFilter
		for _, f := range tt.filters {
			fs = append(fs, must(parseRouteFilter(f)))
		}
		var got []string
		for i := range routes {
			if matchRoute(fs, routes[i].key()) {
				got = append(got, routes[i].Destination.String())
			}
		}
		for i := range routes6 {
			if matchRoute(fs, routes6[i].key()) {
				got = append(got, routes6[i].Destination.Addr().String())
			}
		}
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("-f %v: %v, want %v", tt.filters, got, tt.want)
		}
	}
}

func TestBytesUnit(t *testing.T) {
	for v, want := range map[uint64]string{0: "0.0 B", 414: "414.0 B", 1024: "1024.0 B", 1025: "1.0 KiB", 1536: "1.5 KiB",
		2200000000: "2.0 GiB", 1 << 62: "4.0 EiB"} {
		if got := bytesUnit(v); got != want {
			t.Errorf("bytesUnit(%d) = %q, want %q", v, got, want)
		}
	}
}

// FuzzParseProc feeds every /proc parser the same bytes: none may panic.
func FuzzParseProc(f *testing.F) {
	for _, s := range []string{fixtureRoute, fixtureRoute6, fixtureIfInet6, fixtureSockstat, fixtureProtocols, fixtureMrVIF,
		fixtureMrCache, fixtureMr6VIF, fixtureMr6Cache, fixtureARP, fixtureNetDev} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseRoutes(bytes.NewReader(b))
		ParseRoutes6(bytes.NewReader(b))
		ParseIfInet6(bytes.NewReader(b))
		ParseNetDevFull(bytes.NewReader(b))
		ParseSockstat(bytes.NewReader(b))
		ParseProtocols(bytes.NewReader(b))
		ParseMrVIF(bytes.NewReader(b), false)
		ParseMrVIF(bytes.NewReader(b), true)
		ParseMrCache(bytes.NewReader(b), false)
		ParseMrCache(bytes.NewReader(b), true)
		ParseARP(bytes.NewReader(b))
		for _, f := range strings.Fields(string(b)) {
			parseRouteFilter(f)
		}
	})
}

// FuzzParseNetlink feeds the rtnetlink dump parsers arbitrary bytes.
func FuzzParseNetlink(f *testing.F) {
	name := func(i uint32) string { return "if" }
	f.Add([]byte{})
	f.Add([]byte{16, 0, 0, 0, 3, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	// An RTM_NEWROUTE for 10.5.0.0/24 dev 3, and an RTM_NEWNEIGH.
	f.Add([]byte{44, 0, 0, 0, 24, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 24, 0, 0, 254, 2, 0, 1, 0, 0, 0, 0,
		8, 0, 1, 0, 10, 5, 0, 0, 8, 0, 4, 0, 3, 0, 0, 0})
	f.Add([]byte{48, 0, 0, 0, 28, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 3, 0, 0, 0, 128, 0, 0, 1,
		20, 0, 1, 0, 32, 1, 13, 184, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		parseRouteDump(b, name)
		parseNeighDump(b, name)
	})
}
