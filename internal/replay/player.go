package replay

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tcpstat/tcpstat/internal/livetable"
	"github.com/tcpstat/tcpstat/internal/record"
	"github.com/tcpstat/tcpstat/internal/table"
)

// Player moves a table through a recording, forward and back, by event
// or by time: the table view's time travel. Forward it applies the next
// events; back, or to a time far off, it rebuilds from the checkpoint
// before the target.
type Player struct {
	files []File
	c     *cursor
}

// NewPlayer starts at the first checkpoint of the recording.
func NewPlayer(files []File) (*Player, error) {
	p := &Player{files: files}
	c, err := p.first(0)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, fmt.Errorf("%s: no whole checkpoint", files[0].Path)
	}
	p.c = c
	return p, nil
}

// first is the table at the first whole checkpoint of file fi.
func (p *Player) first(fi int) (*cursor, error) {
	always := func(*record.Record) bool { return true }
	f := &p.files[fi]
	r, err := record.Open(f.Path)
	if err != nil {
		return nil, fmt.Errorf("open recording: %w", err)
	}
	for _, b := range r.Index() {
		if !b.HasCheckpoint() {
			continue
		}
		c, err := rebuild(r, b.Offset, f, func(*record.Record) bool { return false }, always)
		if err != nil {
			r.Close()
			return nil, err
		}
		if c != nil {
			c.fi, c.r = fi, r
			c.st.finish(c.st.Status.Now)
			return c, nil
		}
	}
	r.Close()
	return nil, nil
}

// Close releases the file being read.
func (p *Player) Close() {
	if p.c != nil {
		p.c.r.Close()
	}
}

// View calls fn with the table and its status as of the current instant.
func (p *Player) View(fn func(*table.Table, livetable.Status)) { fn(p.c.st.Table, p.c.st.Status) }

// Time is the current instant, wall clock.
func (p *Player) Time() time.Time { return p.c.st.Wall }

// Seq is the number of events applied.
func (p *Player) Seq() uint64 { return p.c.seq }

// next returns the next event, moving to the next file at the end of one;
// nil at the end of the recording.
func (p *Player) next() (*record.Record, error) {
	c := p.c
	if c.next != nil {
		return c.next, nil
	}
	for {
		var rec record.Record
		err := c.r.Next(&rec)
		if errors.Is(err, io.EOF) {
			if c.fi+1 >= len(p.files) {
				return nil, nil
			}
			nc, err := p.first(c.fi + 1)
			if err != nil {
				return nil, err
			}
			if nc == nil {
				return nil, nil
			}
			// The next file starts from its own checkpoint: the events it
			// holds before that are in the table already, or lost.
			c.r.Close()
			p.c, c = nc, nc
			if c.next != nil {
				return c.next, nil
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		switch rec.Type {
		case record.TypeEvent:
			if rec.Seq < c.seq {
				continue
			}
			c.next = &rec
			return c.next, nil
		case record.TypeCorrupt:
			c.st.Problems = append(c.st.Problems, rec.Corrupt)
		default:
			c.st.note(&rec)
		}
	}
}

func (p *Player) apply(rec *record.Record) {
	c := p.c
	c.st.Table.Apply(&rec.Event)
	c.seq = rec.Seq + 1
	c.st.Status.Events = c.seq
	c.next = nil
	c.st.finish(rec.Time)
}

// Forward applies the next n events; false at the end of the recording.
func (p *Player) Forward(n int) (bool, error) {
	for range n {
		rec, err := p.next()
		if err != nil || rec == nil {
			return false, err
		}
		p.apply(rec)
	}
	return true, nil
}

// ForwardTime moves the instant on by d, applying the events in between;
// false at the end of the recording.
func (p *Player) ForwardTime(d time.Duration) (bool, error) {
	target := p.c.st.Status.Now + uint64(d)
	for {
		rec, err := p.next()
		if err != nil {
			return false, err
		}
		if rec == nil {
			return false, nil
		}
		if rec.Time > target {
			p.c.st.finish(target)
			return true, nil
		}
		p.apply(rec)
	}
}

// Back goes back n events.
func (p *Player) Back(n int) error {
	seq := p.c.seq - min(p.c.seq, uint64(n))
	c, err := seekSeq(p.files, seq)
	if err != nil {
		return err
	}
	p.c.r.Close()
	p.c = c
	return nil
}

// Jump goes to the instant t, back or forward.
func (p *Player) Jump(t time.Time) error {
	c, err := seekTime(p.files, t)
	if err != nil {
		return err
	}
	p.c.r.Close()
	p.c = c
	return nil
}
