package format

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// Layout lays watch's lines out for a terminal: columns as wide as the
// widest value seen so far (capped), shortened with a marker (…) where
// the terminal is too narrow, so that no line wraps. A Layout without a
// Width is the stable layout of AppendLine, for pipes and files, with
// colour if asked for.
type Layout struct {
	// Width is the terminal's width in columns; 0 when the output is not
	// a terminal.
	Width int
	// Wide prints every field whole (netstat's -W): columns grow without
	// cap and nothing is shortened.
	Wide bool
	// Color colours states, close reasons and losses.
	Color bool

	seen  [3]int  // widest owner, local and remote seen so far
	cols  columns // the widths in force, as the last header showed them
	ready bool    // cols were computed
	bare  int     // screen rows of the header printed last, if no line followed it
}

// columns are the widths of one layout.
type columns struct {
	time, owner, local, remote, trans, age int
	reason                                 int  // room kept for the reason; the line may use more
	compact                                bool // millisecond times, transitions that carry their reason
	sized                                  bool // a terminal layout: shorten what does not fit
}

const (
	ageWidth     = 6  // AppendDuration's widest below 100 hours: 12.3µs, 59m59s
	ownerCap     = 24 // a pid and a 15-byte command name fit
	addrCap      = 41 // most IPv6 addresses with a port fit; longer are shortened
	reasonWant   = 8  // "timewait", the longest reason word
	compactBelow = 120
)

// Header returns the column header for the widths in force.
func (l *Layout) Header() string {
	if l.Width <= 0 {
		return Header
	}
	if !l.ready {
		l.cols, l.ready = l.fit(), true
	}
	c := l.cols
	var b []byte
	b = padTo(b, "TIME", c.time)
	b = padTo(b, "OWNER", c.owner)
	b = padTo(b, "LOCAL", c.local)
	b = padTo(b, "REMOTE", c.remote)
	b = padTo(b, "TRANSITION", c.trans)
	if c.compact {
		b = append(b, "AGE"...)
	} else {
		b = padTo(b, "AGE", c.age)
		b = append(b, "REASON"...)
	}
	b = l.clip(trimPad(b), 0)
	head := string(b) + "\n"
	if l.bare > 0 {
		// A header with no line under it yet: overwrite it (cursor up,
		// erase to the end of the screen) rather than stack two.
		head = "\x1b[" + strconv.Itoa(l.bare) + "A\x1b[J" + head
	}
	l.bare = max(1, (visible(b)+l.Width-1)/l.Width) // a wide header wraps
	return head
}

// Resize fits the columns to a terminal now width columns wide and returns
// the header for them.
func (l *Layout) Resize(width int) string {
	l.Width, l.bare = width, 0 // the terminal rewrapped what it showed
	l.cols = l.fit()
	return l.Header()
}

// fit computes the widths for the terminal from the widest values seen.
func (l *Layout) fit() columns {
	c := columns{time: 15, trans: 24, age: ageWidth, reason: reasonWant, sized: true,
		owner: max(l.seen[0], len("(not accepted)")), local: max(l.seen[1], 15), remote: max(l.seen[2], 15)}
	if l.Wide {
		return c
	}
	c.owner, c.local, c.remote = min(c.owner, ownerCap), min(c.local, addrCap), min(c.remote, addrCap)
	if l.Width < compactBelow {
		// Reasons go in the transition column, whose longest entry is
		// "FIN_WAIT2→TIME_WAIT*".
		c.compact, c.time, c.trans, c.reason = true, 12, 20, 0
	}
	over := c.time + c.owner + c.local + c.remote + c.trans + c.age + 5 - l.Width
	if c.reason > 0 {
		over += c.reason + 1
	}
	shrink := func(w *int, floor int) {
		if over > 0 && *w > floor {
			cut := min(over, *w-floor)
			*w -= cut
			over -= cut
		}
	}
	addrs := func(floor int) {
		for over > 0 && max(c.local, c.remote) > floor {
			if c.local >= c.remote {
				shrink(&c.local, max(floor, c.remote-1))
			} else {
				shrink(&c.remote, max(floor, c.local-1))
			}
		}
	}
	shrink(&c.owner, 10)
	addrs(15)
	shrink(&c.owner, 6)
	addrs(13)
	shrink(&c.reason, 4)
	addrs(9)
	shrink(&c.owner, 3)
	shrink(&c.reason, 0)
	return c
}

// AppendLine appends ev as one line for people, preceded by a new header
// when the columns had to grow.
func (l *Layout) AppendLine(b []byte, ev *tracer.Event, at time.Time) []byte {
	if l.Width <= 0 {
		if !l.Color {
			return AppendLine(b, ev, at)
		}
		return l.appendFields(b, ev, at, columns{time: 15, owner: 22, local: 30, remote: 30, trans: 30})
	}
	own, local, remote := owner(ev), addrText(ev.Local), addrText(ev.Remote)
	grew := false
	for i, s := range [3]string{own, local, remote} {
		if n := utf8.RuneCountInString(s); n > l.seen[i] {
			l.seen[i], grew = n, true
		}
	}
	if grew || !l.ready {
		was := l.cols
		l.cols, l.ready = l.fit(), true
		if l.cols != was && was.sized {
			b = append(b, l.Header()...)
		}
	}
	l.bare = 0
	return l.appendFields(b, ev, at, l.cols)
}

// appendFields appends the fields in widths c; a sized layout shortens what
// does not fit and ends the line at the terminal's edge.
func (l *Layout) appendFields(b []byte, ev *tracer.Event, at time.Time, c columns) []byte {
	start := len(b)
	if c.compact {
		b = appendDigits(appendHMS(b, at), at.Nanosecond()/1e6, 3)
	} else {
		b = appendClock(b, at)
	}
	b = append(b, ' ')
	if !c.sized {
		b = pad(b, len(b), owner(ev), c.owner)
		b = pad(b, len(b), ev.Local.String(), c.local)
		b = pad(b, len(b), ev.Remote.String(), c.remote)
	} else {
		b = padTo(b, shortenOwner(owner(ev), c.owner, l.Wide), c.owner)
		b = padTo(b, shortenAddr(addrText(ev.Local), c.local, l.Wide), c.local)
		b = padTo(b, shortenAddr(addrText(ev.Remote), c.remote, l.Wide), c.remote)
	}
	merged := l.appendTransition(&b, ev, c)
	age := "-"
	if ev.DwellKnown {
		age = string(AppendDuration(nil, ev.Dwell))
	}
	if c.sized {
		b = padTo(b, age, c.age)
	} else {
		b = append(b, age...)
	}
	if ev.Reason != tracer.ReasonNone {
		var r string
		if !merged {
			r = ev.Reason.String()
		}
		if ev.TimeWaitFinWait2 {
			r += " (peer's FIN pending)"
		}
		if r = strings.TrimPrefix(r, " "); r != "" {
			if !c.sized {
				b = append(b, "  "...)
			}
			b = appendToned(b, r, ReasonTone(ev.Reason), l.Color)
		}
	}
	if c.sized {
		b = l.clip(trimPad(b), start)
	}
	return append(b, '\n')
}

// appendTransition appends OLD → NEW or the accept, coloured by state,
// padded to the column. Compact lines say ESTAB for ESTABLISHED, and the
// close reason instead of CLOSE (ESTAB→reset); TIME_WAIT* says timewait.
// It reports whether the reason was said.
func (l *Layout) appendTransition(bp *[]byte, ev *tracer.Event, c columns) (merged bool) {
	b := *bp
	arrow, name := " → ", tcp.State.String
	if c.compact {
		arrow, name = "→", shortState
	}
	n := 0
	put := func(s string, t Tone) {
		b = appendToned(b, s, t, l.Color)
		n += utf8.RuneCountInString(s)
	}
	switch {
	case ev.Kind == tracer.Accept:
		put("accept() in ", Plain)
		put(name(ev.New), StateTone(ev.New))
	case c.compact && ev.Reason != tracer.ReasonNone && ev.New == tcp.Close:
		put(name(ev.Old), StateTone(ev.Old))
		put(arrow, Plain)
		put(ev.Reason.String(), ReasonTone(ev.Reason))
		merged = true
	default:
		put(name(ev.Old), StateTone(ev.Old))
		put(arrow, Plain)
		put(name(ev.New), StateTone(ev.New))
		if ev.Inferred {
			put("*", Plain)
		}
		merged = c.compact && ev.Reason == tracer.ReasonTimeWait && ev.New == tcp.TimeWait
	}
	for ; n < c.trans; n++ {
		b = append(b, ' ')
	}
	*bp = append(b, ' ')
	return merged
}

// padTo appends s, padded to width, and a separator.
func padTo(b []byte, s string, width int) []byte {
	b = append(b, s...)
	for n := utf8.RuneCountInString(s); n < width; n++ {
		b = append(b, ' ')
	}
	return append(b, ' ')
}

// shortState is a state's name in compact lines.
func shortState(s tcp.State) string {
	if s == tcp.Established {
		return "ESTAB"
	}
	return s.String()
}

// addrText is an address for people: IPv4-mapped IPv6 addresses (a
// dual-stack listener's IPv4 peers) shown as IPv4.
func addrText(a netip.AddrPort) string {
	if a.Addr().Is4In6() {
		a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	}
	return a.String()
}

// marker ends a shortened field.
const marker = "…"

// shorten cuts s to width columns, the last one the marker.
func shorten(s string, width int, whole bool) string {
	if whole || utf8.RuneCountInString(s) <= width {
		return s
	}
	if width <= 0 {
		return ""
	}
	r := []rune(s)
	return string(r[:width-1]) + marker
}

// shortenAddr cuts an address's host, keeping its port whole when it can:
// 192.168.10.…:52794.
func shortenAddr(s string, width int, whole bool) string {
	if whole || len(s) <= width {
		return s
	}
	colon := strings.LastIndexByte(s, ':')
	port := s[colon:]
	if colon < 0 || width < len(port)+2 {
		return shorten(s, width, false)
	}
	return s[:width-len(port)-1] + marker + port
}

// visible counts the columns of b, without colour escapes.
func visible(b []byte) int {
	n := 0
	for i := 0; i < len(b); {
		if b[i] == 0x1b {
			i = skipCSI(b, i)
			continue
		}
		_, size := utf8.DecodeRune(b[i:])
		i += size
		n++
	}
	return n
}

// skipCSI returns the index after the escape sequence at b[i]: ESC [,
// parameters, and a final byte from @ to ~.
func skipCSI(b []byte, i int) int {
	for i += 2; i < len(b) && (b[i] < 0x40 || b[i] > 0x7e); i++ {
	}
	return i + 1
}

// clip cuts the line begun at start to the terminal's width, colour
// escapes aside, ending it with the marker when something was cut.
func (l *Layout) clip(b []byte, start int) []byte {
	if l.Wide || visible(b[start:]) <= l.Width {
		return b
	}
	n := 0
	for i := start; i < len(b); {
		if b[i] == 0x1b {
			i = skipCSI(b, i)
			continue
		}
		if n == l.Width-1 {
			b = append(b[:i], marker...)
			if l.Color {
				b = append(b, sgrReset...)
			}
			return b
		}
		_, size := utf8.DecodeRune(b[i:])
		i += size
		n++
	}
	return b
}

// shortenOwner keeps the command name, which says more than the pid:
// 31244/python3 becomes …/python3, then pytho….
func shortenOwner(s string, width int, whole bool) string {
	if whole || utf8.RuneCountInString(s) <= width {
		return s
	}
	slash := strings.IndexByte(s, '/')
	if slash <= 0 {
		return shorten(s, width, false)
	}
	if utf8.RuneCountInString(s[slash:])+1 <= width {
		return marker + s[slash:]
	}
	comm := []rune(s[slash+1:])
	return string(comm[:max(0, min(len(comm), width-1))]) + marker
}

func trimPad(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	return b
}

// AppendLost is AppendLostLine in the layout's colour.
func (l *Layout) AppendLost(b []byte, at time.Time, reason string, count, total uint64) []byte {
	l.bare = 0
	if !l.Color {
		return AppendLostLine(b, at, reason, count, total)
	}
	line := AppendLostLine(nil, at, reason, count, total)
	b = append(b, sgr[Bad]...)
	b = append(b, line[:len(line)-1]...)
	return append(append(b, sgrReset...), '\n')
}
