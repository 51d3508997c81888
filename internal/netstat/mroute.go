package netstat

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Multicast is the -M listing: the virtual interface tables and the
// forwarding caches of IPv4 (/proc/net/ip_mr_vif, ip_mr_cache) and IPv6
// (ip6_mr_vif, ip6_mr_cache).
type Multicast struct {
	VIFs   []VIF      `json:"vifs"`
	Cache  []MFCEntry `json:"cache"`
	VIFs6  []VIF      `json:"vifs6"`
	Cache6 []MFCEntry `json:"cache6"`
}

// VIF is one virtual interface of the multicast router.
type VIF struct {
	Index    int        `json:"vif"`
	Iface    string     `json:"iface"`
	BytesIn  uint64     `json:"bytes_in"`
	PktsIn   uint64     `json:"pkts_in"`
	BytesOut uint64     `json:"bytes_out"`
	PktsOut  uint64     `json:"pkts_out"`
	Flags    uint32     `json:"flags"`
	Local    netip.Addr `json:"local,omitzero"` // IPv4 only
	Remote   netip.Addr `json:"remote,omitzero"`
}

// viffUseIfindex marks a vif made by interface index (mroute.h).
const viffUseIfindex = 0x8

// MFCEntry is one (origin, group) forwarding cache entry.
type MFCEntry struct {
	Group  netip.Addr `json:"group"`
	Origin netip.Addr `json:"origin"`
	InVIF  int        `json:"in_vif"` // -1: unresolved
	Pkts   uint64     `json:"pkts"`
	Bytes  uint64     `json:"bytes"`
	Wrong  uint64     `json:"wrong_if"`
	Oifs   []OutVIF   `json:"oifs"`
}

// OutVIF is an output virtual interface with its TTL threshold.
type OutVIF struct {
	VIF int `json:"vif"`
	TTL int `json:"ttl"`
}

// ParseMrVIF parses ip_mr_vif (v6 false: idx, name, bytes/pkts in and
// out, flags, local and remote as host-order words) or ip6_mr_vif (no
// addresses).
func ParseMrVIF(r io.Reader, v6 bool) ([]VIF, error) {
	want := 9
	if v6 {
		want = 7
	}
	vs := []VIF{} // JSON: an empty table is [], not null
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		if n == 1 {
			continue
		}
		fs := strings.Fields(sc.Text())
		if len(fs) != want {
			return nil, fmt.Errorf("line %d: want %d fields, got %d", n, want, len(fs))
		}
		idx, err := strconv.Atoi(fs[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		v := VIF{Index: idx, Iface: fs[1]}
		for i, p := range []*uint64{&v.BytesIn, &v.PktsIn, &v.BytesOut, &v.PktsOut} {
			if *p, err = strconv.ParseUint(fs[2+i], 10, 64); err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
		}
		flags, err := strconv.ParseUint(fs[6], 16, 32)
		if err != nil {
			return nil, fmt.Errorf("line %d: flags: %w", n, err)
		}
		v.Flags = uint32(flags)
		if !v6 {
			for i, p := range []*netip.Addr{&v.Local, &v.Remote} {
				x, err := strconv.ParseUint(fs[7+i], 16, 32)
				if err != nil {
					return nil, fmt.Errorf("line %d: address: %w", n, err)
				}
				*p = hostWordAddr(x)
			}
			if v.Flags&viffUseIfindex != 0 {
				v.Local = netip.Addr{} // the field holds the interface index
			}
		}
		vs = append(vs, v)
	}
	return vs, sc.Err()
}

// ParseMrCache parses ip_mr_cache (group and origin as host-order words)
// or ip6_mr_cache (full IPv6 addresses): then the input vif, packets,
// bytes, wrong-interface packets and "vif:ttl" output interfaces.
func ParseMrCache(r io.Reader, v6 bool) ([]MFCEntry, error) {
	es := []MFCEntry{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		if n == 1 {
			continue
		}
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 {
			return nil, fmt.Errorf("line %d: want at least 6 fields, got %d", n, len(fs))
		}
		var e MFCEntry
		for i, p := range []*netip.Addr{&e.Group, &e.Origin} {
			if v6 {
				a, err := netip.ParseAddr(fs[i])
				if err != nil || !a.Is6() {
					return nil, fmt.Errorf("line %d: address %q", n, fs[i])
				}
				*p = a
				continue
			}
			x, err := strconv.ParseUint(fs[i], 16, 32)
			if err != nil {
				return nil, fmt.Errorf("line %d: address: %w", n, err)
			}
			*p = hostWordAddr(x)
		}
		var err error
		if e.InVIF, err = strconv.Atoi(fs[2]); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		for i, p := range []*uint64{&e.Pkts, &e.Bytes, &e.Wrong} {
			if *p, err = strconv.ParseUint(fs[3+i], 10, 64); err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
		}
		for _, o := range fs[6:] {
			vif, ttl, ok := strings.Cut(o, ":")
			v, err1 := strconv.Atoi(vif)
			t, err2 := strconv.Atoi(ttl)
			if !ok || err1 != nil || err2 != nil {
				return nil, fmt.Errorf("line %d: output interface %q is not vif:ttl", n, o)
			}
			e.Oifs = append(e.Oifs, OutVIF{v, t})
		}
		es = append(es, e)
	}
	return es, sc.Err()
}

// readMulticast reads the four tables; a missing one (a kernel without
// CONFIG_IP_MROUTE or IPv6) reads as empty.
func readMulticast(c *Config) (*Multicast, error) {
	m := &Multicast{VIFs: []VIF{}, Cache: []MFCEntry{}, VIFs6: []VIF{}, Cache6: []MFCEntry{}}
	v4, v6 := c.IPv4 || !c.IPv6, c.IPv6 || !c.IPv4
	for _, f := range []struct {
		path string
		on   bool
		read func(io.Reader) error
	}{
		{"/proc/net/ip_mr_vif", v4, func(r io.Reader) (err error) { m.VIFs, err = ParseMrVIF(r, false); return }},
		{"/proc/net/ip_mr_cache", v4, func(r io.Reader) (err error) { m.Cache, err = ParseMrCache(r, false); return }},
		{"/proc/net/ip6_mr_vif", v6, func(r io.Reader) (err error) { m.VIFs6, err = ParseMrVIF(r, true); return }},
		{"/proc/net/ip6_mr_cache", v6, func(r io.Reader) (err error) { m.Cache6, err = ParseMrCache(r, true); return }},
	} {
		if !f.on {
			continue
		}
		file, err := os.Open(f.path)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read multicast routing: %w", err)
		}
		err = f.read(file)
		file.Close()
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", f.path, err)
		}
	}
	return m, nil
}

// writeMulticastText writes Solaris' two tables per family, with Linux's
// columns (no threshold or rate limit: Linux keeps them out of /proc).
func writeMulticastText(w io.Writer, m *Multicast, c *Config) {
	v4, v6 := c.IPv4 || !c.IPv6, c.IPv6 || !c.IPv4
	vifName := func(vs []VIF, i int) string {
		for _, v := range vs {
			if v.Index == i {
				return fmt.Sprintf("%d(%s)", i, v.Iface)
			}
		}
		return strconv.Itoa(i)
	}
	for _, fam := range []struct {
		on    bool
		label string
		vifs  []VIF
		cache []MFCEntry
	}{{v4, "", m.VIFs, m.Cache}, {v6, "IPv6 ", m.VIFs6, m.Cache6}} {
		if !fam.on {
			continue
		}
		if len(fam.vifs) == 0 {
			fmt.Fprintf(w, "%sVirtual Interface Table is empty\n", fam.label)
		} else {
			fmt.Fprintf(w, "%sVirtual Interface Table\n", fam.label)
			fmt.Fprintf(w, " Vif Interface       Local-Address   Remote-Address   Pkt_in  Pkt_out    Bytes_in   Bytes_out Flags\n")
			for _, v := range fam.vifs {
				local, remote := "-", "-"
				if v.Local.IsValid() {
					local = v.Local.String()
				}
				if v.Remote.IsValid() {
					remote = v.Remote.String()
				}
				fmt.Fprintf(w, "%4d %-15s %-15s %-15s %7d %8d %11d %11d %05X\n", v.Index, v.Iface, local, remote, v.PktsIn, v.PktsOut, v.BytesIn, v.BytesOut, v.Flags)
			}
		}
		fmt.Fprintln(w)
		if len(fam.cache) == 0 {
			fmt.Fprintf(w, "%sMulticast Forwarding Cache is empty\n", fam.label)
		} else {
			fmt.Fprintf(w, "%sMulticast Forwarding Cache\n", fam.label)
			fmt.Fprintf(w, " %-24s %-24s %8s %10s %8s %-18s %s\n", "Origin", "Mcastgroup", "# Pkts", "Bytes", "Wrong", "In-Vif", "Out-vifs/Forw-ttl")
			for _, e := range fam.cache {
				in := "unresolved"
				if e.InVIF >= 0 {
					in = vifName(fam.vifs, e.InVIF)
				}
				var outs []string
				for _, o := range e.Oifs {
					outs = append(outs, fmt.Sprintf("%s:%d", vifName(fam.vifs, o.VIF), o.TTL))
				}
				line := fmt.Sprintf(" %-24s %-24s %8d %10d %8d %-18s %s", e.Origin, e.Group, e.Pkts, e.Bytes, e.Wrong, in, strings.Join(outs, " "))
				fmt.Fprintln(w, strings.TrimRight(line, " "))
			}
		}
		fmt.Fprintln(w)
	}
}

// McastStats is the -Ms listing. Linux keeps no mrtstat (Solaris'
// cache hits, misses, upcalls): the nearest are the forwarding cache's
// own counters and the IP layer's multicast counters.
type McastStats struct {
	VIFs          int   `json:"vifs"`
	VIFs6         int   `json:"vifs6"`
	CacheEntries  int   `json:"cache_entries"`
	CacheEntries6 int   `json:"cache_entries6"`
	Unresolved    int   `json:"unresolved"`
	Forwarded     int64 `json:"forwarded_packets"` // summed over the cache entries
	ForwardedB    int64 `json:"forwarded_bytes"`
	WrongIf       int64 `json:"wrong_if"`
	InMcast       int64 `json:"in_mcast_pkts"`  // IpExt InMcastPkts
	OutMcast      int64 `json:"out_mcast_pkts"` // IpExt OutMcastPkts
	InMcast6      int64 `json:"in_mcast_pkts6"` // Ip6InMcastPkts
	OutMcast6     int64 `json:"out_mcast_pkts6"`
}

func readMulticastStats(c *Config) (*McastStats, error) {
	m, err := readMulticast(c)
	if err != nil {
		return nil, err
	}
	s := &McastStats{VIFs: len(m.VIFs), VIFs6: len(m.VIFs6), CacheEntries: len(m.Cache), CacheEntries6: len(m.Cache6)}
	for _, e := range append(m.Cache, m.Cache6...) {
		if e.InVIF < 0 {
			s.Unresolved++
		}
		s.Forwarded += int64(e.Pkts)
		s.ForwardedB += int64(e.Bytes)
		s.WrongIf += int64(e.Wrong)
	}
	secs, err := ReadCounters()
	if err != nil {
		return nil, err
	}
	for _, sec := range secs {
		if sec.Name != "IpExt" {
			continue
		}
		for i, k := range sec.Keys {
			switch k {
			case "InMcastPkts":
				s.InMcast = sec.Values[i]
			case "OutMcastPkts":
				s.OutMcast = sec.Values[i]
			}
		}
	}
	if f, err := os.Open("/proc/net/snmp6"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) != 2 {
				continue
			}
			v, _ := strconv.ParseInt(fs[1], 10, 64)
			switch fs[0] {
			case "Ip6InMcastPkts":
				s.InMcast6 = v
			case "Ip6OutMcastPkts":
				s.OutMcast6 = v
			}
		}
	}
	return s, nil
}

// delta subtracts the counters of prev; table sizes stay absolute.
func (s McastStats) delta(prev *McastStats) McastStats {
	s.Forwarded -= prev.Forwarded
	s.ForwardedB -= prev.ForwardedB
	s.WrongIf -= prev.WrongIf
	s.InMcast -= prev.InMcast
	s.OutMcast -= prev.OutMcast
	s.InMcast6 -= prev.InMcast6
	s.OutMcast6 -= prev.OutMcast6
	return s
}

func writeMulticastStatsText(w io.Writer, s *McastStats) {
	fmt.Fprintf(w, "multicast routing (Linux keeps no mrtstat; these are the forwarding cache's and the IP layer's counters):\n")
	fmt.Fprintf(w, "\t%d virtual interfaces (IPv4), %d (IPv6)\n", s.VIFs, s.VIFs6)
	fmt.Fprintf(w, "\t%d forwarding cache entries (IPv4), %d (IPv6), %d of them unresolved\n", s.CacheEntries, s.CacheEntries6, s.Unresolved)
	fmt.Fprintf(w, "\t%d datagrams forwarded by the cache entries (%d bytes)\n", s.Forwarded, s.ForwardedB)
	fmt.Fprintf(w, "\t%d datagrams arrived on the wrong interface\n", s.WrongIf)
	fmt.Fprintf(w, "\t%d multicast datagrams received, %d sent (IPv4: IpExt InMcastPkts, OutMcastPkts)\n", s.InMcast, s.OutMcast)
	fmt.Fprintf(w, "\t%d multicast datagrams received, %d sent (IPv6: Ip6InMcastPkts, Ip6OutMcastPkts)\n", s.InMcast6, s.OutMcast6)
}
