package table

import (
	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// Before Linux 5.12 tracing programs get no socket cookies: the tracer
// gives events synthetic ids, and rows are keyed by them until a dump
// lists the socket under its real cookie. The dump and the events are
// matched by Key; from then on the synthetic id is an alias of the cookie.

// resolveAlias returns e with its synthetic id replaced by the cookie the
// id's row was adopted under, or joined to, or e itself.
func (t *Table) resolveAlias(e *tracer.Event) *tracer.Event {
	if !e.Synthetic {
		return e
	}
	real, ok := t.aliases[e.Cookie]
	if !ok {
		if real, ok = t.join(e); !ok {
			return e
		}
	}
	ev := *e
	ev.Cookie = real
	return &ev
}

// join finds the row a dump made, under the real cookie, for the socket of
// an event whose synthetic id no dump could match: the socket was older
// than the dump but got its id from an event made while the dump ran, or
// its row was made at CLOSE → SYN_SENT, before it had a port. The id
// becomes an alias of the cookie, and the row kept under the id, if any,
// gives the listed row what the dump could not know (birth, owner) and goes.
func (t *Table) join(e *tracer.Event) (uint64, bool) {
	k := KeyOf(e.NetNS, e.Local, e.Remote)
	if k.Local.Port() == 0 || k.Remote.Port() == 0 || (e.Kind == tracer.Transition && startsSocket(e)) {
		return 0, false // a listener, a connect without a port yet, or a new socket
	}
	byKey := t.listedByKey()
	cookie, ok := byKey[k]
	if !ok {
		return 0, false
	}
	r := t.rows.lookup(cookie)
	if r == nil || !listedConnection(r) || r.Key() != k {
		delete(byKey, k)
		return 0, false
	}
	if own := t.rows.lookup(e.Cookie); own != nil {
		if own.has(flagBornKnown) && !r.has(flagBornKnown) {
			r.born = own.born
			r.set(flagBornKnown, true)
		}
		if o, known := own.Owner(); known && !r.has(flagOwnerKnown) {
			r.setOwner(o, own.ownerSource)
		}
		t.rows.remove(int(t.rows.index[e.Cookie])) // r may move: not used after
	}
	delete(byKey, k)
	t.aliases[e.Cookie] = cookie
	t.stats.Adopted++
	return cookie, true
}

// listedConnection reports a row a synthetic-id event may join: under a
// real cookie, a connection, and not a timewait socket (which makes no
// events; a new connection may reuse its 4-tuple).
func listedConnection(r *Row) bool {
	return !r.has(flagSynthetic) && !r.has(flagTimeWait) && r.rport != 0
}

// listedByKey indexes the rows synthetic-id events may join by Key. On
// kernels with synthetic ids only dumps make rows under real cookies, so
// it is built on first use after each dump (Reconcile, Restore drop it);
// entries are checked on use.
func (t *Table) listedByKey() map[Key]uint64 {
	if t.byKey == nil {
		t.byKey = map[Key]uint64{}
		for i := range t.rows.n {
			if r := t.rows.at(i); listedConnection(r) {
				t.byKey[r.Key()] = r.cookie
			}
		}
	}
	return t.byKey
}

// syntheticRows finds the rows keyed by synthetic ids, by Key. A new
// connection may reuse the 4-tuple of a timewait row: the other row wins.
func (t *Table) syntheticRows() map[Key]uint64 {
	m := map[Key]uint64{}
	for i := range t.rows.n {
		r := t.rows.at(i)
		if !r.has(flagSynthetic) {
			continue
		}
		if other, ok := m[r.Key()]; ok && r.has(flagTimeWait) && !t.rows.lookup(other).has(flagTimeWait) {
			continue
		}
		m[r.Key()] = r.cookie
	}
	return m
}

// adopt gives the synthetic-id row with the Key of listed socket s the
// real cookie the dump lists it under; later events under the synthetic
// id go to it. A timewait row that was one before the dump began is not
// the full socket the dump lists on its 4-tuple: that is a new connection.
func (t *Table) adopt(synthetic map[Key]uint64, s *snapshot.Socket, d *Dump) *Row {
	if len(synthetic) == 0 {
		return nil // every kernel since 5.12: no Key to make
	}
	k, cookie := KeyOf(d.netnsOf(s), s.Local, s.Remote), s.Cookie
	id, ok := synthetic[k]
	if !ok {
		return nil
	}
	if r := t.rows.lookup(id); r.has(flagTimeWait) && r.ended < d.Start && !miniSocket(s) {
		return nil
	}
	delete(synthetic, k)
	r := t.rows.rekey(id, cookie)
	r.set(flagSynthetic, false)
	t.aliases[id] = cookie
	t.stats.Adopted++
	return r
}

// pruneAliases forgets the aliases of cookies that have neither a row nor
// a recent close.
func (t *Table) pruneAliases() {
	for id, real := range t.aliases {
		if _, closing := t.tombs[real]; !closing && t.rows.lookup(real) == nil {
			delete(t.aliases, id)
		}
	}
}
