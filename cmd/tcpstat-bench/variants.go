package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	kernel "github.com/tcpstat/tcpstat/internal/tracer"
	"github.com/tcpstat/tcpstat/internal/watch"
)

// The levers of issue 13, each a change to the kernel program measured
// through the same consumer as `tcpstat watch --json` (internal/watch), in
// a process of its own re-executed from this one.
var variants = map[string]kernel.Experiment{
	"default":          {},
	"state in map":     {StateInMap: true},
	"state in storage": {StateInStorage: true},
	"one copy":         {OneCopy: true},
	"no accept":        {NoAccept: true},
	"no task comm":     {NoTaskComm: true},
	"no events":        {NoEvents: true},
	"no state":         {NoState: true},
	"query wakeup":     {QueryWakeup: true},
	"no owner":         {NoOwner: true},
	"staged":           {Staged: true},
	"one ring":         {OneRing: true},
}

func variantNames() []string {
	names := make([]string, 0, len(variants))
	for name := range variants {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

type variantTracer struct{ variant string }

func (v variantTracer) name() string { return "watch: " + v.variant }

func (v variantTracer) start(out string) (*exec.Cmd, time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, 0, err
	}
	ready := out + ".ready"
	cmd := exec.Command(self, "-consume", v.variant, "-out", out, "-ready", ready)
	cmd.Stderr = os.Stderr
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	return waitStarted(cmd, begin, 30*time.Second, func() bool {
		_, err := os.Stat(ready)
		return err == nil
	})
}

func (variantTracer) programs() []string { return tcpstatPrograms }

func (bpftraceCountTracer) programs() []string { return []string{"inet_sock_set_s"} }

func (variantTracer) count(out string, ports portRange, r *result) error {
	return tcpstatTracer{}.count(out, ports, r)
}

// consume is the re-executed process: watch --json with the variant's
// kernel program, until SIGINT.
func consume(variant, out, ready string) error {
	exp, ok := variants[variant]
	if !ok {
		return fmt.Errorf("unknown variant %q: want one of %s", variant, strings.Join(variantNames(), ", "))
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return watch.Run(ctx, watch.Options{
		Tracer: kernel.Options{Experiment: exp}, JSON: true, ReadyFile: ready, Stdout: f, Stderr: os.Stderr,
	})
}

// bpftraceCountTracer is the floor: bpftrace counting the churn's
// transitions in the kernel, printing nothing until it ends.
type bpftraceCountTracer struct{ ports portRange }

func (bpftraceCountTracer) name() string { return "bpftrace count" }

func (b bpftraceCountTracer) start(out string) (*exec.Cmd, time.Duration, error) {
	script := fmt.Sprintf(`tracepoint:sock:inet_sock_set_state /args->protocol == 6 && `+
		`((args->sport >= %[1]d && args->sport < %[2]d) || (args->dport >= %[1]d && args->dport < %[2]d))/ { @n = count(); }`,
		b.ports.lo, b.ports.hi)
	cmd := exec.Command("bpftrace", "-o", out, "-e", script)
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	return waitStarted(cmd, begin, 60*time.Second, func() bool {
		b, err := os.ReadFile(out)
		return err == nil && strings.Contains(string(b), "Attaching")
	})
}

// count reads the map bpftrace prints when it ends: "@n: 12345".
func (bpftraceCountTracer) count(out string, _ portRange, r *result) error {
	r.hasSummary = true
	return scan(out, func(line []byte) error {
		var n uint64
		if _, err := fmt.Sscanf(string(line), "@n: %d", &n); err == nil {
			r.captured = n
		}
		return nil
	})
}

func (recordTracer) programs() []string { return tcpstatPrograms }
