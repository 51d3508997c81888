package table

import (
	"net/netip"
	"time"

	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// Row is one tracked socket. Its fields are packed (addresses as bytes,
// durations in compact units, flags in bits) because a busy host holds
// hundreds of thousands of them; read it through its methods or Conn.
type Row struct {
	cookie        uint64
	cgroup        uint64
	comm          uint32 // id in commNames: thousands of rows share a few names
	since         uint64 // CLOCK_BOOTTIME ns the row entered its state
	seen          uint64 // time of the last event about the row, 0 if none
	born          uint64 // when the socket started (or was first seen)
	ended         uint64 // when the connection ended (timewait hand-off), 0 while open
	expires       uint64 // when a timewait socket's timer runs out, 0 if not one
	bytesReceived uint64
	bytesAcked    uint64
	local         [16]byte
	remote        [16]byte
	dwell         [dwellSlots]dwell
	netns         uint32
	pid           uint32
	uid           uint32
	retransmits   uint32
	srttMicros    uint32
	lport         uint16
	rport         uint16
	flags         rowFlag
	state         tcp.State
	ownerSource   tracer.OwnerSource
}

type rowFlag uint16

const (
	flagIPv6           rowFlag = 1 << iota
	flagInferred               // timewait hand-off inferred, not yet listed by a dump
	flagTimeWait               // a timewait mini-socket: the connection has ended
	flagSinceKnown             // since is the exact time of the transition
	flagBornKnown              // born is the exact time the socket started
	flagOwnerKnown             // pid, uid, comm, cgroup are set
	flagFromDump               // state last set by a dump, not by an event
	flagHandshakeKnown         // dwell in SYN_SENT is a complete handshake
	flagListed                 // scratch: listed by the dump being reconciled
	flagCounters               // counters are set
	flagUnlisted               // the last dump did not list it (one strike)
	flagSynthetic              // keyed by a synthetic id: the kernel gave events no cookie
	flagOwnerFormer            // the owner no longer holds the socket (timewait, orphaned)
)

func (r *Row) has(f rowFlag) bool { return r.flags&f != 0 }

func (r *Row) set(f rowFlag, on bool) {
	if on {
		r.flags |= f
	} else {
		r.flags &^= f
	}
}

// Cookie is the socket cookie, the row's identity.
func (r *Row) Cookie() uint64 { return r.cookie }

// NetNS is the network namespace inode.
func (r *Row) NetNS() uint32 { return r.netns }

// IPv6 reports whether the socket is AF_INET6.
func (r *Row) IPv6() bool { return r.has(flagIPv6) }

// Local is the local address and port.
func (r *Row) Local() netip.AddrPort { return r.addrPort(r.local, r.lport) }

// Remote is the remote address and port.
func (r *Row) Remote() netip.AddrPort { return r.addrPort(r.remote, r.rport) }

// Key is the row's namespace and 4-tuple.
func (r *Row) Key() Key { return Key{r.netns, r.Local(), r.Remote()} }

func (r *Row) addrPort(a [16]byte, port uint16) netip.AddrPort {
	if r.has(flagIPv6) {
		return netip.AddrPortFrom(netip.AddrFrom16(a), port)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[:4])), port)
}

// setAddrs stores the addresses unmapped, as KeyOf does: a dual-stack
// socket's IPv4 peer shows as IPv4.
func (r *Row) setAddrs(local, remote netip.AddrPort) {
	local, remote = unmap(local), unmap(remote)
	v6 := local.Addr().Is6()
	r.set(flagIPv6, v6)
	r.local, r.lport = addrBytes(local.Addr(), v6), local.Port()
	r.remote, r.rport = addrBytes(remote.Addr(), v6), remote.Port()
}

func addrBytes(a netip.Addr, v6 bool) [16]byte {
	var b [16]byte
	switch {
	case !a.IsValid():
	case v6:
		b = a.As16()
	default:
		a4 := a.Unmap().As4()
		copy(b[:], a4[:])
	}
	return b
}

// Synthetic reports a row keyed by a synthetic id: the kernel (before
// 5.12) gave its events no cookie, and no dump has listed the socket since
// to give the row its real one. Match it by Key meanwhile.
func (r *Row) Synthetic() bool { return r.has(flagSynthetic) }

// State is the socket's TCP state as the kernel would list it now.
func (r *Row) State() tcp.State { return r.state }

// Inferred reports a timewait hand-off the kernel did not report on its
// own and no dump has listed yet.
func (r *Row) Inferred() bool { return r.has(flagInferred) }

// TimeWait reports a timewait mini-socket: the connection has ended and
// the kernel only keeps the 4-tuple (in TIME_WAIT, or FIN_WAIT2 until the
// peer's FIN arrives).
func (r *Row) TimeWait() bool { return r.has(flagTimeWait) }

// Since is when the row entered its state (CLOCK_BOOTTIME ns). When known
// is false the transition was not seen: the state held at least since then.
func (r *Row) Since() (t uint64, known bool) { return r.since, r.has(flagSinceKnown) }

// Born is when the socket started (CLOCK_BOOTTIME ns). When known is false
// it started before it was first seen, at that time.
func (r *Row) Born() (t uint64, known bool) { return r.born, r.has(flagBornKnown) }

// Ended is when the connection ended (the timewait hand-off), 0 while open.
func (r *Row) Ended() uint64 { return r.ended }

// Expires is when a timewait socket's timer runs out (CLOCK_BOOTTIME ns):
// the row leaves at the first dump after it. 0 for other rows.
func (r *Row) Expires() uint64 { return r.expires }

// Owner is the process holding the socket, when known. Passive opens not
// yet accepted have none; timewait mini-sockets and orphaned sockets have
// none either, only a FormerOwner.
func (r *Row) Owner() (tracer.Process, bool) {
	if !r.has(flagOwnerKnown) || r.has(flagOwnerFormer) {
		return tracer.Process{}, false
	}
	return r.owner(), true
}

// FormerOwner is the process that last held a socket no process holds any
// more: a timewait mini-socket, or a socket orphaned by close() while its
// connection ends. It answers "who made these TIME_WAITs?".
func (r *Row) FormerOwner() (tracer.Process, bool) {
	if !r.has(flagOwnerKnown) || !r.has(flagOwnerFormer) {
		return tracer.Process{}, false
	}
	return r.owner(), true
}

// OwnerSource says how the owner, current or former, was learned: from
// the events (tracer.OwnerSyscall, tracer.OwnerAccept) or from a dump's
// scan of /proc (tracer.OwnerSnapshot); tracer.OwnerNone without owner.
func (r *Row) OwnerSource() tracer.OwnerSource { return r.ownerSource }

func (r *Row) owner() tracer.Process {
	return tracer.Process{PID: r.pid, Comm: commNames.name(r.comm), UID: r.uid, Cgroup: r.cgroup}
}

func (r *Row) setOwner(p tracer.Process, src tracer.OwnerSource) {
	r.pid, r.uid, r.cgroup = p.PID, p.UID, p.Cgroup
	if commNames.name(r.comm) != p.Comm {
		commNames.release(r.comm)
		r.comm = commNames.acquire(p.Comm)
	}
	r.ownerSource = src
	r.set(flagOwnerKnown, true)
	r.set(flagOwnerFormer, false)
}

func (r *Row) clearOwner() {
	commNames.release(r.comm)
	r.pid, r.uid, r.cgroup, r.comm, r.ownerSource = 0, 0, 0, 0, tracer.OwnerNone
	r.set(flagOwnerKnown|flagOwnerFormer, false)
}

// Dwell is the time the row spent in state s before leaving it, summed
// over visits. The current state's time is counted from Since instead.
func (r *Row) Dwell(s tcp.State) time.Duration {
	if i := dwellSlot(s); i >= 0 {
		return r.dwell[i].duration()
	}
	return 0
}

// Handshake is the time from SYN_SENT to ESTABLISHED of an active open.
func (r *Row) Handshake() (time.Duration, bool) {
	return r.Dwell(tcp.SynSent), r.has(flagHandshakeKnown)
}

// Counters are the socket's totals: final ones after the connection
// ended, otherwise as of the last dump.
func (r *Row) Counters() (tracer.Counters, bool) {
	return tracer.Counters{
		BytesReceived: r.bytesReceived,
		BytesAcked:    r.bytesAcked,
		Retransmits:   r.retransmits,
		SRTT:          time.Duration(r.srttMicros) * time.Microsecond,
	}, r.has(flagCounters)
}

func (r *Row) setCounters(c tracer.Counters) {
	r.bytesReceived, r.bytesAcked, r.retransmits = c.BytesReceived, c.BytesAcked, c.Retransmits
	r.srttMicros = uint32(min(c.SRTT/time.Microsecond, time.Duration(^uint32(0))))
	r.set(flagCounters, true)
}

// Conn is a Row unpacked into plain fields, for views and tests.
type Conn struct {
	Cookie         uint64
	NetNS          uint32
	Local, Remote  netip.AddrPort
	State          tcp.State
	Inferred       bool
	TimeWait       bool
	Owner          tracer.Process // the owner, current or former
	OwnerKnown     bool
	OwnerFormer    bool // Owner no longer holds the socket
	OwnerSource    tracer.OwnerSource
	Since          uint64
	SinceKnown     bool
	Born           uint64
	BornKnown      bool
	Ended          uint64
	Expires        uint64       // a timewait row's timer end, 0 for others
	Dwell          []StateDwell // states the row has left, in kernel order
	Handshake      time.Duration
	HandshakeKnown bool
	Counters       tracer.Counters
	CountersKnown  bool
}

// StateDwell is the time spent in one state.
type StateDwell struct {
	State tcp.State
	Dwell time.Duration
}

// Conn unpacks the row.
func (r *Row) Conn() Conn {
	c := Conn{
		Cookie: r.cookie, NetNS: r.netns, Local: r.Local(), Remote: r.Remote(),
		State: r.state, Inferred: r.Inferred(), TimeWait: r.TimeWait(), Ended: r.ended, Expires: r.expires,
	}
	if r.has(flagOwnerKnown) {
		c.Owner, c.OwnerKnown, c.OwnerFormer, c.OwnerSource = r.owner(), true, r.has(flagOwnerFormer), r.ownerSource
	}
	c.Since, c.SinceKnown = r.Since()
	c.Born, c.BornKnown = r.Born()
	c.Handshake, c.HandshakeKnown = r.Handshake()
	c.Counters, c.CountersKnown = r.Counters()
	for i, d := range r.dwell {
		if d != 0 {
			c.Dwell = append(c.Dwell, StateDwell{dwellStates[i], d.duration()})
		}
	}
	return c
}
