package main

import (
	"fmt"
	"runtime/debug"

	"github.com/urfave/cli/v2"

	"github.com/tcpstat/tcpstat/internal/container"
	"github.com/tcpstat/tcpstat/internal/filter"
	"github.com/tcpstat/tcpstat/internal/netstat"
)

const listUsage = `tcpstat list [flags] [interval [count] | FILTER]

The forms of netstat (net-tools' and Solaris' netstat(1M)), one at a time:
  1. Sockets (default)    list [-tuwx] [-46] [-alnpeoWv] [--state STATES] [--summary]
  2. Multicast groups     list -g [-n] [-4|-6]
  3. Net-to-media table   list --arp [-n] [-a] [-f inet|inet6]
  4. Statistics           list -s [-tuw] [-P ip|icmp|tcp|udp|raw] [interval [count]]
  5. Socket memory        list -m [interval [count]]
  6. Interfaces           list -i [-a] [-e] [-I IFACE] [interval [count]]
  7. Routing tables       list -r [-n] [-e] [-4] [-6] [-C] [-a] [-f KEY:VALUE]...
  8. Multicast routing    list -M [-f inet|inet6]   list -Ms [interval [count]]
  9. DHCP                 list -D   (Linux keeps no DHCP state in the kernel; says where to look)

Sockets:
  -t --tcp  -u --udp  -w --raw  -x --unix     protocols (default: all)
  -4 --inet  -6 --inet6  -f|-A inet|inet6|unix  families
  -a --all          servers and connected sockets
  -l --listening    servers only (default: connected only)
  -n --numeric      no name lookups (--numeric-hosts, --numeric-ports, --numeric-users)
  -p --programs     PID/Program name
  -e --extend       User and Inode
  -o --timers       Timer column
  -W --wide         do not cut addresses
  -v --verbose      also say (on stderr) which socket families are not listed
  -P --protocol tcp|udp|raw|unix|ip|icmp   Solaris' protocol choice
  --state STATES    states and groups, e.g. established,time-wait or connected
                    (groups: all, connected, synchronized, bucket, big)
  --summary         count sockets per protocol and state
  FILTER            ss's filter expression, dev and fwmark included, with pid, comm,
                    uid, netns, cgroup, container, pod, family (docs/filter.md),
                    e.g. 'sport = :ssh' or 'dev eth0 and fwmark 0x10/0xf0';
                    one that names states replaces the default (connected only)
  --cgroup-root DIR
                    the host's cgroup v2 tree, for container and pod
                    (default: the cgroup2 mount of /proc/self/mountinfo)
  --pod-log-dir DIR
                    kubelet pod logs, for pod names (default: /var/log/pods)
Net-to-media (ARP entries and IPv6 neighbours, Solaris' layout):
  --arp             Solaris calls this table -p, but on Linux -p is --programs
                    (PID/Program name), so it is --arp here; -a adds multicast entries
Statistics, memory:
  -s --statistics   protocol counters (-s -t: TCP only); repeats show deltas
  -m --memory       socket counts and memory (/proc/net/sockstat, /proc/net/protocols)
Interfaces:
  -i --interfaces   interface table; repeats show deltas; -a adds interfaces that are down
  -i -e             the ifconfig-style listing (addresses, hardware, bytes)
  -I --interface IFACE   one interface; with an interval, Solaris' running packet counts
Routing tables:
  -r --route        IPv4 routes; -e: Metric/Ref/Use columns, -ee: both layouts
  -r -6             IPv6 routes (-4 -6: both, in the order given)
  -C --cache        the routing cache (IPv4 has none since Linux 3.6: headings only)
  -r -a             every table (local and broadcast routes flagged L and B), as ip route show table all
  -f outif:IF|any|none   -f dst:PREFIX|any|none   -f src:PREFIX   -f flags:[+-]LETTERS
                    route filters; the same keyword ORs, different keywords AND
                    (-f flags:+U-G: up and not via a gateway)
  -N --symbolic, -F --fib   accepted as net-tools does (nothing to change on Linux)
Multicast routing:
  -M --multicast-routes   virtual interfaces and forwarding caches (IPv4 and IPv6)
  -Ms               their counters (Linux keeps no Solaris mrtstat: the nearest figures)
Namespaces:
  --netns NS        sockets of network namespace NS (an inode, a name under
                    /var/run/netns, pid:N, self or a path); default: tcpstat's own
Output:
  --json            one JSON document per listing (fields: docs/list.md)
  interval [count]  repeat every interval seconds, count times (-i, -m, -s, -Ms: deltas)
  -c --continuous[=SECONDS]  repeat any form (default every second)
Short flags combine: -tanp, -tlnpe, -c2, -rn6, -Ms.`

// takeContainerFlags removes --cgroup-root and --pod-log-dir from list's
// arguments and returns the resolver they describe, as containerFlags do
// for the other views.
func takeContainerFlags(args []string) (*container.Resolver, []string, error) {
	args, root, _, err := takeLong(args, "cgroup-root", "a directory: the host's cgroup v2 tree")
	if err != nil {
		return nil, nil, err
	}
	args, logs, found, err := takeLong(args, "pod-log-dir", "a directory: kubelet's pod logs")
	if err != nil {
		return nil, nil, err
	}
	if !found {
		logs = defaultPodLogDir
	}
	ids, err := newContainerResolver(root, logs, found)
	return ids, args, err
}

// listCommand is `tcpstat list`, netstat done right. Its flags follow
// getopt (combined short flags, -c with an optional argument), which the
// cli parser cannot express, so the arguments go to netstat.Parse as is.
func listCommand() *cli.Command {
	return &cli.Command{
		Name:            "list",
		Usage:           "netstat's forms: sockets, statistics, interfaces, routes, groups, neighbours, memory, multicast routing (see list --help)",
		UsageText:       listUsage,
		SkipFlagParsing: true,
		Action: func(cctx *cli.Context) error {
			args, ns, err := takeNetNS(cctx.Args().Slice())
			if err != nil {
				return err
			}
			ids, args, err := takeContainerFlags(args)
			if err != nil {
				return err
			}
			cfg, err := netstat.Parse(args)
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
			if ns != nil && cfg.Form != netstat.Sockets {
				return cli.Exit("list: --netns lists sockets only (other forms read /proc/net, tcpstat's own namespace)", 2)
			}
			cfg.NetNS = ns
			if len(cfg.FilterArgs) > 0 {
				// A listing's sockets carry their device and mark (dev,
				// fwmark), named as the namespace listed names them.
				o := filter.Options{Containers: ids, Listing: true, NetNS: ns}
				if cfg.Filter, err = parseFilterWith(cfg.FilterArgs, o); err != nil {
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
