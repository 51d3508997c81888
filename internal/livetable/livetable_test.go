package livetable

import (
	"context"
	"net"
	"net/netip"
	"os"
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
	events   chan tracer.Event
	lost     atomic.Uint64
	deadline atomic.Int64
	flush    chan struct{}
}

func newQueue() *queue {
	return &queue{events: make(chan tracer.Event, 100), flush: make(chan struct{}, 1)}
}

// Read behaves as the tracer's: after Flush, what is queued, then ErrFlushed.
func (q *queue) Read(ev *tracer.Event) error {
	select {
	case *ev = <-q.events:
		return nil
	default:
	}
	wait := time.Until(time.Unix(0, q.deadline.Load()))
	select {
	case *ev = <-q.events:
		return nil
	case <-q.flush:
		select {
		case *ev = <-q.events:
			q.flush <- struct{}{} // still owed once the queue is empty
			return nil
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
	return tracer.Stats{RingBufferFull: q.lost.Load()}, nil
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

func rows(tr *Tracker) (out []row, st Status) {
	tr.View(func(tb *table.Table, s Status) {
		st = s
		for i := range tb.Len() {
			out = append(out, row{tb.Row(i).Cookie(), tb.Row(i).State()})
		}
	})
	return out, st
}

// waitFor polls the tracker until cond holds; the test's own timeout ends
// a wait that never succeeds.
func waitFor(t *testing.T, tr *Tracker, cond func([]row, Status) bool) ([]row, Status) {
	t.Helper()
	for {
		r, st := rows(tr)
		if cond(r, st) {
			return r, st
		}
		time.Sleep(10 * time.Millisecond)
	}
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
			q.events <- transition(1, tcp.Established, tcp.Close)
			q.events <- transition(2, tcp.Close, tcp.SynSent)
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
	tr, err := Start(context.Background(), Config{Dump: DumpTCP, Every: 50 * time.Millisecond})
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
	// Closing the client side shows up at the next dump.
	c.Close()
	waitFor(t, tr, func(_ []row, st Status) bool { return st.Reconciles > 2 })
	tr.View(func(tb *table.Table, _ Status) {
		for i := range tb.Len() {
			r := tb.Row(i)
			mine := r.Local().String() == c.LocalAddr().String() && r.Remote().String() == ln.Addr().String()
			if mine && r.State() != tcp.FinWait2 && r.State() != tcp.TimeWait {
				t.Errorf("closed client %v is %v, want FIN_WAIT2 or TIME_WAIT", r.Local(), r.State())
			}
		}
	})
}

// TestSync: once Sync returns, every event queued before it is in the table,
// without waiting for anything else.
func TestSync(t *testing.T) {
	q := newQueue()
	dump := func(context.Context, bool) ([]snapshot.Socket, error) { return nil, nil }
	tr, err := Start(context.Background(), Config{Events: q, Dump: dump, NetNS: 1, Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for cookie := uint64(1); cookie <= 50; cookie++ {
		q.events <- transition(cookie, tcp.Close, tcp.SynSent)
	}
	if err := tr.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r, st := rows(tr); len(r) != 50 || st.Events != 50 {
		t.Errorf("after Sync: %d rows, %d events; want 50 and 50", len(r), st.Events)
	}
}
