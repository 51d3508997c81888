package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// topTracer is `tcpstat top -b --json`: the live table alone, a frame of
// every row each 2 s. It prints no transitions: count reads the table's
// own counts from the last frame.
type topTracer struct {
	bin     string
	profile bool // write a CPU profile beside the output (OUT.pprof)
}

func (topTracer) name() string       { return "tcpstat top -b --json" }
func (topTracer) programs() []string { return tcpstatPrograms }

func (t topTracer) start(out string) (*exec.Cmd, time.Duration, error) {
	f, err := os.Create(out)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	args := []string{"top", "-b", "--json"}
	if t.profile {
		args = append(args, "--cpuprofile", out+".pprof")
	}
	cmd := exec.Command(t.bin, args...)
	cmd.Stdout, cmd.Stderr = f, os.Stderr
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	// The first frame comes once the table is live and older sockets'
	// owners are known.
	return waitStarted(cmd, begin, 30*time.Second, func() bool {
		st, err := os.Stat(out)
		return err == nil && st.Size() > 0
	})
}

// count takes the events the table applied and lost from the last frame
// (a frame is one line of every row: megabytes).
func (topTracer) count(out string, _ portRange, r *result) error {
	f, err := os.Open(out)
	if err != nil {
		return err
	}
	defer f.Close()
	var frame struct {
		Events uint64 `json:"events"`
		Lost   uint64 `json:"lost"`
	}
	frames := 0
	for dec := json.NewDecoder(bufio.NewReader(f)); dec.More(); frames++ {
		if err := dec.Decode(&frame); err != nil {
			return fmt.Errorf("frame %d: %w", frames+1, err)
		}
	}
	if frames == 0 {
		return errors.New("no frame")
	}
	r.tableOnly, r.tableEvents, r.lostReported, r.hasSummary = true, frame.Events, frame.Lost, true
	return nil
}
