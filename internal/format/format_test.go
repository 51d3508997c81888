package format

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tcpstat/tcpstat/internal/golden"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

var at = time.Date(2026, 11, 22, 10, 15, 3, 123456789, time.UTC)

// events covers every shape of event: owner known or not, accept, inferred
// hand-off with counters, resets, IPv6, odd command names.
var events = []tracer.Event{{
	Kind: tracer.Transition, Cookie: 1, NetNS: 4026531840,
	Local: netip.MustParseAddrPort("0.0.0.0:0"), Remote: netip.MustParseAddrPort("10.0.0.2:443"),
	Old: tcp.Close, New: tcp.SynSent, OwnerKnown: true, OwnerSource: tracer.OwnerSyscall,
	Owner: tracer.Process{PID: 4242, Comm: "curl", UID: 1000, Cgroup: 77}, Task: tracer.Process{PID: 4242, Comm: "curl"},
}, {
	Kind: tracer.Transition, Cookie: 1, NetNS: 4026531840,
	Local: netip.MustParseAddrPort("10.0.0.1:40000"), Remote: netip.MustParseAddrPort("10.0.0.2:443"),
	Old: tcp.SynSent, New: tcp.Established, OwnerKnown: true, OwnerSource: tracer.OwnerSyscall, DwellKnown: true, Dwell: 1234 * time.Microsecond,
	Owner: tracer.Process{PID: 4242, Comm: "curl", UID: 1000, Cgroup: 77}, Task: tracer.Process{Comm: "swapper/0"},
}, {
	Kind: tracer.Transition, Cookie: 2, NetNS: 4026531840,
	Local: netip.MustParseAddrPort("[::1]:8080"), Remote: netip.MustParseAddrPort("[::1]:51000"),
	Old: tcp.Listen, New: tcp.SynRecv, Task: tracer.Process{PID: 14, Comm: "ksoftirqd/0"},
}, {
	Kind: tracer.Accept, Cookie: 2, NetNS: 4026531840,
	Local: netip.MustParseAddrPort("[::1]:8080"), Remote: netip.MustParseAddrPort("[::1]:51000"),
	Old: tcp.Established, New: tcp.Established, OwnerKnown: true, OwnerSource: tracer.OwnerAccept, DwellKnown: true, Dwell: 850,
	Owner: tracer.Process{PID: 7, Comm: "nginx: \"worker\"\n", UID: 33}, Task: tracer.Process{PID: 7, Comm: "nginx: \"worker\"\n"},
}, {
	Kind: tracer.Transition, Cookie: 1, NetNS: 4026531840,
	Local: netip.MustParseAddrPort("10.0.0.1:40000"), Remote: netip.MustParseAddrPort("10.0.0.2:443"),
	Old: tcp.FinWait2, New: tcp.TimeWait, Inferred: true, TimeWaitFinWait2: true, Reason: tracer.ReasonTimeWait,
	OwnerKnown: true, OwnerSource: tracer.OwnerSyscall, DwellKnown: true, Dwell: 42 * time.Second,
	Owner:    tracer.Process{PID: 4242, Comm: "curl", UID: 1000, Cgroup: 77},
	Task:     tracer.Process{PID: 14, Comm: "ksoftirqd/0"},
	Counters: tracer.Counters{BytesReceived: 1 << 20, BytesAcked: 512, Retransmits: 2, SRTT: 345 * time.Microsecond},
}, {
	Kind: tracer.Transition, Cookie: 1 << 63, NetNS: 4026532000, Synthetic: true,
	Local: netip.MustParseAddrPort("127.0.0.1:80"), Remote: netip.MustParseAddrPort("127.0.0.1:33000"),
	Old: tcp.Established, New: tcp.Close, Reason: tracer.ReasonReset, Errno: 104,
	DwellKnown: true, Dwell: 3*time.Hour + 25*time.Minute, Task: tracer.Process{Comm: "\xff\x01bad"},
}}

func TestLinesGolden(t *testing.T) {
	b := []byte(Header)
	for i := range events {
		b = AppendLine(b, &events[i], at)
	}
	b = AppendLostLine(b, at, LostRingBufferFull, 12, 30)
	b = AppendSummaryLine(b, Summary{Events: 6, Stats: tracer.Stats{RingBufferFull: 30, RecursionMisses: 5, Recovered: 5, InStorage: 4}, FilterForced: 2})
	golden.Check(t, "events.txt", b)
}

func TestJSONGolden(t *testing.T) {
	var b []byte
	for i := range events {
		b = AppendJSON(b, &events[i], at)
	}
	b = AppendLostJSON(b, at, LostRecursion, 1, 2)
	b = AppendSummaryJSON(b, at, Summary{Events: 6, Stats: tracer.Stats{Corrupt: 1, RingBufferFull: 3, RecursionMisses: 9, Recovered: 7, InStorage: 4}, FilterForced: 2})
	golden.Check(t, "events.jsonl", b)

	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i+1, err, line)
		}
		if i >= len(events) {
			continue
		}
		for _, field := range []string{"type", "time", "cookie", "netns", "family", "saddr", "sport", "daddr",
			"dport", "old_state", "new_state", "inferred", "pid", "comm"} {
			if _, ok := obj[field]; !ok {
				t.Errorf("line %d has no %q", i+1, field)
			}
		}
		if _, err := time.Parse(time.RFC3339Nano, obj["time"].(string)); err != nil {
			t.Errorf("line %d: time: %v", i+1, err)
		}
	}
}

func TestAppendDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0ns", 999: "999ns", 1500: "1.50µs", 12_345: "12.3µs", 999_000: "999µs",
		4_560_000: "4.56ms", 1_200_000_000: "1.20s", 59_990_000_000: "60.0s", 61 * time.Second: "1m01s",
		25*time.Hour + 3*time.Minute: "25h03m",
	} {
		if got := string(AppendDuration(nil, d)); got != want {
			t.Errorf("AppendDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "nginx", "a\"b\\c\n\t\x00", "\xff\xfe", "ünï\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q → %s: %v", s, b, err)
		}
		if utf8.ValidString(s) && got != s {
			t.Errorf("%q → %s → %q", s, b, got)
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], &events[1], at)
	}
}

func TestTimeLayouts(t *testing.T) {
	zones := []*time.Location{time.UTC, time.FixedZone("odd", -(3*3600 + 30*60)), time.FixedZone("east", 13*3600+45*60)}
	times := []time.Time{
		time.Unix(0, 0),
		time.Date(2026, 11, 22, 5, 51, 5, 123456789, time.UTC),
		time.Date(2024, 2, 29, 23, 59, 59, 999999999, time.UTC),
		time.Date(1999, 12, 31, 0, 0, 0, 1, time.UTC),
		time.Date(2026, 11, 22, 4, 29, 50, 2000, time.UTC),
		time.Date(2026, 11, 22, 4, 29, 50, 120000000, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), // past four digits: the slow path
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		times = append(times, time.Unix(rng.Int64N(1<<34), rng.Int64N(1e9)))
	}
	for _, at := range times {
		for _, zone := range zones {
			at := at.In(zone)
			if got, want := string(appendJSONTime(nil, at)), at.UTC().Format(JSONTime); got != want {
				t.Errorf("appendJSONTime(%v) = %s, want %s", at, got, want)
			}
			if got, want := string(AppendRFC3339Nano(nil, at)), at.UTC().Format(time.RFC3339Nano); got != want {
				t.Errorf("AppendRFC3339Nano(%v) = %s, want %s", at, got, want)
			}
			if got, want := string(appendClock(nil, at)), at.Format("15:04:05.000000"); got != want {
				t.Errorf("appendClock(%v) = %s, want %s", at, got, want)
			}
		}
	}
}
