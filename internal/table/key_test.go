package table

import (
	"net/netip"
	"testing"

	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// A dual-stack listener ([::]:8080 with IPV6_V6ONLY off) accepts IPv4
// peers on AF_INET6 sockets: the server end's events and dump entries
// carry IPv4-mapped addresses, the client end's plain IPv4 ones.
var (
	mappedServer = netip.MustParseAddrPort("[::ffff:127.0.0.1]:8080")
	mappedClient = netip.MustParseAddrPort("[::ffff:127.0.0.1]:40000")
)

func mappedServerMove(at, cookie uint64, old, new tcp.State) *tracer.Event {
	e := serverMove(at, cookie, old, new)
	e.Local, e.Remote = mappedServer, mappedClient
	return e
}

func TestKeyOf(t *testing.T) {
	plain := KeyOf(testNS, server, client)
	if got := KeyOf(testNS, mappedServer, mappedClient); got != plain {
		t.Errorf("KeyOf(mapped) = %+v, want %+v", got, plain)
	}
	if got := KeyOf(testNS, client, server).Peer(); got != plain {
		t.Errorf("the client's Peer() = %+v, want the server's key %+v", got, plain)
	}
	v6 := netip.MustParseAddrPort("[::1]:8080")
	if got := KeyOf(testNS, v6, client).Local; got != v6 {
		t.Errorf("KeyOf changed a plain IPv6 address: %v", got)
	}
}

// TestDualStack follows connections between IPv4 clients and a dual-stack
// server through every place the table builds or compares a 4-tuple.
func TestDualStack(t *testing.T) {
	t.Run("rows show the server end unmapped", func(t *testing.T) {
		tb := New(Options{})
		tb.Apply(mappedServerMove(5*ms, 2, tcp.SynRecv, tcp.Established))
		r := tb.Lookup(2)
		if r == nil || r.Local() != server || r.Remote() != client || r.IPv6() {
			t.Fatalf("row %v: want %v → %v, IPv4", r, server, client)
		}
		if r.Key() != KeyOf(testNS, client, server).Peer() {
			t.Errorf("row key %+v is not the client's peer key", r.Key())
		}
	})
	t.Run("the client closes first: the server's close moves the client's timewait socket", func(t *testing.T) {
		tb := New(Options{})
		run(tb, []step{
			ev(handOff(6*ms, 1, tcp.FinWait2, true)),
			ev(mappedServerMove(7*ms, 2, tcp.Established, tcp.CloseWait)),
			ev(mappedServerMove(8*ms, 2, tcp.CloseWait, tcp.LastAck)),
			ev(mappedServerMove(9*ms, 2, tcp.LastAck, tcp.Close)),
		})
		r := tb.Lookup(1)
		if r == nil || r.State() != tcp.TimeWait || tb.Stats().PeerClosed != 1 {
			t.Errorf("client row %v, %d peer closes: want TIME_WAIT at the server's close", r, tb.Stats().PeerClosed)
		}
	})
	t.Run("a timewait row whose peer's FIN got a reset (no timewait socket: the table was full) is gone", func(t *testing.T) {
		tb := New(Options{})
		last := mappedServerMove(9*ms, 2, tcp.LastAck, tcp.Close)
		last.Reason = tracer.ReasonReset
		run(tb, []step{ev(handOff(6*ms, 1, tcp.FinWait2, true)), ev(last)})
		if r := tb.Lookup(1); r != nil || tb.Stats().PeerClosed != 1 {
			t.Errorf("client row %v, %d peer closes: want the row gone", r, tb.Stats().PeerClosed)
		}
	})
	t.Run("the server closes first: the client's close moves the server's timewait socket", func(t *testing.T) {
		tb := New(Options{})
		e := handOff(6*ms, 2, tcp.FinWait2, true)
		e.Local, e.Remote = mappedServer, mappedClient
		run(tb, []step{ev(e), ev(move(9*ms, 1, tcp.LastAck, tcp.Close))})
		r := tb.Lookup(2)
		if r == nil || r.State() != tcp.TimeWait || tb.Stats().PeerClosed != 1 {
			t.Errorf("server row %v, %d peer closes: want TIME_WAIT at the client's close", r, tb.Stats().PeerClosed)
		}
	})
	t.Run("the server's half-closed timewait socket listed by a dump still moves on", func(t *testing.T) {
		tb := New(Options{})
		e := handOff(6*ms, 2, tcp.FinWait2, true)
		e.Local, e.Remote = mappedServer, mappedClient
		tw := snapshot.Socket{Proto: snapshot.TCP, IPv6: true, State: tcp.FinWait2, Local: mappedServer, Remote: mappedClient,
			Cookie: 2, Timer: snapshot.TimerTimeWait}
		run(tb, []step{ev(e), dm(dump(10*ms, 20*ms, tw)), ev(move(30*ms, 1, tcp.LastAck, tcp.Close))})
		if r := tb.Lookup(2); r == nil || r.State() != tcp.TimeWait {
			t.Errorf("server row %v: want TIME_WAIT at the client's close", r)
		}
	})
	t.Run("synthetic ids are adopted by the mapped dump entry", func(t *testing.T) {
		tb := New(Options{})
		syn := func(at uint64, old, new tcp.State) *tracer.Event {
			e := mappedServerMove(at, 1<<63|9, old, new)
			e.Synthetic = true
			return e
		}
		tb.Apply(syn(5*ms, tcp.SynRecv, tcp.Established))
		rec := tb.Reconcile(dump(10*ms, 20*ms, snapshot.Socket{Proto: snapshot.TCP, IPv6: true, State: tcp.Established,
			Local: mappedServer, Remote: mappedClient, Cookie: 555, Inode: 9, Owners: []snapshot.Owner{{PID: 200, Comm: "nginx"}}}))
		if tb.Len() != 1 || rec.Added != 0 || tb.Stats().Adopted != 1 || tb.Lookup(555) == nil {
			t.Fatalf("%d rows, %d added, %d adopted: want the event's row under cookie 555", tb.Len(), rec.Added, tb.Stats().Adopted)
		}
		tb.Apply(syn(30*ms, tcp.Established, tcp.CloseWait))
		if r := tb.Lookup(555); r == nil || r.State() != tcp.CloseWait || tb.Len() != 1 {
			t.Errorf("after an event under the synthetic id: %d rows, row %v", tb.Len(), r)
		}
	})
}
