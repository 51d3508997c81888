package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tcpstat/tcpstat/internal/format"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

func watchCommand() *cli.Command {
	return &cli.Command{
		Name:  "watch",
		Usage: "print every TCP state transition as it happens",
		Description: "One line per transition: time, owning process, local → remote, OLD → NEW and the time\n" +
			"spent in the old state. TIME_WAIT is marked * (inferred): the kernel hands the socket to a\n" +
			"timewait mini-socket without reporting it. Lost events are reported as they happen and at exit.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per line (see docs/watch.md)"},
			&cli.BoolFlag{Name: "4", Usage: "IPv4 only"},
			&cli.BoolFlag{Name: "6", Usage: "IPv6 only"},
			&cli.UintFlag{Name: "port", Aliases: []string{"p"}, Usage: "only sockets with this local or remote `PORT`"},
			&cli.IntFlag{Name: "ring-size", Value: tracer.DefaultRingBufferSize, Usage: "ring buffer `BYTES` (a power of two)"},
			&cli.StringFlag{Name: "ready-file", Hidden: true, Usage: "write this file once the programs are attached"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("watch takes no arguments, got %q", c.Args().First())
			}
			opts := tracer.Options{RingBufferSize: c.Int("ring-size")}
			switch {
			case c.Bool("4") && c.Bool("6"):
				return errors.New("-4 and -6 exclude each other; give neither for both families")
			case c.Bool("4"):
				opts.Family = 4
			case c.Bool("6"):
				opts.Family = 6
			}
			if p := c.Uint("port"); p > 65535 {
				return fmt.Errorf("--port %d: want 1-65535", p)
			} else {
				opts.Port = uint16(p)
			}
			return watch(c.Context, opts, c.Bool("json"), c.String("ready-file"), c.App.Writer, c.App.ErrWriter)
		},
	}
}

// watcher prints events and losses; it owns the output buffer.
type watcher struct {
	tr      *tracer.Tracer
	json    bool
	out     *bufio.Writer
	stderr  io.Writer
	clock   *tracer.Clock
	buf     []byte
	sum     format.Summary
	lastRB  uint64
	lastRec uint64
	flushed time.Time // last flush of out
	tick    time.Time // next loss report
}

// flushEvery bounds how long a printed event may wait in the output buffer.
const flushEvery = 50 * time.Millisecond

func (w *watcher) flush(now time.Time) error {
	w.flushed = now
	if err := w.out.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

func watch(ctx context.Context, opts tracer.Options, asJSON bool, readyFile string, stdout, stderr io.Writer) error {
	tr, err := tracer.New(opts)
	if err != nil {
		return err
	}
	defer tr.Close()
	for _, warning := range tr.Warnings() {
		fmt.Fprintf(stderr, "tcpstat: warning: %s\n", warning)
	}
	if readyFile != "" {
		if err := os.WriteFile(readyFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return fmt.Errorf("write ready file: %w", err)
		}
	}
	w := &watcher{tr: tr, json: asJSON, out: bufio.NewWriterSize(stdout, 256<<10), stderr: stderr,
		clock: tracer.NewClock(), buf: make([]byte, 0, 1024)}
	if !asJSON {
		w.out.WriteString(format.Header)
	}
	// Read returns ErrFlushed soon after a signal.
	stop := context.AfterFunc(ctx, func() { tr.Flush() })
	defer stop()

	if err := w.loop(func() bool { return ctx.Err() != nil }); err != nil {
		return err
	}
	// Stop producing, then read everything still buffered.
	if err := tr.Detach(); err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	if err := tr.Flush(); err != nil {
		return fmt.Errorf("flush ring buffer: %w", err)
	}
	if err := w.loop(func() bool { return true }); err != nil {
		return err
	}
	if err := w.reportLosses(); err != nil {
		return err
	}
	return w.finish()
}

// loop prints events, reporting losses once a second, until the reader is
// flushed and done says to stop.
func (w *watcher) loop(done func() bool) error {
	var ev tracer.Event
	w.tick = time.Now().Add(time.Second)
	next := w.tick
	var set time.Time
	for {
		if !next.Equal(set) {
			w.tr.SetDeadline(next)
			set = next
		}
		err := w.tr.Read(&ev)
		switch {
		case err == nil:
			w.sum.Events++
			w.print(&ev)
			// Output is flushed when the ring buffer is drained, at most
			// every flushEvery: under load, a write per few events would
			// cost more than the events.
			if w.tr.Buffered() == 0 {
				if now := time.Now(); now.Sub(w.flushed) >= flushEvery {
					if err := w.flush(now); err != nil {
						return err
					}
				} else if due := w.flushed.Add(flushEvery); due.Before(next) {
					next = due
				}
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			now := time.Now()
			if err := w.flush(now); err != nil {
				return err
			}
			if now.Before(w.tick) {
				next = w.tick
				continue
			}
			w.tick = now.Add(time.Second)
			next = w.tick
			w.clock.Sync()
			if err := w.reportLosses(); err != nil {
				return err
			}
		case errors.Is(err, tracer.ErrFlushed):
			if done() {
				return nil
			}
		case errors.Is(err, tracer.ErrClosed):
			return nil
		default:
			// A sample the decoder rejects: count it, say so, go on.
			w.sum.Corrupt++
			fmt.Fprintf(w.stderr, "tcpstat: %v\n", err)
		}
	}
}

func (w *watcher) print(ev *tracer.Event) {
	at := w.clock.Time(ev.Time)
	// Formatted in place in the writer's free space: no copy per event.
	b := w.out.AvailableBuffer()
	if w.json {
		b = format.AppendJSON(b, ev, at)
	} else {
		b = format.AppendLine(b, ev, at)
	}
	w.out.Write(b)
}

// reportLosses prints what was lost since the last report, then flushes.
func (w *watcher) reportLosses() error {
	st, err := w.tr.Stats()
	if err != nil {
		return err
	}
	w.sum.Stats = st
	now := time.Now()
	for _, l := range []struct {
		reason      string
		total, last uint64
	}{
		{format.LostRingBufferFull, st.RingBufferFull, w.lastRB},
		{format.LostRecursion, st.RecursionLost(), w.lastRec},
	} {
		if l.total <= l.last {
			continue
		}
		if w.json {
			w.buf = format.AppendLostJSON(w.buf[:0], now, l.reason, l.total-l.last, l.total)
		} else {
			w.buf = format.AppendLostLine(w.buf[:0], now, l.reason, l.total-l.last, l.total)
		}
		w.out.Write(w.buf)
	}
	w.lastRB, w.lastRec = st.RingBufferFull, max(w.lastRec, st.RecursionLost())
	if err := w.out.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

func (w *watcher) finish() error {
	if w.json {
		w.out.Write(format.AppendSummaryJSON(w.buf[:0], time.Now(), w.sum))
	} else {
		w.out.WriteString(format.Footnote)
	}
	if err := w.out.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	_, err := w.stderr.Write(append([]byte("tcpstat: "), format.AppendSummaryLine(nil, w.sum)...))
	return err
}
