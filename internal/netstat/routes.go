package netstat

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
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

// Route6 is one row of the -r -6 table (/proc/net/ipv6_route).
type Route6 struct {
	Destination netip.Prefix `json:"destination"`
	Source      netip.Prefix `json:"source"`
	NextHop     netip.Addr   `json:"next_hop"`
	Flags       string       `json:"flags"`
	Metric      int32        `json:"metric"` // -1: 0xffffffff, as netstat shows it
	RefCnt      int32        `json:"refcnt"`
	Use         int32        `json:"use"`
	Iface       string       `json:"iface"`
	cache       bool
}

// IPv6 route flags beyond route.h's (include/uapi/linux/ipv6_route.h).
const (
	rtfDefault   = 0x10000
	rtfAllOnLink = 0x20000
	rtfAddrConf  = 0x40000
	rtfNoNextHop = 0x200000
	rtfExpires   = 0x400000
	rtfCache     = 0x1000000
	rtfFlow      = 0x2000000
)

// route6Flags writes net-tools' letters for an IPv6 route, in its order.
func route6Flags(f uint64) string {
	var b []byte
	for _, x := range []struct {
		bit uint64
		c   byte
	}{{rtfUp, 'U'}, {rtfReject, '!'}, {rtfGateway, 'G'}, {rtfHost, 'H'}, {rtfDefault, 'D'}, {rtfAddrConf, 'A'},
		{rtfCache, 'C'}, {rtfAllOnLink, 'a'}, {rtfExpires, 'e'}, {rtfModified, 'm'}, {rtfNoNextHop, 'n'}, {rtfFlow, 'f'}} {
		if f&x.bit != 0 {
			b = append(b, x.c)
		}
	}
	return string(b)
}

// ParseRoutes6 parses /proc/net/ipv6_route: destination, its length,
// source, its length, next hop (32 hex digits, network order, lengths in
// hex), then metric, refcnt, use, flags (8 hex digits each) and the device.
func ParseRoutes6(r io.Reader) ([]Route6, error) {
	var rs []Route6
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		fs := strings.Fields(sc.Text())
		if len(fs) != 10 {
			return nil, fmt.Errorf("line %d: want 10 fields, got %d", n, len(fs))
		}
		dst, err := hexPrefix(fs[0], fs[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: destination: %w", n, err)
		}
		src, err := hexPrefix(fs[2], fs[3])
		if err != nil {
			return nil, fmt.Errorf("line %d: source: %w", n, err)
		}
		hop, err := hexAddr16(fs[4])
		if err != nil {
			return nil, fmt.Errorf("line %d: next hop: %w", n, err)
		}
		var nums [4]uint64
		for i := range nums {
			if nums[i], err = strconv.ParseUint(fs[5+i], 16, 32); err != nil {
				return nil, fmt.Errorf("line %d field %d: %w", n, 6+i, err)
			}
		}
		rs = append(rs, Route6{Destination: dst, Source: src, NextHop: hop, Flags: route6Flags(nums[3]),
			Metric: int32(uint32(nums[0])), RefCnt: int32(uint32(nums[1])), Use: int32(uint32(nums[2])),
			Iface: fs[9], cache: nums[3]&rtfCache != 0})
	}
	return rs, sc.Err()
}

func hexAddr16(s string) (netip.Addr, error) {
	if len(s) != 32 {
		return netip.Addr{}, fmt.Errorf("%q is not 32 hex digits", s)
	}
	var b [16]byte
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return netip.Addr{}, err
	}
	return netip.AddrFrom16(b), nil
}

func hexPrefix(addr, length string) (netip.Prefix, error) {
	a, err := hexAddr16(addr)
	if err != nil {
		return netip.Prefix{}, err
	}
	bits, err := strconv.ParseUint(length, 16, 8)
	if err != nil || bits > 128 {
		return netip.Prefix{}, fmt.Errorf("prefix length %q", length)
	}
	return netip.PrefixFrom(a, int(bits)), nil
}

func readRoutes6() ([]Route6, error) {
	f, err := os.Open("/proc/net/ipv6_route")
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("read IPv6 routes: IPv6 is disabled in this kernel (no /proc/net/ipv6_route)")
	}
	if err != nil {
		return nil, fmt.Errorf("read IPv6 routes: %w", err)
	}
	defer f.Close()
	rs, err := ParseRoutes6(f)
	if err != nil {
		return nil, fmt.Errorf("parse /proc/net/ipv6_route: %w", err)
	}
	return rs, nil
}

// writeRoutes6Text writes net-tools' IPv6 table (or its cache with -C:
// the rows flagged C), naming addresses with host: netstat without -n
// asks getnameinfo, and shows the unspecified address as "[::]".
func writeRoutes6Text(w io.Writer, rs []Route6, host func(netip.Addr) string, cache bool) {
	if cache {
		fmt.Fprintf(w, "Kernel IPv6 routing cache\n")
	} else {
		fmt.Fprintf(w, "Kernel IPv6 routing table\n")
	}
	fmt.Fprintf(w, "Destination                    Next Hop                   Flag Met Ref  Use If\n")
	for _, r := range rs {
		if r.cache != cache {
			continue
		}
		dst := host(r.Destination.Addr()) + "/" + strconv.Itoa(r.Destination.Bits())
		fmt.Fprintf(w, "%-30s %-26s %-4s %-3d %-1d %6d %s\n", dst, host(r.NextHop), r.Flags, r.Metric, r.RefCnt, r.Use, r.Iface)
	}
}

// writeRouteCacheText writes the IPv4 routing cache: Linux removed it in
// 3.6 (/proc/net/rt_cache keeps only its header), so netstat prints the
// headings alone.
func writeRouteCacheText(w io.Writer, extend int) {
	fmt.Fprintf(w, "Kernel IP routing cache\n")
	switch extend {
	case 0:
		fmt.Fprintf(w, "Source          Destination     Gateway         Flags   MSS Window  irtt Iface\n")
	case 1:
		fmt.Fprintf(w, "Source          Destination     Gateway         Flags Metric Ref    Use Iface\n")
	default:
		fmt.Fprintf(w, "Source          Destination     Gateway         Flags Metric Ref    Use Iface    MSS   Window irtt  TOS HHRef HHUptod     SpecDst\n")
	}
}

// readAllRoutes lists every IPv4 route of every table (Solaris' -r -a, as
// `ip route show table all`) through rtnetlink; local and broadcast
// routes carry Solaris' L and B flags.
func readAllRoutes() ([]Route, error) {
	rib, err := syscall.NetlinkRIB(unix.RTM_GETROUTE, unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("dump routes: %w", err)
	}
	return parseRouteDump(rib, ifaceName)
}

// ifaceName names an interface index, or "?N" when it is gone.
func ifaceName(idx uint32) string {
	if ifc, err := net.InterfaceByIndex(int(idx)); err == nil {
		return ifc.Name
	}
	return "?" + strconv.Itoa(int(idx))
}

// parseRouteDump converts an RTM_GETROUTE dump (struct rtmsg and its
// attributes per message) into rows.
func parseRouteDump(b []byte, names func(uint32) string) ([]Route, error) {
	var rs []Route
	err := walkNetlink(b, func(typ uint16, m []byte) error {
		if typ != unix.RTM_NEWROUTE {
			return nil
		}
		if len(m) < unix.SizeofRtMsg {
			return fmt.Errorf("route message of %d bytes", len(m))
		}
		// struct rtmsg: family, dst_len, src_len, tos, table, protocol,
		// scope, type, flags.
		family, dstLen, typ8 := m[0], int(m[1]), m[7]
		if family != unix.AF_INET || dstLen > 32 {
			return nil
		}
		r := Route{Destination: netip.IPv4Unspecified(), Gateway: netip.IPv4Unspecified(), Iface: "*", Table: uint32(m[4])}
		flags := uint64(rtfUp)
		err := walkRtAttrs(m[unix.SizeofRtMsg:], func(at uint16, v []byte) {
			switch {
			case at == unix.RTA_DST && len(v) == 4:
				r.Destination = netip.AddrFrom4([4]byte(v))
			case at == unix.RTA_GATEWAY && len(v) == 4:
				r.Gateway = netip.AddrFrom4([4]byte(v))
				flags |= rtfGateway
			case at == unix.RTA_OIF && len(v) == 4:
				r.Iface = names(binary.NativeEndian.Uint32(v))
			case at == unix.RTA_PRIORITY && len(v) == 4:
				r.Metric = binary.NativeEndian.Uint32(v)
			case at == unix.RTA_TABLE && len(v) == 4:
				r.Table = binary.NativeEndian.Uint32(v)
			}
		})
		if err != nil {
			return err
		}
		r.Genmask = netip.AddrFrom4([4]byte(net.CIDRMask(dstLen, 32)))
		if dstLen == 32 && typ8 == unix.RTN_UNICAST {
			flags |= rtfHost
		}
		extra := ""
		switch typ8 {
		case unix.RTN_UNREACHABLE, unix.RTN_PROHIBIT, unix.RTN_BLACKHOLE, unix.RTN_THROW:
			flags |= rtfReject
			r.reject = true
		case unix.RTN_LOCAL:
			extra = "L"
		case unix.RTN_BROADCAST:
			extra = "B"
		}
		r.Flags = routeFlags(flags) + extra
		rs = append(rs, r)
		return nil
	})
	return rs, err
}

// walkNetlink hands each message of a netlink dump (header checked) to
// each, up to NLMSG_DONE.
func walkNetlink(b []byte, each func(typ uint16, payload []byte) error) error {
	for len(b) > 0 {
		if len(b) < unix.NLMSG_HDRLEN {
			return fmt.Errorf("netlink message header of %d bytes", len(b))
		}
		n := int(binary.NativeEndian.Uint32(b))
		typ := binary.NativeEndian.Uint16(b[4:])
		if n < unix.NLMSG_HDRLEN || n > len(b) {
			return fmt.Errorf("netlink message length %d of %d bytes", n, len(b))
		}
		switch typ {
		case unix.NLMSG_DONE:
			return nil
		case unix.NLMSG_ERROR:
			if n >= unix.NLMSG_HDRLEN+4 {
				if errno := int32(binary.NativeEndian.Uint32(b[unix.NLMSG_HDRLEN:])); errno < 0 {
					return fmt.Errorf("netlink: %w", syscall.Errno(-errno))
				}
			}
			return nil
		}
		if err := each(typ, b[unix.NLMSG_HDRLEN:n]); err != nil {
			return err
		}
		b = b[min(nlmAlign(n), len(b)):]
	}
	return nil
}

func nlmAlign(n int) int { return (n + 3) &^ 3 }

// walkRtAttrs iterates rtattr-framed attributes.
func walkRtAttrs(b []byte, each func(typ uint16, v []byte)) error {
	for len(b) >= 4 {
		n := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:]) & 0x3fff // without NLA_F_NESTED, NLA_F_NET_BYTEORDER
		if n < 4 || n > len(b) {
			return fmt.Errorf("attribute length %d of %d bytes", n, len(b))
		}
		each(typ, b[4:n])
		b = b[min(nlmAlign(n), len(b)):]
	}
	return nil
}
