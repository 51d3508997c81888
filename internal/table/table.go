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
//
// apply.go applies events, reconcile.go merges dumps, alias.go gives rows
// keyed by synthetic ids (kernels before 5.12) their real cookies.
package table

import (
	"net/netip"
	"time"

	"github.com/tcpstat/tcpstat/internal/tcp"
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
// It is for one goroutine at a time: even Lookup and Holds update a cache.
type Table struct {
	rows  rowStore
	tombs map[uint64]uint64 // cookie → CLOCK_BOOTTIME ns of its close
	// halfClosed finds timewait sockets still in FIN_WAIT2 by Key, so the
	// peer's close on this host can move them on (see peerClosed).
	// Entries are checked on use and rebuilt at each reconcile.
	halfClosed map[Key]uint64
	// aliases maps the synthetic ids of events (kernels before 5.12 give
	// tracing programs no cookies) to the real cookies dumps found for them.
	aliases map[uint64]uint64
	// guesses maps the cookies dumps gave portless connects' rows to their
	// synthetic ids (see adopt): the first event with a port checks each.
	guesses map[uint64]uint64
	// byKey finds rows under real cookies by Key for synthetic-id events
	// no dump matched (see join); nil until first needed after a dump.
	byKey map[Key]uint64
	// syntheticTombs are the tombstones of sockets that closed under
	// synthetic ids no dump had matched: a dump lists such a socket under
	// its real cookie, which its cookie tombstone does not name.
	syntheticTombs map[Key]uint64
	onEnd          func(*Row)

	// The window of the last dump merged, and whether it scanned for
	// owners: rows whose state it set judge events by it.
	dumpStart, dumpEnd uint64
	dumpOwners         bool
	// merging is the dump of the Merge under way, if any: rows it has
	// listed judge events by its window instead.
	merging *Dump
	stats   Stats
}

// Stats count what the table did with its input since it was made.
type Stats struct {
	Events     uint64 // events applied or judged
	Superseded uint64 // older than the dump that set their row
	Backwards  uint64 // made during a dump, would have moved a row back
	Mismatched uint64 // transitions whose old state was not the row's state
	Ended      uint64 // connections closed or handed to timewait
	Reconciles uint64 // dumps merged
	PeerClosed uint64 // timewait rows moved to TIME_WAIT (or gone, when the peer got a reset: no timewait socket) by their local peer's close
	Adopted    uint64 // synthetic ids given their real cookie by a dump (their row adopted, or their events joined to its row)
	Mended     uint64 // adoptions of waiting connects that their events proved wrong
}

// New returns an empty table.
func New(opts Options) *Table {
	t := &Table{tombs: make(map[uint64]uint64), halfClosed: make(map[Key]uint64),
		aliases: make(map[uint64]uint64), guesses: make(map[uint64]uint64), syntheticTombs: make(map[Key]uint64), onEnd: opts.OnEnd}
	t.rows = newRowStore(t)
	return t
}

// Key identifies a socket where its cookie cannot: by network namespace
// and 4-tuple. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what a
// dual-stack socket has for an IPv4 peer) are unmapped, so a row, the
// events and dumps of its socket, and the other end of its connection all
// give the same Key. Make one with KeyOf.
type Key struct {
	NetNS         uint32
	Local, Remote netip.AddrPort
}

// KeyOf returns the Key of a socket in namespace netns.
func KeyOf(netns uint32, local, remote netip.AddrPort) Key {
	return Key{netns, unmap(local), unmap(remote)}
}

// Peer is the Key of the other end of the connection, when it is a
// socket in the same namespace.
func (k Key) Peer() Key { return Key{k.NetNS, k.Remote, k.Local} }

func unmap(a netip.AddrPort) netip.AddrPort {
	if !a.Addr().Is4In6() {
		return a
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// Len is the number of rows.
func (t *Table) Len() int { return t.rows.n }

// Row returns the i-th row, 0 ≤ i < Len, in no particular order. The
// pointer is valid until the table next changes.
func (t *Table) Row(i int) *Row { return t.rows.at(i) }

// Lookup returns the row for a cookie, or nil.
func (t *Table) Lookup(cookie uint64) *Row { return t.rows.lookup(cookie) }

// Holds reports whether cookie names a socket the table has a row for,
// directly or through a synthetic id's alias, or one that closed recently.
func (t *Table) Holds(cookie uint64) bool {
	cookie = t.RowCookie(cookie)
	_, closing := t.tombs[cookie]
	return closing || t.rows.lookup(cookie) != nil
}

// RowCookie is the cookie of the row the events under id go to: the real
// cookie a dump listed a synthetic id's socket under (kernels before
// 5.12), or id itself.
func (t *Table) RowCookie(id uint64) uint64 {
	if real, ok := t.aliases[id]; ok {
		return real
	}
	return id
}

// Stats returns the counts so far.
func (t *Table) Stats() Stats { return t.stats }

// Tombstones is the number of recent closes remembered.
func (t *Table) Tombstones() int { return len(t.tombs) }

// Reserve makes room for n rows in an empty table, so that filling it from
// a first dump does not grow the index a dozen times.
func (t *Table) Reserve(n int) {
	if t.rows.n == 0 && n > 0 {
		t.rows.reindex(n)
	}
}

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
