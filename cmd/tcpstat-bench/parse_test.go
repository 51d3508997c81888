package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestJSONInt(t *testing.T) {
	line := []byte(`{"type":"transition","sport":28101,"daddr":"127.0.0.1","dport":0}`)
	for key, want := range map[string]int{`"sport":`: 28101, `"dport":`: 0, `"nope":`: -1} {
		if got := jsonInt(line, key); got != want {
			t.Errorf("jsonInt(%s) = %d, want %d", key, got, want)
		}
	}
}

func TestCounts(t *testing.T) {
	dir := t.TempDir()
	ports := portRange{28100, 28102}

	tcpstatOut := filepath.Join(dir, "tcpstat.out")
	os.WriteFile(tcpstatOut, []byte(`{"type":"transition","sport":0,"dport":28100}
{"type":"transition","sport":28101,"dport":40000}
{"type":"transition","sport":28102,"dport":40000}
{"type":"accept","sport":28100,"dport":40000}
{"type":"summary","lost":3,"recursion_misses":5,"recursion_recovered":5,"bpf_run_ns":900}
`), 0o644)
	var r result
	if err := (tcpstatTracer{}).count(tcpstatOut, ports, &r); err != nil {
		t.Fatal(err)
	}
	if r.captured != 2 || r.lostReported != 3 || r.recursionMisses != 5 || r.recovered != 5 || r.bpfRunNs != 900 || !r.hasSummary {
		t.Errorf("tcpstat counts: %+v", r)
	}

	bpftraceOut := filepath.Join(dir, "bpftrace.out")
	os.WriteFile(bpftraceOut, []byte("Attaching 1 probe...\n12 curl 0 28100 7 2\n13 my comm 28101 5000 1 4\n14 x 1 2 1 4\nLost 17 events\n"), 0o644)
	r = result{}
	if err := (bpftraceTracer{}).count(bpftraceOut, ports, &r); err != nil {
		t.Fatal(err)
	}
	if r.captured != 2 || r.lostReported != 17 {
		t.Errorf("bpftrace counts: %+v", r)
	}
}

func TestExpected(t *testing.T) {
	if got := (result{conns: 1000, listeners: 4}).expected(); got != 10008 {
		t.Errorf("expected() = %d, want 10008", got)
	}
}

// TestReportFailedPhase: a phase that failed is named with its reason and
// left out of the figures, the baseline included.
func TestReportFailedPhase(t *testing.T) {
	var out strings.Builder
	report(&out, []result{
		{tracer: "none", conns: 1000, elapsed: time.Second},
		{tracer: "bpftrace count", traced: true, conns: 900, elapsed: time.Second, captured: 9000, failed: "did not stop within 60 s of SIGINT"},
		{tracer: "none", conns: 10, elapsed: time.Second, failed: "churn: connect: refused"},
		{tracer: "tcpstat watch --json", traced: true, conns: 800, elapsed: time.Second, captured: 8000},
		{tracer: "tcpstat record", traced: true, conns: 700, elapsed: time.Second, recordedEvents: 7000, replayTime: time.Second, failed: "read 2-tcpstat record.out: torn"},
		{tracer: "tcpstat top -b --json", traced: true, conns: 600, elapsed: time.Second, tableOnly: true, tableEvents: 6000, failed: "exit: exit status 1"},
	})
	text := out.String()
	for _, want := range []string{
		"bpftrace count failed: did not stop within 60 s of SIGINT",
		"none failed: churn: connect: refused",
		"-20.0%", // watch against the one none that ran, not the mean of both
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	for _, figure := range []string{"9000", "7000 events", "applied 6000"} {
		if strings.Contains(text, figure) {
			t.Errorf("a failed phase's figure %q is reported:\n%s", figure, text)
		}
	}

	// With no phase without a tracer, nothing to compare with.
	out.Reset()
	report(&out, []result{
		{tracer: "none", failed: "churn: connect: refused"},
		{tracer: "tcpstat watch --json", traced: true, conns: 800, elapsed: time.Second, captured: 8000},
	})
	if text := out.String(); strings.Contains(text, "NaN") {
		t.Errorf("with every none failed, the report compares with NaN:\n%s", text)
	}
}

// TestReportWithoutBPFStats: with -bpf-stats=false the kernel keeps no run
// time, and the report says so rather than print 0 ns as a measurement.
func TestReportWithoutBPFStats(t *testing.T) {
	var out strings.Builder
	report(&out, []result{
		{tracer: "none", conns: 1000, elapsed: time.Second},
		{tracer: "tcpstat watch --json", traced: true, conns: 900, elapsed: time.Second, captured: 9000},
		{tracer: "bpftrace count", traced: true, conns: 900, elapsed: time.Second, captured: 9000, bpfRunNs: 720000},
	})
	want := map[string]string{"tcpstat watch --json": "- -", "bpftrace count": "80ns 80ns"}
	for _, line := range strings.Split(out.String(), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 14 {
			continue
		}
		// The BPF columns come before start-up and max RSS.
		bpf := fields[len(fields)-4] + " " + fields[len(fields)-3]
		for tracer, w := range want {
			if strings.HasPrefix(strings.TrimSpace(line), tracer) {
				if bpf != w {
					t.Errorf("%s: BPF per event and per transition read %q, want %q:\n%s", tracer, bpf, w, out.String())
				}
				delete(want, tracer)
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("report lacks rows for %v:\n%s", want, out.String())
	}
}
