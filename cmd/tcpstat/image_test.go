package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpstat/tcpstat/internal/testenv"
)

// The image as docs/deploy.md runs it on a machine like the project's
// ("Running the image here"): podman with runc, the host's nofile limit
// and a lower nproc, every capability dropped but the sidecar's, the
// image's non-root user, the host's tracefs read-only.
const imageAddr = "127.86.41.1"

var imageRunFlags = []string{"--runtime", "runc", "--network", "host",
	"--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096",
	"--cap-drop", "ALL", "--cap-add", "BPF,PERFMON,SYS_PTRACE,DAC_READ_SEARCH",
	"-v", "/sys/kernel/tracing:/sys/kernel/tracing:ro"}

// buildImage runs make image with a tag of the test's own and removes the
// image when the test ends.
func buildImage(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a rootful container that loads the BPF program")
	}
	for _, tool := range []string{"podman", "runc", "setcap", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run scripts/deps.sh", tool)
		}
	}
	image := "localhost/tcpstat-test:" + strconv.Itoa(os.Getpid())
	out, err := exec.Command("make", "-C", "../..", "image", "IMAGE="+image).CombinedOutput()
	t.Cleanup(func() { exec.Command("podman", "rmi", "-f", image).Run() })
	if err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	return image
}

// podmanRun starts tcpstat in a container named for the test, removed when
// it ends.
func podmanRun(t *testing.T, name string, flags []string, args ...string) (*exec.Cmd, *syncBuffer, *syncBuffer) {
	t.Helper()
	cmd := exec.Command("podman", append(append(append([]string{"run", "--rm", "--name", name}, imageRunFlags...), flags...), args...)...)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("podman", "rm", "-f", "-t", "0", name).Run()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, &stdout, &stderr
}

// TestImage: with deploy/seccomp-tcpstat.json the image's tcpstat, run as
// its user with the sidecar's capabilities, traces a loopback connection
// the test makes on the host, every transition of both ends and the
// accept with its owner (this process, by the node's pid); with podman's
// default profile it stops with one line naming the seccomp filter.
func TestImage(t *testing.T) {
	testenv.SkipInMinimalGuest(t, "no podman in the guest")
	image := buildImage(t)
	name := "tcpstat-test-" + strconv.Itoa(os.Getpid())

	t.Run("default profile", func(t *testing.T) {
		cmd, _, stderr := podmanRun(t, name+"-default", nil, image, "watch", "--json", "--port", "7461")
		err := cmd.Wait()
		msg := strings.TrimSpace(stderr.String())
		want := "tcpstat has the capabilities tracing needs but runs under a seccomp filter, which may refuse bpf() and perf_event_open()"
		if err == nil || !strings.Contains(msg, want) || strings.Count(msg, "\n") != 0 {
			t.Errorf("exit %v, stderr %q; want one line saying %q", err, msg, want)
		}
	})

	t.Run("seccomp-tcpstat.json", func(t *testing.T) {
		const port = 7462
		dir := t.TempDir()
		os.Chmod(dir, 0o777)
		profile, err := filepath.Abs(seccompProfile)
		if err != nil {
			t.Fatal(err)
		}
		cmd, stdout, stderr := podmanRun(t, name, []string{"--security-opt", "seccomp=" + profile, "-v", dir + ":/ready"},
			image, "watch", "--json", "--port", strconv.Itoa(port), "--ready-file", "/ready/ready")
		waitReady(t, filepath.Join(dir, "ready"), stderr)
		// The container's process runs as the image's user.
		out, err := exec.Command("podman", "top", name, "user").CombinedOutput()
		if f := strings.Fields(string(out)); err != nil || len(f) != 2 || f[1] != "65532" {
			t.Errorf("podman top: %v: %q; want the one process running as 65532", err, out)
		}
		oneConnection(t, net.JoinHostPort(imageAddr, strconv.Itoa(port)))
		waitUntil(t, 10*time.Second, "listener's close in watch's output:\n"+stdout.String(), func() bool {
			return strings.Contains(stdout.String(), `"old_state":"LISTEN","new_state":"CLOSE"`)
		})
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("watch in the container: %v; stderr: %s", err, stderr.String())
		}
		if w := strings.TrimSpace(stderr.String()); strings.Contains(w, "warning") {
			t.Errorf("warnings: %s", w)
		}
		transitions := map[string]int{}
		accepts := 0
		for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
			var ev struct {
				Type  string `json:"type"`
				Saddr string `json:"saddr"`
				Daddr string `json:"daddr"`
				Old   string `json:"old_state"`
				New   string `json:"new_state"`
				PID   int    `json:"pid"`
				Comm  string `json:"comm"`
				Owner string `json:"owner_source"`
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("not JSON: %v: %s", err, line)
			}
			if ev.Saddr != imageAddr && ev.Daddr != imageAddr {
				continue
			}
			switch ev.Type {
			case "transition":
				transitions[ev.Old+"→"+ev.New]++
			case "accept":
				accepts++
				if ev.PID != os.Getpid() || ev.Comm != comm(t) || ev.Owner != "accept" || ev.Saddr != imageAddr {
					t.Errorf("accept by %d %q, want this process %d %q: %s", ev.PID, ev.Comm, os.Getpid(), comm(t), line)
				}
			}
		}
		// The listener, the client (which closes first) and the
		// accepted socket, each transition once.
		want := map[string]int{
			"CLOSE→LISTEN": 1, "LISTEN→CLOSE": 1,
			"CLOSE→SYN_SENT": 1, "SYN_SENT→ESTABLISHED": 1, "ESTABLISHED→FIN_WAIT1": 1, "FIN_WAIT1→FIN_WAIT2": 1, "FIN_WAIT2→TIME_WAIT": 1,
			"LISTEN→SYN_RECV": 1, "SYN_RECV→ESTABLISHED": 1, "ESTABLISHED→CLOSE_WAIT": 1, "CLOSE_WAIT→LAST_ACK": 1, "LAST_ACK→CLOSE": 1,
		}
		if fmt.Sprint(transitions) != fmt.Sprint(want) || accepts != 1 {
			t.Errorf("transitions %v and %d accepts, want %v and 1:\n%s", transitions, accepts, want, stdout.String())
		}
	})
}

// comm is this process's name, as the kernel gives it to the tracer.
func comm(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
