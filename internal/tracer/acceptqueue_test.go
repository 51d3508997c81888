package tracer

import (
	"net"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/tcp"
)

// TestAcceptQueueBounded: with state in socket storage the sockets map
// holds only accepted sockets' owners on their way from the accept program
// to the socket's next transition (TestStateSpillsToStorage: the default,
// where it holds state first). It is a hash allocated as it fills, bounded by
// MaxSockets: an accepted socket that finds it full is counted (SocketsFull)
// and has no owner until its next system call; one that found room gets
// accept()'s owner at its next transition, which takes its entry out.
// Without socket storage the map keeps every socket's state, preallocated.
func TestAcceptQueueBounded(t *testing.T) {
	requireRoot(t)
	const bound, conns = 16, 40
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	tr := newTracer(t, Options{MaxSockets: bound, Port: uint16(port), storageOnly: true})
	info, err := tr.objs.Sockets.Info()
	must(t, err)
	if !tr.SocketStorage() || preemptRT() {
		if info.Type != ebpf.LRUHash || info.Flags&unix.BPF_F_NO_PREALLOC != 0 {
			t.Fatalf("sockets map without socket storage: %v, flags %#x; want a preallocated LRU hash", info.Type, info.Flags)
		}
		return
	}
	if info.Type != ebpf.Hash || info.Flags&unix.BPF_F_NO_PREALLOC == 0 || info.MaxEntries != bound {
		t.Fatalf("sockets map with socket storage: %v, flags %#x, %d entries; want a hash of %d allocated as it fills",
			info.Type, info.Flags, info.MaxEntries, bound)
	}
	if tr.SyntheticIDs() {
		t.Skip("5.11: the map's entries carry synthetic ids, which SO_COOKIE cannot match")
	}
	before, err := tr.Stats()
	must(t, err)

	clients, servers := holdConns(t, ln, conns)
	ours := map[uint64]bool{} // the accepted sockets' cookies
	for _, s := range servers {
		ours[cookieOf(t, s)] = false
	}
	// The entries in the map now: accepted sockets with no transition since.
	entries, queued := 0, 0
	var key uint64
	var st tcpstateSockState
	for it := tr.objs.Sockets.Iterate(); it.Next(&key, &st); {
		entries++
		if _, ok := ours[st.Cookie]; ok {
			ours[st.Cookie] = true
			queued++
		}
	}
	if entries > bound {
		t.Errorf("%d entries in a sockets map of %d", entries, bound)
	}
	if queued == 0 {
		t.Fatalf("none of %d accepted sockets is in the sockets map (%d entries)", conns, entries)
	}
	after, err := tr.Stats()
	must(t, err)
	if full := after.SocketsFull - before.SocketsFull; full < uint64(conns-queued) {
		t.Errorf("SocketsFull grew by %d; %d accepted sockets found no room", full, conns-queued)
	}

	// The peers close first: each accepted socket's next transition
	// (ESTABLISHED → CLOSE_WAIT) runs in softirq, where no task holds the
	// socket: its owner is accept()'s, handed over, or none.
	for _, c := range clients {
		c.Close()
	}
	s := &stream{t: t, tr: tr}
	closeWaits := map[uint64]*Event{}
	s.waitFor("every accepted socket in CLOSE_WAIT", func(e *Event) bool {
		if e.New == tcp.CloseWait && e.Local.Port() == uint16(port) {
			closeWaits[e.Cookie] = e
		}
		return len(closeWaits) == conns
	})
	for cookie, wasQueued := range ours {
		e, ok := closeWaits[cookie]
		switch {
		case !ok:
			t.Errorf("accepted socket %d: no CLOSE_WAIT", cookie)
		case wasQueued && (e.OwnerSource != OwnerAccept || e.Owner.PID != uint32(os.Getpid())):
			t.Errorf("accepted socket %d, handed over: owner %+v from %q; want pid %d from accept", cookie, e.Owner, e.OwnerSource, os.Getpid())
		case !wasQueued && e.OwnerSource != OwnerNone:
			t.Errorf("accepted socket %d, no room: owner from %q; want none", cookie, e.OwnerSource)
		}
	}
	for it := tr.objs.Sockets.Iterate(); it.Next(&key, &st); {
		if _, ok := ours[st.Cookie]; ok {
			t.Errorf("accepted socket %d still in the sockets map after its transition", st.Cookie)
		}
	}
	checkNoLoss(t, tr)
}

func cookieOf(t *testing.T, c net.Conn) uint64 {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	must(t, err)
	var cookie uint64
	var serr error
	must(t, raw.Control(func(fd uintptr) {
		cookie, serr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
	}))
	must(t, serr)
	return cookie
}

// TestStateSpillsToStorage: by default each socket's state is in the
// sockets map while it has room and in socket storage past it, so the
// map's bound costs speed, not state. With a map of 16 and 40 connections
// held open, every socket of ours shows one unbroken chain of transitions,
// each after its birth with its dwell, the tasks that acted on them as
// owners, and the sockets past the bound are counted in Stats.InStorage.
// Without the fallback to storage it fails: sockets past the bound have no
// state, so no dwell.
func TestStateSpillsToStorage(t *testing.T) {
	requireRoot(t)
	const bound, conns = 16, 40
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	tr := newTracer(t, Options{MaxSockets: bound, Port: port})
	if want := !kernelBefore(t, 5, 12) && !preemptRT(); tr.StateInMapFirst() != want {
		t.Fatalf("StateInMapFirst() = %v, want %v", tr.StateInMapFirst(), want)
	}
	if !tr.StateInMapFirst() {
		return // TestAcceptQueueBounded covers the sockets map here
	}
	before, err := tr.Stats()
	must(t, err)

	clients, servers := holdConns(t, ln, conns)
	// The accepted sockets close first, from this process: their
	// ESTABLISHED → FIN_WAIT1 is ours.
	for _, c := range append(servers, clients...) {
		c.Close()
	}

	pid := uint32(os.Getpid())
	last := map[uint64]tcp.State{}
	open, births := 0, 0
	s := &stream{t: t, tr: tr}
	s.waitFor("every socket's end", func(e *Event) bool {
		if e.Kind != Transition {
			return false
		}
		prev, seen := last[e.Cookie]
		birth := e.Old == tcp.Close && e.New == tcp.SynSent || e.Old == tcp.Listen && e.New == tcp.SynRecv
		switch {
		case !seen && birth:
			births++
			open++
		case !seen || prev != e.Old:
			t.Fatalf("socket %d: %s → %s after %s (seen before: %v), a transition missing or reported twice",
				e.Cookie, e.Old, e.New, prev, seen)
		case !e.DwellKnown:
			t.Errorf("socket %d: %s → %s without its dwell: the socket had no state", e.Cookie, e.Old, e.New)
		}
		switch {
		case e.Old == tcp.Close && e.New == tcp.SynSent, e.Old == tcp.Established && e.New == tcp.FinWait1:
			if e.Owner.PID != pid {
				t.Errorf("socket %d: %s → %s owned by %+v (%q), want pid %d", e.Cookie, e.Old, e.New, e.Owner, e.OwnerSource, pid)
			}
		}
		last[e.Cookie] = e.New
		if e.New == tcp.Close || e.New == tcp.TimeWait {
			open--
		}
		return births == 2*conns && open == 0
	})
	after, err := tr.Stats()
	must(t, err)
	if spilled := after.InStorage - before.InStorage; spilled < 2*conns-bound {
		t.Errorf("%d sockets' state in storage, want at least %d of our %d past a map of %d", spilled, 2*conns-bound, 2*conns, bound)
	}
	checkNoLoss(t, tr)
}

// holdConns opens n connections to ln, each accepted, closed when the test
// ends if still open.
func holdConns(t *testing.T, ln net.Listener, n int) (clients, servers []net.Conn) {
	t.Helper()
	t.Cleanup(func() {
		for _, c := range append(clients, servers...) {
			c.Close()
		}
	})
	for range n {
		c, err := net.Dial("tcp4", ln.Addr().String())
		must(t, err)
		clients = append(clients, c)
		s, err := ln.Accept()
		must(t, err)
		servers = append(servers, s)
	}
	return clients, servers
}
