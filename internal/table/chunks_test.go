package table

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// TestChunksFreedWithTable drops a table of three chunks and waits for its
// cleanup to give them back; the next table reuses them, zeroed.
func TestChunksFreedWithTable(t *testing.T) {
	fill := func(n int) *Table {
		tb := New(Options{})
		for i := range n {
			r := tb.rows.add(uint64(i + 1))
			r.pid, r.since = 7, 42
		}
		return tb
	}
	tb := fill(3*chunkSize - 1)
	mem := tb.rows.mem // not the table: it keeps the table reachable
	held := func() int {
		chunkPool.Lock()
		defer chunkPool.Unlock()
		return len(mem.chunks)
	}
	if n := held(); n != 3 {
		t.Fatalf("a table of %d rows holds %d chunks, want 3", tb.Len(), n)
	}
	tb = nil
	deadline := time.Now().Add(10 * time.Second)
	for held() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("10 s after its table was dropped, it still holds %d chunks", held())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	mapped := mappedChunks()
	tb = New(Options{})
	for i := range 3 * chunkSize {
		r := tb.rows.add(uint64(i + 1))
		if r.pid != 0 || r.since != 0 {
			t.Fatalf("row %d of a reused chunk holds pid %d, since %d: want a zeroed row", i, r.pid, r.since)
		}
	}
	if again := mappedChunks(); again != mapped {
		t.Errorf("refilling mapped %d new chunks, want the 3 freed ones reused", again-mapped)
	}
	runtime.KeepAlive(tb)
}

// TestReserve readies chunks before a table fills them: the table takes
// those, zeroed, before any other, and a Reserve for rows the tables
// already hold readies nothing more.
func TestReserve(t *testing.T) {
	pool := func() (inTables int, warm map[*Row]bool) {
		chunkPool.Lock()
		defer chunkPool.Unlock()
		warm = make(map[*Row]bool)
		for _, c := range chunkPool.warm {
			warm[&c[0]] = true
		}
		return chunkPool.mapped - len(chunkPool.free) - len(chunkPool.warm), warm
	}
	held, _ := pool()
	Reserve((held+3)*chunkSize - 1)
	_, warm := pool()
	if len(warm) < 3 {
		t.Fatalf("Reserve for three chunks more than the tables hold readied %d", len(warm))
	}
	tb := New(Options{})
	for i := range 3 * chunkSize {
		r := tb.rows.add(uint64(i + 1))
		if r.pid != 0 || r.since != 0 || r.flags != 0 {
			t.Fatalf("row %d of a reserved chunk is not zeroed", i)
		}
		r.pid, r.since = 7, 42
	}
	for i, c := range tb.rows.mem.chunks {
		if !warm[&c[0]] {
			t.Errorf("the table's chunk %d is not one Reserve readied", i)
		}
	}
	_, before := pool()
	Reserve(3 * chunkSize)
	if _, after := pool(); len(after) != len(before) {
		t.Errorf("Reserve for the rows a table already holds readied %d chunks", len(after)-len(before))
	}
	runtime.KeepAlive(tb)
}

// TestChunksMarkedForHugePages: chunks are carved from arenas aligned to
// huge pages and marked for them, so that the kernel may back them with
// huge pages (THPeligible in /proc/self/smaps) unless transparent huge
// pages are off altogether. Whether it has one free is not the table's.
func TestChunksMarkedForHugePages(t *testing.T) {
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if os.IsNotExist(err) {
		t.Skip("this kernel has no transparent huge pages")
	}
	if err != nil {
		t.Fatalf("reading the huge page mode: %v", err)
	}
	want := !strings.Contains(string(mode), "[never]")
	chunkPool.Lock()
	c, err := mapChunk()
	chunkPool.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	defer freeChunk(c)
	at := uintptr(unsafe.Pointer(&c[0]))
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var start, end uintptr
	in := false
	for sc := bufio.NewScanner(f); sc.Scan(); {
		line := sc.Text()
		if n, _ := fmt.Sscanf(line, "%x-%x ", &start, &end); n == 2 {
			in = start <= at && at < end
			if in && (start%hugePage != 0 || end-start < arenaBytes) {
				t.Errorf("the chunk's mapping %x-%x: want %d MiB aligned to %d MiB", start, end, arenaBytes>>20, hugePage>>20)
			}
			continue
		}
		if eligible, ok := strings.CutPrefix(line, "THPeligible:"); ok && in {
			if got := strings.TrimSpace(eligible) == "1"; got != want {
				t.Errorf("THPeligible %q in huge page mode %q", strings.TrimSpace(eligible), strings.TrimSpace(string(mode)))
			}
			return
		}
	}
	t.Fatalf("no THPeligible line for the mapping of %x in /proc/self/smaps", at)
}
