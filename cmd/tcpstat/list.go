package main

import (
	"fmt"
	"runtime/debug"

	"github.com/urfave/cli/v2"

	"github.com/tcpstat/tcpstat/internal/netstat"
)

const listUsage = `tcpstat list [flags] [interval [count] | FILTER]

Sockets (net-tools netstat's forms):
  -t --tcp  -u --udp  -w --raw  -x --unix     protocols (default: all)
  -4 --inet  -6 --inet6  -f|-A inet|inet6|unix  families
  -a --all          servers and connected sockets
  -l --listening    servers only (default: connected only)
  -n --numeric      no name lookups (--numeric-hosts, --numeric-ports, --numeric-users)
  -p --programs     PID/Program name
  -e --extend       User and Inode
  -o --timers       Timer column
  -W --wide         do not cut addresses
  -c --continuous[=SECONDS]  repeat every SECONDS (default 1)
  -P --protocol tcp|udp|raw|unix|ip|icmp   Solaris' protocol choice
  --state STATES    states and groups, e.g. established,time-wait or connected
                    (groups: all, connected, synchronized, bucket, big)
  --summary         count sockets per protocol and state
  FILTER            ss's filter expression with pid, comm, uid, netns, cgroup,
                    family (docs/filter.md), e.g. 'sport = :ssh or dport = :ssh';
                    one that names states replaces the default (connected only)
Other forms:
  -s --statistics   protocol counters (-s -t: TCP only); repeats show deltas
  -i --interfaces   interface table; repeats show deltas
  -r --route        IPv4 routing table
  -g --groups       multicast group memberships
Output:
  --json            one JSON document per listing (fields: docs/list.md)
  interval [count]  repeat every interval seconds, count times
Short flags combine: -tanp, -tlnpe, -c2.`

// listCommand is `tcpstat list`, netstat done right. Its flags follow
// getopt (combined short flags, -c with an optional argument), which the
// cli parser cannot express, so the arguments go to netstat.Parse as is.
func listCommand() *cli.Command {
	return &cli.Command{
		Name:            "list",
		Usage:           "list sockets, counters, interfaces, routes or groups like netstat (see list --help)",
		UsageText:       listUsage,
		SkipFlagParsing: true,
		Action: func(cctx *cli.Context) error {
			cfg, err := netstat.Parse(cctx.Args().Slice())
			if err != nil {
				if netstat.IsUsage(err) {
					return cli.Exit(fmt.Sprintf("list: %v (see tcpstat list --help)", err), 2)
				}
				return err
			}
			if cfg.Help {
				fmt.Fprintln(cctx.App.Writer, listUsage)
				return nil
			}
			if len(cfg.FilterArgs) > 0 {
				if cfg.Filter, err = parseFilter(cfg.FilterArgs); err != nil {
					return err
				}
			}
			// A listing is short-lived and streams its rows: fewer
			// collections cost less than the memory they would save.
			debug.SetGCPercent(400)
			if err := netstat.Run(cctx.Context, cfg, cctx.App.Writer, cctx.App.ErrWriter); err != nil {
				return fmt.Errorf("list: %w", err)
			}
			return nil
		},
	}
}
