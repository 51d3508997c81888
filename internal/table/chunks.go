package table

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Row chunks live outside the Go heap. A row holds no Go pointer (owner
// names are interned by id; TestRowHasNoPointers), so the collector has
// nothing to find in them, and on the heap they would only raise its goal:
// with GOGC=100 the heap grows to twice what is live before a collection,
// and the pages it reached stay in the RSS. Mapped from the kernel, a row
// costs its own size once.
//
// Chunks are never unmapped: a chunk a table no longer needs is emptied
// (its pages go back to the kernel and read as zeros) and kept for the next
// one. A stale *Row, already wrong after the table changes, so reads zeros
// or another table's row, never a fault.
var chunkPool struct {
	sync.Mutex
	free   [][]Row        // emptied: pages given back, mapped in again when taken
	warm   [][]Row        // reserved: zeroed pages already written to (Reserve)
	mapped int            // chunks mapped since the process started: the pool never shrinks
	arena  unsafe.Pointer // the rest of the arena chunks are carved from
	left   uintptr        // its bytes
}

// Chunks are carved from arenas aligned to huge pages and marked for them
// (MADV_HUGEPAGE: transparent huge pages, in the kernel's default mode
// "madvise" too). A huge page is faulted in, zeroed and backed by the
// host at once: in this project's VMs, where the first write to each
// 4 KiB page costs about 13 µs, a first write to 20 MB took 72–76 ms in
// small pages and 1.4–28 ms in huge ones (docs/performance.md). Without
// huge pages (a kernel without them, or none free) the arena is small
// pages, as before.
const (
	hugePage   = 2 << 20
	arenaBytes = 4 * hugePage // 44 chunks of 1 024 rows
)

const chunkBytes = chunkSize * int(unsafe.Sizeof(Row{}))

// newChunk returns chunkSize zeroed rows, their pages already mapped in.
// Faulting them in a page at a time as rows are written costs, in a VM,
// nearly as much as the dump that fills them at start-up.
func newChunk() []Row {
	chunkPool.Lock()
	defer chunkPool.Unlock()
	if n := len(chunkPool.warm); n > 0 {
		c := chunkPool.warm[n-1]
		chunkPool.warm = chunkPool.warm[:n-1]
		return c
	}
	if n := len(chunkPool.free); n > 0 {
		c := chunkPool.free[n-1]
		chunkPool.free = chunkPool.free[:n-1]
		populate(c)
		return c
	}
	c, err := mapChunk()
	if err != nil {
		// Out of address space or memory: the heap would fail too, the
		// same way the runtime fails an allocation.
		panic("table: mapping rows: " + err.Error())
	}
	return c
}

// mapChunk maps a new chunk, its pages mapped in; chunkPool must be held.
func mapChunk() ([]Row, error) {
	if chunkPool.left < uintptr(chunkBytes) {
		a, err := mapArena()
		if err != nil {
			return nil, err
		}
		chunkPool.arena, chunkPool.left = a, arenaBytes
	}
	c := unsafe.Slice((*Row)(chunkPool.arena), chunkSize)
	chunkPool.arena = unsafe.Add(chunkPool.arena, chunkBytes)
	chunkPool.left -= uintptr(chunkBytes)
	chunkPool.mapped++
	populate(c)
	return c, nil
}

// populate maps c's pages in, writable: with MADV_POPULATE_WRITE (Linux
// 5.14), or a write to each page where the kernel refuses it.
func populate(c []Row) {
	if unix.Madvise(chunkMemory(c), unix.MADV_POPULATE_WRITE) != nil {
		writeEachPage(c)
	}
}

// writeEachPage writes a zero to each page of c: the first write to a
// page is where its cost is paid.
func writeEachPage(c []Row) {
	b := chunkMemory(c)
	for i := 0; i < len(b); i += pageSize {
		b[i] = 0
	}
}

// mapArena maps arenaBytes aligned to a huge page, for huge pages.
func mapArena() (unsafe.Pointer, error) {
	p, err := unix.MmapPtr(-1, 0, nil, arenaBytes+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	head := (hugePage - uintptr(p)%hugePage) % hugePage
	if head > 0 {
		_ = unix.MunmapPtr(p, head)
	}
	a := unsafe.Add(p, head)
	_ = unix.MunmapPtr(unsafe.Add(a, arenaBytes), hugePage-head)
	// A kernel without transparent huge pages refuses: small pages then.
	_ = unix.Madvise(unsafe.Slice((*byte)(a), arenaBytes), unix.MADV_HUGEPAGE)
	return a, nil
}

// Reserve readies room for rows rows before the tables that will hold
// them fill it: run beside work that leaves a core idle (loading the
// tracer), it takes the cost of fresh pages off a start-up. In a VM whose
// host backs guest memory lazily, as on this project's machines, the first
// write to a small page costs about 13 µs even after MAP_POPULATE has
// mapped it: writing 100 000 fresh rows (18 MB) took 60 ms, writing them
// again 1.3 ms; huge pages (above) take most of that off. Rows the
// tables already hold count towards rows, so a late or repeated Reserve
// maps nothing the tables will not use.
func Reserve(rows int) {
	want := (rows + chunkSize - 1) >> chunkShift
	for {
		chunkPool.Lock()
		// Every chunk not emptied is in a table or readied.
		if chunkPool.mapped-len(chunkPool.free) >= want {
			chunkPool.Unlock()
			return
		}
		var c []Row
		if n := len(chunkPool.free); n > 0 {
			c = chunkPool.free[n-1]
			chunkPool.free = chunkPool.free[:n-1]
		} else {
			var err error
			if c, err = mapChunk(); err != nil {
				chunkPool.Unlock()
				return // newChunk will fail the same way, and say why
			}
		}
		chunkPool.Unlock()
		// Taken out of the pool, c counts as in a table while it is
		// written: a concurrent Reserve does not ready another for it.
		writeEachPage(c)
		chunkPool.Lock()
		chunkPool.warm = append(chunkPool.warm, c)
		chunkPool.Unlock()
	}
}

var pageSize = unix.Getpagesize()

// freeChunk gives c's pages back to the kernel and keeps c for reuse.
func freeChunk(c []Row) {
	chunkPool.Lock()
	defer chunkPool.Unlock()
	release(c)
}

// release frees c with chunkPool held.
func release(c []Row) {
	// Private anonymous pages read as zeros after MADV_DONTNEED: the chunk
	// comes back empty, as newChunk promises. A chunk is not a whole huge
	// page: the kernel splits the ones under it, and frees the split pages
	// when it next reclaims; a reused chunk is in small pages.
	if err := unix.Madvise(chunkMemory(c), unix.MADV_DONTNEED); err != nil {
		clear(c)
	}
	chunkPool.free = append(chunkPool.free, c)
}

func chunkMemory(c []Row) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&c[0])), chunkBytes)
}

// chunkList is a table's chunks, apart from the table so that a cleanup
// can free them once the table is unreachable (runtime.AddCleanup).
type chunkList struct{ chunks [][]Row }

func (l *chunkList) free() {
	chunkPool.Lock()
	defer chunkPool.Unlock()
	for _, c := range l.chunks {
		release(c)
	}
	l.chunks = nil
}

// mappedChunks is the number of chunks mapped since the process started.
func mappedChunks() int {
	chunkPool.Lock()
	defer chunkPool.Unlock()
	return chunkPool.mapped
}
