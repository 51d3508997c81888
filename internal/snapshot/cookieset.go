package snapshot

import "math/bits"

// cookieSet remembers the cookies a dump handed out, so that a retried
// dump hands out only the others.
//
// The kernel takes socket cookies from one counter, and most of a host's
// sockets got theirs close together (at their first dump, or their first
// transition under the tracer), beside a few old ones (listeners, daemons'
// connections), so the set keeps bitmaps of 4 096 cookies each: 100 000
// sockets in about 16 KiB where a list of 64-bit cookies took 800 KiB. A
// listing touches each page it writes once, and on virtual machines that
// back pages lazily each first touch costs microseconds: the list cost
// `list -tan` 4–5 % of its time. When the cookies are too far apart for
// the bitmaps to be the smaller, the set turns into that list, so it never
// takes more than 8 bytes a cookie and 32 KiB of bitmaps.
type cookieSet struct {
	n int

	// Bitmaps: bit c%4096 of blocks[c/4096]. Unused once list is not nil.
	blocks    map[uint64]*cookieBlock
	lastKey   uint64 // the block the last cookie went to
	lastBlock *cookieBlock

	// List, in chunks: a growing slice would copy them at every doubling.
	list [][]uint64
	// index is list as a set, made at the first lookup.
	index map[uint64]struct{}
}

type cookieBlock [cookieBlockWords]uint64

const (
	cookieBlockBits  = 4096
	cookieBlockWords = cookieBlockBits / 64
	cookieChunk      = 4096
	// The bitmaps may always take this many words (32 KiB); past that, no
	// more words than cookies, the list's 8 bytes each.
	minCookieWords = 4096
)

func (s *cookieSet) add(c uint64) {
	s.n++
	if s.list == nil {
		if b := s.block(c, true); b != nil {
			b[c%cookieBlockBits/64] |= 1 << (c % 64)
			return
		}
		s.toList()
	}
	s.appendList(c)
}

// block returns c's bitmap. With create, it makes one that is missing,
// unless that would take the bitmaps past their bound (then nil).
func (s *cookieSet) block(c uint64, create bool) *cookieBlock {
	key := c / cookieBlockBits
	if s.lastBlock != nil && key == s.lastKey {
		return s.lastBlock
	}
	b := s.blocks[key]
	if b == nil {
		if !create || (len(s.blocks)+1)*cookieBlockWords > max(s.n, minCookieWords) {
			return nil
		}
		if s.blocks == nil {
			s.blocks = map[uint64]*cookieBlock{}
		}
		b = new(cookieBlock)
		s.blocks[key] = b
	}
	s.lastKey, s.lastBlock = key, b
	return b
}

// toList moves the bitmaps' cookies to the list.
func (s *cookieSet) toList() {
	s.list = [][]uint64{}
	for key, b := range s.blocks {
		for i, w := range b {
			for ; w != 0; w &= w - 1 {
				s.appendList(key*cookieBlockBits + uint64(i)*64 + uint64(bits.TrailingZeros64(w)))
			}
		}
	}
	s.blocks, s.lastBlock = nil, nil
}

func (s *cookieSet) appendList(c uint64) {
	if len(s.list) == 0 || len(s.list[len(s.list)-1]) == cookieChunk {
		s.list = append(s.list, make([]uint64, 0, cookieChunk))
	}
	last := &s.list[len(s.list)-1]
	*last = append(*last, c)
	if s.index != nil {
		s.index[c] = struct{}{}
	}
}

func (s *cookieSet) has(c uint64) bool {
	if s.list == nil {
		b := s.block(c, false)
		return b != nil && b[c%cookieBlockBits/64]&(1<<(c%64)) != 0
	}
	if s.index == nil {
		s.index = make(map[uint64]struct{}, s.n)
		for _, chunk := range s.list {
			for _, k := range chunk {
				s.index[k] = struct{}{}
			}
		}
	}
	_, ok := s.index[c]
	return ok
}
