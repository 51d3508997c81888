package topview

import (
	"fmt"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/tcpstat/tcpstat/internal/livetable"
	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tcp"
)

// benchTable is a table of n sockets owned by 300 processes.
func benchTable(n int) *table.Table {
	socks := make([]snapshot.Socket, n)
	for i := range socks {
		socks[i] = snapshot.Socket{
			Proto: snapshot.TCP, State: tcp.State(1 + i%11), Cookie: uint64(i + 1), Inode: uint64(i + 1),
			Local:  netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, byte(i >> 8), byte(i)}), uint16(i)),
			Remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 8080),
			Owners: []snapshot.Owner{{PID: uint32(i % 300), Comm: fmt.Sprint("worker-", i%300)}},
		}
	}
	tb := table.New(table.Options{})
	tb.Reconcile(&table.Dump{Sockets: socks, Start: 1, End: 2, Owners: true})
	return tb
}

// BenchmarkRefresh is one screen refresh at 100 000 rows: copy the table,
// count, filter, sort, and format the 50 lines a screen shows.
func BenchmarkRefresh(b *testing.B) {
	tb := benchTable(100_000)
	st := livetable.Status{Now: 3}
	for _, opts := range []Options{{Sort: ByAge}, {Sort: ByState}, {Sort: ByComm, Filter: mustParse(b, "comm worker-7*")}} {
		b.Run(fmt.Sprintf("%v-%q", opts.Sort, opts.Filter.String()), func(b *testing.B) {
			var f Frame
			for b.Loop() {
				f.Capture(tb, st)
				f.Arrange(opts)
				f.Lines(0, 50)
			}
		})
	}
}

// BenchmarkBatchFrame is one refresh of top -b at 100 000 rows: bind,
// count, sort and write every row, as text and as JSON. The table's lock
// is held for all of it.
func BenchmarkBatchFrame(b *testing.B) {
	tb := benchTable(100_000)
	st := livetable.Status{Now: 3}
	wall := time.Now()
	for _, json := range []bool{false, true} {
		b.Run(fmt.Sprintf("json=%v", json), func(b *testing.B) {
			var f Frame
			for b.Loop() {
				f.Bind(tb, st)
				f.Arrange(Options{})
				var err error
				if json {
					err = f.WriteJSON(io.Discard, wall)
				} else {
					err = f.WriteText(io.Discard, wall, 0, Options{})
				}
				if err != nil {
					b.Fatal(err)
				}
				f.Unbind()
			}
		})
	}
}
