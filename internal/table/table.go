// Package table keeps the connection table: one row per TCP socket the
// kernel holds, keyed by socket cookie, built from a sock_diag dump and kept
// exact by the tracer's events. It is pure logic: the caller feeds it dumps
// (with the kernel clock read before and after) and events, in ring-buffer
// order, from one goroutine at a time.
//
// The ordering rules: an event older than the dump that set a row is
// superseded by it (it only fills in history: birth, dwell, handshake); an
// event made while the dump ran may move a row forward in the TCP lifecycle,
// never back; a close leaves a tombstone so a dump that read the socket
// before it closed cannot bring the row back; a row the newest dump does not
// list and no event has touched since that dump began is gone.
package table

import (
	"net/netip"
	"time"

	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// TimeWaitLen is how long Linux keeps a timewait mini-socket
// (TCP_TIMEWAIT_LEN); rows in namespaces no dump covers expire after it.
const TimeWaitLen = 60 * time.Second

// Options configure a Table.
type Options struct {
	// OnEnd is called when a connection ends: when it closes or is handed
	// to a timewait mini-socket. The row is valid only during the call.
	OnEnd func(*Row)
}

// Table is the connection table. The zero value is not usable; use New.
type Table struct {
	rows  rowStore
	tombs map[uint64]uint64 // cookie → CLOCK_BOOTTIME ns of its close
	// halfClosed finds timewait sockets still in FIN_WAIT2 by 4-tuple, so
	// the peer's close on this host can move them on (see peerClosed).
	// Entries are checked on use and rebuilt at each reconcile.
	halfClosed map[tuple]uint64
	// aliases maps the synthetic ids of events (kernels before 5.12 give
	// tracing programs no cookies) to the real cookies dumps found for them.
	aliases map[uint64]uint64
	onEnd   func(*Row)

	// The window of the last dump merged: rows whose state it set judge
	// events by it.
	dumpStart, dumpEnd uint64
	stats              Stats
}

// Stats count what the table did with its input since it was made.
type Stats struct {
	Events     uint64 // events applied or judged
	Superseded uint64 // older than the dump that set their row
	Backwards  uint64 // made during a dump, would have moved a row back
	Mismatched uint64 // transitions whose old state was not the row's state
	Ended      uint64 // connections closed or handed to timewait
	Reconciles uint64 // dumps merged
	PeerClosed uint64 // timewait sockets moved to TIME_WAIT by their local peer's close
}

// New returns an empty table.
func New(opts Options) *Table {
	return &Table{rows: newRowStore(), tombs: make(map[uint64]uint64), halfClosed: make(map[tuple]uint64),
		aliases: make(map[uint64]uint64), onEnd: opts.OnEnd}
}

// tuple is a socket's namespace and 4-tuple.
type tuple struct {
	netns         uint32
	local, remote netip.AddrPort
}

func (r *Row) tuple() tuple { return tuple{r.netns, r.Local(), r.Remote()} }

// halfClosedTimeWait reports a timewait socket waiting for its peer's FIN.
func (r *Row) halfClosedTimeWait() bool { return r.has(flagTimeWait) && r.state == tcp.FinWait2 }

// peerClosed handles the end of a passive close (LAST_ACK → CLOSE) whose
// peer is on this host: the ACK that ended it came from the peer's
// timewait socket, which had the FIN and so is in TIME_WAIT now. No event
// reports that move; without this it would wait for the next dump.
func (t *Table) peerClosed(e *tracer.Event) {
	k := tuple{e.NetNS, e.Remote, e.Local}
	cookie, ok := t.halfClosed[k]
	if !ok {
		return
	}
	delete(t.halfClosed, k)
	if r := t.rows.lookup(cookie); r != nil && r.halfClosedTimeWait() && r.tuple() == k {
		r.state = tcp.TimeWait
		r.since, r.seen = e.Time, e.Time
		r.set(flagSinceKnown, true)
		r.set(flagFromDump|flagUnlisted, false) // newer than any dump under way
		t.stats.PeerClosed++
	}
}

// Len is the number of rows.
func (t *Table) Len() int { return t.rows.n }

// Row returns the i-th row, 0 ≤ i < Len, in no particular order. The
// pointer is valid until the table next changes.
func (t *Table) Row(i int) *Row { return t.rows.at(i) }

// Lookup returns the row for a cookie, or nil.
func (t *Table) Lookup(cookie uint64) *Row { return t.rows.lookup(cookie) }

// Stats returns the counts so far.
func (t *Table) Stats() Stats { return t.stats }

// Tombstones is the number of recent closes remembered.
func (t *Table) Tombstones() int { return len(t.tombs) }

// rank orders states along the TCP lifecycle: opening, established, first
// and second half of a close, timewait, closed. No dump-era event may move a
// row to a lower rank.
func rank(s tcp.State) int {
	switch s {
	case tcp.SynSent, tcp.SynRecv, tcp.NewSynRecv, tcp.Listen:
		return 1
	case tcp.Established:
		return 2
	case tcp.FinWait1, tcp.CloseWait:
		return 3
	case tcp.FinWait2, tcp.Closing, tcp.LastAck:
		return 4
	case tcp.TimeWait:
		return 5
	case tcp.Close:
		return 6
	}
	return 0
}

func isHandOff(e *tracer.Event) bool { return e.Inferred || e.New == tcp.TimeWait }

// Apply feeds one event, in the order the ring buffer gave it.
func (t *Table) Apply(e *tracer.Event) {
	t.stats.Events++
	if real, ok := t.aliases[e.Cookie]; ok && e.Synthetic {
		ev := *e
		ev.Cookie = real
		e = &ev
	}
	if e.Kind == tracer.Transition && e.Old == tcp.LastAck && e.New == tcp.Close && len(t.halfClosed) > 0 {
		t.peerClosed(e)
	}
	r := t.rows.lookup(e.Cookie)
	if r == nil {
		t.unseen(e)
		return
	}
	if r.has(flagFromDump) {
		if e.Time < t.dumpStart {
			t.stats.Superseded++
			t.history(r, e)
			return
		}
		if e.Time <= t.dumpEnd && e.Kind == tracer.Transition && rank(e.New) <= rank(r.state) {
			t.stats.Backwards++
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
		t.tombs[e.Cookie] = e.Time
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

func (t *Table) accept(r *Row, e *tracer.Event) {
	r.seen = max(r.seen, e.Time)
	r.set(flagUnlisted, false)
	r.netns = e.NetNS
	if e.Local.IsValid() {
		r.setAddrs(e.Local, e.Remote)
	}
	if e.OwnerKnown && !r.has(flagTimeWait) {
		r.setOwner(e.Owner)
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
	if e.OwnerKnown {
		r.setOwner(e.Owner)
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
			t.halfClosed[r.tuple()] = r.cookie
		}
		t.end(r, e)
		r.clearOwner() // ss lists timewait sockets without users
	case e.New == tcp.Close:
		// The view gets the state it left and when it entered it.
		t.end(r, e)
		t.tombs[r.cookie] = e.Time
		t.rows.remove(int(t.rows.index[r.cookie]))
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

// history takes what a superseded event still tells: when the socket was
// born, how long it stayed in the states it left, and when it entered the
// state the dump found it in.
func (t *Table) history(r *Row, e *tracer.Event) {
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

// Dump is one sock_diag listing and the kernel clock around it.
type Dump struct {
	Sockets []snapshot.Socket
	// Start and End are CLOCK_BOOTTIME ns read just before the dump began
	// and just after it ended: each socket was read at some instant between.
	Start, End uint64
	// NetNS is the network namespace the dump lists; rows of other
	// namespaces are not judged by it. 0 means every row is judged.
	NetNS uint32
	// Owners says the sockets' Owners were scanned: a socket without one
	// has no owner. When false, owners are left as they are.
	Owners bool
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
	for i := range d.Sockets {
		m.Add(&d.Sockets[i], d.End)
	}
	return m.Done(d.End)
}

// A Merge is a Reconcile fed one socket at a time, as a dump is read: no
// slice of 100 000 sockets is built first. Nothing else may use the table
// until Done.
type Merge struct {
	t         *Table
	d         Dump // without Sockets; End moves with each socket
	st        ReconcileStats
	synthetic map[tuple]uint64 // built on first need
}

// Reserve makes room for n rows in an empty table, so that filling it from
// a first dump does not grow the index a dozen times.
func (t *Table) Reserve(n int) {
	if t.rows.n == 0 && n > 0 {
		t.rows.index = make(map[uint64]int32, n)
	}
}

// Merge begins merging a dump that began at start (see Dump).
func (t *Table) Merge(start uint64, netns uint32, owners bool) *Merge {
	return &Merge{t: t, d: Dump{Start: start, End: start, NetNS: netns, Owners: owners}}
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
		r = t.adopt(m.synthetic, tuple{d.NetNS, s.Local, s.Remote}, s.Cookie)
	}
	if r == nil {
		if closed, ok := t.tombs[s.Cookie]; ok && closed >= d.Start {
			m.st.Closed++
			return
		}
		t.addListed(s, d)
		m.st.Added++
		return
	}
	r.set(flagListed, true)
	t.mergeListed(r, s, d, &m.st)
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
	for id, real := range t.aliases {
		if _, closing := t.tombs[real]; !closing && t.rows.lookup(real) == nil {
			delete(t.aliases, id)
		}
	}
	t.dumpStart, t.dumpEnd = d.Start, d.End
	t.stats.Reconciles++
	return m.st
}

// syntheticRows finds the rows keyed by synthetic ids, by namespace and
// 4-tuple.
func (t *Table) syntheticRows() map[tuple]uint64 {
	m := map[tuple]uint64{}
	for i := range t.rows.n {
		if r := t.rows.at(i); r.has(flagSynthetic) {
			m[r.tuple()] = r.cookie
		}
	}
	return m
}

// adopt gives the synthetic-id row with tuple tu the real cookie a dump
// lists it under; later events under the synthetic id go to it.
func (t *Table) adopt(synthetic map[tuple]uint64, tu tuple, cookie uint64) *Row {
	id, ok := synthetic[tu]
	if !ok {
		return nil
	}
	delete(synthetic, tu)
	r := t.rows.rekey(id, cookie)
	r.set(flagSynthetic, false)
	t.aliases[id] = cookie
	return r
}

func (t *Table) addListed(s *snapshot.Socket, d *Dump) {
	r := t.rows.add(s.Cookie)
	r.set(flagListed, true)
	r.set(flagFromDump, true)
	r.netns = d.NetNS
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
}

// mergeListed updates a row from its socket in the dump.
func (t *Table) mergeListed(r *Row, s *snapshot.Socket, d *Dump, st *ReconcileStats) {
	defer t.mergeCounters(r, s)
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
			st.Confirmed++
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
		st.Confirmed++
	} else if r.state != s.State && !(wasTimeWait && timeWait) {
		st.Corrected++
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

func (t *Table) mergeOwner(r *Row, s *snapshot.Socket, d *Dump) {
	switch {
	case r.has(flagTimeWait):
		r.clearOwner()
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
		r.setOwner(tracer.Process{PID: o.PID, Comm: o.Comm, UID: s.UID})
	case d.Owners:
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
			t.halfClosed[r.tuple()] = r.cookie
		}
	}
}

// gone judges one row after a dump.
func (t *Table) gone(r *Row, d *Dump, st *ReconcileStats) bool {
	switch {
	case r.has(flagListed):
		return false
	case d.NetNS != 0 && r.netns != d.NetNS:
		// No dump covers this namespace: only time ends its timewait rows.
		if r.has(flagTimeWait) && d.End > r.ended && time.Duration(d.End-r.ended) > TimeWaitLen {
			st.Expired++
			return true
		}
		return false
	case r.seen >= d.Start:
		st.Kept++
		return false
	case r.has(flagTimeWait) && r.expires != 0 && d.Start >= r.expires:
		// Its timer has run out: the dump did not skip it.
		st.Expired++
		return true
	case !r.has(flagUnlisted):
		// A dump walks the hash tables in batches and skips sockets when
		// others leave the bucket it resumes in (seen under churn): one
		// absence is not enough.
		r.set(flagUnlisted, true)
		st.Unlisted++
		return false
	case r.has(flagTimeWait):
		st.Expired++
	default:
		st.Vanished++
	}
	return true
}
