package table

import "github.com/tcpstat/tcpstat/internal/tcp"

// DwellStates are the states a row keeps a dwell time for, in kernel order.
func DwellStates() []tcp.State { return dwellStates[:] }

// Restore sets the row for c.Cookie to what c says, adding it if needed:
// a recording's checkpoint brought back into a table that events then move
// on, exactly as they moved the live one.
func (t *Table) Restore(c *Conn) {
	r := t.rows.lookup(c.Cookie)
	if r == nil {
		r = t.rows.add(c.Cookie)
	}
	r.netns = c.NetNS
	r.setAddrs(c.Local, c.Remote)
	r.state = c.State
	r.set(flagInferred, c.Inferred)
	r.set(flagTimeWait, c.TimeWait)
	if c.OwnerKnown {
		r.setOwner(c.Owner, c.OwnerSource)
		r.set(flagOwnerFormer, c.OwnerFormer)
	} else {
		r.clearOwner()
	}
	r.since, r.born, r.ended, r.expires = c.Since, c.Born, c.Ended, c.Expires
	r.set(flagSinceKnown, c.SinceKnown)
	r.set(flagBornKnown, c.BornKnown)
	r.dwell = [dwellSlots]dwell{}
	for _, d := range c.Dwell {
		if i := dwellSlot(d.State); i >= 0 {
			r.dwell[i] = makeDwell(d.Dwell)
		}
	}
	r.set(flagHandshakeKnown, c.HandshakeKnown)
	if c.CountersKnown {
		r.setCounters(c.Counters)
	} else {
		r.bytesReceived, r.bytesAcked, r.retransmits, r.srttMicros = 0, 0, 0, 0
		r.set(flagCounters, false)
	}
	if r.halfClosedTimeWait() {
		t.halfClosed[r.Key()] = r.cookie
	}
	t.byKey = nil
}

// Expire removes the timewait rows whose timer ran out by now (CLOCK_BOOTTIME
// ns), as the first dump after it would, and returns how many of them
// counted says count (all, when nil; as Dump.Counted). A table rebuilt from
// a recording has no dumps to do it.
func (t *Table) Expire(now uint64, counted func(*Row) bool) int {
	n := 0
	for i := t.rows.n - 1; i >= 0; i-- {
		if r := t.rows.at(i); r.has(flagTimeWait) && r.expires != 0 && r.expires <= now {
			if counted == nil || counted(r) {
				n++
			}
			t.rows.remove(i)
		}
	}
	return n
}
