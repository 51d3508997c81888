package snapshot

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// checkCookieSet adds cookies to a fresh set in order and checks it
// against a map: every cookie added is in it, the probes that were not
// added are not, the count is right, and the bitmap stays in its bound.
func checkCookieSet(t *testing.T, cookies, probes []uint64) *cookieSet {
	t.Helper()
	var s cookieSet
	want := map[uint64]bool{}
	for _, c := range cookies {
		if want[c] {
			continue // a dump hands a socket out once
		}
		s.add(c)
		want[c] = true
		if words := len(s.blocks) * cookieBlockWords; words > max(s.n, minCookieWords) {
			t.Fatalf("after %d cookies the bitmaps have %d words, over their bound", s.n, words)
		}
	}
	if s.n != len(want) {
		t.Fatalf("count %d, want %d", s.n, len(want))
	}
	for c := range want {
		if !s.has(c) {
			t.Fatalf("cookie %d added but not found (%d bitmaps, %d listed)", c, len(s.blocks), listed(&s))
		}
	}
	for _, c := range probes {
		if s.has(c) != want[c] {
			t.Fatalf("has(%d) = %v, want %v (%d bitmaps, %d listed)", c, s.has(c), want[c], len(s.blocks), listed(&s))
		}
	}
	if n := len(s.blocks)*cookieBlockBits + listed(&s); n < s.n {
		t.Fatalf("%d cookies, room for %d", s.n, n)
	}
	return &s
}

func listed(s *cookieSet) (n int) {
	for _, c := range s.list {
		n += len(c)
	}
	return n
}

func TestCookieSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dense := func(from uint64, n int) []uint64 {
		c := make([]uint64, n)
		for i, p := range rng.Perm(n) {
			c[i] = from + uint64(p)
		}
		return c
	}
	near := func(c []uint64) []uint64 { // each cookie's neighbours
		var p []uint64
		for _, k := range c {
			p = append(p, k-1, k, k+1)
		}
		return p
	}

	t.Run("dense in hash order stays a bitmap", func(t *testing.T) {
		c := dense(1<<20, 100_000)
		s := checkCookieSet(t, c, near(c[:1000]))
		if listed(s) != 0 || len(s.blocks) > 26 {
			t.Fatalf("%d listed, %d bitmaps for 100 000 cookies in a row", listed(s), len(s.blocks))
		}
	})
	t.Run("old listeners first, then the bulk", func(t *testing.T) {
		c := append([]uint64{1, 2, 900, 70_000, 1 << 33}, dense(81_000_000, 100_000)...)
		s := checkCookieSet(t, c, near(c[:1000]))
		if listed(s) != 0 || len(s.blocks) > 30 {
			t.Fatalf("%d listed, %d bitmaps for 5 old cookies and 100 000 in a row", listed(s), len(s.blocks))
		}
	})
	t.Run("descending from near zero", func(t *testing.T) {
		var c []uint64
		for i := 5000; i >= 0; i-- {
			c = append(c, uint64(i)*3)
		}
		s := checkCookieSet(t, c, near(c))
		if listed(s) != 0 {
			t.Fatalf("%d of 5 001 cookies in 15 000 listed", listed(s))
		}
	})
	t.Run("sparse: bitmaps up to their bound, the rest listed", func(t *testing.T) {
		c := make([]uint64, 3*cookieChunk+5)
		for i := range c {
			c[i] = rng.Uint64()
		}
		s := checkCookieSet(t, c, near(c[:500]))
		// One bitmap a cookie, as many as the bound allows (it grows with
		// the count: 64 words a bitmap, 8 bytes a cookie).
		if len(s.blocks) != len(c)/cookieBlockWords || listed(s) != len(c)-len(s.blocks) || len(s.list) != 3 {
			t.Fatalf("%d random cookies: %d bitmaps, %d listed in %d chunks", len(c), len(s.blocks), listed(s), len(s.list))
		}
	})
	t.Run("scattered first, then the bulk", func(t *testing.T) {
		var c []uint64
		for range 300 {
			c = append(c, rng.Uint64())
		}
		c = append(c, dense(81_000_000, 100_000)...)
		s := checkCookieSet(t, c, near(c[:1000]))
		// The bulk's first cookies wait in the list until the count allows
		// their bitmaps; the rest of the bulk is in bitmaps.
		if listed(s) > 6000 || len(s.blocks) > 64+26 {
			t.Fatalf("%d listed, %d bitmaps for 300 scattered cookies and 100 000 in a row", listed(s), len(s.blocks))
		}
	})
	t.Run("the top of the range", func(t *testing.T) {
		c := []uint64{math.MaxUint64, math.MaxUint64 - 1, math.MaxUint64 - 200, 0, 1}
		checkCookieSet(t, c, near(c))
	})
	t.Run("listed after a lookup", func(t *testing.T) {
		var s cookieSet
		for i := range uint64(100) {
			s.add(i << 32)
		}
		if listed(&s) != 36 || !s.has(5<<32) || !s.has(99<<32) || s.has(101<<32) {
			t.Fatalf("%d listed, has(5<<32) %v, has(99<<32) %v, has(101<<32) %v", listed(&s), s.has(5<<32), s.has(99<<32), s.has(101<<32))
		}
		s.add(101 << 32) // a retry hands out a socket the first attempt did not
		if !s.has(101 << 32) {
			t.Fatal("a cookie added after the first lookup is not found")
		}
	})
}

// FuzzCookieSet reads its input as cookies, eight bytes each, or as small
// steps from the last when the first byte is odd, and checks the set
// against a map.
func FuzzCookieSet(f *testing.F) {
	f.Add([]byte{1, 1, 2, 3, 250, 7})
	f.Add(binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 5), math.MaxUint64))
	f.Fuzz(func(t *testing.T, b []byte) {
		var cookies []uint64
		if len(b) > 0 && b[0]%2 == 1 {
			var c uint64 = 1 << 30
			for _, d := range b[1:] {
				c += uint64(d) - 100
				cookies = append(cookies, c)
			}
		} else {
			for ; len(b) >= 8; b = b[8:] {
				cookies = append(cookies, binary.LittleEndian.Uint64(b))
			}
		}
		var probes []uint64
		for _, c := range cookies {
			probes = append(probes, c-1, c+1, c^1<<40)
		}
		checkCookieSet(t, cookies, probes)
	})
}
