package record

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/tcpstat/tcpstat/internal/table"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the committed seed corpus of FuzzReader")

// seedRecording is a small recording with every record type.
func seedRecording(t testing.TB) []byte {
	evs := churn(6, 9)
	var f file
	w, err := NewWriter(&f, testHeader, 0, Gap{})
	if err != nil {
		t.Fatal(err)
	}
	tb := table.New(table.Options{})
	for i := range evs {
		if err := w.Event(&evs[i]); err != nil {
			t.Fatal(err)
		}
		switch i {
		case 20:
			// The table has not read event 20 yet: it is repeated.
			_ = w.Checkpoint(evs[i].Time, 5, Checkpoint{Seq: uint64(i), Tracing: true}, tb)
			_ = w.Clock(evs[i].Time, 7)
			_ = w.Flush()
		case 30:
			_ = w.Loss(evs[i].Time, Loss{Reason: "recursion", Count: 1, Total: 1})
			_ = w.Stale(TypeStale, evs[i].Time, 1)
			_ = w.Stale(TypeResync, evs[i].Time, 1)
			_ = w.Flush()
		}
		tb.Apply(&evs[i])
	}
	_ = w.End(evs[len(evs)-1].Time, End{Events: uint64(len(evs))})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Bytes()
}

// TestFuzzSeeds keeps the committed seed corpus the output of this
// version's writer: a whole recording, one torn, one with a flipped bit.
func TestFuzzSeeds(t *testing.T) {
	data := seedRecording(t)
	seeds := map[string][]byte{"whole": data, "torn": data[:len(data)*2/3]}
	flipped := bytes.Clone(data)
	flipped[len(data)/2] ^= 0x10
	seeds["flipped"] = flipped
	dir := filepath.Join("testdata", "fuzz", "FuzzReader")
	for name, b := range seeds {
		path := filepath.Join(dir, name)
		want := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b)
		if *updateSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -run TestFuzzSeeds -update-seeds)", err)
		}
		if len(got) == 0 {
			t.Fatalf("%s is empty", path)
		}
	}
}

// FuzzReader reads arbitrary bytes as a recording: it must never panic,
// always end, and account for every byte it did not read.
func FuzzReader(f *testing.F) {
	f.Add(seedRecording(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader("fuzz", bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		var rec Record
		for i := 0; ; i++ {
			if i > 10*len(data)+10 {
				t.Fatalf("more records than bytes: %d from %d bytes", i, len(data))
			}
			err := r.Next(&rec)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if rec.Type == TypeCorrupt && (rec.Corrupt.Offset < 0 || rec.Corrupt.Offset+rec.Corrupt.Bytes > int64(len(data))) {
				t.Fatalf("corrupt stretch %+v outside %d bytes", rec.Corrupt, len(data))
			}
		}
		_ = r.Index()
		if st := r.Stats(); st.Skipped > int64(len(data)) {
			t.Fatalf("skipped %d of %d bytes", st.Skipped, len(data))
		}
	})
}
