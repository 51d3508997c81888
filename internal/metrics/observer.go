// Package metrics exposes the connection table and the tracer's health to
// Prometheus. Like node_exporter's collectors it keeps no metric objects
// and runs nothing in the background: the connections gauge is counted
// from the table at scrape time, and the counters and histograms that
// events add up are plain sums read at scrape time through
// prometheus.MustNewConst*. Labels are bounded: states, reasons and a
// capped set of ports, namespaces or pods, never addresses.
package metrics

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// numStates bounds the kernel state numbers tracked (tcp.BoundInactive is
// the highest).
const numStates = int(tcp.BoundInactive) + 1

// durationBuckets (seconds) cover loopback handshakes (tens of µs) to
// connects that time out (two minutes): ×4 from 10 µs.
var durationBuckets = exponential(10e-6, 4, 13)

// lifetimeBuckets (seconds) reach from a millisecond to a day.
var lifetimeBuckets = exponential(1e-3, 4, 13)

func exponential(start, factor float64, n int) []float64 {
	b := make([]float64, n)
	for i := range b {
		b[i] = start * math.Pow(factor, float64(i))
	}
	return b
}

// histogram is a Prometheus histogram kept as plain sums.
type histogram struct {
	bounds []float64
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	sum    float64
	n      uint64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(d time.Duration) {
	v := d.Seconds()
	i, _ := slices.BinarySearch(h.bounds, v) // first bound ≥ v: le is inclusive
	h.counts[i]++
	h.sum += v
	h.n++
}

// cumulative returns the upper bound → count map Prometheus wants.
func (h *histogram) cumulative() map[float64]uint64 {
	m := make(map[float64]uint64, len(h.bounds))
	var c uint64
	for i, b := range h.bounds {
		c += h.counts[i]
		m[b] = c
	}
	return m
}

// Observer adds up what events say: transitions, closes, failed connects
// and the time spent in states. Event takes every event the table reads
// (livetable.Config.OnEvent); End takes the connections the table closes.
type Observer struct {
	maxPorts int

	mu          sync.Mutex
	transitions [numStates][numStates]uint64
	accepts     uint64
	closes      [8]uint64 // by tracer.Reason
	failed      map[failKey]uint64
	ports       map[uint16]struct{} // distinct ports in failed
	otherPorts  map[tracer.Reason]uint64
	handshake   [2]*histogram // active, passive
	acceptWait  *histogram
	dwell       map[tcp.State]*histogram
	lifetime    *histogram
	netns       func(uint32) bool
}

type failKey struct {
	reason tracer.Reason
	port   uint16
}

// dwellStates are the states whose time is a histogram of its own: the
// ones where connections pile up when something is wrong.
var dwellStates = []tcp.State{tcp.SynSent, tcp.CloseWait, tcp.FinWait2}

// ObserverOptions tune an Observer.
type ObserverOptions struct {
	// MaxPorts caps the destination ports failed connects are counted by;
	// the rest count as port "other". 0 counts them without a port.
	MaxPorts int
	// NetNS, when set, says which namespaces' events count.
	NetNS func(inode uint32) bool
}

// NewObserver returns an empty Observer.
func NewObserver(opts ObserverOptions) *Observer {
	o := &Observer{
		maxPorts:   opts.MaxPorts,
		failed:     map[failKey]uint64{},
		ports:      map[uint16]struct{}{},
		otherPorts: map[tracer.Reason]uint64{},
		handshake:  [2]*histogram{newHistogram(durationBuckets), newHistogram(durationBuckets)},
		acceptWait: newHistogram(durationBuckets),
		dwell:      map[tcp.State]*histogram{},
		lifetime:   newHistogram(lifetimeBuckets),
		netns:      opts.NetNS,
	}
	for _, s := range dwellStates {
		o.dwell[s] = newHistogram(durationBuckets)
	}
	return o
}

// Event counts one event.
func (o *Observer) Event(ev *tracer.Event) {
	if o.netns != nil && !o.netns(ev.NetNS) {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if ev.Kind == tracer.Accept {
		o.accepts++
		if ev.DwellKnown {
			o.acceptWait.observe(ev.Dwell)
		}
		return
	}
	if ev.Kind != tracer.Transition || int(ev.Old) >= numStates || int(ev.New) >= numStates {
		return
	}
	to := ev.New
	if ev.Inferred {
		to = tcp.TimeWait
	}
	o.transitions[ev.Old][to]++
	if ev.Reason != tracer.ReasonNone && int(ev.Reason) < len(o.closes) {
		o.closes[ev.Reason]++
	}
	if ev.Old == tcp.SynSent && ev.New != tcp.Established {
		o.fail(ev)
	}
	if !ev.DwellKnown {
		return
	}
	switch {
	case ev.Old == tcp.SynSent && ev.New == tcp.Established:
		o.handshake[0].observe(ev.Dwell)
	case ev.Old == tcp.SynRecv && ev.New == tcp.Established:
		o.handshake[1].observe(ev.Dwell)
	}
	if h := o.dwell[ev.Old]; h != nil {
		h.observe(ev.Dwell)
	}
}

// fail counts a connect that never got established, by reason and
// destination port, within the port cap.
func (o *Observer) fail(ev *tracer.Event) {
	k := failKey{ev.Reason, ev.Remote.Port()}
	if o.maxPorts <= 0 {
		k.port = 0
	} else if _, ok := o.ports[k.port]; !ok {
		if len(o.ports) >= o.maxPorts {
			o.otherPorts[ev.Reason]++
			return
		}
		o.ports[k.port] = struct{}{}
	}
	o.failed[k]++
}

// End takes a connection the table ended (table.Options.OnEnd): its
// lifetime counts when it was born in sight and got established.
func (o *Observer) End(r *table.Row) {
	if o.netns != nil && !o.netns(r.NetNS()) {
		return
	}
	born, known := r.Born()
	ended := r.Ended()
	switch r.State() {
	case tcp.Listen, tcp.SynSent, tcp.SynRecv, tcp.NewSynRecv:
		return // never a connection
	}
	if !known || ended < born {
		return
	}
	o.mu.Lock()
	o.lifetime.observe(time.Duration(ended - born))
	o.mu.Unlock()
}
