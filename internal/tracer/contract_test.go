package tracer

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/tcp"
)

// churn makes n loopback connections to addr and closes them, the client
// first; a third of the clients reset instead. The server closes only once
// the client's FIN or reset has arrived: a softirq that runs late (a busy
// guest) would otherwise let the server's close go first, and the server's
// end would take other transitions (ESTABLISHED → FIN_WAIT1 → CLOSE on the
// reset, or a simultaneous close).
func churn(t *testing.T, ln int, addr unix.Sockaddr, socket func() int, n int) {
	t.Helper()
	buf := make([]byte, 1)
	for i := range n {
		c := socket()
		must(t, unix.Connect(c, addr))
		a, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
		must(t, err)
		reset := i%3 == 0
		if reset {
			must(t, unix.SetsockoptLinger(c, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}))
		}
		must(t, unix.Close(c))
		switch n, err := unix.Read(a, buf); {
		case reset && !errors.Is(err, unix.ECONNRESET):
			t.Fatalf("read after the client's reset: %d, %v; want ECONNRESET", n, err)
		case !reset && (n != 0 || err != nil):
			t.Fatalf("read after the client's FIN: %d, %v; want EOF", n, err)
		}
		must(t, unix.Close(a))
	}
}

// churnListener listens on 127.0.0.1:port, churns n connections to it and
// closes it: the listener's two transitions and the connections' own.
func churnListener(t *testing.T, port, n int) {
	t.Helper()
	ln, addr := listenLoopback(t, port)
	churn(t, ln, addr, func() int { return mustSocket(t) }, n)
	must(t, unix.Close(ln))
}

// listenLoopback returns a socket listening on 127.0.0.1:port.
func listenLoopback(t *testing.T, port int) (int, *unix.SockaddrInet4) {
	t.Helper()
	return listenLoopbackBacklog(t, port, 64)
}

// listenLoopbackBacklog is listenLoopback with a listen queue of backlog.
func listenLoopbackBacklog(t *testing.T, port, backlog int) (int, *unix.SockaddrInet4) {
	t.Helper()
	addr := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	ln := mustSocket(t)
	must(t, unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1))
	must(t, unix.Bind(ln, addr))
	must(t, unix.Listen(ln, backlog))
	return ln, addr
}

// newNetns makes a network namespace named prefix-pid with lo up, removed
// at the end of the test, and runs each ip command of setup in it; it
// returns the namespace's path and inode.
func newNetns(t *testing.T, prefix string, setup ...[]string) (string, uint32) {
	t.Helper()
	ns := prefix + "-" + strconv.Itoa(os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ip("-n", ns, "link", "set", "lo", "up")
	for _, args := range setup {
		ip(append([]string{"-n", ns}, args...)...)
	}
	var st unix.Stat_t
	must(t, unix.Stat("/run/netns/"+ns, &st))
	return "/run/netns/" + ns, uint32(st.Ino)
}

// Each transition is reported exactly once, whichever copy of the program
// handles it and wherever the second copy runs. The first copy passes over
// one transition in three (the second must take it), and the second copy
// does not see this CPU's handled set one run in two, as when the task is
// preempted and moved to another CPU between the copies (tracepoints run
// preemptible on recent kernels): every socket's transitions still form one
// unbroken chain, none missing and none twice. (With the mark in the socket
// the set is only used for transitions without state: this holds the
// second copy to finding the mark on any CPU.)
func TestEachTransitionOnce(t *testing.T) {
	requireRoot(t)
	path, ino := newNetns(t, "tcpstat-once")
	for i, mode := range stateModes(t) {
		t.Run(mode.name, func(t *testing.T) {
			const conns = 300
			tracer := newTracer(t, Options{
				RingBufferSize: 1 << 24, mapState: mode.mapState, storageOnly: mode.storageOnly,
				skipFirstOneIn: 3, secondElsewhereOneIn: 2,
			})
			socket := func() int { return socketInNetns(t, path) }
			addr := &unix.SockaddrInet4{Port: 29160 + i, Addr: [4]byte{127, 0, 0, 1}}
			ln := socket()
			must(t, unix.Bind(ln, addr))
			must(t, unix.Listen(ln, 64))
			churn(t, ln, addr, socket, conns)
			must(t, unix.Close(ln))

			c := newChains(t, func(ev *Event) bool { return ev.NetNS == ino })
			s := &stream{t: t, tr: tracer}
			s.waitFor("every socket's end", c.follow)
			c.check(conns)
			// The chains are the check: the loss counters also count the
			// host's other traffic, some of it from before the second copy
			// was attached, when the first copy's forced skips are lost.
			must(t, tracer.Detach())
			st, err := tracer.Stats()
			must(t, err)
			if st.Recovered == 0 {
				t.Errorf("the second copy took no transition: %+v", st)
			}
		})
	}
}

// chains follows each socket's transitions, failing the test at the first
// that does not start where the socket's last one ended.
type chains struct {
	t                                  *testing.T
	keep                               func(*Event) bool
	last                               map[uint64]tcp.State
	clients, children, listeners, open int
	// raced counts children that closed in SYN_RECV: when two ACKs of one
	// handshake are taken on two CPUs at once (a retransmitted SYN-ACK
	// answered twice, as a slow guest does), each makes a child and the
	// kernel closes the one that lost the request (tcp_v4_syn_recv_sock's
	// own_req). A real socket, reported as it went.
	raced int
}

func newChains(t *testing.T, keep func(*Event) bool) *chains {
	return &chains{t: t, keep: keep, last: map[uint64]tcp.State{}}
}

// follow takes the next event; it reports whether the listener and every
// socket have come to their end.
func (c *chains) follow(ev *Event) bool {
	if ev.Kind != Transition || !c.keep(ev) {
		return false
	}
	prev, seen := c.last[ev.Cookie]
	switch {
	case !seen && ev.Old == tcp.Close && ev.New == tcp.SynSent:
		c.clients++
	case !seen && ev.Old == tcp.Listen && ev.New == tcp.SynRecv:
		c.children++
	case !seen && ev.Old == tcp.Close && ev.New == tcp.Listen:
		c.listeners++
	case !seen || prev != ev.Old:
		c.t.Fatalf("socket %d: %s → %s after %s (seen before: %v), a transition missing, reported twice or out of order",
			ev.Cookie, ev.Old, ev.New, prev, seen)
	}
	if seen && prev == tcp.SynRecv && ev.New == tcp.Close {
		c.raced++
	}
	c.last[ev.Cookie] = ev.New
	if !seen {
		c.open++
	}
	if ev.New == tcp.Close || ev.New == tcp.TimeWait {
		c.open--
	}
	return c.listeners == 1 && c.open == 0
}

// check fails unless conns connections and one listener were followed:
// a child for each, besides those that lost a handshake's race.
func (c *chains) check(conns int) {
	c.t.Helper()
	if c.raced > 0 {
		c.t.Logf("%d children closed in SYN_RECV (their handshake's other child took the connection)", c.raced)
	}
	if c.clients != conns || c.children-c.raced != conns || c.listeners != 1 {
		c.t.Errorf("%d clients, %d children (%d of them closed in SYN_RECV) and %d listeners, want %d, %d and 1",
			c.clients, c.children, c.raced, c.listeners, conns, conns)
	}
}

// A corrupt sample is counted and skipped: Read goes on, and every event is
// read or counted, exactly.
func TestCorruptSamplesAreCountedAndSkipped(t *testing.T) {
	requireRoot(t)
	const port, conns = 29155, 100
	tracer := newTracer(t, Options{Port: port, corruptOneIn: 4})
	churnListener(t, port, conns)

	// Per connection: 5 client transitions, 5 child transitions, 1 accept;
	// 3, 3 and 1 with a reset; and the listener's 2.
	const resets = (conns + 2) / 3
	const want = conns*11 - resets*4 + 2
	var read uint64
	var st Stats
	seen := map[string]int{} // transitions read, for a message that says which were extra
	deadline := time.Now().Add(10 * time.Second)
	for read+st.Lost() < want && time.Now().Before(deadline) {
		tracer.SetDeadline(time.Now().Add(100 * time.Millisecond))
		var ev Event
		switch err := tracer.Read(&ev); {
		case err == nil:
			read++
			seen[fmt.Sprintf("%v %v→%v", ev.Kind, ev.Old, ev.New)]++
		case !errors.Is(err, os.ErrDeadlineExceeded):
			t.Fatalf("Read after %d events: %v", read, err)
		}
		var err error
		if st, err = tracer.Stats(); err != nil {
			t.Fatal(err)
		}
	}
	checkNoLossBut(t, tracer, st.Corrupt)
	if read+st.Corrupt != want || st.Corrupt == 0 {
		t.Errorf("read %d + corrupt %d = %d, want %d with some corrupt; read by kind: %v; %+v",
			read, st.Corrupt, read+st.Corrupt, want, seen, st)
	}
}

// checkNoLossBut detaches and fails if more than corrupt events were lost.
func checkNoLossBut(t *testing.T, tracer *Tracer, corrupt uint64) {
	t.Helper()
	must(t, tracer.Detach())
	st, err := tracer.Stats()
	must(t, err)
	if st.Lost() != corrupt || st.Corrupt != corrupt {
		t.Errorf("lost events beyond %d corrupt ones: %+v", corrupt, st)
	}
}

// Per-socket state goes with its socket whatever was lost: after a churn
// with the ring buffer overflowing (one page, never read), transitions
// recovered from the first copy and moves to CLOSE dropped, the kernel
// program keeps state for exactly the sockets ss lists in the test's
// network namespace.
func TestStateGoesWithTheSocket(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("churns 3000 connections")
	}
	path, ino := newNetns(t, "tcpstat-state")

	for i, mode := range stateModes(t) {
		t.Run(mode.name, func(t *testing.T) {
			const conns, kept = 3000, 20
			tracer := newTracer(t, Options{
				RingBufferSize: os.Getpagesize(), mapState: mode.mapState, storageOnly: mode.storageOnly,
				skipFirstOneIn: 7, loseOneIn: 5,
			})
			if mapIteratorsRefused(t, tracer) {
				return
			}
			if tracer.SocketStorage() == mode.mapState || tracer.StateInMapFirst() != (!mode.mapState && !mode.storageOnly) {
				t.Fatalf("SocketStorage() = %v, StateInMapFirst() = %v in mode %s",
					tracer.SocketStorage(), tracer.StateInMapFirst(), mode.name)
			}
			socket := func() int { return socketInNetns(t, path) }
			addr := &unix.SockaddrInet4{Port: 29156 + i, Addr: [4]byte{127, 0, 0, 1}}
			ln := socket()
			must(t, unix.Bind(ln, addr))
			must(t, unix.Listen(ln, 64))
			var open []int
			for range kept {
				c := socket()
				must(t, unix.Connect(c, addr))
				a, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
				must(t, err)
				open = append(open, c, a)
			}
			churn(t, ln, addr, socket, conns)

			live := func() int { return liveSockets(t, filepath.Base(path)) }
			if got := waitKept(t, tracer, ino, live); got != 1+2*kept {
				t.Errorf("%d live sockets, want the listener and %d connections", got, kept)
			}
			for _, fd := range append(open, ln) {
				must(t, unix.Close(fd))
			}
			if got := waitKept(t, tracer, ino, live); got != 0 {
				t.Errorf("%d live sockets after closing all", got)
			}
			must(t, tracer.Detach())
			st, err := tracer.Stats()
			must(t, err)
			t.Logf("%+v", st)
			if st.RingBufferFull == 0 || st.forcedLost == 0 || st.Recovered == 0 {
				t.Errorf("the churn forced no loss of some kind: %+v", st)
			}
		})
	}
}

// With every move to CLOSE dropped, the sweep frees the entries those
// sockets left in the sockets map. The sockets stay open in CLOSE, so that
// no newer socket at the same address takes their entries over: with state
// in the map (alone or first), reset children and a refused client; in
// storage only, the reset children's accept hand-overs (their storage stays
// with them, rightly).
func TestSweepFreesStateOfLostCloses(t *testing.T) {
	requireRoot(t)
	path, ino := newNetns(t, "tcpstat-sweep")
	for i, mode := range stateModes(t) {
		t.Run(mode.name, func(t *testing.T) {
			const resets = 5
			tracer := newTracer(t, Options{mapState: mode.mapState, storageOnly: mode.storageOnly, loseOneIn: 1})
			if mapIteratorsRefused(t, tracer) {
				return
			}
			socket := func() int { return socketInNetns(t, path) }
			addr := &unix.SockaddrInet4{Port: 29158 + i, Addr: [4]byte{127, 0, 0, 1}}
			ln := socket()
			must(t, unix.Bind(ln, addr))
			must(t, unix.Listen(ln, 64))
			var held []int
			for range resets {
				c := socket()
				must(t, unix.Connect(c, addr))
				a, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
				must(t, err)
				held = append(held, a)
				must(t, unix.SetsockoptLinger(c, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}))
				must(t, unix.Close(c))
			}
			must(t, unix.Close(ln))
			refused := socket()
			held = append(held, refused)
			if err := unix.Connect(refused, addr); !errors.Is(err, unix.ECONNREFUSED) {
				t.Fatalf("connect to a closed port: %v, want ECONNREFUSED", err)
			}
			defer func() {
				for _, fd := range held {
					unix.Close(fd)
				}
			}()
			want := uint64(resets) // the children's hand-overs
			if !mode.storageOnly {
				want = resets + 1 // the children and the refused client
			}
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				kept, err := tracer.KeptSockets()
				must(t, err)
				inMap := 0
				for _, k := range kept {
					if k.NetNS == ino && k.InMap {
						inMap++
					}
				}
				if inMap == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d sockets map entries left in the namespace after 10 s", inMap)
				}
			}
			// Other sockets of the host lose their CLOSE too: at least ours.
			st, err := tracer.Stats()
			must(t, err)
			if st.Swept < want {
				t.Errorf("swept %d entries, want at least %d", st.Swept, want)
			}
		})
	}
}

// mapIteratorsRefused reports whether this host refuses, to root, the map
// iterators that list and sweep per-socket state (a BPF LSM policy: seen
// on hosts that load every other iterator), after checking that the tracer
// says so as promised: MapIterators', KeptSockets' and the probe's errors
// (doctor's test checks what doctor shows). Any other reason fails the
// test. The kernel matrix's guests run the test in full.
func mapIteratorsRefused(t *testing.T, tracer *Tracer) bool {
	t.Helper()
	err := tracer.MapIterators()
	if err == nil {
		return false
	}
	if !errors.Is(err, ErrNoMapIterators) || !errors.Is(err, unix.EPERM) {
		t.Fatalf("map iterators did not load, and not because the host refused them: %v", err)
	}
	if _, kerr := tracer.KeptSockets(); !errors.Is(kerr, ErrNoMapIterators) {
		t.Errorf("KeptSockets() error = %v, want ErrNoMapIterators", kerr)
	}
	if ok, perr := HaveMapIterators(); ok || !errors.Is(perr, unix.EPERM) {
		t.Errorf("HaveMapIterators() = %v, %v; want the refusal", ok, perr)
	}
	t.Logf("this host refuses BPF map iterators, so per-socket state is neither listed nor swept here: %v", err)
	return true
}

// waitKept waits until the sockets the program keeps state for in netns
// are those live() counts, and returns that count; it fails after 10 s.
func waitKept(t *testing.T, tracer *Tracer, netns uint32, live func() int) int {
	t.Helper()
	var kept, want int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		all, err := tracer.KeptSockets()
		must(t, err)
		kept = 0
		for _, k := range all {
			if k.NetNS == netns {
				kept++
			}
		}
		if want = live(); kept == want {
			return want
		}
		if time.Now().After(deadline) {
			t.Fatalf("the program keeps state for %d sockets, %d live (ss)", kept, want)
		}
	}
}

// liveSockets counts the full TCP sockets ss lists in netns: all but
// timewait mini-sockets and request sockets, which have no state of ours.
func liveSockets(t *testing.T, netns string) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", netns, "ss", "-tanH").Output()
	if err != nil {
		t.Fatalf("ss in %s: %v", netns, err)
	}
	n := 0
	for s := bufio.NewScanner(strings.NewReader(string(out))); s.Scan(); {
		f := strings.Fields(s.Text())
		if len(f) > 0 && f[0] != "TIME-WAIT" && f[0] != "SYN-RECV" {
			n++
		}
	}
	return n
}
