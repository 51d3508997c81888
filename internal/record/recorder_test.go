package record

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// readFile reads a recording file whole.
func readFile(t *testing.T, path string) []Record {
	t.Helper()
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var recs []Record
	for {
		var rec Record
		if err := r.Next(&rec); errors.Is(err, io.EOF) {
			return recs
		} else if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
}

func TestRotationAndRetention(t *testing.T) {
	dir := t.TempDir()
	var reports []string
	rec, err := NewRecorder(Options{Path: dir, Dir: true, RotateSize: 4 << 10, MaxFiles: 3,
		Header: Header{Version: "test"}, Report: func(s string) { reports = append(reports, s) }})
	if err != nil {
		t.Fatal(err)
	}
	evs := churn(800, 11)
	tb := table.New(table.Options{})
	clock := tracer.NewClock()
	rotations := 0
	for i := range evs {
		if rec.NeedsFile() {
			if err := rec.Rotate(evs[i].Time, clock, Checkpoint{Seq: uint64(i), Tracing: true}, tb); err != nil {
				t.Fatal(err)
			}
			rotations++
		}
		rec.Event(&evs[i])
		tb.Apply(&evs[i])
		if i%300 == 0 {
			rec.Flush()
		}
	}
	rec.Close(End{Events: uint64(len(evs))})
	if len(reports) > 0 {
		t.Fatalf("reports: %q", reports)
	}
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rotations < 5 || len(files) != 3 {
		t.Fatalf("%d rotations left %d files: want at least 5, and 3 kept", rotations, len(files))
	}
	// Each file is whole on its own: header, checkpoint, then events that
	// follow on from the previous file's.
	next := uint64(0)
	for i, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
		recs := readFile(t, f)
		if len(recs) < 3 || recs[0].Type != TypeHeader || recs[1].Type != TypeCheckpoint {
			t.Fatalf("%s does not begin with a header and a checkpoint", f)
		}
		if recs[0].Header.File != rotations-len(files)+i {
			t.Errorf("%s is file %d, want %d", f, recs[0].Header.File, rotations-len(files)+i)
		}
		for _, r := range recs {
			if r.Type == TypeCorrupt {
				t.Fatalf("%s: %+v", f, r.Corrupt)
			}
			if r.Type != TypeEvent {
				continue
			}
			if i > 0 && r.Seq != next {
				t.Fatalf("%s: event %d follows event %d", f, r.Seq, next-1)
			}
			if r.Event != evs[r.Seq] {
				t.Fatalf("%s: event %d differs", f, r.Seq)
			}
			next = r.Seq + 1
		}
		if i == len(files)-1 && recs[len(recs)-1].Type != TypeEnd {
			t.Fatalf("the last file ends with %s, not end", recs[len(recs)-1].Type)
		}
	}
	if next != uint64(len(evs)) {
		t.Fatalf("the last event is %d, want %d", next-1, len(evs)-1)
	}
}

func TestRotationNeedsADirectory(t *testing.T) {
	_, err := NewRecorder(Options{Path: "x" + Ext, RotateSize: 1})
	if err == nil || !strings.Contains(err.Error(), "need a directory") {
		t.Fatalf("rotation of a single file: %v", err)
	}
}
