package netstat

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"
)

// IsUsage reports whether err is a command-line mistake.
func IsUsage(err error) bool {
	var u *usageError
	return errors.As(err, &u)
}

// run is one `tcpstat list`: its configuration, where it writes, and what
// a repeat compares against.
type run struct {
	c     *Config
	out   *bufio.Writer
	warn  io.Writer
	names *names

	prevStats  []Section    // -s repeats print deltas
	prevIfs    []Interface  // -i repeats print deltas
	prevCounts *IfaceCounts // -i -I IFACE interval: running counts
	prevMcast  *McastStats
}

// formFunc prints one listing of a form as text to r.out, or fills doc
// when the listing is JSON.
type formFunc func(r *run, ctx context.Context, doc *jsonDoc) error

// forms prints each form.
var forms = [...]formFunc{
	Sockets:         (*run).sockets,
	Statistics:      (*run).statistics,
	Interfaces:      (*run).interfaces,
	Routes:          (*run).routes,
	Groups:          (*run).groups,
	Memory:          (*run).memory,
	MulticastRoutes: (*run).multicast,
	MulticastStats:  (*run).multicastStats,
	DHCP:            (*run).dhcp,
	NetToMedia:      (*run).netToMedia,
}

// Run prints the form c asks for to w, repeating every c.Interval (c.Count
// times, or until ctx ends) when an interval is set. Warnings that do not
// stop the listing (owners of some processes unreadable) go to warn.
func Run(ctx context.Context, c Config, w, warn io.Writer) error {
	r := &run{c: &c, out: bufio.NewWriterSize(w, 64<<10), warn: warn, names: newNames()}
	defer r.out.Flush()
	form := forms[c.Form]
	for n := 1; ; n++ {
		doc := jsonDoc{Time: time.Now().UTC().Format(time.RFC3339Nano), IntervalSeconds: c.Interval.Seconds()}
		if err := form(r, ctx, &doc); err != nil {
			return err
		}
		if c.JSON {
			if err := writeJSON(r.out, &doc); err != nil {
				return fmt.Errorf("write JSON: %w", err)
			}
		}
		if err := r.out.Flush(); err != nil {
			return fmt.Errorf("write listing: %w", err)
		}
		if c.Interval == 0 || (c.Count > 0 && n >= c.Count) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil // interrupted: the listing so far stands
		case <-time.After(c.Interval):
		}
		if !c.JSON && c.Form != Sockets && !r.rowsOnly() {
			fmt.Fprintln(r.out)
		}
	}
}

// rowsOnly says whether a repeat adds rows under one header (Solaris'
// running counts) rather than a whole new listing.
func (r *run) rowsOnly() bool {
	return r.c.Form == Interfaces && r.c.Iface != "" && r.c.Extend == 0
}

func (r *run) statistics(_ context.Context, doc *jsonDoc) error {
	secs, err := ReadCounters()
	if err != nil {
		return err
	}
	shown := secs
	if r.prevStats != nil {
		shown, doc.Delta = Delta(secs, r.prevStats), true
	}
	r.prevStats = secs
	if r.c.JSON {
		doc.Statistics = statsJSON(shown, sectionsFor(r.c))
	} else {
		writeStatsText(r.out, shown, sectionsFor(r.c))
	}
	return nil
}

// interfaces prints the -i table, the ifconfig-style listing with -e,
// or with -I one interface (and Solaris' running counts when repeating).
func (r *run) interfaces(_ context.Context, doc *jsonDoc) error {
	c := r.c
	if c.Extend > 0 {
		return r.ifconfig(doc)
	}
	ifs, err := ReadInterfaces()
	if err != nil {
		return err
	}
	if c.Iface != "" && !slices.ContainsFunc(ifs, func(i Interface) bool { return i.Name == c.Iface }) {
		return fmt.Errorf("no interface is named %q (tcpstat list -ia lists them)", c.Iface)
	}
	if c.Iface != "" && c.Interval > 0 {
		return r.ifaceCounts(ifs, doc)
	}
	shown := ifs
	if r.prevIfs != nil {
		shown, doc.Delta = deltaInterfaces(ifs, r.prevIfs), true
	}
	r.prevIfs = ifs
	if c.Iface != "" {
		shown = slices.DeleteFunc(slices.Clone(shown), func(i Interface) bool { return i.Name != c.Iface })
	}
	all := c.All || c.Iface != ""
	if !c.JSON {
		writeInterfacesText(r.out, shown, all)
		return nil
	}
	for _, i := range shown {
		if all || i.up {
			doc.Interfaces = append(doc.Interfaces, i)
		}
	}
	return nil
}

func (r *run) ifconfig(doc *jsonDoc) error {
	ds, err := readIfaceDetails()
	if err != nil {
		return err
	}
	if !r.c.JSON {
		writeIfconfigText(r.out, ds, r.c.All)
		return nil
	}
	for _, d := range ds {
		if r.c.All || d.up {
			doc.InterfaceDetails = append(doc.InterfaceDetails, d)
		}
	}
	return nil
}

// ifaceCounts prints Solaris' `netstat -i -I IFACE interval`: a header,
// then one line per interval, the first since boot and then deltas, for
// the interface and for all of them together.
func (r *run) ifaceCounts(ifs []Interface, doc *jsonDoc) error {
	var cur IfaceCounts
	cur.Iface.Name, cur.Total.Name = r.c.Iface, "(Total)"
	for _, i := range ifs {
		cur.Total.add(i)
		if i.Name == r.c.Iface {
			cur.Iface.add(i)
		}
	}
	shown := cur
	if r.prevCounts != nil {
		shown.Iface.sub(r.prevCounts.Iface)
		shown.Total.sub(r.prevCounts.Total)
		doc.Delta = true
	}
	if r.prevCounts == nil && !r.c.JSON {
		writeIfaceCountsHeader(r.out, r.c.Iface)
	}
	r.prevCounts = &cur
	if r.c.JSON {
		doc.InterfaceCounts = &shown
	} else {
		writeIfaceCountsRow(r.out, &shown)
	}
	return nil
}

// routes prints the IPv4 and/or IPv6 table (-4 -6 in the order given,
// as netstat), the cache with -C, every table with -a, filtered by -f.
func (r *run) routes(ctx context.Context, doc *jsonDoc) error {
	c := r.c
	fams := []bool{false}
	switch {
	case c.IPv6 && !c.IPv4:
		fams = []bool{true}
	case c.IPv6 && c.v6First:
		fams = []bool{true, false}
	case c.IPv6:
		fams = []bool{false, true}
	}
	for _, v6 := range fams {
		var err error
		if v6 {
			err = r.routes6(ctx, doc)
		} else {
			err = r.routes4(doc)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *run) routes4(doc *jsonDoc) error {
	c := r.c
	if c.Cache {
		if !c.JSON {
			writeRouteCacheText(r.out, c.Extend)
		}
		return nil
	}
	read := readRoutes
	if c.All {
		read = readAllRoutes
	}
	rs, err := read()
	if err != nil {
		return err
	}
	shown := rs[:0]
	for i := range rs {
		if matchRoute(c.RouteFilters, rs[i].key()) {
			shown = append(shown, rs[i])
		}
	}
	if c.JSON {
		doc.Routes = shown
	} else {
		writeRoutesText(r.out, shown, c.NumericHosts, c.Extend)
	}
	return nil
}

func (r *run) routes6(ctx context.Context, doc *jsonDoc) error {
	c := r.c
	rs, err := readRoutes6()
	if err != nil {
		return err
	}
	shown := rs[:0]
	for i := range rs {
		if rs[i].cache == c.Cache && matchRoute(c.RouteFilters, rs[i].key()) {
			shown = append(shown, rs[i])
		}
	}
	if c.JSON {
		doc.Routes6 = shown
	} else {
		host := netip.Addr.String
		if !c.NumericHosts {
			host = func(a netip.Addr) string { return r.names.host(ctx, a) }
		}
		writeRoutes6Text(r.out, shown, host, c.Cache)
	}
	return nil
}

func (r *run) memory(_ context.Context, doc *jsonDoc) error {
	m, err := readMemory()
	if err != nil {
		return err
	}
	if r.c.JSON {
		doc.Memory = m
	} else {
		writeMemoryText(r.out, m)
	}
	return nil
}

func (r *run) multicast(_ context.Context, doc *jsonDoc) error {
	m, err := readMulticast(r.c)
	if err != nil {
		return err
	}
	if r.c.JSON {
		doc.Multicast = m
	} else {
		writeMulticastText(r.out, m, r.c)
	}
	return nil
}

func (r *run) multicastStats(_ context.Context, doc *jsonDoc) error {
	s, err := readMulticastStats(r.c)
	if err != nil {
		return err
	}
	shown := *s
	if r.prevMcast != nil {
		shown, doc.Delta = s.delta(r.prevMcast), true
	}
	r.prevMcast = s
	if r.c.JSON {
		doc.MulticastStats = &shown
	} else {
		writeMulticastStatsText(r.out, &shown)
	}
	return nil
}

// dhcpNote is all -D can say: DHCP is a user-space client's business.
const dhcpNote = "Linux keeps no DHCP state in the kernel; ask the client that holds the lease: " +
	"networkctl status IFACE (systemd-networkd), nmcli device show IFACE (NetworkManager), " +
	"dhcpcd -U IFACE, or the lease files under /var/lib/dhcp/ (dhclient)"

func (r *run) dhcp(_ context.Context, doc *jsonDoc) error {
	if r.c.JSON {
		doc.DHCP = dhcpNote
	} else {
		fmt.Fprintln(r.out, dhcpNote)
	}
	return nil
}

func (r *run) netToMedia(ctx context.Context, doc *jsonDoc) error {
	ns, err := readNeighbors(r.c)
	if err != nil {
		return err
	}
	if r.c.JSON {
		doc.NetToMedia = ns
	} else {
		writeNeighborsText(ctx, r.out, ns, r.c, r.names)
	}
	return nil
}

func (r *run) groups(_ context.Context, doc *jsonDoc) error {
	gs, err := readGroups(r.c)
	if err != nil {
		return err
	}
	if r.c.JSON {
		doc.Groups = gs
	} else {
		writeGroupsText(r.out, gs)
	}
	return nil
}

// verboseNote is -v's answer: netstat -v lists, on stderr, the families
// it could not show; tcpstat names what it leaves out.
const verboseNote = "tcpstat list: -v: sockets of TCP, UDP, RAW and UNIX are listed; " +
	"not SCTP (ss -S), UDP-Lite (/proc/net/udplite), MPTCP (ss -M), IPX, AX.25, X.25, NET/ROM or ROSE"

func (r *run) sockets(ctx context.Context, doc *jsonDoc) error {
	c := r.c
	if c.Filter.Uses().Mark && !netAdmin() {
		return errors.New("filter: fwmark needs CAP_NET_ADMIN: the kernel reports sockets' marks to it only")
	}
	if c.Verbose {
		fmt.Fprintln(r.warn, verboseNote)
	}
	if !c.Summary && !c.JSON {
		return streamSocketsText(ctx, c, r.out, r.warn, r.names)
	}
	inet, unixs, partial, err := dumpSockets(ctx, c)
	if err != nil {
		return err
	}
	if partial != nil {
		if c.JSON {
			doc.Warning = partial.Error()
		} else {
			fmt.Fprintf(r.warn, "(%v)\n", partial)
		}
	}
	switch {
	case c.Summary && c.JSON:
		keys, counts := summarize(inet, unixs)
		doc.Summary = []jsonCount{}
		for _, k := range keys {
			doc.Summary = append(doc.Summary, jsonCount{k.Proto, k.State, counts[k]})
		}
	case c.Summary:
		writeSummaryText(r.out, inet, unixs)
	default:
		doc.Sockets = make([]jsonSocket, 0, len(inet)+len(unixs))
		for i := range inet {
			doc.Sockets = append(doc.Sockets, toJSON(&inet[i], c))
		}
		for i := range unixs {
			doc.Sockets = append(doc.Sockets, toJSON(&unixs[i], c))
		}
	}
	return nil
}
