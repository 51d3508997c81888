// Package snapshot lists the sockets the kernel holds right now: netlink
// sock_diag first, /proc/net as fallback, owners from /proc/*/fd.
//
//	socks, err := snapshot.Dump(ctx, snapshot.Options{Protos: []snapshot.Proto{snapshot.TCP}})
//
// Dump returns a slice (TCP rows carry their socket cookie, the identity
// the tracer's events use); Walk hands the same sockets to a callback
// without collecting them, for listings of 100 000 sockets; Owners scans
// /proc/*/fd once into an inode → processes map that Attach applies.
// DumpTCP and WalkTCP are the two dumps the connection table reads.
// Interrupted netlink dumps (NLM_F_DUMP_INTR) are retried without handing
// out a socket twice.
package snapshot

import (
	"net/netip"
	"time"

	"github.com/tcpstat/tcpstat/internal/tcp"
)

// Proto is a socket's protocol family as netstat groups them.
type Proto uint8

const (
	TCP Proto = iota + 1
	UDP
	RAW
	UNIX
)

var protoNames = [...]string{TCP: "tcp", UDP: "udp", RAW: "raw", UNIX: "unix"}

// String returns netstat's lowercase protocol name ("tcp", "udp", "raw", "unix").
func (p Proto) String() string {
	if int(p) < len(protoNames) && protoNames[p] != "" {
		return protoNames[p]
	}
	return "unknown"
}

// Owner is a process holding a descriptor for the socket.
type Owner struct {
	PID  uint32
	Comm string // /proc/PID/comm, as ss shows it
	Cmd  string // base name of argv[0], as netstat -p shows it
}

// TCPInfo is the part of struct tcp_info that views show.
type TCPInfo struct {
	RTT           time.Duration
	RTTVar        time.Duration
	Retransmits   uint32 // total retransmitted segments
	BytesReceived uint64
	BytesAcked    uint64
}

// Timer is the kernel timer pending on a socket, numbered as both
// /proc/net/tcp ("tr") and inet_diag (idiag_timer) number it.
type Timer uint8

const (
	TimerOff       Timer = 0
	TimerRetrans   Timer = 1 // retransmit, also SYN-ACK retransmit of request sockets
	TimerKeepalive Timer = 2 // keepalive or the socket's own timer
	TimerTimeWait  Timer = 3
	TimerProbe     Timer = 4 // zero window probe
)

// UnixType is a UNIX socket's type (SOCK_STREAM, SOCK_DGRAM, …).
type UnixType uint8

const (
	UnixStream    UnixType = 1
	UnixDgram     UnixType = 2
	UnixRaw       UnixType = 3
	UnixRDM       UnixType = 4
	UnixSeqPacket UnixType = 5
)

// Socket is one socket as the kernel lists it. Fields that a source cannot
// give are left zero; TCPInfo is nil when the kernel gave none.
type Socket struct {
	Proto  Proto
	IPv6   bool
	State  tcp.State // kernel state number (UDP, RAW and UNIX reuse the TCP numbering)
	Local  netip.AddrPort
	Remote netip.AddrPort
	Cookie uint64 // socket cookie (sock_diag only)
	Inode  uint64 // 0 for TIME_WAIT and request sockets
	NetNS  uint32 // network namespace inode (0 when unknown)
	UID    uint32
	RecvQ  uint32
	SendQ  uint32
	Owners []Owner // filled by the owner scan when asked for
	// Dev is the index of the device the socket is bound to
	// (SO_BINDTODEVICE, sk_bound_dev_if), 0 for none; sock_diag only.
	Dev uint32
	// Mark is the socket's mark (SO_MARK, sk_mark). The kernel reports it
	// to CAP_NET_ADMIN only, and before Linux 5.14 not for TIME_WAIT
	// sockets: MarkKnown says whether it did.
	Mark      uint32
	MarkKnown bool
	Info      *TCPInfo

	// Timer, TimerLeft and Retrans are what netstat -o shows as
	// "on (TimerLeft/Retrans/Probes)". Probes comes from tcp_info when the
	// dump asked for it (Options.Info) and from procfs always.
	Timer     Timer
	TimerLeft time.Duration
	Retrans   uint8 // icsk_retransmits (SYN-ACK retransmits for request sockets)
	Probes    uint8 // icsk_probes_out

	// UNIX sockets only.
	UnixType UnixType
	Path     string // bound path; abstract names start with '@'
	Peer     uint64 // peer's inode (sock_diag only)
	RefCnt   uint32 // reference count (/proc/net/unix only)
}

// Listening reports whether s is a server socket in netstat's sense: a TCP
// or UNIX listener, or a UDP/RAW socket without a remote address.
func (s *Socket) Listening() bool {
	switch s.Proto {
	case TCP, UNIX:
		return s.State == tcp.Listen
	default:
		return !s.Remote.Addr().IsValid() || s.Remote.Addr().IsUnspecified()
	}
}
