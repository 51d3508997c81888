package table

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/tcp"
)

// syntheticDump lists n established loopback connections owned by a few
// dozen processes, as a busy host's dump would.
func syntheticDump(n int) *Dump {
	d := &Dump{Start: 1, End: 2, NetNS: testNS, Owners: true}
	d.Sockets = make([]snapshot.Socket, n)
	for i := range d.Sockets {
		d.Sockets[i] = snapshot.Socket{
			Proto: snapshot.TCP, State: tcp.Established,
			Local:  netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, byte(i >> 16), byte(i >> 8)}), uint16(i)),
			Remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 8080),
			Cookie: uint64(i + 1), Inode: uint64(i + 1), UID: 1000,
			Owners: []snapshot.Owner{{PID: uint32(i%50 + 1), Comm: fmt.Sprintf("worker-%d", i%50)}},
			Info:   &snapshot.TCPInfo{BytesReceived: uint64(i), BytesAcked: uint64(i)},
		}
	}
	return d
}

// heapPerRow is the memory the table holds per row once n rows are in:
// its live heap and its row chunks, which live outside the heap.
func heapPerRow(n int) float64 {
	d := syntheticDump(n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tb := New(Options{})
	tb.Reconcile(d)
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(d)
	chunks := len(tb.rows.mem.chunks) * chunkBytes
	return float64(int(after.HeapAlloc-before.HeapAlloc)+chunks) / float64(tb.Len())
}

// TestHeapPerRow holds the table to its budget: under 300 bytes of memory
// per tracked connection at 100 000 rows, heap and row chunks together.
func TestHeapPerRow(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 100 000-row table")
	}
	if got := heapPerRow(100_000); got >= 300 {
		t.Errorf("heap per row at 100 000 rows = %.0f bytes, want < 300", got)
	}
}

func BenchmarkHeapPerRow(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var per float64
			for b.Loop() {
				per = heapPerRow(n)
			}
			b.ReportMetric(per, "bytes/row")
		})
	}
}

// BenchmarkReconcile is the merge cost of one dump against a table that
// already holds every socket in it (the periodic reconcile).
func BenchmarkReconcile(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			d := syntheticDump(n)
			tb := New(Options{})
			tb.Reconcile(d)
			for b.Loop() {
				d.Start++
				d.End++
				tb.Reconcile(d)
			}
		})
	}
}
