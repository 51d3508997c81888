package table

import (
	"net/netip"

	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/tcp"
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
	if ok {
		real = t.mendGuess(e, real)
	} else if real, ok = t.join(e); !ok {
		return e
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
		t.rows.removeCookie(e.Cookie) // r may move: not used after
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

// syntheticIndex finds the rows keyed by synthetic ids for a merge to
// adopt, by Key. Connects made at CLOSE → SYN_SENT, before the kernel gave
// them a port, are found apart, by their Key without it (see connectKey).
type syntheticIndex struct {
	byKey      map[Key]uint64
	connecting map[Key]*waiting
}

// waiting are the portless rows of one connectKey, in table order, and
// how many of them a merge has adopted.
type waiting struct {
	ids     []uint64
	adopted int
}

// syntheticRows indexes the rows keyed by synthetic ids. A new connection
// may reuse the 4-tuple of a timewait row: the other row wins.
func (t *Table) syntheticRows() *syntheticIndex {
	x := &syntheticIndex{byKey: map[Key]uint64{}, connecting: map[Key]*waiting{}}
	for i := range t.rows.n {
		r := t.rows.at(i)
		if !r.has(flagSynthetic) {
			continue
		}
		k := r.Key()
		if portless(r) {
			if x.connecting[k] == nil {
				x.connecting[k] = &waiting{}
			}
			x.connecting[k].ids = append(x.connecting[k].ids, r.cookie)
			continue
		}
		if other, ok := x.byKey[k]; ok && r.has(flagTimeWait) && !t.rows.lookup(other).has(flagTimeWait) {
			continue
		}
		x.byKey[k] = r.cookie
	}
	return x
}

// nextConnect takes the next portless row that may be the listed SYN_SENT
// socket with Key k.
func (x *syntheticIndex) nextConnect(k Key) (id uint64, ok bool) {
	w := x.connecting[connectKey(k)]
	if w == nil || w.adopted == len(w.ids) {
		return 0, false
	}
	w.adopted++
	return w.ids[w.adopted-1], true
}

// portless reports a connect's row made at CLOSE → SYN_SENT and not moved
// since: the tracepoint fires before connect() picks the local port, so the
// row has none, though a dump lists the socket with it.
func portless(r *Row) bool {
	return r.state == tcp.SynSent && r.lport == 0 && r.rport != 0
}

// connectKey is the Key a portless row has for a listed socket: its own
// with local port 0.
func connectKey(k Key) Key {
	k.Local = netip.AddrPortFrom(k.Local.Addr(), 0)
	return k
}

// adopt gives the synthetic-id row with the Key of listed socket s the
// real cookie the dump lists it under; later events under the synthetic
// id go to it. A timewait row that was one before the dump began is not
// the full socket the dump lists on its 4-tuple: that is a new connection.
// A socket listed in SYN_SENT may be a portless row's: the row takes its
// port. That is a guess until the connect's next event tells its port (see
// mendGuess): several connects from one address to one peer may wait at
// once, and one of them may be older than the tracer; the count of rows is
// right either way.
func (t *Table) adopt(x *syntheticIndex, s *snapshot.Socket, d *Dump) *Row {
	if len(x.byKey) == 0 && len(x.connecting) == 0 {
		return nil // every kernel since 5.12: no Key to make
	}
	k, cookie := KeyOf(d.netnsOf(s), s.Local, s.Remote), s.Cookie
	id, ok := x.byKey[k]
	guessed := false
	switch {
	case ok:
		if r := t.rows.lookup(id); r.has(flagTimeWait) && r.ended < d.Start && !miniSocket(s) {
			return nil
		}
		delete(x.byKey, k)
	case s.State == tcp.SynSent:
		if id, ok = x.nextConnect(k); !ok {
			return nil
		}
		guessed = true
	default:
		return nil
	}
	r := t.rows.rekey(id, cookie)
	r.set(flagSynthetic, false)
	if r.lport == 0 {
		r.setAddrs(s.Local, s.Remote)
	}
	t.aliases[id] = cookie
	if guessed {
		t.guesses[cookie] = id
	}
	t.stats.Adopted++
	return r
}

// mendGuess checks the port of the first event with one under a synthetic
// id whose portless row was adopted by guess, and returns the cookie of
// the row the event belongs to. A wrong guess gave the connect's history
// (its birth, times and owner: it is still the SYN_SENT row its connect
// made, as any event would have checked it) to another socket's row, r.
// When the dump listed the connect's socket, its row and r exchange
// histories, and ids when that row was a guess too. When it did not (the
// socket was hashed after the dump read its bucket, or r's socket is older
// than the tracer), the connect gets a row of its own, under its id, with
// the history r had, and r keeps what the dump knew.
func (t *Table) mendGuess(e *tracer.Event, real uint64) uint64 {
	if id, ok := t.guesses[real]; !ok || id != e.Cookie || e.Local.Port() == 0 {
		return real
	}
	delete(t.guesses, real)
	r := t.rows.lookup(real)
	if r == nil || r.lport == e.Local.Port() {
		return real
	}
	t.stats.Mended++
	k := KeyOf(e.NetNS, e.Local, e.Remote)
	if mine, listed := t.listedByKey()[k]; listed {
		if o := t.rows.lookup(mine); o != nil && o.Key() == k {
			swapHistory(r, o)
			t.aliases[e.Cookie] = mine
			if other, guessed := t.guesses[mine]; guessed {
				t.aliases[other] = real
				delete(t.guesses, mine)
				t.guesses[real] = other // its own event still checks it
			}
			return mine
		}
	}
	delete(t.aliases, e.Cookie)
	own := t.rows.add(e.Cookie)
	own.state, own.netns = r.state, r.netns
	own.set(flagSynthetic, true)
	swapHistory(r, own)
	r.born, r.since = t.dumpEnd, t.dumpEnd // as a row the dump added
	r.set(flagFromDump, true)
	return e.Cookie
}

// swapHistory exchanges two rows' histories (birth, state times, whether a
// dump or an event set the state, an owner events gave) and keeps what the
// dump knew of each socket (cookie, ports, counters, an owner it scanned).
func swapHistory(a, b *Row) {
	a.since, b.since = b.since, a.since
	a.seen, b.seen = b.seen, a.seen
	a.born, b.born = b.born, a.born
	a.dwell, b.dwell = b.dwell, a.dwell
	fromEvents := flagSinceKnown | flagBornKnown | flagHandshakeKnown | flagFromDump
	if a.ownerSource != tracer.OwnerSnapshot && b.ownerSource != tracer.OwnerSnapshot {
		// Owners a dump scanned are the sockets', and stay.
		fromEvents |= flagOwnerKnown | flagOwnerFormer
		a.pid, b.pid = b.pid, a.pid
		a.uid, b.uid = b.uid, a.uid
		a.comm, b.comm = b.comm, a.comm
		a.cgroup, b.cgroup = b.cgroup, a.cgroup
		a.ownerSource, b.ownerSource = b.ownerSource, a.ownerSource
	}
	fa, fb := a.flags&fromEvents, b.flags&fromEvents
	a.flags = a.flags&^fromEvents | fb
	b.flags = b.flags&^fromEvents | fa
}

// pruneAliases forgets the aliases of cookies that have neither a row nor
// a recent close.
func (t *Table) pruneAliases() {
	for id, real := range t.aliases {
		if _, closing := t.tombs[real]; !closing && t.rows.lookup(real) == nil {
			delete(t.aliases, id)
			delete(t.guesses, real)
		}
	}
}
