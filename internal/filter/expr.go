package filter

import (
	"fmt"
	"math/bits"
	"net/netip"
	"path"
	"strconv"
	"strings"

	"github.com/tcpstat/tcpstat/internal/container"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// node is one part of a parsed expression.
type node interface {
	match(s *Subject) bool
	// format writes the node in the canonical form String and explain
	// print: every operator explicit, parentheses where grouping matters.
	format(b *strings.Builder)
	// kernel reports whether the BPF program can check the node from the
	// socket alone (a leaf), or all of the node (a compound).
	kernel() bool
}

type andNode struct{ l, r node }
type orNode struct{ l, r node }
type notNode struct{ x node }

func (n *andNode) match(s *Subject) bool { return n.l.match(s) && n.r.match(s) }
func (n *orNode) match(s *Subject) bool  { return n.l.match(s) || n.r.match(s) }
func (n *notNode) match(s *Subject) bool { return !n.x.match(s) }
func (n *andNode) kernel() bool          { return n.l.kernel() && n.r.kernel() }
func (n *orNode) kernel() bool           { return n.l.kernel() && n.r.kernel() }
func (n *notNode) kernel() bool          { return n.x.kernel() }

func (n *andNode) format(b *strings.Builder) {
	formatOperand(b, n.l, n)
	b.WriteString(" and ")
	formatOperand(b, n.r, n)
}

func (n *orNode) format(b *strings.Builder) {
	formatOperand(b, n.l, n)
	b.WriteString(" or ")
	formatOperand(b, n.r, n)
}

func (n *notNode) format(b *strings.Builder) {
	b.WriteString("not ")
	switch n.x.(type) {
	case *andNode, *orNode:
		b.WriteString("( ")
		n.x.format(b)
		b.WriteString(" )")
	default:
		n.x.format(b)
	}
}

// formatOperand parenthesizes a compound operand unless it is the same
// operator as its parent (a chain of ands or of ors reads the same either way).
func formatOperand(b *strings.Builder, x, parent node) {
	paren := false
	switch x.(type) {
	case *andNode:
		_, paren = parent.(*orNode)
	case *orNode:
		_, paren = parent.(*andNode)
	}
	if paren {
		b.WriteString("( ")
	}
	x.format(b)
	if paren {
		b.WriteString(" )")
	}
}

// StateSet is a set of TCP states, bit n for tcp.State n.
type StateSet uint32

// Has reports whether st is in the set.
func (s StateSet) Has(st tcp.State) bool { return st < 32 && s&(1<<st) != 0 }

func stateBits(states ...tcp.State) StateSet {
	var s StateSet
	for _, st := range states {
		s |= 1 << st
	}
	return s
}

// allStates is ss's "all": every state it can show. Request sockets
// (NEW_SYN_RECV) are shown and matched as SYN_RECV.
const allStates = StateSet(1<<(tcp.BoundInactive+1)-1) &^ (1 | 1<<tcp.NewSynRecv)

// stateNode matches sockets in one of a set of states (ss's state and
// exclude). A request socket (NEW_SYN_RECV) counts as SYN_RECV, as ss
// shows it.
type stateNode struct{ set StateSet }

func (n *stateNode) match(s *Subject) bool {
	st := s.State
	if st == tcp.NewSynRecv {
		st = tcp.SynRecv
	}
	return n.set.Has(st)
}

func (n *stateNode) kernel() bool { return false }

func (n *stateNode) format(b *strings.Builder) {
	for _, g := range stateGroups {
		if g.set == n.set {
			b.WriteString("state " + g.name)
			return
		}
	}
	// Whichever reads shorter: the states in the set, or those excluded.
	set, word := n.set, "state "
	if bits.OnesCount32(uint32(set)) > bits.OnesCount32(uint32(allStates&^set)) {
		set, word = allStates&^set, "exclude "
	}
	first := true
	for st := tcp.State(1); st <= tcp.BoundInactive; st++ {
		if !set.Has(st) || st == tcp.NewSynRecv {
			continue
		}
		if !first {
			b.WriteByte(' ')
		}
		first = false
		b.WriteString(word + ssStateName(st))
	}
	if first {
		b.WriteString("exclude all")
	}
}

// side says which end of the connection a condition is about.
type side uint8

const (
	local  side = iota // src, sport
	remote             // dst, dport
)

func (s *Subject) end(sd side) netip.AddrPort {
	if sd == local {
		return s.Local
	}
	return s.Remote
}

// cmpOp is a comparison of numbers.
type cmpOp uint8

const (
	opEq cmpOp = iota
	opNe
	opLt
	opLe
	opGt
	opGe
)

var opNames = [...]string{opEq: "=", opNe: "!=", opLt: "<", opLe: "<=", opGt: ">", opGe: ">="}

func (op cmpOp) apply(a, b int64) bool {
	switch op {
	case opEq:
		return a == b
	case opNe:
		return a != b
	case opLt:
		return a < b
	case opLe:
		return a <= b
	case opGt:
		return a > b
	}
	return a >= b
}

// portNode compares one end's port (sport, dport, autobound).
type portNode struct {
	side side
	op   cmpOp
	port int64
}

func (n *portNode) match(s *Subject) bool {
	return n.op.apply(int64(s.end(n.side).Port()), n.port)
}

func (n *portNode) kernel() bool { return true }

func (n *portNode) format(b *strings.Builder) {
	b.WriteString([...]string{local: "sport", remote: "dport"}[n.side])
	if n.port < 0 {
		fmt.Fprintf(b, " %s :*", opNames[n.op]) // ss compares with -1
		return
	}
	fmt.Fprintf(b, " %s :%d", opNames[n.op], n.port)
}

// hostNode is ss's src/dst condition: an optional prefix (whose family the
// socket must have; an IPv4 prefix also matches v4-mapped IPv6 sockets, as
// in the kernel's inet_diag bytecode), an optional port, and an optional
// family given as inet: or inet6:.
type hostNode struct {
	side   side
	prefix netip.Prefix // invalid: any address
	port   int64        // -1: any port
	v6     int8         // -1 any family, 0 inet, 1 inet6
}

func (n *hostNode) match(s *Subject) bool {
	ap := s.end(n.side)
	if n.port >= 0 && int64(ap.Port()) != n.port {
		return false
	}
	if n.v6 >= 0 && (n.v6 == 1) != s.IPv6 {
		return false
	}
	if !n.prefix.IsValid() {
		return true
	}
	a := ap.Addr()
	if n.prefix.Addr().Is4() {
		if s.IPv6 && !a.Is4In6() {
			return false
		}
		a = a.Unmap()
	} else if !s.IPv6 {
		return false
	}
	return n.prefix.Bits() == 0 || n.prefix.Contains(a)
}

func (n *hostNode) kernel() bool { return true }

func (n *hostNode) format(b *strings.Builder) {
	b.WriteString([...]string{local: "src", remote: "dst"}[n.side])
	b.WriteByte(' ')
	switch n.v6 {
	case 0:
		b.WriteString("inet:")
	case 1:
		b.WriteString("inet6:")
	}
	switch {
	case !n.prefix.IsValid():
		b.WriteByte('*')
	case n.prefix.Addr().Is6() && n.port >= 0:
		b.WriteString("[" + prefixString(n.prefix) + "]")
	default:
		b.WriteString(prefixString(n.prefix))
	}
	if n.port >= 0 {
		fmt.Fprintf(b, ":%d", n.port)
	}
}

func prefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// familyNode matches one address family.
type familyNode struct{ v6 bool }

func (n *familyNode) match(s *Subject) bool { return s.IPv6 == n.v6 }
func (n *familyNode) kernel() bool          { return true }
func (n *familyNode) format(b *strings.Builder) {
	b.WriteString([...]string{"family inet", "family inet6"}[b2i(n.v6)])
}

func b2i(v bool) int {
	if v {
		return 1
	}
	return 0
}

// ownerField is a number about the socket's owner.
type ownerField uint8

const (
	fieldPID ownerField = iota
	fieldUID
)

// ownerNode compares the owner's pid or uid. A socket without a known
// owner matches no comparison (and so every "not").
type ownerNode struct {
	field ownerField
	op    cmpOp
	val   int64
}

func (n *ownerNode) match(s *Subject) bool {
	v := int64(s.PID)
	if n.field == fieldUID {
		if !s.UIDKnown {
			return false
		}
		v = int64(s.UID)
	} else if !s.OwnerKnown {
		return false
	}
	return n.op.apply(v, n.val)
}

func (n *ownerNode) kernel() bool { return false }

func (n *ownerNode) format(b *strings.Builder) {
	fmt.Fprintf(b, "%s %s %d", [...]string{fieldPID: "pid", fieldUID: "uid"}[n.field], opNames[n.op], n.val)
}

// commNode matches the owner's command name exactly or by a glob.
type commNode struct {
	pattern string
	glob    bool
}

func (n *commNode) match(s *Subject) bool {
	if !s.OwnerKnown {
		return false
	}
	if n.glob {
		ok, _ := path.Match(n.pattern, s.Comm)
		return ok
	}
	return s.Comm == n.pattern
}

func (n *commNode) kernel() bool { return false }
func (n *commNode) format(b *strings.Builder) {
	b.WriteString("comm " + quoteWord(n.pattern))
}

// netnsNode matches the network namespace by inode.
type netnsNode struct{ inode uint32 }

func (n *netnsNode) match(s *Subject) bool { return s.NetNS == n.inode }
func (n *netnsNode) kernel() bool          { return true }
func (n *netnsNode) format(b *strings.Builder) {
	b.WriteString("netns " + strconv.FormatUint(uint64(n.inode), 10))
}

// cgroupNode matches owners in a cgroup v2 directory or below it.
type cgroupNode struct{ cg *cgroupTree }

func (n *cgroupNode) match(s *Subject) bool {
	if !s.OwnerKnown {
		return false
	}
	if s.Cgroup != 0 {
		return n.cg.contains(s.Cgroup)
	}
	return s.PID != 0 && n.cg.containsPath(n.cg.pidPath(s.PID))
}

// A cgroup is checked in the kernel where its tracing programs can find
// the owner's ancestors.
func (n *cgroupNode) kernel() bool { return kernelCgroups() }
func (n *cgroupNode) format(b *strings.Builder) {
	b.WriteString("cgroup " + quoteWord(n.cg.path))
}

// containerField is what a container condition compares.
type containerField uint8

const (
	fieldContainer    containerField = iota // the container id
	fieldPod                                // the pod's name, namespace/name or UID
	fieldPodNamespace                       // the pod's namespace
)

var containerFieldNames = [...]string{fieldContainer: "container", fieldPod: "pod", fieldPodNamespace: "pod_namespace"}

// containerNode matches the owner's container or pod, as its cgroup path
// and /var/log/pods name them. An owner outside any container, or unknown,
// matches none (and so every "not").
type containerNode struct {
	field   containerField
	pattern string
	glob    bool
	ids     *container.Resolver
}

func (n *containerNode) match(s *Subject) bool {
	if !s.OwnerKnown {
		return false
	}
	id := n.ids.Owner(s.Cgroup, s.PID)
	switch n.field {
	case fieldContainer:
		// docker ps's short form and longer prefixes name a container too.
		return n.is(id.Container) || !n.glob && id.Container != "" && strings.HasPrefix(id.Container, n.pattern)
	case fieldPod:
		return n.is(id.PodName) || n.is(id.PodUID) || id.PodName != "" && n.is(id.PodNamespace+"/"+id.PodName)
	}
	return n.is(id.PodNamespace)
}

// is compares one name with the pattern; an unknown name matches nothing.
func (n *containerNode) is(v string) bool {
	if v == "" {
		return false
	}
	if n.glob {
		ok, _ := path.Match(n.pattern, v)
		return ok
	}
	return v == n.pattern
}

func (n *containerNode) kernel() bool { return false }
func (n *containerNode) format(b *strings.Builder) {
	b.WriteString(containerFieldNames[n.field] + " " + quoteWord(n.pattern))
}

// reasonNode matches the transition that ends a connection for a reason.
type reasonNode struct{ reason tracer.Reason }

func (n *reasonNode) match(s *Subject) bool { return s.Reason == n.reason }
func (n *reasonNode) kernel() bool          { return false }
func (n *reasonNode) format(b *strings.Builder) {
	b.WriteString("reason " + n.reason.String())
}

// devNode matches the device a listed socket is bound to (ss's dev):
// SO_BINDTODEVICE's, 0 for none. name is the word it was given as, which
// parses back to the same index.
type devNode struct {
	index uint32
	name  string
}

func (n *devNode) match(s *Subject) bool { return s.Dev == n.index }
func (n *devNode) kernel() bool          { return false }
func (n *devNode) format(b *strings.Builder) {
	b.WriteString("dev " + quoteWord(n.name))
}

// markNode matches a listed socket's mark under a mask (ss's fwmark).
type markNode struct{ mark, mask uint32 }

func (n *markNode) match(s *Subject) bool { return s.Mark&n.mask == n.mark }
func (n *markNode) kernel() bool          { return false }
func (n *markNode) format(b *strings.Builder) {
	fmt.Fprintf(b, "fwmark %#x", n.mark)
	if n.mask != 0xffffffff {
		fmt.Fprintf(b, "/%#x", n.mask)
	}
}

// quoteWord escapes what the lexer would otherwise split.
func quoteWord(w string) string {
	var b strings.Builder
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '(' || c == ')' || c == '\\' || strings.IndexByte(opChars, c) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	if _, kw := wordKinds[w]; kw {
		return "\\" + b.String()
	}
	return b.String()
}
