package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/gdamore/tcell/v2"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/tcpstat/tcpstat/internal/livetable"
	"github.com/tcpstat/tcpstat/internal/replay"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/topview"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

func topCommand() *cli.Command {
	return &cli.Command{
		Name:  "top",
		Usage: "the live connection table, refreshed like top",
		Description: "Shows every TCP socket with its owner, addresses, state and time in state, kept\n" +
			"exact by the tracer and confirmed by periodic sock_diag dumps. Keys: q quit, / filter,\n" +
			"t s p c l r sort by age, state, pid, comm, local, remote; R reverses. A '*' after a\n" +
			"state marks an inferred timewait hand-off; a '>' before a time, a state entered before\n" +
			"tcpstat saw the socket; a command in parentheses, the former owner of a socket no\n" +
			"process holds any more (TIME_WAIT, or orphaned by close while its connection ends).\n" +
			"POD (namespace/name, or a container's short id outside Kubernetes) appears when an owner\n" +
			"runs in a container, NETNS when the table spans more than one network namespace.\n" +
			"FILTER is the language of docs/filter.md, as in watch; / types one.",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "batch", Aliases: []string{"b"}, Usage: "print the table to stdout instead of drawing a screen"},
			netnsFlag(),
			&cli.IntFlag{Name: "iterations", Aliases: []string{"n"}, Usage: "stop after `COUNT` refreshes (0: until interrupted)"},
			&cli.Float64Flag{Name: "delay", Aliases: []string{"d"}, Value: 2, Usage: "`SECONDS` between refreshes"},
			&cli.BoolFlag{Name: "json", Usage: "with -b, one JSON object per refresh"},
			&cli.StringFlag{Name: "sort", Value: "age", Usage: "sort by `KEY`: age, state, pid, comm, local, remote"},
			&cli.BoolFlag{Name: "reverse", Usage: "reverse the sort"},
			&cli.StringFlag{Name: "filter", Usage: "show only the rows `FILTER` selects (as the FILTER argument)"},
			&cli.StringFlag{Name: "replay", Usage: "show the recording at `PATH` (a file or a directory) with time travel instead of the live table"},
			&cli.BoolFlag{Name: "poll", Usage: "do not trace: keep the table from a sock_diag dump at each refresh"},
			colorFlag(),
			cpuProfileFlag(),
		}, containerFlags()...),
		ArgsUsage: "[FILTER]",
		Action:    profiled(runTop),
	}
}

func runTop(c *cli.Context) error {
	key, err := topview.ParseKey(c.String("sort"))
	if err != nil {
		return err
	}
	words := c.Args().Slice()
	if c.IsSet("filter") {
		words = append([]string{c.String("filter")}, words...)
	}
	// One resolver names containers and pods for the filter and the POD column.
	ids, err := containerResolver(c)
	if err != nil {
		return err
	}
	f, err := parseFilter(words, ids)
	if err != nil {
		return err
	}
	color, err := useColor(c, c.App.Writer)
	if err != nil {
		return err
	}
	opts := topview.Options{Sort: key, Reverse: c.Bool("reverse"), Filter: f, Color: color, Containers: ids}
	delay := time.Duration(c.Float64("delay") * float64(time.Second))
	if delay <= 0 {
		return fmt.Errorf("delay %v: want a positive number of seconds", c.Float64("delay"))
	}
	count := c.Int("iterations")
	if count < 0 {
		return fmt.Errorf("iterations %d: want 0 or more", count)
	}
	if c.Bool("json") && !c.Bool("batch") {
		return errors.New("--json needs -b (batch mode)")
	}
	if out, ok := c.App.Writer.(*os.File); !c.Bool("batch") && (!ok || !term.IsTerminal(int(out.Fd()))) {
		return errors.New("top draws on a terminal and stdout is not one: use -b for batch output")
	}
	if c.IsSet("replay") {
		if c.Bool("batch") {
			return errors.New("--replay draws on a terminal: for the table as of an instant in batch, use tcpstat replay --at TIME PATH")
		}
		return topReplay(c, opts)
	}

	scope, err := scopeOf(c)
	if err != nil {
		return err
	}
	cfg := livetable.Config{PollReason: "--poll"}
	scopedConfig(&cfg, scope, c.String("netns") != "")
	if !c.Bool("poll") {
		reserveRows(c)
		events, err := tracer.New(tracer.Options{})
		if err != nil {
			// Where tracing is impossible the table still works from dumps,
			// and says so in its header.
			cfg.PollReason = "no tracer: " + err.Error()
			cfg.Every = delay
		} else {
			defer events.Close()
			for _, w := range events.Warnings() {
				fmt.Fprintf(c.App.ErrWriter, "tcpstat: warning: %s\n", w)
			}
			cfg.Events = events
			cfg.DumpLoad = topDumpLoad
		}
	} else {
		cfg.Every = delay
	}
	live, err := livetable.Start(c.Context, cfg)
	if err != nil {
		return err
	}
	defer live.Close()

	if c.Bool("batch") {
		// A printed table must be whole: wait for the owners of older
		// sockets, which the screen fills in as they come.
		if err := live.WaitOwners(c.Context); err != nil {
			return nil
		}
		return topBatch(c, live, opts, delay, count)
	}
	screen, err := tcell.NewScreen()
	if err != nil {
		return fmt.Errorf("open the terminal: %w", err)
	}
	if err := screen.Init(); err != nil {
		return fmt.Errorf("open the terminal: %w", err)
	}
	defer screen.Fini()
	return topview.Interactive(c.Context, screen, live, opts, delay)
}

// topDumpLoad is the share of one CPU the periodic dumps of a traced table
// may take: every 2 s while a dump takes up to 100 ms, less often on
// larger hosts. At full churn and 230 000 sockets, dumps every
// 2 s took the CPU the event reader needed and events were lost. Timewait
// rows still go when their timer runs out; one the kernel ends early
// (reused) stays a few seconds longer.
const topDumpLoad = 0.05

// topBatch prints count refreshes (0: until interrupted), delay apart.
func topBatch(c *cli.Context, live *livetable.Table, opts topview.Options, delay time.Duration, count int) error {
	var (
		frame topview.Frame
		rate  topview.Rate
	)
	w := c.App.Writer
	for i := 0; count == 0 || i < count; i++ {
		if i > 0 {
			select {
			case <-c.Context.Done():
				return nil
			case <-time.After(delay):
			}
		}
		// The frame is sorted and written from the table's own rows
		// under its lock: copying 100 000 rows per refresh would double
		// the memory of the table. Events wait in the ring buffer
		// meanwhile; any it cannot hold are counted and resynced.
		var err error
		live.View(func(tb *table.Table, st livetable.Status) {
			frame.Bind(tb, st)
			defer frame.Unbind()
			if err = st.Err; err != nil {
				return
			}
			frame.Arrange(opts)
			wall := time.Now()
			perSec := rate.Update(wall, frame.Status.Events)
			if c.Bool("json") {
				err = frame.WriteJSON(w, wall)
			} else {
				err = frame.WriteText(w, wall, perSec, opts)
			}
			if err != nil {
				err = fmt.Errorf("write the table: %w", err)
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// topReplay shows a recording with time travel.
func topReplay(c *cli.Context, opts topview.Options) error {
	files, skipped, err := replay.Files([]string{c.String("replay")})
	for _, s := range skipped {
		fmt.Fprintf(c.App.ErrWriter, "tcpstat: %s\n", s)
	}
	if err != nil {
		return err
	}
	p, err := replay.NewPlayer(files)
	if err != nil {
		return err
	}
	defer p.Close()
	screen, err := tcell.NewScreen()
	if err != nil {
		return fmt.Errorf("open the terminal: %w", err)
	}
	if err := screen.Init(); err != nil {
		return fmt.Errorf("open the terminal: %w", err)
	}
	defer screen.Fini()
	start := files[0].Header.Start
	return topview.Replay(c.Context, screen, p, opts, func(s string) (time.Time, error) {
		return replay.ParseTime(s, start, time.Now())
	})
}
