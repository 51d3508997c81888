package filter

import (
	"fmt"
	"slices"

	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// Gate applies a filter to a stream of events so that a socket's events
// are all shown or all hidden. A socket's identity (addresses, ports,
// namespace, owner) is decided once, at its first event where everything
// the filter asks about is known: an active open's CLOSE → SYN_SENT has
// local port 0, and a passive open has no owner until accept(). Events
// before that are held, then judged with the identity decided, each with
// its own state and reason; events after it use the same identity, so a
// later change of owner does not cut a socket's events in two. A socket
// that ends before its identity is complete is judged as it was.
//
// A Gate is not safe for concurrent use.
type Gate struct {
	f         *Filter
	needPort  bool // the filter asks about the local port
	needOwner bool // the filter asks about the owner
	socks     map[uint64]*gateSock
	held      int
	holding   map[uint64]*gateSock // the sockets with held events
	synthetic bool                 // events with synthetic ids came (before Linux 5.12)
	// Forced counts sockets judged without the identity decided for them:
	// before it was complete, because too many events were held, or after,
	// because too many identities were kept. Their events may be shown or
	// hidden wrongly, so every user of a Gate reports it (ForcedNote).
	Forced uint64
}

type gateSock struct {
	ident   Subject
	decided bool
	held    []tracer.Event
}

// Limits of what a Gate keeps: events held for undecided sockets, and
// decided identities (kept only when the filter asks about owners).
const (
	maxHeld   = 1 << 16
	maxFrozen = 1 << 20
)

// NewGate returns a gate for f (nil or empty: everything passes).
func NewGate(f *Filter) *Gate {
	g := &Gate{f: f, socks: make(map[uint64]*gateSock), holding: make(map[uint64]*gateSock)}
	if !f.Empty() {
		walk(f.root, func(n node) {
			switch n := n.(type) {
			case *portNode:
				g.needPort = g.needPort || n.side == local
			case *hostNode:
				g.needPort = g.needPort || n.side == local && n.port >= 0
			case *ownerNode, *commNode, *cgroupNode, *containerNode:
				g.needOwner = true
			}
		})
	}
	return g
}

// ForcedNote describes Forced for a warning, or is empty when it is 0.
func (g *Gate) ForcedNote() string {
	if g.Forced == 0 {
		return ""
	}
	return fmt.Sprintf("the filter judged %d sockets without waiting for their local port or owner, its limits reached (%d events held, %d sockets' owners kept): "+
		"their events may be shown or hidden wrongly (narrow the filter, or filter without port and owner conditions)", g.Forced, maxHeld, maxFrozen)
}

// ForcedWarning returns ForcedNote when Forced has at least doubled since
// *warned (the first forced judgement included), and records it there:
// the users of a Gate warn at that pace.
func (g *Gate) ForcedWarning(warned *uint64) string {
	if g.Forced <= 2**warned {
		return ""
	}
	*warned = g.Forced
	return g.ForcedNote()
}

// Retain forgets the identities of sockets live no longer holds (whose
// ending event the gate never saw: lost, or dropped by the kernel's part
// of the filter), so that what the gate keeps follows the live sockets.
// Sockets with held events stay.
func (g *Gate) Retain(live func(cookie uint64) bool) {
	for cookie, st := range g.socks {
		if len(st.held) == 0 && !live(cookie) {
			delete(g.socks, cookie)
		}
	}
}

// Kept is the number of sockets the gate keeps an identity or held events
// for.
func (g *Gate) Kept() int { return len(g.socks) }

// Held is the number of events waiting for their socket's identity.
func (g *Gate) Held() int { return g.held }

// OldestHeld is the time of the oldest event held, 0 if none: events are
// passed on in the order they come, but for those held, which follow when
// their socket is judged.
func (g *Gate) OldestHeld() (oldest uint64) {
	for _, st := range g.holding {
		if oldest == 0 || st.held[0].Time < oldest {
			oldest = st.held[0].Time
		}
	}
	return oldest
}

// MatchRow judges a table row (s, with the socket's cookie) as the gate
// judges its events: with the identity decided for the socket, if it was;
// and not at all while its events are held, since they are yet to pass.
func (g *Gate) MatchRow(s *Subject, cookie uint64) bool {
	if g.f.Empty() {
		return true
	}
	return g.matchRow(s, g.socks[cookie])
}

// RowMatcher returns MatchRow for a table that may keep a socket under
// another cookie than the id its events carry: before Linux 5.12 events
// carry synthetic ids, and a dump moves their rows to the real cookie
// (rowCookie, table.Table.RowCookie, says which). Without it a row whose
// events are held would be judged as if the gate had none, and a
// checkpoint would hold the row its held events, written after, make
// again. Take one for each pass over the rows, with the table still.
func (g *Gate) RowMatcher(rowCookie func(id uint64) uint64) func(s *Subject, cookie uint64) bool {
	if g.f.Empty() {
		return func(*Subject, uint64) bool { return true }
	}
	if !g.synthetic {
		return g.MatchRow // every id is a real cookie
	}
	moved := map[uint64]*gateSock{}
	for id, st := range g.socks {
		c := rowCookie(id)
		if prev, ok := moved[c]; c == id || ok && len(prev.held) > 0 {
			continue // an id with held events wins: the row waits for them
		}
		moved[c] = st
	}
	if len(moved) == 0 {
		return g.MatchRow
	}
	return func(s *Subject, cookie uint64) bool {
		st := g.socks[cookie]
		if m, ok := moved[cookie]; ok && (st == nil || len(m.held) > 0) {
			st = m
		}
		return g.matchRow(s, st)
	}
}

// matchRow judges a row by its socket's entry st, nil if none.
func (g *Gate) matchRow(s *Subject, st *gateSock) bool {
	switch {
	case st == nil:
	case len(st.held) > 0:
		return false
	case st.decided:
		withIdentity(s, &st.ident)
	}
	return g.f.Match(s)
}

// ends reports an event after which the socket has no further events.
func ends(ev *tracer.Event) bool {
	return ev.Kind == tracer.Transition && (ev.New == tcp.Close || ev.Inferred)
}

// Push judges one event; emit receives it, and any held events it
// decides, in order, if they pass. An error from emit stops and is
// returned.
func (g *Gate) Push(ev *tracer.Event, emit func(*tracer.Event) error) error {
	if g.f.Empty() {
		return emit(ev)
	}
	g.synthetic = g.synthetic || ev.Synthetic
	s := FromEvent(ev)
	if !g.needPort && !g.needOwner {
		if g.f.Match(&s) {
			return emit(ev)
		}
		return nil
	}
	st := g.socks[ev.Cookie]
	end := ends(ev)
	if st != nil && st.decided {
		if end {
			delete(g.socks, ev.Cookie)
		}
		withIdentity(&s, &st.ident)
		if g.f.Match(&s) {
			return emit(ev)
		}
		return nil
	}
	complete := !(g.needPort && ev.Local.Port() == 0) && !(g.needOwner && !ev.OwnerKnown)
	if !complete && !end {
		if g.held >= maxHeld {
			g.Forced++
		} else {
			if st == nil {
				st = &gateSock{}
				g.socks[ev.Cookie] = st
			}
			st.held = append(st.held, *ev)
			g.held++
			g.holding[ev.Cookie] = st
			return nil
		}
	}
	// Decided now, with this event's identity.
	var held []tracer.Event
	if st != nil {
		held = st.held
		g.held -= len(held)
		st.held = nil
		delete(g.holding, ev.Cookie)
	}
	if end || !g.needOwner || len(g.socks) >= maxFrozen {
		if !end && g.needOwner && st == nil {
			g.Forced++ // its later events are judged as they come
		}
		delete(g.socks, ev.Cookie)
	} else {
		if st == nil {
			st = &gateSock{}
			g.socks[ev.Cookie] = st
		}
		st.ident, st.decided = s, true
	}
	for i := range held {
		h := FromEvent(&held[i])
		withIdentity(&h, &s)
		if g.f.Match(&h) {
			if err := emit(&held[i]); err != nil {
				return err
			}
		}
	}
	if g.f.Match(&s) {
		return emit(ev)
	}
	return nil
}

// Flush judges every held event as it is, in time order: the stream has
// ended.
func (g *Gate) Flush(emit func(*tracer.Event) error) error {
	var held []tracer.Event
	for cookie, st := range g.socks {
		held = append(held, st.held...)
		delete(g.socks, cookie)
	}
	g.held = 0
	clear(g.holding)
	slices.SortStableFunc(held, func(a, b tracer.Event) int { return cmpUint(a.Time, b.Time) })
	for i := range held {
		s := FromEvent(&held[i])
		if g.f.Match(&s) {
			if err := emit(&held[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// withIdentity gives s the socket identity of id, keeping its own state
// and reason.
func withIdentity(s, id *Subject) {
	state, reason := s.State, s.Reason
	*s = *id
	s.State, s.Reason = state, reason
}
