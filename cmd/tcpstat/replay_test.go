package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpstat/tcpstat/internal/record"
	"github.com/tcpstat/tcpstat/internal/record/recordtest"
	"github.com/tcpstat/tcpstat/internal/table"
)

// TestReplayFromTo prints only the events between --from and --to, and
// only the sockets a filter selects.
func TestReplayFromTo(t *testing.T) {
	evs := recordtest.Churn(300, 9)
	path := filepath.Join(t.TempDir(), "r"+record.Ext)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 30, 3, 12, 7, 0, time.UTC)
	offset := start.UnixNano() - int64(evs[0].Time)
	w, err := record.NewWriter(f, record.Header{Start: start, StartBoot: evs[0].Time, ClockOffset: offset}, 0, record.Gap{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Checkpoint(evs[0].Time, offset, record.Checkpoint{Tracing: true}, table.New(table.Options{})); err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		if err := w.Event(&evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	from, to := record.Wall(evs[1000].Time, offset), record.Wall(evs[2000].Time, offset)
	want, port9001 := 0, 0
	for _, e := range evs {
		if at := record.Wall(e.Time, offset); !at.Before(from) && !at.After(to) {
			want++
		}
		if e.Remote.Port() == 9001 { // the clients: dport is the remote port
			port9001++
		}
	}
	var out, errOut bytes.Buffer
	args := []string{"tcpstat", "replay", "--json", "--from", from.Format(time.RFC3339Nano), "--to", to.Format(time.RFC3339Nano), path}
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("%v (%s)", err, errOut.String())
	}
	if got := strings.Count(out.String(), "\n"); got != want || want == 0 {
		t.Fatalf("%d events between %s and %s, want %d", got, from, to, want)
	}
	out.Reset()
	if err := run(context.Background(), []string{"tcpstat", "replay", "--json", path, "--", "dport", "=", ":9001"}, &out, &errOut); err != nil {
		t.Fatalf("%v (%s)", err, errOut.String())
	}
	if got := strings.Count(out.String(), "\n"); got != port9001 || port9001 == 0 {
		t.Fatalf("%d events of port 9001's sockets, want %d", got, port9001)
	}

	// Mistakes end the command with one line saying what is wrong.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--at", "1999-01-01T00:00:00Z"}, "1999-01-01T00:00:00Z is before the recording starts (2026-11-30T03:12:07Z)"},
		{[]string{"--from", "yesterday"}, `"yesterday"`},
		{[]string{"--format", "xml"}, `--format "xml": want text, json or parquet`},
		{[]string{"--format", "parquet"}, "--format parquet needs --output FILE"},
	} {
		out.Reset()
		err := run(context.Background(), append(append([]string{"tcpstat", "replay"}, tc.args...), path), &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("replay %s: error %v, want one line with %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
