// Package loadgen makes loopback TCP workloads for tcpstat's privileged
// tests and benchmarks: a mixed churn of connections that open, idle and
// close every way Linux closes them, and a steady set of idle connections.
// Every loop is bounded in count and time; every socket is on a loopback
// address the caller chooses, so a check can tell the workload's sockets
// from everything else on the host.
package loadgen

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Mix configures a mixed workload.
type Mix struct {
	// Server and Client are the loopback addresses listeners and clients
	// bind (127.0.0.0/8: any of them works without setup).
	Server, Client netip.Addr
	Seed           uint64
	Duration       time.Duration // the workload stops opening connections after it
	Connections    int           // at most this many connections in all
	InFlight       int           // at most this many in flight (kept-open ones do not count)
	Listeners      int           // listeners kept open; one is replaced now and then
	MaxIdle        time.Duration // the longest a connection idles before it closes
}

// Ways a client ends a connection, told to the server in the first byte.
const (
	clientCloses = 'C' // client closes first: TIME_WAIT on the client side
	serverCloses = 'S' // server closes first: TIME_WAIT on the server side
	clientResets = 'R' // client closes with SO_LINGER 0: a reset, no TIME_WAIT
	serverResets = 'X' // server closes with SO_LINGER 0
	keepOpen     = 'K' // idles until the workload ends
)

var ways = []byte{clientCloses, clientCloses, serverCloses, serverCloses, clientResets, serverResets, keepOpen}

// Stats count what a workload did.
type Stats struct {
	Connections int // connects that succeeded
	Refused     int // connects to a closed port, refused by a reset
	Failed      int // connects that failed otherwise (listener replaced meanwhile)
	Listeners   int // listeners opened
}

// RunMix runs the workload until its duration or connection count is used
// up, then closes everything it opened and returns.
func RunMix(ctx context.Context, m Mix) (Stats, error) {
	ctx, cancel := context.WithTimeout(ctx, m.Duration)
	defer cancel()
	rng := rand.New(rand.NewPCG(m.Seed, 0x10ad))
	g := &mix{m: m, done: ctx.Done()}
	defer g.wait()
	for range max(1, m.Listeners) {
		if err := g.listen(); err != nil {
			return g.stats, err
		}
	}
	slots := make(chan struct{}, max(1, m.InFlight))
	for i := 0; i < m.Connections && ctx.Err() == nil; i++ {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		switch {
		case rng.IntN(50) == 0:
			// Listeners come and go.
			g.closeOne(rng.IntN(len(g.listeners)))
			if err := g.listen(); err != nil {
				return g.stats, err
			}
			<-slots
		case rng.IntN(20) == 0:
			g.refused()
			<-slots
		default:
			way := ways[rng.IntN(len(ways))]
			idle := time.Duration(rng.Int64N(int64(m.MaxIdle) + 1))
			target := g.listeners[rng.IntN(len(g.listeners))].Addr()
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				var once sync.Once
				release := func() { once.Do(func() { <-slots }) }
				defer release()
				g.client(target, way, idle, release)
			}()
		}
		// Pace the opens over the duration.
		if m.Connections > 0 {
			select {
			case <-time.After(m.Duration / time.Duration(m.Connections) / 2):
			case <-ctx.Done():
			}
		}
	}
	<-ctx.Done()
	g.wait()
	return g.stats, nil
}

type mix struct {
	m         Mix
	done      <-chan struct{}
	wg        sync.WaitGroup
	mu        sync.Mutex
	stats     Stats
	listeners []net.Listener
	closed    []net.Listener
}

func (g *mix) listen() error {
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(g.m.Server, 0)))
	if err != nil {
		return fmt.Errorf("listen on %v: %w", g.m.Server, err)
	}
	g.listeners = append(g.listeners, ln)
	g.stats.Listeners++
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				g.serve(c.(*net.TCPConn))
			}()
		}
	}()
	return nil
}

func (g *mix) closeOne(i int) {
	ln := g.listeners[i]
	ln.Close()
	g.listeners = append(g.listeners[:i], g.listeners[i+1:]...)
	g.closed = append(g.closed, ln)
}

// refused connects to the port of a listener closed earlier: the kernel
// answers the SYN with a reset.
func (g *mix) refused() {
	if len(g.closed) == 0 {
		return
	}
	addr := g.closed[len(g.closed)-1].Addr().(*net.TCPAddr)
	c, err := g.dial(addr)
	if err == nil {
		c.Close() // the port was taken again meanwhile
		return
	}
	g.count(func(s *Stats) { s.Refused++ })
}

func (g *mix) dial(addr net.Addr) (*net.TCPConn, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(g.m.Client, 0)), Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

func (g *mix) count(f func(*Stats)) {
	g.mu.Lock()
	f(&g.stats)
	g.mu.Unlock()
}

// client makes one connection and ends it the given way. A connection
// kept open calls release at once: it does not count as in flight.
func (g *mix) client(addr net.Addr, way byte, idle time.Duration, release func()) {
	c, err := g.dial(addr)
	if err != nil {
		g.count(func(s *Stats) { s.Failed++ })
		return
	}
	g.count(func(s *Stats) { s.Connections++ })
	defer c.Close()
	if _, err := c.Write([]byte{way}); err != nil {
		return
	}
	if way == keepOpen {
		release()
		<-g.done
		return
	}
	select {
	case <-time.After(idle):
	case <-g.done:
	}
	switch way {
	case clientResets:
		c.SetLinger(0)
	case serverCloses, serverResets:
		// Let the server close first: wait for its FIN or reset.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c)
	}
}

func (g *mix) serve(c *net.TCPConn) {
	defer c.Close()
	way := make([]byte, 1)
	if _, err := io.ReadFull(c, way); err != nil {
		return
	}
	switch way[0] {
	case serverCloses:
		return
	case serverResets:
		c.SetLinger(0)
		return
	}
	// Wait for the client to close or reset, or the workload to end.
	go func() {
		<-g.done
		c.SetReadDeadline(time.Now())
	}()
	io.Copy(io.Discard, c)
}

// wait closes the listeners and waits for every connection to finish.
func (g *mix) wait() {
	for _, ln := range g.listeners {
		ln.Close()
	}
	g.listeners = nil
	g.wg.Wait()
}

// Hold opens n loopback connections from client to a listener on server,
// both ends in this process, calls ready, and keeps them until ctx ends:
// 2n sockets (and 2n descriptors) held still.
func Hold(ctx context.Context, server, client netip.Addr, n int, ready func()) error {
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(server, 0)))
	if err != nil {
		return fmt.Errorf("listen on %v: %w", server, err)
	}
	defer ln.Close()
	conns := make([]net.Conn, 0, 2*n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(client, 0))}
	for range n {
		c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return fmt.Errorf("connection %d of %d: %w", len(conns)/2+1, n, err)
		}
		s, err := ln.Accept()
		if err != nil {
			c.Close()
			return fmt.Errorf("accept connection %d of %d: %w", len(conns)/2+1, n, err)
		}
		conns = append(conns, c, s)
	}
	ready()
	<-ctx.Done()
	return nil
}

// A FullListener is an IPv4 listener whose accept queue is full: it drops
// the SYN of every other connect, which waits in SYN_SENT until its
// dialer gives up.
type FullListener struct {
	Addr   netip.AddrPort
	Filler netip.AddrPort // the local end of the connection that filled it
	fd     int
	filler net.Conn
}

// ListenFull opens a FullListener on addr (port 0: any). Close it when done.
func ListenFull(addr netip.AddrPort) (*FullListener, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	l := &FullListener{fd: fd}
	// Backlog 0 holds one connection; the filler takes it.
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: addr.Addr().As4(), Port: int(addr.Port())}); err != nil {
		l.Close()
		return nil, fmt.Errorf("bind %v: %w", addr, err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		l.Close()
		return nil, fmt.Errorf("listen on %v: %w", addr, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("getsockname: %w", err)
	}
	l.Addr = netip.AddrPortFrom(addr.Addr(), uint16(sa.(*unix.SockaddrInet4).Port))
	if l.filler, err = net.Dial("tcp", l.Addr.String()); err != nil {
		l.Close()
		return nil, fmt.Errorf("fill %v: %w", l.Addr, err)
	}
	l.Filler = l.filler.LocalAddr().(*net.TCPAddr).AddrPort()
	return l, nil
}

// Close closes the listener and the connection that filled it.
func (l *FullListener) Close() error {
	if l.filler != nil {
		l.filler.Close()
	}
	return unix.Close(l.fd)
}
