// Package watch is `tcpstat watch`: it reads the tracer's transitions and
// prints each as a line for people or a JSON object for programs, with the
// losses as they happen and a summary at the end.
package watch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/tcpstat/tcpstat/internal/filter"
	"github.com/tcpstat/tcpstat/internal/format"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// Options choose what watch traces and how it prints.
type Options struct {
	// Tracer selects the events in the kernel (family, port) and sizes
	// the ring buffer.
	Tracer tracer.Options
	// Match, when set, keeps only the events it accepts: the user-space
	// filter. Events it rejects are counted as read, not printed.
	Match func(*tracer.Event) bool
	// Filter, when set, keeps the sockets it selects, all of each one's
	// events or none (filter.Gate); Tracer.Filter should be its kernel part.
	Filter *filter.Filter
	// JSON prints one object per line (docs/watch.md) instead of lines.
	JSON bool
	// Width is the terminal's width in columns, to size the lines' columns
	// to it; 0 keeps the stable layout (output to a pipe or a file).
	Width int
	// Resized, when set, delivers the terminal's new width after a
	// resize: the columns are fitted again under a new header.
	Resized <-chan int
	// Wide prints every field whole, whatever the width.
	Wide bool
	// Color colours states, close reasons and losses.
	Color bool
	// Enrich, when set, appends fields to each JSON object: each field
	// with its leading comma (container and pod names, for one).
	Enrich func(b []byte, ev *tracer.Event) []byte
	// ReadyFile, when set, is written with the pid once the programs are
	// attached (tests wait for it).
	ReadyFile string
	// Stdout receives the events; when it is a file (a pipe, a terminal),
	// watch ends as soon as its reader is gone, event or not.
	Stdout io.Writer
	// Stderr receives warnings and the summary line.
	Stderr io.Writer
}

// Run traces and prints until ctx ends or stdout's reader goes away, then
// prints what was still buffered and the summary.
func Run(ctx context.Context, opts Options) error {
	tr, err := tracer.New(opts.Tracer)
	if err != nil {
		return err
	}
	defer tr.Close()
	for _, warning := range tr.Warnings() {
		fmt.Fprintf(opts.Stderr, "tcpstat: warning: %s\n", warning)
	}
	if opts.ReadyFile != "" {
		if err := os.WriteFile(opts.ReadyFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return fmt.Errorf("write ready file: %w", err)
		}
	}
	w := &watcher{tr: tr, opts: opts, out: bufio.NewWriterSize(opts.Stdout, 256<<10),
		gone: readerGone(opts.Stdout), clock: tracer.NewClock(), buf: make([]byte, 0, 1024),
		layout: format.Layout{Width: opts.Width, Wide: opts.Wide, Color: opts.Color}}
	if !opts.Filter.Empty() {
		w.gate = filter.NewGate(opts.Filter)
	}
	if !opts.JSON {
		w.out.WriteString(w.layout.Header())
	}
	// The header goes out at once: a reader learns that watch runs.
	if err := w.flush(time.Now()); err != nil {
		return w.closed(err)
	}
	// Read returns ErrFlushed soon after a signal.
	stop := context.AfterFunc(ctx, func() { tr.Flush() })
	defer stop()

	if err := w.loop(func() bool { return ctx.Err() != nil }); err != nil {
		return w.closed(err)
	}
	// Stop producing, then read everything still buffered.
	if err := tr.Detach(); err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	if err := tr.Flush(); err != nil {
		return fmt.Errorf("flush ring buffer: %w", err)
	}
	if err := w.loop(func() bool { return true }); err != nil {
		return w.closed(err)
	}
	if w.gate != nil {
		// Sockets still undecided are judged as they are.
		w.gate.Flush(w.emit)
	}
	if err := w.reportLosses(); err != nil {
		return w.closed(err)
	}
	return w.closed(w.finish())
}

// errGone ends the loop when stdout's reader has gone away.
var errGone = errors.New("output closed")

// watcher prints events and losses; it owns the output buffer.
type watcher struct {
	tr          *tracer.Tracer
	opts        Options
	gate        *filter.Gate // nil without a filter
	out         *bufio.Writer
	layout      format.Layout
	gone        func() bool // stdout's reader went away; nil when unknowable
	clock       *tracer.Clock
	buf         []byte
	sum         format.Summary
	lastRB      uint64
	lastRec     uint64
	lastCorrupt uint64
	lastForced  uint64    // the gate's Forced last warned of
	flushed     time.Time // last flush of out
	tick        time.Time // next loss report
}

// closed turns the end of stdout's reader (a closed pipe: `watch | head`)
// into a normal end, with the summary on stderr.
func (w *watcher) closed(err error) error {
	if !errors.Is(err, errGone) && !errors.Is(err, syscall.EPIPE) {
		return err
	}
	if w.gate != nil {
		w.sum.FilterForced = w.gate.Forced
	}
	_, err = w.opts.Stderr.Write(append([]byte("tcpstat: output closed; "), format.AppendSummaryLine(nil, w.sum)...))
	return err
}

const (
	// flushEvery bounds how long a printed event may wait in the output buffer.
	flushEvery = 50 * time.Millisecond
	// lookEvery is how often an idle watch asks whether stdout's reader is
	// still there.
	lookEvery = 200 * time.Millisecond
)

// wake is the next deadline when no event is due: the loss report, or the
// next look at the output if that comes first.
func (w *watcher) wake(now time.Time) time.Time {
	if look := now.Add(lookEvery); w.gone != nil && look.Before(w.tick) {
		return look
	}
	return w.tick
}

func (w *watcher) flush(now time.Time) error {
	w.flushed = now
	select {
	case width := <-w.opts.Resized:
		if !w.opts.JSON && w.layout.Width > 0 && width > 0 && width != w.layout.Width {
			w.out.WriteString(w.layout.Resize(width))
		}
	default:
	}
	if err := w.out.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// loop prints events, reporting losses once a second, until the reader is
// flushed and done says to stop.
func (w *watcher) loop(done func() bool) error {
	var ev tracer.Event
	now := time.Now()
	w.tick = now.Add(time.Second)
	next := w.wake(now)
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
			if w.opts.Match != nil && !w.opts.Match(&ev) {
				continue
			}
			if w.gate != nil {
				w.gate.Push(&ev, w.emit)
			} else {
				w.print(&ev)
			}
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
			// Without events nothing is written, so no write fails:
			// ask the output whether its reader is still there.
			if w.gone != nil && w.gone() {
				return errGone
			}
			if now.Before(w.tick) {
				next = w.wake(now)
				continue
			}
			w.tick = now.Add(time.Second)
			next = w.wake(now)
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
			// The tracer skips and counts corrupt samples itself: what
			// reaches here ends reading.
			return fmt.Errorf("read events: %w", err)
		}
	}
}

// emit prints an event the gate passes.
func (w *watcher) emit(ev *tracer.Event) error {
	w.print(ev)
	return nil
}

func (w *watcher) print(ev *tracer.Event) {
	at := w.clock.Time(ev.Time)
	// Formatted in place in the writer's free space: no copy per event.
	b := w.out.AvailableBuffer()
	if w.opts.JSON {
		b = format.AppendJSON(b, ev, at)
		if w.opts.Enrich != nil {
			b = append(w.opts.Enrich(b[:len(b)-len("}\n")], ev), "}\n"...)
		}
	} else {
		b = w.layout.AppendLine(b, ev, at)
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
		{format.LostCorrupt, st.Corrupt, w.lastCorrupt},
	} {
		if l.total <= l.last {
			continue
		}
		if w.opts.JSON {
			w.buf = format.AppendLostJSON(w.buf[:0], now, l.reason, l.total-l.last, l.total)
		} else {
			w.buf = w.layout.AppendLost(w.buf[:0], now, l.reason, l.total-l.last, l.total)
		}
		w.out.Write(w.buf)
	}
	w.lastRB, w.lastRec, w.lastCorrupt = st.RingBufferFull, max(w.lastRec, st.RecursionLost()), st.Corrupt
	if w.gate != nil {
		// Not a loss, but the filter may have shown or hidden them wrongly.
		w.sum.FilterForced = w.gate.Forced
		if warning := w.gate.ForcedWarning(&w.lastForced); warning != "" {
			fmt.Fprintf(w.opts.Stderr, "tcpstat: warning: %s\n", warning)
		}
	}
	return w.flush(now)
}

func (w *watcher) finish() error {
	if w.opts.JSON {
		w.out.Write(format.AppendSummaryJSON(w.buf[:0], time.Now(), w.sum))
	} else {
		w.out.WriteString(format.Footnote)
	}
	if err := w.flush(time.Now()); err != nil {
		return err
	}
	_, err := w.opts.Stderr.Write(append([]byte("tcpstat: "), format.AppendSummaryLine(nil, w.sum)...))
	return err
}
