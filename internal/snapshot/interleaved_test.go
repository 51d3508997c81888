package snapshot

import (
	"context"
	"encoding/binary"
	"net"
	"os"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/tcp"
)

// TestTCPBothRequest: the old request's layout (include/uapi/linux/
// inet_diag.h, struct inet_diag_req), under its own message type.
func TestTCPBothRequest(t *testing.T) {
	r, err := diagRequest(TCP, bothFamilies, States(tcp.Listen, tcp.Established), true)
	if err != nil {
		t.Fatal(err)
	}
	if r.typ != tcpDiagGetSock || tcpDiagGetSock != 18 {
		t.Errorf("message type %d, want TCPDIAG_GETSOCK (18)", r.typ)
	}
	b := r.payload
	if len(b) != 60 {
		t.Fatalf("inet_diag_req of %d bytes, want 60", len(b))
	}
	if b[0] != unix.AF_UNSPEC || b[1] != 0 || b[2] != 0 {
		t.Errorf("family, src_len, dst_len = %d, %d, %d, want 0, 0, 0", b[0], b[1], b[2])
	}
	if b[3] != 1<<(inetDiagInfo-1) {
		t.Errorf("idiag_ext = %#x, want INET_DIAG_INFO's bit", b[3])
	}
	for i, v := range b[4:52] {
		if v != 0 {
			t.Fatalf("socket id byte %d = %d, want a zero id (no match)", i, v)
		}
	}
	if got, want := binary.NativeEndian.Uint32(b[52:56]), uint32(1<<tcp.Listen|1<<tcp.Established); got != want {
		t.Errorf("idiag_states = %#x, want %#x", got, want)
	}
	if r, _ := diagRequest(TCP, bothFamilies, AllStates, false); r.payload[3] != 0 {
		t.Errorf("idiag_ext = %#x without Info, want 0", r.payload[3])
	}
	if r, _ := diagRequest(TCP, IPv6, AllStates, false); r.typ != unix.SOCK_DIAG_BY_FAMILY || r.payload[0] != unix.AF_INET6 {
		t.Errorf("one family's request: type %d family %d, want SOCK_DIAG_BY_FAMILY and AF_INET6", r.typ, r.payload[0])
	}
}

// TestInterleavedDump: one dump of both families lists what a dump per
// family lists, each socket once, with tcp_info and the state filter as
// asked; and where the kernel refuses the old request, the walk falls
// back to a dump per family.
func TestInterleavedDump(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for sock_diag of every socket")
	}
	mine := map[[2]string]bool{}
	for _, nw := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		ln, err := net.Listen(nw.network, nw.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		c, err := net.Dial(nw.network, ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		unspec := "0.0.0.0:0"
		if nw.network == "tcp6" {
			unspec = "[::]:0"
		}
		mine[[2]string{ln.Addr().String(), unspec}] = true
		mine[[2]string{c.LocalAddr().String(), c.RemoteAddr().String()}] = true
		mine[[2]string{s.LocalAddr().String(), s.RemoteAddr().String()}] = true
	}
	type row struct {
		state tcp.State
		v6    bool
		info  bool
	}
	// walk returns the test's sockets by cookie, each of which must come
	// once (other sockets may move under the walk as other tests churn).
	walk := func(t *testing.T, opts Options) map[uint64]row {
		t.Helper()
		out := map[uint64]row{}
		if err := Walk(context.Background(), opts, func(s *Socket) error {
			if mine[[2]string{s.Local.String(), s.Remote.String()}] && s.State != tcp.TimeWait {
				if _, dup := out[s.Cookie]; dup {
					t.Errorf("cookie %d handed out twice", s.Cookie)
				}
				out[s.Cookie] = row{s.State, s.IPv6, s.Info != nil}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	check := func(t *testing.T, opts Options) {
		perFamily := opts
		perFamily.Interleaved = false
		want, got := walk(t, perFamily), walk(t, opts)
		if len(want) != len(mine) {
			t.Fatalf("a dump per family lists %d of the test's %d sockets", len(want), len(mine))
		}
		var v4, v6 int
		for cookie, w := range want {
			if g, ok := got[cookie]; !ok || g != w {
				t.Errorf("cookie %d: interleaved %+v (listed %v), per family %+v", cookie, g, ok, w)
			}
			if w.v6 {
				v6++
			} else {
				v4++
			}
		}
		if len(got) != len(want) || v4 != 3 || v6 != 3 {
			t.Errorf("interleaved lists %d of the test's sockets, per family %d (%d IPv4, %d IPv6): want 6, 3 of each", len(got), len(want), v4, v6)
		}
		for _, r := range got {
			if r.info != opts.Info {
				t.Errorf("tcp_info present %v, asked %v", r.info, opts.Info)
			}
		}
	}
	opts := Options{Protos: []Proto{TCP}, Interleaved: true, Source: Netlink}
	t.Run("old request", func(t *testing.T) {
		// Served, not refused and fallen back from: both families in one dump.
		conn, err := openDiag()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fams := map[bool]int{}
		if _, err := walkNetlink(conn, TCP, bothFamilies, AllStates, false, func(s *Socket) error {
			if mine[[2]string{s.Local.String(), s.Remote.String()}] && s.State != tcp.TimeWait {
				fams[s.IPv6]++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if fams[false] != 3 || fams[true] != 3 {
			t.Errorf("one TCPDIAG_GETSOCK dump listed %d IPv4 and %d IPv6 of the test's sockets, want 3 and 3", fams[false], fams[true])
		}
	})
	t.Run("one dump", func(t *testing.T) { check(t, opts) })
	t.Run("requests sent", func(t *testing.T) {
		// Each of the table's dumps asks for both families in one request.
		var mu sync.Mutex
		sent := map[uint16]int{}
		onDumpRequest = func(typ uint16) {
			mu.Lock()
			defer mu.Unlock()
			sent[typ]++
		}
		defer func() { onDumpRequest = nil }()
		ctx := context.Background()
		for _, d := range []struct {
			name string
			dump func() error
			one  bool // the current namespace only
		}{
			{"Walk", func() error { return Walk(ctx, opts, func(*Socket) error { return nil }) }, true},
			{"DumpTCP", func() error { _, err := DumpTCP(ctx, false); return err }, true},
			{"WalkTCP", func() error { return WalkTCP(ctx, func(*Socket) {}) }, true},
			{"Scope.WalkTCP", func() error { return AllNetNS().WalkTCP(ctx, func(*Socket) {}) }, false},
			{"Scope.DumpTCP", func() error { _, err := AllNetNS().DumpTCP(ctx, false); return err }, false},
		} {
			clear(sent)
			if err := d.dump(); err != nil {
				t.Fatalf("%s: %v", d.name, err)
			}
			mu.Lock()
			both, one := sent[tcpDiagGetSock], sent[unix.SOCK_DIAG_BY_FAMILY]
			mu.Unlock()
			if one != 0 || both < 1 || (d.one && both != 1) {
				t.Errorf("%s sent %d dumps of both families and %d of one, want one of both (per namespace) and none of one", d.name, both, one)
			}
		}
	})
	t.Run("tcp_info", func(t *testing.T) {
		o := opts
		o.Info = true
		check(t, o)
	})
	t.Run("states", func(t *testing.T) {
		o := opts
		o.States = States(tcp.Listen)
		got := walk(t, o)
		if len(got) != 2 {
			t.Errorf("%d of the test's sockets listed for LISTEN, want its two listeners", len(got))
		}
		for c, r := range got {
			if r.state != tcp.Listen {
				t.Errorf("cookie %d in %v, asked for LISTEN only", c, r.state)
			}
		}
	})
	t.Run("refused", func(t *testing.T) {
		// No such sock_diag message: the kernel answers EINVAL.
		defer func(typ uint16) { tcpBothType = typ; tcpBothRefused.Store(false) }(tcpBothType)
		tcpBothType = 0x7fff
		conn, err := openDiag()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := walkNetlink(conn, TCP, bothFamilies, AllStates, false, func(*Socket) error { return nil }); !diagUnsupported(err) {
			t.Fatalf("the kernel answered %v to an unknown message type, want a refusal", err)
		}
		check(t, opts)
		if !tcpBothRefused.Load() {
			t.Error("the refusal was not remembered: every dump would ask again")
		}
	})
}
