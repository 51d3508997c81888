package livetable

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// holdSockets makes at least n more sockets exist on the host (n/2
// loopback connections, both ends held) in helper processes of at most
// 7000 connections each, under the 20 000 descriptor limit.
func holdSockets(b *testing.B, n int) {
	b.Helper()
	const perChild = 7000
	var children []*child
	for i, left := 0, n/2; left > 0; i++ {
		conns := min(left, perChild)
		left -= conns
		children = append(children, startChild(b, childSpec{Mode: "hold",
			Server: netip.AddrFrom4([4]byte{127, 78, byte(i), 1}), Client: netip.AddrFrom4([4]byte{127, 78, byte(i), 2}), N: conns}))
	}
	for _, c := range children {
		if err := c.ready(); err != nil {
			b.Fatal(err)
		}
	}
}

func benchSizes(b *testing.B, run func(b *testing.B)) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: loads the tracer and reads every process's descriptors")
	}
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			holdSockets(b, n)
			run(b)
		})
	}
}

// BenchmarkStartup is attach to live: load and attach the tracer, dump
// every TCP socket (streamed into the table, as tcpstat top does), apply
// the buffered events. It reports the rows and the heap the table holds per row once
// the owners of older sockets are in; the host's other sockets count too.
func BenchmarkStartup(b *testing.B) {
	benchSizes(b, func(b *testing.B) {
		var (
			rows           int
			perRow         float64
			attach, ss, up time.Duration
			// CPU time of the whole process (every thread): with the
			// wall times, what overlapping the load and the dump could
			// gain on this many cores.
			attachCPU, upCPU time.Duration
		)
		for b.Loop() {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			began, cpuBegan := time.Now(), processCPU(b)
			go ReserveRows() // as top, record and serve start
			events, err := tracer.New(tracer.Options{})
			if err != nil {
				b.Fatal(err)
			}
			attach += time.Since(began)
			attachCPU += processCPU(b) - cpuBegan
			// Every namespace, as top, record and serve follow by default.
			sc := snapshot.AllNetNS()
			tr, err := Start(context.Background(), Config{Events: events, Dump: sc.DumpTCP, Walk: sc.WalkTCP, Covers: sc.Covers,
				Owners: snapshot.Owners, Every: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			up += time.Since(began)
			upCPU += processCPU(b) - cpuBegan
			b.StopTimer()
			// The table's own heap: once the owner scan that follows
			// start-up is done and its dump released.
			if err := tr.WaitOwners(context.Background()); err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			tr.View(func(tb *table.Table, _ Status) { rows = tb.Len() })
			perRow = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(rows)
			tr.Close()
			events.Close()
			// The yardstick, at the same moment: one ss -tan.
			began = time.Now()
			if err := exec.Command("ss", "-tan").Run(); err != nil {
				b.Fatal(err)
			}
			ss += time.Since(began)
			b.StartTimer()
		}
		b.ReportMetric(float64(rows), "rows")
		b.ReportMetric(perRow, "heap-bytes/row")
		b.ReportMetric(float64(attach.Milliseconds())/float64(b.N), "attach-ms")
		b.ReportMetric(float64(attachCPU.Milliseconds())/float64(b.N), "attach-cpu-ms")
		b.ReportMetric(float64((upCPU-attachCPU).Milliseconds())/float64(b.N), "dump-merge-cpu-ms")
		b.ReportMetric(float64(ss.Milliseconds())/float64(b.N), "ss-tan-ms")
		b.ReportMetric(float64(up)/float64(ss), "startup/ss")
	})
}

// processCPU is the user and system time of the whole process so far.
func processCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkReconcile is one reconcile of a live table: a fresh dump merged
// under the table's lock; periodic ones skip the owner scan, resyncs after
// lost events (and every dump when polling) do it.
func BenchmarkReconcile(b *testing.B) {
	benchSizes(b, func(b *testing.B) {
		tr, err := Start(context.Background(), Config{Dump: snapshot.DumpTCP, Every: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		defer tr.Close()
		for _, owners := range []bool{false, true} {
			b.Run(map[bool]string{false: "periodic", true: "with-owners"}[owners], func(b *testing.B) {
				for b.Loop() {
					if err := tr.reconcile(context.Background(), 0, owners); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	})
}

// BenchmarkSS is the yardstick: one `ss -tan` over the same sockets.
func BenchmarkSS(b *testing.B) {
	if _, err := exec.LookPath("ss"); err != nil {
		b.Skip("needs ss (iproute2)")
	}
	benchSizes(b, func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command("ss", "-tan").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
