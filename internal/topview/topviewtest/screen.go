// Package topviewtest helps tests that drive top's screens on tcell's
// simulated terminal.
package topviewtest

import (
	"strings"

	"github.com/gdamore/tcell/v2"
)

// ScreenText is what the simulated terminal shows, a line per row.
func ScreenText(screen tcell.SimulationScreen) string {
	cells, width, height := screen.GetContents()
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
