package main

import (
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/tcpstat/tcpstat/internal/tracer"
	"github.com/tcpstat/tcpstat/internal/watch"
)

func watchCommand() *cli.Command {
	return &cli.Command{
		Name:      "watch",
		Usage:     "print every TCP state transition as it happens",
		ArgsUsage: "[FILTER]",
		Description: "One line per transition: time, owning process, local → remote, OLD → NEW and the time\n" +
			"spent in the old state. TIME_WAIT is marked * (inferred): the kernel hands the socket to a\n" +
			"timewait mini-socket without reporting it. Lost events are reported as they happen and at exit.\n" +
			"FILTER is ss's filter language with pid, comm, uid, netns, cgroup, container, pod,\n" +
			"pod_namespace, reason and family (docs/filter.md), e.g. 'dport = :443 and not comm curl'.",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per line (see docs/watch.md)"},
			&cli.BoolFlag{Name: "wide", Aliases: []string{"W"}, Usage: "print every field whole, even when lines wrap"},
			colorFlag(),
			&cli.BoolFlag{Name: "4", Usage: "IPv4 only (filter: family inet)"},
			&cli.BoolFlag{Name: "6", Usage: "IPv6 only (filter: family inet6)"},
			&cli.UintFlag{Name: "port", Aliases: []string{"p"}, Usage: "only sockets with this local or remote `PORT` (filter: sport = :PORT or dport = :PORT)"},
			&cli.IntFlag{Name: "ring-size", Value: tracer.DefaultRingBufferSize, Usage: "ring buffer `BYTES` (a power of two): each CPU's ring is at most this, all of them at most twice this (each at least 1 MiB)"},
			&cli.StringFlag{Name: "ready-file", Hidden: true, Usage: "write this file once the programs are attached"},
			cpuProfileFlag(),
		}, containerFlags()...),
		Action: profiled(runWatch),
	}
}

// runWatch turns the flags into watch.Options.
func runWatch(c *cli.Context) error {
	opts := watch.Options{
		Tracer:    tracer.Options{RingBufferSize: c.Int("ring-size")},
		JSON:      c.Bool("json"),
		ReadyFile: c.String("ready-file"),
		Stdout:    c.App.Writer,
		Stderr:    c.App.ErrWriter,
	}
	// One resolver names containers and pods for the filter and the JSON.
	ids, err := containerResolver(c)
	if err != nil {
		return err
	}
	f, err := viewFilter(c, ids)
	if err != nil {
		return err
	}
	opts.Filter = f
	opts.Tracer.Filter = kernelFilter(f, c.App.ErrWriter)
	color, err := useColor(c, c.App.Writer)
	if err != nil {
		return err
	}
	// Only a terminal gets sized lines: what reads a pipe keeps the
	// stable layout.
	opts.Width, opts.Wide, opts.Color = termWidth(c.App.Writer), c.Bool("wide"), color
	if opts.Width > 0 {
		opts.Resized = resizes(c.Context, c.App.Writer)
	}
	if opts.JSON {
		// Container and pod of the owner, from its cgroup (docs/watch.md).
		opts.Enrich = func(b []byte, ev *tracer.Event) []byte {
			if !ev.OwnerKnown {
				return b
			}
			return ids.Owner(ev.Owner.Cgroup, ev.Owner.PID).AppendJSON(b)
		}
	}
	// A closed stdout (`watch | head`) is an end like a signal, with the
	// summary: a write to it fails with EPIPE instead of killing tcpstat.
	signal.Ignore(syscall.SIGPIPE)
	return watch.Run(c.Context, opts)
}
