package tracer

import "testing"

// TestNarrowestOffset: a measurement preempted between its boot-time reads
// must not set the offset while a narrower one is at hand.
func TestNarrowestOffset(t *testing.T) {
	const offset = 1_700_000_000_000_000_000
	reads := [][3]int64{
		{1_000, 2_000 + offset, 400_000_000}, // preempted 400 ms after the realtime read: 200 ms off
		{500_000_000, 500_010_000 + offset, 500_020_000},
		{600_000_000, 600_000_100 + offset, 600_000_200}, // not reached: the one before was narrow enough
	}
	i := 0
	got, ok := narrowestOffset(func() (int64, int64, int64) {
		r := reads[i]
		i++
		return r[0], r[1], r[2]
	})
	if got != offset || i != 2 || !ok {
		t.Errorf("offset %d after %d reads, want %d after 2", got, i, int64(offset))
	}

	// Every read wide, realtime read at the end: the narrowest of
	// syncTries (10 ms, 5 ms off) wins.
	i = 0
	got, ok = narrowestOffset(func() (int64, int64, int64) {
		i++
		w := int64(10_000_000 * (1 + i%3)) // 20, 30 or 10 ms wide
		return 0, w + offset, w
	})
	if want := int64(offset + 5_000_000); got != want || i != syncTries || !ok {
		t.Errorf("offset %d after %d reads, want %d after %d", got, i, want, syncTries)
	}
}

// TestNarrowestOffsetSkipsBackwardReads: a second boot-time read before the
// first (a move between CPUs whose clocks disagree) is never taken, however
// narrow it looks; with nothing else, ok is false.
func TestNarrowestOffsetSkipsBackwardReads(t *testing.T) {
	const offset = 1_700_000_000_000_000_000
	skew := int64(112_000_000) // the other CPU's clock is 112 ms behind
	reads := [][3]int64{
		{1_000_000, 1_000_100 + offset - skew, 1_000_200 - skew}, // realtime and second read on the other CPU
		{2_000_000, 2_000_500 + offset, 2_001_000},               // 1 ms wide, consistent
	}
	i := 0
	got, ok := narrowestOffset(func() (int64, int64, int64) {
		r := reads[min(i, len(reads)-1)]
		i++
		return r[0], r[1], r[2]
	})
	if got != offset || !ok {
		t.Errorf("offset %d (ok %v), want %d from the consistent measurement", got, ok, int64(offset))
	}
	if _, ok := narrowestOffset(func() (int64, int64, int64) { return reads[0][0], reads[0][1], reads[0][2] }); ok {
		t.Error("ok with every measurement going backwards")
	}
}
