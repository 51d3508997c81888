// Package snapshot lists the sockets the kernel holds right now: netlink
// sock_diag first, /proc/net as fallback, owners from /proc/*/fd.
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

// Owner is a process holding a descriptor for the socket.
type Owner struct {
	PID  uint32
	Comm string
}

// TCPInfo is the part of struct tcp_info that views show.
type TCPInfo struct {
	RTT           time.Duration
	RTTVar        time.Duration
	Retransmits   uint32 // total retransmitted segments
	BytesReceived uint64
	BytesAcked    uint64
}

// Socket is one socket as the kernel lists it. Fields that a source cannot
// give are left zero; TCPInfo is nil when the kernel gave none.
type Socket struct {
	Proto  Proto
	IPv6   bool
	State  tcp.State // kernel state number (UDP and RAW reuse the TCP numbering)
	Local  netip.AddrPort
	Remote netip.AddrPort
	Cookie uint64 // socket cookie (sock_diag only)
	Inode  uint64 // 0 for TIME_WAIT and request sockets
	UID    uint32
	RecvQ  uint32
	SendQ  uint32
	Owners []Owner // filled by the owner scan when asked for
	Info   *TCPInfo
}
