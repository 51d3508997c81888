package filter

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// gateStream is an active open on cookie 1 (port known from its second
// event) interleaved with a passive open on cookie 2 (owner known from
// its accept, then another process acts on it).
func gateStream() []tracer.Event {
	ap := netip.MustParseAddrPort
	cli := tracer.Process{PID: 10, Comm: "curl"}
	srv := tracer.Process{PID: 20, Comm: "nginx", Cgroup: 5}
	other := tracer.Process{PID: 30, Comm: "worker", Cgroup: 6}
	tr := func(t uint64, cookie uint64, l, r string, old, new tcp.State, owner *tracer.Process) tracer.Event {
		ev := tracer.Event{Kind: tracer.Transition, Time: t, Cookie: cookie, Local: ap(l), Remote: ap(r), Old: old, New: new}
		if owner != nil {
			ev.Owner, ev.OwnerKnown = *owner, true
		}
		return ev
	}
	acc := tr(5, 2, "127.0.0.1:80", "127.0.0.1:40000", tcp.Established, tcp.Established, &srv)
	acc.Kind = tracer.Accept
	fin := tr(9, 2, "127.0.0.1:80", "127.0.0.1:40000", tcp.LastAck, tcp.Close, &other)
	fin.Reason = tracer.ReasonDone
	return []tracer.Event{
		tr(1, 1, "127.0.0.1:0", "127.0.0.1:80", tcp.Close, tcp.SynSent, &cli),
		tr(2, 2, "127.0.0.1:80", "127.0.0.1:40000", tcp.Listen, tcp.SynRecv, nil),
		tr(3, 1, "127.0.0.1:40000", "127.0.0.1:80", tcp.SynSent, tcp.Established, &cli),
		tr(4, 2, "127.0.0.1:80", "127.0.0.1:40000", tcp.SynRecv, tcp.Established, nil),
		acc,
		tr(6, 1, "127.0.0.1:40000", "127.0.0.1:80", tcp.Established, tcp.FinWait1, &cli),
		tr(7, 2, "127.0.0.1:80", "127.0.0.1:40000", tcp.Established, tcp.CloseWait, nil),
		tr(8, 2, "127.0.0.1:80", "127.0.0.1:40000", tcp.CloseWait, tcp.LastAck, &other),
		fin,
	}
}

func TestGate(t *testing.T) {
	e := testEnv(t)
	for _, tc := range []struct {
		expr string
		want string // times of the events passed, in the order emitted
		held int    // events still held at the end of the stream
	}{
		{"", "1 2 3 4 5 6 7 8 9", 0},
		{"sport = :40000", "1 3 6", 0},
		{"sport = :40001", "", 0},
		{"src 127.0.0.1:40000 or sport = :80", "2 1 3 4 5 6 7 8 9", 0},
		{"comm nginx", "2 4 5 7 8 9", 0},
		{"comm worker", "", 0},
		{"comm curl", "1 3 6", 0},
		{"comm nginx and state close-wait", "7", 0},
		{"sport = :80 and state established", "4 5", 0},
		{"reason done", "9", 0},
		{"not comm nginx and sport = :40000", "1 3 6", 0},
		{"comm curl and sport = :40000 and not state syn-sent", "3 6", 0},
	} {
		f, err := parseEnv(tc.expr, e)
		if err != nil {
			t.Fatal(err)
		}
		g := NewGate(f)
		var got []string
		emit := func(ev *tracer.Event) error {
			got = append(got, strconv.FormatUint(ev.Time, 10))
			return nil
		}
		for _, ev := range gateStream() {
			if err := g.Push(&ev, emit); err != nil {
				t.Fatal(err)
			}
		}
		if g.Held() != tc.held {
			t.Errorf("%q: %d events held at the end, want %d", tc.expr, g.Held(), tc.held)
		}
		if err := g.Flush(emit); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, strings.Join(got, " ")); diff != "" {
			t.Errorf("%q passes (-want +got):\n%s", tc.expr, diff)
		}
	}
}

// TestGateFlush: a socket whose identity never completes is judged as it
// was when the stream ends, and what was held is let go in time order.
func TestGateFlush(t *testing.T) {
	f, err := parseEnv("sport = :0 or comm curl", testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	g := NewGate(f)
	ap := netip.MustParseAddrPort
	for i, c := range []uint64{7, 8} {
		ev := tracer.Event{Kind: tracer.Transition, Time: uint64(10 - i), Cookie: c, Local: ap("127.0.0.1:0"), Remote: ap("127.0.0.1:80"), Old: tcp.Close, New: tcp.SynSent}
		if err := g.Push(&ev, func(*tracer.Event) error { t.Fatal("emitted before the end"); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint64
	g.Flush(func(ev *tracer.Event) error { got = append(got, ev.Time); return nil })
	if diff := cmp.Diff([]uint64{9, 10}, got); diff != "" || g.Held() != 0 {
		t.Errorf("flushed (-want +got):\n%s held %d", diff, g.Held())
	}
}

// TestGateForced: past maxHeld held events, an undecided socket is judged
// at once with what is known, and counted.
func TestGateForced(t *testing.T) {
	f, err := parseEnv("comm curl", testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	g := NewGate(f)
	ap := netip.MustParseAddrPort
	emitted := 0
	emit := func(*tracer.Event) error { emitted++; return nil }
	// Passive opens, never accepted: no owner, so the comm is unknown.
	for c := range uint64(maxHeld + 2) {
		ev := tracer.Event{Kind: tracer.Transition, Time: c, Cookie: c + 1, Local: ap("127.0.0.1:80"), Remote: ap("127.0.0.1:40000"), Old: tcp.SynRecv, New: tcp.Established}
		if err := g.Push(&ev, emit); err != nil {
			t.Fatal(err)
		}
	}
	if g.Held() != maxHeld || g.Forced != 2 || emitted != 0 {
		t.Errorf("held %d, forced %d, emitted %d: want %d, 2, 0 (judged without an owner, comm curl fails)", g.Held(), g.Forced, emitted, maxHeld)
	}
	if note := g.ForcedNote(); !strings.Contains(note, "judged 2 sockets") {
		t.Errorf("note %q does not count the 2 sockets", note)
	}
	if note := NewGate(f).ForcedNote(); note != "" {
		t.Errorf("a gate that judged every socket in time has a note: %q", note)
	}
}

// TestGateRetain: a socket whose ending event never comes (the kernel's
// part of the filter dropped it after its owner was known, or it was
// lost) is forgotten once the table no longer holds it; one still held
// keeps its identity, and one with held events stays.
func TestGateRetain(t *testing.T) {
	f, err := parseEnv("comm nginx", testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	g := NewGate(f)
	ap := netip.MustParseAddrPort
	nginx := tracer.Process{PID: 20, Comm: "nginx"}
	pass := func(*tracer.Event) error { return nil }
	for c := range uint64(1000) {
		ev := tracer.Event{Kind: tracer.Accept, Time: c, Cookie: c + 1, Local: ap("127.0.0.1:80"), Remote: ap("127.0.0.1:40000"),
			Old: tcp.Established, New: tcp.Established, Owner: nginx, OwnerKnown: true}
		g.Push(&ev, pass)
	}
	undecided := tracer.Event{Kind: tracer.Transition, Time: 2000, Cookie: 5000, Local: ap("127.0.0.1:80"), Remote: ap("127.0.0.1:40001"), Old: tcp.SynRecv, New: tcp.Established}
	g.Push(&undecided, pass)
	if g.Kept() != 1001 {
		t.Fatalf("the gate keeps %d sockets, want 1001", g.Kept())
	}
	g.Retain(func(cookie uint64) bool { return cookie <= 10 })
	if g.Kept() != 11 || g.Held() != 1 {
		t.Errorf("after Retain: %d sockets kept, %d events held; want 11 (10 live, 1 with held events) and 1", g.Kept(), g.Held())
	}
}

// TestGateForcedWarning warns at the first forced judgement, then each
// time the count has doubled.
func TestGateForcedWarning(t *testing.T) {
	g := NewGate(nil)
	var warned uint64
	var at []uint64
	for n := range uint64(20) {
		g.Forced = n
		if g.ForcedWarning(&warned) != "" {
			at = append(at, n)
		}
	}
	if diff := cmp.Diff([]uint64{1, 3, 7, 15}, at); diff != "" {
		t.Errorf("warned at (-want +got):\n%s", diff)
	}
}

// TestGateMatchRow judges rows as the gate judges their sockets' events:
// not while the socket's events are held, and with the identity decided
// once it is.
func TestGateMatchRow(t *testing.T) {
	f, err := parseEnv("comm nginx", testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	g := NewGate(f)
	stream := gateStream()
	nothing := func(*tracer.Event) error { return nil }
	// Cookie 2, the passive open, up to its accept by nginx.
	row := func(ev *tracer.Event) (Subject, uint64) { return FromEvent(ev), ev.Cookie }
	for _, ev := range stream[:4] {
		g.Push(&ev, nothing)
	}
	if s, c := row(&stream[3]); g.MatchRow(&s, c) {
		t.Error("a row whose socket's events are held matched")
	}
	if o := g.OldestHeld(); o != stream[1].Time {
		t.Errorf("the oldest event held is of %d, want %d", o, stream[1].Time)
	}
	g.Push(&stream[4], nothing)
	if o := g.OldestHeld(); o != 0 {
		t.Errorf("the oldest event held is of %d once none is, want 0", o)
	}
	// Another process acts on it: its row now names that owner, and
	// still matches, as its events do.
	if s, c := row(&stream[7]); !g.MatchRow(&s, c) {
		t.Error("the row of a socket decided as nginx's did not match after another process acted on it")
	}
	// curl's socket, decided at its first event, stays out.
	if s, c := row(&stream[5]); g.MatchRow(&s, c) {
		t.Error("curl's row matched comm nginx")
	}
}

// TestGateRowMatcher judges rows a table keeps under another cookie than
// their events' ids (synthetic ids before 5.12, moved to the real cookie
// by a dump) as MatchRow judges rows under the ids themselves.
func TestGateRowMatcher(t *testing.T) {
	f, err := parseEnv("comm nginx", testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	g := NewGate(f)
	stream := gateStream()
	for i := range stream {
		stream[i].Synthetic = true
	}
	nothing := func(*tracer.Event) error { return nil }
	// Cookies 1 and 2 are synthetic ids; the table keeps their rows under
	// 101 and 102.
	rowCookie := func(id uint64) uint64 {
		if id == 1 || id == 2 {
			return id + 100
		}
		return id
	}
	row := func(ev *tracer.Event) Subject { return FromEvent(ev) }
	for _, ev := range stream[:4] {
		g.Push(&ev, nothing)
	}
	// Its row names nginx already (a dump's owner scan), but its events
	// are yet to pass.
	if s := row(&stream[4]); g.RowMatcher(rowCookie)(&s, 102) {
		t.Error("the row of a socket whose events are held matched under its real cookie")
	}
	g.Push(&stream[4], nothing)
	match := g.RowMatcher(rowCookie)
	if s := row(&stream[7]); !match(&s, 102) {
		t.Error("the row of a socket decided as nginx's did not match under its real cookie after another process acted on it")
	}
	if s := row(&stream[5]); match(&s, 101) {
		t.Error("curl's row matched comm nginx")
	}
	// A table with no moved rows: MatchRow itself.
	if s := row(&stream[7]); !g.RowMatcher(func(id uint64) uint64 { return id })(&s, 2) {
		t.Error("the row decided as nginx's did not match under its own id")
	}
}
