package filter

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/testenv"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// traced is one event as these tests compare them.
type traced struct {
	Sport, Dport uint16
	Old, New     tcp.State
	Kind         tracer.Kind
}

func (e traced) String() string {
	return fmt.Sprintf("%s %d→%d %v→%v", e.Kind, e.Sport, e.Dport, e.Old, e.New)
}

// kernelRun loads the BPF program with f's kernel part, runs work, and
// returns what reached user space from the program and what f's gate let
// through, in order. Ephemeral source ports (above 30000) read as 1.
func kernelRun(t *testing.T, f *Filter, work func()) (read, passed []traced) {
	t.Helper()
	kf, err := f.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := tracer.New(tracer.Options{Filter: kf})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	work()
	g := NewGate(f)
	norm := func(ev *tracer.Event) traced {
		sp := ev.Local.Port()
		if sp > 30000 {
			sp = 1
		}
		return traced{sp, ev.Remote.Port(), ev.Old, ev.New, ev.Kind}
	}
	emit := func(ev *tracer.Event) error { passed = append(passed, norm(ev)); return nil }
	tr.SetDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		var ev tracer.Event
		err := tr.Read(&ev)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		read = append(read, norm(&ev))
		g.Push(&ev, emit)
	}
	g.Flush(emit)
	return read, passed
}

func parseOrFail(t *testing.T, expr string) *Filter {
	t.Helper()
	f, err := Parse(expr)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func lines(evs []traced) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString("\n\t" + e.String())
	}
	return b.String()
}

// TestKernelFilter runs the real program with compiled filters on
// connections to 127.81.0.1, an address of the test's own (other tests'
// traffic runs at the same time), and checks what the kernel let through
// (the filtered-out never reach the ring buffer) and what the gate shows.
func TestKernelFilter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the BPF program")
	}
	ln, err := net.Listen("tcp4", "127.81.0.1:2222")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// connect opens and closes a connection to 2222 (the client closes
	// first), or tries port 9 (refused).
	connect := func(port int) {
		c, err := net.Dial("tcp4", fmt.Sprintf("127.81.0.1:%d", port))
		if port == 9 {
			if err == nil {
				t.Fatal("connect to port 9 succeeded")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		testenv.CloseClientFirst(t, c, s)
	}
	const (
		est = tcp.Established
		ss  = tcp.SynSent
		tw  = tcp.TimeWait
	)
	client := []traced{
		{0, 2222, tcp.Close, ss, tracer.Transition}, {1, 2222, ss, est, tracer.Transition},
		{1, 2222, est, tcp.FinWait1, tracer.Transition}, {1, 2222, tcp.FinWait1, tcp.FinWait2, tracer.Transition},
		{1, 2222, tcp.FinWait2, tw, tracer.Transition},
	}
	refused := []traced{{0, 9, tcp.Close, ss, tracer.Transition}, {1, 9, ss, tcp.Close, tracer.Transition}}
	self := fmt.Sprintf("netns pid:%d and ", os.Getpid())

	t.Run("remote port", func(t *testing.T) {
		// Decided at the first event: the server side never reaches user space.
		read, passed := kernelRun(t, parseOrFail(t, self+"dst 127.81.0.1 and dport = :2222"), func() { connect(2222); connect(9) })
		if !slices.Equal(read, client) || !slices.Equal(passed, client) {
			t.Errorf("read:%s\npassed:%s\nwant:%s", lines(read), lines(passed), lines(client))
		}
	})
	t.Run("local port", func(t *testing.T) {
		// The client's CLOSE → SYN_SENT (port 0) cannot be judged: it waits
		// in the kernel for the next transition, then both go. The refused
		// connect to 9 is dropped at once (dport alone rules it out), and
		// the server's side too.
		f := parseOrFail(t, "dst 127.81.0.1 and sport > :30000 and dport = :2222")
		read, passed := kernelRun(t, f, func() { connect(9); connect(2222) })
		if !slices.Equal(read, client) || !slices.Equal(passed, client) {
			t.Errorf("read:%s\npassed:%s\nwant:%s", lines(read), lines(passed), lines(client))
		}
	})
	t.Run("judged at the next transition", func(t *testing.T) {
		// sport could be 40000 until the refused connect's port is known:
		// its CLOSE → SYN_SENT waits in the kernel for its next
		// transition, which drops both.
		f := parseOrFail(t, "dst 127.81.0.1 and ( sport = :40000 or sport = :2222 )")
		read, passed := kernelRun(t, f, func() { connect(9) })
		if len(read) != 0 || len(passed) != 0 {
			t.Errorf("read:%s\npassed:%s\nwant nothing", lines(read), lines(passed))
		}
	})
	t.Run("connect deferred then passed", func(t *testing.T) {
		f := parseOrFail(t, "dst 127.81.0.1 and ( sport > :30000 or sport = :2222 ) and dport = :9")
		read, passed := kernelRun(t, f, func() { connect(9) })
		if !slices.Equal(read, refused) || !slices.Equal(passed, refused) {
			t.Errorf("read:%s\npassed:%s\nwant:%s", lines(read), lines(passed), lines(refused))
		}
	})
	t.Run("reject all", func(t *testing.T) {
		read, passed := kernelRun(t, parseOrFail(t, "dst 192.0.2.1"), func() { connect(2222); connect(9) })
		if len(read) != 0 || len(passed) != 0 {
			t.Errorf("read:%s\npassed:%s\nwant nothing", lines(read), lines(passed))
		}
	})
	t.Run("prefix set", func(t *testing.T) {
		var terms []string
		for i := range 49 {
			terms = append(terms, fmt.Sprintf("dst 10.%d.0.0/16", i))
		}
		terms = append(terms, "dst 127.81.0.0/16")
		expr := self + "( " + strings.Join(terms, " or ") + " ) and dport = :2222"
		read, _ := kernelRun(t, parseOrFail(t, expr), func() { connect(2222) })
		if !slices.Equal(read, client) {
			t.Errorf("read:%s\nwant:%s", lines(read), lines(client))
		}
	})
}

// TestKernelCgroupFilter: a connection made by a shell in a cgroup of the
// test's own passes whole; the test's own does not, nor the server side
// (judged at accept, where its owner becomes known: what went out before
// is held and dropped by the gate). Where the kernel cannot check cgroups,
// user space does, with the same result.
func TestKernelCgroupFilter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the BPF program and makes a cgroup")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("bash (for /dev/tcp) is missing: scripts/deps.sh installs it")
	}
	e := defaultEnv()
	name := fmt.Sprintf("tcpstat-kfilter-%d", os.Getpid())
	dir := filepath.Join(e.cgroupRoot, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(dir)
	ln, err := net.Listen("tcp4", "127.81.0.2:2223")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f := parseOrFail(t, "cgroup /"+name+" and ( dst 127.81.0.2 or src 127.81.0.2 )")
	read, passed := kernelRun(t, f, func() {
		// The shell joins the cgroup, then connects and closes.
		sh := exec.Command("bash", "-c", fmt.Sprintf("echo $$ > %s/cgroup.procs && exec 3<>/dev/tcp/127.81.0.2/2223 && exec 3>&-", dir))
		if out, err := sh.CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		// The test's own connection.
		c, err := net.Dial("tcp4", "127.81.0.2:2223")
		if err != nil {
			t.Fatal(err)
		}
		s, err = ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		s.Close()
	})
	// The shell's socket: its events, all of them, and nothing else.
	want := []traced{
		{0, 2223, tcp.Close, tcp.SynSent, tracer.Transition}, {1, 2223, tcp.SynSent, tcp.Established, tracer.Transition},
		{1, 2223, tcp.Established, tcp.FinWait1, tracer.Transition}, {1, 2223, tcp.FinWait1, tcp.FinWait2, tracer.Transition},
		{1, 2223, tcp.FinWait2, tcp.TimeWait, tracer.Transition},
	}
	if !slices.Equal(passed, want) {
		t.Errorf("passed:%s\nwant the shell's connection:%s\nread:%s", lines(passed), lines(want), lines(read))
	}
	for _, e := range read {
		if e.Sport != 2223 && e.Dport != 2223 {
			t.Errorf("read an event of another socket: %s", e)
		}
	}
}
