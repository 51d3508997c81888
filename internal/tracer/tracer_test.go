package tracer

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/tcp"
)

// These tests load the real kernel program and make real connections on
// loopback (or in a network namespace they create), then assert the exact
// transitions, owners and close reasons the kernel produced.

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the BPF program (CAP_BPF, CAP_PERFMON)")
	}
}

func newTracer(t *testing.T, opts Options) *Tracer {
	t.Helper()
	tr, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// stream keeps every event read so far.
type stream struct {
	t      *testing.T
	tr     *Tracer
	events []Event
}

// waitFor reads events until one matches, failing after 10 s.
func (s *stream) waitFor(what string, match func(*Event) bool) {
	s.t.Helper()
	for _, ev := range s.events {
		if match(&ev) {
			return
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.tr.SetDeadline(deadline)
		var ev Event
		if err := s.tr.Read(&ev); err != nil {
			st, stErr := s.tr.Stats()
			s.t.Fatalf("waiting for %s: %v; stats %+v (%v); events so far:\n%s", what, err, st, stErr, dump(s.events))
		}
		s.events = append(s.events, ev)
		if match(&ev) {
			return
		}
	}
}

func dump(events []Event) string {
	var b strings.Builder
	for _, ev := range events {
		b.WriteString(ev.Kind.String() + " " + strconv.FormatUint(ev.Cookie, 10) + " " + ev.Local.String() +
			" " + ev.Remote.String() + " " + ev.Old.String() + "→" + ev.New.String() + " owner " +
			strconv.Itoa(int(ev.Owner.PID)) + "\n")
	}
	return b.String()
}

// step is what the tests assert of each event.
type step struct {
	Kind     Kind
	Old, New tcp.State
	Inferred bool
	FinWait2 bool
	Reason   Reason
	Owner    uint32 // 0: no owner known
}

func tr(old, new tcp.State, owner uint32) step {
	return step{Kind: Transition, Old: old, New: new, Owner: owner}
}

func closed(old tcp.State, reason Reason, owner uint32) step {
	return step{Kind: Transition, Old: old, New: tcp.Close, Reason: reason, Owner: owner}
}

func timeWait(old tcp.State, finWait2 bool, owner uint32) step {
	return step{Kind: Transition, Old: old, New: tcp.TimeWait, Inferred: true, FinWait2: finWait2,
		Reason: ReasonTimeWait, Owner: owner}
}

func accepted(owner uint32) step {
	return step{Kind: Accept, Old: tcp.Established, New: tcp.Established, Owner: owner}
}

// sockets groups the events by cookie and names each socket by its first
// transition: "listener", "client" (active open) or "child" (passive open).
func sockets(t *testing.T, events []Event) map[string][]step {
	t.Helper()
	comm := filepath.Base(os.Args[0])
	if len(comm) > 15 {
		comm = comm[:15]
	}
	role := map[uint64]string{}
	got := map[string][]step{}
	for _, ev := range events {
		name, ok := role[ev.Cookie]
		if !ok {
			switch {
			case ev.Old == tcp.Close && ev.New == tcp.Listen:
				name = "listener"
			case ev.Old == tcp.Close && ev.New == tcp.SynSent:
				name = "client"
			case ev.Old == tcp.Listen && ev.New == tcp.SynRecv:
				name = "child"
			default:
				t.Fatalf("socket %d starts with %s → %s", ev.Cookie, ev.Old, ev.New)
			}
			if _, dup := got[name]; dup {
				t.Fatalf("two %s sockets:\n%s", name, dump(events))
			}
			role[ev.Cookie] = name
		}
		if ev.OwnerKnown && ev.Owner.Comm != comm {
			t.Errorf("%s: owner comm %q, want %q", name, ev.Owner.Comm, comm)
		}
		if ev.OwnerKnown && ev.Owner.PID == 0 {
			t.Errorf("%s: owner known with pid 0", name)
		}
		// A passive open's owner comes from accept(), every other from the
		// system calls that made the socket.
		wantSource := OwnerSyscall
		if name == "child" {
			wantSource = OwnerAccept
		}
		if !ev.OwnerKnown {
			wantSource = OwnerNone
		}
		if ev.OwnerSource != wantSource {
			t.Errorf("%s: %s %s → %s: owner source %q, want %q", name, ev.Kind, ev.Old, ev.New, ev.OwnerSource, wantSource)
		}
		got[name] = append(got[name], step{
			Kind: ev.Kind, Old: ev.Old, New: ev.New, Inferred: ev.Inferred, FinWait2: ev.TimeWaitFinWait2,
			Reason: ev.Reason, Owner: ev.Owner.PID,
		})
	}
	return got
}

func checkNoLoss(t *testing.T, tracer *Tracer) {
	t.Helper()
	if err := tracer.Detach(); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	st, err := tracer.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.Lost() != 0 {
		t.Errorf("lost events: %+v", st)
	}
}

func isPort(ap netip.AddrPort, port string) bool { return strconv.Itoa(int(ap.Port())) == port }

// TestClosePaths runs its connections in a network namespace whose
// loopback routes ACK at once (quickack): the ACK of a FIN is then sent
// while the closer's close() runs, not by the delayed-ACK timer. A timer
// fires over whatever task the CPU runs, and on the VMs CI uses, the kernel
// does not run BPF programs in softirq over the VM agent's threads (PID 1)
// and counts no miss (docs/watch.md, "Transitions the kernel hides").
// Every transition here then happens in a test process's system call.
func TestClosePaths(t *testing.T) {
	requireRoot(t)
	netns, _ := newNetns(t, "tcpstat-close",
		[]string{"route", "replace", "local", "127.0.0.1", "dev", "lo", "table", "local", "proto", "kernel",
			"scope", "host", "src", "127.0.0.1", "quickack", "1"},
		[]string{"-6", "route", "del", "local", "::1", "table", "local"},
		[]string{"-6", "route", "add", "local", "::1", "dev", "lo", "table", "local", "proto", "kernel", "quickack", "1"})
	for i, tc := range []struct {
		name string
		addr string
		run  func(s *stream, server, client *peer, addr, port string)
		want func(server, client uint32) map[string][]step
	}{{
		name: "client closes first/ipv4", addr: "127.0.0.1",
		run: clientClosesFirst, want: clientClosesFirstWant,
	}, {
		name: "client closes first/ipv6", addr: "::1",
		run: clientClosesFirst, want: clientClosesFirstWant,
	}, {
		name: "server closes first", addr: "127.0.0.1",
		run: func(s *stream, server, client *peer, addr, port string) {
			server.do("listen " + addr)
			client.do("connect " + addr)
			server.do("accept")
			server.do("close")
			s.waitFor("server's FIN_WAIT2", func(ev *Event) bool { return isPort(ev.Local, port) && ev.New == tcp.FinWait2 })
			client.do("wait-eof")
			client.do("close")
			s.waitFor("client's CLOSE", func(ev *Event) bool { return isPort(ev.Remote, port) && ev.New == tcp.Close })
			s.waitFor("server's TIME_WAIT", func(ev *Event) bool { return isPort(ev.Local, port) && ev.New == tcp.TimeWait })
			server.do("close-listener")
			s.waitFor("listener's CLOSE", func(ev *Event) bool { return ev.Old == tcp.Listen && ev.New == tcp.Close })
		},
		want: func(server, client uint32) map[string][]step {
			return map[string][]step{
				"listener": {tr(tcp.Close, tcp.Listen, server), closed(tcp.Listen, ReasonDone, server)},
				"client": {
					tr(tcp.Close, tcp.SynSent, client), tr(tcp.SynSent, tcp.Established, client),
					tr(tcp.Established, tcp.CloseWait, client), tr(tcp.CloseWait, tcp.LastAck, client),
					closed(tcp.LastAck, ReasonDone, client),
				},
				"child": {
					tr(tcp.Listen, tcp.SynRecv, 0), tr(tcp.SynRecv, tcp.Established, 0), accepted(server),
					tr(tcp.Established, tcp.FinWait1, server), tr(tcp.FinWait1, tcp.FinWait2, server),
					timeWait(tcp.FinWait2, true, server),
				},
			}
		},
	}, {
		name: "client resets", addr: "127.0.0.1",
		run: func(s *stream, server, client *peer, addr, port string) {
			server.do("listen " + addr)
			client.do("connect " + addr)
			server.do("accept")
			client.do("linger0")
			client.do("close")
			s.waitFor("server's CLOSE", func(ev *Event) bool { return isPort(ev.Local, port) && ev.Old != tcp.Listen && ev.New == tcp.Close })
			server.do("close")
			server.do("close-listener")
			s.waitFor("listener's CLOSE", func(ev *Event) bool { return ev.Old == tcp.Listen && ev.New == tcp.Close })
		},
		want: func(server, client uint32) map[string][]step {
			return map[string][]step{
				"listener": {tr(tcp.Close, tcp.Listen, server), closed(tcp.Listen, ReasonDone, server)},
				"client": {
					tr(tcp.Close, tcp.SynSent, client), tr(tcp.SynSent, tcp.Established, client),
					closed(tcp.Established, ReasonAbort, client),
				},
				"child": {
					tr(tcp.Listen, tcp.SynRecv, 0), tr(tcp.SynRecv, tcp.Established, 0), accepted(server),
					closed(tcp.Established, ReasonReset, server),
				},
			}
		},
	}, {
		name: "connect refused", addr: "127.0.0.1",
		run: func(s *stream, server, client *peer, addr, port string) {
			if msg := client.expectErr("connect " + addr); !strings.Contains(msg, "refused") {
				t.Errorf("connect: %s, want connection refused", msg)
			}
			s.waitFor("client's CLOSE", func(ev *Event) bool { return ev.New == tcp.Close })
		},
		want: func(server, client uint32) map[string][]step {
			return map[string][]step{"client": {
				tr(tcp.Close, tcp.SynSent, client), closed(tcp.SynSent, ReasonRefused, client),
			}}
		},
	}} {
		for _, mode := range stateModes(t) {
			t.Run(tc.name+"/"+mode.name, func(t *testing.T) {
				port := strconv.Itoa(29100 + i)
				tracer := newTracer(t, Options{Port: uint16(29100 + i), mapState: mode.mapState, storageOnly: mode.storageOnly})
				s := &stream{t: t, tr: tracer}
				server, client := startPeerIn(t, netns), startPeerIn(t, netns)
				tc.run(s, server, client, netip.AddrPortFrom(netip.MustParseAddr(tc.addr), uint16(29100+i)).String(), port)
				checkNoLoss(t, tracer)
				got := sockets(t, s.events)
				want := tc.want(server.pid, client.pid)
				finWait2ByOrder(s.events, want)
				lastAckReset(t, want, got)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("transitions (-want +got):\n%s\nevents:\n%s", diff, dump(s.events))
				}
				wantAddr := netip.MustParseAddr(tc.addr)
				for _, ev := range s.events {
					for _, addr := range []netip.Addr{ev.Local.Addr(), ev.Remote.Addr()} {
						// Unspecified: a listener's remote end, a connect()'s
						// source before it is chosen.
						if addr != wantAddr && !(addr.IsUnspecified() && addr.Is6() == wantAddr.Is6()) {
							t.Errorf("%s → %s: address %s, want %s", ev.Old, ev.New, addr, wantAddr)
						}
					}
				}
			})
		}
	}
}

// stateMode is where the kernel program keeps per-socket state.
type stateMode struct {
	name string
	// mapState: in the sockets map, as before 5.11. storageOnly: in
	// socket storage, as once the sockets map is full. Neither: the
	// default, the map while it has room, then storage.
	mapState, storageOnly bool
}

// stateModes lists those this kernel offers: the sockets map always,
// socket storage from 5.11 (TestSocketStorageFrom511 holds the probe to it),
// the map first and storage past it where cookies are real (5.12) and the
// map is allocated as it fills (not on PREEMPT_RT).
func stateModes(t *testing.T) []stateMode {
	modes := []stateMode{{name: "map", mapState: true}}
	if !kernelBefore(t, 5, 11) {
		modes = append(modes, stateMode{name: "storage", storageOnly: true})
	}
	if !kernelBefore(t, 5, 12) && !preemptRT() {
		modes = append(modes, stateMode{name: "map+storage"})
	}
	return modes
}

func TestSocketStorageFrom511(t *testing.T) {
	requireRoot(t)
	want := !kernelBefore(t, 5, 11)
	if got, err := HaveSocketStorage(); err != nil || got != want {
		t.Errorf("HaveSocketStorage() = %v, %v; want %v", got, err, want)
	}
	if got := newTracer(t, Options{}).SocketStorage(); got != want {
		t.Errorf("SocketStorage() = %v, want %v", got, want)
	}
	if newTracer(t, Options{mapState: true}).SocketStorage() {
		t.Error("SocketStorage() with mapState: true")
	}
	wantFirst := !kernelBefore(t, 5, 12) && !preemptRT()
	if got := newTracer(t, Options{}).StateInMapFirst(); got != wantFirst {
		t.Errorf("StateInMapFirst() = %v, want %v", got, wantFirst)
	}
	if newTracer(t, Options{storageOnly: true}).StateInMapFirst() {
		t.Error("StateInMapFirst() with storageOnly: true")
	}
}

// finWait2ByOrder settles what the tests cannot steer: whether the active
// closer's hand-off to timewait came before the peer's FIN. The kernel hands
// off at once on the ACK of our FIN (tcp_rcv_state_process) unless the
// closing process still held the socket then; the socket then waits in
// FIN_WAIT2 and the peer's FIN (tcp_fin, which sets SOCK_DONE) hands it
// off. The tests wait for the FIN_WAIT2 event before the peer closes, so a
// hand-off reported before the peer's → LAST_ACK was made by the ACK and
// must say FIN_WAIT2; one reported after was made by the FIN and must not.
func finWait2ByOrder(events []Event, want map[string][]step) {
	handoff, peerFIN := -1, -1
	for i, ev := range events {
		if ev.Inferred && handoff < 0 {
			handoff = i
		}
		if ev.New == tcp.LastAck && peerFIN < 0 {
			peerFIN = i
		}
	}
	if handoff < 0 || peerFIN < 0 {
		return
	}
	for _, steps := range want {
		for j := range steps {
			if steps[j].Inferred && steps[j].Old == tcp.FinWait2 {
				steps[j].FinWait2 = handoff < peerFIN
			}
		}
	}
}

// lastAckReset accepts a reset where the passive closer's last ACK was
// due, on 5.10 only: there, under emulation, the timewait mini-socket
// sometimes answers the FIN with a reset (seen in the kernel matrix). Every
// later kernel must end in order. The sequence stays exact.
func lastAckReset(t *testing.T, want, got map[string][]step) {
	if !kernelBefore(t, 5, 11) {
		return
	}
	for role, steps := range want {
		for j := range steps {
			if j < len(got[role]) && steps[j].Old == tcp.LastAck && steps[j].Reason == ReasonDone &&
				got[role][j].Reason == ReasonReset {
				t.Logf("%s: LAST_ACK → CLOSE by a reset from the peer's timewait socket", role)
				steps[j].Reason = ReasonReset
			}
		}
	}
}

// kernelBefore reports whether the running kernel is older than major.minor.
func kernelBefore(t *testing.T, major, minor int) bool {
	t.Helper()
	var uts unix.Utsname
	must(t, unix.Uname(&uts))
	var maj, mnr int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(uts.Release[:]), "%d.%d", &maj, &mnr); err != nil {
		t.Fatalf("kernel release %q: %v", unix.ByteSliceToString(uts.Release[:]), err)
	}
	return maj < major || (maj == major && mnr < minor)
}

func clientClosesFirst(s *stream, server, client *peer, addr, port string) {
	server.do("listen " + addr)
	client.do("connect " + addr)
	server.do("accept")
	client.do("close")
	s.waitFor("client's FIN_WAIT2", func(ev *Event) bool { return isPort(ev.Remote, port) && ev.New == tcp.FinWait2 })
	server.do("wait-eof")
	server.do("close")
	s.waitFor("server's CLOSE", func(ev *Event) bool { return isPort(ev.Local, port) && ev.Old == tcp.LastAck })
	s.waitFor("client's TIME_WAIT", func(ev *Event) bool { return isPort(ev.Remote, port) && ev.New == tcp.TimeWait })
	server.do("close-listener")
	s.waitFor("listener's CLOSE", func(ev *Event) bool { return ev.Old == tcp.Listen && ev.New == tcp.Close })
}

func clientClosesFirstWant(server, client uint32) map[string][]step {
	return map[string][]step{
		"listener": {tr(tcp.Close, tcp.Listen, server), closed(tcp.Listen, ReasonDone, server)},
		"client": {
			tr(tcp.Close, tcp.SynSent, client), tr(tcp.SynSent, tcp.Established, client),
			tr(tcp.Established, tcp.FinWait1, client), tr(tcp.FinWait1, tcp.FinWait2, client),
			timeWait(tcp.FinWait2, true, client),
		},
		"child": {
			tr(tcp.Listen, tcp.SynRecv, 0), tr(tcp.SynRecv, tcp.Established, 0), accepted(server),
			tr(tcp.Established, tcp.CloseWait, server), tr(tcp.CloseWait, tcp.LastAck, server),
			closed(tcp.LastAck, ReasonDone, server),
		},
	}
}

// TestSimultaneousClose makes both ends send their FIN before either
// arrives: both receive windows are full, so the FINs wait behind data
// until the test reads. The end that reads first sees the peer's FIN while
// its own is unacknowledged, and goes through CLOSING.
func TestSimultaneousClose(t *testing.T) {
	requireRoot(t)
	const port = 29150
	tracer := newTracer(t, Options{Port: port})
	s := &stream{t: t, tr: tracer}
	me := uint32(os.Getpid())
	addr := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}

	small := func(fd int) {
		for _, opt := range []int{unix.SO_RCVBUF, unix.SO_SNDBUF} {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 4096); err != nil {
				t.Fatal(err)
			}
		}
	}
	ln := mustSocket(t)
	small(ln)
	must(t, unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1))
	must(t, unix.Bind(ln, addr))
	must(t, unix.Listen(ln, 8))
	a := mustSocket(t)
	small(a)
	must(t, unix.Connect(a, addr))
	b, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
	must(t, err)
	defer unix.Close(b)
	fill := func(fd int) {
		must(t, unix.SetNonblock(fd, true))
		buf := make([]byte, 65536)
		for {
			if _, err := unix.Write(fd, buf); errors.Is(err, unix.EAGAIN) {
				return
			} else if err != nil {
				t.Fatalf("fill: %v", err)
			}
		}
	}
	fill(a)
	fill(b)
	must(t, unix.Shutdown(a, unix.SHUT_WR))
	must(t, unix.Shutdown(b, unix.SHUT_WR))
	drain := func(fd int) {
		must(t, unix.SetNonblock(fd, false))
		buf := make([]byte, 65536)
		for {
			n, err := unix.Read(fd, buf)
			must(t, err)
			if n == 0 {
				return
			}
		}
	}
	drain(a)
	drain(b)
	s.waitFor("client's TIME_WAIT", func(ev *Event) bool { return ev.Local.Port() != port && ev.New == tcp.TimeWait })
	s.waitFor("child's TIME_WAIT", func(ev *Event) bool { return ev.Local.Port() == port && ev.New == tcp.TimeWait })
	unix.Close(a)
	unix.Close(ln)
	s.waitFor("listener's CLOSE", func(ev *Event) bool { return ev.Old == tcp.Listen && ev.New == tcp.Close })
	checkNoLoss(t, tracer)

	want := map[string][]step{
		"listener": {tr(tcp.Close, tcp.Listen, me), closed(tcp.Listen, ReasonDone, me)},
		"client": {
			tr(tcp.Close, tcp.SynSent, me), tr(tcp.SynSent, tcp.Established, me),
			tr(tcp.Established, tcp.FinWait1, me), tr(tcp.FinWait1, tcp.Closing, me),
			timeWait(tcp.Closing, false, me),
		},
		"child": {
			tr(tcp.Listen, tcp.SynRecv, 0), tr(tcp.SynRecv, tcp.Established, 0), accepted(me),
			tr(tcp.Established, tcp.FinWait1, me), tr(tcp.FinWait1, tcp.FinWait2, me),
			timeWait(tcp.FinWait2, false, me),
		},
	}
	if diff := cmp.Diff(want, sockets(t, s.events)); diff != "" {
		t.Errorf("transitions (-want +got):\n%s\nevents:\n%s", diff, dump(s.events))
	}
}

// TestConnectTimeout sends SYNs into a network namespace where nothing
// answers: a veth whose peer has no address, reached through a permanent
// neighbour entry so that no ARP failure turns into EHOSTUNREACH.
func TestConnectTimeout(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("takes 3 s of SYN retransmissions")
	}
	const port = 29151
	path, ino := newNetns(t, "tcpstat-test",
		[]string{"link", "add", "v0", "type", "veth", "peer", "name", "v1"},
		[]string{"addr", "add", "10.253.0.1/24", "dev", "v0"},
		[]string{"link", "set", "v0", "up"},
		[]string{"link", "set", "v1", "up"},
		[]string{"neigh", "add", "10.253.0.2", "lladdr", "02:00:00:00:00:02", "dev", "v0", "nud", "permanent"})

	tracer := newTracer(t, Options{Port: port})
	s := &stream{t: t, tr: tracer}
	fd := socketInNetns(t, path)
	defer unix.Close(fd)
	must(t, unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_SYNCNT, 1))
	err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{10, 253, 0, 2}})
	if !errors.Is(err, unix.ETIMEDOUT) {
		t.Fatalf("connect: %v, want ETIMEDOUT", err)
	}
	s.waitFor("CLOSE", func(ev *Event) bool { return ev.New == tcp.Close })
	checkNoLoss(t, tracer)
	me := uint32(os.Getpid())
	want := map[string][]step{"client": {tr(tcp.Close, tcp.SynSent, me), closed(tcp.SynSent, ReasonTimeout, me)}}
	if diff := cmp.Diff(want, sockets(t, s.events)); diff != "" {
		t.Errorf("transitions (-want +got):\n%s", diff)
	}
	for _, ev := range s.events {
		if ev.NetNS != ino {
			t.Errorf("netns %d, want %d (%s)", ev.NetNS, ino, path)
		}
		if ev.Errno != uint16(unix.ETIMEDOUT) && ev.New == tcp.Close {
			t.Errorf("errno %d, want ETIMEDOUT", ev.Errno)
		}
	}
}

// socketInNetns creates a TCP socket in the namespace at path, from a
// thread that enters it and comes back.
func socketInNetns(t *testing.T, path string) int {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(self)
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(target)
	must(t, unix.Setns(target, unix.CLONE_NEWNET))
	fd, sockErr := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	must(t, unix.Setns(self, unix.CLONE_NEWNET))
	must(t, sockErr)
	return fd
}

// TestStalledConsumerCountsDrops fills a one-page ring buffer without
// reading it: every event is either read or counted as lost, exactly.
func TestStalledConsumerCountsDrops(t *testing.T) {
	requireRoot(t)
	const port, conns = 29152, 200
	tracer := newTracer(t, Options{Port: port, RingBufferSize: os.Getpagesize()})
	addr := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	ln := mustSocket(t)
	must(t, unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1))
	must(t, unix.Bind(ln, addr))
	must(t, unix.Listen(ln, 64))
	buf := make([]byte, 1)
	for range conns {
		c := mustSocket(t)
		must(t, unix.Connect(c, addr))
		a, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
		must(t, err)
		must(t, unix.Close(c))
		_, err = unix.Read(a, buf) // wait for the FIN: CLOSE_WAIT
		must(t, err)
		must(t, unix.Close(a))
	}
	must(t, unix.Close(ln))

	// Per connection: 5 client transitions, 5 child transitions, 1 accept;
	// and the listener's 2.
	const want = conns*11 + 2
	var read uint64
	var st Stats
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if st, err = tracer.Stats(); err != nil {
			t.Fatal(err)
		}
		if read+st.Lost() >= want {
			break
		}
		tracer.SetDeadline(time.Now().Add(100 * time.Millisecond))
		var ev Event
		if err := tracer.Read(&ev); err == nil {
			read++
		} else if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			break
		}
	}
	t.Logf("read %d, lost %d (ring buffer full %d), of %d", read, st.Lost(), st.RingBufferFull, want)
	if read+st.Lost() != want {
		t.Errorf("read %d + lost %d = %d events, want %d", read, st.Lost(), read+st.Lost(), want)
	}
	if st.RingBufferFull == 0 {
		t.Errorf("no event counted as lost with a stalled consumer and a %d-byte ring buffer", os.Getpagesize())
	}
}

// TestWithoutCookieHelper runs a connection as on kernels whose tracing
// programs cannot call bpf_get_socket_cookie(): the program reads the
// kernel's cookie where one was given, else makes a synthetic id. Every
// socket keeps one id of its own across its transitions and its accept.
func TestWithoutCookieHelper(t *testing.T) {
	requireRoot(t)
	const port = 29154
	tracer := newTracer(t, Options{Port: port, syntheticCookies: true})
	s := &stream{t: t, tr: tracer}
	server, client := startPeer(t), startPeer(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	clientClosesFirst(s, server, client, addr, strconv.Itoa(port))
	got, want := sockets(t, s.events), clientClosesFirstWant(server.pid, client.pid)
	finWait2ByOrder(s.events, want)
	lastAckReset(t, want, got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("transitions (-want +got):\n%s", diff)
	}
	for _, ev := range s.events {
		if ev.Cookie == 0 || ev.Synthetic != (ev.Cookie>>63 == 1) {
			t.Errorf("%s → %s: cookie %#x, synthetic %v", ev.Old, ev.New, ev.Cookie, ev.Synthetic)
		}
	}
}

func TestCloseIsIdempotentAndLeaksNothing(t *testing.T) {
	requireRoot(t)
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	tracer, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tracer.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := tracer.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	var ev Event
	if err := tracer.Read(&ev); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close: %v, want ErrClosed", err)
	}
	if got := openFDs(t); got != fds {
		t.Errorf("%d open descriptors after Close, %d before New", got, fds)
	}
	// Goroutines that Close stopped may still be on their way out.
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > goroutines; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines 5 s after Close, %d before New", runtime.NumGoroutine(), goroutines)
		}
	}
}

func TestFiltersRunInTheKernel(t *testing.T) {
	requireRoot(t)
	const port = 29153
	tracer := newTracer(t, Options{Port: port, Family: 6})
	s := &stream{t: t, tr: tracer}
	for _, addr := range []string{"127.0.0.1", "::1"} {
		server, client := startPeer(t), startPeer(t)
		ap := netip.AddrPortFrom(netip.MustParseAddr(addr), port).String()
		server.do("listen " + ap)
		client.do("connect " + ap)
		server.do("close-listener")
	}
	s.waitFor("IPv6 listener's CLOSE", func(ev *Event) bool { return ev.Old == tcp.Listen && ev.New == tcp.Close })
	for _, ev := range s.events {
		if !ev.IPv6() || (ev.Local.Port() != port && ev.Remote.Port() != port) {
			t.Errorf("filter let through %s → %s %s %s", ev.Old, ev.New, ev.Local, ev.Remote)
		}
	}
}

func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func mustSocket(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	must(t, err)
	return fd
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkNew: loading and attaching the tracer, the fixed part of every
// view's start-up (the kernel's BTF parsed, the verifier run). The feature
// probes run in the first iteration only: their answers are kept.
func BenchmarkNew(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	for b.Loop() {
		tr, err := New(Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer() // detaching waits for RCU grace periods
		tr.Close()
		b.StartTimer()
	}
}

// BenchmarkSyscall is what tracing adds to every system call on the host,
// not only to the traced ones: the accept() programs hang on syscall
// tracepoints, and while any syscall tracepoint is enabled every system
// call of every task takes the kernel's slower exit path. getppid is about
// the cheapest system call there is.
func BenchmarkSyscall(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	for _, c := range []struct {
		name   string
		tracer *Options
	}{
		{"no tracer", nil},
		{"tracer", &Options{}},
		{"tracer without accept programs", &Options{Experiment: Experiment{NoAccept: true}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			if c.tracer != nil {
				tr, err := New(*c.tracer)
				if err != nil {
					b.Fatal(err)
				}
				defer tr.Close()
			}
			for b.Loop() {
				unix.Getppid()
			}
		})
	}
}
