package tracer

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// KernelFilter is a filter program for the BPF program (internal/filter
// compiles one from an expression). Each instruction tests one property of
// the socket, then goes to its Yes or No instruction, always forward, until
// FilterAccept or FilterReject. A socket is judged once, as soon as the
// program can tell (see NeedsLocalPort, NeedsOwner); the verdict is kept
// with the socket's state, so a socket's events all reach user space or
// none does.
type KernelFilter struct {
	Insns []FilterInsn
	// Prefixes are the address sets (0 to 63) FilterLocalSet and
	// FilterRemoteSet test, in an LPM trie.
	Prefixes []FilterPrefix
	// Cgroups are the cgroups FilterOwnerCgroup asks about (its Slot indexes
	// them): the program records which of them a socket's owner is in.
	Cgroups []FilterCgroup
	// NeedsLocalPort: tests of the local port cannot tell while it is 0
	// (CLOSE → SYN_SENT); NeedsOwner: tests of the owner while none is
	// known. A socket the program cannot judge yet has its events sent; if
	// it is then dropped, its deciding event is sent too, so that user
	// space can drop what it held (filter.Gate does).
	NeedsLocalPort bool
	NeedsOwner     bool
}

// FilterOp is what an instruction tests.
type FilterOp uint8

const (
	// FilterFamily: the address family is Value (AF_INET 2, AF_INET6 10).
	FilterFamily = FilterOp(tcpstateFilterOpFILTER_FAMILY)
	// FilterLocalPort, FilterRemotePort: Lo <= port <= Hi.
	FilterLocalPort  = FilterOp(tcpstateFilterOpFILTER_LOCAL_PORT)
	FilterRemotePort = FilterOp(tcpstateFilterOpFILTER_REMOTE_PORT)
	// FilterLocalSet, FilterRemoteSet: the address is in prefix set Set.
	// IPv4 prefixes also match v4-mapped IPv6 addresses.
	FilterLocalSet  = FilterOp(tcpstateFilterOpFILTER_LOCAL_SET)
	FilterRemoteSet = FilterOp(tcpstateFilterOpFILTER_REMOTE_SET)
	// FilterNetNS: the network namespace's inode is Value.
	FilterNetNS = FilterOp(tcpstateFilterOpFILTER_NETNS)
	// FilterOwnerCgroup: the owner is in Cgroups[Slot] or below it.
	FilterOwnerCgroup = FilterOp(tcpstateFilterOpFILTER_CGROUP)
)

// The jump targets that end the program.
const (
	FilterAccept = uint8(tcpstateFilterEndFILTER_ACCEPT)
	FilterReject = uint8(tcpstateFilterEndFILTER_REJECT)
)

// Limits of the kernel program's maps.
const (
	MaxFilterInsns    = 62 // FilterAccept is the next index
	MaxFilterPrefixes = 4096
	MaxFilterSets     = 64
	MaxFilterCgroups  = 8
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

// FilterCgroup is a cgroup v2 directory: its id (inode) and its level in
// the tree (the root is 0).
type FilterCgroup struct {
	ID    uint64
	Level uint32
}

// check verifies what the BPF program relies on: sizes, known operations,
// forward jumps.
func (kf *KernelFilter) check() error {
	if len(kf.Insns) == 0 || len(kf.Insns) > MaxFilterInsns {
		return fmt.Errorf("kernel filter: %d instructions, want 1 to %d", len(kf.Insns), MaxFilterInsns)
	}
	if len(kf.Prefixes) > MaxFilterPrefixes {
		return fmt.Errorf("kernel filter: %d prefixes, at most %d", len(kf.Prefixes), MaxFilterPrefixes)
	}
	for _, p := range kf.Prefixes {
		if p.Set >= MaxFilterSets || !p.Prefix.IsValid() {
			return fmt.Errorf("kernel filter: prefix %s of set %d: sets are 0 to %d", p.Prefix, p.Set, MaxFilterSets-1)
		}
	}
	if len(kf.Cgroups) > MaxFilterCgroups {
		return fmt.Errorf("kernel filter: %d cgroups, at most %d", len(kf.Cgroups), MaxFilterCgroups)
	}
	for i, in := range kf.Insns {
		if in.Op < FilterFamily || in.Op > FilterOwnerCgroup {
			return fmt.Errorf("kernel filter: instruction %d: unknown operation %d", i, in.Op)
		}
		if (in.Op == FilterLocalSet || in.Op == FilterRemoteSet) && in.Set >= MaxFilterSets {
			return fmt.Errorf("kernel filter: instruction %d: no set %d", i, in.Set)
		}
		if in.Op == FilterOwnerCgroup && int(in.Slot) >= len(kf.Cgroups) {
			return fmt.Errorf("kernel filter: instruction %d: no cgroup %d", i, in.Slot)
		}
		for _, to := range []uint8{in.Yes, in.No} {
			if to != FilterAccept && to != FilterReject && (int(to) <= i || int(to) >= len(kf.Insns)) {
				return fmt.Errorf("kernel filter: instruction %d jumps to %d", i, to)
			}
		}
	}
	return nil
}

// shorthandFilter is Options.Family and Options.Port as a program.
func shorthandFilter(family int, port uint16) (*KernelFilter, error) {
	kf := &KernelFilter{}
	switch family {
	case 0:
	case 4, 6:
		v := uint64(afInet)
		if family == 6 {
			v = afInet6
		}
		next := FilterAccept
		if port != 0 {
			next = 1
		}
		kf.Insns = append(kf.Insns, FilterInsn{Op: FilterFamily, Value: v, Yes: next, No: FilterReject})
	default:
		return nil, fmt.Errorf("address family %d: want 4, 6 or 0 for both", family)
	}
	if port != 0 {
		n := uint8(len(kf.Insns))
		kf.Insns = append(kf.Insns,
			FilterInsn{Op: FilterLocalPort, Lo: port, Hi: port, Yes: FilterAccept, No: n + 1},
			FilterInsn{Op: FilterRemotePort, Lo: port, Hi: port, Yes: FilterAccept, No: FilterReject})
		kf.NeedsLocalPort = true
	}
	if len(kf.Insns) == 0 {
		return nil, nil
	}
	return kf, nil
}

// configureFilter sizes the filter's maps and returns the values of the
// program's filter constants.
func configureFilter(spec *ebpf.CollectionSpec, kf *KernelFilter, kernelBTF *btf.Cache) (map[string]any, error) {
	var (
		n           uint32
		port, owner bool
		ids         [MaxFilterCgroups]uint64
		levels      [MaxFilterCgroups]uint32
		cgroups     uint32
		sets        bool
		prefixes    = 1
	)
	if kf != nil {
		if err := kf.check(); err != nil {
			return nil, err
		}
		if len(kf.Cgroups) > 0 {
			if ok, err := haveCgroupAncestors(kernelBTF); err != nil {
				return nil, err
			} else if !ok {
				return nil, errors.New("kernel filter: this kernel's tracing programs cannot tell an owner's cgroup " +
					"ancestors (bpf_get_current_ancestor_cgroup_id): check cgroups in user space")
			}
		}
		n, port, owner = uint32(len(kf.Insns)), kf.NeedsLocalPort, kf.NeedsOwner
		sets = len(kf.Prefixes) > 0
		for i, c := range kf.Cgroups {
			ids[i], levels[i] = c.ID, c.Level
		}
		cgroups = uint32(len(kf.Cgroups))
		prefixes = max(1, len(kf.Prefixes))
	}
	spec.Maps["filter_prefixes"].MaxEntries = uint32(prefixes)
	return map[string]any{
		"filter_len": n, "filter_needs_port": port, "filter_needs_owner": owner, "filter_has_sets": sets,
		"filter_cgroups": cgroups, "filter_cgroup_id": ids, "filter_cgroup_level": levels,
	}, nil
}

// loadFilter fills the filter's maps before the programs run.
func loadFilter(prog, prefixes *ebpf.Map, kf *KernelFilter) error {
	if kf == nil {
		return nil
	}
	for i, in := range kf.Insns {
		v := tcpstateFilterInsn{Op: uint8(in.Op), Yes: in.Yes, No: in.No, Slot: in.Slot, Lo: in.Lo, Hi: in.Hi, Set: in.Set, Value: in.Value}
		if err := prog.Put(uint32(i), &v); err != nil {
			return fmt.Errorf("load filter instruction %d: %w", i, err)
		}
	}
	for k, sets := range prefixSets(kf.Prefixes) {
		if err := prefixes.Put(filterKey(k), sets); err != nil {
			return fmt.Errorf("load filter prefix %s: %w", k, err)
		}
	}
	return nil
}

// prefixSets gives each distinct prefix the sets that hold it or a
// shorter prefix containing it: the kernel's lookup finds the longest
// prefix containing an address, whose value must then name every set the
// address is in.
func prefixSets(ps []FilterPrefix) map[netip.Prefix]uint64 {
	own := make(map[netip.Prefix]uint64)
	for _, p := range ps {
		own[p.Prefix.Masked()] |= 1 << p.Set
	}
	out := make(map[netip.Prefix]uint64, len(own))
	for p := range own {
		for q, sets := range own {
			if q.Addr().Is4() == p.Addr().Is4() && q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
				out[p] |= sets
			}
		}
	}
	return out
}

// filterKey is a prefix's key in the LPM trie: the family, matched whole,
// then the prefix's bits of the address.
func filterKey(p netip.Prefix) tcpstateFilterKey {
	k := tcpstateFilterKey{Prefixlen: 32 + uint32(p.Bits())}
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		copy(k.Addr[:], b[:])
		k.Family = afInet
	} else {
		k.Addr = a.As16()
		k.Family = afInet6
	}
	return k
}

var errFilterAndShorthand = errors.New("tracer options: Filter and Family/Port exclude each other; compile them into one filter")

// HaveCgroupAncestors reports whether the kernel's tracing programs may
// call bpf_get_current_ancestor_cgroup_id, which FilterOwnerCgroup needs
// (Debian's 5.10 refuses it), by loading a program that does.
func HaveCgroupAncestors() (bool, error) { return haveCgroupAncestors(btf.NewCache()) }

func haveCgroupAncestors(kernelBTF *btf.Cache) (bool, error) {
	return remember("bpf_get_current_ancestor_cgroup_id", func() (bool, error) {
		return probeTracing(kernelBTF, "bpf_get_current_ancestor_cgroup_id", asm.Instructions{
			asm.Mov.Imm(asm.R1, 0),
			asm.FnGetCurrentAncestorCgroupId.Call(),
		})
	})
}
