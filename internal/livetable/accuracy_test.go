package livetable

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tcpstat/tcpstat/internal/loadgen"
	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/ssdump"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// The workload's sockets all have an end in 127.77.0.0/16, which nothing
// else on the host uses: the comparison looks at those only.
var workload = netip.MustParsePrefix("127.77.0.0/16")

func ours(local, remote netip.AddrPort) bool {
	return workload.Contains(local.Addr()) || workload.Contains(remote.Addr())
}

// addrKey names a socket by its addresses, where ids differ: ss lists
// under real cookies what the table may hold under synthetic ids.
func addrKey(local, remote netip.AddrPort) string { return local.String() + " " + remote.String() }

// seen is one socket as the table showed it.
type seen struct {
	cookie        uint64
	state         tcp.State
	local, remote netip.AddrPort
	pid           uint32 // the owner's, current or former
	owned         bool   // pid holds the socket
	former        bool   // pid held the socket
	timeWait      bool   // a timewait mini-socket
	inferred      bool
	expired       bool      // a timewait socket past its timer, until the next dump says it is gone
	synthetic     bool      // keyed by a synthetic id (before 5.12) until a dump lists it
	reported      tcp.State // the last state the tracer reported for the socket (0: none)
	acceptedBy    uint32    // the pid an accept event named, if the table had taken one
	acceptSeen    bool
	source        tracer.OwnerSource // how the table learned the owner
	namedBy       uint32             // the pid the last event naming an owner named, if any
}

func (s seen) String() string {
	return fmt.Sprintf("{%v %v %v pid:%d owned:%v former:%v tw:%v inferred:%v expired:%v synthetic:%v reported:%v acceptedBy:%d/%v source:%v namedBy:%d}",
		s.state, s.local, s.remote, s.pid, s.owned, s.former, s.timeWait, s.inferred, s.expired, s.synthetic, s.reported, s.acceptedBy, s.acceptSeen, s.source, s.namedBy)
}

// reported holds the last state the tracer reported for each cookie, as
// the table took the events (Config.OnEvent): what the table could know.
var reported sync.Map

// accepted holds the pid each accept event named, by cookie, as the table
// took the events.
var accepted sync.Map

// trail keeps what explains a failure: each cookie's events, the cookies
// seen at each pair of addresses, when each merge ended, the owner scans
// and when the views ran. startTracing starts it afresh.
var trail struct {
	sync.Mutex
	byCookie   map[uint64][]tracer.Event
	byAddrs    map[string][]uint64
	reconciles []uint64
	scans      []ownerScan
	views      []string
}

// ownerScan is one scan of the sockets' owners the table merged.
type ownerScan struct {
	began, ended uint64
	found        *snapshot.OwnerIndex
}

func resetTrail() {
	trail.Lock()
	defer trail.Unlock()
	trail.byCookie, trail.byAddrs, trail.reconciles, trail.scans, trail.views = map[uint64][]tracer.Event{}, map[string][]uint64{}, nil, nil, nil
}

// scanOwners is snapshot.Owners, kept in the trail.
func scanOwners(ctx context.Context) (*snapshot.OwnerIndex, error) {
	began := tracer.Now()
	found, err := snapshot.Owners(ctx)
	trail.Lock()
	defer trail.Unlock()
	trail.scans = append(trail.scans, ownerScan{began, tracer.Now(), found})
	return found, err
}

func keepTrail(ev *tracer.Event) {
	trail.Lock()
	defer trail.Unlock()
	k := addrKey(ev.Local, ev.Remote)
	if !slices.Contains(trail.byAddrs[k], ev.Cookie) {
		trail.byAddrs[k] = append(trail.byAddrs[k], ev.Cookie)
	}
	trail.byCookie[ev.Cookie] = append(trail.byCookie[ev.Cookie], *ev)
}

// trailOf is the events of every cookie seen at the addresses of s, the
// merges since the first of them, and the views.
func trailOf(s ssdump.Socket) []string {
	trail.Lock()
	defer trail.Unlock()
	var out []string
	from := uint64(math.MaxUint64)
	for _, c := range trail.byAddrs[addrKey(s.Local, s.Remote)] {
		for _, e := range trail.byCookie[c] {
			out = append(out, fmt.Sprintf("%v %#x %v→%v %v-%v synthetic:%v owner:%d/%v t:%d", e.Kind, e.Cookie, e.Old, e.New, e.Local, e.Remote, e.Synthetic, e.Owner.PID, e.OwnerKnown, e.Time))
			from = min(from, e.Time)
		}
	}
	merged := 0
	for _, t := range trail.reconciles {
		if t >= from && merged < 5 {
			out = append(out, fmt.Sprintf("merged t:%d", t))
			merged++
		}
	}
	for _, sc := range trail.scans {
		var pids []uint32
		for _, o := range sc.found.Of(s.Inode) {
			pids = append(pids, o.PID)
		}
		out = append(out, fmt.Sprintf("owner scan t:%d–%d of %d descriptors: inode %d held by %v", sc.began, sc.ended, sc.found.Len(), s.Inode, pids))
	}
	return append(out, trail.views...)
}

// acceptedAt holds the last accept event under a synthetic id by the
// socket's addresses (a new connection may reuse them: its time tells).
var acceptedAt sync.Map

type acceptance struct {
	pid uint32
	at  uint64
}

// named holds the pid the last event naming an owner named, by cookie: a
// wrong owner says whether the events ever named one.
var named sync.Map

// bySyntheticKey indexes the rows still keyed by synthetic ids by their
// addresses: ss lists those sockets under their real cookies. A new
// connection may reuse the 4-tuple of a timewait row: the other row wins.
func bySyntheticKey(v map[uint64]seen) map[string]seen {
	out := map[string]seen{}
	for _, s := range v {
		k := addrKey(s.local, s.remote)
		if other, ok := out[k]; !s.synthetic || (ok && s.timeWait && !other.timeWait) {
			continue
		}
		out[k] = s
	}
	return out
}

// newOnTuple reports a full socket ss lists on the 4-tuple of a row the
// table had handed to timewait: a new connection, which ended the
// timewait socket without an event.
func newOnTuple(r seen, s ssdump.Socket) bool {
	return r.timeWait && s.State != tcp.TimeWait && s.Timer != "timewait"
}

// closedBefore reports a row found before only by the addresses of a
// socket ss listed, which the tracer has since seen close, while the
// view after holds ss's socket under its own cookie: the socket ss
// listed outlived the row's, so it is a new connection that reused the
// 4-tuple (a client port freed by a passive close, seen on 5.10).
func closedBefore(r seen, inAfterByCookie bool) bool {
	last, ok := reported.Load(r.cookie)
	return inAfterByCookie && ok && last.(tcp.State) == tcp.Close
}

// tableView is the workload's rows of the table, in the namespace ss
// lists (the tracer sees every namespace; other tests on this host may
// use the same addresses in namespaces of their own).
func tableView(tr *Table) map[uint64]seen {
	out := map[uint64]seen{}
	tr.View(func(tb *table.Table, st Status) {
		for i := range tb.Len() {
			r := tb.Row(i)
			if !ours(r.Local(), r.Remote()) || r.NetNS() != tr.cfg.NetNS {
				continue
			}
			o, known := r.Owner()
			fo, former := r.FormerOwner()
			if former {
				o = fo
			}
			expired := r.TimeWait() && r.Expires() != 0 && r.Expires() <= st.Now
			var last tcp.State
			if v, ok := reported.Load(r.Cookie()); ok {
				last = v.(tcp.State)
			}
			var by uint32
			v, acceptSeen := accepted.Load(r.Cookie())
			if acceptSeen {
				by = v.(uint32)
			}
			var namedBy uint32
			if v, ok := named.Load(r.Cookie()); ok {
				namedBy = v.(uint32)
			}
			out[r.Cookie()] = seen{r.Cookie(), r.State(), r.Local(), r.Remote(), o.PID, known, former, r.TimeWait(), r.Inferred(), expired, r.Synthetic(), last, by, acceptSeen, r.OwnerSource(), namedBy}
		}
	})
	return out
}

func ssView() ([]ssdump.Socket, error) {
	cmd := exec.Command("ss", "-tanepi", "( src 127.77.0.0/16 or dst 127.77.0.0/16 )")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ss: %w: %s", err, stderr.String())
	}
	socks, err := ssdump.Parse(bytes.NewReader(out))
	// ss shows a dual-stack socket's IPv4 ends IPv4-mapped; the table
	// unmaps them (a timewait socket left by an earlier run's
	// TestDualStack, on a shared host).
	for i := range socks {
		socks[i].Local, socks[i].Remote = unmapped(socks[i].Local), unmapped(socks[i].Remote)
	}
	return slices.DeleteFunc(socks, func(s ssdump.Socket) bool { return !ours(s.Local, s.Remote) }), err
}

func unmapped(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// agreement counts how the table and ss compare at one point.
type agreement struct {
	Sockets      int // sockets ss listed
	Agree        int // present with the right state, addresses and owner
	Missing      int // ss listed it, the table did not have it
	Requests     int // ss listed a SYN_RECV request socket the table did not have: only dumps show them
	Between      int // ss listed it; the table saw it end, and it opened (or was accepted) and closed between the two views
	WrongState   int
	Unreported   int // ss shows a later state than the last the tracer reported, which the table shows
	WrongAddress int
	WrongOwner   int // ss names users and the table another (or none)
	Accepting    int // ss names the user whose accept() had not returned at the view after: its event came later, naming that user
	FormerOwner  int // ss names no user; the table still names the last one as holding it
	Extra        int // the table had it before and after ss ran; ss did not list it
	Expired      int // of those, timewait rows past their timer, left for the next dump to remove
	Stale        bool
	extra        []uint64 // cookies of the extra rows not expired
	details      []string // the first disagreements, described
}

// exact is what the table's own accounting requires while it is not
// stale: every socket ss listed agrees, but those it could not know
// (request sockets since the last dump) and those that came and went
// between the table's two views.
func (a agreement) exact() bool {
	return a.Agree+a.Unreported+a.Accepting == a.Sockets-a.Between-a.Requests
}

// exactButStates is exact but for wrong states, which the table counts
// itself (Stats.Mismatched: a transition that skipped the row's state
// shows the one before was never reported).
func (a agreement) exactButStates() bool {
	return a.Agree+a.WrongState+a.Unreported+a.Accepting == a.Sockets-a.Between-a.Requests
}

func (a agreement) String() string {
	return fmt.Sprintf("%d sockets: %d agree (%.2f%%), %d opened and closed between the table's views, %d request sockets only dumps show, %d missing, %d wrong state, %d moved with no event, %d wrong address, %d wrong owner, %d accept() returning as ss ran, %d former owner shown, %d extra (%d timewait past its timer)",
		a.Sockets, a.Agree, 100*float64(a.Agree)/float64(max(1, a.Sockets-a.Between-a.Requests)), a.Between, a.Requests, a.Missing, a.WrongState, a.Unreported, a.WrongAddress, a.WrongOwner, a.Accepting, a.FormerOwner, a.Extra, a.Expired)
}

func (a *agreement) add(b agreement) {
	a.Sockets += b.Sockets
	a.Agree += b.Agree
	a.Missing += b.Missing
	a.Requests += b.Requests
	a.Between += b.Between
	a.WrongState += b.WrongState
	a.Unreported += b.Unreported
	a.WrongAddress += b.WrongAddress
	a.WrongOwner += b.WrongOwner
	a.Accepting += b.Accepting
	a.FormerOwner += b.FormerOwner
	a.Extra += b.Extra
	a.Expired += b.Expired
	a.extra = append(a.extra, b.extra...)
}

// lifeRank orders states along a connection's life, to accept a state ss
// saw between two views of the table.
func lifeRank(s tcp.State) int {
	return slices.Index([]tcp.State{tcp.SynSent, tcp.SynRecv, tcp.Established, tcp.FinWait1, tcp.CloseWait,
		tcp.FinWait2, tcp.Closing, tcp.LastAck, tcp.TimeWait}, s)
}

// compare brackets one ss run between two views of the table: a socket
// agrees if ss saw it as the table did before or after (or, while it
// moved, in a state between), and is extra only if the table had it
// throughout and ss did not list it.
func compare(tr *Table) (a agreement, err error) {
	var notes []string
	details := func(f string, a ...any) {
		if len(notes) < 20 {
			notes = append(notes, fmt.Sprintf(f, a...))
		}
	}
	defer func() { a.details = notes }()
	_, stBefore := rows(tr)
	tBefore := tracer.Now()
	before := tableView(tr)
	tSS := tracer.Now()
	socks, err := ssView()
	if err != nil {
		return agreement{}, err
	}
	// A dump walks the hash tables in batches and can skip sockets while
	// others come and go (ss's as much as ours): a row is extra only if a
	// second ss run does not list it either.
	again, err := ssView()
	if err != nil {
		return agreement{}, err
	}
	// Every event from before the dumps is in the table after this.
	if err := tr.Barrier(context.Background()); err != nil {
		return agreement{}, err
	}
	tAfter := tracer.Now()
	after := tableView(tr)
	trail.Lock()
	trail.views = append(trail.views, fmt.Sprintf("views before:%d ss:%d after:%d", tBefore, tSS, tAfter))
	trail.Unlock()
	_, stAfter := rows(tr)
	// The table vouches for itself only while it has lost nothing.
	a = agreement{Stale: stBefore.Stale || stAfter.Stale || stAfter.Lost != stBefore.Lost}
	listed := map[uint64]bool{}
	for _, s := range again {
		listed[s.Cookie] = true
	}
	synBefore, synAfter := bySyntheticKey(before), bySyntheticKey(after)
	type pending struct {
		s    ssdump.Socket
		b, f seen
	}
	var accepting []pending
	for _, s := range socks {
		a.Sockets++
		listed[s.Cookie] = true
		b, inBefore := before[s.Cookie]
		f, inAfter := after[s.Cookie]
		key := addrKey(s.Local, s.Remote)
		if !inBefore {
			if b, inBefore = synBefore[key]; inBefore && (newOnTuple(b, s) || closedBefore(b, inAfter)) {
				b, inBefore = seen{}, false
			}
		}
		if !inAfter {
			if f, inAfter = synAfter[key]; inAfter && newOnTuple(f, s) {
				f, inAfter = seen{}, false
			}
		}
		_, endedSynthetic := endedKeys.Load(key)
		if _, ok := ended.Load(s.Cookie); (ok || endedSynthetic) && !inBefore && !inAfter {
			a.Between++
			continue
		}
		st := s.State
		if st == tcp.NewSynRecv {
			st = tcp.SynRecv
		}
		if !inBefore && !inAfter {
			if st == tcp.SynRecv {
				a.Requests++
				continue
			}
			a.Missing++
			details("missing: %+v; under its cookie now, in any namespace: %s; rows with its addresses before %+v, after %+v; events %q",
				s, rowNow(tr, s.Cookie), withAddrs(before, s), withAddrs(after, s), trailOf(s))
			continue
		}
		view := f
		if !inAfter || (inBefore && b.state == st) {
			view = b
		}
		// While it moved, ss may have seen a state between the two views
		// (or before the first view of a new socket, after the last of one
		// that closed).
		between := (!inBefore || lifeRank(b.state) <= lifeRank(st)) && (!inAfter || lifeRank(st) <= lifeRank(f.state))
		switch {
		case view.state != st && !between && !(st == tcp.TimeWait && view.timeWait && view.state == tcp.FinWait2):
			// A timewait socket moves from FIN_WAIT2 to TIME_WAIT at its
			// peer's FIN, which no event reports: the table knows the row
			// is that socket, and moves it at the peer's close or a dump.
			if view.reported == view.state && lifeRank(st) > lifeRank(view.state) {
				// The table shows the last state the tracer reported, and
				// the kernel moved on without an event (orphaned FIN_WAIT1
				// sockets under churn on 6.18: shared/KERNELS.md); the
				// next dump corrects the row.
				a.Unreported++
				details("no event: ss %v, table and tracer %v: %+v", st, view.state, s)
				break
			}
			a.WrongState++
			details("state: ss %v, table %+v then %+v: %+v; rows with its addresses before %+v, after %+v; events %q", st, b, f, s, withAddrs(before, s), withAddrs(after, s), trailOf(s))
		case view.local != s.Local || view.remote != s.Remote:
			a.WrongAddress++
			details("address: ss %v %v, table %v %v", s.Local, s.Remote, view.local, view.remote)
		case view.state != st:
			a.Agree++ // seen between two views: its owner then is not known
		case len(s.Users) > 0 && inBefore && !inAfter && !b.owned && !b.former:
			// Not yet accepted in the view before, closed by the view
			// after: its accept() came between the two, unseen by either
			// (seen in the emulated guest).
			a.Between++
		case len(s.Users) > 0 && !heldBy(s.Users, b, inBefore) && !heldBy(s.Users, f, inAfter):
			// The view after the barrier has every accept() made before
			// ss ran; the one before, an owner since gone (closed).
			if inAfter && !f.owned && !f.former && !f.acceptSeen {
				// Unless the accept() had installed the descriptor ss read
				// but not yet returned, where its event is made: a thread
				// preempted in between (seen in the emulated guest). The
				// event must come, naming ss's user.
				accepting = append(accepting, pending{s, b, f})
				break
			}
			a.WrongOwner++
			details("owner: ss %+v, table %+v then %+v", s.Users, b, f)
		case len(s.Users) == 0 && view.owned:
			a.FormerOwner++
			a.Agree++
		default:
			a.Agree++
		}
	}
	for _, p := range accepting {
		if pid, ok := acceptedLater(tr, p.s, tBefore); ok && slices.ContainsFunc(p.s.Users, func(u ssdump.User) bool { return u.PID == pid }) {
			a.Accepting++
			continue
		}
		a.WrongOwner++
		details("owner: ss %+v, and no accept event naming it by %v after the view: %+v; table %+v then %+v; rows with its addresses before %+v, after %+v; events %q", p.s.Users, waitTimeout, p.s, p.b, p.f, withAddrs(before, p.s), withAddrs(after, p.s), trailOf(p.s))
	}
	listedKeys := map[string]bool{}
	for _, s := range slices.Concat(socks, again) {
		listedKeys[addrKey(s.Local, s.Remote)] = true
	}
	for c, b := range before {
		if b.synthetic && listedKeys[addrKey(b.local, b.remote)] {
			continue // listed under its real cookie
		}
		if f, ok := after[c]; ok && !listed[c] {
			a.Extra++
			// Past its timer by the view after ss: a timer that ran out
			// while ss ran took the socket from ss's listing, and the view
			// before was too early to say so.
			if f.expired {
				a.Expired++
				continue
			}
			a.extra = append(a.extra, c)
			details("extra: cookie %d %+v, after ss %+v", c, b, f)
		}
	}
	return a, nil
}

// withAddrs finds the rows of a view with the addresses of s, under any
// cookie: what a failure's details need to tell a reused 4-tuple.
func withAddrs(v map[uint64]seen, s ssdump.Socket) map[uint64]seen {
	out := map[uint64]seen{}
	for c, r := range v {
		if r.local == s.Local && r.remote == s.Remote {
			out[c] = r
		}
	}
	return out
}

// rowNow describes the table's row for cookie as it is now, whatever its
// namespace and addresses: what tableView may have left out.
func rowNow(tr *Table, cookie uint64) (out string) {
	out = "no row"
	tr.View(func(tb *table.Table, _ Status) {
		if r := tb.Lookup(cookie); r != nil {
			out = fmt.Sprintf("%v %v %v netns %d (the table's %d) synthetic:%v", r.State(), r.Local(), r.Remote(), r.NetNS(), tr.cfg.NetNS, r.Synthetic())
		}
	})
	return out
}

// acceptedLater waits for the accept event of ss's socket s, made after
// since, and returns the pid it named. Before 5.12 the event carries a
// synthetic id, found by the socket's addresses.
func acceptedLater(tr *Table, s ssdump.Socket, since uint64) (uint32, bool) {
	for deadline := time.Now().Add(waitTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err := tr.Barrier(context.Background()); err != nil {
			return 0, false
		}
		if v, ok := accepted.Load(s.Cookie); ok {
			return v.(uint32), true
		}
		if v, ok := acceptedAt.Load(addrKey(s.Local, s.Remote)); ok && v.(acceptance).at >= since {
			return v.(acceptance).pid, true
		}
	}
	return 0, false
}

// heldBy reports a row whose owner, current or former, is among users.
func heldBy(users []ssdump.User, r seen, present bool) bool {
	return present && (r.owned || r.former) && slices.ContainsFunc(users, func(u ssdump.User) bool { return u.PID == r.pid })
}

// ended holds the cookies of the connections the table saw end;
// endedKeys, the addresses of those it saw end under synthetic ids.
var ended, endedKeys sync.Map

// startTracing loads the tracer and starts a table on it, reconciling
// every period; both end with the test.
func startTracing(t *testing.T, every time.Duration) *Table {
	t.Helper()
	resetTrail()
	events, err := tracer.New(tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { events.Close() })
	tr, err := Start(context.Background(), Config{Events: events, Dump: snapshot.DumpTCP, Walk: snapshot.WalkTCP, Owners: scanOwners, Every: every,
		OnEvent: func(ev *tracer.Event) {
			// Only the workload's: other packages' tests churn beside
			// this one, and must not slow the table's reader.
			if !ours(ev.Local, ev.Remote) {
				return
			}
			switch ev.Kind {
			case tracer.Transition:
				reported.Store(ev.Cookie, ev.New)
			case tracer.Accept:
				accepted.Store(ev.Cookie, ev.Owner.PID)
				if ev.Synthetic {
					acceptedAt.Store(addrKey(ev.Local, ev.Remote), acceptance{ev.Owner.PID, ev.Time})
				}
			}
			if ev.OwnerKnown {
				named.Store(ev.Cookie, ev.Owner.PID)
			}
			keepTrail(ev)
		},
		OnReconcile: func(*table.Table) {
			trail.Lock()
			trail.reconciles = append(trail.reconciles, tracer.Now())
			trail.Unlock()
		},
		OnEnd: func(r *table.Row) {
			ended.Store(r.Cookie(), true)
			if r.Synthetic() {
				endedKeys.Store(addrKey(r.Local(), r.Remote()), true)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

// TestAccuracy runs a long mixed loopback workload in helper processes,
// some of it started before the table, and compares the table with an
// independent `ss -tanepi` by cookie while it runs and after it settles.
func TestAccuracy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the tracer")
	}
	if _, err := exec.LookPath("ss"); err != nil {
		t.Fatal("needs ss (iproute2) as the independent witness: scripts/deps.sh installs it")
	}
	addr := func(a, b byte) netip.Addr { return netip.AddrFrom4([4]byte{127, 77, a, b}) }
	mix := func(n byte, seed uint64, d time.Duration, conns int) childSpec {
		return childSpec{Mode: "mix", Mix: loadgen.Mix{
			Server: addr(n, 1), Client: addr(n, 2), Seed: seed, Duration: d,
			Connections: conns, InFlight: 150, Listeners: 3, MaxIdle: 3 * time.Second,
		}}
	}

	// Before the table: idle connections held still, and a short burst
	// that leaves TIME_WAIT sockets behind.
	held := startChild(t, childSpec{Mode: "hold", Server: addr(0, 1), Client: addr(0, 2), N: 300})
	if err := held.ready(); err != nil {
		t.Fatal(err)
	}
	if _, err := startChild(t, mix(9, 99, 2*time.Second, 300)).result(); err != nil {
		t.Fatal(err)
	}

	tr := startTracing(t, time.Second)

	const run = 24 * time.Second
	var mixes []*child
	for i := range 3 {
		mixes = append(mixes, startChild(t, mix(byte(i+1), uint64(i), run, 2500)))
	}
	var during agreement // the points where the table was not stale
	stalePoints := 0
	deadline := time.Now().Add(run)
	for i := 0; time.Now().Before(deadline.Add(-3 * time.Second)); i++ {
		time.Sleep(3 * time.Second)
		if i == 3 {
			// The connections held from before the table close now.
			if err := held.stop(); err != nil {
				t.Fatalf("stop the holding child: %v", err)
			}
		}
		a, err := compare(tr)
		if err != nil {
			t.Fatal(err)
		}
		if os.Getenv("TCPSTAT_DETAILS") != "" || (!a.Stale && !a.exact()) {
			for _, d := range a.details {
				t.Log(d)
			}
		}
		var st Status
		tr.View(func(_ *table.Table, s Status) { st = s })
		t.Logf("while running, point %d: %v (stale %v; last reconcile %+v)", i+1, a, a.Stale, st.Last)
		if a.Stale {
			stalePoints++
			continue
		}
		if !a.exactButStates() {
			t.Errorf("while running, point %d: the table disagrees with ss though it lost nothing: %v", i+1, a)
		}
		during.add(a)
	}
	var made loadgen.Stats
	for _, c := range mixes {
		st, err := c.result()
		if err != nil {
			t.Fatal(err)
		}
		made.Connections += st.Connections
		made.Refused += st.Refused
		made.Listeners += st.Listeners
	}
	// Settled: two dumps begun after the workload ended have been merged,
	// so every timewait row is confirmed, and a socket the kernel freed
	// without an event (a timewait socket killed by a reset, or a hand-off
	// its full timewait table had no room for) has missed
	// both and is gone.
	_, st := rows(tr)
	waitFor(t, tr, func(_ []row, s Status) bool { return s.Reconciles >= st.Reconciles+3 })
	settled, err := compare(tr)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range settled.details {
		t.Log(d)
	}
	tr.View(func(_ *table.Table, s Status) { st = s })
	t.Logf("workload: %d connections, %d refused connects, %d listeners; %d events, %d lost, %d resyncs, %d reconciles: %+v",
		made.Connections, made.Refused, made.Listeners, st.Events, st.Lost, st.Resyncs, st.Reconciles, st.Total)
	t.Logf("while running, the points without losses: %v; %d points stale after losses", during, stalePoints)
	t.Logf("settled: %v", settled)
	if settled.Sockets == 0 {
		t.Fatal("ss listed none of the workload's sockets after it settled (its TIME_WAIT sockets should be there)")
	}
	if settled.Stale || !settled.exact() || settled.Requests != 0 || settled.Extra != settled.Expired || settled.FormerOwner != 0 {
		t.Errorf("settled table disagrees with ss: %v", settled)
	}
	var mismatched uint64
	tr.View(func(tb *table.Table, _ Status) { mismatched = tb.Stats().Mismatched })
	t.Logf("transitions that skipped the row's state: %d", mismatched)
	if uint64(during.WrongState) > mismatched {
		t.Errorf("while running, %d wrong states, more than the %d transitions the table saw skip a state", during.WrongState, mismatched)
	}
	// A row ss did not list while the workload ran (a socket the kernel
	// freed without a transition: a timewait socket killed by a reset, a
	// request socket that became a full one) must be gone once dumps have
	// missed it.
	final := tableView(tr)
	for _, c := range during.extra {
		if r, ok := final[c]; ok {
			t.Errorf("row %d, extra while running, is still there after two dumps: %+v", c, r)
		}
	}
}

// TestPeerClose follows a server-first close on loopback: the server's
// timewait socket is in FIN_WAIT2 until the client closes, and the table
// must show it in TIME_WAIT as soon as the client's close is seen, with no
// dump in between. When the kernel had no room for the timewait socket
// (its dump and overflow count say so), the client's FIN is answered with
// a reset and the row the table inferred must be gone instead.
func TestPeerClose(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the tracer")
	}
	tr := startTracing(t, time.Hour)
	// The owner scan's dump comes after start-up's; after it, none.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := tr.WaitOwners(ctx); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.77.200.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	serverEnd := netip.MustParseAddrPort(server.LocalAddr().String())
	clientEnd := netip.MustParseAddrPort(client.LocalAddr().String())
	type end struct {
		State    tcp.State
		TimeWait bool
		Inferred bool
	}
	state := func() (end, bool) {
		for _, r := range tableView(tr) {
			if r.local == serverEnd && r.remote == clientEnd {
				return end{r.state, r.timeWait, r.inferred}, true
			}
		}
		return end{}, false
	}
	// expect waits for the server end's row to be want (or gone).
	expect := func(what string, want end, present bool) {
		t.Helper()
		for deadline := time.Now().Add(waitTimeout); ; time.Sleep(10 * time.Millisecond) {
			if err := barrier(tr); err != nil {
				t.Fatal(err)
			}
			s, ok := state()
			if s == want && ok == present {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("server end %s, %v: %+v (present %v), want %+v (present %v)", what, waitTimeout, s, ok, want, present)
			}
		}
	}
	overflows := timeWaitOverflows(t)
	server.Close()
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after the server's close returned data")
	}
	kind := firstCloser(t, serverEnd.String(), clientEnd.String(), overflows)
	// The tracepoint shows a hand-off either way (a close for want of
	// room looks the same), and a held socket is a full FIN_WAIT2.
	half := end{tcp.FinWait2, true, true}
	if kind == fullSocket {
		half = end{State: tcp.FinWait2}
	}
	expect(fmt.Sprintf("after its close (%v)", kind), half, true)
	_, st := rows(tr)
	var peerClosed uint64
	tr.View(func(tb *table.Table, _ Status) { peerClosed = tb.Stats().PeerClosed })
	client.Close()
	want, present := end{tcp.TimeWait, true, true}, true
	switch kind {
	case fullSocket:
		want = end{tcp.TimeWait, true, true} // handed off at the client's FIN
	case noSocket:
		want, present = end{}, false
	}
	expect(fmt.Sprintf("after the client's close (%v)", kind), want, present)
	var after uint64
	tr.View(func(tb *table.Table, _ Status) { after = tb.Stats().PeerClosed })
	// The table sees the host's other connections too (other packages'
	// tests run beside this one): this one's close counts at least once.
	if kind != fullSocket && after <= peerClosed {
		t.Errorf("%d timewait rows moved on by their peer's close, want more than %d", after, peerClosed)
	}
	if _, now := rows(tr); now.Reconciles != st.Reconciles {
		t.Errorf("%d dumps merged: want the events alone", now.Reconciles-st.Reconciles)
	}
}

// TestWaitingConnect holds a connect in SYN_SENT (its listener's accept
// queue is full) while dumps come and go: the table must show it once,
// with the port ss lists it with and its owner. Before Linux 5.12 its
// only event, CLOSE → SYN_SENT, has a synthetic id and no local port yet
// (seen in the kernel matrix on 5.10: a second row for it from a dump,
// until the connect gave up).
func TestWaitingConnect(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the tracer")
	}
	tr := startTracing(t, 50*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := tr.WaitOwners(ctx); err != nil {
		t.Fatal(err)
	}
	ln, err := loadgen.ListenFull(netip.MustParseAddrPort("127.77.202.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialCtx, stopDial := context.WithCancel(ctx)
	dialed := make(chan error, 1)
	go func() {
		c, err := (&net.Dialer{}).DialContext(dialCtx, "tcp", ln.Addr.String())
		if err == nil {
			c.Close()
		}
		dialed <- err
	}()
	gaveUp := false
	defer func() {
		if !gaveUp {
			stopDial()
			<-dialed
		}
	}()
	// waiting is the connect as ss lists it, once it does.
	waiting := func() (netip.AddrPort, bool) {
		socks, err := ssView()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range socks {
			if s.Remote == ln.Addr && s.State == tcp.SynSent {
				return s.Local, true
			}
		}
		return netip.AddrPort{}, false
	}
	var local netip.AddrPort
	for deadline := time.Now().Add(waitTimeout); ; time.Sleep(10 * time.Millisecond) {
		var ok bool
		if local, ok = waiting(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connect to %v in SYN_SENT after %v", ln.Addr, waitTimeout)
		}
	}
	// Two whole dumps while it waits.
	_, st := rows(tr)
	waitFor(t, tr, func(_ []row, now Status) bool { return now.Reconciles >= st.Reconciles+2 })
	if err := barrier(tr); err != nil {
		t.Fatal(err)
	}
	if _, still := waiting(); !still {
		t.Fatal("the connect stopped waiting: the listener's queue was not full")
	}
	var got []seen
	for _, r := range tableView(tr) {
		if r.remote == ln.Addr && r.local != ln.Filler {
			got = append(got, r)
		}
	}
	if len(got) != 1 {
		t.Fatalf("%d rows for the waiting connect, want 1: %+v", len(got), got)
	}
	if r := got[0]; r.state != tcp.SynSent || r.local != local || !r.owned || r.pid != uint32(os.Getpid()) {
		t.Errorf("row %+v: want SYN_SENT from %v, owned by this process (%d)", r, local, os.Getpid())
	}
	stopDial()
	gaveUp = true
	if err := <-dialed; err == nil {
		t.Fatal("the connect to a full accept queue was accepted")
	}
	for deadline := time.Now().Add(waitTimeout); ; time.Sleep(10 * time.Millisecond) {
		if err := barrier(tr); err != nil {
			t.Fatal(err)
		}
		left := 0
		for _, r := range tableView(tr) {
			if r.remote == ln.Addr && r.local != ln.Filler {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rows for the connect %v after it gave up", left, waitTimeout)
		}
	}
}
