// Package format renders tracer events for people (one aligned line each)
// and for programs (one JSON object per line). Both append to a caller's
// buffer: watch formats hundreds of thousands of events a second.
package format

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// Header is the first line of the human format.
const Header = "TIME            OWNER                  LOCAL                          REMOTE                         TRANSITION                     IN OLD STATE\n"

// AppendLine appends ev as one line for people, at wall-clock time at.
func AppendLine(b []byte, ev *tracer.Event, at time.Time) []byte {
	b = appendClock(b, at)
	b = append(b, ' ')
	b = pad(b, len(b), owner(ev), 22)
	b = pad(b, len(b), ev.Local.String(), 30)
	b = pad(b, len(b), ev.Remote.String(), 30)
	start := len(b)
	if ev.Kind == tracer.Accept {
		b = append(b, "accept() in "...)
		b = append(b, ev.New.String()...)
	} else {
		b = append(b, ev.Old.String()...)
		b = append(b, " → "...)
		b = append(b, ev.New.String()...)
		if ev.Inferred {
			b = append(b, '*')
		}
	}
	b = pad(b, start, "", 30)
	if ev.DwellKnown {
		b = AppendDuration(b, ev.Dwell)
	} else {
		b = append(b, '-')
	}
	if ev.Reason != tracer.ReasonNone {
		b = append(b, "  "...)
		b = append(b, ev.Reason.String()...)
		if ev.TimeWaitFinWait2 {
			b = append(b, " (peer's FIN pending)"...)
		}
	}
	return append(b, '\n')
}

// Footnote explains the marks of the human format, for the end of a run.
const Footnote = "* inferred: the kernel hands the socket to a timewait mini-socket without reporting a transition\n"

// owner says who owns the socket, or why nobody is known to.
func owner(ev *tracer.Event) string {
	if ev.OwnerKnown {
		return strconv.FormatUint(uint64(ev.Owner.PID), 10) + "/" + Printable(ev.Owner.Comm)
	}
	if ev.Old == tcp.Listen || ev.Old == tcp.SynRecv || ev.New == tcp.SynRecv {
		return "(not accepted)"
	}
	return "-"
}

// Printable replaces what would break a line or a terminal (control
// characters, invalid UTF-8) in a command name, which any process may set.
func Printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return '?'
		}
		return r
	}, s)
}

// pad appends s and spaces so that the field begun at start is width wide,
// plus one space of separation.
func pad(b []byte, start int, s string, width int) []byte {
	b = append(b, s...)
	for n := utf8.RuneCount(b[start:]); n < width; n++ {
		b = append(b, ' ')
	}
	return append(b, ' ')
}

// AppendDuration appends d with three significant digits: 850ns, 12.3µs,
// 4.56ms, 1.20s, then minutes and hours.
func AppendDuration(b []byte, d time.Duration) []byte {
	switch {
	case d < time.Microsecond:
		return append(strconv.AppendInt(b, int64(d), 10), "ns"...)
	case d < time.Millisecond:
		return appendUnit(b, float64(d)/1e3, "µs")
	case d < time.Second:
		return appendUnit(b, float64(d)/1e6, "ms")
	case d < time.Minute:
		return appendUnit(b, d.Seconds(), "s")
	case d < time.Hour:
		return fmt.Appendf(b, "%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Appendf(b, "%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

func appendUnit(b []byte, v float64, unit string) []byte {
	prec := 2
	switch {
	case v >= 100:
		prec = 0
	case v >= 10:
		prec = 1
	}
	return append(strconv.AppendFloat(b, v, 'f', prec, 64), unit...)
}

// JSONTime is the layout of "time": RFC 3339 with nanoseconds, in UTC.
const JSONTime = "2006-01-02T15:04:05.000000000Z07:00"

// AppendJSON appends ev as one JSON object and a newline. Field names are
// stable; docs/watch.md describes them.
func AppendJSON(b []byte, ev *tracer.Event, at time.Time) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, ev.Kind.String()...)
	b = append(b, `","time":"`...)
	b = appendJSONTime(b, at)
	b = append(b, `","cookie":`...)
	b = strconv.AppendUint(b, ev.Cookie, 10)
	b = append(b, `,"netns":`...)
	b = strconv.AppendUint(b, uint64(ev.NetNS), 10)
	if ev.IPv6() {
		b = append(b, `,"family":"inet6","saddr":"`...)
	} else {
		b = append(b, `,"family":"inet","saddr":"`...)
	}
	b = ev.Local.Addr().AppendTo(b)
	b = append(b, `","sport":`...)
	b = strconv.AppendUint(b, uint64(ev.Local.Port()), 10)
	b = append(b, `,"daddr":"`...)
	b = ev.Remote.Addr().AppendTo(b)
	b = append(b, `","dport":`...)
	b = strconv.AppendUint(b, uint64(ev.Remote.Port()), 10)
	b = append(b, `,"old_state":"`...)
	b = append(b, ev.Old.String()...)
	b = append(b, `","new_state":"`...)
	b = append(b, ev.New.String()...)
	b = append(b, `","inferred":`...)
	b = strconv.AppendBool(b, ev.Inferred)
	if ev.OwnerKnown {
		b = append(b, `,"pid":`...)
		b = strconv.AppendUint(b, uint64(ev.Owner.PID), 10)
		b = append(b, `,"comm":`...)
		b = AppendJSONString(b, ev.Owner.Comm)
		b = append(b, `,"uid":`...)
		b = strconv.AppendUint(b, uint64(ev.Owner.UID), 10)
		b = append(b, `,"cgroup":`...)
		b = strconv.AppendUint(b, ev.Owner.Cgroup, 10)
		b = append(b, `,"owner_source":"`...)
		b = append(b, ev.OwnerSource.String()...)
		b = append(b, '"')
	} else {
		b = append(b, `,"pid":null,"comm":null,"uid":null,"cgroup":null,"owner_source":null`...)
	}
	b = append(b, `,"task_pid":`...)
	b = strconv.AppendUint(b, uint64(ev.Task.PID), 10)
	b = append(b, `,"task_comm":`...)
	b = AppendJSONString(b, ev.Task.Comm)
	b = append(b, `,"dwell_ns":`...)
	if ev.DwellKnown {
		b = strconv.AppendInt(b, int64(ev.Dwell), 10)
	} else {
		b = append(b, "null"...)
	}
	if ev.Reason != tracer.ReasonNone {
		b = append(b, `,"reason":"`...)
		b = append(b, ev.Reason.String()...)
		b = append(b, `","errno":`...)
		b = strconv.AppendUint(b, uint64(ev.Errno), 10)
		b = append(b, `,"bytes_received":`...)
		b = strconv.AppendUint(b, ev.Counters.BytesReceived, 10)
		b = append(b, `,"bytes_acked":`...)
		b = strconv.AppendUint(b, ev.Counters.BytesAcked, 10)
		b = append(b, `,"retransmits":`...)
		b = strconv.AppendUint(b, uint64(ev.Counters.Retransmits), 10)
		b = append(b, `,"srtt_us":`...)
		b = strconv.AppendInt(b, ev.Counters.SRTT.Microseconds(), 10)
	}
	if ev.TimeWaitFinWait2 {
		b = append(b, `,"timewait_substate":"FIN_WAIT2"`...)
	}
	if ev.Synthetic {
		b = append(b, `,"synthetic_cookie":true`...)
	}
	return append(b, "}\n"...)
}

// AppendJSONString appends s as a JSON string. Command names are whatever
// bytes a process chose: control characters are escaped and invalid UTF-8
// becomes U+FFFD, so the output is always valid JSON.
func AppendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
