package metrics

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tcpstat/tcpstat/internal/container"
	"github.com/tcpstat/tcpstat/internal/livetable"
	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// fixedTable is a table built from made-up events.
type fixedTable struct{ tb *table.Table }

func (f fixedTable) View(fn func(*table.Table, livetable.Status)) {
	fn(f.tb, livetable.Status{Tracing: true})
}

// listeners makes n listeners in each namespace, owned by cgroup netns+1.
func listeners(counts map[uint32]int) *table.Table {
	tb := table.New(table.Options{})
	cookie := uint64(1)
	for ns, n := range counts {
		for i := range n {
			tb.Apply(&tracer.Event{Kind: tracer.Transition, Time: cookie, Cookie: cookie, NetNS: ns,
				Local: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(1000+i)),
				Old:   tcp.Close, New: tcp.Listen, Owner: tracer.Process{PID: 1, Cgroup: uint64(ns) + 1}, OwnerKnown: true})
			cookie++
		}
	}
	return tb
}

func TestConnectionsByNetNSCapped(t *testing.T) {
	tb := listeners(map[uint32]int{10: 5, 20: 3, 30: 2, 40: 1})
	c := NewCollector(Options{Table: fixedTable{tb}, By: ByNetNS, MaxSeries: 2})
	want := map[string]float64{"netns=10": 5, "netns=20": 3, "netns=other": 3}
	if diff := cmp.Diff(want, listening(t, c)); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestConnectionsByPod(t *testing.T) {
	tb := listeners(map[uint32]int{10: 2, 20: 1, 30: 1})
	// A listener older than tcpstat: its owner, found by the /proc scan,
	// has a pid and no cgroup id.
	tb.Reconcile(&table.Dump{Start: 100, End: 100, Owners: true, Sockets: []snapshot.Socket{
		{Proto: snapshot.TCP, State: tcp.Listen, Local: netip.MustParseAddrPort("127.0.0.1:2000"), Remote: netip.MustParseAddrPort("0.0.0.0:0"),
			Cookie: 99, Inode: 99, Owners: []snapshot.Owner{{PID: 4242, Comm: "cart"}}},
	}})
	ids := map[groupKey]container.Identity{
		{id: 11}:    {PodUID: "0b5a7c8e-1d2f-4a6b-9c3d-5e7f8a9b0c1d", PodNamespace: "shop", PodName: "cart-0"},
		{pid: 4242}: {PodUID: "0b5a7c8e-1d2f-4a6b-9c3d-5e7f8a9b0c1d", PodNamespace: "shop", PodName: "cart-0"},
		{id: 21}:    {PodUID: "11111111-2222-3333-4444-555555555555"}, // no /var/log/pods: the UID stands in
	}
	c := NewCollector(Options{Table: fixedTable{tb}, By: ByPod, Identity: func(id uint64, pid uint32) container.Identity {
		if id != 0 {
			pid = 0
		}
		return ids[groupKey{id, pid}]
	}})
	want := map[string]float64{
		"pod=cart-0,pod_namespace=shop":                           3,
		"pod=11111111-2222-3333-4444-555555555555,pod_namespace=": 1,
		"pod=,pod_namespace=":                                     1, // a host process
	}
	if diff := cmp.Diff(want, listening(t, c)); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

// listening gathers c and returns the LISTEN series of
// tcpstat_connections by their other labels; each state has a series.
func listening(t *testing.T, c *Collector) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, f := range gather(t, c) {
		if f.GetName() != "tcpstat_connections" {
			continue
		}
		states := map[string]bool{}
		for _, m := range f.GetMetric() {
			var key []string
			state := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" {
					state = l.GetValue()
					continue
				}
				key = append(key, l.GetName()+"="+l.GetValue())
			}
			states[state] = true
			if state == "LISTEN" {
				out[strings.Join(key, ",")] = m.GetGauge().GetValue()
			}
		}
		if len(states) != len(gaugeStates) {
			t.Errorf("%d states in tcpstat_connections, want %d", len(states), len(gaugeStates))
		}
	}
	return out
}

// gather registers c alone in a pedantic registry and gathers it.
func gather(t *testing.T, c *Collector) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return families
}

func TestHistogramBuckets(t *testing.T) {
	h := newHistogram([]float64{0.001, 0.01})
	for _, d := range []time.Duration{500 * time.Microsecond, time.Millisecond, 5 * time.Millisecond, time.Second} {
		h.observe(d)
	}
	want := map[float64]uint64{0.001: 2, 0.01: 3} // le is inclusive; +Inf is the count
	if diff := cmp.Diff(want, h.cumulative()); diff != "" || h.n != 4 {
		t.Errorf("n %d (-want +got)\n%s", h.n, diff)
	}
}

func TestFailedConnectPortCap(t *testing.T) {
	o := NewObserver(ObserverOptions{MaxPorts: 1})
	for _, port := range []uint16{80, 443, 80} {
		o.Event(&tracer.Event{Kind: tracer.Transition, Old: tcp.SynSent, New: tcp.Close, Reason: tracer.ReasonRefused,
			Remote: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port)})
	}
	if got := o.failed[failKey{tracer.ReasonRefused, 80}]; got != 2 {
		t.Errorf("port 80: %d, want 2", got)
	}
	if got := o.otherPorts[tracer.ReasonRefused]; got != 1 {
		t.Errorf("other: %d, want 1", got)
	}
}

// A transition that does not start from its row's state is counted: the
// row was wrong until then.
func TestMismatchedTransitions(t *testing.T) {
	tb := listeners(map[uint32]int{10: 1})
	mismatched := func() float64 {
		t.Helper()
		for _, f := range gather(t, NewCollector(Options{Table: fixedTable{tb}})) {
			if f.GetName() == "tcpstat_table_transitions_mismatched_total" {
				return f.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatal("no tcpstat_table_transitions_mismatched_total")
		return 0
	}
	if n := mismatched(); n != 0 {
		t.Errorf("%v mismatched transitions after LISTEN from CLOSE, want 0", n)
	}
	local := netip.MustParseAddrPort("127.0.0.1:1000")
	remote := netip.MustParseAddrPort("127.0.0.1:40000")
	// A connection whose SYN_SENT → ESTABLISHED never reached the table.
	tb.Apply(&tracer.Event{Kind: tracer.Transition, Time: 20, Cookie: 20, NetNS: 10, Local: local, Remote: remote, Old: tcp.Close, New: tcp.SynSent})
	tb.Apply(&tracer.Event{Kind: tracer.Transition, Time: 21, Cookie: 20, NetNS: 10, Local: local, Remote: remote, Old: tcp.Established, New: tcp.FinWait1})
	if n := mismatched(); n != 1 {
		t.Errorf("%v mismatched transitions after ESTABLISHED → FIN_WAIT1 on a row in SYN_SENT, want 1", n)
	}
}
