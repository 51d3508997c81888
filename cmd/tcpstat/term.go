package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// colorFlag is --color, shared by the views that colour.
func colorFlag() cli.Flag {
	return &cli.StringFlag{Name: "color", Value: "auto", Usage: "colour states and close reasons: `WHEN` is auto (on a terminal, unless NO_COLOR is set), always or never"}
}

// useColor decides --color for output to out.
func useColor(c *cli.Context, out io.Writer) (bool, error) {
	switch when := c.String("color"); when {
	case "always":
		return true, nil
	case "never":
		return false, nil
	case "auto":
		// https://no-color.org: set and not empty turns colour off.
		return os.Getenv("NO_COLOR") == "" && termWidth(out) > 0, nil
	default:
		return false, fmt.Errorf("--color %q: want auto, always or never", when)
	}
}

// termWidth is out's width in columns when it is a terminal, else 0.
func termWidth(out io.Writer) int {
	f, ok := out.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil || width <= 0 {
		return 0
	}
	return width
}

// resizes delivers out's width after each SIGWINCH until ctx ends; the
// latest width replaces one not yet taken.
func resizes(ctx context.Context, out io.Writer) <-chan int {
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	widths := make(chan int, 1)
	go func() {
		defer signal.Stop(winch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-winch:
				select {
				case <-widths:
				default:
				}
				widths <- termWidth(out)
			}
		}
	}()
	return widths
}
