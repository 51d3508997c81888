package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A tracer is one way of watching the churn.
type tracer interface {
	name() string
	// start returns once the tracer is attached, with its start-up time.
	start(out string) (*exec.Cmd, time.Duration, error)
	// count reads what the tracer wrote: transitions of the churn's
	// sockets, and what the tracer itself reported.
	count(out string, ports portRange, r *result) error
	// programs names the BPF programs the tracer loads (as bpftool shows
	// them: 15 characters at most).
	programs() []string
}

// tcpstatPrograms are bpf/tcpstate.c's programs that run for events.
var tcpstatPrograms = []string{"set_state_first", "set_state_second", "accept4_exit", "accept_exit"}

type portRange struct{ lo, hi int }

func (p portRange) has(port int) bool { return port >= p.lo && port < p.hi }

type noTracer struct{}

func (noTracer) name() string                                   { return "none" }
func (noTracer) start(string) (*exec.Cmd, time.Duration, error) { return nil, 0, nil }
func (noTracer) count(string, portRange, *result) error         { return nil }
func (noTracer) programs() []string                             { return nil }
func (tcpstatTracer) programs() []string                        { return tcpstatPrograms }
func (bpftraceTracer) programs() []string                       { return []string{"inet_sock_set_s"} }

// tcpstatTracer runs tcpstat watch, with a filter when label says which
// (the label names an output file: no slashes).
type tcpstatTracer struct {
	bin     string
	filter  string
	label   string
	profile bool // write a CPU profile beside the output (OUT.pprof)
}

func (t tcpstatTracer) name() string {
	if t.label != "" {
		return "tcpstat watch --json " + t.label
	}
	return "tcpstat watch --json"
}

func (t tcpstatTracer) start(out string) (*exec.Cmd, time.Duration, error) {
	ready := out + ".ready"
	f, err := os.Create(out)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	args := []string{"watch", "--json", "--ready-file", ready}
	if t.profile {
		args = append(args, "--cpuprofile", out+".pprof")
	}
	if t.filter != "" {
		args = append(args, t.filter)
	}
	cmd := exec.Command(t.bin, args...)
	cmd.Stdout = f
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

// waitStarted waits until started says the tracer is attached, and returns
// the time since begin; it kills the tracer if that takes over limit.
func waitStarted(cmd *exec.Cmd, begin time.Time, limit time.Duration, started func() bool) (*exec.Cmd, time.Duration, error) {
	for deadline := begin.Add(limit); !started(); time.Sleep(time.Millisecond) {
		if exited(cmd) {
			cmd.Wait()
			return nil, 0, fmt.Errorf("exited before it was ready (%s)", cmd.ProcessState)
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			return nil, 0, fmt.Errorf("not attached after %s", limit)
		}
	}
	return cmd, time.Since(begin), nil
}

// exited reports whether cmd's process has ended, leaving it to be reaped
// by cmd.Wait.
func exited(cmd *exec.Cmd) bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	return err == nil && info.Signo != 0
}

func (tcpstatTracer) count(out string, ports portRange, r *result) error {
	return scan(out, func(line []byte) error {
		switch {
		case bytes.HasPrefix(line, []byte(`{"type":"transition"`)):
			if ports.has(jsonInt(line, `"sport":`)) || ports.has(jsonInt(line, `"dport":`)) {
				r.captured++
			}
		case bytes.HasPrefix(line, []byte(`{"type":"summary"`)):
			var s struct {
				Lost      uint64 `json:"lost"`
				Misses    uint64 `json:"recursion_misses"`
				Recovered uint64 `json:"recursion_recovered"`
				RunNs     uint64 `json:"bpf_run_ns"`
				Runs      uint64 `json:"bpf_runs"`
			}
			if err := json.Unmarshal(line, &s); err != nil {
				return fmt.Errorf("summary: %w", err)
			}
			r.lostReported, r.recursionMisses, r.recovered = s.Lost, s.Misses, s.Recovered
			r.bpfRunNs = s.RunNs
			r.hasSummary = true
		}
		return nil
	})
}

// jsonInt reads the number after key in a line of tcpstat's JSON.
func jsonInt(line []byte, key string) int {
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return -1
	}
	n := 0
	for _, c := range line[i+len(key):] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

type bpftraceTracer struct{}

func (bpftraceTracer) name() string { return "bpftrace printf" }

// The same tracepoint, printing what identifies a transition.
const bpftraceScript = `tracepoint:sock:inet_sock_set_state /args->protocol == 6/ {
	printf("%d %s %d %d %d %d\n", pid, comm, args->sport, args->dport, args->oldstate, args->newstate);
}`

func (bpftraceTracer) start(out string) (*exec.Cmd, time.Duration, error) {
	cmd := exec.Command("bpftrace", "-o", out, "-e", bpftraceScript)
	cmd.Stderr = nil
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	return waitStarted(cmd, begin, 60*time.Second, func() bool {
		b, err := os.ReadFile(out)
		return err == nil && bytes.Contains(b, []byte("Attaching"))
	})
}

func (bpftraceTracer) count(out string, ports portRange, r *result) error {
	r.hasSummary = true
	return scan(out, func(line []byte) error {
		f := strings.Fields(string(line))
		if len(f) >= 3 && f[0] == "Lost" {
			n, _ := strconv.ParseUint(f[1], 10, 64)
			r.lostReported += n
			return nil
		}
		if len(f) < 6 {
			return nil
		}
		sport, _ := strconv.Atoi(f[len(f)-4])
		dport, _ := strconv.Atoi(f[len(f)-3])
		if ports.has(sport) || ports.has(dport) {
			r.captured++
		}
		return nil
	})
}

func scan(path string, line func([]byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		if err := line(s.Bytes()); err != nil {
			return err
		}
	}
	return s.Err()
}

// stop ends a tracer the way a user does, and returns its resource usage.
func stop(cmd *exec.Cmd) (*syscall.Rusage, error) {
	cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return nil, fmt.Errorf("exit: %w", err)
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		return nil, errors.New("did not stop within 60 s of SIGINT")
	}
	return cmd.ProcessState.SysUsage().(*syscall.Rusage), nil
}
