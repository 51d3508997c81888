package topview

import (
	"context"
	"fmt"
	"time"

	"github.com/gdamore/tcell/v2"
)

// Player is a recording being replayed (replay.Player).
type Player interface {
	source
	Time() time.Time
	Forward(n int) (bool, error)
	ForwardTime(d time.Duration) (bool, error)
	Back(n int) error
	Jump(t time.Time) error
}

const replayHelp = "← → event  [ ] second  { } minute  space play/pause  + - speed  g go to time  q quit  / filter  t s p c l r sort"

// playEvery is how often a playing replay moves on.
const playEvery = 100 * time.Millisecond

// Replay shows a recording in the table view with time travel: step by
// event or by second, forward and back, jump to a time, play at a speed,
// pause. parseTime reads the time typed after g.
func Replay(ctx context.Context, screen tcell.Screen, p Player, opts Options, parseTime func(string) (time.Time, error)) error {
	r := &replayer{viewer: viewer{screen: screen, live: p, opts: opts, clock: p.Time}, p: p, speed: 1, parseTime: parseTime}
	tick := time.NewTicker(playEvery)
	defer tick.Stop()
	events, quit := make(chan tcell.Event, 16), make(chan struct{})
	go screen.ChannelEvents(events, quit)
	defer close(quit)
	r.refresh()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if !r.playing {
				continue
			}
			r.move(p.ForwardTime(time.Duration(r.speed * float64(playEvery))))
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			switch ev := ev.(type) {
			case *tcell.EventResize:
				screen.Sync()
			case *tcell.EventKey:
				r.msg = ""
				if r.key(ev) {
					return nil
				}
			}
		}
		r.refresh()
	}
}

// replayer is the table view of a recording, with its time controls.
type replayer struct {
	viewer
	p         Player
	parseTime func(string) (time.Time, error)
	playing   bool
	speed     float64
	jumping   bool   // the time to go to is being typed
	typed     []rune // that time
	msg       string // the last error, or the end of the recording
}

func (r *replayer) refresh() {
	state := "paused"
	if r.playing {
		state = "playing"
	}
	r.help = fmt.Sprintf("REPLAY %s  %s ×%g  %s", r.p.Time().Format("2006-01-02 15:04:05.000000"), state, r.speed, replayHelp)
	if r.jumping {
		r.help = "go to time: " + string(r.typed) + "▏ (Enter go, Esc cancel)"
	}
	if r.msg != "" {
		r.help = r.msg + "  " + r.help
	}
	r.viewer.refresh()
	r.draw()
}

// do shows err, if any, in the status line.
func (r *replayer) do(err error) {
	if err != nil {
		r.msg = err.Error()
	}
}

// move is do for a step forward, which stops playing at the end.
func (r *replayer) move(more bool, err error) {
	r.do(err)
	if !more && err == nil {
		r.playing, r.msg = false, "end of the recording"
	}
}

// key handles a key press; it reports whether the user quit.
func (r *replayer) key(ev *tcell.EventKey) bool {
	if r.jumping {
		r.jumpKey(ev)
		return false
	}
	switch {
	case ev.Key() == tcell.KeyRight:
		r.move(r.p.Forward(1))
	case ev.Key() == tcell.KeyLeft:
		r.do(r.p.Back(1))
	case ev.Key() == tcell.KeyRune && !r.editing:
		switch ev.Rune() {
		case ']':
			r.move(r.p.ForwardTime(time.Second))
		case '[':
			r.do(r.p.Jump(r.p.Time().Add(-time.Second)))
		case '}':
			r.move(r.p.ForwardTime(time.Minute))
		case '{':
			r.do(r.p.Jump(r.p.Time().Add(-time.Minute)))
		case ' ':
			r.playing = !r.playing
		case '+':
			r.speed = min(r.speed*2, 1024)
		case '-':
			r.speed = max(r.speed/2, 1.0/64)
		case 'g':
			r.jumping, r.typed = true, []rune(r.p.Time().Format("15:04:05"))
		default:
			return r.viewer.key(ev)
		}
	default:
		return r.viewer.key(ev)
	}
	return false
}

// jumpKey edits the time to go to.
func (r *replayer) jumpKey(ev *tcell.EventKey) {
	switch ev.Key() {
	case tcell.KeyEnter:
		t, err := r.parseTime(string(r.typed))
		if err == nil {
			err = r.p.Jump(t)
		}
		r.do(err)
		r.jumping = false
	case tcell.KeyEscape:
		r.jumping = false
	case tcell.KeyBackspace, tcell.KeyBackspace2:
		if len(r.typed) > 0 {
			r.typed = r.typed[:len(r.typed)-1]
		}
	case tcell.KeyRune:
		r.typed = append(r.typed, ev.Rune())
	}
}
