package livetable

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"testing"

	"github.com/tcpstat/tcpstat/internal/loadgen"
)

// childSpec is what a helper process runs: the test binary started again
// with TCPSTAT_LOADGEN set, so workloads live in processes of their own
// (their own owners, their own descriptor limits).
type childSpec struct {
	Mode   string // "mix" or "hold"
	Mix    loadgen.Mix
	Server netip.Addr // hold
	Client netip.Addr // hold
	N      int        // hold: connections
}

const childEnv = "TCPSTAT_LOADGEN"

func TestMain(m *testing.M) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		os.Exit(m.Run())
	}
	if err := runChild(spec); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runChild(text string) error {
	var spec childSpec
	if err := json.Unmarshal([]byte(text), &spec); err != nil {
		return fmt.Errorf("read child spec: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	switch spec.Mode {
	case "mix":
		st, err := loadgen.RunMix(ctx, spec.Mix)
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(st)
	case "hold":
		// Hold until the parent closes our stdin.
		go func() {
			io.Copy(io.Discard, os.Stdin)
			cancel()
		}()
		return loadgen.Hold(ctx, spec.Server, spec.Client, spec.N, func() { fmt.Println("ready") })
	}
	return fmt.Errorf("unknown child mode %q", spec.Mode)
}

// child is a running helper process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startChild(t testing.TB, spec childSpec) *child {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(func() {
		c.stdin.Close()
		c.cmd.Process.Kill()
		c.cmd.Wait()
	})
	return c
}

// ready waits for a holding child's "ready" line.
func (c *child) ready() error {
	line, err := c.out.ReadString('\n')
	if err != nil {
		return fmt.Errorf("child %d did not get ready: %w", c.cmd.Process.Pid, err)
	}
	if line != "ready\n" {
		return fmt.Errorf("child %d said %q, want ready", c.cmd.Process.Pid, line)
	}
	return nil
}

// stop tells a holding child to close its connections and exit, and waits.
func (c *child) stop() error {
	c.stdin.Close()
	return c.cmd.Wait()
}

// result waits for a mix child to finish and returns its stats.
func (c *child) result() (loadgen.Stats, error) {
	var st loadgen.Stats
	err := json.NewDecoder(c.out).Decode(&st)
	if werr := c.cmd.Wait(); err == nil {
		err = werr
	}
	return st, err
}
