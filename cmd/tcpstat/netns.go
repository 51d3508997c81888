package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/tcpstat/tcpstat/internal/livetable"
	"github.com/tcpstat/tcpstat/internal/snapshot"
)

const netnsUsage = "only network namespace `NS`: an inode, a name under /var/run/netns, pid:N, self, or a path (default: every namespace)"

func netnsFlag() cli.Flag {
	return &cli.StringFlag{Name: "netns", Usage: netnsUsage}
}

// scopeOf is the namespaces a table of command c covers: every one, or
// the one --netns names.
func scopeOf(c *cli.Context) (*snapshot.Scope, error) {
	sel := c.String("netns")
	if sel == "" {
		return snapshot.AllNetNS(), nil
	}
	ns, err := snapshot.ResolveNetNS(sel)
	if err != nil {
		return nil, fmt.Errorf("--netns: %w", err)
	}
	return snapshot.OneNetNS(ns), nil
}

// scopedConfig fills a live table's dumps from the scope: every namespace
// dumped, or only one, whose events alone are kept.
func scopedConfig(cfg *livetable.Config, sc *snapshot.Scope, one bool) {
	cfg.Dump, cfg.Walk, cfg.Owners, cfg.Covers = sc.DumpTCP, sc.WalkTCP, snapshot.Owners, sc.Covers
	if one {
		cfg.Keep = sc.Has
	}
}

// reserveRows readies the live table's row memory while the tracer loads
// (livetable.ReserveRows) when the table follows every namespace: the
// count it goes by is the host's, which says nothing of one namespace.
func reserveRows(c *cli.Context) {
	if c.String("netns") == "" {
		go livetable.ReserveRows()
	}
}

// takeLong removes the long option --name VALUE (or --name=VALUE) from
// list's arguments, which go to netstat's own parser; need says what
// VALUE is, for the error when it is missing.
func takeLong(args []string, name, need string) (rest []string, value string, found bool, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			rest = append(rest, args[i:]...)
			i = len(args)
		case a == "--"+name:
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "-") {
				return nil, "", false, cli.Exit(fmt.Sprintf("list: --%s needs %s", name, need), 2)
			}
			value, found = args[i+1], true
			i++
		case strings.HasPrefix(a, "--"+name+"="):
			if value, found = strings.TrimPrefix(a, "--"+name+"="), true; value == "" {
				return nil, "", false, cli.Exit(fmt.Sprintf("list: --%s needs %s", name, need), 2)
			}
		default:
			rest = append(rest, a)
		}
	}
	return rest, value, found, nil
}

// takeNetNS removes --netns NS from list's arguments and resolves it.
func takeNetNS(args []string) ([]string, *snapshot.Namespace, error) {
	rest, sel, found, err := takeLong(args, "netns", "a namespace: "+strings.TrimSuffix(strings.ReplaceAll(netnsUsage, "`", ""), " (default: every namespace)"))
	if err != nil || !found {
		return rest, nil, err
	}
	ns, err := snapshot.ResolveNetNS(sel)
	if err != nil {
		return nil, nil, fmt.Errorf("--netns: %w", err)
	}
	return rest, &ns, nil
}
