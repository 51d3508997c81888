package livetable_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tcpstat/tcpstat/internal/livetable"
	"github.com/tcpstat/tcpstat/internal/netnstest"
	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/testenv"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// conns is a listener with one connection half-closed by its client
// (client FIN_WAIT2, server CLOSE_WAIT) and one established, all inside a
// namespace.
type conns struct {
	ln               net.Listener
	open, halfClosed [2]net.Conn // client, server
}

func makeConns(t *testing.T, ns string, addr string) *conns {
	t.Helper()
	c := &conns{}
	var clients [2]net.Conn
	err := netnstest.Do(ns, func() error {
		var err error
		if c.ln, err = net.Listen("tcp", addr); err != nil {
			return err
		}
		for i := range clients {
			if clients[i], err = net.Dial("tcp", c.ln.Addr().String()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var servers [2]net.Conn
	for range servers {
		s, err := c.ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		j := slices.IndexFunc(clients[:], func(cl net.Conn) bool { return cl.LocalAddr().String() == s.RemoteAddr().String() })
		servers[j] = s
	}
	c.open = [2]net.Conn{clients[0], servers[0]}
	c.halfClosed = [2]net.Conn{clients[1], servers[1]}
	clients[1].Close()
	return c
}

// closeAll resets every socket (no TIME_WAIT) and closes the listener.
func (c *conns) closeAll() {
	for _, conn := range []net.Conn{c.open[0], c.open[1], c.halfClosed[1]} {
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}
	c.ln.Close()
}

type row struct {
	Local, Remote netip.AddrPort
	State         string
}

// same compares rows (netip's types are comparable, not exported).
var same = cmpopts.EquateComparable(netip.AddrPort{})

func rowsIn(tb *livetable.Table, ns uint32) []row {
	var rows []row
	tb.View(func(t *table.Table, _ livetable.Status) {
		for i := range t.Len() {
			if r := t.Row(i); r.NetNS() == ns {
				rows = append(rows, row{r.Local(), r.Remote(), r.State().String()})
			}
		}
	})
	slices.SortFunc(rows, func(a, b row) int { return a.Local.Compare(b.Local)*4 + a.Remote.Compare(b.Remote) })
	return rows
}

func expected(c *conns) []row {
	rows := []row{
		{netip.MustParseAddrPort(c.ln.Addr().String()), netip.MustParseAddrPort("0.0.0.0:0"), "LISTEN"},
		{ap(c.open[0].LocalAddr()), ap(c.open[0].RemoteAddr()), "ESTABLISHED"},
		{ap(c.open[1].LocalAddr()), ap(c.open[1].RemoteAddr()), "ESTABLISHED"},
		{ap(c.halfClosed[0].LocalAddr()), ap(c.halfClosed[0].RemoteAddr()), "FIN_WAIT2"},
		{ap(c.halfClosed[1].LocalAddr()), ap(c.halfClosed[1].RemoteAddr()), "CLOSE_WAIT"},
	}
	slices.SortFunc(rows, func(a, b row) int { return a.Local.Compare(b.Local)*4 + a.Remote.Compare(b.Remote) })
	return rows
}

// waitKernel waits up to 5 s for a socket in state in the namespace.
func waitKernel(t *testing.T, ns *netnstest.NS, state string) {
	t.Helper()
	n, err := snapshot.ResolveNetNS(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		socks, err := snapshot.Dump(context.Background(), snapshot.Options{Protos: []snapshot.Proto{snapshot.TCP}, NetNS: &n})
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(socks, func(s snapshot.Socket) bool { return s.State.String() == state }) {
			return
		}
	}
	t.Fatalf("namespace %s: no socket in %s after 5 s", ns.Name, state)
}

func ap(a net.Addr) netip.AddrPort { return netip.MustParseAddrPort(a.String()) }

// waitRows waits up to 10 s for the namespace's rows to be want.
func waitRows(t *testing.T, tb *livetable.Table, ns uint32, want []row, what string) {
	t.Helper()
	var got []row
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = rowsIn(tb, ns); cmp.Equal(want, got, same) {
			return
		}
	}
	t.Errorf("%s: namespace %d (-want +got)\n%s", what, ns, cmp.Diff(want, got, same))
}

// TestEveryNamespace: sockets made in namespaces before start-up are in
// the table with their states and namespace, leave when closed, and the
// rows of a namespace that ends go with it.
func TestEveryNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (tracer, network namespaces)")
	}
	a, b := netnstest.New(t), netnstest.New(t)
	// The same addresses in both namespaces: rows differ by namespace only.
	ca := makeConns(t, a.Path, "127.0.0.1:7200")
	cb := makeConns(t, b.Path, "127.0.0.1:7200")
	// Both half-closed clients reach FIN_WAIT2 before the start.
	for _, ns := range []*netnstest.NS{a, b} {
		waitKernel(t, ns, "FIN_WAIT2")
	}

	events, err := tracer.New(tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	scope := snapshot.AllNetNS()
	tb, err := livetable.Start(context.Background(), livetable.Config{
		Events: events, Dump: scope.DumpTCP, Walk: scope.WalkTCP, Owners: snapshot.Owners, Covers: scope.Covers, Every: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()

	for _, x := range []struct {
		ns *netnstest.NS
		c  *conns
	}{{a, ca}, {b, cb}} {
		if got := rowsIn(tb, x.ns.Inode); !cmp.Equal(expected(x.c), got, same) {
			t.Errorf("at start-up: namespace %s (-want +got)\n%s", x.ns.Name, cmp.Diff(expected(x.c), got, same))
		}
	}

	// Closing a's sockets: their rows go (the half-closed client's
	// mini-socket stays in FIN_WAIT2 until its timer; the reset of its
	// server ends it at once).
	ca.closeAll()
	waitRows(t, tb, a.Inode, nil, "after close")
	if got := rowsIn(tb, b.Inode); !cmp.Equal(expected(cb), got, same) {
		t.Errorf("namespace %s changed (-want +got)\n%s", b.Name, cmp.Diff(expected(cb), got, same))
	}

	// b ends while its sockets are open: closing them without a reset
	// leaves a mini-socket, which the kernel purges with the namespace
	// without an event. The namespace's rows leave with it.
	testenv.CloseClientFirst(t, cb.open[0], cb.open[1])
	cb.halfClosed[1].Close()
	cb.ln.Close()
	var timeWait []row
	for _, c := range []net.Conn{cb.open[0], cb.halfClosed[0]} {
		timeWait = append(timeWait, row{ap(c.LocalAddr()), ap(c.RemoteAddr()), "TIME_WAIT"})
	}
	slices.SortFunc(timeWait, func(a, b row) int { return a.Local.Compare(b.Local)*4 + a.Remote.Compare(b.Remote) })
	waitRows(t, tb, b.Inode, timeWait, "clients in TIME_WAIT")
	b.Delete()
	waitRows(t, tb, b.Inode, nil, "after the namespace ended")
	var st livetable.Status
	tb.View(func(_ *table.Table, s livetable.Status) { st = s })
	if st.Err != nil || st.DumpErr != nil {
		t.Errorf("status: err %v, dump err %v", st.Err, st.DumpErr)
	}
}
