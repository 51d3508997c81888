package netstat

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/filter"
	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/tcp"
)

// progWidth is netstat's PID/Program name column (PROGNAME_WIDTH); the
// text in it is cut to one less.
const progWidth = 20

// addrWidth is how wide netstat lets "host:port" be before it cuts the
// host (and, past 4 characters, the port); -W turns the cutting off.
const addrWidth = 22

// selection says which protocols and families a socket listing covers.
type selection struct {
	inet []snapshot.Proto
	fams []snapshot.Family
	unix bool
}

func (c *Config) selection() selection {
	var s selection
	anyProto := c.TCP || c.UDP || c.RAW || c.UNIX
	if !anyProto {
		// netstat: a family alone means every inet protocol; nothing at
		// all means every protocol including UNIX.
		s.unix = !(c.IPv4 || c.IPv6)
		s.inet = []snapshot.Proto{snapshot.TCP, snapshot.UDP, snapshot.RAW}
	} else {
		if c.TCP {
			s.inet = append(s.inet, snapshot.TCP)
		}
		if c.UDP {
			s.inet = append(s.inet, snapshot.UDP)
		}
		if c.RAW {
			s.inet = append(s.inet, snapshot.RAW)
		}
		s.unix = c.UNIX
	}
	if c.IPv4 || !c.IPv6 {
		s.fams = append(s.fams, snapshot.IPv4)
	}
	if c.IPv6 || !c.IPv4 {
		s.fams = append(s.fams, snapshot.IPv6)
	}
	return s
}

// tcpStates is the set of TCP states the kernel is asked for: filtering in
// the kernel keeps a plain `-t` (connected only) from copying listeners.
func (c *Config) tcpStates() snapshot.StateSet {
	switch {
	case c.States != 0:
		return c.States
	case c.All || c.filterStates():
		return snapshot.AllStates
	case c.Listening:
		return snapshot.States(tcp.Listen)
	default:
		return snapshot.AllStates &^ snapshot.States(tcp.Listen)
	}
}

// filterStates reports a filter that names states: it replaces the
// default selection of connected sockets.
func (c *Config) filterStates() bool { return c.Filter.Uses().State && !c.Listening }

// inetSource is where TCP, UDP and RAW sockets are read from: sock_diag
// alone when the filter asks for the device or mark that only it reports
// (/proc/net has neither), else sock_diag with /proc/net as fallback.
func (c *Config) inetSource() snapshot.Source {
	if u := c.Filter.Uses(); u.Device || u.Mark {
		return snapshot.Netlink
	}
	return snapshot.Auto
}

// netAdmin reports whether tcpstat has CAP_NET_ADMIN, without which
// sock_diag reports no socket's mark.
func netAdmin() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_NET_ADMIN/32].Effective&(1<<(unix.CAP_NET_ADMIN%32)) != 0
}

// owners reports whether the listing needs the sockets' owners: for -p,
// or for a filter on pid, comm, uid or cgroup.
func (c *Config) owners() bool { return c.Programs || c.Filter.Uses().Owner }

// wanted applies the -a/-l/--state row selection, then the filter; the
// owners must be attached first.
func (c *Config) wanted(s *snapshot.Socket) bool {
	switch {
	case c.States != 0:
		if !c.States.Has(s.State) {
			return false
		}
	case c.All || c.filterStates():
	case s.Listening() != c.Listening:
		return false
	}
	if c.Filter.Empty() {
		return true
	}
	sub := filter.FromSocket(s)
	return c.Filter.Match(&sub)
}

// unixOptions dumps UNIX sockets from /proc/net/unix, which shows
// tcpstat's own namespace only: another's comes from sock_diag (without
// the RefCnt column).
func (c *Config) unixOptions() snapshot.Options {
	if c.NetNS != nil {
		return snapshot.Options{Protos: []snapshot.Proto{snapshot.UNIX}, NetNS: c.NetNS}
	}
	return snapshot.Options{Protos: []snapshot.Proto{snapshot.UNIX}, Source: snapshot.Procfs}
}

// dumpSockets reads the sockets a listing shows; UNIX sockets come from
// /proc/net/unix, the only source of netstat's RefCnt column.
func dumpSockets(ctx context.Context, c *Config) (inet, unixs []snapshot.Socket, warn error, err error) {
	sel := c.selection()
	if len(sel.inet) > 0 {
		inet, err = snapshot.Dump(ctx, snapshot.Options{
			Protos:   sel.inet,
			Families: sel.fams,
			States:   c.tcpStates(),
			Info:     c.Timers,
			NetNS:    c.NetNS,
			Source:   c.inetSource(),
		})
		if err != nil {
			return nil, nil, nil, err
		}
	}
	if sel.unix {
		unixs, err = snapshot.Dump(ctx, c.unixOptions())
		if err != nil {
			return nil, nil, nil, err
		}
	}
	if c.owners() {
		owners, oerr := snapshot.Owners(ctx)
		var partial *snapshot.PartialError
		if oerr != nil && !errors.As(oerr, &partial) {
			return nil, nil, nil, oerr
		}
		warn = oerr
		snapshot.Attach(inet, owners)
		snapshot.Attach(unixs, owners)
	}
	inet = slices.DeleteFunc(inet, func(s snapshot.Socket) bool { return !c.wanted(&s) })
	unixs = slices.DeleteFunc(unixs, func(s snapshot.Socket) bool { return !c.wanted(&s) })
	return inet, unixs, warn, nil
}

// textWriter formats rows by appending to one reused line buffer: a
// listing of 100 000 sockets must not cost 100 000 fmt calls.
type textWriter struct {
	w     *bufio.Writer
	c     *Config
	names *names
	ctx   context.Context
	// Reused by every row.
	line, addr, port []byte
}

func (t *textWriter) header(inet bool) {
	which := "(w/o servers)"
	switch {
	case t.c.All || t.c.filterStates() || (t.c.States != 0 && t.c.States.Has(tcp.Listen) && t.c.States != snapshot.States(tcp.Listen)):
		which = "(servers and established)"
	case t.c.Listening || t.c.States == snapshot.States(tcp.Listen):
		which = "(only servers)"
	}
	b := t.line[:0]
	if inet {
		b = append(b, "Active Internet connections "...)
		b = append(b, which...)
		b = append(b, "\nProto Recv-Q Send-Q Local Address           Foreign Address         State      "...)
		if t.c.Extend > 0 {
			b = append(b, " User       Inode     "...)
		}
		if t.c.Programs {
			b = append(b, ' ')
			b = pad(b, "PID/Program name", progWidth)
		}
		if t.c.Timers {
			b = append(b, " Timer"...)
		}
	} else {
		b = append(b, "Active UNIX domain sockets "...)
		b = append(b, which...)
		b = append(b, "\nProto RefCnt Flags       Type       State         I-Node  "...)
		if t.c.Programs {
			b = append(b, ' ')
			b = pad(b, "PID/Program name", progWidth)
		}
		b = append(b, " Path"...)
	}
	b = append(b, '\n')
	t.w.Write(b)
	t.line = b
}

// pad appends s left-aligned in width columns (printf "%-*s").
func pad(b []byte, s string, width int) []byte {
	b = append(b, s...)
	for i := len(s); i < width; i++ {
		b = append(b, ' ')
	}
	return b
}

// padBytes is pad for a byte slice.
func padBytes(b, s []byte, width int) []byte {
	b = append(b, s...)
	for i := len(s); i < width; i++ {
		b = append(b, ' ')
	}
	return b
}

// rightUint appends v right-aligned in width columns (printf "%*d").
func rightUint(b []byte, v uint64, width int) []byte {
	var d [20]byte
	s := strconv.AppendUint(d[:0], v, 10)
	for i := len(s); i < width; i++ {
		b = append(b, ' ')
	}
	return append(b, s...)
}

// leftUint appends v left-aligned in width columns (printf "%-*d").
func leftUint(b []byte, v uint64, width int) []byte {
	var d [20]byte
	return padBytes(b, strconv.AppendUint(d[:0], v, 10), width)
}

// protoName is netstat's Proto column: "tcp", "tcp6", "udp6", …
func protoName(s *snapshot.Socket) string {
	switch {
	case s.Proto == snapshot.TCP && s.IPv6:
		return "tcp6"
	case s.Proto == snapshot.UDP && s.IPv6:
		return "udp6"
	case s.Proto == snapshot.RAW && s.IPv6:
		return "raw6"
	}
	return s.Proto.String()
}

// stateName is the State column: NEW_SYN_RECV request sockets read as
// SYN_RECV, and UDP shows only ESTABLISHED or nothing.
func stateName(s *snapshot.Socket) string {
	switch s.Proto {
	case snapshot.UDP:
		switch s.State {
		case tcp.Established:
			return "ESTABLISHED"
		case tcp.Close:
			return ""
		}
		return "UNKNOWN"
	case snapshot.RAW:
		return strconv.Itoa(int(s.State))
	}
	if s.State == tcp.NewSynRecv {
		return "SYN_RECV"
	}
	if !s.State.Valid() {
		return "UNKNOWN"
	}
	return s.State.String()
}

// appendAddr appends netstat's "host:port", cut to addrWidth unless -W.
func (t *textWriter) appendAddr(b []byte, ap netip.AddrPort, proto string) []byte {
	a := t.addr[:0]
	if t.c.NumericHosts {
		a = ap.Addr().AppendTo(a)
	} else {
		a = append(a, t.names.host(t.ctx, ap.Addr())...)
	}
	t.addr = a
	port := t.port[:0]
	if ap.Port() != 0 && t.c.NumericPorts {
		// Formatted in place: a string per row is an allocation per row.
		port = strconv.AppendUint(port, uint64(ap.Port()), 10)
	} else {
		port = append(port, t.names.service(ap.Port(), proto, t.c.NumericPorts)...)
	}
	t.port = port
	if !t.c.Wide && len(a)+len(port) > addrWidth {
		pl := min(len(port), addrWidth-4)
		a = a[:addrWidth-pl]
		port = port[:pl]
	}
	b = append(b, a...)
	b = append(b, ':')
	return append(b, port...)
}

// inetRow writes one Internet socket as netstat does.
func (t *textWriter) inetRow(s *snapshot.Socket) {
	proto := s.Proto.String()
	b := t.line[:0]
	b = pad(b, protoName(s), 4)
	b = append(b, ' ', ' ')
	b = rightUint(b, uint64(s.RecvQ), 6)
	b = append(b, ' ')
	sendQ := s.SendQ
	if s.Proto == snapshot.TCP && s.State == tcp.Listen {
		sendQ = 0 // sock_diag reports the backlog here; netstat the (empty) write queue
	}
	b = rightUint(b, uint64(sendQ), 6)
	b = append(b, ' ')
	start := len(b)
	b = t.appendAddr(b, s.Local, proto)
	b = padTo(b, start, 23)
	b = append(b, ' ')
	start = len(b)
	b = t.appendAddr(b, s.Remote, proto)
	b = padTo(b, start, 23)
	b = append(b, ' ')
	b = pad(b, stateName(s), 11)
	if t.c.Extend > 0 {
		b = append(b, ' ')
		if t.c.NumericUsers {
			b = leftUint(b, uint64(s.UID), 10)
		} else {
			b = pad(b, t.names.user(s.UID), 10)
		}
		b = append(b, ' ')
		b = leftUint(b, s.Inode, 10)
	}
	if t.c.Programs {
		b = append(b, ' ')
		b = appendProgram(b, s)
	}
	if t.c.Timers {
		b = append(b, ' ')
		b = appendTimer(b, s)
	}
	b = append(b, '\n')
	t.w.Write(b)
	t.line = b
}

// padTo pads the field that started at start to width columns.
func padTo(b []byte, start, width int) []byte {
	for len(b)-start < width {
		b = append(b, ' ')
	}
	return b
}

// appendProgram appends "PID/name" of the lowest-numbered owner, cut as
// netstat cuts it, or "-".
func appendProgram(b []byte, s *snapshot.Socket) []byte {
	o := firstOwner(s.Owners)
	if o == nil {
		return pad(b, "-", progWidth)
	}
	start := len(b)
	b = strconv.AppendUint(b, uint64(o.PID), 10)
	b = append(b, '/')
	b = append(b, o.Cmd...)
	if len(b)-start > progWidth-1 {
		b = b[:start+progWidth-1]
	}
	return padTo(b, start, progWidth)
}

func firstOwner(owners []snapshot.Owner) *snapshot.Owner {
	var first *snapshot.Owner
	for i := range owners {
		if first == nil || owners[i].PID < first.PID {
			first = &owners[i]
		}
	}
	return first
}

// timerNames are netstat's words for /proc/net/tcp's timer numbers; UDP
// and RAW sockets say "on1", "on2".
var timerNames = [...]string{snapshot.TimerOff: "off", snapshot.TimerRetrans: "on", snapshot.TimerKeepalive: "keepalive", snapshot.TimerTimeWait: "timewait"}

// appendTimer appends netstat -o's "name (seconds/retransmits/probes)".
func appendTimer(b []byte, s *snapshot.Socket) []byte {
	retr, probes := uint64(s.Retrans), uint64(s.Probes)
	if s.Proto != snapshot.TCP {
		retr = 0 // netstat zeroes it for UDP and RAW
	}
	switch {
	case s.Timer == snapshot.TimerOff:
		b = append(b, "off (0.00/"...)
		b = strconv.AppendUint(b, retr, 10)
		b = append(b, '/')
		b = strconv.AppendUint(b, probes, 10)
		return append(b, ')')
	case s.Proto == snapshot.TCP && int(s.Timer) < len(timerNames):
		b = append(b, timerNames[s.Timer]...)
	case s.Proto != snapshot.TCP && (s.Timer == 1 || s.Timer == 2):
		b = append(b, "on"...)
		b = strconv.AppendUint(b, uint64(s.Timer), 10)
	default:
		b = append(b, "unkn-"...)
		b = strconv.AppendUint(b, uint64(s.Timer), 10)
	}
	b = append(b, " ("...)
	b = strconv.AppendFloat(b, s.TimerLeft.Seconds(), 'f', 2, 64)
	b = append(b, '/')
	b = strconv.AppendUint(b, retr, 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, probes, 10)
	return append(b, ')')
}

var unixTypes = [...]string{snapshot.UnixStream: "STREAM", snapshot.UnixDgram: "DGRAM", snapshot.UnixRaw: "RAW", snapshot.UnixRDM: "RDM", snapshot.UnixSeqPacket: "SEQPACKET"}

func unixTypeName(t snapshot.UnixType) string {
	if int(t) < len(unixTypes) && unixTypes[t] != "" {
		return unixTypes[t]
	}
	return "UNKNOWN"
}

// unixState is netstat's State column for UNIX sockets.
func unixState(s *snapshot.Socket) string {
	switch s.State {
	case tcp.Listen:
		return "LISTENING"
	case tcp.Established:
		return "CONNECTED"
	case tcp.SynSent:
		return "CONNECTING"
	case tcp.Close:
		return ""
	}
	return "UNKNOWN"
}

// unixRow writes one UNIX socket as netstat does.
func (t *textWriter) unixRow(s *snapshot.Socket) {
	b := t.line[:0]
	b = append(b, "unix  "...)
	b = leftUint(b, uint64(s.RefCnt), 6)
	b = append(b, ' ')
	if s.State == tcp.Listen {
		b = pad(b, "[ ACC ]", 11)
	} else {
		b = pad(b, "[ ]", 11)
	}
	b = append(b, ' ')
	b = pad(b, unixTypeName(s.UnixType), 10)
	b = append(b, ' ')
	b = pad(b, unixState(s), 13)
	b = append(b, ' ')
	b = leftUint(b, s.Inode, 8)
	if t.c.Programs {
		b = append(b, ' ')
		b = appendProgram(b, s)
	}
	b = append(b, ' ')
	b = append(b, s.Path...)
	b = append(b, '\n')
	t.w.Write(b)
	t.line = b
}

// streamSocketsText writes netstat's socket tables as the kernel hands
// the sockets over, without collecting them first.
// inetRows writes one protocol's rows, IPv4 then IPv6 as netstat orders
// them, the IPv6 rows kept until IPv4's are out. Each family's dump walks
// the kernel's whole hash table: TCP's two families come from one dump
// (snapshot.Options.Interleaved), and the IPv6 dump of the other
// protocols runs beside the IPv4 one.
func (t *textWriter) inetRows(p snapshot.Proto, fams []snapshot.Family, owners *snapshot.OwnerIndex) error {
	walk := func(fams []snapshot.Family, row func(s *snapshot.Socket)) error {
		c := t.c
		opts := snapshot.Options{Protos: []snapshot.Proto{p}, Families: fams, Interleaved: true, States: c.tcpStates(), Info: c.Timers, NetNS: c.NetNS, Source: c.inetSource()}
		return snapshot.Walk(t.ctx, opts, func(s *snapshot.Socket) error {
			if owners != nil && s.Inode != 0 {
				s.Owners = owners.Of(s.Inode)
			}
			if c.wanted(s) {
				row(s)
			}
			return nil
		})
	}
	if len(fams) == 1 {
		return walk(fams, t.inetRow)
	}
	var later bytes.Buffer
	lw := bufio.NewWriterSize(&later, 64<<10)
	lt := &textWriter{w: lw, c: t.c, names: t.names, ctx: t.ctx, line: make([]byte, 0, 256), addr: make([]byte, 0, 64)}
	var err error
	if p == snapshot.TCP {
		err = walk(fams, func(s *snapshot.Socket) {
			if s.IPv6 {
				lt.inetRow(s)
			} else {
				t.inetRow(s)
			}
		})
	} else {
		done := make(chan error, 1)
		go func() { done <- walk(fams[1:], lt.inetRow) }()
		err = walk(fams[:1], t.inetRow)
		if err2 := <-done; err == nil {
			err = err2
		}
	}
	if err != nil {
		return err
	}
	lw.Flush()
	_, err = later.WriteTo(t.w)
	return err
}

func streamSocketsText(ctx context.Context, c *Config, w *bufio.Writer, warn io.Writer, nm *names) error {
	t := &textWriter{w: w, c: c, names: nm, ctx: ctx, line: make([]byte, 0, 256), addr: make([]byte, 0, 64)}
	var owners *snapshot.OwnerIndex
	if c.owners() {
		var err error
		owners, err = snapshot.Owners(ctx)
		var partial *snapshot.PartialError
		if errors.As(err, &partial) {
			fmt.Fprintf(warn, "(%v)\n", partial)
		} else if err != nil {
			return err
		}
	}
	sel := c.selection()
	if len(sel.inet) > 0 {
		t.header(true)
		for _, p := range sel.inet {
			if err := t.inetRows(p, sel.fams, owners); err != nil {
				return err
			}
		}
	}
	if sel.unix {
		unixs, err := snapshot.Dump(ctx, c.unixOptions())
		if err != nil {
			return err
		}
		snapshot.Attach(unixs, owners)
		t.header(false)
		for i := range unixs {
			if c.wanted(&unixs[i]) {
				t.unixRow(&unixs[i])
			}
		}
	}
	return nil
}

// summaryKey is one line of --summary.
type summaryKey struct {
	Proto string
	State string
}

// summarize counts sockets per protocol and state, in a stable order.
func summarize(inet, unixs []snapshot.Socket) ([]summaryKey, map[summaryKey]int) {
	counts := make(map[summaryKey]int)
	var keys []summaryKey
	add := func(k summaryKey) {
		if counts[k] == 0 {
			keys = append(keys, k)
		}
		counts[k]++
	}
	for i := range inet {
		st := stateName(&inet[i])
		if st == "" {
			st = "UNCONN"
		}
		add(summaryKey{protoName(&inet[i]), st})
	}
	for i := range unixs {
		st := unixState(&unixs[i])
		if st == "" {
			st = "UNCONNECTED"
		}
		add(summaryKey{"unix", st})
	}
	slices.SortFunc(keys, func(a, b summaryKey) int {
		if a.Proto != b.Proto {
			return cmpString(a.Proto, b.Proto)
		}
		return cmpString(a.State, b.State)
	})
	return keys, counts
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func writeSummaryText(w *bufio.Writer, inet, unixs []snapshot.Socket) {
	keys, counts := summarize(inet, unixs)
	fmt.Fprintf(w, "%-5s %-12s %8s\n", "Proto", "State", "Count")
	for _, k := range keys {
		fmt.Fprintf(w, "%-5s %-12s %8d\n", k.Proto, k.State, counts[k])
	}
}
