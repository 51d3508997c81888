package table

import "runtime"

// rowStore keeps rows dense in fixed-size chunks outside the Go heap
// (chunks.go): appending never copies the rows already held (no 2x spike
// while a slice grows), removal moves the last row into the hole, and
// iteration is a walk over contiguous memory.
type rowStore struct {
	mem   *chunkList
	n     int
	index map[uint64]int32 // cookie → position
	peak  int              // most rows the index has held since it was made
	// recent holds, for each value of a cookie's low byte, the position of
	// the cookie looked up or added last, before the index: a connection's
	// events come close together, and the index, hashed across hundreds
	// of thousands of rows, costs a cache miss or two per lookup (15 % of
	// a traced view's CPU in the churn). An entry is a position plus one;
	// 0 is empty.
	recent [recentSlots]recentRow
}

type recentRow struct {
	cookie uint64
	pos    int32
}

// recentSlots is a power of two, well above the connections in flight.
const recentSlots = 256

const (
	chunkShift = 10
	chunkSize  = 1 << chunkShift
)

// newRowStore returns t's store, whose chunks go back to the pool once t
// is unreachable.
func newRowStore(t *Table) rowStore {
	mem := new(chunkList)
	runtime.AddCleanup(t, (*chunkList).free, mem)
	return rowStore{mem: mem, index: make(map[uint64]int32)}
}

func (s *rowStore) at(i int) *Row { return &s.mem.chunks[i>>chunkShift][i&(chunkSize-1)] }

func (s *rowStore) lookup(cookie uint64) *Row {
	if i, ok := s.position(cookie); ok {
		return s.at(i)
	}
	return nil
}

// position is the position of cookie's row; a miss in recent fills its slot.
func (s *rowStore) position(cookie uint64) (int, bool) {
	slot := &s.recent[cookie&(recentSlots-1)]
	if slot.pos != 0 && slot.cookie == cookie {
		return int(slot.pos - 1), true
	}
	i, ok := s.index[cookie]
	if ok {
		*slot = recentRow{cookie, i + 1}
	}
	return int(i), ok
}

// remember puts cookie's position in recent; forget takes it out.
func (s *rowStore) remember(cookie uint64, i int) {
	s.recent[cookie&(recentSlots-1)] = recentRow{cookie, int32(i) + 1}
}

func (s *rowStore) forget(cookie uint64) {
	if slot := &s.recent[cookie&(recentSlots-1)]; slot.cookie == cookie {
		*slot = recentRow{}
	}
}

// reindex makes an empty index with room for n rows.
func (s *rowStore) reindex(n int) {
	s.index = make(map[uint64]int32, n)
	s.recent = [recentSlots]recentRow{}
}

// add returns a zeroed row for cookie, which must not be present.
func (s *rowStore) add(cookie uint64) *Row {
	if s.n>>chunkShift == len(s.mem.chunks) {
		s.mem.chunks = append(s.mem.chunks, newChunk())
	}
	i := s.n
	s.n++
	s.index[cookie] = int32(i)
	s.peak = max(s.peak, len(s.index))
	s.remember(cookie, i)
	r := s.at(i)
	r.cookie = cookie
	return r
}

// maxChunks is how many chunks a store of n rows keeps: those it uses and
// a quarter more, at least one. A reconcile removes the timewait rows that
// expired since the last one in one sweep, and at full churn the table
// grows back to where it was before the next: chunks freed at each sweep
// were faulted in again (MADV_POPULATE_WRITE) as it grew, 8 % of top -b's
// CPU. The spare chunks are held only below the table's peak, so the peak
// RSS is unchanged.
func maxChunks(n int) int {
	used := (n + chunkSize - 1) >> chunkShift
	return used + max(1, used/4)
}

// rekey gives the row of cookie old the cookie new, which must not be present.
func (s *rowStore) rekey(old, new uint64) *Row {
	i, ok := s.index[old]
	if !ok {
		return nil
	}
	delete(s.index, old)
	s.index[new] = i
	s.forget(old)
	s.remember(new, int(i))
	r := s.at(int(i))
	r.cookie = new
	return r
}

// removeCookie deletes cookie's row, if present.
func (s *rowStore) removeCookie(cookie uint64) {
	if i, ok := s.position(cookie); ok {
		s.remove(i)
	}
}

// remove deletes the row at position i; the row that was last takes its place.
func (s *rowStore) remove(i int) {
	r := s.at(i)
	delete(s.index, r.cookie)
	s.forget(r.cookie)
	commNames.release(r.comm)
	last := s.n - 1
	if i != last {
		*r = *s.at(last)
		s.index[r.cookie] = int32(i)
		if slot := &s.recent[r.cookie&(recentSlots-1)]; slot.cookie == r.cookie && slot.pos != 0 {
			slot.pos = int32(i) + 1
		}
	}
	*s.at(last) = Row{}
	s.n--
	if chunks := s.mem.chunks; len(chunks) > maxChunks(s.n) {
		freeChunk(chunks[len(chunks)-1])
		chunks[len(chunks)-1] = nil
		s.mem.chunks = chunks[:len(chunks)-1]
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
