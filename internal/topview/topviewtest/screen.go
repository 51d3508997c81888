// Package topviewtest helps tests that drive top's screens on tcell's
// simulated terminal.
package topviewtest

import (
	"strings"
	"sync"
	"testing"

	"github.com/gdamore/tcell/v2"
)

// Screen is tcell's simulated terminal, readable while a view draws on it.
// GetContents hands out the very cells Show and Sync write, so a test that
// reads them unguarded can see a torn cell; here the three take one lock.
type Screen struct {
	tcell.SimulationScreen
	mu sync.Mutex
}

// NewScreen is an initialised simulated terminal of width × height; the
// caller calls Fini.
func NewScreen(t testing.TB, width, height int) *Screen {
	t.Helper()
	s := &Screen{SimulationScreen: tcell.NewSimulationScreen("UTF-8")}
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	s.SetSize(width, height)
	return s
}

func (s *Screen) Show() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.SimulationScreen.Show()
}

func (s *Screen) Sync() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.SimulationScreen.Sync()
}

// Text is what the terminal shows, a line per row.
func (s *Screen) Text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	cells, width, height := s.GetContents()
	var lines []string
	for y := range height {
		var b strings.Builder
		for x := range width {
			c := cells[y*width+x]
			if len(c.Runes) > 0 {
				b.WriteRune(c.Runes[0])
			}
		}
		lines = append(lines, strings.TrimRight(b.String(), " "))
	}
	return strings.Join(lines, "\n")
}
