package tracer

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"github.com/tcpstat/tcpstat/internal/tcp"
)

// Flags of struct event, bpf/tcpstate.c (enum event_flag).
const (
	flagOwnerKnown      = uint8(tcpstateEventFlagFLAG_OWNER_KNOWN)
	flagDwellKnown      = uint8(tcpstateEventFlagFLAG_DWELL_KNOWN)
	flagInferred        = uint8(tcpstateEventFlagFLAG_INFERRED)
	flagTimeWaitFinWait = uint8(tcpstateEventFlagFLAG_TW_FIN_WAIT2)
	flagSynthetic       = uint8(tcpstateEventFlagFLAG_SYNTHETIC_COOKIE)
)

const (
	afInet  = 2
	afInet6 = 10
)

// eventSize is the size of struct event; a shorter sample is corrupt.
const eventSize = int(unsafe.Sizeof(tcpstateEvent{}))

// Field offsets come from the generated twin of struct event, so the C
// struct stays the single source of truth.
var off = struct {
	ts, cookie, dwell, ownerCgroup, bytesRecv, bytesAcked, retrans, srtt,
	netns, ownerPID, ownerUID, taskPID, saddr, daddr, sport, dport, family,
	err, kind, old, new, flags, reason, ownerSource, ownerComm, taskComm uintptr
}{
	unsafe.Offsetof(tcpstateEvent{}.TsNs), unsafe.Offsetof(tcpstateEvent{}.Cookie),
	unsafe.Offsetof(tcpstateEvent{}.DwellNs), unsafe.Offsetof(tcpstateEvent{}.OwnerCgroup),
	unsafe.Offsetof(tcpstateEvent{}.BytesReceived), unsafe.Offsetof(tcpstateEvent{}.BytesAcked),
	unsafe.Offsetof(tcpstateEvent{}.TotalRetrans), unsafe.Offsetof(tcpstateEvent{}.SrttUs),
	unsafe.Offsetof(tcpstateEvent{}.Netns), unsafe.Offsetof(tcpstateEvent{}.OwnerPid),
	unsafe.Offsetof(tcpstateEvent{}.OwnerUid), unsafe.Offsetof(tcpstateEvent{}.TaskPid),
	unsafe.Offsetof(tcpstateEvent{}.Saddr), unsafe.Offsetof(tcpstateEvent{}.Daddr),
	unsafe.Offsetof(tcpstateEvent{}.Sport), unsafe.Offsetof(tcpstateEvent{}.Dport),
	unsafe.Offsetof(tcpstateEvent{}.Family), unsafe.Offsetof(tcpstateEvent{}.Err),
	unsafe.Offsetof(tcpstateEvent{}.Kind), unsafe.Offsetof(tcpstateEvent{}.Oldstate),
	unsafe.Offsetof(tcpstateEvent{}.Newstate), unsafe.Offsetof(tcpstateEvent{}.Flags),
	unsafe.Offsetof(tcpstateEvent{}.Reason), unsafe.Offsetof(tcpstateEvent{}.OwnerSource),
	unsafe.Offsetof(tcpstateEvent{}.OwnerComm),
	unsafe.Offsetof(tcpstateEvent{}.TaskComm),
}

// Decoder turns ring buffer samples into Events. It interns command names,
// which repeat endlessly, so that decoding does not allocate per event.
type Decoder struct {
	comms map[[16]byte]string
}

// NewDecoder returns a Decoder with an empty command-name cache.
func NewDecoder() *Decoder {
	return &Decoder{comms: make(map[[16]byte]string)}
}

// maxComms bounds the command-name cache; past it, names are not cached.
const maxComms = 4096

// Decode fills ev from one sample of struct event. It checks the length and
// every enumerated field, so a corrupt sample is an error, never a panic. A
// TCP state this build does not name (a newer kernel's) is not an error: it
// passes through, and prints as UNKNOWN(n).
func (d *Decoder) Decode(raw []byte, ev *Event) error {
	if len(raw) < eventSize {
		return fmt.Errorf("decode event: %d bytes, want %d", len(raw), eventSize)
	}
	ne := binary.NativeEndian
	u64 := func(o uintptr) uint64 { return ne.Uint64(raw[o:]) }
	u32 := func(o uintptr) uint32 { return ne.Uint32(raw[o:]) }
	u16 := func(o uintptr) uint16 { return ne.Uint16(raw[o:]) }

	kind := Kind(raw[off.kind])
	if kind != Transition && kind != Accept {
		return fmt.Errorf("decode event: unknown kind %d", kind)
	}
	// The kernel numbers TCP states from 1.
	old, nw := tcp.State(raw[off.old]), tcp.State(raw[off.new])
	if old == 0 || nw == 0 {
		return fmt.Errorf("decode event: TCP state 0 (%d → %d)", uint8(old), uint8(nw))
	}
	reason := Reason(raw[off.reason])
	if reason > ReasonError {
		return fmt.Errorf("decode event: unknown close reason %d", reason)
	}
	source := OwnerSource(raw[off.ownerSource])
	if source > OwnerAccept || (source != OwnerNone) != (raw[off.flags]&flagOwnerKnown != 0) {
		return fmt.Errorf("decode event: owner source %d with flags %#x", source, raw[off.flags])
	}
	var local, remote netip.Addr
	switch family := u16(off.family); family {
	case afInet:
		local = netip.AddrFrom4([4]byte(raw[off.saddr : off.saddr+4]))
		remote = netip.AddrFrom4([4]byte(raw[off.daddr : off.daddr+4]))
	case afInet6:
		local = netip.AddrFrom16([16]byte(raw[off.saddr : off.saddr+16]))
		remote = netip.AddrFrom16([16]byte(raw[off.daddr : off.daddr+16]))
	default:
		return fmt.Errorf("decode event: unknown address family %d", family)
	}
	flags := raw[off.flags]

	*ev = Event{
		Kind:             kind,
		Time:             u64(off.ts),
		Cookie:           u64(off.cookie),
		NetNS:            u32(off.netns),
		Local:            netip.AddrPortFrom(local, u16(off.sport)),
		Remote:           netip.AddrPortFrom(remote, u16(off.dport)),
		Old:              old,
		New:              nw,
		Inferred:         flags&flagInferred != 0,
		TimeWaitFinWait2: flags&flagTimeWaitFinWait != 0,
		Reason:           reason,
		Errno:            u16(off.err),
		OwnerKnown:       flags&flagOwnerKnown != 0,
		Task:             Process{PID: u32(off.taskPID), Comm: d.comm(raw[off.taskComm:])},
		DwellKnown:       flags&flagDwellKnown != 0,
		Synthetic:        flags&flagSynthetic != 0,
	}
	if ev.OwnerKnown {
		ev.OwnerSource = source
		ev.Owner = Process{
			PID:    u32(off.ownerPID),
			Comm:   d.comm(raw[off.ownerComm:]),
			UID:    u32(off.ownerUID),
			Cgroup: u64(off.ownerCgroup),
		}
	}
	if ev.DwellKnown {
		ev.Dwell = time.Duration(u64(off.dwell))
	}
	if nw == tcp.Close || ev.Inferred {
		ev.Counters = Counters{
			BytesReceived: u64(off.bytesRecv),
			BytesAcked:    u64(off.bytesAcked),
			Retransmits:   u32(off.retrans),
			SRTT:          time.Duration(u32(off.srtt)) * time.Microsecond,
		}
	}
	return nil
}

// comm returns the NUL-terminated name at the start of b (16 bytes).
func (d *Decoder) comm(b []byte) string {
	key := [16]byte(b[:16])
	if s, ok := d.comms[key]; ok {
		return s
	}
	n := 0
	for n < len(key) && key[n] != 0 {
		n++
	}
	s := string(key[:n])
	if len(d.comms) < maxComms {
		d.comms[key] = s
	}
	return s
}
