package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"
)

// defaultListen is serve's address: localhost, so that nothing is
// exposed unless asked for (a pod's sidecar is scraped through its pod IP:
// give --web.listen-address :9977 there).
const defaultListen = "127.0.0.1:9977"

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve Prometheus metrics of the connection table and the tracer",
		ArgsUsage: "[FILTER]",
		Description: "Keeps the live connection table (as top does) and serves /metrics and /healthz.\n" +
			"Connections by state are counted from the table at each scrape; transitions, closes,\n" +
			"failed connects and the histograms add up events. A FILTER (ss's language, as watch\n" +
			"takes it: docs/filter.md) limits all of them to the sockets it selects; the tracer's\n" +
			"health metrics stay whole. TLS and basic auth: --web.config.file (Prometheus' exporter\n" +
			"web configuration). Metrics: docs/deploy.md.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "web.listen-address", Value: defaultListen, Usage: "`ADDRESS` to serve on (localhost unless told otherwise)"},
			&cli.StringFlag{Name: "web.config.file", Usage: "`FILE` with TLS and basic auth settings (exporter-toolkit format)"},
			&cli.StringFlag{Name: "metrics.by", Usage: "also split connections by `LABEL`: netns or pod (series capped by --metrics.max-series)"},
			&cli.IntFlag{Name: "metrics.max-series", Value: 100, Usage: "at most `N` netns or pod series per state; the rest add up to \"other\""},
			&cli.IntFlag{Name: "metrics.max-ports", Value: 50, Usage: "count failed connects by destination port for at most `N` ports (0: no port label)"},
			&cli.BoolFlag{Name: "poll", Usage: "do not trace: keep the table from sock_diag dumps (no transition metrics)"},
			&cli.Float64Flag{Name: "table.dump-cpu", Value: 100 * serveDumpLoad, Usage: "space the periodic dumps that correct the traced table so that they take at most `PERCENT` of the time (about that share of one CPU): every 2 s, less often when a dump takes longer, at least hourly; 0: every 2 s whatever they cost (with --poll the dumps are the table: every second)"},
			netnsFlag(),
		}, containerFlags()...),
		Action: runServe,
	}
}

// serveDumpLoad is the share of the time (about one CPU's) the agent's
// periodic dumps of every namespace take by default (--table.dump-cpu):
// every 2 s while a dump takes up to 40 ms, about every 15 s on an idle
// node of 200 000 sockets (a dump of every namespace 0.3 s), where dumping
// every 2 s kept 12–13 % of a core busy.
// Transitions are traced and timewait rows go on their timer between
// dumps; only rows that leave without an event (a socket the kernel
// frees unseen, a namespace that goes) wait longer. Resyncs after a loss
// are not delayed.
const serveDumpLoad = 0.02

// agentName is the binary serve runs in when this build leaves the metrics
// server out (-tags noserve, as make build does): the Prometheus client,
// its HTTP and TLS configuration and their packages' initialisation cost
// every start 3–7 ms, about 3 % of a `list -tan` of 100 000 sockets.
// tcpstat-agent is the same program with them linked in.
const agentName = "tcpstat-agent"

// handedOver marks the agent's environment, so that an agent that is
// itself a build without the server says so instead of handing over again
// (to itself, forever).
const handedOver = "TCPSTAT_SERVE_HANDED_OVER"

// execAgent replaces this process with tcpstat-agent, given the same
// arguments (args[0] is the program name). The agent keeps this process's
// pid and descriptors; its capabilities are what execve gives it (its own
// file capabilities, or root's). It returns only on failure.
func execAgent(args []string) error {
	if os.Getenv(handedOver) != "" {
		return errors.New("serve: this " + agentName + " leaves the metrics server out too: install the agent build " +
			"(make build writes bin/" + agentName + ", go build without -tags noserve)")
	}
	path, err := agentPath()
	if err != nil {
		return err
	}
	err = syscall.Exec(path, append([]string{path}, args[1:]...), append(os.Environ(), handedOver+"=1"))
	return fmt.Errorf("serve: run %s: %w", path, err)
}

// agentPath finds tcpstat-agent beside this binary (beside its target, if
// it was started through a symbolic link), else in PATH.
func agentPath() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), agentName)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath(agentName); err == nil {
		return p, nil
	}
	return "", errors.New("serve: this tcpstat leaves the metrics server to " + agentName +
		", which is neither beside it nor in PATH: install it beside tcpstat (make build writes bin/" + agentName +
		") or build tcpstat without -tags noserve")
}
