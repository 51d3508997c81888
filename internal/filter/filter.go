// Package filter is tcpstat's filter language: ss's FILTER (iproute2's
// misc/ssfilter.y, state and exclude included) with owner, namespace,
// cgroup, close-reason and family conditions. Every view uses it:
//
//	f, err := filter.Parse("dport = :443 and dst 10.0.0.0/8 and not comm curl")
//	...
//	s := filter.FromEvent(&ev)
//	if f.Match(&s) { ... }
//
// An *Error points at the token it is about. Kernel splits an expression
// into what the BPF program can check (family, ports, addresses, network
// namespace, owner cgroup) and what user space checks after it. The
// language and the rule that keeps a socket's events together are in
// docs/filter.md.
package filter

import (
	"net/netip"
	"strings"

	"github.com/tcpstat/tcpstat/internal/container"
	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// Filter is a parsed expression. The nil *Filter and the empty expression
// match everything.
type Filter struct {
	root node
	src  string
	uses Uses
}

// Parse parses an expression. Its errors are *Error.
func Parse(expr string) (*Filter, error) {
	return parseEnv(expr, defaultEnv())
}

// ParseArgs parses an expression given as command-line words, which it
// joins with blanks as ss does; error columns count in the joined text.
func ParseArgs(args []string) (*Filter, error) {
	return Parse(strings.Join(args, " "))
}

// Options say where an expression's names are resolved; the zero value is
// the host's (Parse).
type Options struct {
	// Containers names the containers and pods of owners, for the
	// container, pod and pod_namespace conditions. nil: a resolver of the
	// filter's own, on the cgroup v2 mount and /var/log/pods. A view that
	// shows pods passes its own, so that both agree.
	Containers *container.Resolver
	// Listing says the expression selects the sockets of a sock_diag
	// listing (tcpstat list), which reports each socket's bound device
	// and mark: only then are ss's dev and fwmark allowed. Events carry
	// neither, so in every other view they are an error.
	Listing bool
	// NetNS is the namespace whose device names dev resolves: the one
	// listed. nil: tcpstat's own.
	NetNS *snapshot.Namespace
}

// ParseWith is Parse with options.
func ParseWith(expr string, o Options) (*Filter, error) {
	e := defaultEnv()
	e.ids = o.Containers
	e.listing = o.Listing
	if ns := o.NetNS; ns != nil {
		e.linkIndex = func(name string) (uint32, error) { return snapshot.LinkIndex(ns, name) }
	}
	return parseEnv(expr, e)
}

// ParseArgsWith is ParseArgs with options.
func ParseArgsWith(args []string, o Options) (*Filter, error) {
	return ParseWith(strings.Join(args, " "), o)
}

func parseEnv(expr string, e *env) (*Filter, error) {
	toks, err := lex(expr)
	if err != nil {
		return nil, err
	}
	f := &Filter{src: expr}
	if toks[0].kind == tEOF {
		return f, nil
	}
	p := &parser{toks: toks, env: e}
	f.root, err = p.list(false)
	if err != nil {
		return nil, err
	}
	f.uses = uses(f.root)
	return f, nil
}

// Empty reports whether the filter matches everything.
func (f *Filter) Empty() bool { return f == nil || f.root == nil }

// Match reports whether the subject passes the filter.
func (f *Filter) Match(s *Subject) bool {
	if f == nil || f.root == nil {
		return true
	}
	return f.root.match(s)
}

// String is the expression in canonical form: every operator explicit and
// parentheses wherever ss's left-to-right grouping decides the meaning.
// Parsing it gives the same filter.
func (f *Filter) String() string {
	if f.Empty() {
		return ""
	}
	var b strings.Builder
	f.root.format(&b)
	return b.String()
}

// Source is the expression as given.
func (f *Filter) Source() string {
	if f == nil {
		return ""
	}
	return f.src
}

// Uses reports which kinds of condition the expression has, so that a
// listing can fetch what they need (owners for pid and comm) and a view
// can tell per-socket from per-event conditions.
type Uses struct {
	State  bool // state, exclude
	Owner  bool // pid, comm, uid, cgroup, container, pod, pod_namespace
	Reason bool
	Device bool // dev: listings only
	Mark   bool // fwmark: listings only
}

// Uses reports the kinds of condition in the expression.
func (f *Filter) Uses() Uses {
	if f == nil {
		return Uses{}
	}
	return f.uses
}

func uses(root node) Uses {
	var u Uses
	if root == nil {
		return u
	}
	walk(root, func(n node) {
		switch n.(type) {
		case *stateNode:
			u.State = true
		case *ownerNode, *commNode, *cgroupNode, *containerNode:
			u.Owner = true
		case *reasonNode:
			u.Reason = true
		case *devNode:
			u.Device = true
		case *markNode:
			u.Mark = true
		}
	})
	return u
}

func walk(n node, fn func(node)) {
	fn(n)
	switch n := n.(type) {
	case *andNode:
		walk(n.l, fn)
		walk(n.r, fn)
	case *orNode:
		walk(n.l, fn)
		walk(n.r, fn)
	case *notNode:
		walk(n.x, fn)
	}
}

// Subject is what a filter looks at: one socket, or one event about it.
type Subject struct {
	IPv6          bool
	State         tcp.State // for an event, the state it moved to
	Local, Remote netip.AddrPort
	NetNS         uint32
	// OwnerKnown says PID, Comm and Cgroup are set; UIDKnown says UID is.
	OwnerKnown bool
	PID        uint32
	Comm       string
	Cgroup     uint64 // cgroup v2 id; 0 when only PID is known (listings)
	UIDKnown   bool
	UID        uint32
	Reason     tracer.Reason // set on the event that ends a connection
	// Dev and Mark are a listed socket's bound device (0: none) and mark
	// (0 when the kernel reported none, as ss reads it); events have
	// neither.
	Dev  uint32
	Mark uint32
}

// FromEvent is the subject of a tracer event.
func FromEvent(e *tracer.Event) Subject {
	s := Subject{
		IPv6: e.IPv6(), State: e.New, Local: e.Local, Remote: e.Remote, NetNS: e.NetNS,
		Reason: e.Reason,
	}
	if e.OwnerKnown {
		s.OwnerKnown, s.UIDKnown = true, true
		s.PID, s.Comm, s.Cgroup, s.UID = e.Owner.PID, e.Owner.Comm, e.Owner.Cgroup, e.Owner.UID
	}
	return s
}

// FromSocket is the subject of a listed socket.
// Its owner is the first process holding it (the one netstat -p shows);
// its uid is the socket's, as ss shows it (timewait and request sockets,
// without an inode, have none).
func FromSocket(k *snapshot.Socket) Subject {
	s := Subject{
		IPv6: k.IPv6, State: k.State, Local: k.Local, Remote: k.Remote, NetNS: k.NetNS,
		UIDKnown: k.Inode != 0, UID: k.UID, Dev: k.Dev, Mark: k.Mark,
	}
	if len(k.Owners) > 0 {
		s.OwnerKnown, s.PID, s.Comm = true, k.Owners[0].PID, k.Owners[0].Comm
	}
	return s
}

// FromRow is the subject of a connection table row. A socket no process
// holds any more (TIME_WAIT, orphaned) keeps its former owner: its row
// stays selected to the end.
func FromRow(r *table.Row) Subject {
	s := Subject{IPv6: r.IPv6(), State: r.State(), Local: r.Local(), Remote: r.Remote(), NetNS: r.NetNS()}
	o, ok := r.Owner()
	if !ok {
		o, ok = r.FormerOwner()
	}
	if ok {
		s.OwnerKnown, s.UIDKnown = true, true
		s.PID, s.Comm, s.Cgroup, s.UID = o.PID, o.Comm, o.Cgroup, o.UID
	}
	return s
}

// FromConn is the subject of an unpacked table row.
func FromConn(c *table.Conn) Subject {
	s := Subject{
		IPv6: c.Local.Addr().Is6(), State: c.State, Local: c.Local, Remote: c.Remote, NetNS: c.NetNS,
	}
	if c.OwnerKnown {
		s.OwnerKnown, s.UIDKnown = true, true
		s.PID, s.Comm, s.Cgroup, s.UID = c.Owner.PID, c.Owner.Comm, c.Owner.Cgroup, c.Owner.UID
	}
	return s
}

// And is the conjunction of filters; nil and empty ones match everything
// and drop out. Its Source is the sources joined by "and".
func And(fs ...*Filter) *Filter {
	out := &Filter{}
	var srcs []string
	for _, f := range fs {
		if f.Empty() {
			continue
		}
		out.root = and(out.root, f.root)
		srcs = append(srcs, "( "+f.src+" )")
	}
	out.src = strings.Join(srcs, " and ")
	out.uses = uses(out.root)
	return out
}
