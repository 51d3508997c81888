// Package livetable keeps a connection table current: it follows the
// start-up order of shared/DESIGN.md (attach, buffer events, dump with the
// kernel clock read around it, merge, apply the buffer, go live), then
// applies events as they come, reconciles against a fresh dump now and then
// to confirm or expire timewait rows, and resyncs at once after lost events,
// showing the table as stale until the resync is done.
package livetable

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// Events is a source of tracer events: a *tracer.Tracer, or a recording.
// It keeps the tracer's contract: a sample that cannot be decoded is
// never returned but skipped and counted in Stats().Corrupt, which Lost()
// includes (the table resyncs after it).
type Events interface {
	// Read blocks until the next event. Reading goes on after
	// os.ErrDeadlineExceeded (the deadline passed) and tracer.ErrFlushed
	// (after a Flush). tracer.ErrClosed, io.EOF and os.ErrClosed end the
	// source cleanly (a closed tracer, a recording's end); any other error
	// ends it as a failure, reported in Status.Err.
	Read(*tracer.Event) error
	SetDeadline(time.Time)
	// Flush makes Read return what is buffered, then tracer.ErrFlushed.
	Flush() error
	// Stats are cumulative counts; Lost() is what the table cares about.
	Stats() (tracer.Stats, error)
}

// DumpFunc lists the TCP sockets of the current network namespace, with
// their owners when asked (snapshot.DumpTCP on a real host). A
// *snapshot.PartialError comes with valid sockets: some processes could
// not be read, and the table reports how many.
type DumpFunc func(ctx context.Context, owners bool) ([]snapshot.Socket, error)

// WalkFunc hands each TCP socket of the current network namespace to fn,
// without owners, as the kernel lists them (snapshot.WalkTCP on a real
// host); fn must not keep s.
type WalkFunc func(ctx context.Context, fn func(s *snapshot.Socket)) error

// OwnersFunc scans every process's descriptors into an index of sockets'
// owners (snapshot.Owners on a real host). A *snapshot.PartialError comes
// with a valid index: some processes could not be read.
type OwnersFunc func(ctx context.Context) (*snapshot.OwnerIndex, error)

// ErrEventsEnded is what Barrier returns once events are no longer read:
// the source ended or failed (Status.Err says why), or the table was closed.
var ErrEventsEnded = errors.New("events are no longer read")

// Config says where the table reads from.
type Config struct {
	// Events is the tracer; nil keeps the table from dumps alone, each
	// Every (polling: transitions between dumps are not seen).
	Events Events
	Dump   DumpFunc
	// Walk, when set with Events, reads the dumps: each socket is merged
	// as it comes, while the kernel lists the next ones, instead of Dump
	// building a slice of every socket first. Start-up is then about the
	// dump alone, and later dumps hold a batch of sockets at a time, events
	// applied between batches. Events with synthetic ids (kernels before
	// 5.12, see tracer.Tracer.SyntheticIDs) need the table still while a
	// dump is merged: after start-up, Dump reads theirs.
	Walk WalkFunc
	// Owners, with Walk, scans for owners before a walked dump that needs
	// them; without it, such dumps are read with Dump.
	Owners OwnersFunc
	// Every is the time between reconciles; the default is 2 s when
	// tracing (timewait rows are confirmed that often), 1 s when polling.
	Every time.Duration
	// NetNS is the inode of the namespace Dump lists; 0 reads it from
	// /proc/self/ns/net.
	NetNS uint32
	// Covers, when set, says which namespaces the last dump spoke for: a
	// dump of many namespaces (snapshot.Scope's DumpTCP and WalkTCP, whose
	// sockets carry their namespace). NetNS is then only the namespace of
	// sockets that carry none.
	Covers func(netns uint32) bool
	// Keep, when set, says which namespaces' events the table applies; the
	// others are dropped as they are read (a table of one namespace).
	Keep func(netns uint32) bool
	// OnEnd is called, with the table locked, for every connection that ends.
	OnEnd func(*table.Row)
	// OnReconcile is called, with the table locked, after every dump is
	// merged: what follows the table's sockets can forget those gone
	// without an event.
	OnReconcile func(*table.Table)
	// Counted, when set, says which rows the reconciles after the first
	// count in Status.Last and Total (table.Dump.Counted): a filtered
	// view's counts leave out rows it never shows. It is called with the
	// table locked.
	Counted func(*table.Row) bool
	// OnEvent is called, with the table locked, for every event the table
	// takes (counted in Status.Events), in order: a View sees the table
	// and what OnEvent did with the same events (a recording's tap).
	OnEvent func(*tracer.Event)
	// PollReason says why there is no tracer, for the views to show.
	PollReason string
	// DumpLoad, when above 0, stretches the time between periodic
	// reconciles past Every so that dumps take at most this share of the
	// time (about one CPU's, a dump being one thread's work), up to
	// maxPeriod: on a host of 200 000 sockets a dump takes about 0.2 s. Resyncs
	// after losses are not delayed, and timewait rows still go when their
	// timer runs out (Status.Expired). Rows that leave otherwise without an
	// event (timewait sockets the kernel reused, or did not keep) stay
	// longer.
	DumpLoad float64
}

// Status is what the live table knows about its own accuracy.
type Status struct {
	Tracing    bool   // events are applied; false when polling dumps
	PollReason string // why not tracing
	Now        uint64 // CLOCK_BOOTTIME ns when the status was taken
	Events     uint64 // events read and applied
	// Lost counts the events that will never be applied: those the tracer
	// lost, Corrupt ones, and those dropped while start-up buffered them.
	Lost       uint64
	Corrupt    uint64 // of Lost: samples the source could not decode, skipped
	Stale      bool   // events were lost and the resync is not done yet
	Resyncs    uint64 // resyncs after losses
	Reconciles uint64 // dumps merged, the first included
	Last       table.ReconcileStats
	Total      table.ReconcileStats // every reconcile after the first
	LastDump   time.Duration        // how long the last dump and merge took
	Startup    time.Duration        // attach to live: the first dump, merge and buffered events
	// OwnersPending: the table is live, but the first scan of /proc for the
	// owners of sockets older than tcpstat has not finished (when tracing,
	// it runs right after start-up; events name the owners of newer ones).
	OwnersPending bool
	OwnersAfter   time.Duration // attach to owners known, when tracing
	// OwnersUnreadable is how many processes the last owner scan could not
	// read (not root, or hidepid): their sockets show no owner.
	OwnersUnreadable int
	// OwnerScan names how the last owner scan found the descriptors
	// (snapshot.ScanIterator or snapshot.ScanProc); empty before one.
	OwnerScan string
	DumpErr   error // the last dump's error, until a dump succeeds
	// NetNSErr says the last dump of many network namespaces left some
	// out (a *snapshot.NetNSError: no CAP_SYS_ADMIN to join them); their
	// sockets older than tcpstat are missing. nil when all were dumped.
	NetNSErr error
	// EventsEnded: events are no longer read, because the source ended
	// (a recording's end, a closed tracer) or failed (Err says why).
	EventsEnded bool
	Err         error
	// Expired is how many timewait rows went between dumps because their
	// timer ran out (table.Table.Expire; under Counted, those it counts);
	// a dump counts its own in Last.
	Expired uint64
}

// maxBuffered bounds the events held while the first dump runs; past it
// they are dropped and counted as lost, which forces a resync.
const maxBuffered = 1 << 20

// Table owns a connection table and keeps it current. Its methods may be
// called from any goroutine.
type Table struct {
	cfg    Config
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	tb          *table.Table
	buffering   bool
	buffer      []tracer.Event
	dropped     uint64 // buffered events dropped past maxBuffered
	settling    bool   // a resync left rows unlisted once: one more dump decides
	st          Status
	flushed     chan struct{} // closed by the reader at the flush Barrier asked for
	readerEnded bool

	barrierMu   sync.Mutex    // one Barrier at a time: each waits for its own flush
	abandoned   bool          // guarded by barrierMu: a Barrier gave up waiting for its flush
	readerDone  chan struct{} // closed when the reader returns
	ownersKnown chan struct{} // closed when OwnersPending turns false
}

// ReserveRows readies row memory (table.Reserve) for the TCP sockets that
// /proc/net/sockstat counts: those of every namespace, and the TIME_WAIT
// sockets of tcpstat's own. Run it on its own goroutine while the tracer
// loads: the load leaves part of a core idle, and in Start the same pages
// would be written on the start-up's path.
func ReserveRows() { table.Reserve(snapshot.Estimate(snapshot.TCP)) }

// Start builds the table and returns once it is live. Events must already
// be attached: whatever happens from then on is either in the dump or in
// the events. ctx bounds start-up and the reconciles; events are read
// until Close, so that a caller stopping on ctx (a signal) can detach its
// tracer and Barrier to apply the events still buffered.
func Start(ctx context.Context, cfg Config) (*Table, error) {
	if cfg.Dump == nil {
		return nil, errors.New("start connection table: no dump function")
	}
	if cfg.Every <= 0 {
		cfg.Every = time.Second
		if cfg.Events != nil {
			cfg.Every = 2 * time.Second
		}
	}
	if cfg.NetNS == 0 {
		ns, err := currentNetNS()
		if err != nil {
			return nil, err
		}
		cfg.NetNS = ns
	}
	// Not derived from ctx: the end of ctx must not leave events unread.
	reading, stopReading := context.WithCancel(context.WithoutCancel(ctx))
	ctx, cancel := context.WithCancel(ctx)
	t := &Table{cfg: cfg, cancel: func() { cancel(); stopReading() }, tb: table.New(table.Options{OnEnd: cfg.OnEnd}),
		readerDone: make(chan struct{}), ownersKnown: make(chan struct{})}
	t.st.Tracing, t.st.PollReason = cfg.Events != nil, cfg.PollReason

	began := time.Now()
	lost := t.lost()
	if cfg.Events != nil {
		t.buffering = true
		t.wg.Add(1)
		go t.readLoop(reading)
	} else {
		close(t.readerDone)
	}
	// When tracing, go live first and find older sockets' owners just
	// after: the scan of every process's descriptors costs as much as the
	// dump, and owners are not needed to place events.
	owners := cfg.Events == nil
	t.st.OwnersPending = !owners
	var err error
	if cfg.Walk != nil && cfg.Events != nil {
		err = t.stream(ctx, lost)
	} else {
		err = t.reconcile(ctx, lost, owners)
	}
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("start connection table: %w", err)
	}
	t.mu.Lock()
	for i := range t.buffer {
		t.tb.Apply(&t.buffer[i])
	}
	t.buffer, t.buffering = nil, false
	t.st.Startup = time.Since(began)
	if !t.st.OwnersPending {
		close(t.ownersKnown)
	}
	t.mu.Unlock()

	t.wg.Add(1)
	go t.reconcileLoop(ctx, began)
	return t, nil
}

// View calls fn with the table and the status, the table locked: fn must
// not keep the table or its rows.
func (t *Table) View(fn func(*table.Table, Status)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.st
	st.Now = tracer.Now()
	fn(t.tb, st)
}

// Barrier returns once every event the kernel produced before the call
// has been applied to the table: compare the table with a dump taken just
// before, or assert what a transition did, without waiting for a dump.
// Without events it returns at once; once events are no longer read it
// returns ErrEventsEnded.
func (t *Table) Barrier(ctx context.Context) error {
	if t.cfg.Events == nil {
		return nil
	}
	t.barrierMu.Lock()
	defer t.barrierMu.Unlock()
	// A Barrier that gave up (its ctx ended: a reconcile's, at shutdown)
	// left its flush to the reader, whose ErrFlushed may come after this
	// one's flush but before the events this one waits for: flush twice.
	for again := t.abandoned; ; again = false {
		if err := t.flush(ctx); err != nil {
			if ctx.Err() != nil {
				t.abandoned = true
			}
			return err
		}
		t.abandoned = false
		if !again {
			return nil
		}
	}
}

// flush is one round of Barrier, with barrierMu held.
func (t *Table) flush(ctx context.Context) error {
	done := make(chan struct{})
	t.mu.Lock()
	if t.readerEnded {
		err := t.st.Err
		t.mu.Unlock()
		return t.endedErr(err)
	}
	t.flushed = done
	t.mu.Unlock()
	if err := t.cfg.Events.Flush(); err != nil {
		return fmt.Errorf("flush events: %w", err)
	}
	select {
	case <-done:
		return nil
	case <-t.readerDone:
		t.mu.Lock()
		err := t.st.Err
		t.mu.Unlock()
		return t.endedErr(err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *Table) endedErr(why error) error {
	if why != nil {
		return fmt.Errorf("%w: %w", ErrEventsEnded, why)
	}
	return ErrEventsEnded
}

// OwnersKnown is closed once the owners of sockets older than tcpstat are
// known: at once when polling, where start-up scans for them, otherwise
// after the first owner scan that follows start-up.
func (t *Table) OwnersKnown() <-chan struct{} { return t.ownersKnown }

// WaitOwners returns once OwnersKnown is closed, or with ctx's error.
func (t *Table) WaitOwners(ctx context.Context) error {
	select {
	case <-t.ownersKnown:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the table, reading events included. It does not close Events.
func (t *Table) Close() {
	t.cancel()
	t.wg.Wait()
}

// cleanEnd reports a Read error that ends the source without a failure.
func cleanEnd(err error) bool {
	return errors.Is(err, tracer.ErrClosed) || errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF)
}

func (t *Table) readLoop(ctx context.Context) {
	defer t.wg.Done()
	var failure error
	defer func() {
		t.mu.Lock()
		if failure != nil && t.st.Err == nil {
			t.st.Err = failure
		}
		t.readerEnded, t.st.EventsEnded = true, ctx.Err() == nil
		t.flushed = nil
		t.mu.Unlock()
		close(t.readerDone)
	}()
	var ev tracer.Event
	// Wake up now and then to see whether the table was closed. While
	// events come, ctx is checked at each; a deadline that passed then
	// ends the first wait, which sets the next one.
	t.cfg.Events.SetDeadline(time.Now().Add(250 * time.Millisecond))
	for ctx.Err() == nil {
		err := t.cfg.Events.Read(&ev)
		switch {
		case err == nil:
			if t.cfg.Keep != nil && !t.cfg.Keep(ev.NetNS) {
				continue
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			t.cfg.Events.SetDeadline(time.Now().Add(250 * time.Millisecond))
			continue
		case errors.Is(err, tracer.ErrFlushed):
			t.mu.Lock()
			if t.flushed != nil {
				close(t.flushed)
				t.flushed = nil
			}
			t.mu.Unlock()
			continue
		case cleanEnd(err):
			return
		default:
			failure = fmt.Errorf("read events: %w", err)
			return
		}
		t.mu.Lock()
		t.st.Events++
		if t.cfg.OnEvent != nil {
			t.cfg.OnEvent(&ev)
		}
		switch {
		case !t.buffering:
			t.tb.Apply(&ev)
		case len(t.buffer) < maxBuffered:
			t.buffer = append(t.buffer, ev)
		default:
			t.dropped++
		}
		t.mu.Unlock()
	}
}

func (t *Table) fail(err error) {
	t.mu.Lock()
	if t.st.Err == nil {
		t.st.Err = err
	}
	t.mu.Unlock()
}

// reconcileLoop reconciles every cfg.Every, and at once when events were
// lost or older sockets' owners are still to be found.
func (t *Table) reconcileLoop(ctx context.Context, began time.Time) {
	defer t.wg.Done()
	check := time.NewTicker(min(250*time.Millisecond, t.cfg.Every))
	defer check.Stop()
	next := time.Now().Add(t.cfg.Every)
	expired := time.Now()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-check.C:
			}
		}
		lost := t.lost()
		t.mu.Lock()
		if lost > t.st.Lost {
			t.st.Lost, t.st.Stale = lost, true
		}
		stale := t.st.Stale
		pending := t.st.OwnersPending
		t.mu.Unlock()
		if !stale && !pending && time.Now().Before(next) {
			if t.cfg.Events != nil && time.Since(expired) >= t.cfg.Every {
				// Timewait sockets end without an event: between dumps
				// (DumpLoad spaces them) their rows go when their timer
				// runs out, as the next dump would judge them.
				t.mu.Lock()
				t.st.Expired += uint64(t.tb.Expire(tracer.Now(), t.cfg.Counted))
				t.mu.Unlock()
				expired = time.Now()
			}
			continue
		}
		// Events name the owners of every socket opened since the start;
		// a periodic reconcile need not scan /proc again, a resync must.
		owners := t.cfg.Events == nil || stale || pending
		err := t.reconcile(ctx, lost, owners)
		if err == nil && pending {
			t.mu.Lock()
			t.st.OwnersPending, t.st.OwnersAfter = false, time.Since(began)
			close(t.ownersKnown)
			t.mu.Unlock()
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			t.mu.Lock()
			t.st.DumpErr = err // retried at the next period
			t.mu.Unlock()
		}
		// The dump's sweep expired the timewait rows the timer ended.
		next, expired = time.Now().Add(t.period()), time.Now()
	}
}

// maxPeriod bounds the time between periodic reconciles, however small
// DumpLoad is.
const maxPeriod = time.Hour

// period is the time until the next periodic reconcile: Every, or longer
// when the last dump took more than DumpLoad of it, at most maxPeriod.
func (t *Table) period() time.Duration {
	if t.cfg.DumpLoad <= 0 {
		return t.cfg.Every
	}
	t.mu.Lock()
	last := t.st.LastDump
	t.mu.Unlock()
	// In float: a tiny DumpLoad would overflow a Duration.
	stretched := min(float64(last)/t.cfg.DumpLoad, float64(maxPeriod))
	return max(t.cfg.Every, time.Duration(stretched))
}

// lost is the events lost so far: the source's count (corrupt samples
// included) and the start-up buffer's overflow.
func (t *Table) lost() uint64 {
	var st tracer.Stats
	if t.cfg.Events != nil {
		var err error
		if st, err = t.cfg.Events.Stats(); err != nil {
			t.fail(fmt.Errorf("read lost event count: %w", err))
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.st.Corrupt = max(t.st.Corrupt, st.Corrupt)
	return st.Lost() + t.dropped
}

// reconcile dumps and merges. lostBefore is the lost count read before
// the dump began: if nothing was lost since, the table is no longer stale.
func (t *Table) reconcile(ctx context.Context, lostBefore uint64, owners bool) error {
	began := time.Now()
	// The dump supersedes every event older than its start: apply those
	// still in the ring buffer first, or a close would be taken for stale.
	// Once events are no longer read there is nothing to wait for.
	t.mu.Lock()
	live := !t.buffering
	t.mu.Unlock()
	if live {
		if err := t.Barrier(ctx); err != nil && !errors.Is(err, ErrEventsEnded) {
			return err
		}
	}
	if t.walkable(owners) {
		return t.walk(ctx, lostBefore, owners, began)
	}
	start := tracer.Now()
	socks, err := t.cfg.Dump(ctx, owners)
	end := tracer.Now()
	var partial *snapshot.PartialError
	var nsErr *snapshot.NetNSError
	if err != nil && !errors.As(err, &partial) && !errors.As(err, &nsErr) {
		return fmt.Errorf("dump sockets: %w", err)
	}
	d := &table.Dump{Sockets: socks, Start: start, End: end, NetNS: t.cfg.NetNS, Owners: owners, Covers: t.cfg.Covers}
	lost := t.lost()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.st.Reconciles > 0 {
		d.Counted = t.cfg.Counted
	}
	t.reconciled(t.tb.Reconcile(d), lostBefore, lost, began)
	t.dumped(owners, nsErr, partial)
	return nil
}

// walkable reports whether a reconcile after start-up may be read with
// cfg.Walk: events with synthetic ids may not be applied while a dump is
// merged (table.Merge), and a source that does not say is taken to have
// them.
func (t *Table) walkable(owners bool) bool {
	if t.cfg.Walk == nil || t.cfg.Events == nil || (owners && t.cfg.Owners == nil) {
		return false
	}
	ids, ok := t.cfg.Events.(interface{ SyntheticIDs() bool })
	return ok && !ids.SyntheticIDs()
}

// dumped records, with t.mu held, what a dump said of the namespaces it
// could not join and of the processes whose owners it could not read.
func (t *Table) dumped(owners bool, nsErr *snapshot.NetNSError, partial *snapshot.PartialError) {
	t.st.NetNSErr = nil
	if nsErr != nil {
		t.st.NetNSErr = nsErr
	}
	if owners {
		t.st.OwnersUnreadable = 0
		if partial != nil {
			t.st.OwnersUnreadable = partial.Unreadable
		}
		if sc := snapshot.LastOwnerScan(); sc != nil {
			t.st.OwnerScan = sc.Method
		}
	}
}

// stream is the first reconcile, read with cfg.Walk while events are
// buffered: until Start returns nobody else uses the table.
func (t *Table) stream(ctx context.Context, lostBefore uint64) error {
	t.tb.Reserve(snapshot.Estimate(snapshot.TCP))
	return t.walk(ctx, lostBefore, false, time.Now())
}

// walkBatch is how many sockets a walked reconcile merges at a time, the
// table locked: about 100 µs of events waiting at most.
const walkBatch = 512

// walk is a reconcile read with cfg.Walk, merged a batch at a time, events
// applied between batches after start-up, so that only a few batches of
// sockets are held (and, when owners are asked for, the owner index,
// scanned first).
func (t *Table) walk(ctx context.Context, lostBefore uint64, owners bool, began time.Time) error {
	// Each socket was read before the kernel clock's reading just after
	// it comes. tracer.Now is a system call; the monotonic clock, which
	// Go reads without one, runs at the same pace while the dump lasts
	// (read first, it keeps readBy an upper bound). The dump begins
	// before the owner scan: a socket opened during the scan, which the
	// scan may have missed, is newer than the dump and keeps the owner its
	// events gave it.
	mono := time.Now()
	start := tracer.Now()
	readBy := func() uint64 { return start + uint64(time.Since(mono)) }
	var found *snapshot.OwnerIndex
	var partial *snapshot.PartialError
	if owners {
		var err error
		if found, err = t.cfg.Owners(ctx); err != nil && !errors.As(err, &partial) {
			return fmt.Errorf("find socket owners: %w", err)
		}
	}
	t.mu.Lock()
	m := t.tb.Merge(start, t.cfg.NetNS, owners)
	if !t.buffering { // start-up's merge counts every socket
		m.SetCounted(t.cfg.Counted)
	}
	t.mu.Unlock()
	// Sockets are read on this goroutine and merged on another, a batch at
	// a time with the table locked: the kernel's walk and the parsing of
	// the next batch overlap the merge on a second core, and events are
	// applied between batches (during start-up they are buffered).
	type walked struct {
		socks []snapshot.Socket
		read  []uint64
	}
	// At most four batches exist: two queued, one merging, one filling.
	full, free := make(chan walked, 2), make(chan walked, 4)
	merged := make(chan struct{})
	go func() {
		defer close(merged)
		for w := range full {
			snapshot.Attach(w.socks, found) // none when not asked for
			t.mu.Lock()
			for i := range w.socks {
				m.Add(&w.socks[i], w.read[i])
			}
			t.mu.Unlock()
			free <- walked{w.socks[:0], w.read[:0]}
		}
	}()
	next := func() walked {
		select {
		case w := <-free:
			return w
		default:
			return walked{make([]snapshot.Socket, 0, walkBatch), make([]uint64, 0, walkBatch)}
		}
	}
	w := next()
	var nsErr *snapshot.NetNSError
	err := t.cfg.Walk(ctx, func(s *snapshot.Socket) {
		w.socks, w.read = append(w.socks, *s), append(w.read, readBy())
		if len(w.socks) == walkBatch {
			full <- w
			w = next()
		}
	})
	full <- w
	close(full)
	<-merged
	if err != nil && !errors.As(err, &nsErr) {
		t.mu.Lock()
		m.Abandon()
		t.mu.Unlock()
		return fmt.Errorf("dump sockets: %w", err)
	}
	lost := t.lost()
	t.mu.Lock()
	defer t.mu.Unlock()
	m.SetCovers(t.cfg.Covers)
	t.reconciled(m.Done(tracer.Now()), lostBefore, lost, began)
	t.dumped(owners, nsErr, partial)
	return nil
}

// reconciled updates the status after a reconcile that began at began,
// with t.mu held.
func (t *Table) reconciled(rec table.ReconcileStats, lostBefore, lost uint64, began time.Time) {
	switch {
	case lost > lostBefore:
		t.st.Stale, t.settling = true, false
	case t.st.Stale && rec.Unlisted > 0 && !t.settling:
		// A row goes when two dumps miss it: dump once more right away
		// before calling the table exact again.
		t.settling = true
	default:
		if t.st.Stale {
			t.st.Resyncs++
		}
		t.st.Stale, t.settling = false, false
	}
	t.st.Lost = lost
	if t.st.Reconciles > 0 {
		t.st.Total = t.st.Total.Add(rec)
	}
	t.st.Reconciles++
	t.st.Last = rec
	t.st.LastDump = time.Since(began)
	t.st.DumpErr = nil
	if t.cfg.OnReconcile != nil {
		t.cfg.OnReconcile(t.tb)
	}
}

func currentNetNS() (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		return 0, fmt.Errorf("read the network namespace: %w", err)
	}
	return uint32(st.Ino), nil
}
