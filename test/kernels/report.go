package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// classify sorts what happened to r into test failures and
// infrastructure failures; the two are never mixed up, and a kernel that
// was not tested never counts as a pass.
func classify(r *kernelRun, g guestOptions) {
	if r.FetchErr != nil {
		r.Infra = append(r.Infra, "fetch failed: "+r.FetchErr.Error())
		return
	}
	rep := r.Report
	if rep == nil {
		rep = &guestReport{}
		r.Report = rep
	}
	if r.Kernel != nil {
		r.Kernel.Release = rep.Release
	}
	for _, p := range rep.Packages {
		for _, t := range p.Tests {
			if t.Status == statusFail {
				r.Failed = append(r.Failed, p.Package+" "+t.Name)
			}
		}
	}
	console := consoleLines(r.Boot.Console)
	r.OOMKills = oomKills(console)
	var running string
	for _, p := range rep.Packages {
		if !p.Finished {
			running = p.Package
		}
	}
	during := ""
	if running != "" {
		during = " while " + running + " ran"
	}
	switch {
	case r.Boot.ExitErr != nil:
		r.Infra = append(r.Infra, r.Boot.ExitErr.Error())
	case r.Boot.TimedOut:
		r.Infra = append(r.Infra, fmt.Sprintf("timed out after %s%s%s", r.Boot.Duration.Round(time.Second), during, kernelTrouble(console)))
	case rep.Release == "":
		r.Infra = append(r.Infra, "no result: the guest died before /init reported"+consoleHint(console))
	case !rep.Done:
		r.Infra = append(r.Infra, "no result: the guest stopped before the end"+during+consoleHint(console))
	}
	if rep.Done && len(rep.Packages) != len(g.Packages) {
		r.Infra = append(r.Infra, fmt.Sprintf("the guest ran %d of %d test packages", len(rep.Packages), len(g.Packages)))
	}
}

// consoleLines is the kernel console log as lines, without carriage
// returns or a trailing empty line; nil if it cannot be read.
func consoleLines(path string) []string {
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(strings.ReplaceAll(string(data), "\r", ""), "\n"), "\n")
}

// consoleHint quotes the kernel's first complaint, or its last words,
// when the guest died.
func consoleHint(console []string) string {
	if hint := kernelTrouble(console); hint != "" {
		return hint
	}
	if len(console) == 0 {
		return " (no kernel console output)"
	}
	return " (console ends: " + strings.TrimSpace(console[len(console)-1]) + ")"
}

// oomKills returns the kernel console's lines that say the OOM killer
// killed a process: a test binary killed so has no output of its own.
func oomKills(console []string) []string {
	var kills []string
	for _, l := range console {
		if strings.Contains(l, "Out of memory") {
			kills = append(kills, strings.TrimSpace(l))
		}
	}
	return kills
}

// kernelTrouble quotes the first panic, Oops, BUG (soft lockups among
// them) or RCU stall on the kernel console, or returns "".
func kernelTrouble(console []string) string {
	for _, l := range console {
		for _, sign := range []string{"Kernel panic", "BUG:", "Oops", "detected stalls"} {
			if strings.Contains(l, sign) {
				return " (console: " + strings.TrimSpace(l) + ")"
			}
		}
	}
	return ""
}

// writeKernelArtifacts keeps the doctor output and the failing tests'
// output next to the logs QEMU wrote.
func writeKernelArtifacts(r *kernelRun) error {
	if r.Report == nil {
		return nil
	}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", r.dir, err)
	}
	if r.Report.HasDoc {
		text := fmt.Sprintf("$ tcpstat doctor   # %s, exit status %d\n%s", r.Report.Release, r.Report.DoctorRC, r.Report.Doctor)
		if err := os.WriteFile(filepath.Join(r.dir, "doctor.txt"), []byte(text), 0o644); err != nil {
			return fmt.Errorf("write doctor output: %w", err)
		}
	}
	if r.Kernel != nil && r.Kernel.Config != "" {
		if data, err := os.ReadFile(r.Kernel.Config); err == nil {
			if err := os.WriteFile(filepath.Join(r.dir, "config"), data, 0o644); err != nil {
				return fmt.Errorf("keep kernel config: %w", err)
			}
		}
	}
	var b strings.Builder
	for _, p := range r.Report.Packages {
		for _, t := range p.Tests {
			if t.Status == statusFail || t.Status == statusNoResult {
				fmt.Fprintf(&b, "=== %s %s: %s\n%s\n\n", p.Package, t.Name, t.Status, strings.Join(t.Output, "\n"))
			}
		}
	}
	if b.Len() > 0 {
		if err := os.WriteFile(filepath.Join(r.dir, "failures.txt"), []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("write failures: %w", err)
		}
	}
	data, err := json.MarshalIndent(r.summary(), "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	return os.WriteFile(filepath.Join(r.dir, "results.json"), data, 0o644)
}

type runSummary struct {
	Kernel   string       `json:"kernel"`
	Debian   *kernel      `json:"debian,omitempty"`
	Result   string       `json:"result"`
	Infra    []string     `json:"infrastructure_failures,omitempty"`
	Failed   []string     `json:"failed_tests,omitempty"`
	Retries  []string     `json:"boot_retries,omitempty"`
	OOMKills []string     `json:"oom_kills,omitempty"`
	FetchSec float64      `json:"fetch_seconds"`
	BootSec  float64      `json:"boot_and_tests_seconds"`
	Guest    *guestReport `json:"guest,omitempty"`
}

func (r *kernelRun) summary() runSummary {
	return runSummary{
		Kernel: r.Spec.Label, Debian: r.Kernel, Result: r.result(), Infra: r.Infra, Failed: r.Failed, Retries: r.Retries,
		OOMKills: r.OOMKills, FetchSec: r.Fetch.Seconds(), BootSec: r.Boot.Duration.Seconds(), Guest: r.Report,
	}
}

// result is the one-word verdict for a kernel.
func (r *kernelRun) result() string {
	switch {
	case len(r.Failed) > 0:
		return "FAIL"
	case r.FetchErr != nil:
		return "NOT FETCHED"
	case len(r.Infra) > 0:
		return "INFRA"
	}
	return "pass"
}

// matrix is the whole run, for people (markdown) and tools (JSON).
type matrix struct {
	Runs     []*kernelRun
	Packages []testPackage
	Start    time.Time
	Total    time.Duration
}

func (m matrix) write(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "matrix.md"), []byte(m.markdown()), 0o644); err != nil {
		return fmt.Errorf("write matrix: %w", err)
	}
	sums := make([]runSummary, len(m.Runs))
	for i, r := range m.Runs {
		sums[i] = r.summary()
	}
	data, err := json.MarshalIndent(sums, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, "results.json"), data, 0o644)
}

func (m matrix) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Kernel test matrix\n\n")
	fmt.Fprintf(&b, "`make test-kernels`, %s, %d test packages, %s in all. Each kernel is Debian's own build, booted under QEMU (TCG, 2 vCPUs, 2 GiB) with the static test binaries in an initramfs; the tests run as root.\n\n",
		m.Start.UTC().Format("2006-01-02 15:04 MST"), len(m.Packages), m.Total.Round(time.Second))
	b.WriteString("| kernel | Debian package | version | uname -r | result | tests | boot + tests | tcpstat doctor |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, r := range m.Runs {
		pkg, ver, rel := "—", "—", "—"
		if r.Kernel != nil {
			pkg, ver = "`"+r.Kernel.Package+"`", r.Kernel.Version
			if r.Kernel.Release != "" {
				rel = r.Kernel.Release
			}
		}
		doctor := "—"
		if r.Report != nil && r.Report.HasDoc {
			doctor = fmt.Sprintf("[exit %d](%s/doctor.txt)", r.Report.DoctorRC, r.Spec.Label)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %.1f s | %s |\n",
			r.Spec.Label, pkg, ver, rel, r.result(), r.counts(), r.Boot.Duration.Seconds(), doctor)
	}
	b.WriteString("\n## Tests\n\n| test |")
	for _, r := range m.Runs {
		fmt.Fprintf(&b, " %s |", r.Spec.Label)
	}
	b.WriteString("\n|---|")
	for range m.Runs {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, name := range m.testNames() {
		fmt.Fprintf(&b, "| %s |", name)
		for _, r := range m.Runs {
			fmt.Fprintf(&b, " %s |", r.status(name))
		}
		b.WriteString("\n")
	}
	var problems strings.Builder
	for _, r := range m.Runs {
		for _, f := range r.Failed {
			fmt.Fprintf(&problems, "- %s: test failed: %s\n", r.Spec.Label, f)
		}
		for _, i := range r.Infra {
			fmt.Fprintf(&problems, "- %s: %s\n", r.Spec.Label, i)
		}
		for _, i := range r.Retries {
			fmt.Fprintf(&problems, "- %s: %s\n", r.Spec.Label, i)
		}
		for _, k := range r.OOMKills {
			fmt.Fprintf(&problems, "- %s: kernel console: %s\n", r.Spec.Label, k)
		}
		if r.Kernel != nil {
			for _, m := range r.Kernel.Missing {
				fmt.Fprintf(&problems, "- %s: module %s is not packaged (built in, or not in this kernel)\n", r.Spec.Label, m)
			}
		}
		if r.Report != nil {
			for _, w := range r.Report.Warnings {
				fmt.Fprintf(&problems, "- %s: guest warning: %s\n", r.Spec.Label, w)
			}
			if r.Report.HasDoc && r.Report.DoctorRC != 0 {
				fmt.Fprintf(&problems, "- %s: tcpstat doctor exited with status %d\n", r.Spec.Label, r.Report.DoctorRC)
			}
		}
	}
	if problems.Len() > 0 {
		b.WriteString("\n## Problems\n\n" + problems.String())
	}
	return b.String()
}

// testNames lists every top-level test seen on any kernel, as
// "package Test"; subtests show up in failures.txt when they fail.
func (m matrix) testNames() []string {
	seen := map[string]bool{}
	var names []string
	for _, r := range m.Runs {
		if r.Report == nil {
			continue
		}
		for _, p := range r.Report.Packages {
			for _, t := range p.Tests {
				n := p.Package + " " + t.Name
				if !strings.Contains(t.Name, "/") && !seen[n] {
					seen[n] = true
					names = append(names, n)
				}
			}
		}
	}
	sort.Strings(names)
	return names
}

func (r *kernelRun) status(name string) string {
	if r.Report != nil {
		for _, p := range r.Report.Packages {
			for _, t := range p.Tests {
				if p.Package+" "+t.Name == name {
					if t.Status == statusFail {
						return "**FAIL**"
					}
					return t.Status
				}
			}
		}
	}
	return "—"
}

// counts are over top-level tests.
func (r *kernelRun) counts() (c testCounts) {
	if r.Report == nil {
		return c
	}
	for _, p := range r.Report.Packages {
		for _, t := range p.Tests {
			if strings.Contains(t.Name, "/") {
				continue
			}
			switch t.Status {
			case statusPass:
				c.pass++
			case statusFail:
				c.fail++
			case statusSkip:
				c.skip++
			case statusNoResult:
				c.noResult++
			}
		}
	}
	return c
}

type testCounts struct{ pass, fail, skip, noResult int }

func (c testCounts) String() string {
	s := fmt.Sprintf("%d passed, %d failed, %d skipped", c.pass, c.fail, c.skip)
	if c.noResult > 0 {
		s += fmt.Sprintf(", %d without result", c.noResult)
	}
	return s
}

// summarize prints the verdict per kernel and returns the exit status.
func (m matrix) summarize(w io.Writer) int {
	failed, infra := false, false
	for _, r := range m.Runs {
		fmt.Fprintf(w, "%-7s %-12s %-28s %6.1fs  %s\n",
			r.Spec.Label, r.result(), r.releaseOrPackage(), r.Boot.Duration.Seconds(), r.counts())
		for _, f := range r.Failed {
			fmt.Fprintf(w, "        FAIL %s on %s\n", f, r.Spec.Label)
			failed = true
		}
		for _, i := range r.Infra {
			fmt.Fprintf(w, "        INFRA %s: %s\n", r.Spec.Label, i)
			infra = true
		}
		for _, i := range r.Retries {
			fmt.Fprintf(w, "        retried %s: %s\n", r.Spec.Label, i)
		}
		for _, k := range r.OOMKills {
			fmt.Fprintf(w, "        console %s: %s\n", r.Spec.Label, k)
		}
	}
	fmt.Fprintf(w, "kernels: %s in all; matrix and logs in the output directory\n", m.Total.Round(time.Second))
	switch {
	case failed:
		return 1
	case infra:
		return 2
	}
	return 0
}

func (r *kernelRun) releaseOrPackage() string {
	if r.Kernel == nil {
		return "-"
	}
	if r.Kernel.Release != "" {
		return r.Kernel.Release
	}
	return r.Kernel.Package
}
