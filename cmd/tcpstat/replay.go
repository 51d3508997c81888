package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tcpstat/tcpstat/internal/filter"
	"github.com/tcpstat/tcpstat/internal/format"
	"github.com/tcpstat/tcpstat/internal/record"
	"github.com/tcpstat/tcpstat/internal/replay"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/topview"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

func replayCommand() *cli.Command {
	return &cli.Command{
		Name:      "replay",
		Usage:     "read a recording: its events as watch prints them, or the table as of an instant",
		ArgsUsage: "PATH... [-- FILTER]",
		Description: "PATH is a recording file or a directory of rotated files; files are read in time order.\n" +
			"Events print as watch prints them (--json: the same objects, plus gap, stale and resync\n" +
			"markers, docs/recording.md). --at prints the table as of that instant as top -b does.\n" +
			"Times: RFC 3339, a time of day (03:12:07, local, on the recording's first day) or a\n" +
			"duration before now (-15m). FILTER follows the paths after --, as in watch.",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per line (--format json)"},
			&cli.StringFlag{Name: "format", Value: "text", Usage: "`FORMAT`: text, json, or parquet (with --output; schema in docs/recording.md)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write to `FILE` instead of stdout"},
			&cli.StringFlag{Name: "from", Usage: "start at `TIME`"},
			&cli.StringFlag{Name: "to", Usage: "stop at `TIME`"},
			&cli.StringFlag{Name: "at", Usage: "print the table as of `TIME`"},
			&cli.StringFlag{Name: "sort", Value: "age", Usage: "with --at, sort by `KEY`: age, state, pid, comm, local, remote"},
			&cli.BoolFlag{Name: "4", Usage: "IPv4 only"},
			&cli.BoolFlag{Name: "6", Usage: "IPv6 only"},
			&cli.UintFlag{Name: "port", Aliases: []string{"p"}, Usage: "only sockets with this local or remote `PORT`"},
			cpuProfileFlag(),
		}, containerFlags()...),
		Action: profiled(runReplay),
	}
}

// splitArgs separates the paths from the filter after "--".
func splitArgs(args []string) (paths, filterWords []string) {
	for i, a := range args {
		if a == "--" {
			return args[:i], args[i+1:]
		}
	}
	return args, nil
}

func runReplay(c *cli.Context) error {
	paths, words := splitArgs(c.Args().Slice())
	if len(paths) == 0 {
		return cli.Exit("replay: needs a recording, e.g. tcpstat replay /var/lib/tcpstat/", 2)
	}
	// Containers and pods are named as this host knows them now.
	ids, err := containerResolver(c)
	if err != nil {
		return err
	}
	f, err := parseFilter(words, ids)
	if err != nil {
		return err
	}
	f, err = shorthandFilter(c, f)
	if err != nil {
		return err
	}
	files, skipped, err := replay.Files(paths)
	for _, s := range skipped {
		fmt.Fprintf(c.App.ErrWriter, "tcpstat: %s\n", s)
	}
	if err != nil {
		return err
	}
	start, now := files[0].Header.Start, time.Now()
	parse := func(name string) (time.Time, bool, error) {
		if !c.IsSet(name) {
			return time.Time{}, false, nil
		}
		t, err := replay.ParseTime(c.String(name), start, now)
		return t, err == nil, err
	}
	form, dst, closeOutput, err := replayOutput(c)
	if err != nil {
		return err
	}
	defer closeOutput()
	out := bufio.NewWriterSize(dst, 256<<10)
	at, hasAt, err := parse("at")
	if err != nil {
		return err
	}
	if hasAt {
		err = replayAt(c, files, at, f, form, out)
	} else {
		s := &streamer{json: form == "json", out: out, stderr: c.App.ErrWriter}
		if s.from, s.hasFrom, err = parse("from"); err != nil {
			return err
		}
		if s.to, s.hasTo, err = parse("to"); err != nil {
			return err
		}
		err = s.stream(files, f, form == "parquet")
	}
	if err != nil {
		return err
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// replayOutput is where replay writes, in which --format: standard
// output, or the --output file (which parquet needs).
func replayOutput(c *cli.Context) (form string, dst io.Writer, closeOutput func(), err error) {
	form = c.String("format")
	if c.Bool("json") {
		form = "json"
	}
	if form != "text" && form != "json" && form != "parquet" {
		return "", nil, nil, fmt.Errorf("--format %q: want text, json or parquet", form)
	}
	name := c.String("output")
	if name == "" {
		if form == "parquet" {
			return "", nil, nil, errors.New("--format parquet needs --output FILE")
		}
		return form, c.App.Writer, func() {}, nil
	}
	file, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", nil, nil, fmt.Errorf("create output: %w", err)
	}
	return form, file, func() { file.Close() }, nil
}

// shorthandFilter adds -4, -6 and --port to f, as viewFilter does.
func shorthandFilter(c *cli.Context, f *filter.Filter) (*filter.Filter, error) {
	var expr string
	switch {
	case c.Bool("4") && c.Bool("6"):
		return nil, errors.New("-4 and -6 exclude each other; give neither for both families")
	case c.Bool("4"):
		expr = "family inet"
	case c.Bool("6"):
		expr = "family inet6"
	}
	if c.IsSet("port") {
		p := c.Uint("port")
		if p == 0 || p > 65535 {
			return nil, fmt.Errorf("--port %d: want 1-65535", p)
		}
		if expr != "" {
			expr += " and "
		}
		expr += fmt.Sprintf("( sport = :%d or dport = :%d )", p, p)
	}
	if expr == "" {
		return f, nil
	}
	s, err := filter.Parse(expr)
	if err != nil {
		return nil, err
	}
	return filter.And(s, f), nil
}

// streamer prints a recording's events as watch does.
type streamer struct {
	json           bool
	out            *bufio.Writer
	stderr         io.Writer
	layout         format.Layout
	gate           *filter.Gate
	parquet        *replay.EventWriter
	from, to       time.Time
	hasFrom, hasTo bool
	file           *replay.File
	offset         int64
	last           time.Time
	buf            []byte
}

// stream prints the recording's events, and its losses, gaps and torn
// tails, between --from and --to, that f selects.
func (s *streamer) stream(files []replay.File, f *filter.Filter, parquet bool) error {
	if parquet {
		s.parquet = replay.NewEventWriter(s.out)
	}
	if !f.Empty() {
		s.gate = filter.NewGate(f)
	}
	if !parquet && !s.json {
		s.out.WriteString(s.layout.Header())
	}
	if err := replay.Stream(files, s.record); err != nil {
		return err
	}
	if s.gate != nil {
		if err := s.gate.Flush(s.emit); err != nil {
			return err
		}
		if note := s.gate.ForcedNote(); note != "" {
			fmt.Fprintf(s.stderr, "tcpstat: warning: %s\n", note)
		}
	}
	if s.parquet != nil {
		return s.parquet.Close()
	}
	return nil
}

// in reports a time between --from and --to.
func (s *streamer) in(t time.Time) bool {
	return (!s.hasFrom || !t.Before(s.from)) && (!s.hasTo || !t.After(s.to))
}

// record prints one record of the recording.
func (s *streamer) record(file *replay.File, rec *record.Record, offset int64) error {
	s.offset, s.file = offset, file
	if rec.Type == record.TypeCorrupt {
		fmt.Fprintf(s.stderr, "tcpstat: %s\n", replay.TornText(rec.Corrupt))
	}
	if s.parquet != nil && rec.Type != record.TypeEvent {
		return nil
	}
	at := record.Wall(rec.Time, offset)
	if rec.Type != record.TypeCorrupt {
		s.last = at
	}
	switch rec.Type {
	case record.TypeEvent:
		if !s.in(at) {
			return nil
		}
		if s.gate != nil {
			return s.gate.Push(&rec.Event, s.emit)
		}
		return s.emit(&rec.Event)
	case record.TypeLoss:
		if s.in(at) {
			if s.json {
				s.buf = format.AppendLostJSON(s.buf[:0], at, rec.Loss.Reason, rec.Loss.Count, rec.Loss.Total)
			} else {
				s.buf = s.layout.AppendLost(s.buf[:0], at, rec.Loss.Reason, rec.Loss.Count, rec.Loss.Total)
			}
			s.out.Write(s.buf)
		}
	case record.TypeStale, record.TypeResync:
		if s.in(at) && s.json {
			s.out.Write(replay.AppendStaleJSON(s.buf[:0], rec.Type, at, rec.Checkpoint.Lost))
		}
	case record.TypeGap:
		if s.in(at) {
			if s.json {
				s.out.Write(replay.AppendGapJSON(s.buf[:0], rec.Gap, offset))
			} else {
				s.out.Write(replay.AppendGapLine(s.buf[:0], at, fmt.Sprintf("%d events not written (%s)", rec.Gap.Events, rec.Gap.Reason)))
			}
		}
	case record.TypeCorrupt:
		if s.in(s.last) {
			if s.json {
				s.out.Write(replay.AppendCorruptJSON(s.buf[:0], rec.Corrupt, s.last))
			} else {
				s.out.Write(replay.AppendGapLine(s.buf[:0], s.last, replay.TornText(rec.Corrupt)))
			}
		}
	}
	return nil
}

func (s *streamer) emit(ev *tracer.Event) error {
	at := record.Wall(ev.Time, s.offset)
	if s.parquet != nil {
		return s.parquet.Write(s.file, ev, at)
	}
	b := s.out.AvailableBuffer()
	if s.json {
		b = format.AppendJSON(b, ev, at)
	} else {
		b = s.layout.AppendLine(b, ev, at)
	}
	_, err := s.out.Write(b)
	return err
}

// replayAt prints the table as of at, as top -b prints a refresh.
func replayAt(c *cli.Context, files []replay.File, at time.Time, f *filter.Filter, form string, out io.Writer) error {
	key, err := topview.ParseKey(c.String("sort"))
	if err != nil {
		return err
	}
	st, err := replay.TableAt(files, at)
	if err != nil {
		return err
	}
	for _, p := range st.Problems {
		fmt.Fprintf(c.App.ErrWriter, "tcpstat: %s\n", replay.TornText(p))
	}
	if form == "parquet" {
		return replay.WriteTable(out, st, func(r *table.Row) bool {
			s := filter.FromRow(r)
			return f.Empty() || f.Match(&s)
		})
	}
	opts := topview.Options{Sort: key, Filter: f}
	var frame topview.Frame
	frame.Capture(st.Table, st.Status)
	frame.Arrange(opts)
	if form == "json" {
		return frame.WriteJSON(out, st.Wall)
	}
	return frame.WriteText(out, st.Wall, 0, opts)
}
