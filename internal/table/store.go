package table

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rowStore keeps rows dense in fixed-size chunks: appending never copies
// the rows already held (no 2x spike while a slice grows), removal moves the
// last row into the hole, and iteration is a walk over contiguous memory.
type rowStore struct {
	chunks [][]Row
	n      int
	index  map[uint64]int32 // cookie → position
	peak   int              // most rows the index has held since it was made
}

const (
	chunkShift = 10
	chunkSize  = 1 << chunkShift
)

func newRowStore() rowStore { return rowStore{index: make(map[uint64]int32)} }

func (s *rowStore) at(i int) *Row { return &s.chunks[i>>chunkShift][i&(chunkSize-1)] }

func (s *rowStore) lookup(cookie uint64) *Row {
	if i, ok := s.index[cookie]; ok {
		return s.at(int(i))
	}
	return nil
}

// add returns a zeroed row for cookie, which must not be present.
func (s *rowStore) add(cookie uint64) *Row {
	if s.n>>chunkShift == len(s.chunks) {
		s.chunks = append(s.chunks, newChunk())
	}
	i := s.n
	s.n++
	s.index[cookie] = int32(i)
	s.peak = max(s.peak, len(s.index))
	r := s.at(i)
	r.cookie = cookie
	return r
}

// rekey gives the row of cookie old the cookie new, which must not be present.
func (s *rowStore) rekey(old, new uint64) *Row {
	i, ok := s.index[old]
	if !ok {
		return nil
	}
	delete(s.index, old)
	s.index[new] = i
	r := s.at(int(i))
	r.cookie = new
	return r
}

// remove deletes the row at position i; the row that was last takes its place.
func (s *rowStore) remove(i int) {
	r := s.at(i)
	delete(s.index, r.cookie)
	commNames.release(r.comm)
	last := s.n - 1
	if i != last {
		*r = *s.at(last)
		s.index[r.cookie] = int32(i)
	}
	*s.at(last) = Row{}
	s.n--
	// Keep one spare chunk so a row count hovering at a boundary does not
	// allocate and free a chunk each time.
	if used := (s.n + chunkSize - 1) >> chunkShift; len(s.chunks) > used+1 {
		s.chunks[len(s.chunks)-1] = nil
		s.chunks = s.chunks[:len(s.chunks)-1]
	}
	// Go maps never shrink: rebuild the index after a large drop.
	if s.peak > 4*chunkSize && len(s.index) < s.peak/4 {
		index := make(map[uint64]int32, len(s.index))
		for k, v := range s.index {
			index[k] = v
		}
		s.index, s.peak = index, len(index)
	}
}

// newChunk allocates room for chunkSize rows. Fresh memory from the kernel
// would fault in a page at a time as rows are written, and in a VM each
// fault is dear: at start-up the faults cost nearly as much as the dump.
// MADV_POPULATE_WRITE (Linux 5.14) maps the chunk's pages in one call;
// older kernels refuse it and the rows fault in as before.
func newChunk() []Row {
	c := make([]Row, chunkSize)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&c[0])), len(c)*int(unsafe.Sizeof(c[0])))
	// Only whole pages inside the chunk: madvise wants an aligned start.
	page := uintptr(os.Getpagesize())
	start := (uintptr(unsafe.Pointer(&b[0])) + page - 1) &^ (page - 1)
	if off := int(start - uintptr(unsafe.Pointer(&b[0]))); off < len(b) {
		_ = unix.Madvise(b[off:], unix.MADV_POPULATE_WRITE)
	}
	return c
}
