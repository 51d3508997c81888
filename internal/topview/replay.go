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
	v := &viewer{screen: screen, live: p, opts: opts, clock: p.Time}
	var (
		playing bool
		speed   = 1.0
		jumping bool
		typed   []rune
		msg     string
	)
	status := func() {
		state := "paused"
		if playing {
			state = "playing"
		}
		v.help = fmt.Sprintf("REPLAY %s  %s ×%g  %s", p.Time().Format("2006-01-02 15:04:05.000000"), state, speed, replayHelp)
		if jumping {
			v.help = "go to time: " + string(typed) + "▏ (Enter go, Esc cancel)"
		}
		if msg != "" {
			v.help = msg + "  " + v.help
		}
	}
	do := func(err error) {
		if err != nil {
			msg = err.Error()
		}
	}
	move := func(more bool, err error) {
		do(err)
		if !more && err == nil {
			playing, msg = false, "end of the recording"
		}
	}
	tick := time.NewTicker(playEvery)
	defer tick.Stop()
	events, quit := make(chan tcell.Event, 16), make(chan struct{})
	go screen.ChannelEvents(events, quit)
	defer close(quit)
	refresh := func() {
		status()
		v.refresh()
		v.draw()
	}
	refresh()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if !playing {
				continue
			}
			move(p.ForwardTime(time.Duration(speed * float64(playEvery))))
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			switch ev := ev.(type) {
			case *tcell.EventResize:
				screen.Sync()
			case *tcell.EventKey:
				msg = ""
				if jumping {
					switch ev.Key() {
					case tcell.KeyEnter:
						t, err := parseTime(string(typed))
						if err == nil {
							err = p.Jump(t)
						}
						do(err)
						jumping = false
					case tcell.KeyEscape:
						jumping = false
					case tcell.KeyBackspace, tcell.KeyBackspace2:
						if len(typed) > 0 {
							typed = typed[:len(typed)-1]
						}
					case tcell.KeyRune:
						typed = append(typed, ev.Rune())
					}
					break
				}
				switch {
				case ev.Key() == tcell.KeyRight:
					move(p.Forward(1))
				case ev.Key() == tcell.KeyLeft:
					do(p.Back(1))
				case ev.Key() == tcell.KeyRune && !v.editing:
					switch ev.Rune() {
					case ']':
						move(p.ForwardTime(time.Second))
					case '[':
						do(p.Jump(p.Time().Add(-time.Second)))
					case '}':
						move(p.ForwardTime(time.Minute))
					case '{':
						do(p.Jump(p.Time().Add(-time.Minute)))
					case ' ':
						playing = !playing
					case '+':
						speed = min(speed*2, 1024)
					case '-':
						speed = max(speed/2, 1.0/64)
					case 'g':
						jumping, typed = true, []rune(p.Time().Format("15:04:05"))
					default:
						if v.key(ev) {
							return nil
						}
					}
				default:
					if v.key(ev) {
						return nil
					}
				}
			}
		}
		refresh()
	}
}
