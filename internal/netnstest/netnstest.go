// Package netnstest makes network namespaces for tests, as ip netns does,
// and runs code inside them: sockets a test makes there belong to the
// namespace and can be used from any goroutine afterwards.
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/snapshot"
)

// NS is a named network namespace under /run/netns with lo up.
type NS struct {
	Name  string
	Path  string
	Inode uint32
}

var seq atomic.Uint32

// New makes a namespace named after the test process (ip netns add) and
// deletes it when the test ends. It needs root and iproute2.
func New(t testing.TB) *NS {
	t.Helper()
	name := fmt.Sprintf("tcpstat-test-%d-%d", os.Getpid(), seq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	// ip(8) names namespaces under /run/netns (Debian's build), which
	// is /var/run/netns where /var/run links to /run; the kernel matrix's
	// guest has /run alone.
	ns := &NS{Name: name, Path: filepath.Join("/run/netns", name)}
	if _, err := os.Stat(ns.Path); err != nil {
		ns.Path = filepath.Join("/var/run/netns", name)
	}
	t.Cleanup(func() { ns.Delete() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s link set lo up: %v: %s", name, err, out)
	}
	var st unix.Stat_t
	if err := unix.Stat(ns.Path, &st); err != nil {
		t.Fatal(err)
	}
	ns.Inode = uint32(st.Ino)
	return ns
}

// Delete removes the namespace's name; it ends when nothing else holds it.
// Deleting twice is harmless.
func (n *NS) Delete() {
	exec.Command("ip", "netns", "delete", n.Name).Run()
}

// Do runs fn on an OS thread that joined the namespace at path, and that
// ends with fn (snapshot.OnDiscardedThread), so no other goroutine ever
// runs in the wrong namespace.
func Do(path string, fn func() error) error {
	var err error
	snapshot.OnDiscardedThread(func() {
		fd, oerr := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if oerr != nil {
			err = fmt.Errorf("open %s: %w", path, oerr)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			err = fmt.Errorf("join %s: %w", path, err)
			return
		}
		err = fn()
	})
	return err
}

// Do runs fn inside the namespace (see the function Do).
func (n *NS) Do(fn func() error) error { return Do(n.Path, fn) }

// Process is a process sleeping in a namespace of its own (unshare -n),
// reachable only through /proc/PID/ns/net.
type Process struct {
	Cmd   *exec.Cmd
	PID   int
	Path  string
	Inode uint32
}

// Unshared starts `unshare -n` with lo up and a sleep, killed when the
// test ends.
func Unshared(t testing.TB) *Process {
	t.Helper()
	cmd := exec.Command("unshare", "-n", "sh", "-c", "ip link set lo up && exec sleep 600")
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare -n: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	p := &Process{Cmd: cmd, PID: cmd.Process.Pid, Path: "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/net"}
	var self unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil {
		t.Fatal(err)
	}
	// unshare switches namespaces after it started: wait for it, and for
	// the sleep that follows lo coming up.
	for range 500 {
		var st unix.Stat_t
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/comm")
		if unix.Stat(p.Path, &st) == nil && st.Ino != self.Ino && string(comm) == "sleep\n" {
			p.Inode = uint32(st.Ino)
			return p
		}
		unix.Nanosleep(&unix.Timespec{Nsec: 10e6}, nil)
	}
	t.Fatalf("unshare -n: process %d never reached its own namespace", p.PID)
	return nil
}

// Kill ends the process and waits for it: its namespace goes with it.
func (p *Process) Kill() {
	p.Cmd.Process.Kill()
	p.Cmd.Wait()
}
