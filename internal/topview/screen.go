package topview

import (
	"context"
	"strings"
	"time"

	"github.com/gdamore/tcell/v2"

	"github.com/tcpstat/tcpstat/internal/filter"
	"github.com/tcpstat/tcpstat/internal/format"
	"github.com/tcpstat/tcpstat/internal/livetable"
	"github.com/tcpstat/tcpstat/internal/table"
)

// Rate turns two cumulative event counts into events per second.
type Rate struct {
	at     time.Time
	events uint64
}

// Update returns the rate since the last call (0 the first time).
func (r *Rate) Update(now time.Time, events uint64) float64 {
	var rate float64
	if !r.at.IsZero() && now.After(r.at) && events >= r.events {
		rate = float64(events-r.events) / now.Sub(r.at).Seconds()
	}
	r.at, r.events = now, events
	return rate
}

const help = "q quit  / filter  sort: t age s state p pid c comm l local r remote  R reverse  ↑↓ PgUp PgDn Home End scroll"

// source is what the screen shows: a *livetable.Table, or a recording
// being replayed.
type source interface {
	View(func(*table.Table, livetable.Status))
}

// viewer is the interactive screen's state.
type viewer struct {
	screen  tcell.Screen
	live    source
	clock   func() time.Time // the wall-clock time of a refresh
	help    string
	opts    Options
	frame   Frame
	rate    Rate
	perSec  float64
	wall    time.Time
	top     int // first row shown
	editing bool
	edit    []rune // the filter being typed
	editErr string // why the typed filter was refused
}

// Interactive shows the table on screen, refreshed every interval, until
// the user quits or ctx ends. The caller owns the screen (Init and Fini).
func Interactive(ctx context.Context, screen tcell.Screen, live *livetable.Table, opts Options, every time.Duration) error {
	v := &viewer{screen: screen, live: live, opts: opts, clock: time.Now, help: help}
	tick := time.NewTicker(every)
	defer tick.Stop()
	events, quit := make(chan tcell.Event, 16), make(chan struct{})
	go screen.ChannelEvents(events, quit)
	defer close(quit)
	v.refresh()
	v.draw()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			v.refresh()
		case ev, ok := <-events:
			if !ok {
				return nil // the screen was finalized
			}
			switch ev := ev.(type) {
			case *tcell.EventResize:
				screen.Sync()
			case *tcell.EventKey:
				if v.key(ev) {
					return nil
				}
				v.frame.Arrange(v.opts)
			}
		}
		v.draw()
	}
}

func (v *viewer) refresh() {
	v.live.View(v.frame.Capture)
	v.wall = v.clock()
	v.perSec = v.rate.Update(v.wall, v.frame.Status.Events)
	v.frame.Arrange(v.opts)
}

// key handles a key press; it reports whether to quit.
func (v *viewer) key(ev *tcell.EventKey) bool {
	if v.editing {
		switch ev.Key() {
		case tcell.KeyEnter:
			f, err := filter.ParseWith(string(v.edit), filter.Options{Containers: v.opts.Containers})
			if err != nil {
				// Stay in the editor, the error in the status line.
				v.editErr = err.Error()
				break
			}
			v.opts.Filter, v.editing, v.editErr, v.top = f, false, "", 0
		case tcell.KeyEscape:
			v.editing, v.editErr = false, ""
		case tcell.KeyBackspace, tcell.KeyBackspace2:
			if len(v.edit) > 0 {
				v.edit = v.edit[:len(v.edit)-1]
			}
			v.editErr = ""
		case tcell.KeyRune:
			v.edit = append(v.edit, ev.Rune())
			v.editErr = ""
		}
		return false
	}
	_, height := v.screen.Size()
	page := max(1, height-len(v.frame.Header(v.wall, v.perSec, v.opts))-3)
	switch ev.Key() {
	case tcell.KeyCtrlC:
		return true
	case tcell.KeyEscape:
		v.opts.Filter = nil
	case tcell.KeyUp:
		v.top--
	case tcell.KeyDown:
		v.top++
	case tcell.KeyPgUp:
		v.top -= page
	case tcell.KeyPgDn:
		v.top += page
	case tcell.KeyHome:
		v.top = 0
	case tcell.KeyEnd:
		v.top = v.frame.Len()
	case tcell.KeyRune:
		sorts := map[rune]Key{'t': ByAge, 's': ByState, 'p': ByPID, 'c': ByComm, 'l': ByLocal, 'r': ByRemote}
		if k, ok := sorts[ev.Rune()]; ok {
			v.opts.Sort, v.top = k, 0
			break
		}
		switch ev.Rune() {
		case 'q':
			return true
		case 'R':
			v.opts.Reverse = !v.opts.Reverse
		case '/':
			v.editing, v.edit = true, []rune(v.opts.Filter.Source())
		}
	}
	return false
}

var (
	styleHead  = tcell.StyleDefault.Reverse(true)
	styleStale = tcell.StyleDefault.Foreground(tcell.ColorRed).Bold(true)
	styleDim   = tcell.StyleDefault.Dim(true)
	// toneStyles colour the state column as watch colours its lines.
	toneStyles = map[format.Tone]tcell.Style{
		format.Open:    tcell.StyleDefault.Foreground(tcell.ColorGreen),
		format.Opening: tcell.StyleDefault.Foreground(tcell.ColorOlive),
		format.Listen:  tcell.StyleDefault.Foreground(tcell.ColorTeal),
		format.Closing: styleDim,
	}
)

// draw formats only the rows that fit on the screen.
func (v *viewer) draw() {
	s := v.screen
	s.Clear()
	width, height := s.Size()
	y := 0
	for i, line := range v.frame.Header(v.wall, v.perSec, v.opts) {
		style := tcell.StyleDefault
		if i == 0 && v.frame.Status.Stale {
			style = styleStale
		}
		s.PutStrStyled(0, y, line, style)
		y++
	}
	y++
	rows := max(0, height-y-2) // column header and the help line
	v.top = max(0, min(v.top, v.frame.Len()-rows))
	head, lines := v.frame.Lines(v.top, rows)
	s.PutStrStyled(0, y, pad(head, width), styleHead)
	y++
	stateAt := strings.Index(head, "STATE")
	for i, line := range lines {
		style := tcell.StyleDefault
		r := v.frame.Row(v.top + i)
		if r.TimeWait() {
			style = styleDim
		}
		s.PutStrStyled(0, y+i, line, style)
		if tone := format.StateTone(displayState(r.State())); v.opts.Color && stateAt >= 0 && tone != format.Plain {
			s.PutStrStyled(stateAt, y+i, stateText(r), toneStyles[tone])
		}
	}
	bottom := v.help
	if v.editing {
		bottom = "filter: " + string(v.edit) + "▏ (Enter apply, Esc cancel)"
		if v.editErr != "" {
			bottom = "filter: " + string(v.edit) + "▏ " + v.editErr
		}
	}
	s.PutStrStyled(0, height-1, bottom, styleDim)
	s.Show()
}

func pad(s string, width int) string {
	for len(s) < width {
		s += " "
	}
	return s
}
