package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/tcpstat/tcpstat/internal/record"
	"github.com/tcpstat/tcpstat/internal/record/recordtest"
	"github.com/tcpstat/tcpstat/internal/table"
)

// recordTracer is `tcpstat record` into a directory; count replays it.
type recordTracer struct {
	bin     string
	profile bool // write a CPU profile beside the output (OUT.pprof)
}

func (recordTracer) name() string { return "tcpstat record" }

func (t recordTracer) start(out string) (*exec.Cmd, time.Duration, error) {
	ready := out + ".ready"
	args := []string{"record", "-w", out + ".d/", "--ready-file", ready}
	if t.profile {
		args = append(args, "--cpuprofile", out+".pprof")
	}
	cmd := exec.Command(t.bin, args...)
	cmd.Stderr = os.Stderr
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	return waitStarted(cmd, begin, 30*time.Second, func() bool {
		_, err := os.Stat(ready)
		return err == nil
	})
}

// count replays the recording as JSON (timed: the replay rate), counts the
// churn's transitions in it, and the bytes each event took on disk.
func (t recordTracer) count(out string, ports portRange, r *result) error {
	dir := out + ".d"
	files, err := record.Files(dir)
	if err != nil {
		return err
	}
	var size int64
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return err
		}
		size += st.Size()
		// Blocks of events alone, apart from those with the header and
		// checkpoints (the host's whole table, whatever the churn).
		rd, err := record.Open(f)
		if err != nil {
			return err
		}
		for _, b := range rd.Index() {
			if b.Flags == 0 {
				r.eventBlockBytes += b.Size
				r.eventBlockEvents += uint64(b.Events)
			}
		}
		rd.Close()
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	cmd := exec.Command(t.bin, "replay", "--json", dir)
	cmd.Stdout, cmd.Stderr = f, os.Stderr
	began := time.Now()
	err = cmd.Run()
	r.replayTime = time.Since(began)
	f.Close()
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	err = scan(out, func(line []byte) error {
		if bytes.HasPrefix(line, []byte(`{"type":"transition"`)) || bytes.HasPrefix(line, []byte(`{"type":"accept"`)) {
			r.recordedEvents++
		}
		if bytes.HasPrefix(line, []byte(`{"type":"transition"`)) && (ports.has(jsonInt(line, `"sport":`)) || ports.has(jsonInt(line, `"dport":`))) {
			r.captured++
		}
		if bytes.HasPrefix(line, []byte(`{"type":"lost"`)) {
			r.lostReported += uint64(jsonInt(line, `"count":`))
		}
		return nil
	})
	r.recordBytes = size
	r.hasSummary = true
	return err
}

// synthRecording writes a recording of about size bytes from synthetic
// loopback churn (recordtest.Churn, shifted in time and cookies), with
// checkpoints where the recorder writes them (record.CheckpointDue).
func synthRecording(path string, size int64) (events uint64, first, last time.Time, err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, first, last, err
	}
	defer f.Close()
	start := time.Now().Add(-time.Hour)
	const boot0 = uint64(1_000_000_000_000)
	hdr := record.Header{Version: "bench", Host: "synthetic", Start: start, StartBoot: boot0, ClockOffset: start.UnixNano() - int64(boot0)}
	w, err := record.NewWriter(f, hdr, 0, record.Gap{})
	if err != nil {
		return 0, first, last, err
	}
	tb := table.New(table.Options{})
	// The churn's events come 1.7 µs apart; stretched twelvefold, 4 300
	// connections a second leave about 260 000 timewait rows, as many as
	// the kernel keeps by default (tcp_max_tw_buckets).
	const stretch = 12
	chunk := recordtest.Churn(20000, 1)
	t0 := chunk[0].Time
	for i := range chunk {
		chunk[i].Time = (chunk[i].Time - t0) * stretch
	}
	span := chunk[len(chunk)-1].Time + 1000
	var lastCP, cpSize int64
	for round := uint64(0); ; round++ {
		for i := range chunk {
			ev := chunk[i]
			ev.Time += boot0 + round*span
			ev.Cookie += round << 24
			if err := w.Event(&ev); err != nil {
				return 0, first, last, err
			}
			tb.Apply(&ev)
			events++
		}
		now := chunk[len(chunk)-1].Time + boot0 + round*span
		tb.Expire(now, nil)
		if record.CheckpointDue(w.Size()-lastCP, cpSize) {
			before := w.Size()
			if err := w.Flush(); err != nil {
				return 0, first, last, err
			}
			if err := w.Checkpoint(now, hdr.ClockOffset, record.Checkpoint{Seq: w.Seq(), Tracing: true}, tb); err != nil {
				return 0, first, last, err
			}
			if err := w.Flush(); err != nil {
				return 0, first, last, err
			}
			lastCP, cpSize = w.Size(), w.Size()-before
		}
		if w.Size() >= size {
			if err := w.Close(); err != nil {
				return 0, first, last, err
			}
			return events, record.Wall(boot0, hdr.ClockOffset), record.Wall(now, hdr.ClockOffset), nil
		}
	}
}

// measureAt times `tcpstat replay --at` in the middle of a synthetic
// recording of size bytes.
func measureAt(bin, dir string, size int64) error {
	path := filepath.Join(dir, "synthetic"+record.Ext)
	began := time.Now()
	events, first, last, err := synthRecording(path, size)
	if err != nil {
		return fmt.Errorf("write synthetic recording: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "synthetic recording: %d events, %.1f MB, written in %s\n", events, float64(st.Size())/1e6, time.Since(began).Round(time.Millisecond))
	mid := first.Add(last.Sub(first) / 2)
	var worst time.Duration
	var worstRebuild time.Duration
	for _, at := range []time.Time{mid, mid.Add(last.Sub(first) / 7), last} {
		// Once with a filter that selects no row (--port 1): the table is
		// rebuilt whole and an empty one printed; then whole.
		var d [2]time.Duration
		var out bytes.Buffer
		for i, filter := range [][]string{{"--port", "1"}, nil} {
			args := append([]string{"replay", "--json", "--at", at.Format(time.RFC3339Nano)}, filter...)
			cmd := exec.Command(bin, append(args, path)...)
			out.Reset()
			cmd.Stdout, cmd.Stderr = &out, os.Stderr
			t0 := time.Now()
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("replay --at: %w", err)
			}
			d[i] = time.Since(t0)
		}
		worstRebuild, worst = max(worstRebuild, d[0]), max(worst, d[1])
		fmt.Printf("replay --at %s in a %.2f GB recording: %s to rebuild (no row printed), %s printing the table (%d bytes)\n",
			at.Format(time.RFC3339Nano), float64(st.Size())/1e9, d[0].Round(time.Millisecond), d[1].Round(time.Millisecond), out.Len())
	}
	fmt.Printf("replay --at, worst of 3: %s to rebuild, %s printing the table\n", worstRebuild.Round(time.Millisecond), worst.Round(time.Millisecond))
	return nil
}
