package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/tcp"
)

// Wire sizes of the sock_diag structures (include/uapi/linux/inet_diag.h,
// unix_diag.h). The messages are parsed by offset, not cast, so a short or
// corrupt message is an error rather than a wild read.
const (
	sizeofNlMsghdr      = 16
	sizeofInetDiagReqV2 = 56
	sizeofInetDiagReq   = 60 // the old request, TCPDIAG_GETSOCK's
	sizeofInetDiagMsg   = 72
	sizeofUnixDiagReq   = 24
	sizeofUnixDiagMsg   = 16
	sizeofRtAttr        = 4

	// tcpDiagGetSock is the old TCP request (before SOCK_DIAG_BY_FAMILY,
	// still served): its dump lists IPv4 and IPv6 in one walk.
	tcpDiagGetSock = 18

	inetDiagInfo = 2  // INET_DIAG_INFO: struct tcp_info
	inetDiagMark = 15 // INET_DIAG_MARK: sk_mark, sent only to CAP_NET_ADMIN

	unixDiagName  = 0 // UNIX_DIAG_NAME
	unixDiagPeer  = 2 // UNIX_DIAG_PEER
	unixDiagRQLen = 4 // UNIX_DIAG_RQLEN
	unixDiagUID   = 7 // UNIX_DIAG_UID

	udiagShowName  = 0x01
	udiagShowPeer  = 0x04
	udiagShowRQLen = 0x10
	udiagShowUID   = 0x40

	// Netlink dump skbs are at most 32 KiB (netlink_recvmsg caps
	// max_recvmsg_len); twice that leaves room for any kernel.
	recvBufSize = 64 << 10

	// A dump is restarted this many times when the kernel marks it
	// interrupted (NLM_F_DUMP_INTR: the hash changed under the walk).
	maxDumpAttempts = 5
)

// errDumpInterrupted is what a dump reports when every attempt was
// interrupted.
var errDumpInterrupted = errors.New("sock_diag dump interrupted by concurrent changes")

// diagConn is a NETLINK_SOCK_DIAG socket with its receive buffer. It is
// used by one goroutine at a time.
type diagConn struct {
	fd  int
	buf []byte
	seq uint32
}

func openDiag() (*diagConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind sock_diag netlink socket: %w", err)
	}
	return &diagConn{fd: fd, buf: make([]byte, recvBufSize)}, nil
}

func (c *diagConn) Close() error {
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// tcpBothType is the message type of a TCP dump of both families, and
// onDumpRequest, when set, is told each request's type: variables for
// tests, to have the kernel refuse the request and to see which ones go.
var (
	tcpBothType   uint16 = tcpDiagGetSock
	onDumpRequest func(typ uint16)
)

// diagReq is a dump request: the netlink message type and its payload.
type diagReq struct {
	typ     uint16 // SOCK_DIAG_BY_FAMILY, or tcpDiagGetSock
	payload []byte // inet_diag_req_v2, unix_diag_req, or inet_diag_req
}

// dump sends one dump request and hands every answer's payload to
// each as it arrives, from one reused buffer: a dump of 100 000 sockets
// touches 64 KiB of memory, not megabytes. It reports whether the kernel
// flagged the dump as interrupted.
func (c *diagConn) dump(r diagReq, each func(msg []byte) error) (interrupted bool, err error) {
	c.seq++
	req := make([]byte, sizeofNlMsghdr+len(r.payload))
	binary.NativeEndian.PutUint32(req[0:4], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:6], r.typ)
	binary.NativeEndian.PutUint16(req[6:8], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:12], c.seq)
	copy(req[sizeofNlMsghdr:], r.payload)
	if onDumpRequest != nil {
		onDumpRequest(r.typ)
	}
	if err := unix.Sendto(c.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return false, fmt.Errorf("send sock_diag request: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return interrupted, fmt.Errorf("receive sock_diag answer: %w", err)
		}
		done, intr, err := walkMessages(c.buf[:n], c.seq, each)
		interrupted = interrupted || intr
		if err != nil || done {
			return interrupted, err
		}
	}
}

// walkMessages splits one netlink datagram into messages. It returns done
// at NLMSG_DONE and an error for NLMSG_ERROR or a malformed header.
func walkMessages(b []byte, seq uint32, each func(msg []byte) error) (done, interrupted bool, err error) {
	for len(b) >= sizeofNlMsghdr {
		l := binary.NativeEndian.Uint32(b[0:4])
		typ := binary.NativeEndian.Uint16(b[4:6])
		flags := binary.NativeEndian.Uint16(b[6:8])
		mseq := binary.NativeEndian.Uint32(b[8:12])
		if l < sizeofNlMsghdr || uint64(l) > uint64(len(b)) {
			return false, interrupted, fmt.Errorf("malformed netlink message: length %d of %d bytes", l, len(b))
		}
		msg := b[sizeofNlMsghdr:l]
		if aligned := (l + 3) &^ 3; uint64(aligned) <= uint64(len(b)) {
			b = b[aligned:]
		} else {
			b = b[l:]
		}
		if mseq != seq {
			continue // a stale answer to an earlier, abandoned request
		}
		if flags&unix.NLM_F_DUMP_INTR != 0 {
			interrupted = true
		}
		switch typ {
		case unix.NLMSG_DONE:
			// A dump that failed inside the kernel (no handler for the
			// protocol, say) ends with its negative errno here.
			if len(msg) >= 4 {
				if errno := -int32(binary.NativeEndian.Uint32(msg[0:4])); errno > 0 {
					return false, interrupted, unix.Errno(errno)
				}
			}
			return true, interrupted, nil
		case unix.NLMSG_ERROR:
			if len(msg) < 4 {
				return false, interrupted, errors.New("malformed netlink error message")
			}
			errno := -int32(binary.NativeEndian.Uint32(msg[0:4]))
			if errno == 0 {
				return true, interrupted, nil
			}
			return false, interrupted, unix.Errno(errno)
		case unix.NLMSG_NOOP:
			continue
		}
		if err := each(msg); err != nil {
			return false, interrupted, err
		}
	}
	return false, interrupted, nil
}

// inetRequest builds an inet_diag_req_v2 for one family and protocol.
func inetRequest(family, protocol uint8, states uint32, wantInfo bool) []byte {
	req := make([]byte, sizeofInetDiagReqV2)
	req[0] = family
	req[1] = protocol
	if wantInfo {
		req[2] = 1 << (inetDiagInfo - 1)
	}
	if protocol == unix.IPPROTO_RAW {
		req[3] = unix.IPPROTO_RAW // sdiag_raw_protocol: every raw socket
	}
	binary.NativeEndian.PutUint32(req[4:8], states)
	return req
}

// tcpBothRequest builds the old inet_diag_req for TCPDIAG_GETSOCK. The
// kernel dumps it as family AF_UNSPEC: IPv4 and IPv6 sockets in one walk
// of its hash table, where one request per family walks it twice. The
// answers are the same inet_diag_msg.
func tcpBothRequest(states uint32, wantInfo bool) []byte {
	req := make([]byte, sizeofInetDiagReq)
	req[0] = unix.AF_UNSPEC // idiag_family: the kernel dumps AF_UNSPEC whatever it says
	if wantInfo {
		req[3] = 1 << (inetDiagInfo - 1) // idiag_ext
	}
	// id (bytes 4–51) left zero: no port or address to match.
	binary.NativeEndian.PutUint32(req[52:56], states) // idiag_states; idiag_dbs unused
	return req
}

// parseInetMsg decodes one inet_diag_msg (with its attributes) into s.
// Ports and addresses are big-endian on the wire; everything else is
// host order. info, when not nil, receives INET_DIAG_INFO and is linked.
func parseInetMsg(b []byte, proto Proto, s *Socket, info *TCPInfo) error {
	if len(b) < sizeofInetDiagMsg {
		return fmt.Errorf("short inet_diag_msg: %d bytes", len(b))
	}
	family := b[0]
	*s = Socket{Proto: proto}
	switch family {
	case unix.AF_INET:
		s.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[8:12])), binary.BigEndian.Uint16(b[4:6]))
		s.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[24:28])), binary.BigEndian.Uint16(b[6:8]))
	case unix.AF_INET6:
		s.IPv6 = true
		s.Local = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), binary.BigEndian.Uint16(b[4:6]))
		s.Remote = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[24:40])), binary.BigEndian.Uint16(b[6:8]))
	default:
		return fmt.Errorf("inet_diag_msg with unknown family %d", family)
	}
	s.State = tcp.State(b[1])
	s.Timer = Timer(b[2])
	s.Retrans = b[3]
	s.Cookie = uint64(binary.NativeEndian.Uint32(b[44:48])) | uint64(binary.NativeEndian.Uint32(b[48:52]))<<32
	s.TimerLeft = time.Duration(binary.NativeEndian.Uint32(b[52:56])) * time.Millisecond
	s.RecvQ = binary.NativeEndian.Uint32(b[56:60])
	s.SendQ = binary.NativeEndian.Uint32(b[60:64])
	s.UID = binary.NativeEndian.Uint32(b[64:68])
	s.Inode = uint64(binary.NativeEndian.Uint32(b[68:72]))
	s.Dev = binary.NativeEndian.Uint32(b[40:44])
	return walkAttrs(b[sizeofInetDiagMsg:], func(typ uint16, v []byte) {
		switch {
		case typ == inetDiagMark && len(v) >= 4:
			s.Mark, s.MarkKnown = binary.NativeEndian.Uint32(v), true
		case typ == inetDiagInfo && info != nil && parseTCPInfo(v, s, info):
			s.Info = info
		}
	})
}

// parseTCPInfo reads the struct tcp_info fields we show; older kernels
// send a shorter struct, so every field is length-checked.
func parseTCPInfo(v []byte, s *Socket, info *TCPInfo) bool {
	if len(v) < 104 {
		return false
	}
	// idiag_retrans is the probe count under keepalive and zero-window
	// timers; tcp_info has both counters as /proc/net/tcp shows them.
	s.Retrans = v[2]
	s.Probes = v[3]
	*info = TCPInfo{
		RTT:         time.Duration(binary.NativeEndian.Uint32(v[68:72])) * time.Microsecond,
		RTTVar:      time.Duration(binary.NativeEndian.Uint32(v[72:76])) * time.Microsecond,
		Retransmits: binary.NativeEndian.Uint32(v[100:104]),
	}
	if len(v) >= 136 {
		info.BytesAcked = binary.NativeEndian.Uint64(v[120:128])
		info.BytesReceived = binary.NativeEndian.Uint64(v[128:136])
	}
	return true
}

// walkAttrs iterates rtattr-framed attributes, stopping at the first
// malformed one.
func walkAttrs(b []byte, each func(typ uint16, v []byte)) error {
	for len(b) >= sizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4])
		if l < sizeofRtAttr || l > len(b) {
			return fmt.Errorf("malformed netlink attribute: length %d of %d bytes", l, len(b))
		}
		each(typ, b[sizeofRtAttr:l])
		aligned := (l + 3) &^ 3
		if aligned > len(b) {
			break
		}
		b = b[aligned:]
	}
	return nil
}

// unixRequest builds a unix_diag_req for every UNIX socket.
func unixRequest() []byte {
	req := make([]byte, sizeofUnixDiagReq)
	req[0] = unix.AF_UNIX
	binary.NativeEndian.PutUint32(req[4:8], 0xffffffff)
	binary.NativeEndian.PutUint32(req[12:16], udiagShowName|udiagShowPeer|udiagShowRQLen|udiagShowUID)
	return req
}

// parseUnixMsg decodes one unix_diag_msg with its attributes into s.
func parseUnixMsg(b []byte, s *Socket) error {
	if len(b) < sizeofUnixDiagMsg {
		return fmt.Errorf("short unix_diag_msg: %d bytes", len(b))
	}
	*s = Socket{
		Proto:    UNIX,
		UnixType: UnixType(b[1]),
		State:    tcp.State(b[2]),
		Inode:    uint64(binary.NativeEndian.Uint32(b[4:8])),
		Cookie:   uint64(binary.NativeEndian.Uint32(b[8:12])) | uint64(binary.NativeEndian.Uint32(b[12:16]))<<32,
	}
	return walkAttrs(b[sizeofUnixDiagMsg:], func(typ uint16, v []byte) {
		switch typ {
		case unixDiagName:
			s.Path = unixPath(v)
		case unixDiagPeer:
			if len(v) >= 4 {
				s.Peer = uint64(binary.NativeEndian.Uint32(v))
			}
		case unixDiagRQLen:
			if len(v) >= 8 {
				s.RecvQ = binary.NativeEndian.Uint32(v[0:4])
				s.SendQ = binary.NativeEndian.Uint32(v[4:8])
			}
		case unixDiagUID:
			if len(v) >= 4 {
				s.UID = binary.NativeEndian.Uint32(v)
			}
		}
	})
}

// unixPath renders a sun_path as /proc/net/unix does: abstract names
// (leading NUL) get an '@', and embedded NULs of abstract names print as '@'.
func unixPath(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	if v[0] != 0 {
		for i, c := range v {
			if c == 0 {
				return string(v[:i])
			}
		}
		return string(v)
	}
	p := make([]byte, len(v))
	for i, c := range v {
		if c == 0 {
			c = '@'
		}
		p[i] = c
	}
	return string(p)
}
