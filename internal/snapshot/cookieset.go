package snapshot

// cookieSet remembers the cookies a dump handed out, so that a retried
// dump hands out only the others.
//
// The kernel takes socket cookies from one counter, and most of a host's
// sockets got theirs close together (at their first dump, or their first
// transition under the tracer), beside a few old ones (listeners, daemons'
// connections), so the set keeps bitmaps of 4 096 cookies each: 100 000
// sockets in about 16 KiB where a list of 64-bit cookies took 800 KiB. A
// listing touches each page it writes once, and on virtual machines whose
// page faults trap to the host each costs microseconds: the list cost
// `list -tan` 4–5 % of its time. The bitmaps never take more words than
// there are cookies, past a first 32 KiB; cookies whose bitmap would pass
// that bound go to a list, 8 bytes each.
type cookieSet struct {
	n int

	// Bitmaps: bit c%4096 of blocks[c/4096].
	blocks    map[uint64]*cookieBlock
	lastKey   uint64 // the block the last cookie went to
	lastBlock *cookieBlock

	// The cookies past the bitmaps' bound, in chunks: a growing slice
	// would copy them at every doubling.
	list [][]uint64
	// index is list as a set, made at the first lookup (a retry).
	index map[uint64]struct{}
}

type cookieBlock [cookieBlockWords]uint64

const (
	cookieBlockBits  = 4096
	cookieBlockWords = cookieBlockBits / 64
	cookieChunk      = 4096
	// The bitmaps may always take this many words (32 KiB); past that, no
	// more words than cookies.
	minCookieWords = 4096
)

func (s *cookieSet) add(c uint64) {
	s.n++
	if b := s.block(c, true); b != nil {
		b[c%cookieBlockBits/64] |= 1 << (c % 64)
		return
	}
	if len(s.list) == 0 || len(s.list[len(s.list)-1]) == cookieChunk {
		s.list = append(s.list, make([]uint64, 0, cookieChunk))
	}
	last := &s.list[len(s.list)-1]
	*last = append(*last, c)
	if s.index != nil {
		s.index[c] = struct{}{}
	}
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

// has reports whether c was added. A cookie is in the list only if its
// bitmap did not exist when it was added; the bitmap may exist now.
func (s *cookieSet) has(c uint64) bool {
	if b := s.block(c, false); b != nil && b[c%cookieBlockBits/64]&(1<<(c%64)) != 0 {
		return true
	}
	if len(s.list) == 0 {
		return false
	}
	if s.index == nil {
		s.index = make(map[uint64]struct{}, len(s.list)*cookieChunk)
		for _, chunk := range s.list {
			for _, k := range chunk {
				s.index[k] = struct{}{}
			}
		}
	}
	_, ok := s.index[c]
	return ok
}
