package table

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

var addrCmp = cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })

func TestDwellUnits(t *testing.T) {
	for _, tc := range []struct {
		in, want time.Duration
	}{
		{0, 0},
		{-time.Second, 0},
		{999 * time.Nanosecond, 0},
		{1500 * time.Nanosecond, time.Microsecond},
		{17 * time.Minute, 17 * time.Minute},
		{18*time.Minute + 1234567*time.Microsecond, 18*time.Minute + 1234*time.Millisecond},
		{13 * 24 * time.Hour, 13 * 24 * time.Hour},
		{100 * 365 * 24 * time.Hour, time.Duration(dwellMaxValue) * time.Second},
	} {
		if got := makeDwell(tc.in).duration(); got != tc.want {
			t.Errorf("makeDwell(%v).duration() = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got := makeDwell(time.Millisecond).add(2 * time.Millisecond).duration(); got != 3*time.Millisecond {
		t.Errorf("1ms + 2ms = %v, want 3ms", got)
	}
}

func TestAddresses(t *testing.T) {
	for _, tc := range []struct{ local, remote string }{
		{"127.0.0.1:40000", "127.0.0.2:80"},
		{"[::1]:40000", "[fe80::1]:443"},
		{"0.0.0.0:22", "0.0.0.0:0"},
		{"[::]:22", "[::]:0"},
	} {
		var r Row
		l, rm := netip.MustParseAddrPort(tc.local), netip.MustParseAddrPort(tc.remote)
		r.setAddrs(l, rm)
		if r.Local() != l || r.Remote() != rm {
			t.Errorf("setAddrs(%v, %v) read back as %v, %v", l, rm, r.Local(), r.Remote())
		}
	}
}

// TestConnectionLife follows one active open from connect to close and
// checks what the views get at the end.
func TestConnectionLife(t *testing.T) {
	var ended []Conn
	tb := New(Options{OnEnd: func(r *Row) { ended = append(ended, r.Conn()) }})
	established := move(3*ms, 1, tcp.SynSent, tcp.Established)
	established.Local = netip.MustParseAddrPort("127.0.0.1:40001")
	closing := move(1003*ms, 1, tcp.Established, tcp.CloseWait)
	closing.Dwell, closing.DwellKnown = 999*time.Millisecond, true // the kernel's own measure wins
	last := move(1010*ms, 1, tcp.LastAck, tcp.Close)
	last.Counters = tracer.Counters{BytesReceived: 100, BytesAcked: 200, Retransmits: 2, SRTT: 30 * time.Microsecond}
	for _, e := range []*tracer.Event{
		move(1*ms, 1, tcp.Close, tcp.SynSent),
		established,
		closing,
		move(1004*ms, 1, tcp.CloseWait, tcp.LastAck),
		last,
	} {
		e := *e
		e.Local = netip.MustParseAddrPort("127.0.0.1:40001")
		if e.Old == tcp.Close {
			e.Local = netip.MustParseAddrPort("127.0.0.1:0") // not bound yet
		}
		tb.Apply(&e)
	}
	want := []Conn{{
		Cookie: 1, NetNS: testNS,
		Local: netip.MustParseAddrPort("127.0.0.1:40001"), Remote: server,
		State: tcp.LastAck, Owner: curl, OwnerKnown: true, OwnerSource: tracer.OwnerSyscall,
		Since: 1004 * ms, SinceKnown: true, Born: 1 * ms, BornKnown: true, Ended: 1010 * ms,
		Dwell: []StateDwell{
			{tcp.Established, 999 * time.Millisecond},
			{tcp.SynSent, 2 * time.Millisecond},
			{tcp.CloseWait, time.Millisecond},
			{tcp.LastAck, 6 * time.Millisecond},
		},
		Handshake: 2 * time.Millisecond, HandshakeKnown: true,
		Counters: last.Counters, CountersKnown: true,
	}}
	if diff := cmp.Diff(want, ended, addrCmp); diff != "" {
		t.Errorf("ended connections (-want +got):\n%s", diff)
	}
	if tb.Len() != 0 || tb.Tombstones() != 1 {
		t.Errorf("after the close: %d rows, %d tombstones; want 0, 1", tb.Len(), tb.Tombstones())
	}
	tb.Reconcile(&Dump{Start: 1011 * ms, End: 1012 * ms, NetNS: testNS})
	if tb.Tombstones() != 0 {
		t.Errorf("a dump begun after the close left %d tombstones", tb.Tombstones())
	}
}

// TestStore checks the packed store against a plain map through random
// adds and removes, across chunk boundaries and an index rebuild.
func TestStore(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tb := New(Options{})
	s := &tb.rows
	model := map[uint64]uint32{}
	next := uint64(1)
	for i := range 60000 {
		grow := i < 20000 || (i > 40000 && i < 45000)
		if len(model) == 0 || (grow && rng.IntN(4) != 0) || (!grow && rng.IntN(4) == 0) {
			r := s.add(next)
			r.pid = uint32(next * 7)
			model[next] = uint32(next * 7)
			next++
			continue
		}
		j := rng.IntN(s.n)
		c := s.at(j).cookie
		s.remove(j)
		delete(model, c)
	}
	if s.n != len(model) || len(s.index) != len(model) {
		t.Fatalf("store holds %d rows, index %d, want %d", s.n, len(s.index), len(model))
	}
	for c, pid := range model {
		r := s.lookup(c)
		if r == nil || r.cookie != c || r.pid != pid {
			t.Fatalf("lookup(%d) = %+v, want pid %d", c, r, pid)
		}
	}
	if want := maxChunks(s.n); len(s.mem.chunks) > want {
		t.Errorf("store keeps %d chunks for %d rows, want at most %d", len(s.mem.chunks), s.n, want)
	}
	runtime.KeepAlive(tb)
}
