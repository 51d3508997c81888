package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/tcp"
)

// hostWord renders 4 address bytes as /proc/net prints them: the 32-bit
// word as the host holds it, in hex.
func hostWord(b []byte) string {
	return hex32(binary.NativeEndian.Uint32(b))
}

func hex32(v uint32) string {
	const digits = "0123456789ABCDEF"
	var out [8]byte
	for i := 7; i >= 0; i-- {
		out[i] = digits[v&0xf]
		v >>= 4
	}
	return string(out[:])
}

func TestParseInetLine(t *testing.T) {
	lo := hostWord([]byte{127, 0, 0, 1})
	v6 := netip.MustParseAddr("2001:db8::1").As16()
	v6hex := hostWord(v6[0:4]) + hostWord(v6[4:8]) + hostWord(v6[8:12]) + hostWord(v6[12:16])
	tests := []struct {
		name string
		line string
		ipv6 bool
		want Socket
	}{
		{
			name: "ipv4 established with keepalive",
			line: "   1: " + lo + ":1F90 " + lo + ":D431 01 00000002:00000003 02:000001F4 00000000  1000        0 4242 1 0000000000000000 20 4 30 10 -1",
			want: Socket{Proto: TCP, State: tcp.Established,
				Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("127.0.0.1:54321"),
				Inode: 4242, UID: 1000, SendQ: 2, RecvQ: 3, Timer: TimerKeepalive, TimerLeft: 5 * time.Second},
		},
		{
			name: "request socket becomes NEW_SYN_RECV",
			line: "   2: " + lo + ":1F90 " + lo + ":D432 03 00000000:00000000 01:00000064 00000002     0        0 0 0 0000000000000000",
			want: Socket{Proto: TCP, State: tcp.NewSynRecv,
				Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("127.0.0.1:54322"),
				Timer: TimerRetrans, TimerLeft: time.Second, Retrans: 2},
		},
		{
			name: "ipv6 listener",
			ipv6: true,
			line: "   0: " + v6hex + ":0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0",
			want: Socket{Proto: TCP, IPv6: true, State: tcp.Listen,
				Local: netip.MustParseAddrPort("[2001:db8::1]:22"), Remote: netip.MustParseAddrPort("[::]:0"), Inode: 77},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Socket
			if err := parseInetLine([]byte(tt.line), TCP, tt.ipv6, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestParseInetLineErrors(t *testing.T) {
	for _, line := range []string{
		"",
		"0: 0100007F:1F90",
		"0: 0100007G:1F90 0100007F:0000 0A 0:0 00:0 0 0 0 1",
		"0: 0100007F1F90 0100007F:0000 0A 0:0 00:0 0 0 0 1",
		"0: 0100007F:1F90 0100007F:0000 0A 00 00:0 0 0 0 1",
		"0: 0100007F:1F90 0100007F:0000 0A 0:0 00:0 0 x 0 1",
	} {
		var s Socket
		if err := parseInetLine([]byte(line), TCP, false, &s); err == nil {
			t.Errorf("parseInetLine(%q) = nil error, want one", line)
		}
	}
}

func TestParseUnixLine(t *testing.T) {
	tests := []struct {
		line string
		want Socket
	}{
		{"0000000000000000: 00000002 00000000 00010000 0001 01 1234 /run/my socket",
			Socket{Proto: UNIX, RefCnt: 2, UnixType: UnixStream, State: tcp.Listen, Inode: 1234, Path: "/run/my socket"}},
		{"0000000000000000: 00000003 00000000 00000000 0001 03 99",
			Socket{Proto: UNIX, RefCnt: 3, UnixType: UnixStream, State: tcp.Established, Inode: 99}},
		{"0000000000000000: 00000002 00000000 00000000 0002 01 7 @abstract",
			Socket{Proto: UNIX, RefCnt: 2, UnixType: UnixDgram, State: tcp.Close, Inode: 7, Path: "@abstract"}},
	}
	for _, tt := range tests {
		var got Socket
		if err := parseUnixLine([]byte(tt.line), &got); err != nil {
			t.Fatalf("%q: %v", tt.line, err)
		}
		if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
			t.Errorf("%q (-want +got)\n%s", tt.line, diff)
		}
	}
}

// inetMsg builds an inet_diag_msg the way the kernel lays it out.
func inetMsg(family uint8, state tcp.State, src, dst netip.AddrPort, cookie uint64, extra []byte) []byte {
	b := make([]byte, sizeofInetDiagMsg)
	b[0], b[1], b[2], b[3] = family, byte(state), 1, 2
	binary.BigEndian.PutUint16(b[4:6], src.Port())
	binary.BigEndian.PutUint16(b[6:8], dst.Port())
	s, d := src.Addr().AsSlice(), dst.Addr().AsSlice()
	copy(b[8:24], s)
	copy(b[24:40], d)
	binary.NativeEndian.PutUint32(b[44:48], uint32(cookie))
	binary.NativeEndian.PutUint32(b[48:52], uint32(cookie>>32))
	binary.NativeEndian.PutUint32(b[52:56], 1500)
	binary.NativeEndian.PutUint32(b[56:60], 7)
	binary.NativeEndian.PutUint32(b[60:64], 9)
	binary.NativeEndian.PutUint32(b[64:68], 1000)
	binary.NativeEndian.PutUint32(b[68:72], 31337)
	return append(b, extra...)
}

func rtattr(typ uint16, v []byte) []byte {
	b := make([]byte, 4, 4+len(v)+3)
	binary.NativeEndian.PutUint16(b[0:2], uint16(4+len(v)))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func TestParseInetMsg(t *testing.T) {
	info := make([]byte, 136)
	info[2], info[3] = 1, 3
	binary.NativeEndian.PutUint32(info[68:72], 250)
	binary.NativeEndian.PutUint32(info[100:104], 4)
	binary.NativeEndian.PutUint64(info[120:128], 1000)
	binary.NativeEndian.PutUint64(info[128:136], 2000)
	src, dst := netip.MustParseAddrPort("10.0.0.1:443"), netip.MustParseAddrPort("10.0.0.2:50000")
	mark := binary.NativeEndian.AppendUint32(nil, 0x110)
	msg := inetMsg(unix.AF_INET, tcp.Established, src, dst, 0x1122334455667788, append(rtattr(inetDiagMark, mark), rtattr(inetDiagInfo, info)...))
	binary.NativeEndian.PutUint32(msg[40:44], 3) // idiag_if

	var got Socket
	var ti TCPInfo
	if err := parseInetMsg(msg, TCP, &got, &ti); err != nil {
		t.Fatal(err)
	}
	want := Socket{Proto: TCP, State: tcp.Established, Local: src, Remote: dst, Cookie: 0x1122334455667788,
		Inode: 31337, UID: 1000, RecvQ: 7, SendQ: 9, Timer: TimerRetrans, TimerLeft: 1500 * time.Millisecond,
		Retrans: 1, Probes: 3, // from tcp_info, not idiag_retrans
		Dev: 3, Mark: 0x110, MarkKnown: true,
		Info: &TCPInfo{RTT: 250 * time.Microsecond, Retransmits: 4, BytesAcked: 1000, BytesReceived: 2000}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}

	v6src, v6dst := netip.MustParseAddrPort("[::1]:80"), netip.MustParseAddrPort("[::1]:40000")
	if err := parseInetMsg(inetMsg(unix.AF_INET6, tcp.TimeWait, v6src, v6dst, 5, nil), TCP, &got, nil); err != nil {
		t.Fatal(err)
	}
	if got.Local != v6src || got.Remote != v6dst || !got.IPv6 || got.State != tcp.TimeWait {
		t.Errorf("ipv6: got %v %v ipv6=%v %v", got.Local, got.Remote, got.IPv6, got.State)
	}
	// Without CAP_NET_ADMIN (or a TIME_WAIT socket before 5.14) the
	// kernel sends no mark; a dump without tcp_info still reads it.
	if got.Mark != 0 || got.MarkKnown || got.Dev != 0 {
		t.Errorf("no mark attribute: got Dev %d, Mark %#x known %v", got.Dev, got.Mark, got.MarkKnown)
	}
	if err := parseInetMsg(inetMsg(unix.AF_INET6, tcp.Listen, v6src, v6dst, 5, rtattr(inetDiagMark, mark)), TCP, &got, nil); err != nil {
		t.Fatal(err)
	}
	if got.Mark != 0x110 || !got.MarkKnown || got.Info != nil {
		t.Errorf("mark without tcp_info: got Mark %#x known %v, Info %v", got.Mark, got.MarkKnown, got.Info)
	}
	if err := parseInetMsg(inetMsg(unix.AF_INET6, tcp.Listen, v6src, v6dst, 5, rtattr(inetDiagMark, mark[:2])), TCP, &got, nil); err != nil || got.MarkKnown {
		t.Errorf("a short mark attribute: err %v, MarkKnown %v; want it ignored", err, got.MarkKnown)
	}
	if err := parseInetMsg(msg[:40], TCP, &got, nil); err == nil {
		t.Error("short message: want an error")
	}
}

func TestWalkMessages(t *testing.T) {
	hdr := func(typ, flags uint16, seq uint32, payload []byte) []byte {
		b := make([]byte, 16, 16+len(payload))
		binary.NativeEndian.PutUint32(b[0:4], uint32(16+len(payload)))
		binary.NativeEndian.PutUint16(b[4:6], typ)
		binary.NativeEndian.PutUint16(b[6:8], flags)
		binary.NativeEndian.PutUint32(b[8:12], seq)
		return append(b, payload...)
	}
	errMsg := make([]byte, 4)
	e := -int32(unix.ENOENT)
	binary.NativeEndian.PutUint32(errMsg, uint32(e))
	tests := []struct {
		name                      string
		in                        []byte
		wantDone, wantIntr, wantE bool
		wantN                     int
	}{
		{"two then done", bytes.Join([][]byte{hdr(20, 2, 7, []byte{1, 2, 3, 4}), hdr(20, 2, 7, nil), hdr(unix.NLMSG_DONE, 2, 7, []byte{0, 0, 0, 0})}, nil), true, false, false, 2},
		{"interrupted", hdr(20, unix.NLM_F_DUMP_INTR, 7, nil), false, true, false, 1},
		{"stale seq skipped", hdr(20, 0, 6, nil), false, false, false, 0},
		{"error", hdr(unix.NLMSG_ERROR, 0, 7, errMsg), false, false, true, 0},
		{"dump failed in the kernel", bytes.Join([][]byte{hdr(20, 2, 7, nil), hdr(unix.NLMSG_DONE, 2, 7, errMsg)}, nil), false, false, true, 1},
		{"bad length", []byte{200, 0, 0, 0, 20, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0}, false, false, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := 0
			done, intr, err := walkMessages(tt.in, 7, func([]byte) error { n++; return nil })
			if done != tt.wantDone || intr != tt.wantIntr || (err != nil) != tt.wantE || n != tt.wantN {
				t.Errorf("got done=%v intr=%v err=%v n=%d", done, intr, err, n)
			}
		})
	}
}

func TestParseSocketLink(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"socket:[12345]", 12345, true},
		{"socket:[]", 0, false},
		{"pipe:[12]", 0, false},
		{"socket:[12a]", 0, false},
		{"socket:[99999999999999999999999]", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseSocketLink([]byte(tt.in))
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseSocketLink(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestUnixPathAndCmdName(t *testing.T) {
	if got := unixPath([]byte("\x00abs\x00x")); got != "@abs@x" {
		t.Errorf("abstract: %q", got)
	}
	if got := unixPath([]byte("/run/a\x00\x00")); got != "/run/a" {
		t.Errorf("path: %q", got)
	}
	if got := cmdName([]byte("/usr/sbin/sshd\x00-D\x00")); got != "sshd" {
		t.Errorf("cmdName: %q", got)
	}
	if got := cmdName([]byte("nginx: worker\x00")); got != "nginx: worker" {
		t.Errorf("cmdName: %q", got)
	}
}

func FuzzParseInetMsg(f *testing.F) {
	f.Add(inetMsg(unix.AF_INET, tcp.Established, netip.MustParseAddrPort("1.2.3.4:5"), netip.MustParseAddrPort("5.6.7.8:9"), 1, rtattr(inetDiagInfo, make([]byte, 200))))
	f.Add(inetMsg(unix.AF_INET6, tcp.Listen, netip.MustParseAddrPort("[::1]:5"), netip.MustParseAddrPort("[::]:0"), 1, []byte{255, 255}))
	mark := rtattr(inetDiagMark, []byte{0x10, 0, 0, 0})
	f.Add(inetMsg(unix.AF_INET, tcp.TimeWait, netip.MustParseAddrPort("1.2.3.4:5"), netip.MustParseAddrPort("5.6.7.8:9"), 1, append(mark, rtattr(inetDiagInfo, make([]byte, 136))...)))
	f.Add(inetMsg(unix.AF_INET, tcp.Established, netip.MustParseAddrPort("1.2.3.4:5"), netip.MustParseAddrPort("5.6.7.8:9"), 1, rtattr(inetDiagMark, []byte{1})))
	f.Add(linkAnswer(unix.RTM_NEWLINK, make([]byte, sizeofIfInfomsg)))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Socket
		var ti TCPInfo
		parseInetMsg(b, TCP, &s, &ti)
		parseInetMsg(b, TCP, &s, nil)
		parseUnixMsg(b, &s)
		walkMessages(b, 1, func([]byte) error { return nil })
		parseLinkAnswer(b)
	})
}

func FuzzParseProcNet(f *testing.F) {
	f.Add([]byte("  sl local rem\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1\n"), false)
	f.Add([]byte("Num RefCount\n0000000000000000: 00000002 00000000 00010000 0001 01 1234 /x y\n"), true)
	f.Fuzz(func(t *testing.T, b []byte, unixFile bool) {
		p := TCP
		if unixFile {
			p = UNIX
		}
		parseProcNet(bytes.NewReader(b), p, len(b)%2 == 0, AllStates, nil)
	})
}

// linkAnswer is a netlink message of type typ answering linkRequest.
func linkAnswer(typ uint16, payload []byte) []byte {
	b := make([]byte, sizeofNlMsghdr, sizeofNlMsghdr+len(payload))
	binary.NativeEndian.PutUint32(b[0:4], uint32(sizeofNlMsghdr+len(payload)))
	binary.NativeEndian.PutUint16(b[4:6], typ)
	binary.NativeEndian.PutUint32(b[8:12], 1)
	return append(b, payload...)
}

func TestParseLinkAnswer(t *testing.T) {
	link := make([]byte, sizeofIfInfomsg+8)
	binary.NativeEndian.PutUint32(link[4:8], 7)
	errno := func(e unix.Errno) []byte { return binary.NativeEndian.AppendUint32(nil, uint32(-int32(e))) }
	for _, tc := range []struct {
		name    string
		in      []byte
		idx     uint32
		found   bool
		wantErr error
	}{
		{"link", linkAnswer(unix.RTM_NEWLINK, link), 7, true, nil},
		{"no such device", linkAnswer(unix.NLMSG_ERROR, errno(unix.ENODEV)), 0, true, ErrNoLink},
		{"no alternative names", linkAnswer(unix.NLMSG_ERROR, errno(unix.EINVAL)), 0, true, ErrNoLink},
		{"refused", linkAnswer(unix.NLMSG_ERROR, errno(unix.EPERM)), 0, true, unix.EPERM},
		{"short", linkAnswer(unix.RTM_NEWLINK, link[:8]), 0, true, errAny},
		{"index 0", linkAnswer(unix.RTM_NEWLINK, make([]byte, sizeofIfInfomsg)), 0, true, errAny},
		{"nothing", nil, 0, false, nil},
	} {
		idx, found, err := parseLinkAnswer(tc.in)
		if idx != tc.idx || found != tc.found || (tc.wantErr == nil) != (err == nil) ||
			tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: got %d, %v, %v; want %d, %v, %v", tc.name, idx, found, err, tc.idx, tc.found, tc.wantErr)
		}
	}
}

var errAny = errors.New("any error")

// TestLinkIndex asks the kernel for devices of tcpstat's own namespace:
// lo by its name, and names it does not have, short and long (the latter
// asked for as alternative names).
func TestLinkIndex(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if idx, err := LinkIndex(nil, "lo"); err != nil || idx != uint32(lo.Index) {
		t.Errorf("LinkIndex(lo) = %d, %v; want %d", idx, err, lo.Index)
	}
	for _, name := range []string{"nosuchdev0", "a-name-too-long-for-ifname", ""} {
		if idx, err := LinkIndex(nil, name); !errors.Is(err, ErrNoLink) {
			t.Errorf("LinkIndex(%q) = %d, %v; want ErrNoLink", name, idx, err)
		}
	}
}
