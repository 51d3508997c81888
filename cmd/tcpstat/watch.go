package main

import (
	"errors"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/tcpstat/tcpstat/internal/tracer"
	"github.com/tcpstat/tcpstat/internal/watch"
)

func watchCommand() *cli.Command {
	return &cli.Command{
		Name:  "watch",
		Usage: "print every TCP state transition as it happens",
		Description: "One line per transition: time, owning process, local → remote, OLD → NEW and the time\n" +
			"spent in the old state. TIME_WAIT is marked * (inferred): the kernel hands the socket to a\n" +
			"timewait mini-socket without reporting it. Lost events are reported as they happen and at exit.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per line (see docs/watch.md)"},
			&cli.BoolFlag{Name: "wide", Aliases: []string{"W"}, Usage: "print every field whole, even when lines wrap"},
			colorFlag(),
			&cli.BoolFlag{Name: "4", Usage: "IPv4 only"},
			&cli.BoolFlag{Name: "6", Usage: "IPv6 only"},
			&cli.UintFlag{Name: "port", Aliases: []string{"p"}, Usage: "only sockets with this local or remote `PORT`"},
			&cli.IntFlag{Name: "ring-size", Value: tracer.DefaultRingBufferSize, Usage: "ring buffer `BYTES` (a power of two)"},
			&cli.StringFlag{Name: "ready-file", Hidden: true, Usage: "write this file once the programs are attached"},
		},
		Action: runWatch,
	}
}

// runWatch turns the flags into watch.Options.
func runWatch(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("watch takes no arguments, got %q", c.Args().First())
	}
	opts := watch.Options{
		Tracer:    tracer.Options{RingBufferSize: c.Int("ring-size")},
		JSON:      c.Bool("json"),
		ReadyFile: c.String("ready-file"),
		Stdout:    c.App.Writer,
		Stderr:    c.App.ErrWriter,
	}
	color, err := useColor(c, c.App.Writer)
	if err != nil {
		return err
	}
	// Only a terminal gets sized lines: what reads a pipe keeps the
	// stable layout.
	opts.Width, opts.Wide, opts.Color = termWidth(c.App.Writer), c.Bool("wide"), color
	switch {
	case c.Bool("4") && c.Bool("6"):
		return errors.New("-4 and -6 exclude each other; give neither for both families")
	case c.Bool("4"):
		opts.Tracer.Family = 4
	case c.Bool("6"):
		opts.Tracer.Family = 6
	}
	p := c.Uint("port")
	if p > 65535 {
		return fmt.Errorf("--port %d: want 1-65535", p)
	}
	opts.Tracer.Port = uint16(p)
	// A closed stdout (`watch | head`) is an end like a signal, with the
	// summary: a write to it fails with EPIPE instead of killing tcpstat.
	signal.Ignore(syscall.SIGPIPE)
	return watch.Run(c.Context, opts)
}
