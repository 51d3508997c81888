package tracer

import (
	"net/netip"
	"time"

	"github.com/tcpstat/tcpstat/internal/tcp"
)

// Kind says what an Event reports.
type Kind uint8

const (
	// Transition is a change of TCP state reported by the kernel, or an
	// inferred hand-off to a timewait mini-socket (Event.Inferred).
	Transition = Kind(tcpstateEventKindKIND_TRANSITION)
	// Accept is a passive-open socket returned by accept(): from here on the
	// socket has an owner. Old and New are both the socket's current state.
	Accept = Kind(tcpstateEventKindKIND_ACCEPT)
)

func (k Kind) String() string {
	switch k {
	case Transition:
		return "transition"
	case Accept:
		return "accept"
	}
	return "unknown"
}

// Reason tells apart the ways a socket leaves the connection (its move to
// CLOSE or to an inferred TIME_WAIT). It is ReasonNone on other transitions.
type Reason uint8

const (
	ReasonNone     = Reason(tcpstateCloseReasonREASON_NONE)
	ReasonTimeWait = Reason(tcpstateCloseReasonREASON_TIMEWAIT) // handed to a timewait mini-socket
	ReasonDone     = Reason(tcpstateCloseReasonREASON_DONE)     // orderly end without timewait (LAST_ACK → CLOSE, listener closed)
	ReasonReset    = Reason(tcpstateCloseReasonREASON_RESET)    // reset received (ECONNRESET, EPIPE)
	ReasonRefused  = Reason(tcpstateCloseReasonREASON_REFUSED)  // connect refused by a reset (ECONNREFUSED)
	ReasonTimeout  = Reason(tcpstateCloseReasonREASON_TIMEOUT)  // retransmissions or keepalives ran out (ETIMEDOUT)
	ReasonAbort    = Reason(tcpstateCloseReasonREASON_ABORT)    // closed by its owner without a FIN exchange: reset sent, or disconnect
	ReasonError    = Reason(tcpstateCloseReasonREASON_ERROR)    // another socket error (Event.Errno)
)

var reasonNames = [...]string{
	ReasonNone: "", ReasonTimeWait: "timewait", ReasonDone: "done", ReasonReset: "reset",
	ReasonRefused: "refused", ReasonTimeout: "timeout", ReasonAbort: "abort", ReasonError: "error",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// OwnerSource says how an event's owner was learned.
type OwnerSource uint8

const (
	// OwnerNone: no owner is known.
	OwnerNone = OwnerSource(tcpstateOwnerSourceOWNER_NONE)
	// OwnerSyscall: the owner held the socket lock at one of the socket's
	// transitions (connect, listen, close, shutdown...).
	OwnerSyscall = OwnerSource(tcpstateOwnerSourceOWNER_SYSCALL)
	// OwnerAccept: accept() returned the socket to the owner.
	OwnerAccept = OwnerSource(tcpstateOwnerSourceOWNER_ACCEPT)
	// OwnerSnapshot is never set by the tracer: the connection table sets
	// it on rows whose owner it found in /proc (a socket older than tcpstat
	// that has not acted since).
	OwnerSnapshot OwnerSource = 3
)

var ownerSourceNames = [...]string{OwnerNone: "", OwnerSyscall: "syscall", OwnerAccept: "accept", OwnerSnapshot: "snapshot"}

// String is the name used in JSON (owner_source), "" for OwnerNone.
func (s OwnerSource) String() string {
	if int(s) < len(ownerSourceNames) {
		return ownerSourceNames[s]
	}
	return "unknown"
}

// Process identifies a task: the process (thread group) id, its command name,
// and the uid and cgroup v2 id it ran with.
type Process struct {
	PID    uint32
	Comm   string
	UID    uint32
	Cgroup uint64
}

// Counters are a connection's totals, read from the socket when it leaves
// the connection (on moves to CLOSE or TIME_WAIT).
type Counters struct {
	BytesReceived uint64
	BytesAcked    uint64
	Retransmits   uint32
	SRTT          time.Duration
}

// Event is one report from the kernel program, decoded and converted once.
type Event struct {
	Kind Kind
	// Time is CLOCK_BOOTTIME in nanoseconds: the kernel's clock at the event.
	// Clock converts it to wall time.
	Time   uint64
	Cookie uint64 // socket cookie: the connection's identity (see Synthetic)
	NetNS  uint32 // network namespace inode
	Local  netip.AddrPort
	Remote netip.AddrPort
	Old    tcp.State
	New    tcp.State
	// Inferred is set on the hand-off to a timewait mini-socket, which the
	// kernel never reports as a transition of its own.
	Inferred bool
	// TimeWaitFinWait2 marks an inferred hand-off made before the peer's FIN
	// arrived: the mini-socket is in FIN_WAIT2 until it does (ss shows it so).
	TimeWaitFinWait2 bool
	Reason           Reason
	Errno            uint16 // sk_err at close, 0 if none
	// Owner is the process that owns the socket: the one that called
	// connect() or listen(), accept()ed it, or acted on it last from a system
	// call. OwnerKnown is false before a passive open is accepted;
	// OwnerSource says how the owner was learned (OwnerNone when unknown).
	Owner       Process
	OwnerKnown  bool
	OwnerSource OwnerSource
	// Task is whoever was running when the kernel made the transition: often
	// a bystander (softirq, ksoftirqd, another process).
	Task Process
	// Dwell is the time spent in Old; DwellKnown is false when the socket's
	// previous transition was not seen.
	Dwell      time.Duration
	DwellKnown bool
	// Synthetic marks a cookie made up by tcpstat because this kernel cannot
	// give tracing programs the real one (before 5.12).
	Synthetic bool
	Counters  Counters // set when the socket leaves the connection
}

// IPv6 reports whether the socket is AF_INET6.
func (e *Event) IPv6() bool { return e.Local.Addr().Is6() }
