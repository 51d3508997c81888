package table

import (
	"math/rand/v2"
	"testing"
)

// TestRecentPositions drives a store through adds, lookups, rekeys and
// removals whose cookies share recent's slots. After each step every slot
// in use must name a cookie of the index at its position; every 97 steps,
// every cookie must find its own row and a removed one none. A slot left
// pointing at a moved or removed row would hand one socket's events to
// another.
func TestRecentPositions(t *testing.T) {
	tb := New(Options{})
	s := &tb.rows
	rng := rand.New(rand.NewPCG(1, 2))
	// Three cookies per slot, at most: every slot is fought over.
	cookie := func() uint64 { return uint64(rng.IntN(3*recentSlots)) + 1 }
	present := map[uint64]bool{}
	exact := func(step int) {
		t.Helper()
		for i, slot := range s.recent {
			if slot.pos == 0 {
				continue
			}
			if pos, ok := s.index[slot.cookie]; !ok || pos != slot.pos-1 || s.at(int(pos)).cookie != slot.cookie {
				t.Fatalf("step %d: slot %d holds cookie %d at %d; the index has %d (%v)", step, i, slot.cookie, slot.pos-1, pos, ok)
			}
		}
	}
	check := func(step int) {
		t.Helper()
		for c := uint64(1); c <= 6*recentSlots+1; c++ {
			r := s.lookup(c)
			switch {
			case present[c] && (r == nil || r.cookie != c):
				t.Fatalf("step %d: cookie %d found %v, want its row", step, c, r)
			case !present[c] && r != nil:
				t.Fatalf("step %d: cookie %d, removed, found the row of %d", step, c, r.cookie)
			}
		}
		if s.n != len(present) || len(s.index) != len(present) {
			t.Fatalf("step %d: %d rows, %d indexed, want %d", step, s.n, len(s.index), len(present))
		}
	}
	for step := range 20000 {
		c := cookie()
		switch op := rng.IntN(10); {
		case op < 4 && !present[c]:
			s.add(c)
			present[c] = true
		case op < 6 && present[c]:
			s.removeCookie(c)
			delete(present, c)
		case op < 7 && present[c]:
			if n := cookie() + 3*recentSlots; !present[n] {
				s.rekey(c, n)
				delete(present, c)
				present[n] = true
			}
		default:
			s.lookup(c)
		}
		exact(step)
		if step%97 == 0 {
			check(step)
		}
	}
	check(-1)
	for c := range present {
		s.removeCookie(c)
	}
	clear(present)
	check(-2)
}
