package netstat

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// IfaceDetail is one interface of the -ie (ifconfig-style) listing: the
// -i row's counters and what ifconfig adds.
type IfaceDetail struct {
	Name        string      `json:"name"`
	FlagBits    uint16      `json:"flag_bits"`
	FlagNames   []string    `json:"flag_names"`
	MTU         uint64      `json:"mtu"`
	IPv4        netip.Addr  `json:"ipv4,omitzero"` // the primary address, as SIOCGIFADDR gives it
	Netmask     netip.Addr  `json:"netmask,omitzero"`
	Broadcast   netip.Addr  `json:"broadcast,omitzero"`
	Destination netip.Addr  `json:"destination,omitzero"`
	IPv6        []IfAddr6   `json:"ipv6,omitempty"`
	HWType      string      `json:"hw_type"` // net-tools' name: ether, loop, unspec
	HWAddr      string      `json:"hw_addr,omitempty"`
	TxQueueLen  int64       `json:"txqueuelen"` // -1: unknown
	Counters    DevCounters `json:"counters"`
	up          bool
}

// IfAddr6 is one line of /proc/net/if_inet6.
type IfAddr6 struct {
	Address   netip.Addr `json:"address"`
	PrefixLen int        `json:"prefixlen"`
	Scope     uint32     `json:"scope"`
	Iface     string     `json:"-"`
}

// DevCounters are every counter of a /proc/net/dev line.
type DevCounters struct {
	RXBytes      uint64 `json:"rx_bytes"`
	RXPackets    uint64 `json:"rx_packets"`
	RXErrs       uint64 `json:"rx_errs"`
	RXDrop       uint64 `json:"rx_drop"`
	RXFIFO       uint64 `json:"rx_fifo"`
	RXFrame      uint64 `json:"rx_frame"`
	RXCompressed uint64 `json:"rx_compressed"`
	RXMulticast  uint64 `json:"rx_multicast"`
	TXBytes      uint64 `json:"tx_bytes"`
	TXPackets    uint64 `json:"tx_packets"`
	TXErrs       uint64 `json:"tx_errs"`
	TXDrop       uint64 `json:"tx_drop"`
	TXFIFO       uint64 `json:"tx_fifo"`
	TXColls      uint64 `json:"tx_colls"`
	TXCarrier    uint64 `json:"tx_carrier"`
	TXCompressed uint64 `json:"tx_compressed"`
}

// ParseNetDevFull parses /proc/net/dev keeping all 16 counters.
func ParseNetDevFull(r io.Reader) (map[string]DevCounters, error) {
	m := make(map[string]DevCounters)
	err := netDevRows(r, func(name string, v *[16]uint64) {
		m[name] = DevCounters{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15]}
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// ParseIfInet6 parses /proc/net/if_inet6: address (32 hex digits),
// index, prefix length, scope, flags (hex) and device.
func ParseIfInet6(r io.Reader) ([]IfAddr6, error) {
	var as []IfAddr6
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		fs := strings.Fields(sc.Text())
		if len(fs) != 6 {
			return nil, fmt.Errorf("line %d: want 6 fields, got %d", n, len(fs))
		}
		a, err := hexAddr16(fs[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		plen, err := strconv.ParseUint(fs[2], 16, 8)
		if err != nil || plen > 128 {
			return nil, fmt.Errorf("line %d: prefix length %q", n, fs[2])
		}
		scope, err := strconv.ParseUint(fs[3], 16, 32)
		if err != nil {
			return nil, fmt.Errorf("line %d: scope %q", n, fs[3])
		}
		as = append(as, IfAddr6{Address: a, PrefixLen: int(plen), Scope: uint32(scope), Iface: fs[5]})
	}
	return as, sc.Err()
}

// ifconfigFlags are the names net-tools prints, in its order.
var ifconfigFlags = []struct {
	bit  uint16
	name string
}{{iffUp, "UP"}, {iffBroadcast, "BROADCAST"}, {iffDebug, "DEBUG"}, {iffLoopback, "LOOPBACK"}, {iffPointopoint, "POINTOPOINT"},
	{iffNotrailers, "NOTRAILERS"}, {iffRunning, "RUNNING"}, {iffNoarp, "NOARP"}, {iffPromisc, "PROMISC"}, {iffAllmulti, "ALLMULTI"},
	{iffSlave, "SLAVE"}, {iffMaster, "MASTER"}, {iffMulticast, "MULTICAST"}}

func ifconfigFlagNames(bits uint16) []string {
	var names []string
	for _, fl := range ifconfigFlags {
		if bits&fl.bit != 0 {
			names = append(names, fl.name)
		}
	}
	return names
}

// hwTypes are the ARPHRD_* types net-tools names; the rest are "unspec".
var hwTypes = map[uint64]struct{ name, title string }{
	1:   {"ether", "Ethernet"},
	772: {"loop", "Local Loopback"},
}

// readIfaceDetails gathers the -ie listing the way net-tools does: the
// interface list and counters from /proc/net/dev, flags and the primary
// IPv4 address by ioctl, IPv6 addresses from /proc/net/if_inet6, the
// hardware address, type and queue length from /sys/class/net.
func readIfaceDetails() ([]IfaceDetail, error) {
	ifs, err := ReadInterfaces()
	if err != nil {
		return nil, err
	}
	f, err := os.Open("/proc/net/dev")
	if err != nil {
		return nil, fmt.Errorf("read interfaces: %w", err)
	}
	counters, err := ParseNetDevFull(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("parse /proc/net/dev: %w", err)
	}
	var addrs6 []IfAddr6
	if f, err := os.Open("/proc/net/if_inet6"); err == nil {
		addrs6, err = ParseIfInet6(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("parse /proc/net/if_inet6: %w", err)
		}
	}
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open socket for interface addresses: %w", err)
	}
	defer unix.Close(sock)
	out := make([]IfaceDetail, 0, len(ifs))
	for _, i := range ifs {
		d := IfaceDetail{Name: i.Name, MTU: i.MTU, Counters: counters[i.Name], up: i.up, TxQueueLen: -1, HWType: "unspec"}
		if ifr, err := unix.NewIfreq(i.Name); err == nil && unix.IoctlIfreq(sock, unix.SIOCGIFFLAGS, ifr) == nil {
			d.FlagBits = ifr.Uint16()
		}
		d.FlagNames = ifconfigFlagNames(d.FlagBits)
		if a, ok := ifAddr(sock, i.Name, unix.SIOCGIFADDR); ok {
			d.IPv4 = a
			d.Netmask, _ = ifAddr(sock, i.Name, unix.SIOCGIFNETMASK)
			if d.FlagBits&iffBroadcast != 0 {
				d.Broadcast, _ = ifAddr(sock, i.Name, unix.SIOCGIFBRDADDR)
			}
			if d.FlagBits&iffPointopoint != 0 {
				d.Destination, _ = ifAddr(sock, i.Name, unix.SIOCGIFDSTADDR)
			}
		}
		for _, a := range addrs6 {
			if a.Iface == i.Name {
				d.IPv6 = append(d.IPv6, a)
			}
		}
		sys := "/sys/class/net/" + i.Name + "/"
		if t, err := readSysUint(sys+"type", 10); err == nil {
			if h, ok := hwTypes[t]; ok {
				d.HWType = h.name
			}
		}
		if b, err := os.ReadFile(sys + "address"); err == nil {
			d.HWAddr = strings.TrimSpace(string(b))
		}
		if q, err := readSysUint(sys+"tx_queue_len", 10); err == nil {
			d.TxQueueLen = int64(q)
		}
		out = append(out, d)
	}
	return out, nil
}

// ifAddr reads one IPv4 address of an interface by ioctl.
func ifAddr(sock int, name string, req uint) (netip.Addr, bool) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return netip.Addr{}, false
	}
	if err := unix.IoctlIfreq(sock, req, ifr); err != nil {
		return netip.Addr{}, false
	}
	b, err := ifr.Inet4Addr()
	if err != nil {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(b)), true
}

// bytesUnit writes a byte count as net-tools does: "(414.0 B)", "(1.5 KiB)".
func bytesUnit(v uint64) string {
	short, unit := v*10, "B"
	for _, u := range []struct {
		size uint64
		name string
	}{{1 << 60, "EiB"}, {1 << 50, "PiB"}, {1 << 40, "TiB"}, {1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if v > u.size {
			short, unit = v*10/u.size, u.name
			if u.name == "EiB" { // v*10 would overflow
				short = v / (u.size / 10)
			}
			break
		}
	}
	return fmt.Sprintf("%d.%d %s", short/10, short%10, unit)
}

// scopeNames writes net-tools' <…> after an IPv6 scope id.
func scopeNames(scope uint32) string {
	const compatV4, loopback, linkLocal, siteLocal = 0x80, 0x10, 0x20, 0x40
	var names []string
	if scope&compatV4 != 0 {
		names = append(names, "compat")
		scope -= compatV4
	}
	if scope == 0 {
		names = append(names, "global")
	}
	if scope&linkLocal != 0 {
		names = append(names, "link")
	}
	if scope&siteLocal != 0 {
		names = append(names, "site")
	}
	if scope&loopback != 0 {
		names = append(names, "host")
	}
	if len(names) == 0 {
		return ""
	}
	return "<" + strings.Join(names, ",") + ">"
}

// writeIfconfigText writes net-tools 2.10's `netstat -ie` (ifconfig's
// layout): up interfaces only unless all.
func writeIfconfigText(w io.Writer, ds []IfaceDetail, all bool) {
	fmt.Fprintf(w, "Kernel Interface table\n")
	for _, d := range ds {
		if !all && !d.up {
			continue
		}
		// net-tools' quirks: no flags at all print "<", unnamed
		// ones nothing.
		names := ifconfigFlagNames(d.FlagBits)
		flags := "<" + strings.Join(names, ",") + ">"
		switch {
		case d.FlagBits == 0:
			flags = "<"
		case len(names) == 0:
			flags = ""
		}
		fmt.Fprintf(w, "%s: flags=%d%s  mtu %d\n", d.Name, d.FlagBits, flags, d.MTU)
		if d.IPv4.IsValid() {
			fmt.Fprintf(w, "        inet %s  netmask %s", d.IPv4, d.Netmask)
			if d.FlagBits&iffBroadcast != 0 {
				fmt.Fprintf(w, "  broadcast %s", addrOrZero(d.Broadcast))
			}
			if d.FlagBits&iffPointopoint != 0 {
				fmt.Fprintf(w, "  destination %s", addrOrZero(d.Destination))
			}
			fmt.Fprintln(w)
		}
		for _, a := range d.IPv6 {
			fmt.Fprintf(w, "        inet6 %s  prefixlen %d  scopeid 0x%x%s\n", a.Address, a.PrefixLen, a.Scope, scopeNames(a.Scope))
		}
		title := "UNSPEC"
		for _, h := range hwTypes {
			if h.name == d.HWType {
				title = h.title
			}
		}
		switch d.HWType {
		case "ether":
			fmt.Fprintf(w, "        ether %s", d.HWAddr)
		case "loop":
			fmt.Fprintf(w, "        loop")
		default:
			fmt.Fprintf(w, "        unspec %s", unspecAddr(d.HWAddr))
		}
		if d.TxQueueLen >= 0 {
			fmt.Fprintf(w, "  txqueuelen %d", d.TxQueueLen)
		}
		fmt.Fprintf(w, "  (%s)\n", title)
		c := d.Counters
		fmt.Fprintf(w, "        RX packets %d  bytes %d (%s)\n", c.RXPackets, c.RXBytes, bytesUnit(c.RXBytes))
		if c.RXCompressed > 0 {
			fmt.Fprintf(w, "        RX compressed %d\n", c.RXCompressed)
		}
		fmt.Fprintf(w, "        RX errors %d  dropped %d  overruns %d  frame %d\n", c.RXErrs, c.RXDrop, c.RXFIFO, c.RXFrame)
		fmt.Fprintf(w, "        TX packets %d  bytes %d (%s)\n", c.TXPackets, c.TXBytes, bytesUnit(c.TXBytes))
		if c.TXCompressed > 0 {
			fmt.Fprintf(w, "        TX compressed %d\n", c.TXCompressed)
		}
		fmt.Fprintf(w, "        TX errors %d  dropped %d overruns %d  carrier %d  collisions %d\n", c.TXErrs, c.TXDrop, c.TXFIFO, c.TXCarrier, c.TXColls)
		fmt.Fprintln(w)
	}
}

func addrOrZero(a netip.Addr) netip.Addr {
	if !a.IsValid() {
		return netip.IPv4Unspecified()
	}
	return a
}

// unspecAddr writes a hardware address as net-tools' UNSPEC type does:
// 16 bytes, upper-case hex joined by dashes, zeros past the address.
func unspecAddr(hw string) string {
	var b [16]byte
	for i, part := range strings.Split(hw, ":") {
		if x, err := strconv.ParseUint(part, 16, 8); err == nil && i < len(b) {
			b[i] = byte(x)
		}
	}
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02X", x)
	}
	return strings.Join(parts, "-")
}
