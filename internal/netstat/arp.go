package netstat

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Neighbor is one row of the net-to-media table (--arp, Solaris' -p):
// an ARP entry (/proc/net/arp) or an IPv6 neighbour (rtnetlink, the only
// place Linux shows them).
type Neighbor struct {
	Family  string     `json:"family"` // inet or inet6
	Iface   string     `json:"iface"`
	Address netip.Addr `json:"address"`
	Mask    string     `json:"mask,omitempty"` // IPv4: the proxy entry's mask, "255.255.255.255" otherwise
	HWAddr  string     `json:"hw_addr"`
	Flags   string     `json:"flags"`           // Solaris' letters: S static, P published, U unresolved
	State   string     `json:"state,omitempty"` // IPv6: REACHABLE, STALE, … as ip neigh names them
	Router  bool       `json:"router,omitempty"`
}

// ARP flags (include/uapi/linux/if_arp.h).
const (
	atfCom  = 0x02
	atfPerm = 0x04
	atfPubl = 0x08
)

// ParseARP parses /proc/net/arp: address, hardware type, flags (hex),
// hardware address, mask, device.
func ParseARP(r io.Reader) ([]Neighbor, error) {
	var ns []Neighbor
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		if n == 1 {
			continue
		}
		fs := strings.Fields(sc.Text())
		if len(fs) != 6 {
			return nil, fmt.Errorf("line %d: want 6 fields, got %d", n, len(fs))
		}
		a, err := netip.ParseAddr(fs[0])
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("line %d: address %q", n, fs[0])
		}
		flags, err := strconv.ParseUint(strings.TrimPrefix(fs[2], "0x"), 16, 32)
		if err != nil {
			return nil, fmt.Errorf("line %d: flags %q", n, fs[2])
		}
		mask := fs[4]
		if mask == "*" {
			mask = "255.255.255.255"
		}
		ns = append(ns, Neighbor{Family: "inet", Iface: fs[5], Address: a, Mask: mask, HWAddr: fs[3], Flags: arpFlags(flags)})
	}
	return ns, sc.Err()
}

func arpFlags(f uint64) string {
	var b []byte
	if f&atfPerm != 0 {
		b = append(b, 'S')
	}
	if f&atfPubl != 0 {
		b = append(b, 'P')
	}
	if f&atfCom == 0 {
		b = append(b, 'U')
	}
	return string(b)
}

// Neighbour states (include/uapi/linux/neighbour.h), named as ip neigh.
var nudNames = []struct {
	bit  uint16
	name string
}{{0x01, "INCOMPLETE"}, {0x02, "REACHABLE"}, {0x04, "STALE"}, {0x08, "DELAY"}, {0x10, "PROBE"},
	{0x20, "FAILED"}, {0x40, "NOARP"}, {0x80, "PERMANENT"}}

const (
	ndaDst    = 1
	ndaLLAddr = 2
	ntfRouter = 0x80
	ntfProxy  = 0x08
	ndmsgLen  = 12 // struct ndmsg
)

// parseNeighDump converts an RTM_GETNEIGH dump of IPv6 neighbours
// (struct ndmsg and its attributes per message) into rows.
func parseNeighDump(b []byte, names func(uint32) string) ([]Neighbor, error) {
	var ns []Neighbor
	err := walkNetlink(b, func(typ uint16, m []byte) error {
		if typ != unix.RTM_NEWNEIGH {
			return nil
		}
		if len(m) < ndmsgLen {
			return fmt.Errorf("neighbour message of %d bytes", len(m))
		}
		if m[0] != unix.AF_INET6 {
			return nil
		}
		ifindex := binary.NativeEndian.Uint32(m[4:])
		state := binary.NativeEndian.Uint16(m[8:])
		flags := m[10]
		n := Neighbor{Family: "inet6", Iface: names(ifindex), Router: flags&ntfRouter != 0}
		err := walkRtAttrs(m[ndmsgLen:], func(at uint16, v []byte) {
			switch {
			case at == ndaDst && len(v) == 16:
				n.Address = netip.AddrFrom16([16]byte(v))
			case at == ndaLLAddr:
				n.HWAddr = net.HardwareAddr(v).String()
			}
		})
		if err != nil {
			return err
		}
		if !n.Address.IsValid() || flags&ntfProxy != 0 {
			return nil
		}
		var st []string
		for _, s := range nudNames {
			if state&s.bit != 0 {
				st = append(st, s.name)
			}
		}
		n.State = strings.Join(st, ",")
		if state == 0 {
			n.State = "NONE"
		}
		if state&0x80 != 0 {
			n.Flags += "S"
		}
		if state&(0x01|0x20) != 0 || n.HWAddr == "" {
			n.Flags += "U"
		}
		ns = append(ns, n)
		return nil
	})
	return ns, err
}

func readNeighbors(c *Config) ([]Neighbor, error) {
	var ns []Neighbor
	if c.IPv4 || !c.IPv6 {
		f, err := os.Open("/proc/net/arp")
		if err != nil {
			return nil, fmt.Errorf("read ARP table: %w", err)
		}
		arp, err := ParseARP(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("parse /proc/net/arp: %w", err)
		}
		ns = append(ns, arp...)
	}
	if c.IPv6 || !c.IPv4 {
		rib, err := syscall.NetlinkRIB(unix.RTM_GETNEIGH, unix.AF_INET6)
		if err != nil {
			return nil, fmt.Errorf("dump IPv6 neighbours: %w", err)
		}
		nd, err := parseNeighDump(rib, ifaceName)
		if err != nil {
			return nil, err
		}
		for _, n := range nd {
			// As ip neigh: multicast mappings (NOARP) only with -a.
			if c.All || n.State != "NOARP" {
				ns = append(ns, n)
			}
		}
	}
	return ns, nil
}

// writeNeighborsText writes Solaris' net-to-media tables (netstat -p).
func writeNeighborsText(ctx context.Context, w io.Writer, ns []Neighbor, c *Config, nm *names) {
	v4, v6 := c.IPv4 || !c.IPv6, c.IPv6 || !c.IPv4
	host := func(a netip.Addr) string {
		if c.NumericHosts {
			return a.String()
		}
		return nm.host(ctx, a)
	}
	if v4 {
		fmt.Fprintf(w, "Net to Media Table: IPv4\n")
		fmt.Fprintf(w, "Device   IP Address               Mask      Flags      Phys Addr\n")
		fmt.Fprintf(w, "------ -------------------- --------------- -------- ---------------\n")
		for _, n := range ns {
			if n.Family == "inet" {
				fmt.Fprintf(w, "%-6s %-20s %-15s %-8s %s\n", n.Iface, host(n.Address), n.Mask, n.Flags, n.HWAddr)
			}
		}
	}
	if v4 && v6 {
		fmt.Fprintln(w)
	}
	if v6 {
		fmt.Fprintf(w, "Net to Media Table: IPv6\n")
		fmt.Fprintf(w, " If   Physical Address    Type      State      Destination/Mask\n")
		fmt.Fprintf(w, "----- -----------------  ------- ------------ ---------------------------\n")
		for _, n := range ns {
			if n.Family != "inet6" {
				continue
			}
			typ := "other"
			if n.Router {
				typ = "router"
			}
			fmt.Fprintf(w, "%-5s %-17s  %-7s %-12s %s\n", n.Iface, n.HWAddr, typ, n.State, host(n.Address))
		}
	}
}
