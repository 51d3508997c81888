package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"encoding/json"
)

type result struct {
	tracer          string
	failed          string // why the phase failed; its figures are left out
	conns           int
	listeners       int
	elapsed         time.Duration
	captured        uint64
	hasSummary      bool
	lostReported    uint64
	recursionMisses uint64
	recovered       uint64
	cpu             time.Duration
	startCPU        time.Duration // of cpu, spent before the tracer said it was ready
	bpfRunNs        uint64
	startup         time.Duration
	maxRSSKiB       int64
	traced          bool
	programs        []program
	// tcpstat record only: the recording's size, its events, and how long
	// replay --json took to print them.
	recordBytes    int64
	recordedEvents uint64
	replayTime     time.Duration
	// Blocks that hold only events: bytes per event without checkpoints.
	eventBlockBytes  int64
	eventBlockEvents uint64
	// tcpstat top only: no transitions printed, the events the table
	// applied (the host's, accepts included) instead.
	tableOnly   bool
	tableEvents uint64
}

func (r result) rate() float64 { return float64(r.conns) / r.elapsed.Seconds() }

// expected transitions: ten per connection, two per listener.
func (r result) expected() uint64 { return uint64(10*r.conns + 2*r.listeners) }

func measure(cfg config, tr tracer, out string) (result, error) {
	r := result{tracer: tr.name()}
	firstID := maxProgramID() + 1
	cmd, startup, err := tr.start(out)
	if err != nil {
		return r, err
	}
	r.startup, r.traced = startup, cmd != nil
	if cmd != nil {
		if r.startCPU, err = processCPU(cmd.Process.Pid); err != nil {
			fmt.Fprintf(os.Stderr, "tcpstat-bench: %s: CPU at start-up: %v\n", tr.name(), err)
		}
	}
	conns, listeners, elapsed, churnErr := churn(cfg)
	r.conns, r.listeners, r.elapsed = conns, listeners, elapsed
	time.Sleep(time.Second) // the last FINs and ACKs
	var bpfFromTool uint64
	if cmd != nil {
		progs := programsSince(firstID, tr.programs())
		for _, p := range progs {
			bpfFromTool += p.RunTimeNs
		}
		r.programs = progs
		ru, err := stop(cmd)
		if err != nil {
			return r, err
		}
		r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		r.maxRSSKiB = ru.Maxrss
	}
	if churnErr != nil {
		return r, fmt.Errorf("churn: %w", churnErr)
	}
	if err := tr.count(out, portRange{basePort, basePort + cfg.workers}, &r); err != nil {
		return r, fmt.Errorf("read %s: %w", filepath.Base(out), err)
	}
	if bpfFromTool > 0 && r.bpfRunNs == 0 {
		r.bpfRunNs = bpfFromTool // tcpstat reports its own in the summary
	}
	fmt.Fprintf(os.Stderr, "%-22s %8.0f conn/s  captured %d of %d\n", r.tracer, r.rate(), r.captured, r.expected())
	for _, p := range r.programs {
		fmt.Fprintf(os.Stderr, "    %-16s %10d runs  %6d ns/run  %6d ns/event\n", p.Name, p.RunCount,
			p.RunTimeNs/max(p.RunCount, 1), p.RunTimeNs/max(r.expected(), 1))
	}
	return r, nil
}

// program is one BPF program's run time and runs, as bpftool reports them
// (kernel.bpf_stats_enabled is on during the run).
type program struct {
	ID        int    `json:"id"`
	Name      string `json:"name"`
	RunTimeNs uint64 `json:"run_time_ns"`
	RunCount  uint64 `json:"run_cnt"`
}

func programs() []program {
	out, err := exec.Command("bpftool", "prog", "show", "--json").Output()
	if err != nil {
		return nil
	}
	var all []program
	json.Unmarshal(out, &all)
	return all
}

func maxProgramID() int {
	id := 0
	for _, p := range programs() {
		id = max(id, p.ID)
	}
	return id
}

// programsSince lists the programs loaded since firstID under the names a
// tracer gives its programs (this bpftool shows no holder pids). Programs
// other tests load meanwhile under the same names would be counted too.
func programsSince(firstID int, names []string) []program {
	var mine []program
	for _, p := range programs() {
		if p.ID >= firstID && p.RunCount > 0 && slices.Contains(names, p.Name) {
			mine = append(mine, p)
		}
	}
	return mine
}

func report(w io.Writer, results []result) {
	var base float64
	var n int
	for _, r := range results {
		if !r.traced && r.failed == "" {
			base += r.rate()
			n++
		}
	}
	base /= float64(n)
	versus := func(r result) string {
		if n == 0 {
			return "-" // no phase without a tracer ran through
		}
		return fmt.Sprintf("%+.1f%%", 100*(r.rate()/base-1))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tracer\tconn/s\tvs none\tcaptured\tof expected\tcaptured %\treported lost\trecursion misses (recovered)\tconsumer CPU/event\tafter start-up\tBPF/event\tBPF/transition\tstart-up\tmax RSS\t")
	for _, r := range results {
		if r.failed != "" {
			fmt.Fprintf(tw, "%s\tfailed\t%s\n", r.tracer, strings.Repeat("-\t", 12))
			continue
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t", r.tracer, r.rate(), versus(r))
		if !r.traced {
			fmt.Fprintf(tw, "-\t%d\t-\t-\t-\t-\t-\t-\t-\t-\t-\t\n", r.expected())
			continue
		}
		pct := 100 * float64(r.captured) / float64(r.expected())
		events := max(r.captured, 1)
		if r.captured == 0 {
			events = r.expected() // a variant that sends nothing, or top
		}
		misses := "-"
		if strings.HasPrefix(r.tracer, "tcpstat") || strings.HasPrefix(r.tracer, "watch") {
			misses = fmt.Sprintf("%d (%d)", r.recursionMisses, r.recovered)
		}
		// BPF/transition counts every transition the program ran for,
		// reported or filtered out: the churn's expected ones.
		bpfPerEvent, bpfPerTransition := "-", "-" // -bpf-stats=false: the kernel kept no run time
		if r.bpfRunNs > 0 {
			bpfPerEvent, bpfPerTransition = fmt.Sprintf("%dns", r.bpfRunNs/events), fmt.Sprintf("%dns", r.bpfRunNs/max(r.expected(), 1))
		}
		fmt.Fprintf(tw, "%d\t%d\t%.3f%%\t%d\t%s\t%.2fµs\t%.2fµs\t%s\t%s\t%.3fs\t%.1fMB\t\n",
			r.captured, r.expected(), pct, r.lostReported, misses,
			float64(r.cpu.Nanoseconds())/float64(events)/1000, float64((r.cpu-r.startCPU).Nanoseconds())/float64(events)/1000, bpfPerEvent, bpfPerTransition,
			r.startup.Seconds(), float64(r.maxRSSKiB)/1024)
	}
	tw.Flush()
	// os/exec starts a child sharing this process's memory, and exec keeps
	// the larger peak: no child's max RSS can read below this one's.
	var self syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &self); err == nil {
		fmt.Fprintf(w, "(max RSS cannot read below the benchmark's own peak, %.1fMB)\n", float64(self.Maxrss)/1024)
	}
	for _, r := range results {
		if r.failed != "" {
			fmt.Fprintf(w, "\n%s failed: %s\n", r.tracer, r.failed)
		}
	}
	for _, r := range results {
		if r.tableOnly && r.failed == "" {
			fmt.Fprintf(w, "\n%s: the table applied %d events (the host's, accepts included), %d lost\n", r.tracer, r.tableEvents, r.lostReported)
		}
	}
	for _, r := range results {
		if r.recordedEvents == 0 || r.failed != "" {
			continue
		}
		fmt.Fprintf(w, "\n%s: %d events in %.1f MB on disk: %.2f bytes/event with checkpoints, %.2f in blocks of events alone; replay --json of them: %s, %.2f M events/s\n",
			r.tracer, r.recordedEvents, float64(r.recordBytes)/1e6, float64(r.recordBytes)/float64(r.recordedEvents),
			float64(r.eventBlockBytes)/float64(max(r.eventBlockEvents, 1)),
			r.replayTime.Round(time.Millisecond), float64(r.recordedEvents)/r.replayTime.Seconds()/1e6)
	}
}

// processCPU is the user and system time process pid has used so far, all
// its threads, from /proc/PID/stat (in clock ticks of 10 ms: USER_HZ).
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: count from after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected layout", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected layout", pid)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected layout", pid)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}
