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
	got := narrowestOffset(func() (int64, int64, int64) {
		r := reads[i]
		i++
		return r[0], r[1], r[2]
	})
	if got != offset || i != 2 {
		t.Errorf("offset %d after %d reads, want %d after 2", got, i, int64(offset))
	}

	// Every read wide, realtime read at the end: the narrowest of
	// syncTries (10 ms, 5 ms off) wins.
	i = 0
	got = narrowestOffset(func() (int64, int64, int64) {
		i++
		w := int64(10_000_000 * (1 + i%3)) // 20, 30 or 10 ms wide
		return 0, w + offset, w
	})
	if want := int64(offset + 5_000_000); got != want || i != syncTries {
		t.Errorf("offset %d after %d reads, want %d after %d", got, i, want, syncTries)
	}
}
