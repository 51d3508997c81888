package netstat

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Interface is one row of the -i table.
type Interface struct {
	Name      string `json:"name"`
	MTU       uint64 `json:"mtu"`
	RXOK      uint64 `json:"rx_ok"`
	RXErr     uint64 `json:"rx_err"`
	RXDrop    uint64 `json:"rx_drop"`
	RXOverrun uint64 `json:"rx_overrun"`
	TXOK      uint64 `json:"tx_ok"`
	TXErr     uint64 `json:"tx_err"`
	TXDrop    uint64 `json:"tx_drop"`
	TXOverrun uint64 `json:"tx_overrun"`
	Colls     uint64 `json:"collisions"`
	Flags     string `json:"flags"`
	up        bool
}

// Interface flags (include/uapi/linux/if.h).
const (
	iffUp          = 0x1
	iffBroadcast   = 0x2
	iffDebug       = 0x4
	iffLoopback    = 0x8
	iffPointopoint = 0x10
	iffNotrailers  = 0x20
	iffRunning     = 0x40
	iffNoarp       = 0x80
	iffPromisc     = 0x100
	iffAllmulti    = 0x200
	iffMaster      = 0x400
	iffSlave       = 0x800
	iffMulticast   = 0x1000
)

// flagLetters renders interface flags in net-tools' order and letters.
func flagLetters(f uint64) string {
	if f == 0 {
		return "[NO FLAGS]"
	}
	var b []byte
	for _, x := range []struct {
		bit uint64
		c   byte
	}{{iffAllmulti, 'A'}, {iffBroadcast, 'B'}, {iffDebug, 'D'}, {iffLoopback, 'L'}, {iffMulticast, 'M'},
		{iffPromisc, 'P'}, {iffNotrailers, 'N'}, {iffNoarp, 'O'}, {iffPointopoint, 'P'}, {iffSlave, 's'},
		{iffMaster, 'm'}, {iffRunning, 'R'}, {iffUp, 'U'}} {
		if f&x.bit != 0 {
			b = append(b, x.c)
		}
	}
	return string(b)
}

// ReadInterfaces reads /proc/net/dev plus each interface's flags and MTU
// from /sys/class/net, sorted by name as netstat sorts them.
func ReadInterfaces() ([]Interface, error) {
	f, err := os.Open("/proc/net/dev")
	if err != nil {
		return nil, fmt.Errorf("read interfaces: %w", err)
	}
	defer f.Close()
	ifs, err := ParseNetDev(f)
	if err != nil {
		return nil, fmt.Errorf("parse /proc/net/dev: %w", err)
	}
	// SIOCGIFFLAGS, unlike /sys/class/net/*/flags, includes the
	// operational IFF_RUNNING that netstat shows as R.
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open socket for interface flags: %w", err)
	}
	defer unix.Close(sock)
	for i := range ifs {
		if ifr, err := unix.NewIfreq(ifs[i].Name); err == nil {
			if err := unix.IoctlIfreq(sock, unix.SIOCGIFFLAGS, ifr); err == nil {
				v := uint64(ifr.Uint16())
				ifs[i].Flags = flagLetters(v)
				ifs[i].up = v&iffUp != 0
			}
		}
		if v, err := readSysUint("/sys/class/net/"+ifs[i].Name+"/mtu", 10); err == nil {
			ifs[i].MTU = v
		}
	}
	slices.SortFunc(ifs, func(a, b Interface) int { return strings.Compare(a.Name, b.Name) })
	return ifs, nil
}

func readSysUint(path string, base int) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimPrefix(strings.TrimSpace(string(b)), "0x")
	return strconv.ParseUint(s, base, 64)
}

// ParseNetDev parses /proc/net/dev into the counters netstat -i shows.
func ParseNetDev(r io.Reader) ([]Interface, error) {
	var ifs []Interface
	err := netDevRows(r, func(name string, v *[16]uint64) {
		ifs = append(ifs, Interface{Name: name,
			RXOK: v[1], RXErr: v[2], RXDrop: v[3], RXOverrun: v[4],
			TXOK: v[9], TXErr: v[10], TXDrop: v[11], TXOverrun: v[12], Colls: v[13]})
	})
	if err != nil {
		return nil, err
	}
	return ifs, nil
}

// netDevRows reads /proc/net/dev (two header lines, then "name: 8
// receive counters 8 transmit counters"), a row at a time.
func netDevRows(r io.Reader, row func(name string, v *[16]uint64)) error {
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		if n <= 2 {
			continue
		}
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			return fmt.Errorf("line %d: no interface name", n)
		}
		fs := strings.Fields(rest)
		if len(fs) < 16 {
			return fmt.Errorf("line %d: want 16 counters, got %d", n, len(fs))
		}
		var v [16]uint64
		for i := range v {
			x, err := strconv.ParseUint(fs[i], 10, 64)
			if err != nil {
				return fmt.Errorf("line %d: %w", n, err)
			}
			v[i] = x
		}
		row(strings.TrimSpace(name), &v)
	}
	return sc.Err()
}

// IfaceCounts is one line of Solaris' `-i -I IFACE interval` counts.
type IfaceCounts struct {
	Iface PacketCounts `json:"interface"`
	Total PacketCounts `json:"total"`
}

// PacketCounts are the five columns Solaris shows per side.
type PacketCounts struct {
	Name       string `json:"name"`
	InPackets  uint64 `json:"in_packets"`
	InErrs     uint64 `json:"in_errs"`
	OutPackets uint64 `json:"out_packets"`
	OutErrs    uint64 `json:"out_errs"`
	Colls      uint64 `json:"collisions"`
}

func (p *PacketCounts) add(i Interface) {
	p.InPackets += i.RXOK
	p.InErrs += i.RXErr
	p.OutPackets += i.TXOK
	p.OutErrs += i.TXErr
	p.Colls += i.Colls
}

func (p *PacketCounts) sub(q PacketCounts) {
	p.InPackets -= q.InPackets
	p.InErrs -= q.InErrs
	p.OutPackets -= q.OutPackets
	p.OutErrs -= q.OutErrs
	p.Colls -= q.Colls
}

func writeIfaceCountsHeader(w io.Writer, iface string) {
	fmt.Fprintf(w, "    input   %-6s    output            input  (Total)    output\n", iface)
	fmt.Fprintf(w, "packets errs  packets errs  colls   packets errs  packets errs  colls\n")
}

func writeIfaceCountsRow(w io.Writer, c *IfaceCounts) {
	a, t := c.Iface, c.Total
	line := fmt.Sprintf("%-7d %-5d %-7d %-5d %-6d  %-7d %-5d %-7d %-5d %-6d", a.InPackets, a.InErrs, a.OutPackets, a.OutErrs, a.Colls,
		t.InPackets, t.InErrs, t.OutPackets, t.OutErrs, t.Colls)
	fmt.Fprintln(w, strings.TrimRight(line, " "))
}

// deltaInterfaces subtracts prev's counters from cur's, by name.
func deltaInterfaces(cur, prev []Interface) []Interface {
	old := make(map[string]Interface, len(prev))
	for _, p := range prev {
		old[p.Name] = p
	}
	out := slices.Clone(cur)
	for i := range out {
		p, ok := old[out[i].Name]
		if !ok {
			continue
		}
		out[i].RXOK -= p.RXOK
		out[i].RXErr -= p.RXErr
		out[i].RXDrop -= p.RXDrop
		out[i].RXOverrun -= p.RXOverrun
		out[i].TXOK -= p.TXOK
		out[i].TXErr -= p.TXErr
		out[i].TXDrop -= p.TXDrop
		out[i].TXOverrun -= p.TXOverrun
		out[i].Colls -= p.Colls
	}
	return out
}

func writeInterfacesText(w io.Writer, ifs []Interface, all bool) {
	fmt.Fprintf(w, "Kernel Interface table\n")
	fmt.Fprintf(w, "Iface             MTU    RX-OK RX-ERR RX-DRP RX-OVR    TX-OK TX-ERR TX-DRP TX-OVR Flg\n")
	for _, i := range ifs {
		if !all && !i.up {
			continue
		}
		fmt.Fprintf(w, "%-15s %5d %8d %6d %6d %-6d %8d %6d %6d %6d %s\n",
			i.Name, i.MTU, i.RXOK, i.RXErr, i.RXDrop, i.RXOverrun, i.TXOK, i.TXErr, i.TXDrop, i.TXOverrun, i.Flags)
	}
}

// Route is one row of the -r table (IPv4, /proc/net/route).
type Route struct {
	Destination netip.Addr `json:"destination"`
	Gateway     netip.Addr `json:"gateway"`
	Genmask     netip.Addr `json:"genmask"`
	Flags       string     `json:"flags"`
	Metric      uint32     `json:"metric"`
	RefCnt      int64      `json:"refcnt"`
	Use         int64      `json:"use"`
	MSS         uint64     `json:"mss"`
	Window      uint64     `json:"window"`
	IRTT        uint64     `json:"irtt"`
	Iface       string     `json:"iface"`
	Table       uint32     `json:"table,omitempty"` // with -a: the routing table's number (254: main, 255: local)
	reject      bool
}

// Route flags (include/uapi/linux/route.h, ipv6_route.h).
const (
	rtfUp        = 0x1
	rtfGateway   = 0x2
	rtfHost      = 0x4
	rtfReinstate = 0x8
	rtfDynamic   = 0x10
	rtfModified  = 0x20
	rtfReject    = 0x200
)

// ParseRoutes parses /proc/net/route: addresses are 32-bit words in host
// byte order, printed in hex. Routes that are not up are left out.
func ParseRoutes(r io.Reader) ([]Route, error) {
	var rs []Route
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		if n == 1 {
			continue
		}
		fs := strings.Fields(sc.Text())
		if len(fs) < 11 {
			return nil, fmt.Errorf("line %d: want 11 fields, got %d", n, len(fs))
		}
		var nums [11]uint64
		for i := 1; i < 11; i++ {
			base, bits := 10, 32
			switch i {
			case 1, 2, 3, 7: // addresses, flags
				base = 16
			case 4, 5: // RefCnt, Use: %d
				bits = 31
			}
			x, err := strconv.ParseUint(fs[i], base, bits)
			if err != nil {
				return nil, fmt.Errorf("line %d field %d: %w", n, i+1, err)
			}
			nums[i] = x
		}
		flags := nums[3]
		if flags&rtfUp == 0 {
			continue
		}
		rs = append(rs, Route{
			Iface: fs[0], Destination: hostWordAddr(nums[1]), Gateway: hostWordAddr(nums[2]),
			Genmask: hostWordAddr(nums[7]), Flags: routeFlags(flags), RefCnt: int64(nums[4]), Use: int64(nums[5]),
			Metric: uint32(nums[6]), MSS: nums[8], Window: nums[9], IRTT: nums[10], reject: flags&rtfReject != 0,
		})
	}
	return rs, sc.Err()
}

func hostWordAddr(v uint64) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], uint32(v))
	return netip.AddrFrom4(b)
}

// routeFlags writes net-tools' letters: a reject route shows "!" in place
// of U and G.
func routeFlags(f uint64) string {
	var b []byte
	for _, x := range []struct {
		bit uint64
		c   byte
	}{{rtfUp, 'U'}, {rtfGateway, 'G'}, {rtfReject, '!'}, {rtfHost, 'H'}, {rtfReinstate, 'R'}, {rtfDynamic, 'D'}, {rtfModified, 'M'}} {
		if f&x.bit != 0 {
			if x.bit == rtfReject {
				b = b[:0]
			}
			b = append(b, x.c)
		}
	}
	return string(b)
}

func readRoutes() ([]Route, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return nil, fmt.Errorf("read routes: %w", err)
	}
	defer f.Close()
	rs, err := ParseRoutes(f)
	if err != nil {
		return nil, fmt.Errorf("parse /proc/net/route: %w", err)
	}
	return rs, nil
}

// writeRoutesText writes net-tools' IPv4 table: without -e the MSS
// layout, with -e the Metric layout, with -ee both.
func writeRoutesText(w io.Writer, rs []Route, numeric bool, extend int) {
	fmt.Fprintf(w, "Kernel IP routing table\n")
	switch extend {
	case 0:
		fmt.Fprintf(w, "Destination     Gateway         Genmask         Flags   MSS Window  irtt Iface\n")
	case 1:
		fmt.Fprintf(w, "Destination     Gateway         Genmask         Flags Metric Ref    Use Iface\n")
	default:
		fmt.Fprintf(w, "Destination     Gateway         Genmask         Flags Metric Ref    Use Iface    MSS   Window irtt\n")
	}
	for _, r := range rs {
		dst := r.Destination.String()
		if !numeric && r.Destination.IsUnspecified() {
			dst = "default"
		}
		switch {
		case extend == 0 && r.reject:
			fmt.Fprintf(w, "%-15s -               %-15s %-5s     - -          - -\n", dst, r.Genmask, r.Flags)
		case extend == 0:
			fmt.Fprintf(w, "%-15s %-15s %-15s %-5s %5d %-6d %5d %s\n", dst, r.Gateway, r.Genmask, r.Flags, r.MSS, r.Window, r.IRTT, r.Iface)
		case extend == 1 && r.reject:
			fmt.Fprintf(w, "%-15s -               %-15s %-5s %-6d -  %7d -\n", dst, r.Genmask, r.Flags, r.Metric, r.Use)
		case r.reject:
			fmt.Fprintf(w, "%-15s -               %-15s %-5s %-6d -  %7d -        -     -      -\n", dst, r.Genmask, r.Flags, r.Metric, r.Use)
		case extend == 1:
			fmt.Fprintf(w, "%-15s %-15s %-15s %-5s %-6d %-2d %7d %s\n", dst, r.Gateway, r.Genmask, r.Flags, r.Metric, r.RefCnt, r.Use, r.Iface)
		default:
			fmt.Fprintf(w, "%-15s %-15s %-15s %-5s %-6d %-3d %6d %-6.6s   %-5d %-6d %d\n", dst, r.Gateway, r.Genmask, r.Flags, r.Metric, r.RefCnt, r.Use, r.Iface, r.MSS, r.Window, r.IRTT)
		}
	}
}

// Group is one multicast membership (-g).
type Group struct {
	Interface string     `json:"interface"`
	RefCnt    uint64     `json:"refcnt"`
	Group     netip.Addr `json:"group"`
}

// ParseIGMP parses /proc/net/igmp: an interface line ("1\tlo        : …") then
// its groups ("\t\t\t\t010000E0 1 …"), each group a host-order hex word.
func ParseIGMP(r io.Reader) ([]Group, error) {
	var gs []Group
	var dev string
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if n == 1 {
			continue
		}
		fs := strings.Fields(line)
		if !strings.HasPrefix(line, "\t") {
			if len(fs) < 2 {
				return nil, fmt.Errorf("line %d: no device", n)
			}
			// "%-10s:" runs a long name into its colon ("cni-podman0:");
			// device names cannot contain one (dev_valid_name).
			dev, _, _ = strings.Cut(fs[1], ":")
			continue
		}
		if len(fs) < 2 || dev == "" {
			return nil, fmt.Errorf("line %d: group without a device", n)
		}
		a, err := strconv.ParseUint(fs[0], 16, 32)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		users, err := strconv.ParseUint(fs[1], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		gs = append(gs, Group{Interface: dev, RefCnt: users, Group: hostWordAddr(a)})
	}
	return gs, sc.Err()
}

// ParseIGMP6 parses /proc/net/igmp6: "idx dev addr users …", the address
// as 32 hex digits in network byte order.
func ParseIGMP6(r io.Reader) ([]Group, error) {
	var gs []Group
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 || len(fs[2]) != 32 {
			return nil, fmt.Errorf("line %d: want idx, device, 32-digit address and users", n)
		}
		var b [16]byte
		for i := range b {
			x, err := strconv.ParseUint(fs[2][2*i:2*i+2], 16, 8)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			b[i] = byte(x)
		}
		users, err := strconv.ParseUint(fs[3], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		gs = append(gs, Group{Interface: fs[1], RefCnt: users, Group: netip.AddrFrom16(b)})
	}
	return gs, sc.Err()
}

func readGroups(c *Config) ([]Group, error) {
	var all []Group
	for _, f := range []struct {
		path  string
		v6    bool
		parse func(io.Reader) ([]Group, error)
	}{{"/proc/net/igmp", false, ParseIGMP}, {"/proc/net/igmp6", true, ParseIGMP6}} {
		if (f.v6 && c.IPv4 && !c.IPv6) || (!f.v6 && c.IPv6 && !c.IPv4) {
			continue
		}
		file, err := os.Open(f.path)
		if os.IsNotExist(err) {
			continue // IPv6 disabled, or no IGMP
		}
		if err != nil {
			return nil, fmt.Errorf("read multicast groups: %w", err)
		}
		gs, err := f.parse(file)
		file.Close()
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", f.path, err)
		}
		all = append(all, gs...)
	}
	return all, nil
}

func writeGroupsText(w io.Writer, gs []Group) {
	fmt.Fprintf(w, "IPv6/IPv4 Group Memberships\n")
	fmt.Fprintf(w, "Interface       RefCnt Group\n")
	fmt.Fprintf(w, "--------------- ------ ---------------------\n")
	for _, g := range gs {
		fmt.Fprintf(w, "%-15s %-6d %s\n", g.Interface, g.RefCnt, g.Group)
	}
}
