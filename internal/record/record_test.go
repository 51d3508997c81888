package record

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// file is an in-memory recording file that can fail writes.
type file struct {
	bytes.Buffer
	fail error
}

func (f *file) Write(p []byte) (int, error) {
	if f.fail != nil {
		n := len(p) / 2 // a partial write, as a full disk gives
		f.Buffer.Write(p[:n])
		return n, f.fail
	}
	return f.Buffer.Write(p)
}

func (f *file) Truncate(n int64) error {
	f.Buffer.Truncate(int(n))
	return nil
}

var testHeader = Header{Version: "test", Host: "h", Kernel: "6.18.0", BootID: "b", ClockOffset: 1_700_000_000_000_000_000,
	StartBoot: 999_000_000_000}

// readAll reads every record of a recording in memory.
func readAll(t testing.TB, data []byte) []Record {
	t.Helper()
	r, err := NewReader("test", bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var recs []Record
	for {
		var rec Record
		err := r.Next(&rec)
		if errors.Is(err, io.EOF) {
			return recs
		}
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
}

func events(recs []Record) []tracer.Event {
	var evs []tracer.Event
	for _, r := range recs {
		if r.Type == TypeEvent {
			evs = append(evs, r.Event)
		}
	}
	return evs
}

func conns(tb *table.Table) []table.Conn {
	var cs []table.Conn
	for i := range tb.Len() {
		cs = append(cs, tb.Row(i).Conn())
	}
	return cs
}

var addrs = cmpopts.EquateComparable(netip.AddrPort{}, netip.Addr{})

var sortConns = cmpopts.SortSlices(func(a, b table.Conn) bool { return a.Cookie < b.Cookie })

// diffConns is cmp.Diff(want, got) over rows in any order, run only when
// they differ: over thousands of rows it allocates gigabytes through
// reflection, which a 1000 times slower guest pays for.
func diffConns(want, got []table.Conn) string {
	norm := func(cs []table.Conn) []table.Conn {
		cs = slices.Clone(cs)
		for i := range cs {
			if len(cs[i].Dwell) == 0 {
				cs[i].Dwell = nil
			}
		}
		sort.Slice(cs, func(i, j int) bool { return cs[i].Cookie < cs[j].Cookie })
		return cs
	}
	if len(want) == len(got) && reflect.DeepEqual(norm(want), norm(got)) {
		return ""
	}
	return cmp.Diff(want, got, sortConns, cmpopts.EquateEmpty(), addrs)
}

func TestRoundTrip(t *testing.T) {
	evs := churn(5000, 1)
	var f file
	w, err := NewWriter(&f, testHeader, 0, Gap{})
	if err != nil {
		t.Fatal(err)
	}
	tb := table.New(table.Options{})
	half := len(evs) / 2
	for i := range evs {
		if err := w.Event(&evs[i]); err != nil {
			t.Fatal(err)
		}
		if i < half-1 {
			tb.Apply(&evs[i])
		}
		if i == half {
			// The table read one event less than was written: that one
			// follows the checkpoint again.
			if err := w.Checkpoint(evs[i].Time, 42, Checkpoint{Seq: uint64(half - 1), Tracing: true}, tb); err != nil {
				t.Fatal(err)
			}
			if err := w.Loss(evs[i].Time, Loss{Reason: "ring_buffer_full", Count: 3, Total: 3}); err != nil {
				t.Fatal(err)
			}
			if err := w.Stale(TypeStale, evs[i].Time, 3); err != nil {
				t.Fatal(err)
			}
			if err := w.Held(evs[i].Time, evs[i-1].Time); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := conns(tb)
	if err := w.End(evs[len(evs)-1].Time, End{Events: uint64(len(evs))}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Stats().Blocks < 2 {
		t.Fatalf("%d blocks: want several", w.Stats().Blocks)
	}

	recs := readAll(t, f.Bytes())
	// cmp.Diff only to explain a difference: over thousands of events it
	// allocates gigabytes, which a 1000 times slower guest pays for.
	if got := events(recs); !slices.Equal(evs, got) {
		t.Fatalf("events (-want +got):\n%s", cmp.Diff(evs, got, addrs))
	}
	var rows []table.Conn
	var repeats []Record
	var types []Type
	seq := uint64(0)
	for _, r := range recs {
		switch r.Type {
		case TypeRow:
			rows = append(rows, r.Row)
		case TypeRepeat:
			repeats = append(repeats, r)
		case TypeEvent:
			if r.Seq != seq {
				t.Fatalf("event %d has sequence number %d", seq, r.Seq)
			}
			seq++
			continue
		}
		types = append(types, r.Type)
	}
	wantTypes := []Type{TypeHeader, TypeCheckpoint}
	for range want {
		wantTypes = append(wantTypes, TypeRow)
	}
	wantTypes = append(wantTypes, TypeCheckEnd, TypeRepeat, TypeRepeat, TypeLoss, TypeStale, TypeHeld, TypeEnd)
	if diff := cmp.Diff(wantTypes, types, addrs); diff != "" {
		t.Fatalf("record types (-want +got):\n%s", diff)
	}
	if diff := diffConns(want, rows); diff != "" {
		t.Fatalf("checkpoint rows (-want +got):\n%s", diff)
	}
	if len(repeats) != 2 || repeats[0].Seq != uint64(half-1) || repeats[0].Event != evs[half-1] || repeats[1].Event != evs[half] {
		t.Fatalf("repeats after the checkpoint: %+v", repeats)
	}
	for _, r := range recs {
		if r.Type == TypeHeld && (r.Time != evs[half].Time || r.Held != evs[half-1].Time) {
			t.Fatalf("held record at %d, oldest %d: want %d, %d", r.Time, r.Held, evs[half].Time, evs[half-1].Time)
		}
	}
	if h := recs[0].Header; h.Host != "h" || h.FormatVersion != FormatVersion || h.ClockOffset != testHeader.ClockOffset {
		t.Fatalf("header %+v", h)
	}

	// A table restored from the checkpoint and moved on by the events
	// after it is the table that read every event.
	full := table.New(table.Options{})
	for i := range evs {
		full.Apply(&evs[i])
	}
	restored := table.New(table.Options{})
	for _, c := range rows {
		restored.Restore(&c)
	}
	for _, r := range repeats {
		restored.Apply(&r.Event)
	}
	for i := half + 1; i < len(evs); i++ {
		restored.Apply(&evs[i])
	}
	if diff := diffConns(conns(full), conns(restored)); diff != "" {
		t.Fatalf("restored table (-full +restored):\n%s", diff)
	}
}

// record writes evs in blocks of per events and returns the file and the
// offset of each block.
func record(t testing.TB, evs []tracer.Event, per int) ([]byte, []BlockInfo) {
	var f file
	w, err := NewWriter(&f, testHeader, 0, Gap{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		if err := w.Event(&evs[i]); err != nil {
			t.Fatal(err)
		}
		if (i+1)%per == 0 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, _ := NewReader("test", bytes.NewReader(f.Bytes()), int64(f.Len()))
	return f.Bytes(), r.Index()
}

func corruptions(recs []Record) []Corrupt {
	var cs []Corrupt
	for _, r := range recs {
		if r.Type == TypeCorrupt {
			cs = append(cs, r.Corrupt)
		}
	}
	return cs
}

func TestTruncated(t *testing.T) {
	evs := churn(60, 2)
	data, idx := record(t, evs, 100)
	for n := 1; n <= len(data); n += 1 + n/200%5 {
		recs := readAll(t, data[:n])
		got := events(recs)
		// Every whole block reads; the rest is one torn tail.
		whole, wantEvents := 0, 0
		for _, b := range idx {
			if b.Offset+b.Size <= int64(n) {
				whole++
				wantEvents += int(b.Events)
			}
		}
		if !slices.Equal(evs[:wantEvents], got) {
			t.Fatalf("truncated at %d: events (-want +got):\n%s", n, cmp.Diff(evs[:wantEvents], got, cmpopts.EquateEmpty(), addrs))
		}
		cs := corruptions(recs)
		if whole == len(idx) || idx[whole].Offset == int64(n) {
			if len(cs) != 0 {
				t.Fatalf("truncated at %d after the last block: %+v", n, cs)
			}
			continue
		}
		torn := idx[whole]
		if len(cs) != 1 || !cs[0].Torn || cs[0].Offset != torn.Offset || cs[0].Bytes != int64(n)-torn.Offset {
			t.Fatalf("truncated at %d inside the block at %d: reported %+v", n, torn.Offset, cs)
		}
		if n-int(torn.Offset) >= frameOverhead && cs[0].Events != int64(torn.Events) {
			t.Fatalf("truncated at %d: torn tail held at most %d events, reported %d", n, torn.Events, cs[0].Events)
		}
	}
}

func TestCorruptBlockSkipped(t *testing.T) {
	evs := churn(300, 3)
	data, idx := record(t, evs, 100)
	if len(idx) < 4 {
		t.Fatalf("%d blocks", len(idx))
	}
	bad := idx[2]
	for _, at := range []int64{bad.Offset, bad.Offset + 10, bad.Offset + int64(frameOverhead) + 5, bad.Offset + bad.Size - 1} {
		for bit := range 8 {
			d := bytes.Clone(data)
			d[at] ^= 1 << bit
			recs := readAll(t, d)
			skipped := int(bad.FirstSeq)
			want := append(append([]tracer.Event{}, evs[:skipped]...), evs[skipped+int(bad.Events):]...)
			if got := events(recs); !slices.Equal(want, got) {
				t.Fatalf("bit %d of byte %d flipped: events (-want +got):\n%s", bit, at, cmp.Diff(want, got, addrs))
			}
			cs := corruptions(recs)
			if len(cs) != 1 || cs[0].Torn || cs[0].Offset != bad.Offset || cs[0].Bytes != bad.Size {
				t.Fatalf("bit %d of byte %d flipped: reported %+v, want the block at %d (%d bytes)", bit, at, cs, bad.Offset, bad.Size)
			}
		}
	}
}

func TestWriteErrorsMakeAGap(t *testing.T) {
	evs := churn(200, 4)
	var f file
	w, err := NewWriter(&f, testHeader, 0, Gap{})
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for i := range evs {
		if err := w.Event(&evs[i]); err != nil {
			t.Fatal(err)
		}
		if (i+1)%100 != 0 {
			continue
		}
		switch i / 100 {
		case 2, 3, 4:
			f.fail = errors.New("no space left on device")
			var we *WriteError
			if err := w.Flush(); !errors.As(err, &we) || we.Events != 100 {
				t.Fatalf("flush on a full disk: %v", err)
			}
			failed += 100
		default:
			f.fail = nil
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	g, ok := w.Recovered()
	if failed > 0 && (!ok || g.Events != uint64(failed)) {
		t.Fatalf("recovered gap %+v, %v: want %d events", g, ok, failed)
	}
	recs := readAll(t, f.Bytes())
	if cs := corruptions(recs); len(cs) != 0 {
		t.Fatalf("partial writes left debris: %+v", cs)
	}
	want := append(append([]tracer.Event{}, evs[:200]...), evs[500:]...)
	if got := events(recs); !slices.Equal(want, got) {
		t.Fatalf("events (-want +got):\n%s", cmp.Diff(want, got, addrs))
	}
	var gaps []Gap
	for _, r := range recs {
		if r.Type == TypeGap {
			gaps = append(gaps, r.Gap)
		}
	}
	if len(gaps) != 1 || gaps[0].Events != 300 || gaps[0].Since != evs[200].Time || gaps[0].Until != evs[499].Time {
		t.Fatalf("gaps %+v: want one of 300 events from %d to %d", gaps, evs[200].Time, evs[499].Time)
	}
}
