package record

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpstat/tcpstat/internal/format"
)

var updateV1 = flag.Bool("update-v1", false, "rewrite testdata/v1.tcprec (only ever while the format is version 1)")

// TestVersion1 reads the committed recording of format version 1: every
// later version of the reader must read it to the same events.
func TestVersion1(t *testing.T) {
	path := filepath.Join("testdata", "v1"+Ext)
	golden := filepath.Join("testdata", "v1.events.jsonl")
	if *updateV1 {
		if FormatVersion != 1 {
			t.Fatal("the version 1 recording is only written by version 1")
		}
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, seedRecording(t), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	recs := readFile(t, path)
	if recs[0].Type != TypeHeader || recs[0].Header.FormatVersion != 1 {
		t.Fatalf("first record %s, version %d", recs[0].Type, recs[0].Header.FormatVersion)
	}
	var got []byte
	offset := recs[0].Header.ClockOffset
	counts := map[Type]int{}
	for _, r := range recs {
		counts[r.Type]++
		switch r.Type {
		case TypeClock, TypeCheckpoint:
			offset = r.Offset
		case TypeEvent:
			got = format.AppendJSON(got, &r.Event, Wall(r.Time, offset))
		}
	}
	if *updateV1 {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Fatalf("events of the version 1 recording (-want +got):\n%s", diff)
	}
	wantCounts := map[Type]int{TypeHeader: 1, TypeEvent: 66, TypeCheckpoint: 1, TypeRow: counts[TypeRow], TypeCheckEnd: 1,
		TypeClock: 1, TypeLoss: 1, TypeStale: 1, TypeResync: 1, TypeEnd: 1, TypeRepeat: 1}
	if diff := cmp.Diff(wantCounts, counts); diff != "" || counts[TypeRow] == 0 {
		t.Fatalf("record counts (-want +got):\n%s", diff)
	}
}
