package netstat

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// IsUsage reports whether err is a command-line mistake.
func IsUsage(err error) bool {
	var u *usageError
	return errors.As(err, &u)
}

// run is one `tcpstat list`: its configuration, where it writes, and what
// a repeat compares against.
type run struct {
	c     *Config
	out   *bufio.Writer
	warn  io.Writer
	names *names

	prevStats []Section   // -s repeats print deltas
	prevIfs   []Interface // -i repeats print deltas
}

// formFunc prints one listing of a form as text to r.out, or fills doc
// when the listing is JSON.
type formFunc func(r *run, ctx context.Context, doc *jsonDoc) error

// forms prints each form.
var forms = [...]formFunc{
	Sockets:    (*run).sockets,
	Statistics: (*run).statistics,
	Interfaces: (*run).interfaces,
	Routes:     (*run).routes,
	Groups:     (*run).groups,
}

// Run prints the form c asks for to w, repeating every c.Interval (c.Count
// times, or until ctx ends) when an interval is set. Warnings that do not
// stop the listing (owners of some processes unreadable) go to warn.
func Run(ctx context.Context, c Config, w, warn io.Writer) error {
	r := &run{c: &c, out: bufio.NewWriterSize(w, 64<<10), warn: warn, names: newNames()}
	defer r.out.Flush()
	form := forms[c.Form]
	for n := 1; ; n++ {
		doc := jsonDoc{Time: time.Now().UTC().Format(time.RFC3339Nano), IntervalSeconds: c.Interval.Seconds()}
		if err := form(r, ctx, &doc); err != nil {
			return err
		}
		if c.JSON {
			if err := writeJSON(r.out, &doc); err != nil {
				return fmt.Errorf("write JSON: %w", err)
			}
		}
		if err := r.out.Flush(); err != nil {
			return fmt.Errorf("write listing: %w", err)
		}
		if c.Interval == 0 || (c.Count > 0 && n >= c.Count) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil // interrupted: the listing so far stands
		case <-time.After(c.Interval):
		}
		if !c.JSON && c.Form != Sockets {
			fmt.Fprintln(r.out)
		}
	}
}

func (r *run) statistics(_ context.Context, doc *jsonDoc) error {
	secs, err := ReadCounters()
	if err != nil {
		return err
	}
	shown := secs
	if r.prevStats != nil {
		shown, doc.Delta = Delta(secs, r.prevStats), true
	}
	r.prevStats = secs
	if r.c.JSON {
		doc.Statistics = statsJSON(shown, sectionsFor(r.c))
	} else {
		writeStatsText(r.out, shown, sectionsFor(r.c))
	}
	return nil
}

func (r *run) interfaces(_ context.Context, doc *jsonDoc) error {
	ifs, err := ReadInterfaces()
	if err != nil {
		return err
	}
	shown := ifs
	if r.prevIfs != nil {
		shown, doc.Delta = deltaInterfaces(ifs, r.prevIfs), true
	}
	r.prevIfs = ifs
	if !r.c.JSON {
		writeInterfacesText(r.out, shown, r.c.All)
		return nil
	}
	doc.Interfaces = []Interface{}
	for _, i := range shown {
		if r.c.All || i.up {
			doc.Interfaces = append(doc.Interfaces, i)
		}
	}
	return nil
}

func (r *run) routes(_ context.Context, doc *jsonDoc) error {
	rs, err := readRoutes()
	if err != nil {
		return err
	}
	if r.c.JSON {
		doc.Routes = rs
	} else {
		writeRoutesText(r.out, rs, r.c.NumericHosts, r.c.Extend)
	}
	return nil
}

func (r *run) groups(_ context.Context, doc *jsonDoc) error {
	gs, err := readGroups(r.c)
	if err != nil {
		return err
	}
	if r.c.JSON {
		doc.Groups = gs
	} else {
		writeGroupsText(r.out, gs)
	}
	return nil
}

func (r *run) sockets(ctx context.Context, doc *jsonDoc) error {
	c := r.c
	if !c.Summary && !c.JSON {
		return streamSocketsText(ctx, c, r.out, r.warn, r.names)
	}
	inet, unixs, partial, err := dumpSockets(ctx, c)
	if err != nil {
		return err
	}
	if partial != nil {
		if c.JSON {
			doc.Warning = partial.Error()
		} else {
			fmt.Fprintf(r.warn, "(%v)\n", partial)
		}
	}
	switch {
	case c.Summary && c.JSON:
		keys, counts := summarize(inet, unixs)
		doc.Summary = []jsonCount{}
		for _, k := range keys {
			doc.Summary = append(doc.Summary, jsonCount{k.Proto, k.State, counts[k]})
		}
	case c.Summary:
		writeSummaryText(r.out, inet, unixs)
	default:
		doc.Sockets = make([]jsonSocket, 0, len(inet)+len(unixs))
		for i := range inet {
			doc.Sockets = append(doc.Sockets, toJSON(&inet[i], c))
		}
		for i := range unixs {
			doc.Sockets = append(doc.Sockets, toJSON(&unixs[i], c))
		}
	}
	return nil
}
