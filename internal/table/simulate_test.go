package table

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// kernel simulates the sockets a kernel holds and the events a tracer
// reports about them, keeping each socket's history so a dump can read it
// at any instant of its window, as a real dump reads each hash bucket at a
// different time.
type kernel struct {
	rng     *rand.Rand
	now     uint64
	next    uint64
	history map[uint64][]kstate // cookie → states over time
	live    []uint64            // cookies that still exist
	paths   map[uint64][]tcp.State
	events  []*tracer.Event
	tracing bool
}

type kstate struct {
	at       uint64
	state    tcp.State // 0: gone
	timeWait bool
}

func newKernel(seed uint64) *kernel {
	return &kernel{rng: rand.New(rand.NewPCG(seed, 1)), next: 1, history: map[uint64][]kstate{}, paths: map[uint64][]tcp.State{}}
}

// Lifecycles as Linux reports them (shared/DESIGN.md); TimeWait stands for
// the inferred hand-off, 0 for the silent end of the timewait socket.
var lifecycles = [][]tcp.State{
	{tcp.SynSent, tcp.Established, tcp.FinWait1, tcp.FinWait2, tcp.TimeWait, 0},
	{tcp.SynSent, tcp.Established, tcp.CloseWait, tcp.LastAck, tcp.Close},
	{tcp.SynSent, tcp.Close},
	{tcp.Listen, tcp.Close},
	{tcp.SynSent, tcp.Established, tcp.Close},
	{tcp.SynSent, tcp.Established, tcp.FinWait1, tcp.Closing, tcp.TimeWait, 0},
}

func (k *kernel) state(cookie uint64, at uint64) kstate {
	h := k.history[cookie]
	i, _ := slices.BinarySearchFunc(h, at+1, func(s kstate, t uint64) int { return int(s.at) - int(t) })
	if i == 0 {
		return kstate{}
	}
	return h[i-1]
}

// step advances time and makes one change: a new socket or one socket's
// next transition.
func (k *kernel) step() {
	k.now += 1 + k.rng.Uint64N(3)
	if len(k.live) == 0 || k.rng.IntN(4) == 0 {
		c := k.next
		k.next++
		k.paths[c] = lifecycles[k.rng.IntN(len(lifecycles))]
		k.live = append(k.live, c)
		k.set(c, tcp.Close, k.paths[c][0])
		k.paths[c] = k.paths[c][1:]
		return
	}
	i := k.rng.IntN(len(k.live))
	c := k.live[i]
	old := k.state(c, k.now).state
	next := k.paths[c][0]
	k.paths[c] = k.paths[c][1:]
	if next == 0 || next == tcp.Close {
		k.live = slices.Delete(k.live, i, i+1)
	}
	if next == 0 {
		// The timewait socket ends without an event.
		k.history[c] = append(k.history[c], kstate{at: k.now})
		return
	}
	k.set(c, old, next)
}

func (k *kernel) set(c uint64, old, new tcp.State) {
	ks := kstate{at: k.now, state: new}
	if new == tcp.TimeWait {
		ks.timeWait = true
	}
	if new == tcp.Close {
		ks.state = 0
	}
	k.history[c] = append(k.history[c], ks)
	if !k.tracing {
		return
	}
	e := move(k.now, c, old, new)
	if new == tcp.TimeWait {
		e = handOff(k.now, c, old, false)
	}
	k.events = append(k.events, e)
}

// dump lists every socket, each read at its own instant of [start, end].
func (k *kernel) dump(start, end uint64) *Dump {
	d := &Dump{Start: start, End: end, NetNS: testNS, Owners: false}
	for c := range k.history {
		s := k.state(c, start+k.rng.Uint64N(end-start+1))
		if s.state == 0 {
			continue
		}
		so := sock(c, s.state)
		if s.timeWait {
			so.Inode, so.Timer = 0, snapshot.TimerTimeWait
		}
		d.Sockets = append(d.Sockets, so)
	}
	return d
}

type kv struct {
	Cookie uint64
	State  tcp.State
}

func (k *kernel) listing(at uint64) []kv {
	var out []kv
	for c := range k.history {
		if s := k.state(c, at); s.state != 0 {
			out = append(out, kv{c, s.state})
		}
	}
	slices.SortFunc(out, func(a, b kv) int { return int(a.Cookie) - int(b.Cookie) })
	return out
}

func tableListing(t *Table) []kv {
	var out []kv
	for i := range t.Len() {
		out = append(out, kv{t.Row(i).Cookie(), t.Row(i).State()})
	}
	slices.SortFunc(out, func(a, b kv) int { return int(a.Cookie) - int(b.Cookie) })
	return out
}

// TestSimulatedKernel drives the table the way the live tracker does:
// sockets exist before tracing starts, events are buffered while the first
// dump runs and applied after it, later dumps run while events keep being
// applied (some arriving only after the dump is merged). With no event
// lost, the table must match the kernel exactly after every merge once the
// events up to then are applied, except for timewait sockets that ended
// silently since the last dump. Later dumps are merged whole (Reconcile),
// or a socket at a time with events applied between (a walked reconcile).
func TestSimulatedKernel(t *testing.T) {
	for _, walked := range []bool{false, true} {
		t.Run(map[bool]string{false: "whole", true: "walked"}[walked], func(t *testing.T) {
			simulate(t, walked)
		})
	}
}

// merge merges d while events keep coming: some are applied before, the
// rest after; walked, some also between two sockets.
func merge(tb *Table, d *Dump, events []*tracer.Event, rng *rand.Rand, walked bool) {
	apply := func(n int) {
		for _, e := range events[:n] {
			tb.Apply(e)
		}
		events = events[n:]
	}
	apply(rng.IntN(len(events) + 1))
	if !walked {
		tb.Reconcile(d)
		apply(len(events))
		return
	}
	m := tb.Merge(d.Start, d.NetNS, d.Owners)
	for i := range d.Sockets {
		if rng.IntN(4) == 0 {
			apply(rng.IntN(min(3, len(events)) + 1))
		}
		m.Add(&d.Sockets[i], d.End)
	}
	m.Done(d.End)
	apply(len(events))
}

func simulate(t *testing.T, walked bool) {
	for seed := range uint64(200) {
		k := newKernel(seed)
		for range 50 {
			k.step()
		}
		k.tracing = true
		tb := New(Options{})

		// Start-up: attach, buffer, dump, merge, apply the buffer.
		start := k.now
		for range k.rng.IntN(40) {
			k.step()
		}
		for range 30 {
			k.step()
		}
		d := k.dump(start, k.now)
		tb.Reconcile(d)
		for _, e := range k.events {
			tb.Apply(e)
		}
		k.events = nil

		for round := range 20 {
			for range k.rng.IntN(60) {
				k.step()
			}
			// A reconcile: events keep flowing while the dump runs; some
			// are still in the ring buffer when it is merged.
			for _, e := range k.events {
				tb.Apply(e)
			}
			k.events = nil
			start := k.now
			for range k.rng.IntN(30) {
				k.step()
			}
			merge(tb, k.dump(start, k.now), k.events, k.rng, walked)
			k.events = nil

			want, got := k.listing(k.now), tableListing(tb)
			got = slices.DeleteFunc(got, func(r kv) bool {
				// Timewait sockets gone since the dump have not been told of yet.
				return r.State == tcp.TimeWait && k.state(r.Cookie, k.now).state == 0
			})
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("seed %d round %d: table differs from the kernel (-kernel +table):\n%s", seed, round, diff)
			}
		}
		// Once quiet, two more dumps leave nothing stale (a row goes when
		// two dumps in a row miss it).
		for range 2 {
			k.now++
			tb.Reconcile(k.dump(k.now, k.now))
		}
		if diff := cmp.Diff(k.listing(k.now), tableListing(tb), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("seed %d: after a quiet dump (-kernel +table):\n%s", seed, diff)
		}
		if tb.Stats().Mismatched != 0 {
			t.Errorf("seed %d: %d transitions did not start from the row's state", seed, tb.Stats().Mismatched)
		}
	}
}
