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
	"strings"
	"time"

	"github.com/tcpstat/tcpstat/internal/livetable"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tcp"
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
	// Filter keeps rows whose text (owner, addresses, state) contains it,
	// case-insensitively.
	Filter string
	// Color colours the state column on screen.
	Color bool
}

// Frame is one refresh: a copy of the table taken under its lock, then
// sorted and filtered without it. Reuse a Frame across refreshes: its
// buffers are kept.
type Frame struct {
	Status livetable.Status
	Counts map[tcp.State]int
	Total  int
	rows   []table.Row
	order  []int32 // rows shown, in display order
}

// Capture copies the table and its status; pass it to Tracker.View.
func (f *Frame) Capture(tb *table.Table, st livetable.Status) {
	f.Status = st
	f.rows = f.rows[:0]
	for i := range tb.Len() {
		f.rows = append(f.rows, *tb.Row(i))
	}
	f.Total = len(f.rows)
}

// Arrange counts states, filters and sorts.
func (f *Frame) Arrange(opts Options) {
	if f.Counts == nil {
		f.Counts = make(map[tcp.State]int)
	}
	clear(f.Counts)
	f.order = f.order[:0]
	filter := strings.ToLower(opts.Filter)
	for i := range f.rows {
		r := &f.rows[i]
		f.Counts[displayState(r.State())]++
		if filter == "" || strings.Contains(strings.ToLower(searchText(r)), filter) {
			f.order = append(f.order, int32(i))
		}
	}
	now := f.Status.Now
	less := func(a, b int32) int {
		ra, rb := &f.rows[a], &f.rows[b]
		c := 0
		switch opts.Sort {
		case ByState:
			c = cmp.Compare(stateOrder(ra.State()), stateOrder(rb.State()))
		case ByPID:
			c = cmp.Compare(pid(ra), pid(rb))
		case ByComm:
			c = cmp.Compare(comm(ra), comm(rb))
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

// Row is the i-th row shown.
func (f *Frame) Row(i int) *table.Row { return &f.rows[f.order[i]] }

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

func pid(r *table.Row) uint32 {
	o, _ := r.Owner()
	return o.PID
}

func comm(r *table.Row) string {
	o, _ := r.Owner()
	return o.Comm
}

func age(r *table.Row, now uint64) uint64 {
	since, _ := r.Since()
	if since > now {
		return 0
	}
	return now - since
}

func searchText(r *table.Row) string {
	var b strings.Builder
	o, known := r.Owner()
	if known {
		fmt.Fprintf(&b, "%d %s ", o.PID, o.Comm)
	}
	b.WriteString(r.Local().String())
	b.WriteByte(' ')
	b.WriteString(r.Remote().String())
	b.WriteByte(' ')
	b.WriteString(stateText(r))
	return b.String()
}

// stateText is the row's state, with '*' while a timewait hand-off is
// inferred and not yet confirmed by a dump.
func stateText(r *table.Row) string {
	s := displayState(r.State()).String()
	if r.Inferred() {
		s += "*"
	}
	return s
}

// ageText is the time in state; '>' marks a lower bound (the row entered
// its state before tcpstat saw it).
func ageText(r *table.Row, now uint64) string {
	_, known := r.Since()
	s := formatDuration(time.Duration(age(r, now)))
	if !known {
		return ">" + s
	}
	return s
}

func formatDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", d/time.Minute, d%time.Minute/time.Second)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", d/time.Hour, d%time.Hour/time.Minute)
	}
	return fmt.Sprintf("%dd%02dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
}

func addrText(a netip.AddrPort) string {
	if !a.IsValid() {
		return "*"
	}
	return a.String()
}
