package tracer

import "net/netip"

// KernelFilter is a filter program for the BPF program (internal/filter
// compiles one from an expression). Each instruction tests one property of
// the socket, then goes to its Yes or No instruction, always forward, until
// FilterAccept or FilterReject. The program runs once per socket, when its
// identity is known (see NeedsLocalPort, NeedsOwner): the verdict is kept
// with the socket's state, so a socket's events all reach user space or
// none does.
type KernelFilter struct {
	Insns []FilterInsn
	// Prefixes are the address sets FilterLocalSet and FilterRemoteSet
	// look up, in an LPM trie.
	Prefixes []FilterPrefix
	// CgroupLevels are the cgroup tree levels whose ancestor ids a socket
	// records from its owner (FilterCgroup's Slot indexes them).
	CgroupLevels []uint16
	// NeedsLocalPort leaves a socket undecided while its local port is 0
	// (CLOSE → SYN_SENT); NeedsOwner while no owner is known. An undecided
	// socket's events reach user space; if the socket is then rejected,
	// its deciding event does too, so user space can drop what it held.
	NeedsLocalPort bool
	NeedsOwner     bool
}

// FilterOp is what an instruction tests.
type FilterOp uint8

const (
	// FilterFamily: the address family is Value (AF_INET 2, AF_INET6 10).
	FilterFamily FilterOp = iota + 1
	// FilterLocalPort, FilterRemotePort: Lo <= port <= Hi.
	FilterLocalPort
	FilterRemotePort
	// FilterLocalSet, FilterRemoteSet: the address is in prefix set Set.
	// IPv4 prefixes also match v4-mapped IPv6 addresses.
	FilterLocalSet
	FilterRemoteSet
	// FilterNetNS: the network namespace's inode is Value.
	FilterNetNS
	// FilterCgroup: the owner's cgroup is Value or below it: the owner's
	// ancestor at CgroupLevels[Slot] is Value.
	FilterCgroup
)

// The jump targets that end the program.
const (
	FilterAccept = 0xfe
	FilterReject = 0xff
)

// Limits of the kernel program's maps.
const (
	MaxFilterInsns    = 64
	MaxFilterPrefixes = 1 << 14
	MaxCgroupLevels   = 4
)

// FilterInsn is one instruction.
type FilterInsn struct {
	Op      FilterOp
	Yes, No uint8 // next instruction, FilterAccept or FilterReject
	Slot    uint8
	Lo, Hi  uint16
	Set     uint32
	Value   uint64
}

// FilterPrefix is one prefix of a set.
type FilterPrefix struct {
	Set    uint32
	Prefix netip.Prefix
}
