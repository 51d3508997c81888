package replay

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gdamore/tcell/v2"

	"github.com/tcpstat/tcpstat/internal/record"
	"github.com/tcpstat/tcpstat/internal/record/recordtest"
	"github.com/tcpstat/tcpstat/internal/topview"
	"github.com/tcpstat/tcpstat/internal/topview/topviewtest"
)

// TestReplayScreen drives top --replay's time controls on tcell's
// simulated terminal, over a recording half an hour long: each key moves
// the player as the same call on a second player does, and the status line
// shows where it is; play runs at the speed set and pause stops it.
func TestReplayScreen(t *testing.T) {
	evs := recordtest.Churn(1000, 5)
	// About 0.2 s between events: seconds and minutes hold a few events
	// and a few hundred.
	for i := len(evs) - 1; i >= 0; i-- {
		evs[i].Time = evs[0].Time + (evs[i].Time-evs[0].Time)*100_000
	}
	files := writeRecording(t, evs)
	p, err := NewPlayer(files)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ref, err := NewPlayer(files)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	var screen *topviewtest.Screen
	parseTime := func(s string) (time.Time, error) { return ParseTime(s, files[0].Header.Start, time.Now()) }
	done := make(chan error, 1)
	// start runs the view until q, on a screen of its own: the view's event
	// reader may outlive it by a key, which a view after it on the same
	// screen would never see. Keys are runes, or arrows as ← →, Enter as
	// \n, Backspace as \b.
	start := func() {
		screen = topviewtest.NewScreen(t, 160, 20)
		go func() { done <- topview.Replay(context.Background(), screen, p, topview.Options{}, parseTime) }()
	}
	press := func(keys string) {
		for _, k := range keys {
			switch k {
			case '←':
				screen.InjectKey(tcell.KeyLeft, 0, tcell.ModNone)
			case '→':
				screen.InjectKey(tcell.KeyRight, 0, tcell.ModNone)
			case '\n':
				screen.InjectKey(tcell.KeyEnter, 0, tcell.ModNone)
			case '\b':
				screen.InjectKey(tcell.KeyBackspace, 0, tcell.ModNone)
			default:
				screen.InjectKey(tcell.KeyRune, k, tcell.ModNone)
			}
		}
	}
	waitScreen := func(what string, ok func(string) bool) string {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			text := screen.Text()
			if ok(text) {
				return text
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s on screen:\n%s", what, text)
			}
		}
	}
	stop := func() {
		t.Helper()
		press("q")
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		screen.Fini()
	}
	stamp := func(pl *Player) string { return "REPLAY " + pl.Time().Format("2006-01-02 15:04:05.000000") }
	jumpTo := evs[7000].Time
	for _, step := range []struct {
		keys string
		ref  func() error
	}{
		{"→→→", func() error { _, err := ref.Forward(3); return err }},
		{"←", func() error { return ref.Back(1) }},
		{"]", func() error { _, err := ref.ForwardTime(time.Second); return err }},
		{"}", func() error { _, err := ref.ForwardTime(time.Minute); return err }},
		{"[", func() error { return ref.Jump(ref.Time().Add(-time.Second)) }},
		{"{", func() error { return ref.Jump(ref.Time().Add(-time.Minute)) }},
		{"g" + strings.Repeat("\b", 8) + wallOf(files, jumpTo) + "\n", func() error {
			at, err := parseTime(wallOf(files, jumpTo))
			if err == nil {
				err = ref.Jump(at)
			}
			return err
		}},
	} {
		if err := step.ref(); err != nil {
			t.Fatal(err)
		}
		start()
		press(step.keys)
		want := stamp(ref)
		waitScreen(want, func(s string) bool { return strings.Contains(s, want) })
		stop()
		if p.Seq() != ref.Seq() {
			t.Fatalf("after %q: at event %d, want %d", step.keys, p.Seq(), ref.Seq())
		}
	}
	if p.Seq() < 7000 || p.Seq() > 7001 {
		t.Fatalf("go to the time of event 7000: at event %d", p.Seq())
	}

	// Play at four times the speed, then pause.
	before := p.Time()
	start()
	press("++ ")
	waitScreen("playing ×4, moving", func(s string) bool {
		return strings.Contains(s, "playing ×4") && !strings.Contains(s, "REPLAY "+before.Format("2006-01-02 15:04:05.000000"))
	})
	press(" ")
	waitScreen("paused ×4", func(s string) bool { return strings.Contains(s, "paused ×4") })
	stop()
	if !p.Time().After(before) {
		t.Fatalf("playing did not move: %v, then %v", before, p.Time())
	}

	// Past the end, the status line says so.
	start()
	press(strings.Repeat("}", 40))
	waitScreen("the end", func(s string) bool { return strings.Contains(s, "end of the recording") })
	stop()
	if p.Seq() != uint64(len(evs)) {
		t.Fatalf("at the end: event %d of %d", p.Seq(), len(evs))
	}
}

// wallOf is the RFC 3339 wall time of boot time bt in the recording.
func wallOf(files []File, bt uint64) string {
	return record.Wall(bt, files[0].Header.ClockOffset).Format(time.RFC3339Nano)
}
