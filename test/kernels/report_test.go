package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tcpstat/tcpstat/internal/golden"
)

// testRuns is one kernel of each kind of outcome, from the guest logs
// under testdata/guest.
func testRuns(t *testing.T) ([]*kernelRun, guestOptions) {
	t.Helper()
	g := guestOptions{Packages: []testPackage{{Rel: "internal/tcp"}, {Rel: "test/kernels/bpfsmoke"}}}
	report := func(log string) *guestReport {
		rep, err := readGuestOutput(context.Background(), filepath.Join("testdata/guest", log))
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	k := func(label, pkg, ver string) *kernel {
		spec, _ := findKernel(label)
		return &kernel{Spec: spec, Package: pkg, Version: ver}
	}
	console := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(console, []byte("[    4.2] Run /init as init process\n[    9.1] Kernel panic - not syncing: sysrq triggered crash\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	oomConsole := filepath.Join(t.TempDir(), "oom.log")
	if err := os.WriteFile(oomConsole, []byte("[   71.5] tcpstat.test invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=0\n[   71.6] Out of memory: Killed process 212 (tcpstat.test) total-vm:1416164kB, anon-rss:412280kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:1012kB oom_score_adj:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runs := []*kernelRun{
		{Spec: k("5.10", "", "").Spec, Kernel: k("5.10", "linux-image-5.10.0-46-amd64", "5.10.262-1"),
			Boot: bootResult{Duration: 5300 * time.Millisecond}, Report: report("pass.log")},
		{Spec: k("6.1", "", "").Spec, FetchErr: errors.New("apt-get update for bookworm-security: exit status 100")},
		{Spec: k("6.12", "", "").Spec, Kernel: k("6.12", "linux-image-6.12.117+deb12-amd64", "6.12.117-1~deb12u1"),
			Boot: bootResult{Duration: 7 * time.Second, Console: console}, Report: report("died.log")},
		{Spec: k("stable", "", "").Spec, Kernel: k("stable", "linux-image-7.2.13+deb14-amd64", "7.2.13-1"),
			Boot: bootResult{Duration: 10 * time.Minute, TimedOut: true}, Report: report("died.log")},
		{Spec: k("rc", "", "").Spec, Kernel: k("rc", "linux-image-7.3-amd64", "7.3~rc7-1~exp1"),
			Boot: bootResult{Duration: 6100 * time.Millisecond, Console: oomConsole}, Report: report("fail.log")},
	}
	for _, r := range runs {
		classify(r, g)
	}
	return runs, g
}

func TestClassify(t *testing.T) {
	runs, _ := testRuns(t)
	type verdict struct {
		Result        string
		Infra, Failed []string
	}
	var got []verdict
	for _, r := range runs {
		got = append(got, verdict{r.result(), r.Infra, r.Failed})
	}
	want := []verdict{
		{Result: "pass"},
		{Result: "NOT FETCHED", Infra: []string{"fetch failed: apt-get update for bookworm-security: exit status 100"}},
		{Result: "INFRA", Infra: []string{"no result: the guest stopped before the end while internal/tcp ran (console: [    9.1] Kernel panic - not syncing: sysrq triggered crash)"}},
		{Result: "INFRA", Infra: []string{"timed out after 10m0s while internal/tcp ran"}},
		{Result: "FAIL", Failed: []string{
			"internal/tracer TestSequences", "internal/tracer TestSequences/active", "internal/tracer TestRootOnly",
			"internal/tracer TestCrash", "internal/snapshot (package)",
		}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}
}

func TestMatrix(t *testing.T) {
	runs, g := testRuns(t)
	m := matrix{Runs: runs, Packages: g.Packages, Total: 41 * time.Second,
		Start: time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)}
	golden.Check(t, "matrix.md", []byte(m.markdown()))

	var out bytes.Buffer
	if code := m.summarize(&out); code != 1 {
		t.Errorf("exit status with a failed test = %d, want 1", code)
	}
	golden.Check(t, "summary.txt", out.Bytes())

	// Without the failing kernel only infrastructure failures are left.
	m.Runs = runs[:4]
	if code := m.summarize(&bytes.Buffer{}); code != 2 {
		t.Errorf("exit status with infrastructure failures only = %d, want 2", code)
	}
	m.Runs = runs[:1]
	if code := m.summarize(&bytes.Buffer{}); code != 0 {
		t.Errorf("exit status when all passed = %d, want 0", code)
	}
}

func TestInitScript(t *testing.T) {
	g := guestOptions{
		Packages: []testPackage{
			{ImportPath: "example.org/m/internal/tcp", Rel: "internal/tcp", Binary: "/b/00-tcp.test"},
			{ImportPath: "example.org/m/internal/tracer", Rel: "internal/tracer", Binary: "/b/01-tracer.test"},
		},
		Tcpstat:     "/b/tcpstat",
		Doctor:      true,
		TestTimeout: 5 * time.Minute,
		TestFlags:   []string{"-test.run=Test'Quoted"},
	}
	golden.Check(t, "init.sh", []byte(initScript(g)))
}
