package format

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tcpstat/tcpstat/internal/golden"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// loopback is one connection's life on IPv4 loopback, the first thing
// people watch, then a dual-stack listener's IPv4-mapped peer.
var loopback = func() []tracer.Event {
	curl := tracer.Process{PID: 31250, Comm: "curl"}
	py := tracer.Process{PID: 31244, Comm: "python3"}
	c := netip.MustParseAddrPort("127.0.0.1:52794")
	s := netip.MustParseAddrPort("127.0.0.1:8080")
	ev := func(k tracer.Kind, local, remote netip.AddrPort, old, new tcp.State, owner *tracer.Process, dwell time.Duration) tracer.Event {
		e := tracer.Event{Kind: k, Local: local, Remote: remote, Old: old, New: new, DwellKnown: dwell > 0, Dwell: dwell}
		if owner != nil {
			e.OwnerKnown, e.Owner = true, *owner
		}
		return e
	}
	evs := []tracer.Event{
		ev(tracer.Transition, s, netip.MustParseAddrPort("0.0.0.0:0"), tcp.Close, tcp.Listen, &py, 0),
		ev(tracer.Transition, netip.MustParseAddrPort("127.0.0.1:0"), s, tcp.Close, tcp.SynSent, &curl, 0),
		ev(tracer.Transition, c, s, tcp.SynSent, tcp.Established, &curl, 153*time.Microsecond),
		ev(tracer.Transition, s, c, tcp.Listen, tcp.SynRecv, nil, 0),
		ev(tracer.Transition, s, c, tcp.SynRecv, tcp.Established, nil, 5230),
		ev(tracer.Accept, s, c, tcp.Established, tcp.Established, &py, 2690*time.Microsecond),
		ev(tracer.Transition, c, s, tcp.Established, tcp.FinWait1, &curl, 2890*time.Microsecond),
		ev(tracer.Transition, s, c, tcp.Established, tcp.CloseWait, &py, 2970*time.Microsecond),
		ev(tracer.Transition, s, c, tcp.CloseWait, tcp.LastAck, &py, 65400),
		ev(tracer.Transition, c, s, tcp.FinWait1, tcp.FinWait2, &curl, 169*time.Microsecond),
		ev(tracer.Transition, c, s, tcp.FinWait2, tcp.TimeWait, &curl, 5230),
		ev(tracer.Transition, s, c, tcp.LastAck, tcp.Close, &py, 30400),
		ev(tracer.Transition, netip.MustParseAddrPort("[::ffff:10.1.2.3]:8080"), netip.MustParseAddrPort("[::ffff:192.168.100.200]:61000"),
			tcp.Established, tcp.Close, &tracer.Process{PID: 4000000, Comm: "java-server-wor"}, 12*time.Second),
	}
	evs = append(evs, ev(tracer.Transition, netip.MustParseAddrPort("[2001:db8:aaaa:bbbb:cccc:dddd:eeee:1]:443"),
		netip.MustParseAddrPort("[2001:db8::2]:50000"), tcp.SynSent, tcp.Close, &curl, time.Second))
	evs[13].Reason = tracer.ReasonRefused
	evs[10].Inferred, evs[10].Reason = true, tracer.ReasonTimeWait
	evs[11].Reason = tracer.ReasonDone
	evs[12].Reason = tracer.ReasonTimeout
	return evs
}()

func layoutLines(l *Layout, evs []tracer.Event) []byte {
	b := []byte(l.Header())
	for i := range evs {
		b = l.AppendLine(b, &evs[i], at)
	}
	return b
}

// TestLayoutGolden: the terminal layouts at 80, 120 and 200 columns, and
// wide (-W) at 80, for loopback traffic and every other shape of event.
func TestLayoutGolden(t *testing.T) {
	all := append(append([]tracer.Event(nil), loopback...), events...)
	for _, tc := range []struct {
		name  string
		width int
		wide  bool
	}{{"80", 80, false}, {"120", 120, false}, {"200", 200, false}, {"80W", 80, true}} {
		t.Run(tc.name, func(t *testing.T) {
			l := &Layout{Width: tc.width, Wide: tc.wide}
			b := layoutLines(l, all)
			golden.Check(t, "layout_"+tc.name+".txt", b)
			if tc.wide {
				return
			}
			for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
				if n := utf8.RuneCountInString(line); n > tc.width {
					t.Errorf("line %d is %d columns wide, more than %d:\n%s", i+1, n, tc.width, line)
				}
			}
		})
	}
}

// TestLayoutIPv4Fits80: any IPv4 event, whatever its addresses, owner and
// reason, fits 80 columns, and every field is there, whole or shortened
// with the marker.
func TestLayoutIPv4Fits80(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	states := []tcp.State{tcp.Established, tcp.SynSent, tcp.SynRecv, tcp.FinWait1, tcp.FinWait2, tcp.TimeWait,
		tcp.Close, tcp.CloseWait, tcp.LastAck, tcp.Listen, tcp.Closing}
	l := &Layout{Width: 80}
	for i := 0; i < 5000; i++ {
		a := func() netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}), uint16(rng.Uint32()))
		}
		ev := tracer.Event{Kind: tracer.Transition, Local: a(), Remote: a(), Old: states[rng.IntN(len(states))], New: states[rng.IntN(len(states))],
			OwnerKnown: rng.IntN(2) == 0, Owner: tracer.Process{PID: rng.Uint32N(4194304), Comm: strings.Repeat("x", rng.IntN(16))},
			DwellKnown: true, Dwell: time.Duration(rng.Int64N(int64(99 * time.Hour)))}
		switch rng.IntN(4) {
		case 0:
			ev.Kind = tracer.Accept
		case 1: // as the kernel gives them: a reason with a move to CLOSE or TIME_WAIT
			ev.New, ev.Reason = tcp.Close, tracer.Reason(2+rng.IntN(6))
		case 2:
			ev.New, ev.Reason, ev.Inferred, ev.TimeWaitFinWait2 = tcp.TimeWait, tracer.ReasonTimeWait, true, rng.IntN(2) == 0
		}
		line := strings.TrimSuffix(string(l.AppendLine(nil, &ev, at)), "\n")
		if j := strings.LastIndexByte(line, '\n'); j >= 0 {
			line = line[j+1:] // after a new header
		}
		if n := utf8.RuneCountInString(line); n > 80 {
			t.Fatalf("%d columns:\n%s", n, line)
		}
		fields := strings.Fields(line)
		want := 6 // time, owner, local, remote, transition (with its reason), age
		if ev.Kind == tracer.Accept {
			want += 2 // "accept() in STATE"
		}
		if len(fields) < want {
			t.Fatalf("%d fields, want at least %d: %q", len(fields), want, line)
		}
		if ev.Reason > tracer.ReasonTimeWait && !strings.Contains(line, "→"+ev.Reason.String()+" ") {
			t.Fatalf("reason %s missing: %q", ev.Reason, line)
		}
		if ev.TimeWaitFinWait2 && !strings.HasSuffix(line, marker) {
			t.Fatalf("the timewait substate neither shown nor marked: %q", line)
		}
		port := fmt.Sprintf(":%d", ev.Remote.Port())
		if !strings.Contains(line, port+" ") {
			t.Fatalf("remote port %s missing: %q", port, line)
		}
	}
}

var escape = regexp.MustCompile("\x1b\\[[0-9;]*m")

// TestLayoutColor: colour adds escapes and nothing else; the stable layout
// with colour is the stable layout once they are removed; resets and
// timeouts get their own colours.
func TestLayoutColor(t *testing.T) {
	all := append(append([]tracer.Event(nil), loopback...), events...)
	for _, width := range []int{0, 80, 120} {
		plain := layoutLines(&Layout{Width: width}, all)
		colored := layoutLines(&Layout{Width: width, Color: true}, all)
		if got := escape.ReplaceAll(colored, nil); string(got) != string(plain) {
			t.Errorf("width %d: coloured without escapes differs:\n%s\nwant:\n%s", width, got, plain)
		}
		if width == 0 {
			stable := []byte(Header)
			for i := range all {
				stable = AppendLine(stable, &all[i], at)
			}
			if string(plain) != string(stable) {
				t.Errorf("the layout without a width is not the stable layout:\n%s\nwant:\n%s", plain, stable)
			}
		}
		for _, want := range []string{"\x1b[1;31mreset\x1b[0m", "\x1b[1;35mtimeout\x1b[0m", "\x1b[32mESTAB"} {
			if !strings.Contains(string(colored), want) {
				t.Errorf("width %d: no %q in\n%s", width, want, colored)
			}
		}
	}
}

// TestLayoutHeaderRegrow: columns that grow bring a new header; one with
// no line under it yet is overwritten (cursor up, erase line), not stacked.
func TestLayoutHeaderRegrow(t *testing.T) {
	l := &Layout{Width: 120}
	first := l.Header()
	ev := loopback[0]
	ev.Owner.Comm = "a-long-command"
	got := string(l.AppendLine(nil, &ev, at))
	head, line, _ := strings.Cut(got, "\n")
	if !strings.HasPrefix(head, "\x1b[1A\x1b[JTIME ") || head[len("\x1b[1A\x1b[J"):]+"\n" == first {
		t.Errorf("first event under a bare header: %q, want the header redrawn in place, wider than %q", got, first)
	}
	if !strings.Contains(line, "31244/a-long-command 127.0.0.1:8080") {
		t.Errorf("line %q", line)
	}
	ev.Owner.Comm = "a-longer-command"
	got = string(l.AppendLine(nil, &ev, at))
	if !strings.HasPrefix(got, "TIME ") {
		t.Errorf("regrow after a line: %q, want a new header below it", got)
	}
	if got := string(l.AppendLine(nil, &ev, at)); strings.Contains(got, "TIME") {
		t.Errorf("no growth, yet a header: %q", got)
	}
}

// TestLayoutResize: a narrower terminal gets the compact header and lines
// that fit it.
func TestLayoutResize(t *testing.T) {
	l := &Layout{Width: 200}
	layoutLines(l, loopback)
	head := l.Resize(80)
	if head != "TIME         OWNER   LOCAL           REMOTE          TRANSITION           AGE\n" {
		t.Errorf("header after the resize: %q", head)
	}
	for i := range loopback {
		if line := l.AppendLine(nil, &loopback[i], at); utf8.RuneCount(line) > 81 {
			t.Errorf("%d columns after the resize to 80: %s", utf8.RuneCount(line)-1, line)
		}
	}
}
