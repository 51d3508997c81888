package filter

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/tcpstat/tcpstat/internal/tracer"
)

// TooLargeError says the kernel part does not fit the BPF program's maps:
// user space then checks all of the expression.
type TooLargeError struct {
	What string // "instructions", "prefixes", "address sets", "cgroups"
	N    int
	Max  int
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("too large for the kernel's maps (%d %s, at most %d)", e.N, e.What, e.Max)
}

// kernelCgroups reports whether the BPF program can check cgroups on this
// kernel. When the probe cannot tell (no privileges), it assumes so: the
// tracer, which needs them too, would fail anyway.
var kernelCgroups = sync.OnceValue(func() bool {
	ok, err := tracer.HaveCgroupAncestors()
	return ok || err != nil
})

// Address families as the kernel numbers them.
const (
	afInet  = 2
	afInet6 = 10
)

// ListOnlyError says the expression has conditions that only a listing's
// sockets carry (dev, fwmark): no view of events can check it.
type ListOnlyError struct {
	Conds []string // "dev", "fwmark"
}

func (e *ListOnlyError) Error() string {
	verb := "works"
	if len(e.Conds) > 1 {
		verb = "work"
	}
	return fmt.Sprintf("%s %s in tcpstat list only, which checks all of the expression in user space", strings.Join(e.Conds, " and "), verb)
}

// Kernel compiles the kernel part of the expression (Split().Kernel) for
// the BPF program. It returns nil and no error when nothing is left for
// the kernel, a *TooLargeError when the part does not fit, and a
// *ListOnlyError for an expression no view of events can take.
func (f *Filter) Kernel() (*tracer.KernelFilter, error) {
	if u := f.Uses(); u.Device || u.Mark {
		e := &ListOnlyError{}
		if u.Device {
			e.Conds = append(e.Conds, "dev")
		}
		if u.Mark {
			e.Conds = append(e.Conds, "fwmark")
		}
		return nil, e
	}
	k := f.Split().Kernel
	if k.Empty() {
		return nil, nil
	}
	c := &compiler{}
	entry := c.gen(k.root, accept, reject)
	kf := &tracer.KernelFilter{Prefixes: c.prefixes, Cgroups: c.cgroups, NeedsLocalPort: c.needPort, NeedsOwner: c.needOwner}
	if c.err != nil {
		return nil, c.err
	}
	if len(c.insns) > tracer.MaxFilterInsns {
		return nil, &TooLargeError{"instructions", len(c.insns), tracer.MaxFilterInsns}
	}
	if len(c.prefixes) > tracer.MaxFilterPrefixes {
		return nil, &TooLargeError{"prefixes", len(c.prefixes), tracer.MaxFilterPrefixes}
	}
	if c.sets > tracer.MaxFilterSets {
		return nil, &TooLargeError{"address sets", int(c.sets), tracer.MaxFilterSets}
	}
	switch entry {
	case accept:
		return nil, nil // checks nothing after all
	case reject:
		// Rejects every socket: one test that cannot pass.
		return &tracer.KernelFilter{Insns: []tracer.FilterInsn{{Op: tracer.FilterLocalPort, Lo: 1, Hi: 0, Yes: tracer.FilterReject, No: tracer.FilterReject}}}, nil
	}
	// Emitted last first: reverse, so every jump goes forward.
	n := len(c.insns)
	target := func(ref int) uint8 {
		switch ref {
		case accept:
			return tracer.FilterAccept
		case reject:
			return tracer.FilterReject
		}
		return uint8(n - 1 - ref)
	}
	kf.Insns = make([]tracer.FilterInsn, n)
	for ref, in := range c.insns {
		in.insn.Yes, in.insn.No = target(in.yes), target(in.no)
		kf.Insns[n-1-ref] = in.insn
	}
	if entry != n-1 {
		return nil, fmt.Errorf("filter: internal error: program starts at %d of %d", entry, n)
	}
	return kf, nil
}

// Jump targets while compiling; instructions are referred to by the order
// they were emitted in.
const (
	accept = -1
	reject = -2
)

type pending struct {
	insn    tracer.FilterInsn
	yes, no int
}

type compiler struct {
	insns     []pending
	prefixes  []tracer.FilterPrefix
	sets      uint32
	cgroups   []tracer.FilterCgroup
	needPort  bool
	needOwner bool
	err       error
}

func (c *compiler) emit(in tracer.FilterInsn, yes, no int) int {
	if yes == no {
		return yes // the test decides nothing
	}
	c.insns = append(c.insns, pending{in, yes, no})
	return len(c.insns) - 1
}

// gen emits the tests for n, going to yes if it holds and no if not, and
// returns where they start. Emitted in reverse, so that the continuations
// exist before the tests that jump to them.
func (c *compiler) gen(n node, yes, no int) int {
	switch n := n.(type) {
	case *andNode:
		return c.gen(n.l, c.gen(n.r, yes, no), no)
	case *orNode:
		terms := c.mergeSets(orTerms(n))
		next := no
		for i := len(terms) - 1; i >= 0; i-- {
			next = c.gen(terms[i], yes, next)
		}
		return next
	case *notNode:
		return c.gen(n.x, no, yes)
	case *familyNode:
		v := uint64(afInet)
		if n.v6 {
			v = afInet6
		}
		return c.emit(tracer.FilterInsn{Op: tracer.FilterFamily, Value: v}, yes, no)
	case *portNode:
		if n.op == opNe {
			return c.port(n.side, n.port, n.port, no, yes)
		}
		lo, hi := portRange(n.op, n.port)
		return c.port(n.side, lo, hi, yes, no)
	case *hostNode:
		e := yes
		if n.prefix.IsValid() {
			e = c.set(n.side, []netip.Prefix{n.prefix}, e, no)
		}
		if n.v6 >= 0 {
			e = c.gen(&familyNode{n.v6 == 1}, e, no)
		}
		if n.port >= 0 {
			e = c.port(n.side, n.port, n.port, e, no)
		}
		return e
	case *setNode:
		return c.set(n.side, n.prefixes, yes, no)
	case *netnsNode:
		return c.emit(tracer.FilterInsn{Op: tracer.FilterNetNS, Value: uint64(n.inode)}, yes, no)
	case *cgroupNode:
		c.needOwner = true
		var st syscall.Stat_t
		if err := syscall.Stat(n.cg.dir, &st); err != nil {
			c.err = fmt.Errorf("filter: cgroup %s: %w", n.cg.path, err)
			return no
		}
		// The root is level 0, "/a" level 1.
		cg := tracer.FilterCgroup{ID: st.Ino, Level: uint32(strings.Count(strings.TrimSuffix(n.cg.path, "/"), "/"))}
		slot := slices.Index(c.cgroups, cg)
		if slot < 0 {
			if len(c.cgroups) == tracer.MaxFilterCgroups {
				c.err = &TooLargeError{"cgroups", len(c.cgroups) + 1, tracer.MaxFilterCgroups}
				return no
			}
			c.cgroups = append(c.cgroups, cg)
			slot = len(c.cgroups) - 1
		}
		return c.emit(tracer.FilterInsn{Op: tracer.FilterOwnerCgroup, Slot: uint8(slot), Value: st.Ino}, yes, no)
	}
	c.err = fmt.Errorf("filter: internal error: %T in the kernel part", n)
	return no
}

func (c *compiler) port(sd side, lo, hi int64, yes, no int) int {
	switch {
	case lo > hi:
		return no
	case lo <= 0 && hi >= 65535:
		return yes
	}
	op := tracer.FilterRemotePort
	if sd == local {
		op = tracer.FilterLocalPort
		c.needPort = true
	}
	return c.emit(tracer.FilterInsn{Op: op, Lo: uint16(max(lo, 0)), Hi: uint16(min(hi, 65535))}, yes, no)
}

func (c *compiler) set(sd side, prefixes []netip.Prefix, yes, no int) int {
	id := c.sets
	c.sets++
	for _, p := range prefixes {
		c.prefixes = append(c.prefixes, tracer.FilterPrefix{Set: id, Prefix: p})
	}
	op := tracer.FilterRemoteSet
	if sd == local {
		op = tracer.FilterLocalSet
	}
	return c.emit(tracer.FilterInsn{Op: op, Set: id}, yes, no)
}

// portRange is the ports a comparison with port accepts, as ss compares
// (":*" is -1).
func portRange(op cmpOp, port int64) (lo, hi int64) {
	switch op {
	case opEq:
		return port, port
	case opLt:
		return 0, port - 1
	case opLe:
		return 0, port
	case opGt:
		return port + 1, 65535
	case opGe:
		return port, 65535
	}
	return 1, 0 // opNe: the caller tests equality and swaps the targets
}

// setNode is addresses of one side in a set of prefixes: the compiler's
// form of an "or" of src (or dst) conditions, one lookup in the kernel's
// LPM trie however many prefixes there are.
type setNode struct {
	side     side
	prefixes []netip.Prefix
}

func (n *setNode) match(s *Subject) bool {
	for _, p := range n.prefixes {
		h := hostNode{side: n.side, prefix: p, port: -1, v6: -1}
		if h.match(s) {
			return true
		}
	}
	return false
}

func (n *setNode) kernel() bool { return true }

func (n *setNode) format(b *strings.Builder) {
	b.WriteString("( ")
	for i, p := range n.prefixes {
		if i > 0 {
			b.WriteString(" or ")
		}
		(&hostNode{side: n.side, prefix: p, port: -1, v6: -1}).format(b)
	}
	b.WriteString(" )")
}

func orTerms(n node) []node {
	if o, ok := n.(*orNode); ok {
		return append(orTerms(o.l), orTerms(o.r)...)
	}
	return []node{n}
}

// mergeSets replaces the address-only src (and dst) conditions among an
// "or"'s terms by one set each.
func (c *compiler) mergeSets(terms []node) []node {
	var sets [2]*setNode
	out := terms[:0:0]
	for _, t := range terms {
		h, ok := t.(*hostNode)
		if !ok || h.port >= 0 || h.v6 >= 0 || !h.prefix.IsValid() {
			out = append(out, t)
			continue
		}
		if sets[h.side] == nil {
			sets[h.side] = &setNode{side: h.side}
			out = append(out, sets[h.side])
		}
		sets[h.side].prefixes = append(sets[h.side].prefixes, h.prefix)
	}
	return out
}
