package table

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/tcp"
)

// TestDumpOfManyNamespaces: sockets carry their namespace; rows of a
// namespace the dump covers go after two absences, rows of one it does
// not cover (unreadable) stay.
func TestDumpOfManyNamespaces(t *testing.T) {
	const a, b, gone, unreadable = 101, 102, 103, 104
	in := func(ns uint32, cookie uint64) snapshot.Socket {
		s := sock(cookie, tcp.Established)
		s.NetNS = ns
		return s
	}
	tb := New(Options{})
	covers := func(ns uint32) bool { return ns != unreadable }
	first := &Dump{Start: 10 * ms, End: 11 * ms, NetNS: testNS, Covers: covers,
		Sockets: []snapshot.Socket{in(a, 1), in(b, 2), in(gone, 3), in(unreadable, 4), in(0, 5)}}
	if st := tb.Reconcile(first); st.Added != 5 {
		t.Fatalf("first dump: %+v", st)
	}
	byNS := func() map[uint64]uint32 {
		m := map[uint64]uint32{}
		for i := range tb.Len() {
			m[tb.Row(i).Cookie()] = tb.Row(i).NetNS()
		}
		return m
	}
	want := map[uint64]uint32{1: a, 2: b, 3: gone, 4: unreadable, 5: testNS}
	if diff := cmp.Diff(want, byNS()); diff != "" {
		t.Fatalf("(-want +got)\n%s", diff)
	}
	// Namespace "gone" ended: two dumps without it remove its row; the
	// unreadable namespace's row is not judged.
	for i := uint64(2); i <= 3; i++ {
		d := &Dump{Start: i * 100 * ms, End: i*100*ms + ms, NetNS: testNS, Covers: covers,
			Sockets: []snapshot.Socket{in(a, 1), in(b, 2), in(0, 5)}}
		tb.Reconcile(d)
	}
	delete(want, 3)
	if diff := cmp.Diff(want, byNS()); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}
