package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/tcpstat/tcpstat/internal/container"
	"github.com/tcpstat/tcpstat/internal/filter"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// filterCommand is `tcpstat filter explain EXPR`: the parsed expression and
// which part the kernel checks.
func filterCommand() *cli.Command {
	return &cli.Command{
		Name:  "filter",
		Usage: "check a filter expression (see docs/filter.md)",
		Subcommands: []*cli.Command{{
			Name:      "explain",
			Usage:     "print the parsed expression and which part runs in the kernel",
			ArgsUsage: "EXPR",
			Action: func(cctx *cli.Context) error {
				if cctx.NArg() == 0 {
					return cli.Exit("filter explain: needs an expression, e.g. tcpstat filter explain 'dport = :443'", 2)
				}
				// Every view's conditions, list's dev and fwmark too:
				// explain says where each runs.
				f, err := parseFilterWith(cctx.Args().Slice(), filter.Options{Listing: true})
				if err != nil {
					return err
				}
				fmt.Fprint(cctx.App.Writer, f.Explain())
				return nil
			},
		}},
	}
}

// parseFilter parses a filter given as command-line words; a mistake in it
// exits with status 2. ids names owners' containers and pods (nil: the
// filter's own resolver, on the host's cgroup mount and /var/log/pods).
func parseFilter(args []string, ids *container.Resolver) (*filter.Filter, error) {
	return parseFilterWith(args, filter.Options{Containers: ids})
}

// parseFilterWith is parseFilter with all of filter's options.
func parseFilterWith(args []string, o filter.Options) (*filter.Filter, error) {
	f, err := filter.ParseArgsWith(args, o)
	if err != nil {
		var fe *filter.Error
		if errors.As(err, &fe) {
			return nil, cli.Exit(err.Error(), 2)
		}
		return nil, err
	}
	return f, nil
}

// viewFilter is a view's filter: its arguments, and the shorthands -4, -6
// and --port, which mean family inet, family inet6 and (sport = :PORT or
// dport = :PORT).
func viewFilter(c *cli.Context, ids *container.Resolver) (*filter.Filter, error) {
	f, err := parseFilter(c.Args().Slice(), ids)
	if err != nil {
		return nil, err
	}
	var short []string
	switch {
	case c.Bool("4") && c.Bool("6"):
		return nil, errors.New("-4 and -6 exclude each other; give neither for both families")
	case c.Bool("4"):
		short = append(short, "family inet")
	case c.Bool("6"):
		short = append(short, "family inet6")
	}
	if c.IsSet("port") {
		p := c.Uint("port")
		if p == 0 || p > 65535 {
			return nil, fmt.Errorf("--port %d: want 1-65535", p)
		}
		short = append(short, fmt.Sprintf("( sport = :%d or dport = :%d )", p, p))
	}
	if len(short) == 0 {
		return f, nil
	}
	s, err := filter.Parse(strings.Join(short, " and "))
	if err != nil {
		return nil, err
	}
	return filter.And(s, f), nil
}

// kernelFilter is the part of f the BPF program checks; nil, with a
// warning, when it does not fit (user space then checks all of f).
func kernelFilter(f *filter.Filter, stderr io.Writer) *tracer.KernelFilter {
	kf, err := f.Kernel()
	if err != nil {
		fmt.Fprintf(stderr, "tcpstat: warning: filter: %v: user space checks all of it\n", err)
		return nil
	}
	return kf
}

// defaultPodLogDir is where kubelet writes pods' logs, named after them.
const defaultPodLogDir = "/var/log/pods"

// containerFlags say where a view finds owners' containers and pods.
func containerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "cgroup-root", Usage: "the host's cgroup v2 `DIR`, for container and pod names (default: the cgroup2 mount of /proc/self/mountinfo)"},
		&cli.StringFlag{Name: "pod-log-dir", Value: defaultPodLogDir, Usage: "kubelet pod log `DIR`, for pod names"},
	}
}

// containerResolver names owners' containers and pods as containerFlags say.
func containerResolver(c *cli.Context) (*container.Resolver, error) {
	return newContainerResolver(c.String("cgroup-root"), c.String("pod-log-dir"), c.IsSet("pod-log-dir"))
}

// newContainerResolver is a resolver on the cgroup tree root (the
// cgroup2 mount when empty) and kubelet's pod logs. A directory given that
// is not there is a mistake worth a word; the default pod log directory
// is missing on any host without kubelet.
func newContainerResolver(root, podLogs string, podLogsGiven bool) (*container.Resolver, error) {
	if root != "" {
		if err := isDir(root); err != nil {
			return nil, cli.Exit(fmt.Sprintf("--cgroup-root %s: %v; give the host's cgroup v2 mount", root, err), 2)
		}
	}
	if podLogsGiven {
		if err := isDir(podLogs); err != nil {
			return nil, cli.Exit(fmt.Sprintf("--pod-log-dir %s: %v; give kubelet's pod log directory (/var/log/pods)", podLogs, err), 2)
		}
	}
	return container.NewResolver(container.Options{CgroupRoot: root, PodLogDir: podLogs}), nil
}

// isDir says why path is not a directory one can read, or nil.
func isDir(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errors.New("no such directory")
	case err != nil:
		return err
	case !fi.IsDir():
		return errors.New("not a directory")
	}
	return nil
}
