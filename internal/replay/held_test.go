package replay

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tcpstat/tcpstat/internal/record"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// TestTableAtTakesHeldEvents: a filter that asks for the local port holds
// a connect's CLOSE → SYN_SENT until its next transition, and the recorder
// writes it then, after events later than it. The table as of an instant
// between must have the connect, and read on only until a held record says
// nothing older than the instant is held, in the next file of the same
// recording if need be.
func TestTableAtTakesHeldEvents(t *testing.T) {
	const at = 250
	peer := netip.MustParseAddrPort("127.0.0.1:80")
	connect := func(cookie, t uint64, port uint16, old, new tcp.State) step {
		return step{ev: &tracer.Event{Kind: tracer.Transition, Time: t, Cookie: cookie, NetNS: 1,
			Local: netip.AddrPortFrom(peer.Addr(), port), Remote: peer, Old: old, New: new}}
	}
	decided := []step{
		connect(1, 200, 40001, tcp.Close, tcp.SynSent),
		{heldAt: 210, oldest: 150},
		connect(1, 300, 40001, tcp.SynSent, tcp.Established), // the first event after the instant
		{heldAt: 310, oldest: 150},
	}
	late := []step{
		// Connect 2, held from 150 to its close.
		connect(2, 150, 0, tcp.Close, tcp.SynSent),
		connect(2, 400, 40002, tcp.SynSent, tcp.Close),
		{heldAt: 410},
		// Past the held record that ends the search: not read.
		connect(3, 230, 40003, tcp.Close, tcp.SynSent),
	}
	want := []string{"1 SYN_SENT", "2 SYN_SENT"}
	for _, tc := range []struct {
		name  string
		files [][]step
		held  bool
		want  []string
	}{
		{"one file", [][]step{slices.Concat(decided, late)}, true, want},
		{"the held events in the next file", [][]step{decided, late}, true, want},
		// A recording without held records (before they were written):
		// the events up to the first one after the instant.
		{"no held records", [][]step{slices.Concat(decided, late)}, false, []string{"1 SYN_SENT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := writeSteps(t, tc.files, tc.held)
			st, err := TableAt(files, record.Wall(at, files[0].Header.ClockOffset))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for i := range st.Table.Len() {
				r := st.Table.Row(i)
				got = append(got, fmt.Sprint(r.Cookie(), " ", r.State()))
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("the table as of %d: %v, want %v", at, got, tc.want)
			}
		})
	}
}

// step is an event or, without one, a held record.
type step struct {
	ev             *tracer.Event
	heldAt, oldest uint64
}

// writeSteps writes a recording of one file per element of files, each
// with an empty checkpoint first, with held records (header.Held) or
// without them. The first file starts at 100, the next ones at 350: after
// the instant the test asks for.
func writeSteps(t *testing.T, files [][]step, held bool) []File {
	dir := t.TempDir()
	offset := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC).UnixNano()
	start := uint64(100)
	var seq uint64
	for n, steps := range files {
		f, err := os.Create(filepath.Join(dir, record.FileName(record.Wall(start, offset), n)))
		if err != nil {
			t.Fatal(err)
		}
		hdr := record.Header{Start: record.Wall(start, offset), StartBoot: start, ClockOffset: offset, BootID: "b", Held: held, File: n,
			Filter: "( sport = :80 or dport = :80 )"}
		w, err := record.NewWriter(f, hdr, seq, record.Gap{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Checkpoint(start, offset, record.Checkpoint{Seq: seq, Tracing: true}, table.New(table.Options{})); err != nil {
			t.Fatal(err)
		}
		for _, s := range steps {
			switch {
			case s.ev != nil:
				err = w.Event(s.ev)
				seq++
			case held:
				err = w.Held(s.heldAt, s.oldest)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		start = 350
	}
	out, skipped, err := Files([]string{dir})
	if err != nil || len(skipped) > 0 || len(out) != len(files) {
		t.Fatalf("files %v, skipped %v: %v", out, skipped, err)
	}
	return out
}
