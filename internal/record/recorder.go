package record

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// Ext ends the name of every recording file.
const Ext = ".tcprec"

// CheckpointBytes is how much a recorder writes between two checkpoints at
// most, whatever the interval, unless the table is large (see
// CheckpointDue): a reader rebuilding the table at an instant then decodes
// and applies about a million events at most.
const CheckpointBytes = 16 << 20

// CheckpointDue reports whether a checkpoint is due after since bytes,
// the last checkpoint having taken last bytes: every CheckpointBytes, but
// no more often than keeps checkpoints to a fifth of the recording.
func CheckpointDue(since, last int64) bool { return since >= max(CheckpointBytes, 4*last) }

// Options configure a Recorder.
type Options struct {
	// Path is the recording file, or with Dir the directory of its
	// rotated files.
	Path string
	Dir  bool
	// RotateSize and RotateEvery start a new file past that many bytes or
	// that long after the current one began (Dir only; 0: never).
	RotateSize  int64
	RotateEvery time.Duration
	// MaxFiles and MaxSize remove the oldest files past that many files or
	// bytes in all (Dir only; 0: no limit). The current file is kept.
	MaxFiles int
	MaxSize  int64
	// Header is the template of every file's header; Start, StartBoot,
	// ClockOffset and File are set per file.
	Header Header
	// Report is told, in one line each, when writing fails and when it
	// works again.
	Report func(msg string)
}

// Recorder writes a recording, one or more files, and is safe for
// concurrent use. A write that fails (a full disk) loses its block; the
// Recorder counts what it could not write, says so through Report, and
// records the gap in the first block it can write again.
type Recorder struct {
	mu      sync.Mutex
	opts    Options
	f       *os.File
	w       *Writer
	name    string
	opened  time.Time
	file    int
	seq     uint64
	failing bool
	carried Gap // lost while no file was open
	carry   bool
	// needFile is set when no file is open or the current one should be
	// rotated: the owner calls Rotate, which needs the table.
	needFile   bool
	notWritten uint64
	lastErr    error
	// Until the first file is open, events are held: those the first
	// checkpoint does not hold are written after it.
	started bool
	pre     []tracer.Event
}

// maxPre bounds the events held before the first file.
const maxPre = 1 << 20

// FileName is the name of a rotated file begun at t: names sort by time.
func FileName(t time.Time, n int) string {
	return "tcpstat-" + t.UTC().Format("20060102T150405.000000Z") + fmt.Sprintf("-%04d", n%10000) + Ext
}

// NewRecorder checks the options; the first file is made by Rotate.
func NewRecorder(opts Options) (*Recorder, error) {
	if !opts.Dir && (opts.RotateSize > 0 || opts.RotateEvery > 0 || opts.MaxFiles > 0 || opts.MaxSize > 0) {
		return nil, fmt.Errorf("%s is a file: rotation and limits need a directory (create it, or end the path with /)", opts.Path)
	}
	if opts.Report == nil {
		opts.Report = func(string) {}
	}
	if opts.Dir {
		if err := os.MkdirAll(opts.Path, 0o700); err != nil {
			return nil, fmt.Errorf("create recording directory: %w", err)
		}
	}
	return &Recorder{opts: opts, needFile: true}, nil
}

// NeedsFile reports that Rotate should be called: at the start, when the
// current file is due for rotation, or when the last one was lost to a
// write error.
func (r *Recorder) NeedsFile() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w != nil && r.opts.Dir && r.opts.RotateEvery > 0 && time.Since(r.opened) >= r.opts.RotateEvery {
		r.needFile = true
	}
	return r.needFile
}

// Name is the current file's path ("" if none).
func (r *Recorder) Name() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.name
}

// Seq is the next event's sequence number: the events written, or lost
// to write errors, so far.
func (r *Recorder) Seq() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seq
}

// Size is the bytes of the current file on disk.
func (r *Recorder) Size() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w == nil {
		return 0
	}
	return r.w.Size()
}

// NotWritten is the events lost to write errors so far.
func (r *Recorder) NotWritten() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.notWritten
}

// Rotate ends the current file (flushed and synced) and begins the next:
// header, then the checkpoint of tb as of now, taken with the clock. The
// caller holds the table still during the call.
func (r *Recorder) Rotate(now uint64, clock *tracer.Clock, cp Checkpoint, tb *table.Table) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.w
	r.closeFile(nil)
	wall := clock.Time(now)
	hdr := r.opts.Header
	hdr.Start, hdr.StartBoot, hdr.ClockOffset, hdr.File = wall, now, wall.UnixNano()-int64(now), r.file
	name := r.opts.Path
	if r.opts.Dir {
		name = filepath.Join(r.opts.Path, FileName(wall, r.file))
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND | os.O_EXCL
	if !r.opts.Dir {
		flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND | os.O_TRUNC
	}
	f, err := os.OpenFile(name, flags, 0o600)
	if err != nil {
		r.failed(fmt.Errorf("create %s: %w", name, err))
		return nil
	}
	_ = f.Chmod(0o600) // an existing file keeps its mode otherwise
	gap := Gap{}
	if r.carry {
		gap = r.carried
	}
	seq := r.seq
	if !r.started {
		seq = min(cp.Seq, r.seq)
	}
	w, err := NewWriter(f, hdr, seq, gap)
	if err != nil {
		f.Close()
		return err
	}
	w.Inherit(prev)
	r.f, r.w, r.name, r.opened = f, w, name, time.Now()
	r.carried, r.carry, r.needFile = Gap{}, false, false
	r.file++
	err = w.Checkpoint(now, hdr.ClockOffset, cp, tb)
	var we *WriteError
	if err != nil && !errors.As(err, &we) {
		return err
	}
	r.check(err)
	if !r.started {
		r.started = true
		for i := seq; i < uint64(len(r.pre)) && r.w != nil; i++ {
			r.check(r.w.Event(&r.pre[i]))
		}
		r.pre = nil
	}
	if r.w != nil {
		r.check(r.w.Flush())
	}
	if r.opts.Dir {
		r.retain()
	}
	return nil
}

// closeFile ends the current file, with an End record when end is set.
func (r *Recorder) closeFile(end *End) {
	if r.w == nil {
		return
	}
	if end != nil {
		e := *end
		e.NotWritten = r.notWritten
		_ = r.w.End(tracer.Now(), e)
	}
	r.check(r.w.Close())
	if r.w != nil {
		if err := r.f.Sync(); err != nil {
			r.failed(fmt.Errorf("sync %s: %w", r.name, err))
		}
		r.f.Close()
	}
	r.f, r.w = nil, nil
}

// check handles the outcome of a block write.
func (r *Recorder) check(err error) {
	if err == nil {
		if r.w != nil {
			if g, ok := r.w.Recovered(); ok {
				r.failing = false
				r.opts.Report(fmt.Sprintf("record: writing again: %d events (%d other records, %d bytes) from %s to %s were not written; %s marks the gap",
					g.Events, g.Records, g.Bytes, wallText(g.Since, r.w), wallText(g.Until, r.w), r.name))
			}
		}
		return
	}
	var we *WriteError
	if !errors.As(err, &we) {
		r.failed(err)
		return
	}
	r.notWritten += we.Events
	r.failed(we.Err) // an *os.PathError: it names the file
	if !r.w.Started() {
		// Without its header the file is no recording: start over in a
		// new one once writing works, carrying the gap.
		g, _ := r.w.PendingGap()
		r.carried, r.carry = g, true
		r.f.Close()
		_ = os.Remove(r.name)
		r.f, r.w, r.needFile = nil, nil, true
	}
}

func wallText(boot uint64, w *Writer) string {
	return time.Unix(0, int64(boot)+w.headerOffset()).UTC().Format(time.RFC3339Nano)
}

// failed reports the first of a run of failures.
func (r *Recorder) failed(err error) {
	r.lastErr = err
	if !r.failing {
		r.failing = true
		r.opts.Report(fmt.Sprintf("record: %v; counting what cannot be written until writing works again", err))
	}
}

// lose counts a record written while no file is open.
func (r *Recorder) lose(t uint64, event bool) {
	if !r.carry {
		reason := "no file open"
		if r.lastErr != nil {
			reason = r.lastErr.Error()
		}
		r.carried, r.carry = Gap{Since: t, Reason: reason}, true
	}
	r.carried.Until = t
	if event {
		r.carried.Events++
		r.notWritten++
	} else {
		r.carried.Records++
	}
}

// Event records one event.
func (r *Recorder) Event(ev *tracer.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	if !r.started && len(r.pre) < maxPre {
		r.pre = append(r.pre, *ev)
		return
	}
	if r.w == nil {
		r.lose(ev.Time, true)
		return
	}
	r.check(r.w.Event(ev))
	if r.w != nil && r.opts.Dir && r.opts.RotateSize > 0 && r.w.Size()+int64(r.w.Buffered()/2) >= r.opts.RotateSize {
		r.needFile = true
	}
}

// Loss records events the tracer lost.
func (r *Recorder) Loss(t uint64, l Loss) {
	r.other(t, func(w *Writer) error { return w.Loss(t, l) })
}

// Stale records a stale or resync marker (TypeStale, TypeResync).
func (r *Recorder) Stale(typ Type, t, lost uint64) {
	r.other(t, func(w *Writer) error { return w.Stale(typ, t, lost) })
}

// Held records the time of the oldest event the filter holds back.
func (r *Recorder) Held(t, oldest uint64) {
	r.other(t, func(w *Writer) error { return w.Held(t, oldest) })
}

// Clock records a new wall-clock offset.
func (r *Recorder) Clock(t uint64, offset int64) {
	r.other(t, func(w *Writer) error { return w.Clock(t, offset) })
}

// Checkpoint records the table; the caller holds it still.
func (r *Recorder) Checkpoint(t uint64, offset int64, cp Checkpoint, tb *table.Table) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w == nil {
		r.lose(t, false)
		return nil
	}
	err := r.w.Checkpoint(t, offset, cp, tb)
	var we *WriteError
	if errors.As(err, &we) {
		r.check(err)
		return nil
	}
	return err
}

func (r *Recorder) other(t uint64, write func(*Writer) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w == nil {
		r.lose(t, false)
		return
	}
	r.check(write(r.w))
}

// Flush writes what is buffered: call it every --flush.
func (r *Recorder) Flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w != nil {
		r.check(r.w.Flush())
	}
}

// Close ends the recording: an End record, flushed and synced.
func (r *Recorder) Close(end End) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closeFile(&end)
}

// retain removes the oldest files past MaxFiles or MaxSize.
func (r *Recorder) retain() {
	if r.opts.MaxFiles <= 0 && r.opts.MaxSize <= 0 {
		return
	}
	files, err := Files(r.opts.Path)
	if err != nil {
		r.failed(err)
		return
	}
	var total int64
	sizes := make([]int64, len(files))
	for i, f := range files {
		if st, err := os.Stat(f); err == nil {
			sizes[i] = st.Size()
			total += st.Size()
		}
	}
	for i, f := range files {
		if f == r.name {
			break
		}
		if (r.opts.MaxFiles <= 0 || len(files)-i <= r.opts.MaxFiles) && (r.opts.MaxSize <= 0 || total <= r.opts.MaxSize) {
			break
		}
		if err := os.Remove(f); err != nil {
			r.failed(fmt.Errorf("remove old recording: %w", err))
			return
		}
		total -= sizes[i]
	}
}

// Files lists the recording files of a directory, oldest first.
func Files(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list recordings: %w", err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasPrefix(e.Name(), "tcpstat-") && strings.HasSuffix(e.Name(), Ext) {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(files)
	return files, nil
}
