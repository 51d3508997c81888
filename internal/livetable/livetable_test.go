package livetable

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// queue is an in-memory event source, as a replayed recording would be.
type queue struct {
	events   chan item
	lost     atomic.Uint64
	corrupt  atomic.Uint64
	deadline atomic.Int64
	flush    chan struct{}
}

// item is what one Read returns: an event, or an error.
type item struct {
	ev  tracer.Event
	err error
}

func newQueue() *queue {
	return &queue{events: make(chan item, 100), flush: make(chan struct{}, 1)}
}

func (q *queue) push(ev tracer.Event) { q.events <- item{ev: ev} }
func (q *queue) fail(err error)       { q.events <- item{err: err} }

func (it item) read(ev *tracer.Event) error {
	if it.err != nil {
		return it.err
	}
	*ev = it.ev
	return nil
}

// Read behaves as the tracer's: after Flush, what is queued, then ErrFlushed.
func (q *queue) Read(ev *tracer.Event) error {
	select {
	case it := <-q.events:
		return it.read(ev)
	default:
	}
	wait := time.Until(time.Unix(0, q.deadline.Load()))
	select {
	case it := <-q.events:
		return it.read(ev)
	case <-q.flush:
		select {
		case it := <-q.events:
			// Still owed once the queue is empty; a Flush that came in
			// the meantime already stands for it (flushes coalesce, as
			// the tracer's do), and blocking here would hang the reader.
			select {
			case q.flush <- struct{}{}:
			default:
			}
			return it.read(ev)
		default:
			return tracer.ErrFlushed
		}
	case <-time.After(wait):
		return os.ErrDeadlineExceeded
	}
}

func (q *queue) Flush() error {
	select {
	case q.flush <- struct{}{}:
	default:
	}
	return nil
}

func (q *queue) SetDeadline(d time.Time) { q.deadline.Store(d.UnixNano()) }
func (q *queue) Stats() (tracer.Stats, error) {
	return tracer.Stats{RingBufferFull: q.lost.Load(), Corrupt: q.corrupt.Load()}, nil
}

var (
	local  = netip.MustParseAddrPort("127.0.0.1:40000")
	remote = netip.MustParseAddrPort("127.0.0.1:8080")
)

func transition(cookie uint64, old, new tcp.State) tracer.Event {
	return tracer.Event{Kind: tracer.Transition, Time: tracer.Now(), Cookie: cookie, NetNS: 1,
		Local: local, Remote: remote, Old: old, New: new}
}

type row struct {
	Cookie uint64
	State  tcp.State
}

func rows(tr *Table) (out []row, st Status) {
	tr.View(func(tb *table.Table, s Status) {
		st = s
		for i := range tb.Len() {
			out = append(out, row{tb.Row(i).Cookie(), tb.Row(i).State()})
		}
	})
	return out, st
}

// waitTimeout bounds every wait for an effect: generous, for a loaded
// host or a kernel under emulation.
const waitTimeout = 30 * time.Second

// waitFor polls the table until cond holds, and fails the test if it does
// not within waitTimeout.
func waitFor(t *testing.T, tr *Table, cond func([]row, Status) bool) ([]row, Status) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		r, st := rows(tr)
		if cond(r, st) {
			return r, st
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: rows %v, status %+v", waitTimeout, r, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// barrier calls tr.Barrier with waitTimeout, so that a barrier that hangs
// fails the test instead of timing out the whole binary.
func barrier(tr *Table) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	return tr.Barrier(ctx)
}

// TestStartOrder checks that events made while the first dump runs are
// held back and applied after it: the socket the dump lists as
// ESTABLISHED closes during the dump and must not be left behind.
func TestStartOrder(t *testing.T) {
	q := newQueue()
	dumps := 0
	dump := func(context.Context, bool) ([]snapshot.Socket, error) {
		dumps++
		if dumps == 1 {
			q.push(transition(1, tcp.Established, tcp.Close))
			q.push(transition(2, tcp.Close, tcp.SynSent))
			return []snapshot.Socket{{Proto: snapshot.TCP, State: tcp.Established, Cookie: 1, Local: local, Remote: remote}}, nil
		}
		return []snapshot.Socket{{Proto: snapshot.TCP, State: tcp.SynSent, Cookie: 2, Local: local, Remote: remote}}, nil
	}
	tr, err := Start(context.Background(), Config{Events: q, Dump: dump, NetNS: 1, Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	got, st := waitFor(t, tr, func(_ []row, st Status) bool { return st.Events == 2 && !st.OwnersPending })
	if diff := cmp.Diff([]row{{2, tcp.SynSent}}, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	// Two reconciles: start-up's, and the owner scan right after it.
	if st.Stale || st.Reconciles != 2 || !st.Tracing {
		t.Errorf("status %+v: want tracing, not stale, two reconciles", st)
	}

	// A loss makes the table stale until a dump begun after it is merged.
	q.lost.Store(3)
	_, st = waitFor(t, tr, func(_ []row, st Status) bool { return st.Resyncs == 1 })
	if st.Stale || st.Lost != 3 {
		t.Errorf("after the resync: status %+v, want 3 lost, not stale", st)
	}
}

// TestPolling builds the table from real dumps, without a tracer: a
// loopback listener and a connection to it appear with their owner.
func TestPolling(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the owner scan reads every process's descriptors")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tr, err := Start(context.Background(), Config{Dump: snapshot.DumpTCP, Every: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	want := map[string]tcp.State{
		ln.Addr().String() + " 0.0.0.0:0":                 tcp.Listen,
		c.LocalAddr().String() + " " + ln.Addr().String(): tcp.Established,
	}
	tr.View(func(tb *table.Table, st Status) {
		if st.Tracing || st.Reconciles != 1 {
			t.Errorf("status %+v: want polling after one dump", st)
		}
		found := 0
		for i := range tb.Len() {
			r := tb.Row(i)
			key := r.Local().String() + " " + r.Remote().String()
			s, ok := want[key]
			if !ok {
				continue
			}
			found++
			o, known := r.Owner()
			if r.State() != s || !known || o.PID != uint32(os.Getpid()) {
				t.Errorf("%s: state %v owner %+v (known %v), want %v owned by pid %d", key, r.State(), o, known, s, os.Getpid())
			}
		}
		if found != len(want) {
			t.Errorf("found %d of the test's %d sockets", found, len(want))
		}
	})
	// Closing the client side shows up at the next dump. The server end
	// was never accepted: it stays in CLOSE_WAIT. The client's socket,
	// orphaned, keeps this process as its former owner: as a timewait
	// socket in FIN_WAIT2, or as the full socket in FIN_WAIT2 when the ACK
	// of its FIN found it locked in close(2); or it has no row when the
	// timewait table was full (the kernel counts it). firstCloser asks the
	// kernel which.
	overflows := timeWaitOverflows(t)
	c.Close()
	client := c.LocalAddr().String() + " " + ln.Addr().String()
	server := ln.Addr().String() + " " + c.LocalAddr().String()
	type end struct {
		State           tcp.State
		TimeWait        bool
		Current, Former uint32
	}
	ends := func() map[string]end {
		out := map[string]end{}
		tr.View(func(tb *table.Table, _ Status) {
			for i := range tb.Len() {
				r := tb.Row(i)
				k := r.Local().String() + " " + r.Remote().String()
				if k != client && k != server {
					continue
				}
				e := end{State: r.State(), TimeWait: r.TimeWait()}
				if o, ok := r.Owner(); ok {
					e.Current = o.PID
				}
				if o, ok := r.FormerOwner(); ok {
					e.Former = o.PID
				}
				out[k] = e
			}
		})
		return out
	}
	me := uint32(os.Getpid())
	kind := firstCloser(t, c.LocalAddr().String(), ln.Addr().String(), overflows)
	after := map[string]end{server: {State: tcp.CloseWait}} // in the accept queue: no process holds it
	switch kind {
	case timeWaitSocket:
		after[client] = end{State: tcp.FinWait2, TimeWait: true, Former: me}
	case fullSocket:
		after[client] = end{State: tcp.FinWait2, Former: me}
	}
	deadline := time.Now().Add(waitTimeout)
	for got := ends(); ; got = ends() {
		diff := cmp.Diff(after, got)
		if diff == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the client's close, the client's end being %v (-want +got):\n%s", kind, diff)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBarrier: once Barrier returns, every event queued before it is in
// the table, without waiting for anything else.
func TestBarrier(t *testing.T) {
	q := newQueue()
	dump := func(context.Context, bool) ([]snapshot.Socket, error) { return nil, nil }
	tr, err := Start(context.Background(), Config{Events: q, Dump: dump, NetNS: 1, Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for cookie := uint64(1); cookie <= 50; cookie++ {
		q.push(transition(cookie, tcp.Close, tcp.SynSent))
	}
	if err := barrier(tr); err != nil {
		t.Fatal(err)
	}
	if r, st := rows(tr); len(r) != 50 || st.Events != 50 {
		t.Errorf("after the barrier: %d rows, %d events; want 50 and 50", len(r), st.Events)
	}
}

// TestBarrierAfterCancel: a caller that stops on Start's context (a
// signal) still applies the events left in the source, as record does
// when it stops: events are read until Close, so a Barrier after the
// cancel applies every event queued before it.
func TestBarrierAfterCancel(t *testing.T) {
	q := newQueue()
	dump := func(context.Context, bool) ([]snapshot.Socket, error) { return nil, nil }
	ctx, cancel := context.WithCancel(context.Background())
	var seen atomic.Uint64
	tr, err := Start(ctx, Config{Events: q, Dump: dump, NetNS: 1, Every: time.Hour, OnEvent: func(*tracer.Event) { seen.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	cancel()
	// The last events, still in the ring buffer when the signal came.
	q.push(transition(1, tcp.Close, tcp.SynSent))
	q.push(transition(1, tcp.SynSent, tcp.Close))
	q.push(transition(2, tcp.Close, tcp.SynSent))
	if err := barrier(tr); err != nil {
		t.Fatalf("barrier after the context ended: %v", err)
	}
	if got, st := rows(tr); seen.Load() != 3 || st.Events != 3 || !cmp.Equal(got, []row{{2, tcp.SynSent}}) {
		t.Errorf("after the barrier: %d events handed on, status %d events, rows %v; want 3, 3 and [{2 SYN_SENT}]", seen.Load(), st.Events, got)
	}
	if _, st := rows(tr); st.EventsEnded || st.Err != nil {
		t.Errorf("status %+v: want still reading, no error", st)
	}
	tr.Close()
	if err := barrier(tr); !errors.Is(err, ErrEventsEnded) {
		t.Errorf("barrier after Close: %v, want ErrEventsEnded", err)
	}
}

// ring is an event source that, like the ring buffer's reader, gives
// events only when flushed: a flush wakes Read, which returns the events
// there at that moment, then ErrFlushed. Flushes that come before Read
// wakes make one, as the reader's eventfd does. Once held, Read stops
// twice for the test, before the next ErrFlushed and at the Read after it.
type ring struct {
	mu       sync.Mutex
	events   []tracer.Event
	hold     bool
	wake     chan struct{}
	flushes  chan struct{} // one per Flush, for the test
	stopped  chan struct{}
	resume   chan struct{}
	deadline atomic.Int64
	// Of the reading goroutine.
	owed    int
	flushed bool
	stops   int
}

func newRing() *ring {
	return &ring{wake: make(chan struct{}, 1), flushes: make(chan struct{}, 10), stopped: make(chan struct{}), resume: make(chan struct{})}
}

func (r *ring) push(ev tracer.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *ring) holdNext() {
	r.mu.Lock()
	r.hold = true
	r.mu.Unlock()
}

// stop waits for the test once held.
func (r *ring) stop() {
	r.mu.Lock()
	if r.hold && r.stops == 0 {
		r.stops = 2
		r.hold = false
	}
	r.mu.Unlock()
	if r.stops > 0 {
		r.stops--
		r.stopped <- struct{}{}
		<-r.resume
	}
}

func (r *ring) Read(ev *tracer.Event) error {
	if r.stops == 1 {
		r.stop()
	}
	for {
		switch {
		case r.owed > 0:
			r.mu.Lock()
			*ev, r.events = r.events[0], r.events[1:]
			r.mu.Unlock()
			r.owed--
			return nil
		case r.flushed:
			r.stop()
			r.flushed = false
			return tracer.ErrFlushed
		}
		select {
		case <-r.wake:
			r.mu.Lock()
			r.owed, r.flushed = len(r.events), true
			r.mu.Unlock()
		case <-time.After(time.Until(time.Unix(0, r.deadline.Load()))):
			return os.ErrDeadlineExceeded
		}
	}
}

func (r *ring) Flush() error {
	r.flushes <- struct{}{}
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

func (r *ring) SetDeadline(d time.Time)      { r.deadline.Store(d.UnixNano()) }
func (r *ring) Stats() (tracer.Stats, error) { return tracer.Stats{}, nil }

// TestBarrierAfterAbandoned: a Barrier whose context ended (a reconcile's,
// when the command stops) leaves its flush to the reader; the next Barrier
// must not take that flush's ErrFlushed for its own and return before the
// events queued before it are applied.
func TestBarrierAfterAbandoned(t *testing.T) {
	r := newRing()
	dump := func(context.Context, bool) ([]snapshot.Socket, error) { return nil, nil }
	tr, err := Start(context.Background(), Config{Events: r, Dump: dump, NetNS: 1, Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := tr.WaitOwners(ctx); err != nil { // after the first reconcile's Barrier
		t.Fatal(err)
	}
	<-r.flushes

	// The reader wakes for the first Barrier's flush, finds nothing, and
	// is about to say so when that Barrier gives up.
	r.holdNext()
	first, giveUp := context.WithCancel(context.Background())
	abandoned := make(chan error, 1)
	go func() { abandoned <- tr.Barrier(first) }()
	<-r.flushes
	<-r.stopped
	giveUp()
	if err := <-abandoned; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned barrier: %v, want context.Canceled", err)
	}

	r.push(transition(1, tcp.Close, tcp.SynSent))
	type result struct {
		err  error
		rows []row
	}
	second := make(chan result, 1)
	go func() {
		err := barrier(tr)
		got, _ := rows(tr)
		second <- result{err, got}
	}()
	<-r.flushes
	// The first flush's ErrFlushed comes now; the reader stops before
	// reading on.
	r.resume <- struct{}{}
	<-r.stopped
	var res result
	select {
	case res = <-second:
		r.resume <- struct{}{}
	case <-r.flushes: // flushing again, as it must
		r.resume <- struct{}{}
		res = <-second
	}
	if res.err != nil || !cmp.Equal(res.rows, []row{{1, tcp.SynSent}}) {
		t.Errorf("barrier after an abandoned one: %v, rows %v; want no error, [{1 SYN_SENT}]", res.err, res.rows)
	}
}

func startQueue(t *testing.T, q *queue, dump DumpFunc) *Table {
	t.Helper()
	if dump == nil {
		dump = func(context.Context, bool) ([]snapshot.Socket, error) { return nil, nil }
	}
	tr, err := Start(context.Background(), Config{Events: q, Dump: dump, NetNS: 1, Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

// TestCorruptSample: a sample the source could not decode (skipped and
// counted by the source, as the tracer does) is a lost event: the events
// after it are applied, the barrier works, the status shows it, and the
// table resyncs.
func TestCorruptSample(t *testing.T) {
	q := newQueue()
	tr := startQueue(t, q, nil)
	q.push(transition(1, tcp.Close, tcp.SynSent))
	q.corrupt.Add(1)
	q.push(transition(2, tcp.Close, tcp.SynSent))
	if err := barrier(tr); err != nil {
		t.Fatalf("barrier after a corrupt sample: %v", err)
	}
	got, st := rows(tr)
	slices.SortFunc(got, func(a, b row) int { return int(a.Cookie) - int(b.Cookie) })
	if diff := cmp.Diff([]row{{1, tcp.SynSent}, {2, tcp.SynSent}}, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	if st.Events != 2 || st.Err != nil || st.EventsEnded {
		t.Errorf("status %+v: want 2 events, still reading", st)
	}
	_, st = waitFor(t, tr, func(_ []row, st Status) bool { return st.Resyncs == 1 })
	if st.Lost != 1 || st.Corrupt != 1 || st.Stale {
		t.Errorf("after the resync: status %+v, want 1 lost, 1 corrupt, not stale", st)
	}
}

// TestSourceEnds: once the source has ended, the barrier says so at once,
// and keeps saying so; the table keeps what it had.
func TestSourceEnds(t *testing.T) {
	q := newQueue()
	tr := startQueue(t, q, nil)
	q.push(transition(1, tcp.Close, tcp.SynSent))
	q.fail(tracer.ErrClosed)
	for i := range 2 {
		if err := barrier(tr); !errors.Is(err, ErrEventsEnded) {
			t.Fatalf("barrier %d after the source ended: %v, want ErrEventsEnded", i+1, err)
		}
	}
	got, st := rows(tr)
	if diff := cmp.Diff([]row{{1, tcp.SynSent}}, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	if !st.EventsEnded || st.Err != nil {
		t.Errorf("status %+v: want events ended, no error", st)
	}
}

// TestSourceFails: an error other than the source's end stops reading;
// the status and the barrier say why.
func TestSourceFails(t *testing.T) {
	broken := errors.New("epoll wait: bad file descriptor")
	q := newQueue()
	tr := startQueue(t, q, nil)
	q.push(transition(1, tcp.Close, tcp.SynSent))
	q.fail(broken)
	if err := barrier(tr); !errors.Is(err, ErrEventsEnded) || !errors.Is(err, broken) {
		t.Errorf("barrier: %v, want ErrEventsEnded and the source's error", err)
	}
	got, st := rows(tr)
	if diff := cmp.Diff([]row{{1, tcp.SynSent}}, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	if !st.EventsEnded || !errors.Is(st.Err, broken) {
		t.Errorf("status %+v: want events ended with an error wrapping %q", st, broken)
	}
}

// TestPartialOwnerScan: a scan that could not read some processes is
// reported, and the sockets it found are used.
func TestPartialOwnerScan(t *testing.T) {
	dump := func(context.Context, bool) ([]snapshot.Socket, error) {
		return []snapshot.Socket{{Proto: snapshot.TCP, State: tcp.Listen, Cookie: 7, Local: local}}, &snapshot.PartialError{Unreadable: 3}
	}
	tr, err := Start(context.Background(), Config{Dump: dump, NetNS: 1, Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	got, st := rows(tr)
	if diff := cmp.Diff([]row{{7, tcp.Listen}}, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	if st.OwnersUnreadable != 3 || st.DumpErr != nil {
		t.Errorf("status %+v: want 3 unreadable processes, no dump error", st)
	}
}

// TestOwnersKnown: when tracing, the owner scan follows start-up, and the
// channel closes when it is done.
func TestOwnersKnown(t *testing.T) {
	release := make(chan struct{})
	dump := func(ctx context.Context, owners bool) ([]snapshot.Socket, error) {
		if owners {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return nil, nil
	}
	tr := startQueue(t, newQueue(), dump)
	select {
	case <-tr.OwnersKnown():
		t.Fatal("owners known before the owner scan ran")
	default:
	}
	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := tr.WaitOwners(ctx); err != nil {
		t.Fatal(err)
	}
	if _, st := rows(tr); st.OwnersPending {
		t.Errorf("status %+v: owners known, still pending", st)
	}
}

// TestPeriodStretchesWithDumpLoad: with DumpLoad, a dump that took longer
// than that share of Every pushes the next periodic reconcile back.
func TestPeriodStretchesWithDumpLoad(t *testing.T) {
	for _, tc := range []struct {
		load       float64
		last, want time.Duration
	}{
		{0, time.Second, 2 * time.Second},
		{0.02, 10 * time.Millisecond, 2 * time.Second},
		{0.02, 40 * time.Millisecond, 2 * time.Second},
		{0.02, 200 * time.Millisecond, 10 * time.Second},
		{0.05, 200 * time.Millisecond, 4 * time.Second},
		// A share so small that the stretched period would overflow a
		// Duration (negative: every 2 s, the opposite of what was asked).
		{1e-9, 10 * time.Second, time.Hour},
		{0.0001, 1 * time.Second, time.Hour},
	} {
		tb := &Table{cfg: Config{Every: 2 * time.Second, DumpLoad: tc.load}}
		tb.st.LastDump = tc.last
		if got := tb.period(); got != tc.want {
			t.Errorf("DumpLoad %v, last dump %v: next reconcile after %v, want %v", tc.load, tc.last, got, tc.want)
		}
	}
}

// TestDumpLoadSpacesReconciles runs two polling tables side by side on a
// dump that takes 50 ms: without DumpLoad one reconciles every 20 ms
// after each dump; with DumpLoad 0.01 the other waits 5 s after its
// first periodic one, so it has done at most two when the first has
// done six.
func TestDumpLoadSpacesReconciles(t *testing.T) {
	slow := func(ctx context.Context, _ bool) ([]snapshot.Socket, error) {
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
		}
		return nil, nil
	}
	reconciles := func(tb *Table) uint64 {
		var n uint64
		tb.View(func(_ *table.Table, st Status) { n = st.Reconciles })
		return n
	}
	free, err := Start(context.Background(), Config{Dump: slow, Every: 20 * time.Millisecond, NetNS: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer free.Close()
	loaded, err := Start(context.Background(), Config{Dump: slow, Every: 20 * time.Millisecond, NetNS: 1, DumpLoad: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Close()
	deadline := time.Now().Add(waitTimeout)
	for reconciles(free) < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("%d reconciles within %v", reconciles(free), waitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := reconciles(loaded); n > 2 {
		t.Errorf("with DumpLoad 0.01 and 50 ms dumps: %d reconciles while the other table did 6, want at most 2", n)
	}
}

// idQueue is a queue that says whether its events carry synthetic ids, as
// the tracer does.
type idQueue struct {
	*queue
	synthetic bool
}

func (q idQueue) SyntheticIDs() bool { return q.synthetic }

// TestWalkedReconciles: with Walk and Owners, every dump is walked, the
// owner scan's map attached as sockets come; a walk that fails leaves the
// table as it was and is retried. Events with synthetic ids have every
// dump after start-up read with Dump.
func TestWalkedReconciles(t *testing.T) {
	listener := snapshot.Socket{Proto: snapshot.TCP, State: tcp.Listen, Cookie: 7, Inode: 70, Local: local}
	for _, synthetic := range []bool{false, true} {
		var walks, dumps atomic.Int32
		var failWalk atomic.Bool
		walk := func(ctx context.Context, fn func(*snapshot.Socket)) error {
			walks.Add(1)
			s := listener
			fn(&s)
			if failWalk.Load() {
				return errors.New("netlink: a test's failure")
			}
			return nil
		}
		owners := snapshot.NewOwnerIndex(map[uint64][]snapshot.Owner{70: {{PID: 42, Comm: "srv"}}})
		partial := &snapshot.PartialError{Unreadable: 2}
		dump := func(_ context.Context, withOwners bool) ([]snapshot.Socket, error) {
			dumps.Add(1)
			socks := []snapshot.Socket{listener}
			if withOwners {
				snapshot.Attach(socks, owners)
				return socks, partial
			}
			return socks, nil
		}
		scans := func(context.Context) (*snapshot.OwnerIndex, error) { return owners, partial }
		q := idQueue{newQueue(), synthetic}
		tr, err := Start(context.Background(), Config{Events: q, Dump: dump, Walk: walk, Owners: scans, NetNS: 1, Every: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		if err := tr.WaitOwners(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		var owner tracer.Process
		tr.View(func(tb *table.Table, _ Status) {
			if r := tb.Lookup(7); r != nil {
				owner, _ = r.Owner()
			}
		})
		_, st := waitFor(t, tr, func(_ []row, st Status) bool { return st.Reconciles >= 3 })
		if owner.PID != 42 || st.OwnersUnreadable != 2 {
			t.Errorf("synthetic ids %v: listener's owner %+v, %d processes unreadable; want pid 42 from the scan, 2", synthetic, owner, st.OwnersUnreadable)
		}
		if synthetic && (walks.Load() != 1 || dumps.Load() < 2) {
			t.Errorf("synthetic ids: %d walks, %d dumps; want only start-up walked", walks.Load(), dumps.Load())
		}
		if !synthetic && dumps.Load() != 0 {
			t.Errorf("%d dumps read with Dump, want every one walked", dumps.Load())
		}
		if !synthetic {
			failWalk.Store(true)
			_, st = waitFor(t, tr, func(_ []row, st Status) bool { return st.DumpErr != nil })
			if got, _ := rows(tr); !slices.Equal(got, []row{{7, tcp.Listen}}) {
				t.Errorf("after a failed walk: rows %v, want the listener still", got)
			}
			failWalk.Store(false)
			waitFor(t, tr, func(_ []row, st Status) bool { return st.DumpErr == nil })
		}
		tr.Close()
	}
}

// TestWalkedInBatches: a walk of several batches (the last one short) is
// merged whole, at start-up and in the owner reconcile that follows it,
// each socket with the owner the scan found for it.
func TestWalkedInBatches(t *testing.T) {
	const n = 2*walkBatch + 7
	socks := make([]snapshot.Socket, n)
	held := map[uint64][]snapshot.Owner{}
	for i := range socks {
		socks[i] = snapshot.Socket{Proto: snapshot.TCP, State: tcp.Established, Cookie: uint64(i + 1), Inode: uint64(1000 + i),
			Local: local, Remote: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), uint16(1024+i))}
		held[socks[i].Inode] = []snapshot.Owner{{PID: uint32(100 + i%3), Comm: "srv"}}
	}
	walk := func(ctx context.Context, fn func(*snapshot.Socket)) error {
		for i := range socks {
			s := socks[i] // fn must not keep s: hand it a copy that changes after
			fn(&s)
			s.Cookie = 0
		}
		return nil
	}
	scans := func(context.Context) (*snapshot.OwnerIndex, error) { return snapshot.NewOwnerIndex(held), nil }
	dump := func(context.Context, bool) ([]snapshot.Socket, error) {
		t.Error("a dump read whole, want every dump walked")
		return nil, nil
	}
	tr := startWithOwners(t, Config{Events: idQueue{newQueue(), false}, Dump: dump, Walk: walk, Owners: scans, NetNS: 1, Every: time.Hour})
	tr.View(func(tb *table.Table, st Status) {
		if tb.Len() != n || st.Reconciles != 2 {
			t.Errorf("%d rows after %d reconciles, want %d after start-up and the owner scan", tb.Len(), st.Reconciles, n)
		}
		for _, s := range socks {
			r := tb.Lookup(s.Cookie)
			if r == nil {
				t.Errorf("no row for socket %d", s.Cookie)
				continue
			}
			if o, ok := r.Owner(); !ok || o.PID != held[s.Inode][0].PID {
				t.Errorf("socket %d: owner %+v, %v; want pid %d", s.Cookie, o, ok, held[s.Inode][0].PID)
			}
		}
	})
}

// startWithOwners starts a table, closed when the test ends, and waits
// until the owners of sockets older than it are known.
func startWithOwners(t *testing.T, cfg Config) *Table {
	t.Helper()
	tr, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := tr.WaitOwners(ctx); err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestTimeWaitExpiresBetweenDumps: with dumps spaced far apart (DumpLoad),
// a timewait row goes when its timer runs out, without a dump, and one
// whose timer has not run out stays.
func TestTimeWaitExpiresBetweenDumps(t *testing.T) {
	for _, tc := range []struct {
		name    string
		counted func(*table.Row) bool
		want    uint64 // Status.Expired
	}{
		{"all counted", nil, 1},
		// A filtered agent counts only the rows its filter selects.
		{"expired row not counted", func(r *table.Row) bool { return r.Cookie() != 7 }, 0},
		{"expired row counted", func(r *table.Row) bool { return r.Cookie() == 7 }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) { timeWaitExpires(t, tc.counted, tc.want) })
	}
}

func timeWaitExpires(t *testing.T, counted func(*table.Row) bool, wantExpired uint64) {
	var dumps atomic.Int32
	dump := func(context.Context, bool) ([]snapshot.Socket, error) {
		dumps.Add(1)
		return nil, nil
	}
	q := newQueue()
	// Any dump at all stretches the next past the test: 1 µs / 1e-9 is 1 000 s.
	tr, err := Start(context.Background(), Config{Events: q, Dump: dump, NetNS: 1, Every: 50 * time.Millisecond, DumpLoad: 1e-9, Counted: counted})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// The owner scan that follows start-up is a dump too; none after it.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := tr.WaitOwners(ctx); err != nil {
		t.Fatal(err)
	}
	before := dumps.Load()
	soon := tracer.Now() - uint64(table.TimeWaitLen) + uint64(2*time.Second) // expires in 2 s
	for cookie, at := range map[uint64]uint64{7: soon, 8: tracer.Now()} {
		for _, ev := range []tracer.Event{
			transition(cookie, tcp.SynSent, tcp.Established),
			transition(cookie, tcp.Established, tcp.FinWait1),
			transition(cookie, tcp.FinWait1, tcp.FinWait2),
			transition(cookie, tcp.FinWait2, tcp.TimeWait),
		} {
			ev.Time = at
			q.push(ev)
		}
	}
	if err := barrier(tr); err != nil {
		t.Fatal(err)
	}
	if got, _ := rows(tr); len(got) != 2 {
		t.Fatalf("rows %v, want cookies 7 and 8 in TIME_WAIT", got)
	}
	got, st := waitFor(t, tr, func(r []row, _ Status) bool { return len(r) == 1 })
	if want := []row{{8, tcp.TimeWait}}; !slices.Equal(got, want) || st.Expired != wantExpired {
		t.Errorf("after 7's timer ran out: rows %v, %d expired; want %v, %d", got, st.Expired, want, wantExpired)
	}
	if n := dumps.Load() - before; n != 0 {
		t.Errorf("%d dumps while the row waited for its timer, want none", n)
	}
}
