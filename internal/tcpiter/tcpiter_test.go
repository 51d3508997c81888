package tcpiter

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"testing"
	"testing/iotest"
	"time"

	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/testenv"
)

func record(r tcpsocksTcpSocket) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.NativeEndian, r)
	return b.Bytes()
}

func TestDecode(t *testing.T) {
	v4 := tcpsocksTcpSocket{Cookie: 7, Inode: 99, Sport: 8080, Family: 2, State: 1, Uid: 1000, RxQueue: 3, TxQueue: 4}
	copy(v4.Saddr[:], []byte{127, 0, 0, 1})
	copy(v4.Daddr[:], []byte{127, 0, 0, 2})
	v4.Dport = binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, 40000))
	v6 := tcpsocksTcpSocket{Cookie: 8, Sport: 443, Family: 10, State: 12}
	v6.Saddr[15], v6.Daddr[15] = 1, 1
	in := append(record(v4), record(v6)...)
	var got []snapshot.Socket
	if err := read(iotest.OneByteReader(bytes.NewReader(in)), func(s *snapshot.Socket) { got = append(got, *s) }); err != nil {
		t.Fatal(err)
	}
	want := []snapshot.Socket{
		{Proto: snapshot.TCP, State: tcp.Established, Cookie: 7, Inode: 99, UID: 1000, RecvQ: 3, SendQ: 4,
			Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("127.0.0.2:40000")},
		{Proto: snapshot.TCP, IPv6: true, State: tcp.SynRecv, Cookie: 8,
			Local: netip.MustParseAddrPort("[::1]:443"), Remote: netip.MustParseAddrPort("[::1]:0")},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d sockets, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Local != want[i].Local || got[i].Remote != want[i].Remote || got[i].State != want[i].State ||
			got[i].Cookie != want[i].Cookie || got[i].Inode != want[i].Inode || got[i].UID != want[i].UID ||
			got[i].RecvQ != want[i].RecvQ || got[i].SendQ != want[i].SendQ || got[i].IPv6 != want[i].IPv6 {
			t.Errorf("socket %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if err := read(bytes.NewReader(in[:recordSize+5]), func(*snapshot.Socket) {}); err == nil {
		t.Error("a torn last record gave no error")
	}
}

func FuzzRead(f *testing.F) {
	f.Add(record(tcpsocksTcpSocket{Family: 10}))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		n := 0
		err := read(iotest.HalfReader(bytes.NewReader(in)), func(*snapshot.Socket) { n++ })
		if (err == nil) != (len(in)%recordSize == 0) || n != len(in)/recordSize {
			t.Errorf("%d bytes gave %d sockets and error %v", len(in), n, err)
		}
	})
}

// TestAgainstSockDiag holds listeners, connections with unread and unsent
// bytes and a TIME_WAIT socket, v4 and v6, and checks that the iterator
// lists each of them as sock_diag does.
func TestAgainstSockDiag(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF and CAP_PERFMON) to load the iterator")
	}
	ports := map[uint16]bool{}
	for _, network := range []string{"tcp4", "tcp6"} {
		ln, err := net.Listen(network, map[string]string{"tcp4": "127.0.0.1:0", "tcp6": "[::1]:0"}[network])
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports[uint16(ln.Addr().(*net.TCPAddr).Port)] = true
		for i := range 3 {
			c, err := net.Dial(network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			s, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			switch i {
			case 0: // unread bytes on the server
				if _, err := c.Write([]byte("hello")); err != nil {
					t.Fatal(err)
				}
			case 1: // the client in TIME_WAIT
				testenv.CloseClientFirst(t, c, s)
				continue
			}
			defer c.Close()
			defer s.Close()
		}
	}
	// By port and address: another test's socket elsewhere in 127.0.0.0/8
	// may have one of these ports.
	ours := func(s *snapshot.Socket) bool {
		local := s.Local.Addr()
		return (local == netip.MustParseAddr("127.0.0.1") || local == netip.IPv6Loopback()) &&
			(ports[s.Local.Port()] || ports[s.Remote.Port()])
	}
	// sock_diag first: it assigns the cookies the iterator reads. The
	// closed pair may still be on its way to TIME_WAIT (FIN_WAIT2 and
	// LAST_ACK: a kernel under emulation can defer loopback's softirq):
	// dump again until it settles.
	var want map[uint64]snapshot.Socket
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		diag, err := snapshot.Dump(context.Background(), snapshot.Options{Protos: []snapshot.Proto{snapshot.TCP}, Source: snapshot.Netlink})
		if err != nil {
			t.Fatal(err)
		}
		want = map[uint64]snapshot.Socket{}
		for _, s := range diag {
			if ours(&s) {
				want[s.Cookie] = s
			}
		}
		if len(want) == 2*(1+2+2+1) { // per family: listener, two pairs, one TIME_WAIT
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sock_diag lists %d of this test's sockets, want 12: %v", len(want), want)
		}
	}
	it, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	got := map[uint64]snapshot.Socket{}
	if err := it.Dump(func(s *snapshot.Socket) {
		if ours(s) {
			got[s.Cookie] = *s
		}
	}); err != nil {
		t.Fatal(err)
	}
	for c, w := range want {
		g, ok := got[c]
		if !ok {
			t.Errorf("the iterator does not list %v %v → %v (cookie %d)", w.State, w.Local, w.Remote, c)
			continue
		}
		if g.Local != w.Local || g.Remote != w.Remote || g.State != w.State || g.IPv6 != w.IPv6 ||
			g.Inode != w.Inode || g.UID != w.UID || g.RecvQ != w.RecvQ || g.SendQ != w.SendQ {
			t.Errorf("cookie %d:\niterator  %+v\nsock_diag %+v", c, g, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("the iterator lists %d of this test's sockets, sock_diag %d", len(got), len(want))
	}
}

// BenchmarkDump lists the host's TCP sockets through the iterator, to set
// beside snapshot's BenchmarkDumpTCP (sock_diag): "read" with the program
// loaded once, as the live table would load it with the tracer, and
// "load+read" as a listing would run it. Hold sockets with cmd/listbench
// -hold N in another shell.
func BenchmarkDump(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	n := 0
	count := func(*snapshot.Socket) { n++ }
	b.Run("read", func(b *testing.B) {
		it, err := Load()
		if err != nil {
			b.Fatal(err)
		}
		defer it.Close()
		for b.Loop() {
			n = 0
			if err := it.Dump(count); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n), "sockets")
	})
	b.Run("load+read", func(b *testing.B) {
		for b.Loop() {
			n = 0
			it, err := Load()
			if err != nil {
				b.Fatal(err)
			}
			err = it.Dump(count)
			it.Close()
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n), "sockets")
	})
}
