package record

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
)

// BenchmarkWrite measures the recorder's cost per event and the bytes
// each takes on disk, on loopback churn as the kernel reports it.
func BenchmarkWrite(b *testing.B) {
	evs := churn(20000, 5)
	w, err := NewWriter(io.Discard, testHeader, 0, Gap{})
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := w.Event(&evs[i%len(evs)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	st := w.Stats()
	b.ReportMetric(float64(st.Bytes)/float64(st.Events), "bytes/event")
	b.ReportMetric(float64(st.RawBytes)/float64(st.Events), "raw-bytes/event")
}

// BenchmarkRead measures replay decoding: events read back per second.
func BenchmarkRead(b *testing.B) {
	evs := churn(50000, 6)
	var f file
	w, err := NewWriter(&f, testHeader, 0, Gap{})
	if err != nil {
		b.Fatal(err)
	}
	for i := range evs {
		if err := w.Event(&evs[i]); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	data := f.Bytes()
	b.ReportAllocs()
	b.ResetTimer()
	var n int
	var rec Record
	for i := 0; i < b.N; {
		r, err := NewReader("bench", bytes.NewReader(data), int64(len(data)))
		if err != nil {
			b.Fatal(err)
		}
		for ; i < b.N; i++ {
			err := r.Next(&rec)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if rec.Type == TypeEvent {
				n++
			}
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}
