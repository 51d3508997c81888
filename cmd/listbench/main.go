// Command listbench times `tcpstat list -tan` and `-tanp` against `ss` and
// net-tools `netstat` side by side while it holds N loopback TCP sockets
// spread over several processes (each stays under a 20 000 fd limit), and
// measures the peak RSS of `tcpstat top -b -n 2` (text and JSON) at each
// size against the same with no socket held.
//
//	go build -o bin/tcpstat ./cmd/tcpstat && go run ./cmd/listbench -sizes 10000,100000
//
// It is a benchmark, not a test: it prints numbers and ratios, it asserts
// nothing. Every holder process exits when the benchmark does, and after
// -hold-max at the latest.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// perHolder is how many sockets one holder process keeps open: both ends
// of each connection live in the holder, so it needs perHolder fds.
const perHolder = 18000

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "listbench: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	hold := flag.Int("hold", 0, "internal: hold this many sockets, print ready, wait for stdin to close")
	holdMax := flag.Duration("hold-max", 10*time.Minute, "a holder exits after this long whatever happens")
	sizes := flag.String("sizes", "10000,50000,100000", "socket counts to measure at")
	runs := flag.Int("runs", 5, "timed runs per command (the median is reported)")
	tcpstat := flag.String("tcpstat", "bin/tcpstat", "tcpstat binary to time")
	flag.Parse()
	if *hold > 0 {
		return holdSockets(*hold, *holdMax)
	}
	if _, err := os.Stat(*tcpstat); err != nil {
		return fmt.Errorf("tcpstat binary: %w (build it with make build)", err)
	}
	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			return fmt.Errorf("bad size %q", s)
		}
		ns = append(ns, n)
	}
	fmt.Printf("\n== no socket held: the empty process ==\n")
	empty, err := measureTop(*tcpstat, *runs, 0, nil)
	if err != nil {
		return err
	}
	for _, n := range ns {
		if err := measure(n, *runs, *tcpstat, *holdMax, empty); err != nil {
			return err
		}
	}
	return nil
}

// topRuns is how many times each top is run: each takes a frame interval.
const topRuns = 3

// measureTop prints the median peak RSS of `top -b -n 2`, text and JSON,
// and with sockets on the host (those held and any others, such as the
// last size's in TIME_WAIT), the bytes per socket above empty (the same
// measured with none held). It returns the peaks.
func measureTop(tcpstat string, runs, sockets int, empty []int64) ([]int64, error) {
	var peaks []int64
	for i, c := range [][]string{{tcpstat, "top", "-b", "-n", "2"}, {tcpstat, "top", "-b", "--json", "-n", "2"}} {
		r, err := timeCommand(c, min(runs, topRuns))
		if err != nil {
			return nil, err
		}
		peaks = append(peaks, r.rss)
		fmt.Printf("%-22s peak RSS %6.1f MB", shortName(c), float64(r.rss)/1e6)
		if sockets > 0 {
			fmt.Printf("  %4.0f B/socket above the empty process (%d sockets)", float64(r.rss-empty[i])/float64(sockets), sockets)
		}
		fmt.Println()
	}
	var self syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &self); err == nil {
		fmt.Printf("(a child's peak RSS cannot read below its parent's, listbench's: %.1f MB)\n", float64(self.Maxrss<<10)/1e6)
	}
	return peaks, nil
}

// measure starts holders for n sockets, times every command, stops them.
func measure(n, runs int, tcpstat string, holdMax time.Duration, empty []int64) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var holders []*exec.Cmd
	var stdins []io.Closer
	defer func() {
		for _, c := range stdins {
			c.Close()
		}
		for _, h := range holders {
			h.Wait()
		}
	}()
	for left := n; left > 0; left -= perHolder {
		k := min(left, perHolder)
		cmd := exec.Command(self, "-hold", strconv.Itoa(k), "-hold-max", holdMax.String())
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start holder: %w", err)
		}
		holders, stdins = append(holders, cmd), append(stdins, in)
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "ready" {
			return fmt.Errorf("holder for %d sockets did not get ready: %q %v", k, line, err)
		}
	}
	fmt.Printf("\n== %d loopback TCP sockets held by %d processes ==\n", n, len(holders))
	fmt.Printf("%-22s %12s %12s %12s %8s\n", "command", "median", "fastest", "median cpu", "rows")
	sockets := n // on the host, as ss -tan lists them (after its header)
	for _, flags := range []string{"-tan", "-tanp"} {
		cmds := [][]string{
			{tcpstat, "list", flags},
			{"ss", flags},
			{"netstat", flags},
		}
		var med, cpu [3]time.Duration
		for i, c := range cmds {
			r, err := timeCommand(c, runs)
			if err != nil {
				return err
			}
			med[i], cpu[i] = r.median, r.cpu
			if c[0] == "ss" && flags == "-tan" {
				sockets = r.rows - 1
			}
			fmt.Printf("%-22s %12s %12s %12s %8d\n", shortName(c), r.median.Round(100*time.Microsecond),
				r.fastest.Round(100*time.Microsecond), r.cpu.Round(100*time.Microsecond), r.rows)
		}
		fmt.Printf("ratios %s: wall ss/tcpstat %.2fx, netstat/tcpstat %.1fx; cpu ss/tcpstat %.2fx, netstat/tcpstat %.1fx\n",
			flags, float64(med[1])/float64(med[0]), float64(med[2])/float64(med[0]),
			float64(cpu[1])/float64(cpu[0]), float64(cpu[2])/float64(cpu[0]))
	}
	_, err = measureTop(tcpstat, runs, sockets, empty)
	return err
}

func shortName(c []string) string {
	name := c[0]
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	return strings.Join(append([]string{name}, c[1:]...), " ")
}

// timing is what timeCommand measured.
type timing struct {
	median, fastest time.Duration // wall time
	cpu             time.Duration // median user+system time: steadier on a shared machine
	rss             int64         // median peak resident set, bytes
	rows            int           // lines of the last run's output
}

// timeCommand runs c runs times with its output collected. Row counts that
// differ between the tools mean other processes changed sockets meanwhile.
func timeCommand(c []string, runs int) (timing, error) {
	var walls, cpus []time.Duration
	var rss []int64
	var t timing
	for range runs {
		cmd := exec.Command(c[0], c[1:]...)
		// Counted as it comes, not kept: a child's peak RSS counts its
		// parent's at exec (os/exec starts children sharing this
		// process's memory, and exec keeps the larger peak), so this
		// process must stay small for top's figure to be top's.
		var lines lineCounter
		cmd.Stdout = &lines
		cmd.Stderr = io.Discard
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return t, fmt.Errorf("run %s: %w", strings.Join(c, " "), err)
		}
		walls = append(walls, time.Since(start))
		cpus = append(cpus, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			rss = append(rss, ru.Maxrss<<10) // Linux counts it in KiB
		}
		t.rows = int(lines)
	}
	slices.Sort(walls)
	slices.Sort(cpus)
	t.median, t.fastest, t.cpu = walls[len(walls)/2], walls[0], cpus[len(cpus)/2]
	if len(rss) > 0 {
		slices.Sort(rss)
		t.rss = rss[len(rss)/2]
	}
	return t, nil
}

// lineCounter counts the lines written to it and keeps nothing.
type lineCounter int

func (n *lineCounter) Write(p []byte) (int, error) {
	*n += lineCounter(bytes.Count(p, []byte("\n")))
	return len(p), nil
}

// holdSockets opens n/2 loopback connections (both ends held here), says
// ready, and waits for stdin to close or for max to pass.
func holdSockets(n int, max time.Duration) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	// No keepalives: with Go's default (probes from 15 s idle, every 15 s),
	// 56 000 of 100 000 held connections were seen to end by keepalive
	// timeout 150 s in, mid-benchmark.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), max)
	defer cancel()
	accepted := make(chan net.Conn, 1024)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1}
	for i := 0; i < n/2; i++ {
		c, err := d.DialContext(ctx, "tcp4", ln.Addr().String())
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		conns = append(conns, c)
		select {
		case a, ok := <-accepted:
			if !ok {
				return errors.New("listener closed")
			}
			conns = append(conns, a)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	fmt.Println("ready")
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}
