package table

import (
	"time"

	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// Apply feeds one event, in the order the ring buffer gave it.
func (t *Table) Apply(e *tracer.Event) {
	t.stats.Events++
	e = t.resolveAlias(e)
	if e.Kind == tracer.Transition && e.Old == tcp.LastAck && e.New == tcp.Close && len(t.halfClosed) > 0 {
		t.peerClosed(e)
	}
	r := t.rows.lookup(e.Cookie)
	if r == nil {
		t.unseen(e)
		return
	}
	if r.has(flagFromDump) {
		start, end, owners := t.dumpStart, t.dumpEnd, t.dumpOwners
		if t.merging != nil && r.has(flagListed) {
			// Set by the merge under way.
			start, end, owners = t.merging.Start, t.merging.End, t.merging.Owners
		}
		if e.Time < start {
			t.stats.Superseded++
			t.history(r, e, owners)
			return
		}
		if e.Time <= end && e.Kind == tracer.Transition && rank(e.New) <= rank(r.state) {
			t.stats.Backwards++
			// Its owner is no older than the dump's: the owner scan may
			// have read the process before the socket was made.
			if e.OwnerKnown && !r.has(flagOwnerKnown) && !r.has(flagTimeWait) {
				r.setOwner(e.Owner, eventOwnerSource(e))
			}
			return
		}
	}
	if e.Kind == tracer.Accept {
		t.accept(r, e)
		return
	}
	t.move(r, e)
}

// unseen handles an event for a cookie without a row.
func (t *Table) unseen(e *tracer.Event) {
	if closed, ok := t.tombs[e.Cookie]; ok {
		if e.Time < closed {
			t.stats.Superseded++
			return
		}
		delete(t.tombs, e.Cookie) // the socket lives again (connect after a failed one)
	}
	if e.Kind == tracer.Transition && e.New == tcp.Close {
		t.bury(e.Cookie, e.Synthetic, KeyOf(e.NetNS, e.Local, e.Remote), e.Time)
		return
	}
	r := t.rows.add(e.Cookie)
	r.set(flagSynthetic, e.Synthetic)
	r.state = e.Old
	r.born = e.Time
	r.set(flagBornKnown, e.Kind == tracer.Transition && startsSocket(e))
	if e.Kind == tracer.Accept {
		r.state = e.New
		r.since = e.Time
		t.accept(r, e)
		return
	}
	t.move(r, e)
}

// startsSocket reports a transition that begins a socket's life: a connect
// or listen from CLOSE, or a child created by a listener.
func startsSocket(e *tracer.Event) bool {
	return e.Old == tcp.Close || e.Old == tcp.BoundInactive || (e.Old == tcp.Listen && e.New == tcp.SynRecv)
}

// bury leaves the tombstone of a socket that closed at (CLOCK_BOOTTIME ns).
// One under a synthetic id is also kept by Key: a dump that read the socket
// before it closed lists it under its real cookie, which nothing names yet.
// Listeners too (remote 0.0.0.0:0): a new listener on the address has a row
// of its own events, which the dump's socket is matched to first. A socket
// closed before connect() gave it a port has no Key a dump could list.
func (t *Table) bury(cookie uint64, synthetic bool, k Key, at uint64) {
	t.tombs[cookie] = at
	if synthetic && k.Local.Port() != 0 {
		t.syntheticTombs[k] = at
	}
}

func isHandOff(e *tracer.Event) bool { return e.Inferred || e.New == tcp.TimeWait }

// eventOwnerSource says how the tracer learned an event's owner; a source
// that does not say (a recording made before it did) is judged by the
// event's kind.
func eventOwnerSource(e *tracer.Event) tracer.OwnerSource {
	switch {
	case e.OwnerSource != tracer.OwnerNone:
		return e.OwnerSource
	case e.Kind == tracer.Accept:
		return tracer.OwnerAccept
	}
	return tracer.OwnerSyscall
}

func (t *Table) accept(r *Row, e *tracer.Event) {
	r.seen = max(r.seen, e.Time)
	r.set(flagUnlisted, false)
	r.netns = e.NetNS
	if e.Local.IsValid() {
		r.setAddrs(e.Local, e.Remote)
	}
	if e.OwnerKnown && !r.has(flagTimeWait) {
		r.setOwner(e.Owner, eventOwnerSource(e))
	}
}

// move applies a transition to its row.
func (t *Table) move(r *Row, e *tracer.Event) {
	if r.state != e.Old {
		t.stats.Mismatched++
	}
	if d, ok := t.leftFor(r, e); ok {
		if i := dwellSlot(e.Old); i >= 0 {
			r.dwell[i] = r.dwell[i].add(d)
		}
		if e.Old == tcp.SynSent && e.New == tcp.Established {
			r.set(flagHandshakeKnown, true)
		}
	}
	r.seen = e.Time
	r.netns = e.NetNS
	r.set(flagFromDump|flagUnlisted, false)
	// At CLOSE → SYN_SENT the local port is still 0; keep a port once known.
	if e.Local.IsValid() && (e.Local.Port() != 0 || r.lport == 0) {
		r.setAddrs(e.Local, e.Remote)
	}
	// An orphaned socket's events still name the process that closed it:
	// it stays the former owner.
	if e.OwnerKnown && !r.has(flagTimeWait) && !(r.has(flagOwnerFormer) && r.pid == e.Owner.PID) {
		r.setOwner(e.Owner, eventOwnerSource(e))
	}
	switch {
	case isHandOff(e):
		r.since = e.Time
		r.set(flagSinceKnown, true)
		r.state = tcp.TimeWait
		if e.TimeWaitFinWait2 {
			r.state = tcp.FinWait2
		}
		r.set(flagInferred, e.Inferred)
		r.set(flagTimeWait, true)
		r.expires = e.Time + uint64(TimeWaitLen)
		if r.state == tcp.FinWait2 {
			t.halfClosed[r.Key()] = r.cookie
		}
		t.end(r, e)
		// No process holds a timewait socket (ss lists it without users);
		// the last one is kept as its former owner.
		r.set(flagOwnerFormer, r.has(flagOwnerKnown))
	case e.New == tcp.Close:
		// The view gets the state it left and when it entered it.
		t.end(r, e)
		t.bury(r.cookie, r.has(flagSynthetic), r.Key(), e.Time)
		t.rows.removeCookie(r.cookie)
	default:
		r.state = e.New
		r.since = e.Time
		r.set(flagSinceKnown, true)
	}
}

// leftFor is the time the row spent in the state e leaves: the kernel's
// measure when it has one, else ours when we saw the row enter it.
func (t *Table) leftFor(r *Row, e *tracer.Event) (time.Duration, bool) {
	if e.DwellKnown {
		return e.Dwell, true
	}
	if r.has(flagSinceKnown) && r.state == e.Old && e.Time >= r.since {
		return time.Duration(e.Time - r.since), true
	}
	return 0, false
}

func (t *Table) end(r *Row, e *tracer.Event) {
	r.ended = e.Time
	r.setCounters(e.Counters)
	t.stats.Ended++
	if t.onEnd != nil {
		t.onEnd(r)
	}
}

// halfClosedTimeWait reports a timewait socket waiting for its peer's FIN.
func (r *Row) halfClosedTimeWait() bool { return r.has(flagTimeWait) && r.state == tcp.FinWait2 }

// peerClosed handles the end of a passive close (LAST_ACK → CLOSE) whose
// peer is on this host: the ACK that ended it came from the peer's
// timewait socket, which had the FIN and so is in TIME_WAIT now. No event
// reports that move; without this it would wait for the next dump. When
// the FIN was answered with a reset instead, there was no timewait socket:
// the kernel closed the socket for want of room in its timewait table
// (tcp_max_tw_buckets, TcpExt TCPTimeWaitOverflow; seen in the kernel
// matrix's small guests after a load test), which the tracepoint cannot
// tell from a hand-off. The row inferred for it goes.
func (t *Table) peerClosed(e *tracer.Event) {
	k := KeyOf(e.NetNS, e.Local, e.Remote).Peer()
	cookie, ok := t.halfClosed[k]
	if !ok {
		return
	}
	delete(t.halfClosed, k)
	if r := t.rows.lookup(cookie); r != nil && r.halfClosedTimeWait() && r.Key() == k {
		t.stats.PeerClosed++
		if e.Reason == tracer.ReasonReset {
			t.bury(cookie, r.has(flagSynthetic), k, e.Time)
			t.rows.removeCookie(cookie)
			return
		}
		r.state = tcp.TimeWait
		r.since, r.seen = e.Time, e.Time
		r.set(flagSinceKnown, true)
		r.set(flagFromDump|flagUnlisted, false) // newer than any dump under way
	}
}

// history takes what a superseded event still tells: when the socket was
// born, how long it stayed in the states it left, when it entered the
// state the dump found it in, and its owner when the dump that superseded
// it (dumpOwners) did not scan for owners (an event made between the
// barrier before a dump and its start is applied after the dump).
func (t *Table) history(r *Row, e *tracer.Event, dumpOwners bool) {
	if e.OwnerKnown && !dumpOwners && !r.has(flagOwnerKnown) && !r.has(flagTimeWait) {
		r.setOwner(e.Owner, eventOwnerSource(e))
	}
	if e.Kind != tracer.Transition {
		return
	}
	if startsSocket(e) && !r.has(flagBornKnown) {
		r.born = e.Time
		r.set(flagBornKnown, true)
	}
	if e.DwellKnown {
		if i := dwellSlot(e.Old); i >= 0 && r.dwell[i] == 0 {
			r.dwell[i] = makeDwell(e.Dwell)
			if e.Old == tcp.SynSent && e.New == tcp.Established {
				r.set(flagHandshakeKnown, true)
			}
		}
	}
	if e.New == r.state {
		r.since = e.Time
		r.set(flagSinceKnown, true)
	}
}
