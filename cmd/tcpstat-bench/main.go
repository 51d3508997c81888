// Command tcpstat-bench churns loopback connections as fast as the machine
// allows, with no tracer, with `tcpstat watch --json` writing to a file,
// with `tcpstat record` and `tcpstat top -b --json` (the table alone), with
// bpftrace counting the same tracepoint in the kernel (the floor) and
// printing it, side by side in one run, and reports what each costs and
// what each captured. With -levers it also measures each variant of the
// kernel program (tracer.Experiment) through the same consumer.
//
// Every phase is bounded in time and in connections and stops by itself.
// It needs root (both tracers do) and only touches loopback.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

type config struct {
	tcpstat  string
	duration time.Duration
	maxConns int
	workers  int
	dir      string
	keep     bool
	filters  bool
	levers   bool
	only     string
	atSize   int64
	churn    bool
	profile  bool
	bpfStats bool
}

func main() {
	var cfg config
	var workers, consumeVariant, out, ready string
	flag.StringVar(&cfg.tcpstat, "tcpstat", "bin/tcpstat", "tcpstat binary to measure")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "length of each churn phase")
	flag.IntVar(&cfg.maxConns, "max-conns", 2_000_000, "connections per phase at most")
	flag.StringVar(&workers, "workers", strconv.Itoa(2*runtime.NumCPU()),
		"churning goroutines, one listener each; a list (1,2,4) runs the phases for each")
	flag.StringVar(&cfg.dir, "dir", "", "where tracer output goes (default: a temporary directory, removed)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the tracer output files")
	flag.BoolVar(&cfg.filters, "filters", false, "also run tcpstat with a filter that rejects everything and one of 50 prefixes")
	flag.BoolVar(&cfg.profile, "cpuprofile", false, "write CPU profiles of tcpstat watch, record and top beside their output (with -keep: DIR/N-NAME.out.pprof)")
	flag.BoolVar(&cfg.bpfStats, "bpf-stats", true, "turn on kernel.bpf_stats_enabled for the run, for BPF time per event (its two clock reads per program run slow the load too); false leaves it off, as hosts run")
	flag.BoolVar(&cfg.churn, "churn", true, "run the churn phases (false: only -at-size)")
	flag.BoolVar(&cfg.levers, "levers", false, "also measure each variant of the kernel program: "+strings.Join(variantNames(), ", "))
	flag.StringVar(&cfg.only, "only", "", "run only the tracers whose names contain one of these comma-separated words (and none)")
	flag.StringVar(&consumeVariant, "consume", "", "internal: run watch --json with this variant")
	flag.StringVar(&out, "out", "", "internal: with -consume, the output file")
	flag.StringVar(&ready, "ready", "", "internal: with -consume, the ready file")
	flag.Int64Var(&cfg.atSize, "at-size", 0, "also time replay --at in a synthetic recording of this many `BYTES` (0: not)")
	flag.Parse()
	if consumeVariant != "" {
		if err := consume(consumeVariant, out, ready); err != nil {
			fmt.Fprintf(os.Stderr, "tcpstat-bench: %s: %v\n", consumeVariant, err)
			os.Exit(1)
		}
		return
	}
	counts, err := parseWorkers(workers)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tcpstat-bench: -workers: %v\n", err)
		os.Exit(2)
	}
	failed := false
	for _, n := range counts {
		cfg.workers = n
		if err := run(cfg); err != nil {
			fmt.Fprintf(os.Stderr, "tcpstat-bench: %v\n", err)
			var phases phasesFailed
			if !errors.As(err, &phases) {
				os.Exit(1)
			}
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

// phasesFailed names the phases of a run that failed; the run reported
// the others.
type phasesFailed []string

func (p phasesFailed) Error() string {
	return "failed: " + strings.Join(p, ", ")
}

// parseWorkers reads "4" or "1,2,4".
func parseWorkers(s string) ([]int, error) {
	var counts []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want positive numbers separated by commas", s)
		}
		counts = append(counts, n)
	}
	return counts, nil
}

func run(cfg config) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root: both tracers load BPF programs")
	}
	if _, err := os.Stat(cfg.tcpstat); err != nil {
		return fmt.Errorf("tcpstat binary: %w (run make build)", err)
	}
	if cfg.dir == "" {
		dir, err := os.MkdirTemp("", "tcpstat-bench-")
		if err != nil {
			return err
		}
		cfg.dir = dir
		if !cfg.keep {
			defer os.RemoveAll(dir)
		}
	} else if err := os.MkdirAll(cfg.dir, 0o755); err != nil {
		// Before any phase runs: a missing directory failed the first
		// tracer's phase, after a phase without one had run for nothing.
		return fmt.Errorf("-dir: %w", err)
	}
	restore, err := setBPFStats(cfg.bpfStats)
	if err != nil {
		return err
	}
	defer restore()

	tracers := []tracer{noTracer{}, tcpstatTracer{bin: cfg.tcpstat, profile: cfg.profile}, recordTracer{bin: cfg.tcpstat, profile: cfg.profile},
		topTracer{bin: cfg.tcpstat, profile: cfg.profile}}
	if cfg.filters {
		// The filter in the kernel: one that rejects every transition, and
		// 50 prefixes of which the churn's loopback matches the last.
		var prefixes []string
		for i := range 49 {
			prefixes = append(prefixes, fmt.Sprintf("dst 10.%d.0.0/16", i))
		}
		prefixes = append(prefixes, "dst 127.0.0.0/8")
		tracers = append(tracers,
			tcpstatTracer{bin: cfg.tcpstat, filter: "dst 192.0.2.1", label: "FILTER rejecting all"},
			tcpstatTracer{bin: cfg.tcpstat, filter: strings.Join(prefixes, " or "), label: "FILTER of 50 prefixes"})
	}
	if cfg.levers {
		for _, name := range variantNames() {
			tracers = append(tracers, variantTracer{name})
		}
	}
	if _, err := exec.LookPath("bpftrace"); err == nil {
		tracers = append(tracers, bpftraceCountTracer{portRange{basePort, basePort + cfg.workers}}, bpftraceTracer{})
	} else {
		fmt.Fprintln(os.Stderr, "tcpstat-bench: bpftrace not installed: skipping it (apt-get install bpftrace)")
	}
	tracers = append(tracers, noTracer{}) // again, to see drift
	if cfg.only != "" {
		tracers = slices.DeleteFunc(tracers, func(tr tracer) bool {
			if tr.name() == "none" {
				return false
			}
			for _, word := range strings.Split(cfg.only, ",") {
				if strings.Contains(tr.name(), word) {
					return false
				}
			}
			return true
		})
	}

	fmt.Printf("churn: %d workers × loopback connect/accept/close, %s per phase, %d cores, kernel %s\n\n",
		cfg.workers, cfg.duration, runtime.NumCPU(), kernelRelease())
	if !cfg.churn {
		tracers = nil
	}
	// A phase that fails (a tracer that does not start or stop, a churn or
	// a count that fails) is reported and left out of the figures; the
	// phases after it still run.
	var results []result
	var failed phasesFailed
	for i, tr := range tracers {
		out := filepath.Join(cfg.dir, fmt.Sprintf("%d-%s.out", i, tr.name()))
		r, err := measure(cfg, tr, out)
		if err != nil {
			fmt.Fprintf(os.Stderr, "tcpstat-bench: %s: %v (left out; the other phases go on)\n", tr.name(), err)
			r.failed = err.Error()
			failed = append(failed, tr.name())
		}
		results = append(results, r)
	}
	if len(results) > 0 {
		report(os.Stdout, results)
	}
	var errs []error
	if failed != nil {
		errs = append(errs, fmt.Errorf("-workers %d: %w", cfg.workers, failed))
	}
	if cfg.atSize > 0 {
		errs = append(errs, measureAt(cfg.tcpstat, cfg.dir, cfg.atSize))
	}
	return errors.Join(errs...)
}

func kernelRelease() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

// setBPFStats turns the kernel's BPF run-time accounting on or off for the
// run and returns how to put the old setting back.
func setBPFStats(on bool) (func(), error) {
	const path = "/proc/sys/kernel/bpf_stats_enabled"
	old, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	value := "0"
	if on {
		value = "1"
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return nil, fmt.Errorf("set BPF statistics: %w", err)
	}
	return func() { os.WriteFile(path, old, 0o644) }, nil
}
