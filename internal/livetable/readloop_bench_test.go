package livetable

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/tcpstat/tcpstat/internal/record"
	"github.com/tcpstat/tcpstat/internal/record/recordtest"
	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// replayed hands out n events of synthetic loopback churn, repeated with
// fresh cookies and times, then io.EOF: a source that costs next to nothing.
type replayed struct {
	chunk []tracer.Event
	span  uint64
	i, n  int
}

func (s *replayed) Read(ev *tracer.Event) error {
	if s.i >= s.n {
		return io.EOF
	}
	round := uint64(s.i / len(s.chunk))
	*ev = s.chunk[s.i%len(s.chunk)]
	ev.Time += round * s.span
	ev.Cookie += round << 24
	s.i++
	return nil
}

func (*replayed) SetDeadline(time.Time)        {}
func (*replayed) Flush() error                 { return tracer.ErrFlushed }
func (*replayed) Stats() (tracer.Stats, error) { return tracer.Stats{}, nil }

// BenchmarkReadLoop is the consumer's cost per event after the ring
// buffer: the read loop, the table applying each event and, for record,
// the recorder's tap encoding and compressing it (to io.Discard). The
// kernel's side and the ring buffer read are not in it.
func BenchmarkReadLoop(b *testing.B) {
	chunk := recordtest.Churn(20000, 1)
	span := chunk[len(chunk)-1].Time - chunk[0].Time + 1000
	noDump := func(context.Context, bool) ([]snapshot.Socket, error) { return nil, nil }
	for _, tc := range []struct {
		name string
		tap  func() func(*tracer.Event)
	}{
		{"table", func() func(*tracer.Event) { return nil }},
		{"record", func() func(*tracer.Event) {
			w, err := record.NewWriter(io.Discard, record.Header{Version: "bench"}, 0, record.Gap{})
			if err != nil {
				b.Fatal(err)
			}
			return func(ev *tracer.Event) {
				if err := w.Event(ev); err != nil {
					b.Fatal(err)
				}
			}
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			src := &replayed{chunk: chunk, span: span, n: b.N}
			b.ResetTimer()
			tb, err := Start(context.Background(), Config{Events: src, Dump: noDump, Every: time.Hour, NetNS: 1, OnEvent: tc.tap()})
			if err != nil {
				b.Fatal(err)
			}
			<-tb.readerDone
			b.StopTimer()
			tb.Close()
		})
	}
}
