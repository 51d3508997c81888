package filter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/user"
	"path"
	"strconv"
	"strings"

	"github.com/tcpstat/tcpstat/internal/container"
	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// keywords are the words that start a condition.
var keywords = []string{
	"state", "exclude", "excl", "src", "dst", "sport", "dport", "autobound",
	"pid", "comm", "uid", "netns", "cgroup", "container", "pod", "pod_namespace", "reason", "family",
	"dev", "fwmark",
}

// parser is a recursive-descent parser over the token list. ss's grammar
// (misc/ssfilter.y) gives "and", "or" and juxtaposition the same precedence,
// applied left to right: "a or b and c" is "(a or b) and c".
type parser struct {
	toks []token
	pos  int
	env  *env
}

func (p *parser) peek() token { return p.toks[p.pos] }

func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}

// keyword returns the token's keyword, or "" if it is not one.
func keyword(t token) string {
	if t.kind != tWord || t.lit {
		return ""
	}
	return t.text
}

// list parses a sequence of conditions joined by and, or, or nothing.
// Inside parentheses it stops at the closing one.
func (p *parser) list(nested bool) (node, error) {
	e, err := p.expr()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		switch t.kind {
		case tEOF:
			return e, nil
		case tRParen:
			if !nested {
				return nil, errorf(t.col, "unmatched \")\"")
			}
			return e, nil
		case tOr, tAnd:
			p.next()
			if n := p.peek(); n.kind == tEOF || n.kind == tRParen {
				return nil, errorf(n.col, "a condition is missing after %q", t.text)
			}
			r, err := p.expr()
			if err != nil {
				return nil, err
			}
			if t.kind == tOr {
				e = &orNode{e, r}
			} else {
				e = &andNode{e, r}
			}
		default:
			r, err := p.expr()
			if err != nil {
				return nil, err
			}
			e = &andNode{e, r}
		}
	}
}

// expr parses one condition, a negation or a parenthesized list.
func (p *parser) expr() (node, error) {
	t := p.peek()
	switch t.kind {
	case tLParen:
		p.next()
		if n := p.peek(); n.kind == tRParen {
			return nil, errorf(n.col, "empty parentheses")
		}
		e, err := p.list(true)
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tRParen {
			return nil, errorf(t.col, "unclosed \"(\"")
		}
		return e, nil
	case tNot:
		p.next()
		if n := p.peek(); n.kind == tEOF || n.kind == tRParen {
			return nil, errorf(n.col, "a condition is missing after %q", t.text)
		}
		x, err := p.expr()
		if err != nil {
			return nil, err
		}
		return &notNode{x}, nil
	case tWord:
		return p.condition()
	case tEOF:
		return nil, errorf(t.col, "a condition is missing")
	}
	return nil, errorf(t.col, "expected a condition, found %q", t.text)
}

func (p *parser) condition() (node, error) {
	t := p.peek()
	kw := keyword(t)
	if (kw == "dev" || kw == "fwmark") && !p.env.listing {
		return nil, errorf(t.col, "%q works in tcpstat list only (events carry no device or mark)", kw)
	}
	if c, ok := matchConditions[kw]; ok {
		p.next()
		neg, err := p.eqOrNeq(t)
		if err != nil {
			return nil, err
		}
		v, err := p.value(t, c.takes)
		if err != nil {
			return nil, err
		}
		n, err := c.parse(p, kw, v)
		if err != nil {
			return nil, err
		}
		return negate(n, neg), nil
	}
	switch kw {
	case "state", "exclude", "excl":
		return p.states()
	case "sport", "dport":
		p.next()
		op, err := p.compare()
		if err != nil {
			return nil, err
		}
		v, err := p.value(t, "a port")
		if err != nil {
			return nil, err
		}
		port, err := p.env.port(v, true)
		if err != nil {
			return nil, err
		}
		if port < 0 && (op == opEq || op == opNe) {
			// ":*" is any port.
			return negate(&hostNode{side: sideOf(kw), port: -1, v6: -1}, op == opNe), nil
		}
		return &portNode{side: sideOf(kw), op: op, port: port}, nil
	case "autobound":
		p.next()
		lo, hi := p.env.ephemeralRange()
		return &andNode{&portNode{local, opGe, lo}, &portNode{local, opLe, hi}}, nil
	case "pid", "uid":
		p.next()
		op, err := p.compare()
		if err != nil {
			return nil, err
		}
		v, err := p.value(t, "a number")
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseUint(v.text, 10, 32)
		if err != nil && kw == "uid" {
			u, lerr := user.Lookup(v.text)
			if lerr == nil {
				n, err = strconv.ParseUint(u.Uid, 10, 32)
			}
		}
		if err != nil {
			return nil, errorf(v.col, "%s needs a number, not %q", kw, v.text)
		}
		f := fieldPID
		if kw == "uid" {
			f = fieldUID
		}
		return &ownerNode{field: f, op: op, val: int64(n)}, nil
	}
	e := &Error{Col: t.col, Msg: "unknown condition " + strconv.Quote(t.text)}
	e.Hint = suggest(t.text, keywords)
	if e.Hint == "" {
		e.Hint = "conditions start with " + strings.Join(keywords, ", ")
	}
	return nil, e
}

// A matchCondition is KEYWORD [= | !=] VALUE: what VALUE is, and how it
// is read.
type matchCondition struct {
	takes string
	parse func(p *parser, kw string, v token) (node, error)
}

var matchConditions = map[string]matchCondition{
	"src":           {"an address", hostCond},
	"dst":           {"an address", hostCond},
	"comm":          {"a command name or glob", commCond},
	"netns":         {"a namespace", netnsCond},
	"cgroup":        {"a cgroup path", cgroupCond},
	"container":     {containerValues["container"], podCond},
	"pod":           {containerValues["pod"], podCond},
	"pod_namespace": {containerValues["pod_namespace"], podCond},
	"reason":        {"a close reason", reasonCond},
	"family":        {"inet or inet6", familyCond},
	"dev":           {"a device name or index", devCond},
	"fwmark":        {"a mark or MARK/MASK", markCond},
}

func hostCond(p *parser, kw string, v token) (node, error) { return p.env.host(v, sideOf(kw)) }

func commCond(_ *parser, _ string, v token) (node, error) {
	n := &commNode{pattern: v.text, glob: strings.ContainsAny(v.text, "*?[")}
	if n.glob {
		if _, err := path.Match(n.pattern, ""); err != nil {
			return nil, errorf(v.col, "bad glob %q", v.text)
		}
	} else if len(n.pattern) > commLen {
		n.pattern = n.pattern[:commLen] // the kernel keeps 15 bytes of a name
	}
	return n, nil
}

func netnsCond(p *parser, _ string, v token) (node, error) {
	ino, err := p.env.netns(v)
	if err != nil {
		return nil, err
	}
	return &netnsNode{ino}, nil
}

func cgroupCond(p *parser, _ string, v token) (node, error) {
	cg, err := p.env.cgroup(v)
	if err != nil {
		return nil, err
	}
	return &cgroupNode{cg}, nil
}

func podCond(p *parser, kw string, v token) (node, error) { return p.containerCond(kw, v) }

func reasonCond(_ *parser, _ string, v token) (node, error) {
	r, ok := reasons[strings.ToLower(v.text)]
	if !ok {
		return nil, &Error{Col: v.col, Msg: "unknown reason " + strconv.Quote(v.text), Hint: suggestOrList(v.text, reasonNames())}
	}
	return &reasonNode{r}, nil
}

func familyCond(_ *parser, _ string, v token) (node, error) {
	switch strings.ToLower(v.text) {
	case "inet", "ipv4", "4":
		return &familyNode{false}, nil
	case "inet6", "ipv6", "6":
		return &familyNode{true}, nil
	}
	return nil, &Error{Col: v.col, Msg: "unknown family " + strconv.Quote(v.text), Hint: "use inet or inet6"}
}

// devCond is ss's dev: the device a socket is bound to, by name (or
// alternative name) in the namespace listed, as ifN, or by index (0: not
// bound), in that order as ss resolves it.
func devCond(p *parser, _ string, v token) (node, error) {
	idx, err := p.env.linkIndex(v.text)
	if err == nil {
		return &devNode{index: idx, name: v.text}, nil
	}
	if rest, ok := strings.CutPrefix(v.text, "if"); ok {
		if n, err := strconv.ParseUint(rest, 10, 32); err == nil && n != 0 {
			return &devNode{index: uint32(n), name: v.text}, nil
		}
	}
	if n, ok := cNumber(v.text); ok {
		return &devNode{index: n, name: v.text}, nil
	}
	if !errors.Is(err, snapshot.ErrNoLink) {
		return nil, errorf(v.col, "device %q: %v", v.text, err)
	}
	return nil, &Error{Col: v.col, Msg: fmt.Sprintf("no device %q", v.text), Hint: "dev takes a name or index as ip link shows them, or 0 for sockets bound to none"}
}

// markCond is ss's fwmark MARK[/MASK]: the socket's mark, masked, equals
// MARK; the mask is all ones unless given.
func markCond(_ *parser, _ string, v token) (node, error) {
	ms, mask := v.text, uint32(0xffffffff)
	if m, k, ok := strings.Cut(v.text, "/"); ok {
		n, ok := cNumber(k)
		if !ok {
			return nil, errorf(v.col, "fwmark mask %q is not a 32-bit number", k)
		}
		ms, mask = m, n
	}
	mark, ok := cNumber(ms)
	if !ok {
		return nil, errorf(v.col, "fwmark %q is not a 32-bit number", ms)
	}
	return &markNode{mark: mark, mask: mask}, nil
}

// cNumber reads a whole word as C's strtoul with base 0 reads a number
// (decimal, 0x hex, a leading 0 octal), as ss reads indexes and marks;
// 32 bits at most.
func cNumber(s string) (uint32, bool) {
	base, digits := 10, s
	switch {
	case len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X"):
		base, digits = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, digits = 8, s[1:]
	}
	if digits == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, base, 32)
	return uint32(n), err == nil
}

// containerValues say what each container condition takes.
var containerValues = map[string]string{
	"container":     "a container id, its first 12 or more digits, or a glob",
	"pod":           "a pod name, namespace/name, UID or glob",
	"pod_namespace": "a Kubernetes namespace or glob",
}

// containerCond checks a container, pod or pod_namespace value: a glob,
// or a word of the shape the condition compares with, so that a typo
// (an upper-case name, a short id) is an error instead of matching
// nothing.
func (p *parser) containerCond(kw string, v token) (node, error) {
	n := &containerNode{pattern: v.text, glob: strings.ContainsAny(v.text, "*?["), ids: p.env.containers()}
	switch kw {
	case "container":
		n.field = fieldContainer
	case "pod":
		n.field = fieldPod
	default:
		n.field = fieldPodNamespace
	}
	if n.glob {
		if _, err := path.Match(n.pattern, ""); err != nil {
			return nil, errorf(v.col, "bad glob %q", v.text)
		}
		return n, nil
	}
	ok := false
	switch n.field {
	case fieldContainer:
		ok = len(v.text) >= container.ShortID && len(v.text) <= 64 && strings.Trim(v.text, "0123456789abcdef") == ""
	case fieldPod:
		ns, name, qualified := strings.Cut(v.text, "/")
		ok = qualified && isDNSName(ns) && isDNSName(name) || !qualified && isDNSName(v.text)
	case fieldPodNamespace:
		ok = isDNSName(v.text)
	}
	if !ok {
		return nil, errorf(v.col, "%s needs %s, not %q", kw, containerValues[kw], v.text)
	}
	return n, nil
}

// isDNSName reports whether s could be a Kubernetes name (or a pod UID):
// lowercase letters, digits, '-' and '.', at most 253 bytes.
func isDNSName(s string) bool {
	return s != "" && len(s) <= 253 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-.") == ""
}

// commLen is the longest command name the kernel keeps (TASK_COMM_LEN-1).
const commLen = 15

func sideOf(kw string) side {
	if kw == "src" || kw == "sport" {
		return local
	}
	return remote
}

func negate(n node, neg bool) node {
	if neg {
		return &notNode{n}
	}
	return n
}

// eqOrNeq takes an optional "=" (ss's "eq: '=' | nothing") or "!=".
func (p *parser) eqOrNeq(kw token) (neg bool, err error) {
	switch t := p.peek(); t.kind {
	case tEq:
		p.next()
	case tNeq:
		p.next()
		return true, nil
	case tLt, tGt, tLe, tGe:
		return false, errorf(t.col, "%s takes = or !=, not %q", kw.text, t.text)
	}
	return false, nil
}

// compare takes an optional comparison operator; none means equal.
func (p *parser) compare() (cmpOp, error) {
	ops := map[tokKind]cmpOp{tEq: opEq, tNeq: opNe, tLt: opLt, tLe: opLe, tGt: opGt, tGe: opGe}
	if op, ok := ops[p.peek().kind]; ok {
		p.next()
		return op, nil
	}
	return opEq, nil
}

// value takes the word a condition applies to.
func (p *parser) value(kw token, what string) (token, error) {
	t := p.peek()
	if t.kind != tWord {
		col, found := t.col, "the end"
		if t.kind != tEOF {
			found = strconv.Quote(t.text)
		}
		return t, errorf(col, "%s needs %s, found %s", kw.text, what, found)
	}
	p.next()
	return t, nil
}

// states parses a run of state and exclude clauses as ss's command line
// does: state adds to the set (the first one starts from none), exclude
// removes (the first one, if no state came before, starts from all).
func (p *parser) states() (node, error) {
	var set StateSet
	saw := false
	for {
		t := p.peek()
		kw := keyword(t)
		if kw != "state" && kw != "exclude" && kw != "excl" {
			break
		}
		p.next()
		v, err := p.value(t, "a state name")
		if err != nil {
			return nil, err
		}
		bits, err := stateByName(v)
		if err != nil {
			return nil, err
		}
		if kw == "state" {
			if !saw {
				set = 0
			}
			set |= bits
		} else {
			if !saw {
				set = allStates
			}
			set &^= bits
		}
		saw = true
	}
	return &stateNode{set}, nil
}

// ssStates are ss's state names (scan_state in misc/ss.c).
var ssStates = []struct {
	name  string
	state tcp.State
}{
	{"established", tcp.Established}, {"syn-sent", tcp.SynSent}, {"syn-recv", tcp.SynRecv},
	{"syn-rcv", tcp.SynRecv}, {"fin-wait-1", tcp.FinWait1}, {"fin-wait-2", tcp.FinWait2},
	{"time-wait", tcp.TimeWait}, {"unconnected", tcp.Close}, {"close", tcp.Close}, {"closed", tcp.Close},
	{"close-wait", tcp.CloseWait}, {"last-ack", tcp.LastAck}, {"listening", tcp.Listen},
	{"closing", tcp.Closing}, {"bound-inactive", tcp.BoundInactive},
}

// stateGroups are ss's groups of states.
var stateGroups = []struct {
	name string
	set  StateSet
}{
	{"all", allStates},
	{"connected", allStates &^ stateBits(tcp.Close, tcp.Listen)},
	{"synchronized", allStates &^ stateBits(tcp.Close, tcp.Listen, tcp.SynSent)},
	{"bucket", stateBits(tcp.SynRecv, tcp.TimeWait)},
	{"big", allStates &^ stateBits(tcp.SynRecv, tcp.TimeWait)},
}

// ssStateName is the name ss gives a state.
func ssStateName(st tcp.State) string {
	for _, s := range ssStates {
		if s.state == st {
			return s.name
		}
	}
	return strings.ToLower(st.String())
}

func stateByName(v token) (StateSet, error) {
	name := strings.ToLower(v.text)
	for _, g := range stateGroups {
		if g.name == name {
			return g.set, nil
		}
	}
	for _, s := range ssStates {
		if s.name == name {
			return stateBits(s.state), nil
		}
	}
	if name == "new-syn-recv" {
		return 0, &Error{Col: v.col, Msg: `state "new-syn-recv" is a kernel detail`, Hint: `request sockets are "syn-recv"`}
	}
	// The kernel's own names too: LISTEN, FIN_WAIT1, time_wait.
	if st, err := tcp.ParseState(name); err == nil && st != tcp.NewSynRecv {
		return stateBits(st), nil
	}
	var names []string
	for _, g := range stateGroups {
		names = append(names, g.name)
	}
	for _, s := range ssStates {
		names = append(names, s.name)
	}
	names = append(names, "listen")
	return 0, &Error{Col: v.col, Msg: "unknown state " + strconv.Quote(v.text), Hint: suggestOrList(name, names)}
}

func suggestOrList(word string, names []string) string {
	if s := suggest(word, names); s != "" {
		return s
	}
	return "one of " + strings.Join(names, ", ")
}

var reasons = map[string]tracer.Reason{
	"timewait": tracer.ReasonTimeWait, "time-wait": tracer.ReasonTimeWait, "done": tracer.ReasonDone,
	"reset": tracer.ReasonReset, "refused": tracer.ReasonRefused, "timeout": tracer.ReasonTimeout,
	"abort": tracer.ReasonAbort, "error": tracer.ReasonError,
}

func reasonNames() []string {
	return []string{"timewait", "done", "reset", "refused", "timeout", "abort", "error"}
}

// host parses ss's HOSTCOND for src and dst: [inet:|inet6:] then ADDR,
// ADDR/LEN, [V6ADDR], *, each optionally followed by :PORT (a number or a
// service name), or :PORT alone. A bare IPv6 address is accepted too.
func (e *env) host(v token, sd side) (node, error) {
	w := v.text
	n := &hostNode{side: sd, port: -1, v6: -1}
	for _, pre := range []string{"unix:", "link:", "netlink:", "vsock:"} {
		if strings.HasPrefix(w, pre) {
			return nil, errorf(v.col, "%s addresses are not TCP", strings.TrimSuffix(pre, ":"))
		}
	}
	if rest, ok := strings.CutPrefix(w, "inet6:"); ok {
		n.v6, w = 1, rest
	} else if rest, ok := strings.CutPrefix(w, "inet:"); ok {
		n.v6, w = 0, rest
	}
	addr, port, hasPort := w, "", false
	switch {
	case strings.HasPrefix(w, "["):
		end := strings.IndexByte(w, ']')
		if end < 0 {
			return nil, errorf(v.col, "missing \"]\" in %q", v.text)
		}
		addr = w[1:end]
		rest := w[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return nil, errorf(v.col, "unexpected %q after \"]\" in %q", rest, v.text)
			}
			port, hasPort = rest[1:], true
		}
	case strings.HasPrefix(w, "*"):
		addr = "*"
		if rest := w[1:]; rest != "" {
			if rest[0] != ':' {
				return nil, errorf(v.col, "unexpected %q after \"*\" in %q", rest, v.text)
			}
			port, hasPort = rest[1:], true
		}
	default:
		if _, err := parsePrefix(w); err == nil {
			break // an address or prefix, IPv6 ones too, without a port
		}
		from := strings.IndexByte(w, '/')
		if from < 0 {
			from = 0
		}
		if i := strings.LastIndexByte(w[from:], ':'); i >= 0 {
			addr, port, hasPort = w[:from+i], w[from+i+1:], true
		}
	}
	if hasPort {
		p, err := e.port(token{text: port, col: v.col}, false)
		if err != nil {
			return nil, err
		}
		n.port = p
	}
	if addr != "" && addr != "*" {
		pfx, err := parsePrefix(addr)
		if err != nil && hostName(addr) {
			return e.hostByName(v, n, addr)
		}
		if err != nil {
			return nil, &Error{Col: v.col, Msg: "an address or prefix is expected rather than " + strconv.Quote(addr),
				Hint: "e.g. 10.0.0.0/8, [::1], 127.0.0.1:80, localhost"}
		}
		if n.v6 >= 0 && pfx.Addr().Is6() != (n.v6 == 1) {
			return nil, errorf(v.col, "%s is not an %s address", addr, [...]string{"inet", "inet6"}[n.v6])
		}
		n.prefix = pfx
	}
	return n, nil
}

// hostName reports a word that can be a host name: letters, digits, '-'
// and '.', with a letter somewhere.
func hostName(w string) bool {
	letter := false
	for _, r := range w {
		switch {
		case r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
			letter = true
		case r >= '0' && r <= '9' || r == '-' || r == '.':
		default:
			return false
		}
	}
	return letter
}

// hostByName is n for each address name resolves to (of n's family, if
// it names one), any of them: what ss makes of a host name.
func (e *env) hostByName(v token, n *hostNode, name string) (node, error) {
	ctx, cancel := context.WithTimeout(context.Background(), hostTimeout)
	defer cancel()
	addrs, err := e.lookupHost(ctx, name)
	if err != nil {
		var dns *net.DNSError
		if errors.As(err, &dns) {
			err = errors.New(dns.Err)
		}
		return nil, errorf(v.col, "cannot resolve host name %q: %v", name, err)
	}
	var any node
	seen := map[netip.Addr]bool{}
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if seen[a] || n.v6 >= 0 && a.Is6() != (n.v6 == 1) {
			continue
		}
		seen[a] = true
		one := *n
		one.prefix = netip.PrefixFrom(a, a.BitLen())
		if any == nil {
			any = &one
		} else {
			any = &orNode{any, &one}
		}
	}
	if any == nil {
		return nil, errorf(v.col, "host name %q has no %s address", name, [...]string{"inet", "inet6"}[max(n.v6, 0)])
	}
	return any, nil
}

// parsePrefix reads an address (a full-length prefix) or ADDR/LEN, with the
// bits past LEN cleared.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, err
		}
		if p.Addr().Zone() != "" {
			return netip.Prefix{}, errNoZone
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, errNoZone
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// port reads :PORT, PORT, a service name or * (any: -1).
func (e *env) port(v token, stripColon bool) (int64, error) {
	s := v.text
	if stripColon {
		s = strings.TrimPrefix(s, ":")
	}
	if s == "" || s == "*" {
		return -1, nil
	}
	if n, err := strconv.ParseUint(s, 10, 16); err == nil {
		return int64(n), nil
	}
	if n, ok := e.service(s); ok {
		return int64(n), nil
	}
	if s[0] >= '0' && s[0] <= '9' {
		return 0, errorf(v.col, "port %q is out of range", s)
	}
	return 0, errorf(v.col, "%q is neither a port nor a TCP service in %s", s, e.servicesPath)
}
