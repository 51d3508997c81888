package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/tcpstat/tcpstat/internal/record"
	"github.com/tcpstat/tcpstat/internal/record/recordtest"
	"github.com/tcpstat/tcpstat/internal/table"
)

// TestTopReplayInTerminal drives top --replay in a real terminal: step
// forward and back by event, to the end by time, and go to a time.
func TestTopReplayInTerminal(t *testing.T) {
	evs := recordtest.Churn(20, 5)
	path := filepath.Join(t.TempDir(), "r"+record.Ext)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 30, 3, 12, 7, 0, time.Local)
	offset := start.UnixNano() - int64(evs[0].Time)
	w, err := record.NewWriter(f, record.Header{Start: start, StartBoot: evs[0].Time, ClockOffset: offset}, 0, record.Gap{})
	if err != nil {
		t.Fatal(err)
	}
	tb := table.New(table.Options{})
	if err := w.Checkpoint(evs[0].Time, offset, record.Checkpoint{Tracing: true}, tb); err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		if err := w.Event(&evs[i]); err != nil {
			t.Fatal(err)
		}
		tb.Apply(&evs[i])
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	header := func(conns int) *regexp.Regexp {
		return regexp.MustCompile(`^tcpstat top - \d\d:\d\d:\d\d  tracing  connections ` + strconv.Itoa(conns) + `\b`)
	}
	p := startPane(t, 160, 40, "top", "--replay", path)
	p.waitFor(header(0), regexp.MustCompile(`^REPLAY 2026-11-30 03:12:07\.000000  paused ×1`))
	p.run("send-keys", "-t", "t", "Right", "Right")
	p.waitFor(header(2), regexp.MustCompile(`CLOSE|SYN_SENT`))
	p.run("send-keys", "-t", "t", "Left")
	p.waitFor(header(1))
	p.run("send-keys", "-t", "t", "]")
	p.waitFor(header(tb.Len()), regexp.MustCompile(`end of the recording`), regexp.MustCompile(`TIME_WAIT`))
	p.run("send-keys", "-t", "t", "g", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace", "03:12:07", "Enter")
	// The table as of that instant holds the first event, made at it.
	p.waitFor(header(1), regexp.MustCompile(`^REPLAY 2026-11-30 03:12:07\.000000`))
	p.run("send-keys", "-t", "t", "q")
}
