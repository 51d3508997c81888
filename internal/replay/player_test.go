package replay

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tcpstat/tcpstat/internal/livetable"
	"github.com/tcpstat/tcpstat/internal/record"
	"github.com/tcpstat/tcpstat/internal/record/recordtest"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// rowsOf is a table's rows as text, sorted: what two tables are compared by.
func rowsOf(tb *table.Table) []string {
	var rows []string
	for i := range tb.Len() {
		c := tb.Row(i).Conn()
		o, _ := tb.Row(i).Owner()
		rows = append(rows, c.Local.String()+" "+c.Remote.String()+" "+c.State.String()+" "+o.Comm+" "+
			time.Duration(c.Since).String())
	}
	slices.Sort(rows)
	return rows
}

// writeRecording writes evs in two files, each with a checkpoint every
// 2000 events, and returns them.
func writeRecording(t *testing.T, evs []tracer.Event) []File {
	dir := t.TempDir()
	start := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	offset := start.UnixNano() - int64(evs[0].Time)
	tb := table.New(table.Options{})
	var w *record.Writer
	var f *os.File
	for i := range evs {
		if i%(len(evs)/2) == 0 {
			if w != nil {
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
			path := filepath.Join(dir, record.FileName(record.Wall(evs[i].Time, offset), i))
			var err error
			if f, err = os.Create(path); err != nil {
				t.Fatal(err)
			}
			hdr := record.Header{Start: record.Wall(evs[i].Time, offset), StartBoot: evs[i].Time, ClockOffset: offset}
			if w, err = record.NewWriter(f, hdr, uint64(i), record.Gap{}); err != nil {
				t.Fatal(err)
			}
		}
		if i%2000 == 0 || i%(len(evs)/2) == 0 {
			if err := w.Checkpoint(evs[i].Time, offset, record.Checkpoint{Seq: uint64(i)}, tb); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Event(&evs[i]); err != nil {
			t.Fatal(err)
		}
		tb.Apply(&evs[i])
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	files, skipped, err := Files([]string{dir})
	if err != nil || len(skipped) > 0 || len(files) != 2 {
		t.Fatalf("files %v, skipped %v: %v", files, skipped, err)
	}
	return files
}

// tableAfter is the table after the first n events.
func tableAfter(evs []tracer.Event, n int) *table.Table {
	tb := table.New(table.Options{})
	for i := range n {
		tb.Apply(&evs[i])
	}
	tb.Expire(evs[max(n-1, 0)].Time, nil)
	return tb
}

func TestPlayer(t *testing.T) {
	evs := recordtest.Churn(1000, 3)
	files := writeRecording(t, evs)
	p, err := NewPlayer(files)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	check := func(what string, n int) {
		t.Helper()
		if p.Seq() != uint64(n) {
			t.Fatalf("%s: at event %d, want %d", what, p.Seq(), n)
		}
		var got []string
		p.View(func(tb *table.Table, _ livetable.Status) { got = rowsOf(tb) })
		if want := rowsOf(tableAfter(evs, n)); !slices.Equal(want, got) {
			t.Fatalf("%s: the table after %d events differs: %d rows, want %d", what, n, len(got), len(want))
		}
	}
	check("start", 0)
	if more, err := p.Forward(5000); !more || err != nil {
		t.Fatal(more, err)
	}
	check("forward 5000", 5000)
	if more, err := p.Forward(1000); !more || err != nil { // into the second file
		t.Fatal(more, err)
	}
	check("forward into the second file", 6000)
	if err := p.Back(1); err != nil {
		t.Fatal(err)
	}
	check("back 1", 5999)
	if err := p.Back(3000); err != nil { // into the first file
		t.Fatal(err)
	}
	check("back into the first file", 2999)
	at := record.Wall(evs[7777].Time, files[1].Header.ClockOffset)
	if err := p.Jump(at); err != nil {
		t.Fatal(err)
	}
	check("jump", 7778)
	if more, err := p.ForwardTime(time.Duration(evs[8000].Time - evs[7777].Time)); !more || err != nil {
		t.Fatal(more, err)
	}
	check("forward in time", 8001)
	more, err := p.Forward(len(evs))
	if more || err != nil {
		t.Fatalf("forward past the end: %v, %v", more, err)
	}
	check("end", len(evs))
}
