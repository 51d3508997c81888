package metrics

import (
	"cmp"
	"errors"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpstat/tcpstat/internal/container"
	"github.com/tcpstat/tcpstat/internal/livetable"
	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

const namespace = "tcpstat"

// By says which label the connections gauge is split by, beyond state.
type By string

const (
	ByNone  By = ""
	ByNetNS By = "netns" // label netns: the namespace inode
	ByPod   By = "pod"   // labels pod_namespace, pod (from the owner's cgroup and /var/log/pods)
)

// Table is what the collector reads the connections from
// (*livetable.Table).
type Table interface {
	View(func(*table.Table, livetable.Status))
}

// Options say what a Collector reads and how it labels.
type Options struct {
	Table    Table
	Observer *Observer
	// Stats reads the tracer's counters; nil when not tracing.
	Stats func() (tracer.Stats, error)
	// NetNS, when set, says which namespaces' rows count.
	NetNS func(inode uint32) bool
	// Match, when set, gives for each pass over the table, which it
	// holds still, which rows count. FilterForced then reads how many
	// sockets the filter judged without their identity
	// (filter.Gate.Forced).
	Match        func(*table.Table) func(*table.Row) bool
	FilterForced func() uint64
	// By splits the connections gauge; MaxSeries caps the label values
	// (the rows beyond the largest MaxSeries count as "other").
	By        By
	MaxSeries int
	// Identity names an owner's pod, for ByPod: by its cgroup id, or by its
	// pid when that is 0 (owners found by the /proc scan, of sockets older
	// than tcpstat); container.Resolver.Owner.
	Identity func(cgroup uint64, pid uint32) container.Identity
}

// Collector is a prometheus.Collector reading the table and the tracer at
// scrape time.
type Collector struct {
	opts Options

	connections, transitions, accepts, closes, failed               *prometheus.Desc
	handshake, acceptWait, stateDuration, lifetime                  *prometheus.Desc
	events, lost, recovered, socketsFull, stale, resyncs, reconcile *prometheus.Desc
	reconciled, tracing, netnsNotDumped, filterForced, inStorage    *prometheus.Desc
	expired, mismatched                                             *prometheus.Desc
}

// NewCollector returns a Collector; register it with a prometheus.Registry.
func NewCollector(opts Options) *Collector {
	if opts.MaxSeries <= 0 {
		opts.MaxSeries = 100
	}
	connLabels := []string{"state"}
	switch opts.By {
	case ByNetNS:
		connLabels = append(connLabels, "netns")
	case ByPod:
		connLabels = append(connLabels, "pod_namespace", "pod")
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
	}
	return &Collector{
		opts:           opts,
		connections:    d("connections", "TCP sockets in the connection table by state, at scrape time.", connLabels...),
		transitions:    d("transitions_total", "TCP state transitions by old and new state (to TIME_WAIT: the inferred timewait hand-off).", "from", "to"),
		accepts:        d("accepts_total", "Connections returned by accept()."),
		closes:         d("connection_closes_total", "Sockets leaving the connection, by how: timewait, done, reset, refused, timeout, abort, error.", "reason"),
		failed:         d("connect_failures_total", "Connects that never got established, by reason and destination port (ports beyond the cap count as \"other\").", "reason", "port"),
		handshake:      d("handshake_duration_seconds", "Time from SYN to ESTABLISHED: active opens (SYN_SENT) and passive ones (SYN_RECV).", "side"),
		acceptWait:     d("accept_queue_wait_seconds", "Time an established connection waited in the accept queue."),
		stateDuration:  d("state_duration_seconds", "Time spent in SYN_SENT, CLOSE_WAIT and FIN_WAIT2, observed when the socket left the state.", "state"),
		lifetime:       d("connection_lifetime_seconds", "Time from a connection's first transition to its end, for connections established and born while traced."),
		events:         d("tracer_events_total", "Events read from the tracer."),
		lost:           d("tracer_events_lost_total", "Events lost, by reason: ring_buffer_full, recursion (neither program ran), startup_buffer (the table's start-up buffer overflowed).", "reason"),
		recovered:      d("tracer_recursion_recovered_total", "Transitions that interrupted the first program on the same CPU and were taken by the second."),
		socketsFull:    d("tracer_sockets_map_full_total", "Transitions reported without owner and dwell: the socket did not fit the kernel's sockets map."),
		inStorage:      d("tracer_state_in_storage_total", "Sockets whose kernel state went to socket storage because the kernel's sockets map was full: nothing is lost, each costs more."),
		stale:          d("table_stale", "1 while the table misses events and waits for its resync."),
		resyncs:        d("table_resyncs_total", "Resyncs from a fresh dump after lost events."),
		reconcile:      d("table_reconciles_total", "sock_diag dumps merged into the table, the first included."),
		reconciled:     d("table_reconciled_rows_total", "Rows the periodic dumps changed (under a filter, those it selects): added, corrected, expired (timewait over), vanished (gone without an event).", "outcome"),
		mismatched:     d("table_transitions_mismatched_total", "Transitions whose old state was not their row's state: the row was wrong until then, an earlier change of its socket having never reached the table."),
		expired:        d("table_rows_expired_between_dumps_total", "Timewait rows removed between dumps when their timer ran out (under a filter, those it selects; 0 when polling): the kernel frees such sockets without a transition."),
		tracing:        d("tracing", "1 when events are traced, 0 when the table is kept from dumps alone."),
		filterForced:   d("filter_forced_sockets_total", "Sockets the filter judged without waiting for their local port or owner, its limits reached: their events may be counted or left out wrongly."),
		netnsNotDumped: d("netns_not_dumped", "Network namespaces the last dump could not dump (joining them needs CAP_SYS_ADMIN): their sockets older than tcpstat are missing."),
	}
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connections, c.transitions, c.accepts, c.closes, c.failed,
		c.handshake, c.acceptWait, c.stateDuration, c.lifetime, c.events, c.lost, c.recovered,
		c.socketsFull, c.inStorage, c.stale, c.resyncs, c.reconcile, c.reconciled, c.expired, c.mismatched, c.tracing, c.netnsNotDumped, c.filterForced} {
		ch <- d
	}
}

// Collect reads the table, the observer and the tracer.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st, tableStats := c.collectTable(ch)
	c.collectObserver(ch)
	c.collectHealth(ch, st, tableStats)
}

// groupKey is a row's label values beyond state: a namespace inode, or
// an owner's cgroup id or, without one, its pid (resolved to a pod after
// the table is unlocked).
type groupKey struct {
	id  uint64
	pid uint32
}

// collectTable counts rows by state (and group) with the table locked,
// and returns the tracker's status and the table's own counts.
func (c *Collector) collectTable(ch chan<- prometheus.Metric) (livetable.Status, table.Stats) {
	var status livetable.Status
	var stats table.Stats
	counts := map[groupKey]*[numStates]int{}
	c.opts.Table.View(func(tb *table.Table, st livetable.Status) {
		status, stats = st, tb.Stats()
		var match func(*table.Row) bool
		if c.opts.Match != nil {
			match = c.opts.Match(tb)
		}
		for i := range tb.Len() {
			r := tb.Row(i)
			if c.opts.NetNS != nil && !c.opts.NetNS(r.NetNS()) || match != nil && !match(r) {
				continue
			}
			var k groupKey
			switch c.opts.By {
			case ByNetNS:
				k.id = uint64(r.NetNS())
			case ByPod:
				if p, ok := r.Owner(); ok {
					k.id = p.Cgroup
					if k.id == 0 {
						k.pid = p.PID
					}
				}
			}
			n := counts[k]
			if n == nil {
				n = new([numStates]int)
				counts[k] = n
			}
			if s := int(r.State()); s < numStates {
				n[s]++
			}
		}
	})
	type series struct {
		labels []string
		n      [numStates]int
		total  int
	}
	merged := map[string]*series{}
	for k, n := range counts {
		labels := c.groupLabels(k)
		key := ""
		for _, l := range labels {
			key += l + "\x00"
		}
		s := merged[key]
		if s == nil {
			s = &series{labels: labels}
			merged[key] = s
		}
		for i, v := range n {
			s.n[i] += v
			s.total += v
		}
	}
	all := make([]*series, 0, len(merged))
	for _, s := range merged {
		all = append(all, s)
	}
	// The largest groups keep their own series; the rest add up to "other".
	slices.SortFunc(all, func(a, b *series) int { return cmp.Compare(b.total, a.total) })
	if c.opts.By != ByNone && len(all) > c.opts.MaxSeries {
		other := &series{}
		for _, s := range all[c.opts.MaxSeries:] {
			for i, v := range s.n {
				other.n[i] += v
			}
		}
		other.labels = make([]string, len(all[0].labels))
		for i := range other.labels {
			other.labels[i] = "other"
		}
		all = append(all[:c.opts.MaxSeries], other)
	}
	if len(all) == 0 {
		all = append(all, &series{labels: c.groupLabels(groupKey{})})
	}
	for _, s := range all {
		for _, state := range gaugeStates {
			ch <- prometheus.MustNewConstMetric(c.connections, prometheus.GaugeValue, float64(s.n[state]),
				append([]string{state.String()}, s.labels...)...)
		}
	}
	return status, stats
}

// gaugeStates are the states a table row can be in; each gets a series,
// zeros included, so that a rate or an alert sees the state go to zero.
var gaugeStates = []tcp.State{tcp.Established, tcp.SynSent, tcp.SynRecv, tcp.FinWait1, tcp.FinWait2,
	tcp.TimeWait, tcp.CloseWait, tcp.LastAck, tcp.Listen, tcp.Closing}

// groupLabels are the label values of a group beyond state.
func (c *Collector) groupLabels(k groupKey) []string {
	switch c.opts.By {
	case ByNetNS:
		return []string{strconv.FormatUint(k.id, 10)}
	case ByPod:
		var id container.Identity
		if k != (groupKey{}) && c.opts.Identity != nil {
			id = c.opts.Identity(k.id, k.pid)
		}
		return []string{id.PodNamespace, podLabel(id)}
	}
	return nil
}

// podLabel is the pod's name, or its UID where /var/log/pods is not
// mounted; "" for the host.
func podLabel(id container.Identity) string {
	if id.PodName != "" {
		return id.PodName
	}
	return id.PodUID
}

func (c *Collector) collectObserver(ch chan<- prometheus.Metric) {
	o := c.opts.Observer
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for from := range o.transitions {
		for to, n := range o.transitions[from] {
			if n > 0 {
				ch <- prometheus.MustNewConstMetric(c.transitions, prometheus.CounterValue, float64(n),
					tcp.State(from).String(), tcp.State(to).String())
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(c.accepts, prometheus.CounterValue, float64(o.accepts))
	for r := tracer.ReasonTimeWait; r <= tracer.ReasonError; r++ {
		ch <- prometheus.MustNewConstMetric(c.closes, prometheus.CounterValue, float64(o.closes[r]), r.String())
	}
	for k, n := range o.failed {
		port := strconv.Itoa(int(k.port))
		if c.opts.Observer.maxPorts <= 0 {
			port = ""
		}
		ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(n), k.reason.String(), port)
	}
	for r, n := range o.otherPorts {
		ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(n), r.String(), "other")
	}
	hist := func(d *prometheus.Desc, h *histogram, labels ...string) {
		ch <- prometheus.MustNewConstHistogram(d, h.n, h.sum, h.cumulative(), labels...)
	}
	hist(c.handshake, o.handshake[0], "active")
	hist(c.handshake, o.handshake[1], "passive")
	hist(c.acceptWait, o.acceptWait)
	for _, s := range dwellStates {
		hist(c.stateDuration, o.dwell[s], s.String())
	}
	hist(c.lifetime, o.lifetime)
}

func (c *Collector) collectHealth(ch chan<- prometheus.Metric, st livetable.Status, tableStats table.Stats) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, on bool) {
		v := 0.0
		if on {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	gauge(c.tracing, st.Tracing)
	notDumped := 0
	var nsErr *snapshot.NetNSError
	if errors.As(st.NetNSErr, &nsErr) {
		notDumped = nsErr.Failed
	}
	ch <- prometheus.MustNewConstMetric(c.netnsNotDumped, prometheus.GaugeValue, float64(notDumped))
	gauge(c.stale, st.Stale)
	counter(c.events, st.Events)
	counter(c.resyncs, st.Resyncs)
	counter(c.reconcile, st.Reconciles)
	counter(c.reconciled, uint64(st.Total.Added), "added")
	counter(c.reconciled, uint64(st.Total.Corrected), "corrected")
	counter(c.reconciled, uint64(st.Total.Expired), "expired")
	counter(c.reconciled, uint64(st.Total.Vanished), "vanished")
	counter(c.expired, st.Expired)
	counter(c.mismatched, tableStats.Mismatched)
	if c.opts.FilterForced != nil {
		counter(c.filterForced, c.opts.FilterForced())
	}
	if c.opts.Stats == nil {
		return
	}
	ts, err := c.opts.Stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.lost, err)
		return
	}
	counter(c.lost, ts.RingBufferFull, "ring_buffer_full")
	counter(c.lost, ts.RecursionLost(), "recursion")
	// The status counts the tracer's losses and the start-up buffer's.
	buffered := uint64(0)
	if st.Lost > ts.Lost() {
		buffered = st.Lost - ts.Lost()
	}
	counter(c.lost, buffered, "startup_buffer")
	counter(c.recovered, ts.Recovered)
	counter(c.socketsFull, ts.SocketsFull)
	counter(c.inStorage, ts.InStorage)
}
