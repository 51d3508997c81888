package netstat

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

var (
	netipZero  netip.Addr
	netipZero4 = netip.IPv4Unspecified()
	cmpAddr    = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
)

// oursJSON runs a listing with --json and decodes its document.
func oursJSON(t *testing.T, args ...string) jsonDoc {
	t.Helper()
	var doc jsonDoc
	if err := json.Unmarshal([]byte(ours(t, append(args, "--json")...)), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestNetToMediaMatchesIP compares --arp with ip neigh in the test
// namespace: the permanent entries it made, with their flags and
// hardware addresses, and no row ip does not know.
func TestNetToMediaMatchesIP(t *testing.T) {
	inNetns(t, func(t *testing.T) {
		needRoot(t, "ip")
		type entry struct{ Dst, Dev, Lladdr string }
		neigh := func(family string) map[entry]bool {
			var es []entry
			if err := json.Unmarshal([]byte(theirs(t, "ip", "-j", family, "neigh", "show")), &es); err != nil {
				t.Fatal(err)
			}
			m := map[entry]bool{}
			for _, e := range es {
				m[e] = true
			}
			return m
		}
		before4, before6 := neigh("-4"), neigh("-6")
		doc := oursJSON(t, "--arp", "-n")
		after4, after6 := neigh("-4"), neigh("-6")
		for _, want := range []Neighbor{
			{Family: "inet", Iface: nsVethA, Mask: "255.255.255.255", HWAddr: "02:00:00:00:00:03", Flags: "S"},
			{Family: "inet", Iface: nsBridge, Mask: "255.255.255.255", HWAddr: "02:00:00:00:00:fe", Flags: "S"},
			{Family: "inet6", Iface: nsVethA, HWAddr: "02:00:00:00:00:03", Flags: "S", State: "PERMANENT"},
		} {
			found := slices.ContainsFunc(doc.NetToMedia, func(n Neighbor) bool {
				n.Address = netipZero
				return n == want
			})
			if !found {
				t.Errorf("--arp lacks %+v:\n%+v", want, doc.NetToMedia)
			}
		}
		for _, n := range doc.NetToMedia {
			e := entry{n.Address.String(), n.Iface, n.HWAddr}
			known := before4[e] || after4[e]
			if n.Family == "inet6" {
				known = before6[e] || after6[e]
			}
			if !known {
				t.Errorf("--arp shows %+v, which ip neigh does not", n)
			}
		}
		text := ours(t, "--arp", "-n")
		for _, line := range []string{
			"Net to Media Table: IPv4\n",
			fmt.Sprintf("%-6s %-20s %-15s %-8s %s\n", nsVethA, "10.5.0.3", "255.255.255.255", "S", "02:00:00:00:00:03"),
			"Net to Media Table: IPv6\n",
			fmt.Sprintf("%-5s %-17s  %-7s %-12s %s\n", nsVethA, "02:00:00:00:00:03", "other", "PERMANENT", "2001:db8::3"),
		} {
			if !strings.Contains(text, line) {
				t.Errorf("--arp -n lacks %q:\n%s", line, text)
			}
		}
	})
}

// TestMemoryCountsSockets opens sockets in a namespace of its own (the
// counters are per namespace) and wants -m to count exactly them, as
// ss -s does.
func TestMemoryCountsSockets(t *testing.T) {
	inNetns(t, func(t *testing.T) {
		needRoot(t, "ss")
		for i := 0; i < 3; i++ {
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
		}
		for i := 0; i < 2; i++ {
			u, err := net.ListenPacket("udp6", "[::1]:0")
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
		}
		doc := oursJSON(t, "-m")
		got := map[string]int64{}
		for _, l := range doc.Memory.Sockstat {
			got[l.Proto] = l.Values["inuse"]
		}
		want := map[string]int64{"TCP": 3, "UDP": 0, "RAW": 0, "TCP6": 0, "UDP6": 2, "RAW6": 0}
		for proto, n := range want {
			if got[proto] != n {
				t.Errorf("-m: %s inuse %d, want %d", proto, got[proto], n)
			}
		}
		// ss -s's table: "TCP  3  3  0" (total, IP, IPv6), per namespace.
		ss := theirs(t, "ss", "-s")
		for _, p := range []string{"TCP", "UDP"} {
			m := regexp.MustCompile(`(?m)^` + p + `\s+(\d+)\s+(\d+)\s+(\d+)\s*$`).FindStringSubmatch(ss)
			want := []string{strconv.FormatInt(got[p], 10), strconv.FormatInt(got[p+"6"], 10)}
			if m == nil || !slices.Equal(m[2:], want) {
				t.Errorf("ss -s counts %s %v, -m %v:\n%s", p, m, want, ss)
			}
		}
		if !slices.ContainsFunc(doc.Memory.Protocols, func(p Protocol) bool { return p.Name == "TCP" && p.Size > 0 && p.Sockets == 3 }) {
			t.Errorf("-m protocols: no TCP line with 3 sockets: %+v", doc.Memory.Protocols)
		}
		text := ours(t, "-m")
		if !strings.Contains(text, fmt.Sprintf("%-8s%7d", "TCP", 3)) {
			t.Errorf("-m text:\n%s", text)
		}
	})
}

// Multicast routing API (include/uapi/linux/mroute.h).
const (
	mrtInit   = 200
	mrtAddVIF = 202
	mrtAddMFC = 204
)

// TestMulticastMatchesIP makes the namespace a multicast router (two
// virtual interfaces and one forwarding entry) and compares -M with
// ip mroute; -Ms counts them. On a kernel without multicast routing
// (CONFIG_IP_MROUTE), which refuses MRT_INIT, -M must list empty tables as
// ip mroute lists nothing.
func TestMulticastMatchesIP(t *testing.T) {
	inNetns(t, func(t *testing.T) {
		needRoot(t, "ip")
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_IGMP)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IP, mrtInit, 1)
		if errors.Is(err, unix.ENOPROTOOPT) {
			checkNoMulticastRouting(t)
			return
		}
		if err != nil {
			t.Fatalf("MRT_INIT: %v", err)
		}
		for vif, name := range []string{nsVethA, nsBridge} {
			ifc, err := net.InterfaceByName(name)
			if err != nil {
				t.Fatal(err)
			}
			var vc [16]byte // struct vifctl
			binary.NativeEndian.PutUint16(vc[0:], uint16(vif))
			vc[2] = viffUseIfindex
			vc[3] = 1 // threshold
			binary.NativeEndian.PutUint32(vc[8:], uint32(ifc.Index))
			if err := unix.SetsockoptString(fd, unix.IPPROTO_IP, mrtAddVIF, string(vc[:])); err != nil {
				t.Fatalf("MRT_ADD_VIF %s: %v", name, err)
			}
		}
		var mc [60]byte // struct mfcctl
		copy(mc[0:], net.ParseIP("10.5.0.9").To4())
		copy(mc[4:], net.ParseIP("239.1.2.3").To4())
		binary.NativeEndian.PutUint16(mc[8:], 0) // parent vif
		mc[10+1] = 1                             // ttl on vif 1
		if err := unix.SetsockoptString(fd, unix.IPPROTO_IP, mrtAddMFC, string(mc[:])); err != nil {
			t.Fatalf("MRT_ADD_MFC: %v", err)
		}

		doc := oursJSON(t, "-M", "-f", "inet")
		wantVIFs := []VIF{{Index: 0, Iface: nsVethA, Flags: viffUseIfindex, Remote: netipZero4},
			{Index: 1, Iface: nsBridge, Flags: viffUseIfindex, Remote: netipZero4}}
		if diff := cmp.Diff(wantVIFs, doc.Multicast.VIFs, cmpAddr); diff != "" {
			t.Errorf("-M vifs (-want +got):\n%s", diff)
		}
		// ip mroute: "(10.5.0.9, 239.1.2.3)  Iif: abcdefghijklmno  Oifs: cni-podman0  State: resolved"
		ref := theirs(t, "ip", "mroute", "show")
		m := regexp.MustCompile(`\(([^,]+), ?([^)]+)\)\s+Iif: (\S+)\s+Oifs: (\S+)`).FindStringSubmatch(ref)
		if m == nil || len(doc.Multicast.Cache) != 1 {
			t.Fatalf("ip mroute %q, -M cache %+v", ref, doc.Multicast.Cache)
		}
		e := doc.Multicast.Cache[0]
		got := []string{e.Origin.String(), e.Group.String(), wantVIFs[e.InVIF].Iface}
		for _, o := range e.Oifs {
			got = append(got, wantVIFs[o.VIF].Iface)
		}
		if diff := cmp.Diff(m[1:], got); diff != "" {
			t.Errorf("ip mroute vs -M (-ip +tcpstat):\n%s", diff)
		}
		text := ours(t, "-M", "-f", "inet")
		for _, line := range []string{
			fmt.Sprintf("%4d %-15s %-15s %-15s %7d %8d %11d %11d %05X\n", 1, nsBridge, "-", "0.0.0.0", 0, 0, 0, 0, viffUseIfindex),
			fmt.Sprintf(" %-24s %-24s %8d %10d %8d %-18s %s\n", "10.5.0.9", "239.1.2.3", 0, 0, 0, "0("+nsVethA+")", "1("+nsBridge+"):1"),
		} {
			if !strings.Contains(text, line) {
				t.Errorf("-M lacks %q:\n%s", line, text)
			}
		}
		st := oursJSON(t, "-Ms").MulticastStats
		if st.VIFs != 2 || st.CacheEntries != 1 || st.Unresolved != 0 {
			t.Errorf("-Ms: %+v, want 2 vifs and 1 resolved entry", st)
		}
		// IPv6 has no router here: both tables are empty, as ip says.
		if out := strings.TrimSpace(theirs(t, "ip", "-6", "mroute", "show")); out != "" {
			t.Fatalf("ip -6 mroute: %q", out)
		}
		if text6 := ours(t, "-M", "-f", "inet6"); text6 != "IPv6 Virtual Interface Table is empty\n\nIPv6 Multicast Forwarding Cache is empty\n\n" {
			t.Errorf("-M -f inet6:\n%s", text6)
		}
	})
}

// TestInterfaceCountsRepeat runs -i -I lo with an interval: the header,
// then a first line since boot that lies between two readings of
// /proc/net/dev, then deltas.
func TestInterfaceCountsRepeat(t *testing.T) {
	needRoot(t)
	before, err := ReadInterfaces()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]string{"-i", "-I", "lo", "0.01", "3"})
	if err != nil {
		t.Fatal(err)
	}
	var out, warn bytes.Buffer
	if err := Run(context.Background(), c, &out, &warn); err != nil {
		t.Fatal(err)
	}
	after, _ := ReadInterfaces()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "    input   lo        output") {
		t.Fatalf("-i -I lo 0.01 3:\n%s", out.String())
	}
	lo := func(ifs []Interface) Interface {
		i := slices.IndexFunc(ifs, func(i Interface) bool { return i.Name == "lo" })
		return ifs[i]
	}
	first := strings.Fields(lines[2])
	v, _ := strconv.ParseUint(first[0], 10, 64)
	if v < lo(before).RXOK || v > lo(after).RXOK {
		t.Errorf("lo input packets %d, /proc/net/dev %d then %d", v, lo(before).RXOK, lo(after).RXOK)
	}
	var sum uint64
	for _, l := range lines[3:] {
		d, _ := strconv.ParseUint(strings.Fields(l)[0], 10, 64)
		sum += d
	}
	if v+sum > lo(after).RXOK {
		t.Errorf("deltas %d on %d exceed the later reading %d", sum, v, lo(after).RXOK)
	}
	if _, err := Parse([]string{"-i", "-I", "no-such-if0", "1", "1"}); err != nil {
		t.Fatal(err)
	}
	c, _ = Parse([]string{"-i", "-I", "no-such-if0"})
	if err := Run(context.Background(), c, &out, &warn); err == nil || !strings.Contains(err.Error(), `no interface is named "no-such-if0"`) {
		t.Errorf("-I no-such-if0: %v", err)
	}
}

// TestVerboseAndDHCP: -v lists what netstat lists and notes the rest on
// stderr; -D is one line.
func TestVerboseAndDHCP(t *testing.T) {
	needRoot(t, "netstat")
	ports := liveSockets(t)
	want := ports.rows(theirs(t, "netstat", "-tanv"))
	c, err := Parse([]string{"-tanv"})
	if err != nil {
		t.Fatal(err)
	}
	var out, warn bytes.Buffer
	if err := Run(context.Background(), c, &out, &warn); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, ports.rows(out.String())); diff != "" || len(want) == 0 {
		t.Errorf("netstat -tanv vs tcpstat (-netstat +tcpstat):\n%s", diff)
	}
	if warn.String() != verboseNote+"\n" {
		t.Errorf("-v stderr: %q", warn.String())
	}
	if got := ours(t, "-D"); got != dhcpNote+"\n" || strings.Count(got, "\n") != 1 {
		t.Errorf("-D: %q", got)
	}
}

// checkNoMulticastRouting checks -M where the kernel has no IPv4 multicast
// routing: no table in /proc, nothing from ip mroute, empty tables from us.
func checkNoMulticastRouting(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/proc/net/ip_mr_vif"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("MRT_INIT refused, yet /proc/net/ip_mr_vif: %v", err)
	}
	if ref := strings.TrimSpace(theirs(t, "ip", "mroute", "show")); ref != "" {
		t.Fatalf("MRT_INIT refused, yet ip mroute lists %q", ref)
	}
	doc := oursJSON(t, "-M", "-f", "inet")
	if doc.Multicast == nil || len(doc.Multicast.VIFs) != 0 || len(doc.Multicast.Cache) != 0 {
		t.Errorf("-M without multicast routing: %+v, want empty tables", doc.Multicast)
	}
	text := ours(t, "-M", "-f", "inet")
	if want := "Virtual Interface Table is empty\n\nMulticast Forwarding Cache is empty\n"; !strings.HasPrefix(text, want) {
		t.Errorf("-M without multicast routing:\n%s\nwant it to begin %q", text, want)
	}
}
