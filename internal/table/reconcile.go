package table

import (
	"time"

	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// Dump is one sock_diag listing and the kernel clock around it.
type Dump struct {
	Sockets []snapshot.Socket
	// Start and End are CLOCK_BOOTTIME ns read just before the dump began
	// and just after it ended: each socket was read at some instant between.
	Start, End uint64
	// NetNS is the network namespace the dump lists; rows of other
	// namespaces are not judged by it. 0 means every row is judged.
	// Sockets that carry their own namespace (snapshot.Socket.NetNS, a
	// dump of many) are placed in it.
	NetNS uint32
	// Covers, when set, replaces NetNS in saying which namespaces' rows the
	// dump judges: those it listed, and those known to be gone. Rows of
	// other namespaces (not readable, failed to dump) are left alone.
	Covers func(netns uint32) bool
	// Owners says the sockets' Owners were scanned: a socket without one
	// has no owner. When false, owners are left as they are.
	Owners bool
	// Counted, when set, says which rows ReconcileStats' outcomes (Added,
	// Corrected, Confirmed, Expired, Vanished) count, judged on the row as
	// the merge leaves it: serve FILTER's metrics count only the rows the
	// filter selects. Every row is merged all the same, and the counts the
	// table's own judgement rests on (Kept, Unlisted, Closed) take them all.
	Counted func(*Row) bool
}

// ReconcileStats say what merging one dump changed.
type ReconcileStats struct {
	Added     int // listed sockets without a row (at start-up: every socket)
	Corrected int // rows whose state the dump changed, other than timewait expected
	Confirmed int // inferred timewait rows the dump listed
	Expired   int // timewait rows no longer listed
	Vanished  int // other rows gone without an event saying so
	Kept      int // unlisted rows kept because an event touched them during the dump
	Unlisted  int // rows missing from this dump only, kept until the next one says the same
	Closed    int // listed sockets skipped because they closed during the dump
}

// Add sums two ReconcileStats.
func (s ReconcileStats) Add(o ReconcileStats) ReconcileStats {
	return ReconcileStats{
		Added: s.Added + o.Added, Corrected: s.Corrected + o.Corrected, Confirmed: s.Confirmed + o.Confirmed,
		Expired: s.Expired + o.Expired, Vanished: s.Vanished + o.Vanished, Kept: s.Kept + o.Kept,
		Unlisted: s.Unlisted + o.Unlisted, Closed: s.Closed + o.Closed,
	}
}

// Reconcile merges a dump: at start-up it fills the table, later it
// confirms inferred timewait rows, expires those gone, and after lost
// events brings the table back to what the kernel holds.
func (t *Table) Reconcile(d *Dump) ReconcileStats {
	m := t.Merge(d.Start, d.NetNS, d.Owners)
	m.d.Covers, m.d.Counted = d.Covers, d.Counted
	for i := range d.Sockets {
		m.Add(&d.Sockets[i], d.End)
	}
	return m.Done(d.End)
}

// A Merge is a Reconcile fed one socket at a time, as a dump is read: no
// slice of 100 000 sockets is built first. Events with real cookies may be
// applied between two Adds, as they would have been before a Reconcile:
// an event at or after the dump's start wins over the dump either way, and
// one that closes a socket before it is listed leaves a tomb that skips it.
// Events with synthetic ids may not: the Keys of their rows, which adopt
// matches listed sockets by, are read once per merge.
type Merge struct {
	t         *Table
	d         Dump // without Sockets; End moves with each socket
	st        ReconcileStats
	synthetic *syntheticIndex // built on first need
}

// Merge begins merging a dump that began at start (see Dump).
func (t *Table) Merge(start uint64, netns uint32, owners bool) *Merge {
	m := &Merge{t: t, d: Dump{Start: start, End: start, NetNS: netns, Owners: owners}}
	t.merging = &m.d
	return m
}

// SetCovers says which namespaces the dump judges (Dump.Covers); call it
// before Done.
func (m *Merge) SetCovers(covers func(netns uint32) bool) { m.d.Covers = covers }

// SetCounted says which rows the merge's outcomes count (Dump.Counted).
func (m *Merge) SetCounted(counted func(*Row) bool) { m.d.Counted = counted }

// count adds r to the outcome n, if the dump counts r (Counted).
func (d *Dump) count(n *int, r *Row) {
	if d.Counted == nil || d.Counted(r) {
		*n++
	}
}

// netnsOf is the namespace a listed socket is in.
func (d *Dump) netnsOf(s *snapshot.Socket) uint32 {
	if s.NetNS != 0 {
		return s.NetNS
	}
	return d.NetNS
}

// covers reports whether the dump judges rows of namespace netns.
func (d *Dump) covers(netns uint32) bool {
	if d.Covers != nil {
		return d.Covers(netns)
	}
	return d.NetNS == 0 || netns == d.NetNS
}

// Add merges one listed socket, which the kernel read before readBy. It
// keeps nothing of s.
func (m *Merge) Add(s *snapshot.Socket, readBy uint64) {
	t, d := m.t, &m.d
	d.End = readBy
	if (s.Proto != snapshot.TCP && s.Proto != 0) || s.Cookie == 0 {
		return
	}
	r := t.rows.lookup(s.Cookie)
	if r == nil {
		if m.synthetic == nil {
			m.synthetic = t.syntheticRows()
		}
		r = t.adopt(m.synthetic, s, d)
	}
	if r == nil {
		if closed, ok := t.tombs[s.Cookie]; ok && closed >= d.Start {
			m.st.Closed++
			return
		}
		if t.closedSynthetic(s, d) {
			m.st.Closed++
			return
		}
		d.count(&m.st.Added, t.addListed(s, d))
		return
	}
	r.set(flagListed, true)
	t.mergeListed(r, s, d, &m.st)
}

// closedSynthetic reports a listed socket that closed under a synthetic id
// while the dump ran. A new socket at the same 4-tuple cannot have been
// listed with it: its row comes from its own events.
func (t *Table) closedSynthetic(s *snapshot.Socket, d *Dump) bool {
	if len(t.syntheticTombs) == 0 {
		return false // every kernel since 5.12: no Key to make
	}
	closed, ok := t.syntheticTombs[KeyOf(d.netnsOf(s), s.Local, s.Remote)]
	return ok && closed >= d.Start
}

// Abandon ends a merge whose dump failed: what it merged stays (the
// kernel's word, as of its window, which rows it set judge events by), and
// no row is judged for being left out of it.
func (m *Merge) Abandon() {
	t := m.t
	for i := range t.rows.n {
		t.rows.at(i).set(flagListed, false)
	}
	t.byKey, t.merging = nil, nil
	t.dumpStart, t.dumpEnd = m.d.Start, m.d.End
}

// Done ends the merge of a dump that ended at end: rows it did not list
// are judged, and what the merge changed is returned.
func (m *Merge) Done(end uint64) ReconcileStats {
	t, d := m.t, &m.d
	d.End = end
	t.sweep(d, &m.st)
	for cookie, closed := range t.tombs {
		if closed < d.Start {
			delete(t.tombs, cookie)
		}
	}
	for k, closed := range t.syntheticTombs {
		if closed < d.Start {
			delete(t.syntheticTombs, k)
		}
	}
	t.pruneAliases()
	t.byKey, t.merging = nil, nil
	t.dumpStart, t.dumpEnd, t.dumpOwners = d.Start, d.End, d.Owners
	t.stats.Reconciles++
	return m.st
}

func (t *Table) addListed(s *snapshot.Socket, d *Dump) *Row {
	r := t.rows.add(s.Cookie)
	r.set(flagListed, true)
	r.set(flagFromDump, true)
	r.netns = d.netnsOf(s)
	r.setAddrs(s.Local, s.Remote)
	r.state = s.State
	r.since, r.born = d.End, d.End
	r.set(flagTimeWait, miniSocket(s))
	if miniSocket(s) {
		r.ended = d.End
		r.expires = d.Start + uint64(s.TimerLeft)
	}
	t.mergeOwner(r, s, d)
	t.mergeCounters(r, s)
	return r
}

// mergeListed updates a row from its socket in the dump.
func (t *Table) mergeListed(r *Row, s *snapshot.Socket, d *Dump, st *ReconcileStats) {
	var outcome *int // judged on the row as the merge leaves it
	defer func() {
		t.mergeCounters(r, s)
		if outcome != nil {
			d.count(outcome, r)
		}
	}()
	if !r.has(flagFromDump) && r.seen >= d.Start {
		// An event at or after the dump's start is at least as new as the
		// dump's view. Only the timewait substate, which no event reports,
		// is taken from the dump.
		if r.has(flagTimeWait) && r.state == tcp.FinWait2 && s.State == tcp.TimeWait {
			r.state = tcp.TimeWait
			r.since = d.End
			r.set(flagSinceKnown, false)
		}
		if r.has(flagInferred) && miniSocket(s) {
			r.set(flagInferred, false)
			outcome = &st.Confirmed
		}
		if !r.has(flagOwnerKnown) && !r.has(flagTimeWait) && len(s.Owners) > 0 {
			t.mergeOwner(r, s, d)
		}
		return
	}
	// The dump is newer than anything else known about the row.
	wasTimeWait := r.has(flagTimeWait)
	timeWait := miniSocket(s) || (wasTimeWait && s.State == tcp.FinWait2)
	if r.has(flagInferred) && timeWait {
		outcome = &st.Confirmed
	} else if r.state != s.State && !(wasTimeWait && timeWait) {
		outcome = &st.Corrected
	}
	if r.state != s.State {
		r.state = s.State
		r.since = d.End
		r.set(flagSinceKnown, false)
	}
	r.set(flagInferred, false)
	r.set(flagTimeWait, timeWait)
	if timeWait && !wasTimeWait {
		r.ended = d.End
	}
	if timeWait && s.Timer == snapshot.TimerTimeWait {
		r.expires = d.Start + uint64(s.TimerLeft)
	}
	r.set(flagFromDump, true)
	r.setAddrs(s.Local, s.Remote)
	t.mergeOwner(r, s, d)
}

// miniSocket reports a timewait mini-socket: in TIME_WAIT, or FIN_WAIT2
// before the peer's FIN, always with the timewait timer.
func miniSocket(s *snapshot.Socket) bool {
	return s.State == tcp.TimeWait || s.Timer == snapshot.TimerTimeWait
}

// mergeOwner takes the owner from the dump's scan. A socket no process
// holds any more (a timewait mini-socket, or a full socket orphaned by
// close(), which sock_diag lists without an inode) keeps the owner it had
// as its former owner.
func (t *Table) mergeOwner(r *Row, s *snapshot.Socket, d *Dump) {
	switch {
	case r.has(flagTimeWait):
		r.set(flagOwnerFormer, r.has(flagOwnerKnown))
	case len(s.Owners) > 0:
		o := s.Owners[0]
		if r.has(flagOwnerKnown) && r.pid != o.PID {
			// Several processes may hold the socket (after fork); keep the
			// one the events named if it is among them.
			for _, other := range s.Owners[1:] {
				if other.PID == r.pid {
					o = other
				}
			}
		}
		if r.has(flagOwnerKnown) && !r.has(flagOwnerFormer) && r.pid == o.PID {
			return // the events named it, and said how they knew
		}
		r.setOwner(tracer.Process{PID: o.PID, Comm: o.Comm, UID: s.UID}, tracer.OwnerSnapshot)
	case !d.Owners:
	case s.Inode == 0 && r.has(flagOwnerKnown):
		r.set(flagOwnerFormer, true)
	case r.has(flagOwnerKnown) && r.seen >= d.Start:
		// An event at or after the dump began named the owner: an accept
		// (which leaves a row the dump set) whose descriptor the scan,
		// reading the process before accept() returned, did not see.
	default:
		r.clearOwner()
	}
}

func (t *Table) mergeCounters(r *Row, s *snapshot.Socket) {
	if s.Info == nil || r.has(flagTimeWait) {
		return // a timewait row keeps the counters the connection ended with
	}
	r.setCounters(tracer.Counters{
		BytesReceived: s.Info.BytesReceived,
		BytesAcked:    s.Info.BytesAcked,
		Retransmits:   s.Info.Retransmits,
		SRTT:          s.Info.RTT,
	})
}

// sweep removes the rows the dump should have listed but did not, and
// rebuilds the index of half-closed timewait rows from those that stay.
func (t *Table) sweep(d *Dump, st *ReconcileStats) {
	clear(t.halfClosed)
	for i := t.rows.n - 1; i >= 0; i-- {
		r := t.rows.at(i)
		if t.gone(r, d, st) {
			t.rows.remove(i)
			continue
		}
		if r.has(flagListed) {
			r.set(flagListed|flagUnlisted, false)
		}
		if r.halfClosedTimeWait() {
			t.halfClosed[r.Key()] = r.cookie
		}
	}
}

// gone judges one row after a dump.
func (t *Table) gone(r *Row, d *Dump, st *ReconcileStats) bool {
	switch {
	case r.has(flagListed):
		return false
	case !d.covers(r.netns):
		// No dump covers this namespace: only time ends its timewait rows.
		if r.has(flagTimeWait) && d.End > r.ended && time.Duration(d.End-r.ended) > TimeWaitLen {
			d.count(&st.Expired, r)
			return true
		}
		return false
	case r.seen >= d.Start:
		st.Kept++
		return false
	case r.has(flagTimeWait) && r.expires != 0 && d.Start >= r.expires:
		// Its timer has run out: the dump did not skip it.
		d.count(&st.Expired, r)
		return true
	case !r.has(flagUnlisted):
		// A dump walks the hash tables in batches and skips sockets when
		// others leave the bucket it resumes in (seen under churn): one
		// absence is not enough.
		r.set(flagUnlisted, true)
		st.Unlisted++
		return false
	case r.has(flagTimeWait):
		d.count(&st.Expired, r)
	default:
		d.count(&st.Vanished, r)
	}
	return true
}
