// Package recordtest makes tracer events like those of loopback churn, for
// the recording's tests and benchmarks.
package recordtest

import (
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// Churn makes the events of n loopback connections as the kernel reports
// them under load: a client's active open and close, the server child's
// passive open, accept and close, interleaved a few connections deep.
func Churn(n int, seed uint64) []tracer.Event {
	rng := rand.New(rand.NewPCG(seed, 1))
	const netns = 4026531840
	lo := netip.MustParseAddr("127.0.0.1")
	client := tracer.Process{PID: 4242, Comm: "loadgen", UID: 0, Cgroup: 7781}
	server := tracer.Process{PID: 4242, Comm: "loadgen", UID: 0, Cgroup: 7781}
	softirq := []tracer.Process{{PID: 0, Comm: "swapper/0"}, {PID: 0, Comm: "swapper/1"}, {PID: 16, Comm: "ksoftirqd/1"}}
	var out []tracer.Event
	now := uint64(1_000_000_000_000)
	cookie := uint64(1 << 20)
	type conn struct {
		c, s  uint64
		cport uint16
		sport uint16
		step  int
		t     uint64
	}
	var live []*conn
	started := 0
	for started < n || len(live) > 0 {
		if started < n && (len(live) < 8 || rng.IntN(3) == 0) {
			cookie += 2
			live = append(live, &conn{c: cookie, s: cookie + 1, cport: uint16(32768 + rng.IntN(28000)),
				sport: uint16(9000 + started%4), t: now})
			started++
		}
		i := rng.IntN(len(live))
		k := live[i]
		now += uint64(200 + rng.IntN(3000))
		task := softirq[rng.IntN(len(softirq))]
		cl := netip.AddrPortFrom(lo, k.cport)
		sv := netip.AddrPortFrom(lo, k.sport)
		dwell := time.Duration(now - k.t)
		ev := tracer.Event{Kind: tracer.Transition, Time: now, NetNS: netns, Task: task, DwellKnown: true, Dwell: dwell}
		switch k.step {
		case 0:
			ev.Cookie, ev.Local, ev.Remote, ev.Old, ev.New = k.c, netip.AddrPortFrom(netip.IPv4Unspecified(), 0), sv, tcp.Close, tcp.SynSent
			ev.Owner, ev.OwnerKnown, ev.Task, ev.DwellKnown, ev.Dwell = client, true, client, false, 0
		case 1:
			ev.Cookie, ev.Local, ev.Remote, ev.Old, ev.New = k.s, sv, cl, tcp.Listen, tcp.SynRecv
			ev.DwellKnown, ev.Dwell = false, 0
		case 2:
			ev.Cookie, ev.Local, ev.Remote, ev.Old, ev.New = k.c, cl, sv, tcp.SynSent, tcp.Established
			ev.Owner, ev.OwnerKnown = client, true
		case 3:
			ev.Cookie, ev.Local, ev.Remote, ev.Old, ev.New = k.s, sv, cl, tcp.SynRecv, tcp.Established
		case 4:
			ev.Kind, ev.Cookie, ev.Local, ev.Remote, ev.Old, ev.New = tracer.Accept, k.s, sv, cl, tcp.Established, tcp.Established
			ev.Owner, ev.OwnerKnown, ev.Task, ev.DwellKnown, ev.Dwell = server, true, server, false, 0
		case 5:
			ev.Cookie, ev.Local, ev.Remote, ev.Old, ev.New = k.c, cl, sv, tcp.Established, tcp.FinWait1
			ev.Owner, ev.OwnerKnown, ev.Task = client, true, client
		case 6:
			ev.Cookie, ev.Local, ev.Remote, ev.Old, ev.New = k.s, sv, cl, tcp.Established, tcp.CloseWait
			ev.Owner, ev.OwnerKnown = server, true
		case 7:
			ev.Cookie, ev.Local, ev.Remote, ev.Old, ev.New = k.c, cl, sv, tcp.FinWait1, tcp.FinWait2
			ev.Owner, ev.OwnerKnown = client, true
		case 8:
			ev.Cookie, ev.Local, ev.Remote, ev.Old, ev.New = k.s, sv, cl, tcp.CloseWait, tcp.LastAck
			ev.Owner, ev.OwnerKnown, ev.Task = server, true, server
		case 9:
			ev.Cookie, ev.Local, ev.Remote, ev.Old, ev.New = k.c, cl, sv, tcp.FinWait2, tcp.TimeWait
			ev.Inferred, ev.Reason = true, tracer.ReasonTimeWait
			ev.Counters = tracer.Counters{BytesReceived: 1, BytesAcked: 6, SRTT: time.Duration(20+rng.IntN(40)) * time.Microsecond}
		case 10:
			ev.Cookie, ev.Local, ev.Remote, ev.Old, ev.New = k.s, sv, cl, tcp.LastAck, tcp.Close
			ev.Reason = tracer.ReasonDone
			ev.Counters = tracer.Counters{BytesReceived: 5, BytesAcked: 2, SRTT: time.Duration(20+rng.IntN(40)) * time.Microsecond}
		}
		if ev.OwnerKnown {
			ev.OwnerSource = tracer.OwnerSyscall
			if ev.Kind == tracer.Accept || ev.Owner == server && k.step > 4 {
				ev.OwnerSource = tracer.OwnerAccept
			}
		}
		k.t = now
		k.step++
		out = append(out, ev)
		if k.step > 10 {
			live = append(live[:i], live[i+1:]...)
		}
	}
	return out
}
