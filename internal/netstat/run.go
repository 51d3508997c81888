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

// Run prints the form c asks for to w, repeating every c.Interval (c.Count
// times, or until ctx ends) when an interval is set. Warnings that do not
// stop the listing (owners of some processes unreadable) go to warn.
func Run(ctx context.Context, c Config, w, warn io.Writer) error {
	out := bufio.NewWriterSize(w, 64<<10)
	defer out.Flush()
	nm := newNames()
	var prevStats []Section
	var prevIfs []Interface
	for n := 1; ; n++ {
		doc := jsonDoc{Time: time.Now().UTC().Format(time.RFC3339Nano), IntervalSeconds: c.Interval.Seconds()}
		var err error
		switch c.Form {
		case Sockets:
			err = runSockets(ctx, &c, out, warn, nm, &doc)
		case Statistics:
			var secs []Section
			if secs, err = ReadCounters(); err == nil {
				shown := secs
				if prevStats != nil {
					shown, doc.Delta = Delta(secs, prevStats), true
				}
				prevStats = secs
				if c.JSON {
					doc.Statistics = statsJSON(shown, sectionsFor(&c))
				} else {
					writeStatsText(out, shown, sectionsFor(&c))
				}
			}
		case Interfaces:
			var ifs []Interface
			if ifs, err = ReadInterfaces(); err == nil {
				shown := ifs
				if prevIfs != nil {
					shown, doc.Delta = deltaInterfaces(ifs, prevIfs), true
				}
				prevIfs = ifs
				if c.JSON {
					for _, i := range shown {
						if c.All || i.up {
							doc.Interfaces = append(doc.Interfaces, i)
						}
					}
				} else {
					writeInterfacesText(out, shown, c.All)
				}
			}
		case Routes:
			var rs []Route
			if rs, err = readRoutes(); err == nil {
				if c.JSON {
					doc.Routes = rs
				} else {
					writeRoutesText(out, rs, c.NumericHosts)
				}
			}
		case Groups:
			var gs []Group
			if gs, err = readGroups(&c); err == nil {
				if c.JSON {
					doc.Groups = gs
				} else {
					writeGroupsText(out, gs)
				}
			}
		}
		if err != nil {
			return err
		}
		if c.JSON {
			if err := writeJSON(out, &doc); err != nil {
				return fmt.Errorf("write JSON: %w", err)
			}
		}
		if err := out.Flush(); err != nil {
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
			fmt.Fprintln(out)
		}
	}
}

func runSockets(ctx context.Context, c *Config, out *bufio.Writer, warn io.Writer, nm *names, doc *jsonDoc) error {
	if !c.Summary && !c.JSON {
		return streamSocketsText(ctx, c, out, warn, nm)
	}
	inet, unixs, partial, err := dumpSockets(ctx, c)
	if err != nil {
		return err
	}
	if partial != nil {
		if c.JSON {
			doc.Warning = partial.Error()
		} else {
			fmt.Fprintf(warn, "(%v)\n", partial)
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
		writeSummaryText(out, inet, unixs)
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
