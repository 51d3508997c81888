package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tcpstat/tcpstat/internal/golden"
)

// The logs under testdata/guest are what the guest's /init writes on the
// test port: pass.log from a real 5.10 run, the others made to cover a
// failing subtest, an expected and an unexpected skip, a panic, a TestMain failure, doctor output, a
// VM that died mid-test, test binaries that ended while a test ran (killed,
// their output lost, an exit status) and output glued to a marker.
func TestReadGuestOutput(t *testing.T) {
	logs, err := filepath.Glob("testdata/guest/*.log")
	if err != nil || len(logs) == 0 {
		t.Fatalf("no guest logs: %v", err)
	}
	for _, log := range logs {
		name := strings.TrimSuffix(filepath.Base(log), ".log")
		t.Run(name, func(t *testing.T) {
			rep, err := readGuestOutput(context.Background(), log)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(struct {
				*guestReport
				Doctor string `json:"doctor"`
			}{rep, rep.Doctor}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, "guest/"+name+".golden", append(got, '\n'))
		})
	}
}

func TestReadGuestOutputMissingLog(t *testing.T) {
	rep, err := readGuestOutput(context.Background(), filepath.Join(t.TempDir(), "tests.log"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&guestReport{}, rep, cmp.AllowUnexported(packageResult{})); diff != "" {
		t.Errorf("report of a missing log (-want +got):\n%s", diff)
	}
}

func FuzzParseGuestOutput(f *testing.F) {
	for _, log := range []string{"pass", "fail", "died", "glued", "killed"} {
		data, err := os.ReadFile(filepath.Join("testdata/guest", log+".log"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rep := parseGuestOutput(data)
		for _, p := range rep.Packages {
			if p.Exit != 0 && !p.Finished {
				t.Errorf("package %q has exit status %d but never finished", p.Package, p.Exit)
			}
		}
	})
}
