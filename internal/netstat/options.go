// Package netstat implements `tcpstat list`: net-tools netstat's forms and
// flags (sockets, -s, -i, -ie, -r, -r -6, -g, -C, -N, -v), Solaris' forms
// mapped to what Linux keeps (-m, -M, -Ms, -D, the net-to-media table as
// --arp, -i -I, -r -a, route filters), interval/count, -P and -f, state
// filters, a per-state summary and JSON for every form.
package netstat

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tcpstat/tcpstat/internal/filter"
	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/tcp"
)

// Form is what a listing shows.
type Form uint8

const (
	Sockets         Form = iota
	Statistics           // -s
	Interfaces           // -i (-ie: ifconfig-style; -I IFACE interval: Solaris' counts)
	Routes               // -r (-6: IPv6, -C: cache, -a: every table)
	Groups               // -g
	Memory               // -m: socket memory
	MulticastRoutes      // -M
	MulticastStats       // -Ms
	DHCP                 // -D
	NetToMedia           // --arp: Solaris' -p
)

// Config is a parsed `tcpstat list` command line.
type Config struct {
	Form Form

	TCP, UDP, RAW, UNIX bool // protocols asked for; none means all
	IPv4, IPv6          bool // families asked for; none means both
	IP, ICMP            bool // -P ip / -P icmp (statistics only)

	All, Listening bool
	NumericHosts   bool
	NumericPorts   bool
	NumericUsers   bool
	Extend         int // -e count: 1 adds User and Inode
	Programs       bool
	Timers         bool
	Wide           bool

	// States, when not zero, selects sockets in these states (--state);
	// it replaces the -a/-l selection.
	States snapshot.StateSet

	// FilterArgs are positional arguments that are not "interval [count]":
	// a filter expression, for the caller to parse into Filter, which
	// selects sockets after -a/-l/--state (docs/filter.md). A filter that
	// names states replaces the default selection (connected only), as
	// --state does.
	FilterArgs []string
	Filter     *filter.Filter

	Summary bool
	JSON    bool
	Help    bool

	// NetNS lists the sockets of that network namespace instead of
	// tcpstat's own (--netns, parsed by the caller).
	NetNS *snapshot.Namespace

	Verbose      bool          // -v
	Cache        bool          // -C: -r shows the routing cache
	Symbolic     bool          // -N: net-tools' symbolic hardware names (nothing left to resolve)
	Iface        string        // -I: the interface -i, -D show
	RouteFilters []RouteFilter // -f keyword:value with -r; see RouteFilter
	v6First      bool          // -6 came before -4: -r lists IPv6 first, as netstat

	// Interval, when not zero, repeats the form; Count limits the
	// repetitions (0: until interrupted). For -s and -i the repeats show
	// deltas.
	Interval time.Duration
	Count    int
}

// usageError is a command-line mistake; the caller adds a pointer to --help.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// shortNames maps netstat's single-letter flags to their long names.
var shortNames = map[byte]string{
	'a': "all", 'c': "continuous", 'e': "extend", 'g': "groups", 'h': "help", 'i': "interfaces",
	'l': "listening", 'n': "numeric", 'o': "timers", 'p': "programs", 'r': "route", 's': "statistics",
	't': "tcp", 'u': "udp", 'w': "raw", 'x': "unix", 'W': "wide", '4': "inet", '6': "inet6",
	'P': "protocol", 'f': "family", 'A': "family", 'v': "verbose", 'C': "cache", 'F': "fib",
	'N': "symbolic", 'm': "memory", 'M': "multicast-routes", 'D': "dhcp", 'I': "interface",
}

// longNames are the long flags, for "did you mean" (short ones map to
// these, plus the long-only ones).
var longNames = func() []string {
	seen := map[string]bool{}
	var names []string
	for _, n := range shortNames {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	names = append(names, "numeric-hosts", "numeric-ports", "numeric-users", "summary", "json", "state", "arp", "net-to-media")
	slices.Sort(names)
	return names
}()

// unsupportedShort explains the letters netstat knows and tcpstat does not.
var unsupportedShort = map[byte]string{
	'S': "-S (SCTP) has no listing in tcpstat; use ss -S or /proc/net/sctp/assocs",
	'U': "-U (UDP-Lite) has no listing in tcpstat; use cat /proc/net/udplite",
	'Z': "-Z (SELinux contexts) is not supported; use ss -Z",
	'T': "-T (netstat's old spelling of -W): use -W",
	'V': "-V: use tcpstat --version",
	'd': "-d (netstat's debug flag) does nothing in netstat either; leave it out",
}

// parser holds the state of one Parse.
type parser struct {
	c     Config
	forms []string
}

// flag applies one switch by its long name.
func (p *parser) flag(name string) error {
	c := &p.c
	switch name {
	case "tcp":
		c.TCP = true
	case "udp":
		c.UDP = true
	case "raw":
		c.RAW = true
	case "unix":
		c.UNIX = true
	case "inet":
		c.IPv4 = true
	case "inet6":
		c.v6First = c.v6First || !c.IPv4
		c.IPv6 = true
	case "all":
		c.All = true
	case "listening":
		c.Listening = true
	case "numeric":
		c.NumericHosts, c.NumericPorts, c.NumericUsers = true, true, true
	case "numeric-hosts":
		c.NumericHosts = true
	case "numeric-ports":
		c.NumericPorts = true
	case "numeric-users":
		c.NumericUsers = true
	case "extend":
		c.Extend++
	case "programs":
		c.Programs = true
	case "timers":
		c.Timers = true
	case "wide":
		c.Wide = true
	case "statistics":
		p.form(Statistics, "-s")
	case "interfaces":
		p.form(Interfaces, "-i")
	case "route":
		p.form(Routes, "-r")
	case "groups":
		p.form(Groups, "-g")
	case "memory":
		p.form(Memory, "-m")
	case "multicast-routes":
		p.form(MulticastRoutes, "-M")
	case "dhcp":
		p.form(DHCP, "-D")
	case "arp", "net-to-media":
		p.form(NetToMedia, "--arp")
	case "verbose":
		c.Verbose = true
	case "cache":
		c.Cache = true
	case "fib": // net-tools' -F, the default
	case "symbolic":
		c.Symbolic = true
	case "summary":
		c.Summary = true
	case "json":
		c.JSON = true
	case "help":
		c.Help = true
	default:
		return usagef("unknown flag --%s%s", name, suggest(name))
	}
	return nil
}

// suggest names the nearest long flag, when one is near enough.
func suggest(name string) string {
	best, bestDist := "", 4
	for _, n := range longNames {
		d := editDistance(name, n)
		if strings.HasPrefix(n, name) && len(name) >= 3 {
			d = 1
		}
		if d < bestDist {
			best, bestDist = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean --%s?)", best)
}

// suggestShort explains an unknown letter, or names the nearest flag.
func suggestShort(b byte, arg string) error {
	if why, ok := unsupportedShort[b]; ok {
		return usagef("%s", why)
	}
	hint := ""
	for _, alt := range []byte{b ^ 0x20} { // the other case
		if n, ok := shortNames[alt]; ok && (b|0x20) >= 'a' && (b|0x20) <= 'z' {
			hint = fmt.Sprintf(" (did you mean -%c, --%s?)", alt, n)
		}
	}
	return usagef("unknown flag -%c in %q%s", b, arg, hint)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (p *parser) form(f Form, name string) {
	p.c.Form = f
	p.forms = append(p.forms, name)
}

// Parse reads the arguments after `list`. Short flags combine ("-tanp"),
// -c takes an optional number of seconds ("-c", "-c2", "-c 2"), and
// positional numbers are Solaris' "interval [count]".
func Parse(args []string) (Config, error) {
	var p parser
	c := &p.c
	var positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		// next returns the following argument as a flag's value.
		next := func(flag string) (string, error) {
			if i+1 >= len(args) {
				return "", usagef("flag %s needs a value", flag)
			}
			i++
			return args[i], nil
		}
		switch {
		case a == "--":
			positional = append(positional, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			switch {
			case takesValue(name):
				if !hasVal {
					v, err := next("--" + name)
					if err != nil {
						return *c, err
					}
					val = v
				}
				if err := c.setValue(name, val); err != nil {
					return *c, err
				}
			case name == "continuous":
				c.Interval = time.Second
				if hasVal {
					if err := c.setSeconds(val); err != nil {
						return *c, err
					}
				}
			case hasVal:
				return *c, usagef("flag --%s takes no value", name)
			default:
				if err := p.flag(name); err != nil {
					return *c, err
				}
			}
		case len(a) > 1 && a[0] == '-':
			for j := 1; j < len(a); j++ {
				name, ok := shortNames[a[j]]
				if !ok {
					return *c, suggestShort(a[j], a)
				}
				rest := a[j+1:]
				switch {
				case takesValue(name): // -Ptcp, -P tcp
					if rest == "" {
						v, err := next("-" + string(a[j]))
						if err != nil {
							return *c, err
						}
						rest = v
					}
					if err := c.setValue(string(a[j]), rest); err != nil {
						return *c, err
					}
					j = len(a)
				case name == "continuous": // -c, -c2, -c 2
					c.Interval = time.Second
					if rest == "" && i+1 < len(args) && isNumber(args[i+1]) {
						i++
						rest = args[i]
					}
					if rest != "" {
						if err := c.setSeconds(rest); err != nil {
							return *c, err
						}
					}
					j = len(a)
				default:
					if err := p.flag(name); err != nil {
						return *c, err
					}
				}
			}
		default:
			positional = append(positional, a)
		}
	}
	if err := p.pickForm(); err != nil {
		return *c, err
	}
	if err := c.setPositional(positional); err != nil {
		return *c, err
	}
	return *c, c.check()
}

// pickForm settles the form: one at a time, except Solaris' -Ms.
func (p *parser) pickForm() error {
	forms := p.forms
	if len(forms) == 2 && slices.Contains(forms, "-M") && slices.Contains(forms, "-s") {
		p.c.Form = MulticastStats
		return nil
	}
	if len(forms) > 1 {
		return usagef("%s and %s are different forms; give one of -s, -i, -r, -g, -m, -M, -D, --arp (or -Ms)", forms[0], forms[1])
	}
	return nil
}

func takesValue(name string) bool {
	return name == "protocol" || name == "family" || name == "state" || name == "interface"
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

func (c *Config) setSeconds(v string) error {
	d, err := parseSeconds(v)
	if err != nil {
		return usagef("-c: %v", err)
	}
	c.Interval = d
	return nil
}

func parseSeconds(v string) (time.Duration, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 || f > 86400 {
		return 0, fmt.Errorf("interval %q is not a number of seconds between 0 and 86400", v)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// setPositional reads Solaris' "interval [count]"; other positional
// arguments are a filter expression.
func (c *Config) setPositional(pos []string) error {
	if len(pos) == 0 {
		return nil
	}
	if !isNumber(pos[0]) || len(pos) == 2 && !isNumber(pos[1]) || len(pos) > 2 {
		c.FilterArgs = pos
		return nil
	}
	if len(pos) > 2 {
		return usagef("unexpected argument %q (positional arguments are: interval [count])", pos[2])
	}
	d, err := parseSeconds(pos[0])
	if err != nil {
		return usagef("unexpected argument %q (positional arguments are: interval [count])", pos[0])
	}
	c.Interval = d
	if len(pos) == 2 {
		n, err := strconv.Atoi(pos[1])
		if err != nil || n < 1 {
			return usagef("count %q is not a positive whole number", pos[1])
		}
		c.Count = n
	}
	return nil
}

// setValue handles the flags that take a value: -P/--protocol,
// -f/-A/--family, --state.
func (c *Config) setValue(name, v string) error {
	flag := "--" + name
	if len(name) == 1 {
		flag = "-" + name
	}
	switch name {
	case "P", "protocol":
		for _, p := range strings.Split(strings.ToLower(v), ",") {
			switch p {
			case "tcp":
				c.TCP = true
			case "udp":
				c.UDP = true
			case "raw", "rawip":
				c.RAW = true
			case "unix":
				c.UNIX = true
			case "ip":
				c.IP = true
			case "icmp":
				c.ICMP = true
			default:
				return usagef("unknown protocol %q for %s (want tcp, udp, raw, unix, ip or icmp)", p, flag)
			}
		}
	case "I", "interface":
		if v == "" || len(v) > 15 || strings.ContainsAny(v, "/: \t") {
			return usagef("%s %q is not an interface name", flag, v)
		}
		c.Iface = v
	case "f", "A", "family":
		if name == "f" && strings.Contains(v, ":") {
			f, err := parseRouteFilter(v)
			if err != nil {
				return usagef("-f %s: %v", v, err)
			}
			if f.kind == filterAF {
				return c.setValue("family", f.text)
			}
			c.RouteFilters = append(c.RouteFilters, f)
			return nil
		}
		for _, f := range strings.Split(strings.ToLower(v), ",") {
			switch f {
			case "inet", "ipv4", "4":
				c.IPv4 = true
			case "inet6", "ipv6", "6":
				c.v6First = c.v6First || !c.IPv4
				c.IPv6 = true
			case "unix", "local":
				c.UNIX = true
			default:
				return usagef("unknown address family %q for %s (want inet, inet6 or unix)", f, flag)
			}
		}
	case "state":
		set, err := ParseStates(v)
		if err != nil {
			return usagef("--state: %v", err)
		}
		c.States |= set
	}
	return nil
}

// check rejects combinations that contradict each other.
func (c *Config) check() error {
	if c.Help {
		return nil
	}
	inet := c.TCP || c.UDP || c.RAW
	notSockets := c.Form != Sockets
	switch {
	case c.UNIX && (c.IPv4 || c.IPv6) && !inet:
		return usagef("-x (unix) and -4/-6 (inet) contradict each other")
	case notSockets && c.Summary:
		return usagef("--summary counts sockets; it does not combine with another form")
	case notSockets && len(c.FilterArgs) > 0:
		return usagef("a filter selects sockets; it does not combine with another form")
	case notSockets && c.States != 0:
		return usagef("--state selects sockets; it does not combine with another form")
	case c.States != 0 && c.Listening && !c.States.Has(tcp.Listen):
		return usagef("-l (listening) and --state without listening contradict each other")
	case (c.IP || c.ICMP) && c.Form != Statistics:
		return usagef("-P ip and -P icmp select statistics; add -s")
	case len(c.RouteFilters) > 0 && c.Form != Routes:
		return usagef("-f keyword:value filters routes; add -r")
	case c.Iface != "" && c.Form != Interfaces && c.Form != DHCP:
		return usagef("-I IFACE goes with -i (or -D); add -i")
	case c.Iface != "" && c.Form == Interfaces && c.Extend > 0:
		return usagef("-I IFACE and -e are different layouts; give one")
	case c.Form == Statistics && c.UNIX:
		return usagef("-s has no UNIX statistics")
	}
	return nil
}

// stateGroups are ss's state groups (ss(8) STATE-FILTER).
var stateGroups = map[string]snapshot.StateSet{
	"all":          snapshot.AllStates,
	"connected":    snapshot.AllStates &^ snapshot.States(tcp.Listen, tcp.Close, tcp.TimeWait, tcp.SynRecv, tcp.NewSynRecv),
	"synchronized": snapshot.AllStates &^ snapshot.States(tcp.Listen, tcp.Close, tcp.TimeWait, tcp.SynRecv, tcp.NewSynRecv, tcp.SynSent),
	"bucket":       snapshot.States(tcp.SynRecv, tcp.NewSynRecv, tcp.TimeWait),
	"big":          snapshot.AllStates &^ snapshot.States(tcp.SynRecv, tcp.NewSynRecv, tcp.TimeWait),
}

// ParseStates reads a comma-separated list of states ("established",
// "time-wait", "TIME_WAIT", "listening", "closed") and ss's groups
// (all, connected, synchronized, bucket, big).
func ParseStates(v string) (snapshot.StateSet, error) {
	var set snapshot.StateSet
	for _, name := range strings.Split(v, ",") {
		name = strings.TrimSpace(strings.ToLower(name))
		if g, ok := stateGroups[name]; ok {
			set |= g
			continue
		}
		switch name {
		case "listening":
			name = "listen"
		case "closed", "unconn", "unconnected":
			name = "close"
		case "estab":
			name = "established"
		}
		st, err := tcp.ParseState(name)
		if err != nil {
			return 0, fmt.Errorf("unknown state or group %q (groups: all, connected, synchronized, bucket, big)", name)
		}
		set |= snapshot.States(st)
		if st == tcp.SynRecv || st == tcp.NewSynRecv {
			set |= snapshot.States(tcp.SynRecv, tcp.NewSynRecv) // shown alike
		}
	}
	if set == 0 {
		return 0, fmt.Errorf("no state given")
	}
	return set, nil
}
