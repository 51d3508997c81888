package livetable

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// spy passes a source's events on and remembers what the test needs to
// know about the kernel: whether it gave synthetic ids, and why each
// connection of the test's port ended.
type spy struct {
	Events
	port      atomic.Uint32
	mu        sync.Mutex
	synthetic bool
	reasons   map[netip.AddrPort]tracer.Reason // local end → reason of its LAST_ACK → CLOSE
}

func (s *spy) Read(ev *tracer.Event) error {
	err := s.Events.Read(ev)
	if port := uint16(s.port.Load()); err == nil && (ev.Local.Port() == port || ev.Remote.Port() == port) {
		s.mu.Lock()
		s.synthetic = s.synthetic || ev.Synthetic
		if ev.Old == tcp.LastAck && ev.New == tcp.Close {
			s.reasons[table.KeyOf(0, ev.Local, ev.Remote).Local] = ev.Reason
		}
		s.mu.Unlock()
	}
	return err
}

// reason waits for the LAST_ACK → CLOSE of the socket at local and
// returns its reason.
func (s *spy) reason(t *testing.T, tr *Table, local string) tracer.Reason {
	t.Helper()
	for deadline := time.Now().Add(waitTimeout); ; {
		if err := barrier(tr); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		r, ok := s.reasons[netip.MustParseAddrPort(local)]
		s.mu.Unlock()
		if ok {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("no LAST_ACK → CLOSE of %s within %v", local, waitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dsRow is a row of the dual-stack test, as it compares them.
type dsRow struct {
	Local, Remote string
	State         tcp.State
	Inferred      bool
	TimeWait      bool
	Owner         uint32 // current owner's pid
	Former        uint32 // former owner's pid
}

// The test's connections have both ends in 127.77.202.0/24, which no other
// test uses; the listener is [::]:port.
var dualStackNet = netip.MustParsePrefix("127.77.202.0/24")

// dualStackRow reports a row of the test: the listener, or a connection
// between two addresses of dualStackNet through it.
func dualStackRow(r *table.Row, port uint16) bool {
	if r.Local() == netip.AddrPortFrom(netip.IPv6Unspecified(), port) {
		return true
	}
	ours := dualStackNet.Contains(r.Local().Addr()) && dualStackNet.Contains(r.Remote().Addr())
	return ours && (r.Local().Port() == port || r.Remote().Port() == port)
}

// dsRows are the rows of the test's port in the host's namespace, sorted.
func dsRows(tr *Table, port uint16) []dsRow {
	var out []dsRow
	tr.View(func(tb *table.Table, _ Status) {
		for i := range tb.Len() {
			r := tb.Row(i)
			if r.NetNS() != tr.cfg.NetNS || !dualStackRow(r, port) {
				continue
			}
			row := dsRow{Local: r.Local().String(), Remote: r.Remote().String(), State: r.State(), Inferred: r.Inferred(), TimeWait: r.TimeWait()}
			if o, ok := r.Owner(); ok {
				row.Owner = o.PID
			}
			if o, ok := r.FormerOwner(); ok {
				row.Former = o.PID
			}
			out = append(out, row)
		}
	})
	slices.SortFunc(out, func(a, b dsRow) int { return strings.Compare(a.Local+" "+a.Remote, b.Local+" "+b.Remote) })
	return out
}

// expectRows waits, applying every event produced so far before each
// look, until the port's rows are want; it fails the test at the deadline.
func expectRows(t *testing.T, tr *Table, port uint16, what string, want []dsRow) {
	t.Helper()
	slices.SortFunc(want, func(a, b dsRow) int { return strings.Compare(a.Local+" "+a.Remote, b.Local+" "+b.Remote) })
	deadline := time.Now().Add(waitTimeout)
	for {
		if err := barrier(tr); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		got := dsRows(tr, port)
		diff := cmp.Diff(want, got)
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: rows of port %d after %v (-want +got):\n%s", what, port, waitTimeout, diff)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDualStack follows IPv4 clients of a dual-stack listener ([::]:port,
// IPV6_V6ONLY off, as Go, Java and nginx's ipv6only=off make them): the
// server ends are AF_INET6 sockets with IPv4-mapped addresses, the client
// ends plain IPv4. After each transition, with no dump in between, the
// rows must be exact: unmapped addresses, both closing orders (each end's
// close moves the other's half-closed timewait socket to TIME_WAIT), and
// former owners. Then a dump must adopt every row under its real cookie
// (kernels before 5.12, where events carry synthetic ids) and later events
// must still reach the rows.
func TestDualStack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the tracer")
	}
	events, err := tracer.New(tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	ln, err := net.Listen("tcp", "[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if v6only, err := unix.GetsockoptInt(fdOf(t, ln.(*net.TCPListener)), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); err != nil || v6only != 0 {
		t.Fatalf("listener %v: IPV6_V6ONLY %d (%v), want a dual-stack socket", ln.Addr(), v6only, err)
	}
	ln.Close() // the listener's own transitions are seen below
	src := &spy{Events: events, reasons: map[netip.AddrPort]tracer.Reason{}}
	tr := startWithOwners(t, Config{Events: src, Dump: snapshot.DumpTCP, Walk: snapshot.WalkTCP, Every: time.Hour})
	_, st := rows(tr)
	reconciles := st.Reconciles

	// A new port: the listener's transitions come after the first dump
	// (on kernels with synthetic ids, a socket older than the dump would
	// also have a row under its synthetic id until dumps drop it).
	ln, err = net.Listen("tcp", "[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	src.port.Store(uint32(port))
	me := uint32(os.Getpid())
	listener := dsRow{Local: "[::]:" + itoa(port), Remote: "[::]:0", State: tcp.Listen, Owner: me}
	expectRows(t, tr, port, "listening", []dsRow{listener})

	server := "127.77.202.1:" + itoa(port)
	type conn struct {
		client, server net.Conn
		c, s           string // client and server ends, unmapped
	}
	dial := func(clientAddr string) conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientAddr)}}
		c, err := d.Dial("tcp4", server)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if family := domainOf(t, s.(*net.TCPConn)); family != unix.AF_INET6 {
			t.Fatalf("accepted %v on an address family %d socket, want AF_INET6 (an IPv4-mapped address)", s.LocalAddr(), family)
		}
		return conn{c, s, c.LocalAddr().String(), server}
	}
	eof := func(c net.Conn) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Fatalf("read on %v after the peer's close: %v, want EOF", c.LocalAddr(), err)
		}
	}
	established := func(k conn) []dsRow {
		return []dsRow{
			{Local: k.c, Remote: k.s, State: tcp.Established, Owner: me},
			{Local: k.s, Remote: k.c, State: tcp.Established, Owner: me},
		}
	}
	timeWait := func(local, remote string, state tcp.State) dsRow {
		return dsRow{Local: local, Remote: remote, State: state, Inferred: true, TimeWait: true, Former: me}
	}
	// halfClosed is the row of the end that closed first, once its peer
	// acknowledged the FIN; the kernel's own word (firstCloser) says
	// which end it has, and freed remembers the ends it closed for want
	// of a timewait socket.
	freed := map[string]bool{}
	halfClosed := func(closer, peer string, overflows int64) dsRow {
		t.Helper()
		switch firstCloser(t, closer, peer, overflows) {
		case fullSocket:
			return dsRow{Local: closer, Remote: peer, State: tcp.FinWait2, Owner: me}
		case noSocket:
			freed[closer] = true
		}
		return timeWait(closer, peer, tcp.FinWait2)
	}
	// afterPeerClose is what is left of the first closer (at twLocal) when
	// its peer's LAST_ACK → CLOSE is seen: TIME_WAIT, or nothing when the
	// kernel had closed it without a timewait socket and the peer's FIN
	// was answered with a reset.
	afterPeerClose := func(twLocal, twRemote, closer string) []dsRow {
		t.Helper()
		switch r := src.reason(t, tr, closer); {
		case r == tracer.ReasonDone && !freed[twLocal]:
			return []dsRow{timeWait(twLocal, twRemote, tcp.TimeWait)}
		case r == tracer.ReasonReset && freed[twLocal]:
			t.Logf("%s: LAST_ACK → CLOSE by a reset: %s had no timewait socket", closer, twLocal)
			return nil
		default:
			t.Fatalf("%s: LAST_ACK → CLOSE with reason %q; its peer %s was freed for a full timewait table: %v",
				closer, r, twLocal, freed[twLocal])
			return nil
		}
	}

	// The client closes first: the server end (IPv4-mapped) closes last,
	// and its close moves the client's timewait socket on.
	a := dial("127.77.202.2")
	expectRows(t, tr, port, "a established", append([]dsRow{listener}, established(a)...))
	overflows := timeWaitOverflows(t)
	a.client.Close()
	eof(a.server)
	expectRows(t, tr, port, "a's client closed", []dsRow{listener,
		halfClosed(a.c, a.s, overflows),
		{Local: a.s, Remote: a.c, State: tcp.CloseWait, Owner: me}})
	a.server.Close()
	aLeft := afterPeerClose(a.c, a.s, a.s)
	expectRows(t, tr, port, "a's server closed", append([]dsRow{listener}, aLeft...))

	// The server closes first: its timewait socket is the IPv4-mapped one.
	b := dial("127.77.202.3")
	expectRows(t, tr, port, "b established", slices.Concat([]dsRow{listener}, aLeft, established(b)))
	overflows = timeWaitOverflows(t)
	b.server.Close()
	eof(b.client)
	expectRows(t, tr, port, "b's server closed", slices.Concat([]dsRow{listener}, aLeft, []dsRow{
		halfClosed(b.s, b.c, overflows),
		{Local: b.c, Remote: b.s, State: tcp.CloseWait, Owner: me}}))
	b.client.Close()
	bLeft := afterPeerClose(b.s, b.c, b.c)
	expectRows(t, tr, port, "b's client closed", slices.Concat([]dsRow{listener}, aLeft, bLeft))

	if _, st := rows(tr); st.Reconciles != reconciles {
		t.Fatalf("%d dumps merged while the rows were checked: want the events alone", st.Reconciles-reconciles)
	}

	// A dump now: on kernels before 5.12 it gives every row its real
	// cookie (synthetic ids until then), matched by unmapped 4-tuple.
	c := dial("127.77.202.4")
	expectRows(t, tr, port, "c established", slices.Concat([]dsRow{listener}, aLeft, bLeft, established(c)))
	if err := tr.reconcile(context.Background(), 0, false); err != nil {
		t.Fatal(err)
	}
	confirmed := func(rows []dsRow) []dsRow {
		out := slices.Clone(rows)
		for i := range out {
			out[i].Inferred = false
		}
		return out
	}
	aLeft, bLeft = confirmed(aLeft), confirmed(bLeft)
	expectRows(t, tr, port, "after a dump", slices.Concat([]dsRow{listener}, aLeft, bLeft, established(c)))
	socks, err := snapshot.DumpTCP(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	cookies := map[string]uint64{}
	for _, s := range socks {
		k := table.KeyOf(0, s.Local, s.Remote)
		cookies[k.Local.String()+" "+k.Remote.String()] = s.Cookie
	}
	tr.View(func(tb *table.Table, _ Status) {
		for _, k := range []string{c.c + " " + c.s, c.s + " " + c.c, listener.Local + " " + listener.Remote} {
			want, ok := cookies[k]
			if !ok {
				t.Errorf("%s: not in the dump", k)
				continue
			}
			if r := tb.Lookup(want); r == nil || r.Local().String()+" "+r.Remote().String() != k {
				t.Errorf("%s: no row under the dump's cookie %d (row %v)", k, want, r)
			}
		}
		if src.synthetic && tb.Stats().Adopted < 3 {
			t.Errorf("synthetic ids: %d rows adopted, want at least c's two ends and the listener", tb.Stats().Adopted)
		}
	})
	t.Logf("synthetic ids: %v", src.synthetic)

	// Events under synthetic ids still reach the adopted rows.
	overflows = timeWaitOverflows(t)
	c.client.Close()
	eof(c.server)
	expectRows(t, tr, port, "c's client closed", slices.Concat([]dsRow{listener}, aLeft, bLeft, []dsRow{
		halfClosed(c.c, c.s, overflows),
		{Local: c.s, Remote: c.c, State: tcp.CloseWait, Owner: me}}))
	c.server.Close()
	cLeft := afterPeerClose(c.c, c.s, c.s)
	expectRows(t, tr, port, "c's server closed", slices.Concat([]dsRow{listener}, aLeft, bLeft, cLeft))

	// A FIN_WAIT2 timeout longer than TIME_WAIT's keeps the first closer a
	// full socket until its peer closes (tcp_fin_time > TCP_TIMEWAIT_LEN).
	d := dial("127.77.202.5")
	fd := fdOf(t, d.client.(*net.TCPConn))
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_LINGER2, 120); err != nil {
		t.Fatal(err)
	}
	overflows = timeWaitOverflows(t)
	d.client.Close()
	eof(d.server)
	if r := halfClosed(d.c, d.s, overflows); r.TimeWait {
		t.Fatalf("%s with TCP_LINGER2 120 s: a timewait socket, want the full socket", d.c)
	}
	d.server.Close()
	dLeft := afterPeerClose(d.c, d.s, d.s)
	ln.Close()
	expectRows(t, tr, port, "all closed", slices.Concat(aLeft, bLeft, cLeft, dLeft))
}

func itoa(port uint16) string { return strconv.Itoa(int(port)) }

func fdOf(t *testing.T, c syscall.Conn) int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	raw.Control(func(f uintptr) { fd = int(f) })
	return fd
}

func domainOf(t *testing.T, c syscall.Conn) int {
	t.Helper()
	d, err := unix.GetsockoptInt(fdOf(t, c), unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
