// Package topview turns the live connection table into what `tcpstat top`
// shows: a header with counts per state, rates, losses and the stale
// marker, and the rows sorted and filtered, formatted only for the lines
// that are shown so a 100 000-row table stays cheap to draw.
package topview

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tcpstat/tcpstat/internal/container"
	"github.com/tcpstat/tcpstat/internal/filter"
	"github.com/tcpstat/tcpstat/internal/livetable"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// Key is a sort order.
type Key uint8

const (
	ByAge    Key = iota // time in state, most recent change first
	ByState             // lifecycle order, then age
	ByPID               // owner pid, then age
	ByComm              // owner command, then age
	ByLocal             // local address and port
	ByRemote            // remote address and port
)

var keyNames = [...]string{ByAge: "age", ByState: "state", ByPID: "pid", ByComm: "comm", ByLocal: "local", ByRemote: "remote"}

func (k Key) String() string { return keyNames[k] }

// ParseKey accepts a sort key's name.
func ParseKey(name string) (Key, error) {
	for k, n := range keyNames {
		if n == name {
			return Key(k), nil
		}
	}
	return 0, fmt.Errorf("unknown sort key %q (want one of %s)", name, strings.Join(keyNames[:], ", "))
}

// Options choose what a frame shows.
type Options struct {
	Sort    Key
	Reverse bool
	// Filter keeps the rows it matches (docs/filter.md); nil keeps all.
	Filter *filter.Filter
	// Color colours the state column on screen.
	Color bool
	// Containers names the owners' containers and pods for the POD column
	// and the JSON; nil: no POD column. The filter typed after / uses it.
	Containers *container.Resolver
}

// Frame is one refresh, in one of two forms. Capture copies the table under
// its lock, to sort, filter and draw without it (the interactive screen,
// which draws again between refreshes). Bind makes an index over the
// table's own rows instead, to sort and write the whole frame while the
// lock is still held (top -b): no row is copied, which at 100 000 rows
// would double the table's memory at every refresh. Reuse a Frame across
// refreshes: its buffers are kept.
type Frame struct {
	Status livetable.Status
	Counts map[tcp.State]int
	Total  int
	// Namespaces is how many network namespaces the rows are in; views
	// show a NETNS column when it is more than one.
	Namespaces int
	// Pods says a row's owner is in a container or pod: views show a POD
	// column (set by Arrange, with Options.Containers).
	Pods bool
	rows []table.Row
	// idOf[i] is the index in ids of row i's owner's container and pod,
	// resolved once per capture (Arrange) when Options.Containers is set:
	// rows share a few identities, and an Identity is six strings.
	idOf    []uint32
	ids     []container.Identity
	idsDone bool
	// owners are the rows' owners, names included, resolved at capture:
	// a copied row's owner name is an id into the table's name registry,
	// which a later change of the table may give to another name.
	owners []Owner
	// tb is the bound table (Bind), whose rows are read in place; nil
	// for a captured frame.
	tb    *table.Table
	order []int32 // rows shown, in display order
}

// Owner is a row's owner as the frame captured it.
type Owner struct {
	PID    uint32
	Comm   string // as the process set it: sanitise before printing
	Cgroup uint64 // cgroup v2 id; 0 when a /proc scan found the owner
	Known  bool
	Former bool // no longer holds the socket (timewait, orphaned)
	Source tracer.OwnerSource
}

// Capture copies the table and its status; pass it to livetable.Table.View.
func (f *Frame) Capture(tb *table.Table, st livetable.Status) {
	f.Status = st
	f.tb = nil
	f.rows, f.owners = f.rows[:0], f.owners[:0]
	f.Pods, f.idsDone = false, false
	for i := range tb.Len() {
		r := tb.Row(i)
		f.rows = append(f.rows, *r)
		f.owners = append(f.owners, ownerOf(r))
	}
	f.countNamespaces()
	f.Total = len(f.rows)
}

// Bind makes the frame read tb's rows in place: call it from
// livetable.Table.View, and Arrange and write the frame before View
// returns, while the table cannot change. Unbind after.
func (f *Frame) Bind(tb *table.Table, st livetable.Status) {
	f.Status = st
	f.tb = tb
	// A frame bound once is bound at every refresh: drop the copies.
	f.rows, f.owners = nil, nil
	f.Pods, f.idsDone = false, false
	f.countNamespaces()
	f.Total = tb.Len()
}

// Unbind forgets the bound table, whose rows may change once its lock is
// released; the frame shows no rows until the next Bind or Capture.
func (f *Frame) Unbind() {
	f.tb = nil
	f.order = f.order[:0]
}

// countNamespaces sets Namespaces: two distinct ones are all the NETNS
// column needs to know.
func (f *Frame) countNamespaces() {
	f.Namespaces = 0
	var first uint32
	for i := range f.size() {
		switch ns := f.at(int32(i)).NetNS(); {
		case f.Namespaces == 0:
			first, f.Namespaces = ns, 1
		case f.Namespaces == 1 && ns != first:
			f.Namespaces = 2
			return
		}
	}
}

// size is the number of rows captured or bound.
func (f *Frame) size() int {
	if f.tb != nil {
		return f.tb.Len()
	}
	return len(f.rows)
}

// at is the j-th row captured or bound, in the table's order.
func (f *Frame) at(j int32) *table.Row {
	if f.tb != nil {
		return f.tb.Row(int(j))
	}
	return &f.rows[j]
}

// ownerAt is the owner of row j, as captured or, bound, as it is now.
func (f *Frame) ownerAt(j int32) Owner {
	if f.tb != nil {
		return ownerOf(f.tb.Row(int(j)))
	}
	return f.owners[j]
}

func ownerOf(r *table.Row) Owner {
	if p, ok := r.Owner(); ok {
		return Owner{PID: p.PID, Comm: p.Comm, Cgroup: p.Cgroup, Known: true, Source: r.OwnerSource()}
	}
	if p, ok := r.FormerOwner(); ok {
		return Owner{PID: p.PID, Comm: p.Comm, Cgroup: p.Cgroup, Known: true, Former: true, Source: r.OwnerSource()}
	}
	return Owner{}
}

// resolve names the rows' containers and pods, once per capture: most
// rows share a few owners, so each cgroup (or pid, for owners found by a
// /proc scan) is looked up once.
func (f *Frame) resolve(ids *container.Resolver) {
	if f.idsDone || ids == nil {
		return
	}
	f.idsDone = true
	f.ids = append(f.ids[:0], container.Identity{}) // 0: no owner known
	f.idOf = slices.Grow(f.idOf[:0], f.size())
	type key struct {
		cgroup uint64
		pid    uint32
	}
	seen := make(map[key]uint32)
	for i := range int32(f.size()) {
		o := f.ownerAt(i)
		at := uint32(0)
		if o.Known {
			k := key{cgroup: o.Cgroup}
			if k.cgroup == 0 {
				k.pid = o.PID
			}
			var ok bool
			if at, ok = seen[k]; !ok {
				id := ids.Owner(k.cgroup, k.pid)
				at = uint32(len(f.ids))
				f.ids = append(f.ids, id)
				seen[k] = at
				f.Pods = f.Pods || !id.IsZero()
			}
		}
		f.idOf = append(f.idOf, at)
	}
}

// Arrange counts states, filters and sorts.
func (f *Frame) Arrange(opts Options) {
	f.resolve(opts.Containers)
	if f.Counts == nil {
		f.Counts = make(map[tcp.State]int)
	}
	clear(f.Counts)
	f.order = f.order[:0]
	all := opts.Filter.Empty()
	for i := range int32(f.size()) {
		r := f.at(i)
		f.Counts[displayState(r.State())]++
		if all {
			f.order = append(f.order, i)
			continue
		}
		s := filter.FromRow(r)
		if o := f.ownerAt(i); o.Known {
			s.Comm = o.Comm // a copy's name id may be reused since
		}
		if opts.Filter.Match(&s) {
			f.order = append(f.order, i)
		}
	}
	now := f.Status.Now
	less := func(a, b int32) int {
		ra, rb := f.at(a), f.at(b)
		c := 0
		switch opts.Sort {
		case ByState:
			c = cmp.Compare(stateOrder(ra.State()), stateOrder(rb.State()))
		case ByPID:
			c = cmp.Compare(f.ownerAt(a).PID, f.ownerAt(b).PID)
		case ByComm:
			c = cmp.Compare(f.ownerAt(a).Comm, f.ownerAt(b).Comm)
		case ByLocal:
			c = ra.Local().Compare(rb.Local())
		case ByRemote:
			c = ra.Remote().Compare(rb.Remote())
		}
		if c == 0 {
			c = cmp.Compare(age(ra, now), age(rb, now))
		}
		if c == 0 {
			c = cmp.Compare(ra.Cookie(), rb.Cookie())
		}
		if opts.Reverse {
			c = -c
		}
		return c
	}
	slices.SortFunc(f.order, less)
}

// Len is the number of rows that passed the filter.
func (f *Frame) Len() int { return len(f.order) }

// Row is the i-th row shown. Its owner is Owner(i): the row's own
// methods would look the name up again, after the table may have changed.
func (f *Frame) Row(i int) *table.Row { return f.at(f.order[i]) }

// Owner is the owner of the i-th row shown, as captured.
func (f *Frame) Owner(i int) Owner { return f.ownerAt(f.order[i]) }

// Identity is the container and pod of the i-th row shown; zero without
// Options.Containers.
func (f *Frame) Identity(i int) container.Identity {
	if !f.idsDone {
		return container.Identity{}
	}
	return f.ids[f.idOf[f.order[i]]]
}

// displayState names request sockets as ss and netstat do.
func displayState(s tcp.State) tcp.State {
	if s == tcp.NewSynRecv {
		return tcp.SynRecv
	}
	return s
}

// stateOrder sorts states along a connection's life.
func stateOrder(s tcp.State) int {
	return slices.Index(headerStates, displayState(s))
}

// headerStates is the order of the header's counts.
var headerStates = []tcp.State{
	tcp.Listen, tcp.SynSent, tcp.SynRecv, tcp.Established, tcp.FinWait1, tcp.FinWait2,
	tcp.Closing, tcp.TimeWait, tcp.CloseWait, tcp.LastAck, tcp.Close, tcp.BoundInactive,
}

func age(r *table.Row, now uint64) uint64 {
	since, _ := r.Since()
	if since > now {
		return 0
	}
	return now - since
}

// appendState appends the row's state, with '*' while a timewait hand-off
// is inferred and not yet confirmed by a dump.
func appendState(b []byte, r *table.Row) []byte {
	b = append(b, displayState(r.State()).String()...)
	if r.Inferred() {
		b = append(b, '*')
	}
	return b
}

func stateText(r *table.Row) string { return string(appendState(nil, r)) }

// appendAge appends the time in state; '>' marks a lower bound (the row
// entered its state before tcpstat saw it).
func appendAge(b []byte, r *table.Row, now uint64) []byte {
	if _, known := r.Since(); !known {
		b = append(b, '>')
	}
	return appendDuration(b, time.Duration(age(r, now)))
}

// appendDuration appends d in two units at most: 950ms, 4.2s, 3m07s,
// 5h02m, 2d03h.
func appendDuration(b []byte, d time.Duration) []byte {
	unit := func(b []byte, v time.Duration, name byte) []byte {
		if v < 10 {
			b = append(b, '0')
		}
		return append(strconv.AppendInt(b, int64(v), 10), name)
	}
	switch {
	case d < time.Second:
		return append(strconv.AppendInt(b, int64(d/time.Millisecond), 10), "ms"...)
	case d < time.Minute:
		return append(strconv.AppendFloat(b, d.Seconds(), 'f', 1, 64), 's')
	case d < time.Hour:
		b = append(strconv.AppendInt(b, int64(d/time.Minute), 10), 'm')
		return unit(b, d%time.Minute/time.Second, 's')
	case d < 24*time.Hour:
		b = append(strconv.AppendInt(b, int64(d/time.Hour), 10), 'h')
		return unit(b, d%time.Hour/time.Minute, 'm')
	}
	b = append(strconv.AppendInt(b, int64(d/(24*time.Hour)), 10), 'd')
	return unit(b, d%(24*time.Hour)/time.Hour, 'h')
}

// appendAddrPort appends a, or "*" for none.
func appendAddrPort(b []byte, a netip.AddrPort) []byte {
	if !a.IsValid() {
		return append(b, '*')
	}
	return a.AppendTo(b)
}
