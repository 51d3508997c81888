// Package replay reads recordings back: the files of one or more paths in
// time order, as a stream of records, and the connection table as of any
// instant, rebuilt from the checkpoint before it and the events after.
package replay

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tcpstat/tcpstat/internal/livetable"
	"github.com/tcpstat/tcpstat/internal/record"
	"github.com/tcpstat/tcpstat/internal/table"
)

// File is one recording file and its header.
type File struct {
	Path   string
	Header record.Header
}

// errNoHeader: a file without a readable header.
var errNoHeader = errors.New("no readable header")

// Files expands paths (files, or directories of rotated files) into the
// recording files they hold, ordered by their start time. The last file
// of a directory may hold no whole block yet (its recorder was killed as
// it began it): it is left out, with a note for the user in skipped.
func Files(paths []string) (files []File, skipped []string, err error) {
	var names []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, nil, fmt.Errorf("open recording: %w", err)
		}
		if !st.IsDir() {
			names = append(names, p)
			continue
		}
		fs, err := record.Files(p)
		if err != nil {
			return nil, nil, err
		}
		if len(fs) == 0 {
			return nil, nil, fmt.Errorf("%s holds no recording files (tcpstat-*%s)", p, record.Ext)
		}
		for i, f := range fs {
			h, err := header(f)
			if errors.Is(err, errNoHeader) && i == len(fs)-1 {
				skipped = append(skipped, fmt.Sprintf("%s: no whole block yet (its recorder stopped as it began the file): skipped", f))
				continue
			}
			if err != nil {
				return nil, nil, err
			}
			files = append(files, File{Path: f, Header: h})
		}
	}
	for _, n := range names {
		h, err := header(n)
		if err != nil {
			return nil, nil, err
		}
		files = append(files, File{Path: n, Header: h})
	}
	if len(files) == 0 {
		return nil, skipped, errors.New("no recording file with a readable header")
	}
	slices.SortStableFunc(files, func(a, b File) int { return a.Header.Start.Compare(b.Header.Start) })
	return files, skipped, nil
}

// header reads a file's first record, which must be its header.
func header(path string) (record.Header, error) {
	r, err := record.Open(path)
	if err != nil {
		return record.Header{}, fmt.Errorf("open recording: %w", err)
	}
	defer r.Close()
	var rec record.Record
	err = r.Next(&rec)
	switch {
	case errors.Is(err, io.EOF):
		return record.Header{}, fmt.Errorf("%s: not a tcpstat recording: %w", path, errNoHeader)
	case err != nil:
		return record.Header{}, err
	case rec.Type == record.TypeCorrupt && rec.Corrupt.Offset == 0 && rec.Corrupt.Torn:
		// Killed before its first block was whole.
		return record.Header{}, fmt.Errorf("%s: %w", path, errNoHeader)
	case rec.Type == record.TypeCorrupt:
		return record.Header{}, fmt.Errorf("the header is unreadable: %s", TornText(rec.Corrupt))
	case rec.Type != record.TypeHeader:
		return record.Header{}, fmt.Errorf("%s: not a tcpstat recording (no header)", path)
	}
	return rec.Header, nil
}

// ParseTime reads a time given on the command line: RFC 3339, a time of
// day (15:04:05, 15:04, with fractions; local time, on the day of ref, the
// recording's start, or the next day if it is earlier than ref), or a
// duration relative to now (-15m, -2h30m).
func ParseTime(s string, ref, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
		if d, err := time.ParseDuration(s); err == nil {
			return now.Add(d), nil
		}
	}
	for _, layout := range []string{"15:04:05.999999999", "15:04"} {
		tod, err := time.ParseInLocation(layout, s, time.Local)
		if err != nil {
			continue
		}
		ref := ref.In(time.Local)
		t := time.Date(ref.Year(), ref.Month(), ref.Day(), tod.Hour(), tod.Minute(), tod.Second(), tod.Nanosecond(), time.Local)
		if t.Before(ref.Truncate(time.Second)) {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-11-30T03:12:07Z), a time of day (03:12:07) or a duration before now (-15m)", s)
}

// Stream calls fn for every record of files, in order, with the clock
// offset in force (wall minus boot ns). Checkpoints, rows and repeats are
// passed too; a stream reader skips them.
func Stream(files []File, fn func(f *File, rec *record.Record, offset int64) error) error {
	var rec record.Record
	for i := range files {
		f := &files[i]
		r, err := record.Open(f.Path)
		if err != nil {
			return fmt.Errorf("open recording: %w", err)
		}
		offset := f.Header.ClockOffset
		for {
			err := r.Next(&rec)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				r.Close()
				return err
			}
			switch rec.Type {
			case record.TypeClock, record.TypeCheckpoint:
				offset = rec.Offset
			}
			if err := fn(f, &rec, offset); err != nil {
				r.Close()
				return err
			}
		}
		r.Close()
	}
	return nil
}

// TornText is the one line that reports a skipped stretch of a file.
func TornText(c record.Corrupt) string {
	held := "nothing readable"
	if c.Events >= 0 {
		held = "at most " + strconv.FormatInt(c.Events, 10) + " events"
	}
	if c.Torn {
		return fmt.Sprintf("%s: torn tail from byte %d (%d bytes, %s): %s", c.File, c.Offset, c.Bytes, held, c.Reason)
	}
	return fmt.Sprintf("%s: corrupt block skipped at byte %d (%d bytes, %s): %s", c.File, c.Offset, c.Bytes, held, c.Reason)
}

// State is the table as of an instant.
type State struct {
	File   *File // the file the table was rebuilt from
	Table  *table.Table
	Status livetable.Status
	Wall   time.Time
	Offset int64
	// Problems are the stretches the rebuild skipped.
	Problems []record.Corrupt
}

// TableAt rebuilds the table as of wall-clock time at: from the last
// complete checkpoint at or before it, moved on by the events up to it,
// those a filter held back past it included (heldPast).
func TableAt(files []File, at time.Time) (*State, error) {
	c, err := seekTime(files, at)
	if err != nil {
		return nil, err
	}
	defer c.r.Close()
	if files[c.fi].Header.Held {
		boot := c.st.Status.Now
		if err := c.heldPast(files, boot); err != nil {
			return nil, err
		}
		c.st.finish(boot)
	}
	return c.st, nil
}

// heldPast applies the events a recording's filter held back past the
// instant boot, written after later ones: the filter judges a socket at
// its first event that tells all it asks (a connect's local port, an
// accepted socket's owner), and writes its events before that one then.
// It reads on from the cursor, applying the events not after boot, until
// a held record says that none older than boot is held any more, into the
// next files of the same recording if need be.
func (c *cursor) heldPast(files []File, boot uint64) error {
	r, fi := c.r, c.fi
	defer func() {
		if r != c.r {
			r.Close()
		}
	}()
	var rec record.Record
	for {
		err := r.Next(&rec)
		if errors.Is(err, io.EOF) {
			if fi+1 == len(files) || !sameRecording(&files[fi].Header, &files[fi+1].Header) {
				return nil
			}
			next, err := record.Open(files[fi+1].Path)
			if err != nil {
				return fmt.Errorf("open recording: %w", err)
			}
			if r != c.r {
				r.Close()
			}
			r, fi = next, fi+1
			continue
		}
		if err != nil {
			return err
		}
		switch rec.Type {
		case record.TypeEvent:
			if rec.Time <= boot {
				c.st.Table.Apply(&rec.Event)
				c.st.Status.Events++
			}
		case record.TypeHeld:
			if rec.Held == 0 || rec.Held > boot {
				return nil
			}
		case record.TypeCorrupt:
			c.st.Problems = append(c.st.Problems, rec.Corrupt)
		}
	}
}

// sameRecording reports a file that follows another in one rotated
// recording.
func sameRecording(prev, next *record.Header) bool {
	return next.Held && next.BootID == prev.BootID && next.Host == prev.Host && next.File == prev.File+1
}

// cursor is a table rebuilt up to a point of a recording, with the reader
// positioned right after it: next, when set, is the first event not
// applied.
type cursor struct {
	st   *State
	fi   int
	r    *record.Reader
	next *record.Record
	seq  uint64 // events applied: the sequence number of the next one
}

// seekTime finds the table as of wall-clock time at.
func seekTime(files []File, at time.Time) (*cursor, error) {
	// The file that covers at: the last one that started before it.
	fi := -1
	for i := range files {
		if !files[i].Header.Start.After(at) {
			fi = i
		}
	}
	if fi < 0 {
		return nil, fmt.Errorf("%s is before the recording starts (%s)", at.Format(time.RFC3339Nano), files[0].Header.Start.Format(time.RFC3339Nano))
	}
	boot := uint64(at.UnixNano() - files[fi].Header.ClockOffset)
	c, err := seekIn(files, fi, func(b record.BlockInfo) bool { return b.First <= boot },
		func(cp *record.Record) bool { return cp.Time > boot },
		func(rec *record.Record) bool { return rec.Time > boot })
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, fmt.Errorf("%s: no whole checkpoint before %s", files[fi].Path, at.Format(time.RFC3339Nano))
	}
	c.st.finish(boot)
	return c, nil
}

// seekSeq finds the table after the events before sequence number seq.
func seekSeq(files []File, seq uint64) (*cursor, error) {
	for fi := len(files) - 1; fi >= 0; fi-- {
		c, err := seekIn(files, fi, func(b record.BlockInfo) bool { return b.FirstSeq <= seq },
			func(cp *record.Record) bool { return cp.Checkpoint.Seq > seq },
			func(rec *record.Record) bool { return rec.Seq >= seq })
		if err != nil {
			return nil, err
		}
		if c != nil {
			now := c.st.Status.Now
			if c.next != nil {
				now = c.next.Time
			}
			c.st.finish(now)
			return c, nil
		}
	}
	return nil, fmt.Errorf("no whole checkpoint before event %d", seq)
}

// seekIn rebuilds the table in file fi from the newest checkpoint block
// that cand accepts and whose checkpoint is not late, up to the first
// event stop accepts. It returns nil when there is none.
func seekIn(files []File, fi int, cand func(record.BlockInfo) bool, late, stop func(*record.Record) bool) (*cursor, error) {
	f := &files[fi]
	r, err := record.Open(f.Path)
	if err != nil {
		return nil, fmt.Errorf("open recording: %w", err)
	}
	idx := r.Index()
	for i := len(idx) - 1; i >= 0; i-- {
		if !idx[i].HasCheckpoint() || !cand(idx[i]) {
			continue
		}
		c, err := rebuild(r, idx[i].Offset, f, late, stop)
		if err != nil {
			r.Close()
			return nil, err
		}
		if c != nil {
			c.fi, c.r = fi, r
			return c, nil
		}
	}
	r.Close()
	return nil, nil
}

// rebuild restores the first checkpoint from the block at off and applies
// the events until one that stop accepts. It returns nil when that
// checkpoint is not whole or late.
func rebuild(r *record.Reader, off int64, f *File, late, stop func(*record.Record) bool) (*cursor, error) {
	r.SeekBlock(off)
	var (
		rec    record.Record
		st     = &State{File: f, Table: table.New(table.Options{}), Offset: f.Header.ClockOffset}
		cp     record.Checkpoint
		inCP   bool
		rows   uint64
		cpSeen bool
		// repeats apply only right after the checkpoint restored.
		repeats bool
		seq     uint64
	)
	for {
		err := r.Next(&rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if !cpSeen && rec.Type != record.TypeCheckpoint {
			continue
		}
		if rec.Type != record.TypeRepeat {
			repeats = false
		}
		switch rec.Type {
		case record.TypeCheckpoint:
			if cpSeen {
				continue // a later checkpoint agrees: go on with events
			}
			if late(&rec) {
				return nil, nil
			}
			cp, cpSeen, inCP = rec.Checkpoint, true, true
			seq = cp.Seq
			st.Offset = rec.Offset
			st.Status = livetable.Status{Tracing: cp.Tracing, Events: cp.Seq, Lost: cp.Lost, Stale: cp.Stale, Resyncs: cp.Resyncs, Now: rec.Time}
		case record.TypeRow:
			if inCP {
				st.Table.Restore(&rec.Row)
				rows++
			}
		case record.TypeCheckEnd:
			if inCP && rows != rec.Checkpoint.Rows {
				return nil, nil
			}
			repeats, inCP = inCP, false
		case record.TypeCorrupt:
			if inCP {
				return nil, nil
			}
			st.Problems = append(st.Problems, rec.Corrupt)
		case record.TypeRepeat:
			if repeats {
				st.Table.Apply(&rec.Event)
			}
		case record.TypeEvent:
			if rec.Seq < cp.Seq {
				continue
			}
			if stop(&rec) {
				next := rec
				return &cursor{st: st, next: &next, seq: seq}, nil
			}
			st.Table.Apply(&rec.Event)
			seq = rec.Seq + 1
			st.Status.Events, st.Status.Now = seq, rec.Time
		default:
			st.note(&rec)
		}
	}
	if !cpSeen || inCP {
		return nil, nil
	}
	return &cursor{st: st, seq: seq}, nil
}

// note takes what a record other than an event tells about the table.
func (st *State) note(rec *record.Record) {
	switch rec.Type {
	case record.TypeClock:
		st.Offset = rec.Offset
	case record.TypeLoss:
		st.Status.Lost = max(st.Status.Lost, rec.Loss.Total)
	case record.TypeStale:
		st.Status.Stale = true
	case record.TypeResync:
		st.Status.Stale = false
		st.Status.Resyncs++
	}
}

func (st *State) finish(boot uint64) {
	st.Table.Expire(boot, nil)
	st.Status.Now = boot
	st.Wall = record.Wall(boot, st.Offset)
}
