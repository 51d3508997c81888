package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/tcpstat/tcpstat/internal/testenv"
	"os"
	"strconv"
	"strings"
)

// Test outcomes as the matrix shows them.
const (
	statusPass     = "pass"
	statusFail     = "fail"
	statusSkip     = "skip"
	statusNoResult = "no result" // started, never finished: the VM died or timed out
)

// testResult is one test (or subtest) in one kernel.
type testResult struct {
	Name   string   `json:"name"`
	Status string   `json:"status"`
	Output []string `json:"output,omitempty"` // kept for failures only
}

// packageResult is one test binary's run in one kernel.
type packageResult struct {
	Package  string        `json:"package"` // directory in the module, as the guest names it
	Finished bool          `json:"finished"`
	Exit     int           `json:"exit"`
	Tests    []*testResult `json:"tests"`
	raw      []byte
}

// guestReport is everything the guest said on the test port.
type guestReport struct {
	Release  string           `json:"release"`
	Packages []*packageResult `json:"packages"`
	Doctor   string           `json:"-"`
	DoctorRC int              `json:"doctor_exit"`
	HasDoc   bool             `json:"doctor_ran"`
	Warnings []string         `json:"warnings,omitempty"`
	Done     bool             `json:"done"`
}

// parseGuestOutput splits the test port log into package sections by the
// /init markers. Output without a trailing newline can be followed by a
// marker on the same line, so markers are found anywhere in a line.
func parseGuestOutput(data []byte) *guestReport {
	rep := &guestReport{}
	var cur *packageResult
	var doctor *bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		text, cmd, isMarker := strings.Cut(line, marker)
		if !isMarker {
			text = line
		}
		if text != "" || !isMarker {
			switch {
			case cur != nil:
				cur.raw = append(append(cur.raw, text...), '\n')
			case doctor != nil:
				doctor.WriteString(text + "\n")
			}
		}
		if !isMarker {
			continue
		}
		verb, arg, _ := strings.Cut(strings.TrimRight(cmd, "\r"), " ")
		switch verb {
		case "uname":
			rep.Release = arg
		case "warn":
			rep.Warnings = append(rep.Warnings, arg)
		case "begin":
			cur = &packageResult{Package: arg}
			rep.Packages = append(rep.Packages, cur)
		case "end":
			pkg, rc, _ := strings.Cut(arg, " ")
			if cur != nil && cur.Package == pkg {
				cur.Finished = true
				cur.Exit, _ = strconv.Atoi(rc)
			}
			cur = nil
		case "doctor-begin":
			doctor = &bytes.Buffer{}
		case "doctor-end":
			if doctor != nil {
				rep.Doctor = doctor.String()
				rep.HasDoc = true
				rep.DoctorRC, _ = strconv.Atoi(arg)
			}
			doctor = nil
		case "done":
			rep.Done = true
		}
	}
	return rep
}

// GuestSkipMarker is what a test's skip message says when the kernel
// matrix's guest cannot give it what it needs (internal/testenv). Any other
// skip in the guest counts as a failure.
const GuestSkipMarker = testenv.Marker

func expectedSkip(output []string) bool {
	for _, l := range output {
		if strings.Contains(l, GuestSkipMarker) {
			return true
		}
	}
	return false
}

// test2jsonEvent is the part of `go tool test2json` output used here.
type test2jsonEvent struct {
	Action string
	Test   string
	Output string
}

// decodeTests converts a package's framed -test.v=test2json output into
// per-test results with `go tool test2json`, which handles parallel and
// nested tests exactly as `go test -json` would.
func decodeTests(ctx context.Context, p *packageResult) error {
	cmd := execGo(ctx, "tool", "test2json", "-p", p.Package)
	cmd.Stdin = bytes.NewReader(p.raw)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("decode test output of %s: %w: %s", p.Package, err, stderr.String())
	}
	byName := map[string]*testResult{}
	var pkgOutput []string
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var ev test2jsonEvent
		if err := dec.Decode(&ev); err != nil {
			return fmt.Errorf("decode test2json output of %s: %w", p.Package, err)
		}
		if ev.Test == "" {
			if ev.Action == "output" {
				pkgOutput = append(pkgOutput, strings.TrimRight(ev.Output, "\n"))
			}
			continue
		}
		t := byName[ev.Test]
		if t == nil {
			t = &testResult{Name: ev.Test, Status: statusNoResult}
			byName[ev.Test] = t
			p.Tests = append(p.Tests, t)
		}
		switch ev.Action {
		case "pass", "fail", "skip":
			t.Status = ev.Action
		case "output":
			t.Output = append(t.Output, strings.TrimRight(ev.Output, "\n"))
		}
	}
	failed := false
	for _, t := range p.Tests {
		if t.Status == statusNoResult && p.Finished {
			// The binary exited while the test ran: a panic, os.Exit, a
			// signal, or its report was lost on the way out.
			t.Status = statusFail
			t.Output = append(t.Output, exitNote(p.Exit))
		}
		if t.Status == statusSkip && !expectedSkip(t.Output) {
			// The guest runs every test as root: a skip there hides a test
			// that never ran, unless it says the guest cannot have what it needs.
			t.Status = statusFail
			t.Output = append([]string{"unexpected skip (only a skip that names " + strconv.Quote(GuestSkipMarker) + " is expected in the guest):"}, t.Output...)
		}
		if t.Status == statusFail {
			failed = true
		}
		if t.Status == statusPass || t.Status == statusSkip {
			t.Output = nil
		}
	}
	if p.Finished && p.Exit != 0 && !failed {
		// Failed outside any test: TestMain, init, a crash before the first test.
		p.Tests = append(p.Tests, &testResult{Name: "(package)", Status: statusFail, Output: tail(pkgOutput, 40)})
	}
	if !p.Finished && len(p.Tests) == 0 {
		p.Tests = append(p.Tests, &testResult{Name: "(package)", Status: statusNoResult, Output: tail(pkgOutput, 40)})
	}
	return nil
}

// exitNote says how a test binary ended while one of its tests had not
// reported, so that a failure with no output of its own still says why.
func exitNote(status int) string {
	switch {
	case status == 0:
		return "(the test binary exited with status 0 but this test never reported: its output was lost on the test port)"
	case status > 128:
		return fmt.Sprintf("(the test binary was killed by signal %d while this test ran; the kernel console says whether the OOM killer did it)", status-128)
	}
	return fmt.Sprintf("(the test binary exited with status %d while this test ran)", status)
}

func tail(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}

// readGuestOutput parses the test port log at path; a missing log is an
// empty report (QEMU never started).
func readGuestOutput(ctx context.Context, path string) (*guestReport, error) {
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("read test output: %w", err)
	}
	rep := parseGuestOutput(data)
	for _, p := range rep.Packages {
		if err := decodeTests(ctx, p); err != nil {
			return nil, err
		}
	}
	return rep, nil
}
