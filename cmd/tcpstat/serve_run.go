//go:build !noserve

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"github.com/urfave/cli/v2"

	"github.com/tcpstat/tcpstat/internal/filter"
	"github.com/tcpstat/tcpstat/internal/livetable"
	"github.com/tcpstat/tcpstat/internal/metrics"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

func runServe(c *cli.Context) error {
	resolver, err := containerResolver(c)
	if err != nil {
		return err
	}
	keep, err := parseFilter(c.Args().Slice(), resolver)
	if err != nil {
		return err
	}
	by := metrics.By(c.String("metrics.by"))
	if by != metrics.ByNone && by != metrics.ByNetNS && by != metrics.ByPod {
		return fmt.Errorf("--metrics.by %q: want netns or pod", by)
	}
	if c.Int("metrics.max-series") < 1 || c.Int("metrics.max-ports") < 0 {
		return errors.New("--metrics.max-series must be at least 1 and --metrics.max-ports at least 0")
	}
	dumpCPU := c.Float64("table.dump-cpu")
	if !(dumpCPU >= 0 && dumpCPU <= 100) {
		return fmt.Errorf("--table.dump-cpu %v: want a percentage, 0 to 100", dumpCPU)
	}
	if f := c.String("web.config.file"); f != "" {
		if err := web.Validate(f); err != nil {
			return fmt.Errorf("--web.config.file %s: %w", f, err)
		}
	}
	// Listen before tracing: a port in use is reported at once.
	ln, err := net.Listen("tcp", c.String("web.listen-address"))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()

	scope, err := scopeOf(c)
	if err != nil {
		return err
	}
	// With --netns the table takes no other namespace's events
	// (Config.Keep), so the observer, fed by the table, sees none either.
	obs := metrics.NewObserver(metrics.ObserverOptions{MaxPorts: c.Int("metrics.max-ports")})
	sel := newServeSelection(keep, obs, c.App.ErrWriter)
	cfg := livetable.Config{OnEnd: sel.end, OnEvent: sel.event, OnReconcile: sel.reconciled, Counted: sel.row}
	scopedConfig(&cfg, scope, c.String("netns") != "")
	var stats func() (tracer.Stats, error)
	if c.Bool("poll") {
		cfg.PollReason = "--poll"
	} else {
		reserveRows(c)
		events, err := tracer.New(tracer.Options{Filter: kernelFilter(keep, c.App.ErrWriter)})
		if err != nil {
			return fmt.Errorf("%w (or serve --poll: connections by state only)", err)
		}
		defer events.Close()
		for _, w := range events.Warnings() {
			fmt.Fprintf(c.App.ErrWriter, "tcpstat: warning: %s\n", w)
		}
		cfg.Events, stats = events, events.Stats
		cfg.DumpLoad = dumpCPU / 100
	}
	tr, err := livetable.Start(c.Context, cfg)
	if err != nil {
		return err
	}
	defer tr.Close()

	tr.View(func(_ *table.Table, st livetable.Status) {
		if st.NetNSErr != nil {
			fmt.Fprintf(c.App.ErrWriter, "tcpstat: warning: %v\n", st.NetNSErr)
		}
	})
	col := metrics.NewCollector(metrics.Options{
		Table: tr, Observer: obs, Stats: stats, Match: sel.rows, FilterForced: func() (n uint64) {
			tr.View(func(*table.Table, livetable.Status) { n = sel.gate.Forced })
			return n
		},
		By: by, MaxSeries: c.Int("metrics.max-series"), Identity: resolver.Owner,
	})
	health := func() error {
		var err error
		tr.View(func(_ *table.Table, st livetable.Status) { err = st.Err })
		return err
	}
	return serveHTTP(c.Context, ln, metrics.Handler(metrics.Registry(col), health), c.String("web.config.file"), c.App.ErrWriter)
}

// serveSelection gives the metrics the sockets serve's filter selects:
// their events, all of a socket's or none (filter.Gate), and their rows.
// The live table calls it with its lock held, which guards the gate.
type serveSelection struct {
	all    bool // no filter: every socket
	gate   *filter.Gate
	obs    *metrics.Observer
	stderr io.Writer
	warned uint64 // the gate's Forced last warned of
	// The socket of the event being taken, and whether the gate passed
	// it: the table ends a row while taking its last event, and the row's
	// own owner by then (a process it was handed to) may judge otherwise.
	current uint64
	passed  bool
}

func newServeSelection(keep *filter.Filter, obs *metrics.Observer, stderr io.Writer) *serveSelection {
	return &serveSelection{all: keep.Empty(), gate: filter.NewGate(keep), obs: obs, stderr: stderr}
}

func (s *serveSelection) event(ev *tracer.Event) {
	s.current, s.passed = ev.Cookie, false
	s.gate.Push(ev, func(e *tracer.Event) error {
		s.passed = s.passed || e.Cookie == ev.Cookie
		s.obs.Event(e)
		return nil
	})
	if w := s.gate.ForcedWarning(&s.warned); w != "" {
		fmt.Fprintf(s.stderr, "tcpstat: warning: %s\n", w)
	}
}

func (s *serveSelection) row(r *table.Row) bool {
	if s.all {
		return true
	}
	sub := filter.FromRow(r)
	return s.gate.MatchRow(&sub, r.Cookie())
}

// rows judges the rows of one pass over tb, which also finds the rows of
// sockets whose events carry synthetic ids (filter.Gate.RowMatcher).
func (s *serveSelection) rows(tb *table.Table) func(*table.Row) bool {
	if s.all {
		return func(*table.Row) bool { return true }
	}
	match := s.gate.RowMatcher(tb.RowCookie)
	return func(r *table.Row) bool {
		sub := filter.FromRow(r)
		return match(&sub, r.Cookie())
	}
}

func (s *serveSelection) end(r *table.Row) {
	pass := s.all || r.Cookie() == s.current && s.passed || r.Cookie() != s.current && s.row(r)
	if pass {
		s.obs.End(r)
	}
}

// reconciled forgets the gate's identities of sockets gone without an
// ending event (lost, or left out by the kernel's part of the filter).
func (s *serveSelection) reconciled(tb *table.Table) { s.gate.Retain(tb.Holds) }

// serveHTTP serves h on ln, with TLS and basic auth from webConfig when
// given, until ctx ends.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, webConfig string, stderr io.Writer) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	flags := &web.FlagConfig{WebListenAddresses: &[]string{ln.Addr().String()}, WebSystemdSocket: new(bool), WebConfigFile: &webConfig}
	done := make(chan error, 1)
	go func() { done <- web.Serve(ln, srv, flags, logger) }()
	fmt.Fprintf(stderr, "tcpstat: serving /metrics and /healthz on %s\n", ln.Addr())
	select {
	case err := <-done:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(shut)
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
