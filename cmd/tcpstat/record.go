package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/filter"
	"github.com/tcpstat/tcpstat/internal/format"
	"github.com/tcpstat/tcpstat/internal/livetable"
	"github.com/tcpstat/tcpstat/internal/record"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

func recordCommand() *cli.Command {
	return &cli.Command{
		Name:      "record",
		Usage:     "write every TCP state transition and the connection table to a recording",
		ArgsUsage: "[FILTER]",
		Description: "Writes a header, the connection table (as top builds it), every event, loss and\n" +
			"stale/resync marker, and a checkpoint of the whole table every --checkpoint, in checksummed\n" +
			"zstd blocks a crash cannot corrupt (docs/recording.md). PATH is a file, or a directory\n" +
			"(existing, or ending in /) of files rotated by size or age. SIGHUP starts a new file.\n" +
			"FILTER (docs/filter.md) selects the sockets recorded, all of a socket's events or none;\n" +
			"every network namespace is recorded unless --netns names one.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "write", Aliases: []string{"w"}, Required: true, Usage: "recording `PATH`: a file, or a directory for rotated files"},
			&cli.DurationFlag{Name: "checkpoint", Value: time.Minute, Usage: "write the whole table every `INTERVAL`"},
			&cli.StringFlag{Name: "rotate-size", Usage: "start a new file past `SIZE` bytes (K, M, G suffixes)"},
			&cli.DurationFlag{Name: "rotate-every", Usage: "start a new file every `INTERVAL`"},
			&cli.IntFlag{Name: "max-files", Usage: "keep at most `N` files, removing the oldest"},
			&cli.StringFlag{Name: "max-size", Usage: "keep at most `SIZE` bytes of files, removing the oldest"},
			&cli.DurationFlag{Name: "flush", Value: time.Second, Usage: "write buffered records at least every `INTERVAL`"},
			&cli.BoolFlag{Name: "4", Usage: "IPv4 only"},
			&cli.BoolFlag{Name: "6", Usage: "IPv6 only"},
			&cli.UintFlag{Name: "port", Aliases: []string{"p"}, Usage: "only sockets with this local or remote `PORT`"},
			&cli.IntFlag{Name: "ring-size", Value: tracer.DefaultRingBufferSize, Usage: "ring buffer `BYTES` (a power of two): each CPU's ring is at most this, all of them at most twice this (each at least 1 MiB)"},
			netnsFlag(),
			&cli.StringFlag{Name: "ready-file", Hidden: true, Usage: "write this file once the first checkpoint is written"},
			cpuProfileFlag(),
		}, containerFlags()...),
		Action: profiled(runRecord),
	}
}

// parseSize reads a byte count with an optional K, M or G (powers of 1024).
func parseSize(flag, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	mult := int64(1)
	switch strings.ToUpper(s[len(s)-1:]) {
	case "K":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("--%s %q: want a number of bytes, e.g. 64M", flag, s)
	}
	return n * mult, nil
}

// recordDumpLoad is the share of one CPU the recorder's periodic dumps may
// take: every 2 s up to 40 ms a dump (about 40 000 sockets), less often
// on larger hosts.
const recordDumpLoad = 0.02

// recorder is one run of tcpstat record.
type recorder struct {
	rec     *record.Recorder
	live    *livetable.Table
	tr      *tracer.Tracer
	clock   *tracer.Clock
	offset  int64 // the clock offset last recorded
	keep    *filter.Filter
	gate    *filter.Gate // guarded by the live table's lock
	stderr  io.Writer
	lastRB  uint64
	lastRec uint64
	forced  uint64 // the gate's Forced last warned of
	stale   bool
	// checkpointed is the file's size after its last checkpoint, which
	// took checkpointSize bytes.
	checkpointed, checkpointSize int64
}

func runRecord(c *cli.Context) error {
	if c.Duration("checkpoint") <= 0 || c.Duration("flush") <= 0 {
		return errors.New("--checkpoint and --flush want a positive interval, e.g. 1m, 1s")
	}
	ids, err := containerResolver(c)
	if err != nil {
		return err
	}
	keep, err := viewFilter(c, ids)
	if err != nil {
		return err
	}
	scope, err := scopeOf(c)
	if err != nil {
		return err
	}
	opts, err := recordOptions(c, keep)
	if err != nil {
		return err
	}
	r := &recorder{clock: tracer.NewClock(), keep: keep, stderr: c.App.ErrWriter}
	opts.Report = func(msg string) { fmt.Fprintf(r.stderr, "tcpstat: %s\n", msg) }
	if r.rec, err = record.NewRecorder(opts); err != nil {
		return err
	}
	reserveRows(c)
	if r.tr, err = tracer.New(tracer.Options{RingBufferSize: c.Int("ring-size"), Filter: kernelFilter(keep, c.App.ErrWriter)}); err != nil {
		return err
	}
	defer r.tr.Close()
	for _, w := range r.tr.Warnings() {
		fmt.Fprintf(c.App.ErrWriter, "tcpstat: warning: %s\n", w)
	}
	// The table hands every event it takes to the gate, which writes the
	// events of the sockets the filter keeps, all of a socket's or none, in
	// the same critical section: a checkpoint taken in a View holds exactly
	// the events recorded so far (see keepRows for those still held).
	r.gate = filter.NewGate(keep)
	// The table serves checkpoints alone (a replay applies events to the
	// last one, reconciles unseen): dumping a large host every 2 s would
	// cost more than recording its events (docs/recording.md, Cost).
	cfg := livetable.Config{Events: r.tr, OnEvent: func(ev *tracer.Event) { r.gate.Push(ev, r.write) }, DumpLoad: recordDumpLoad,
		// Identities of sockets gone without an ending event (lost, or
		// left out by the kernel's part of the filter) are forgotten.
		OnReconcile: func(tb *table.Table) { r.gate.Retain(tb.Holds) }}
	scopedConfig(&cfg, scope, c.String("netns") != "")
	r.live, err = livetable.Start(c.Context, cfg)
	if err != nil {
		return err
	}
	defer r.live.Close()
	// SIGHUP rotates from the moment the recording exists (ready says so).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := r.rotate(); err != nil {
		return err
	}
	if ready := c.String("ready-file"); ready != "" {
		if err := os.WriteFile(ready, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return fmt.Errorf("write ready file: %w", err)
		}
	}
	return r.run(c.Context, hup, c.Duration("flush"), c.Duration("checkpoint"))
}

// recordOptions are the recording's files and header as the flags say.
func recordOptions(c *cli.Context, keep *filter.Filter) (record.Options, error) {
	path := c.String("write")
	st, err := os.Stat(path)
	dir := strings.HasSuffix(path, "/") || (err == nil && st.IsDir())
	opts := record.Options{Path: path, Dir: dir, RotateEvery: c.Duration("rotate-every"), MaxFiles: c.Int("max-files")}
	if opts.RotateSize, err = parseSize("rotate-size", c.String("rotate-size")); err != nil {
		return opts, err
	}
	if opts.MaxSize, err = parseSize("max-size", c.String("max-size")); err != nil {
		return opts, err
	}
	host, _ := os.Hostname()
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	opts.Header = record.Header{Version: readBuildInfo().Version, Host: host, Kernel: unix.ByteSliceToString(uts.Release[:]),
		BootID: strings.TrimSpace(string(boot)), Filter: keep.String(), Held: !keep.Empty(), Checkpoint: c.Duration("checkpoint")}
	return opts, nil
}

// run records until ctx ends: flushes every flush, a checkpoint every
// checkpoint (or sooner, by size), a new file on SIGHUP or when rotation
// is due.
func (r *recorder) run(ctx context.Context, hup <-chan os.Signal, flush, checkpoint time.Duration) error {
	// Owners of sockets older than tcpstat come with the first scan:
	// checkpoint again once they are known.
	owners := r.live.OwnersKnown()
	flushes := time.NewTicker(flush)
	defer flushes.Stop()
	nextCheckpoint := time.Now().Add(checkpoint)
	for {
		select {
		case <-ctx.Done():
			return r.finish()
		case <-hup:
			if err := r.rotate(); err != nil {
				return err
			}
			continue
		case <-owners:
			owners = nil
			if err := r.checkpoint(); err != nil {
				return err
			}
			continue
		case <-flushes.C:
		}
		if err := r.tick(); err != nil {
			return err
		}
		if time.Now().After(nextCheckpoint) || record.CheckpointDue(r.rec.Size()-r.checkpointed, r.checkpointSize) {
			nextCheckpoint = time.Now().Add(checkpoint)
			if err := r.checkpoint(); err != nil {
				return err
			}
		}
		if r.rec.NeedsFile() {
			if err := r.rotate(); err != nil {
				return err
			}
		}
		r.rec.Flush()
	}
}

func (r *recorder) write(ev *tracer.Event) error {
	r.rec.Event(ev)
	return nil
}

// checkpointOf describes the table for a checkpoint, taken in a View: the
// recording's events so far are the ones the table has applied.
func (r *recorder) checkpointOf(st livetable.Status) record.Checkpoint {
	return record.Checkpoint{Seq: r.rec.Seq(), Lost: st.Lost, Stale: st.Stale, Tracing: st.Tracing, Resyncs: st.Resyncs}
}

// keepRows is the table a checkpoint holds: the rows the filter selects,
// judged as the gate judges their events. A socket whose events the gate
// still holds is left out: its events, all of them, come after the
// checkpoint.
func (r *recorder) keepRows(tb *table.Table) *table.Table {
	if r.keep.Empty() {
		return tb
	}
	kept := table.New(table.Options{})
	match := r.gate.RowMatcher(tb.RowCookie)
	for i := range tb.Len() {
		row := tb.Row(i)
		if s := filter.FromRow(row); match(&s, row.Cookie()) {
			c := row.Conn()
			kept.Restore(&c)
		}
	}
	return kept
}

func (r *recorder) rotate() error {
	var err error
	r.live.View(func(tb *table.Table, st livetable.Status) {
		r.offset = r.clock.Time(0).UnixNano()
		err = r.rec.Rotate(st.Now, r.clock, r.checkpointOf(st), r.keepRows(tb))
	})
	r.checkpointed = r.rec.Size()
	return err
}

func (r *recorder) checkpoint() error {
	r.rec.Flush()
	before := r.rec.Size()
	var err error
	r.live.View(func(tb *table.Table, st livetable.Status) {
		err = r.rec.Checkpoint(st.Now, r.offset, r.checkpointOf(st), r.keepRows(tb))
	})
	r.rec.Flush()
	r.checkpointed = r.rec.Size()
	r.checkpointSize = max(0, r.checkpointed-before)
	return err
}

// tick records what changed since the last one: the clock, losses, the
// table going stale or being resynced.
func (r *recorder) tick() error {
	now := tracer.Now()
	r.clock.Sync()
	if off := r.clock.Time(0).UnixNano(); off-r.offset > int64(time.Microsecond) || r.offset-off > int64(time.Microsecond) {
		r.offset = off
		r.rec.Clock(now, off)
	}
	st, err := r.tr.Stats()
	if err != nil {
		return err
	}
	for _, l := range []struct {
		reason      string
		total, last uint64
	}{
		{format.LostRingBufferFull, st.RingBufferFull, r.lastRB},
		{format.LostRecursion, st.RecursionLost(), r.lastRec},
	} {
		if l.total > l.last {
			r.rec.Loss(now, record.Loss{Reason: l.reason, Count: l.total - l.last, Total: l.total})
		}
	}
	r.lastRB, r.lastRec = st.RingBufferFull, max(r.lastRec, st.RecursionLost())
	var live livetable.Status
	var warning string
	r.live.View(func(_ *table.Table, s livetable.Status) {
		live, warning = s, r.gate.ForcedWarning(&r.forced)
		if !r.keep.Empty() {
			// After every event passed on so far: replay --at reads on
			// past an instant until no event older than it is held.
			r.rec.Held(now, r.gate.OldestHeld())
		}
	})
	if live.Err != nil {
		return live.Err
	}
	if warning != "" {
		fmt.Fprintf(r.stderr, "tcpstat: warning: %s\n", warning)
	}
	switch {
	case live.Stale && !r.stale:
		r.rec.Stale(record.TypeStale, now, live.Lost)
	case !live.Stale && r.stale:
		r.rec.Stale(record.TypeResync, now, live.Lost)
		// The resynced table is exact again: a reader may start here.
		if err := r.checkpoint(); err != nil {
			return err
		}
	}
	r.stale = live.Stale
	return nil
}

// finish stops tracing, records every event still buffered, and ends the
// recording, synced.
func (r *recorder) finish() error {
	if err := r.tr.Detach(); err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.live.Barrier(ctx); err != nil && !errors.Is(err, livetable.ErrEventsEnded) {
		return fmt.Errorf("read the last events: %w", err)
	}
	// The reader has stopped: events still held for an undecided socket
	// are judged as they are.
	r.live.View(func(*table.Table, livetable.Status) { r.gate.Flush(r.write) })
	if err := r.tick(); err != nil {
		return err
	}
	var st livetable.Status
	r.live.View(func(_ *table.Table, s livetable.Status) { st = s })
	r.rec.Close(record.End{Events: r.rec.Seq(), Lost: st.Lost})
	return nil
}
