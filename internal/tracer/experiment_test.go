package tracer

import (
	"errors"
	"os"
	"testing"
	"time"
)

// Every variant of the kernel program the benchmark measures loads,
// attaches and does what it says for three connections (one reset): the
// benchmark's figures are only worth something if each variant is the
// program it names.
func TestExperiments(t *testing.T) {
	requireRoot(t)
	const conns = 3
	const whole = conns*11 - (conns+2)/3*4 + 2 // as TestCorruptSamplesAreCountedAndSkipped counts
	for i, tc := range []struct {
		name string
		exp  Experiment
		want int                // events, -1: some
		bad  func(Event) string // what an event must not have
	}{
		{"state in map", Experiment{StateInMap: true}, whole, nil},
		{"state in storage", Experiment{StateInStorage: true}, whole, nil},
		{"one copy", Experiment{OneCopy: true}, whole, nil},
		{"no accept", Experiment{NoAccept: true}, whole - conns, func(ev Event) string {
			return cond(ev.Kind == Accept, "an accept event")
		}},
		{"no task comm", Experiment{NoTaskComm: true}, whole, func(ev Event) string {
			return cond(ev.Kind == Transition && ev.Task.Comm != "", "a task comm")
		}},
		{"no state", Experiment{NoState: true}, -1, nil}, // births are deferred in the state
		{"query wakeup", Experiment{QueryWakeup: true}, whole, nil},
		{"no owner", Experiment{NoOwner: true}, whole, func(ev Event) string {
			return cond(ev.OwnerKnown, "an owner")
		}},
		{"no events", Experiment{NoEvents: true}, 0, nil},
		{"staged", Experiment{Staged: true}, 0, nil},
		{"one ring", Experiment{OneRing: true}, whole, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := 29191 + i
			tracer := newTracer(t, Options{Port: uint16(port), Experiment: tc.exp})
			churnListener(t, port, conns)

			// Until the count is reached, and a moment more for any beyond it.
			var events []Event
			wait := 5 * time.Second
			if tc.want <= 0 {
				wait = 300 * time.Millisecond
			}
			for deadline := time.Now().Add(wait); time.Now().Before(deadline); {
				tracer.SetDeadline(time.Now().Add(100 * time.Millisecond))
				var ev Event
				switch err := tracer.Read(&ev); {
				case err == nil:
					events = append(events, ev)
					if len(events) == tc.want {
						deadline = time.Now().Add(100 * time.Millisecond)
					}
				case !errors.Is(err, os.ErrDeadlineExceeded):
					t.Fatalf("Read: %v", err)
				}
			}
			if tc.want >= 0 && len(events) != tc.want || tc.want < 0 && len(events) == 0 {
				t.Errorf("%d events, want %d:\n%s", len(events), tc.want, dump(events))
			}
			if tc.bad == nil {
				return
			}
			for _, ev := range events {
				if what := tc.bad(ev); what != "" {
					t.Errorf("%s: %+v", what, ev)
				}
			}
		})
	}
}

func cond(b bool, what string) string {
	if b {
		return what
	}
	return ""
}
