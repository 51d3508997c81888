package snapshot_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tcpstat/tcpstat/internal/netnstest"
	. "github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/tcp"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
}

// listenIn makes a listener and an established pair inside ns, and returns
// the listener's address and a function closing all three.
func listenIn(t *testing.T, ns *netnstest.NS, addr string) (netip.AddrPort, func()) {
	t.Helper()
	var ln net.Listener
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return err
		}
		c, err = net.Dial("tcp", ln.Addr().String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return netip.MustParseAddrPort(ln.Addr().String()), func() { c.Close(); s.Close(); ln.Close() }
}

func TestWalkNetNS(t *testing.T) {
	needRoot(t)
	a, b := netnstest.New(t), netnstest.New(t)
	// The same address in both: only the namespace tells them apart.
	addrA, closeA := listenIn(t, a, "127.0.0.1:7001")
	defer closeA()
	addrB, closeB := listenIn(t, b, "127.0.0.1:7001")
	defer closeB()
	proc := netnstest.Unshared(t)

	nss, err := Namespaces()
	var partial *NamespacesError
	if err != nil && !errors.As(err, &partial) {
		t.Fatal(err) // a partial listing (pid 1 of a sandbox) still has ours
	}
	self, err := CurrentNetNS()
	if err != nil {
		t.Fatal(err)
	}
	found := map[uint32]Namespace{}
	for _, n := range nss {
		found[n.Inode] = n
	}
	for _, want := range []uint32{a.Inode, b.Inode, proc.Inode, self} {
		if _, ok := found[want]; !ok {
			t.Fatalf("namespace %d not found among %d", want, len(nss))
		}
	}
	if n := found[a.Inode]; len(n.Names) != 1 || n.Names[0] != a.Name {
		t.Errorf("namespace %d: names %q, want %q", a.Inode, n.Names, a.Name)
	}
	if n := found[proc.Inode]; n.PID != uint32(proc.PID) {
		t.Errorf("namespace %d: pid %d, want %d", proc.Inode, n.PID, proc.PID)
	}

	// proc's namespace vanishes between the listing and the walk.
	proc.Kill()
	pick := []Namespace{found[a.Inode], found[b.Inode], found[proc.Inode], found[self]}
	type row struct {
		NetNS uint32
		Local netip.AddrPort
		State tcp.State
	}
	var got []row
	res, err := WalkNetNS(context.Background(), pick, Options{Protos: []Proto{TCP}}, 2, func(s *Socket) error {
		if s.NetNS == a.Inode || s.NetNS == b.Inode {
			got = append(got, row{s.NetNS, s.Local, s.State})
		}
		if s.NetNS != a.Inode && s.NetNS != b.Inode && s.NetNS != self {
			t.Errorf("socket of namespace %d, not one asked for", s.NetNS)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res[:2] {
		if r.Err != nil || r.Sockets != 3 {
			t.Errorf("namespace %d: %d sockets, %v; want 3", r.Inode, r.Sockets, r.Err)
		}
	}
	if !errors.Is(res[2].Err, ErrNetNSGone) {
		t.Errorf("vanished namespace: got %v, want %v", res[2].Err, ErrNetNSGone)
	}
	if res[3].Err != nil {
		t.Errorf("own namespace: %v", res[3].Err)
	}
	var want []row
	for _, ns := range []struct {
		ino  uint32
		addr netip.AddrPort
	}{{a.Inode, addrA}, {b.Inode, addrB}} {
		want = append(want, row{ns.ino, ns.addr, tcp.Listen}, row{ns.ino, ns.addr, tcp.Established})
	}
	// The client side's port is ephemeral: compare servers' rows and count.
	var servers []row
	for _, r := range got {
		if r.Local.Port() == 7001 {
			servers = append(servers, r)
		}
	}
	opt := cmpopts.SortSlices(func(x, y row) bool {
		if x.NetNS != y.NetNS {
			return x.NetNS < y.NetNS
		}
		return x.State < y.State
	})
	if diff := cmp.Diff(want, servers, opt, cmpopts.EquateComparable(netip.AddrPort{})); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}

	// Options.NetNS: one namespace through Dump, by selector.
	sel, err := ResolveNetNS(b.Name)
	if err != nil {
		t.Fatal(err)
	}
	socks, err := Dump(context.Background(), Options{Protos: []Proto{TCP}, NetNS: &sel})
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 3 || socks[0].NetNS != b.Inode {
		t.Errorf("dump of %s: %d sockets (want 3), first in %d", b.Name, len(socks), socks[0].NetNS)
	}
	for _, form := range []string{"pid:" + strconv.Itoa(os.Getpid()), "self", "/proc/self/ns/net", strconv.Itoa(int(self))} {
		n, err := ResolveNetNS(form)
		if err != nil || n.Inode != self {
			t.Errorf("%s: got %d, %v; want %d", form, n.Inode, err, self)
		}
	}
}

// TestWalkNetNSGoneNamed: a named namespace deleted after the listing is
// reported gone, not failed.
func TestWalkNetNSGoneNamed(t *testing.T) {
	needRoot(t)
	ns := netnstest.New(t)
	n, err := ResolveNetNS(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	ns.Delete()
	res, err := WalkNetNS(context.Background(), []Namespace{n}, Options{Protos: []Proto{TCP}}, 1, func(*Socket) error { return nil })
	if err != nil || !errors.Is(res[0].Err, ErrNetNSGone) {
		t.Errorf("got %v, %v; want %v", res[0].Err, err, ErrNetNSGone)
	}
}

// BenchmarkWalkNetNS50 times a TCP dump of 50 namespaces, each holding a
// listener and a connection: the start-up cost of a node agent.
func BenchmarkWalkNetNS50(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (network namespaces)")
	}
	var nss []Namespace
	for range 50 {
		ns := netnstest.New(b)
		var ln net.Listener
		if err := ns.Do(func() error {
			var err error
			ln, err = net.Listen("tcp", "127.0.0.1:7002")
			return err
		}); err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		n, err := ResolveNetNS(ns.Name)
		if err != nil {
			b.Fatal(err)
		}
		nss = append(nss, n)
	}
	b.ResetTimer()
	began := time.Now()
	for b.Loop() {
		res, err := WalkNetNS(context.Background(), nss, Options{Protos: []Proto{TCP}}, 2, func(*Socket) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil || r.Sockets != 1 {
				b.Fatalf("namespace %d: %d sockets, %v", r.Inode, r.Sockets, r.Err)
			}
		}
	}
	b.ReportMetric(float64(time.Since(began).Microseconds())/float64(b.N)/1000, "ms/50ns")
}
