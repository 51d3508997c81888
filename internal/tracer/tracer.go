// Package tracer loads the kernel program of bpf/tcpstate.c, attaches it to
// the TCP state tracepoint and to accept(), and delivers its Events.
package tracer

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Errors Read returns; see Read for which end reading.
var (
	// ErrClosed: the Tracer was closed. Terminal.
	ErrClosed = errors.New("tracer closed")
	// ErrFlushed: every event buffered at the time of Flush has been read.
	// Reading can go on.
	ErrFlushed = errors.New("tracer flushed")
)

// Defaults for Options.
const (
	DefaultRingBufferSize = 8 << 20
	DefaultMaxSockets     = 1 << 17
)

// minRingPerCPU is the least ring a CPU gets, whatever the CPUs: a burst on
// one CPU fills its own ring only (about 6 500 events).
const minRingPerCPU = 1 << 20

// Options configure a Tracer; the zero value traces everything with the
// default sizes. Fields are only ever added. The filters run in the kernel,
// so events they reject cost no ring buffer space.
type Options struct {
	// Family is 4 or 6 to trace only IPv4 or IPv6 sockets; 0 traces both.
	Family int
	// Port keeps only sockets with this local or remote port; 0 keeps all.
	Port uint16
	// Filter keeps only the sockets it passes (internal/filter compiles
	// one); nil keeps all. Family and Port are a shorthand for a filter:
	// give either.
	Filter *KernelFilter
	// RingBufferSize in bytes: a power of two, at least the page size.
	// Each CPU has a ring of its own: the rings hold up to twice it in
	// all, each at most RingBufferSize and at least minRingPerCPU (or
	// RingBufferSize if smaller).
	RingBufferSize int
	// MaxSockets bounds the live sockets whose owner and state start time
	// the kernel program keeps.
	MaxSockets int

	// Experiment swaps or turns off parts of the kernel program to measure
	// what each costs (cmd/tcpstat-bench). Not for real use: most drop a
	// guarantee (StateInMap: the state of sockets past MaxSockets).
	Experiment Experiment

	// For tests. syntheticCookies makes the kernel program behave as on
	// kernels before 5.12; mapState keeps per-socket state in the sockets
	// map as before 5.11; storageOnly keeps it in socket storage only, as
	// when the sockets map is full; skipFirstOneIn makes the first copy
	// pass over 1 in n transitions as a recursion would; loseOneIn drops 1
	// in n; secondElsewhereOneIn hides this CPU's handled set from 1 in n
	// runs of the second copy, as if the task had moved between the copies.
	syntheticCookies     bool
	mapState             bool
	storageOnly          bool
	skipFirstOneIn       uint32
	loseOneIn            uint32
	secondElsewhereOneIn uint32
	corruptOneIn         uint32 // sends 1 in n events with kind 0
}

// Experiment is what Options.Experiment can change.
type Experiment struct {
	// StateInMap keeps per-socket state in the sockets map (as before
	// 5.11) where socket storage is available.
	StateInMap bool
	// StateInStorage keeps per-socket state in socket storage only, not
	// in the sockets map first: what a socket costs once the map is full.
	StateInStorage bool
	// OneCopy attaches only the first copy of the transition program and
	// keeps no handled set: transitions that interrupt it are lost.
	OneCopy bool
	// NoAccept attaches no accept() programs: accepted sockets get their
	// owner at their next system call, and no Accept events come.
	NoAccept bool
	// NoTaskComm leaves Event.Task.Comm empty.
	NoTaskComm bool
	// NoEvents sends no event at all: what the rest of the program costs.
	NoEvents bool
	// NoState keeps no per-socket state: no owner, dwell or deferred birth.
	NoState bool
	// QueryWakeup wakes the consumer by asking the ring buffer how much is
	// waiting (bpf_ringbuf_query), as before, instead of counting records.
	// It implies OneRing.
	QueryWakeup bool
	// NoOwner leaves the owner out of every event: the most an owner sent
	// once per socket, not with each event, could save.
	NoOwner bool
	// Staged builds each event in a per-CPU buffer and never sends it: the
	// ring buffer's reserve and submit left out, the most batching them
	// could save.
	Staged bool
	// OneRing sends every CPU's events through one ring buffer, as before
	// there was a ring per CPU.
	OneRing bool
}

// Tracer owns the loaded programs, their attachments and the ring buffers.
// Read, SetDeadline and Buffered are for one goroutine; Stats, Flush, Detach
// and Close are safe to call from any goroutine.
type Tracer struct {
	objs    tcpstateObjects
	mu      sync.Mutex // guards links
	links   []link.Link
	reader  sampleReader
	decoder *Decoder
	// cpuRings are the ring buffers per CPU, of ringBytes each; none with
	// one CPU or Experiment.OneRing.
	cpuRings  []*ebpf.Map
	ringBytes int
	closed    sync.Once
	warnings  []string
	cookies   bool
	storage   bool
	// hashFirst: with socket storage, state goes in the sockets map while
	// it has room (see state_hash_first in bpf/tcpstate.c).
	hashFirst bool
	corrupt   atomic.Uint64 // samples Read skipped
	deadline  time.Time     // the caller's, for Read
	sweeping  chan struct{} // closed to stop the sweeper
	swept     chan struct{} // closed when it stopped
	// iteratorsErr is why the map iterators did not load, nil if they did.
	iteratorsErr error
	// acceptWarnings are the warnings of attachAccept, also in warnings.
	acceptWarnings []string
}

// pollEvery bounds how long an event waits in a ring buffer: the kernel
// program wakes the reader only each time a CPU has filled another
// sixteenth of its ring (wakeup_records), not per event.
const pollEvery = 20 * time.Millisecond

// New loads and attaches the kernel program. It undoes everything it did
// when any step fails.
func New(opts Options) (_ *Tracer, err error) {
	if err := checkKernel(); err != nil {
		return nil, err
	}
	if err := checkCapabilities(); err != nil {
		return nil, err
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones to
	// the cgroup, where raising the limit may be refused and is not needed.
	_ = rlimit.RemoveMemlock()

	// The object is parsed on one core while the kernel's BTF is on the
	// other (each tens of milliseconds in a fresh process).
	parsed := make(chan error, 1)
	var spec *ebpf.CollectionSpec
	go func() {
		var err error
		spec, err = loadTcpstate()
		parsed <- err
	}()
	kernelBTF := btf.NewCache()
	_, _ = kernelBTF.Kernel() // an error is the load's to report
	if err := <-parsed; err != nil {
		return nil, fmt.Errorf("load BPF object: %w", err)
	}
	t := &Tracer{decoder: NewDecoder()}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	if t.ringBytes, err = sizeMaps(spec, opts); err != nil {
		return nil, err
	}
	if opts.Family != 0 || opts.Port != 0 {
		if opts.Filter != nil {
			return nil, errFilterAndShorthand
		}
		if opts.Filter, err = shorthandFilter(opts.Family, opts.Port); err != nil {
			return nil, err
		}
	}
	// The kernel's BTF, parsed once above for the probes and the load, is
	// dropped with its cache when New returns: nothing needs it after.
	if t.cookies, err = haveSocketCookieHelper(kernelBTF); err != nil {
		return nil, err
	}
	t.cookies = t.cookies && !opts.syntheticCookies
	if !opts.mapState && !opts.Experiment.StateInMap {
		if t.storage, err = haveSocketStorage(kernelBTF); err != nil {
			return nil, err
		}
	}
	if t.storage && !preemptRT() {
		allocatedAsItFills(spec.Maps["sockets"])
		// An entry left by a socket whose close was lost is told from a
		// newer socket at its address by their cookies: real ones only.
		t.hashFirst = t.cookies && !opts.storageOnly && !opts.Experiment.StateInStorage
	}
	if err := configure(spec, opts, t, kernelBTF); err != nil {
		return nil, err
	}
	sockets, err := ebpf.NewMap(spec.Maps["sockets"])
	if err != nil {
		return nil, fmt.Errorf("create the sockets map: %w", explainPermission(err))
	}
	defer sockets.Close() // the collection holds its own clone
	err = t.load(spec, sockets, opts.Filter, kernelBTF)
	if err == nil {
		err = t.makeCPURings()
	}
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("the kernel's verifier rejected the BPF program: %+v", ve)
		}
		if errors.Is(err, btf.ErrNotFound) {
			return nil, fmt.Errorf("%w: %w; %s", ErrNoTracepoint, err, stillWorks)
		}
		return nil, fmt.Errorf("load BPF programs: %w", explainPermission(err))
	}
	// The order matters: the first copy must run before the second for the
	// same transition (probes run in the order they were attached).
	progs := []*ebpf.Program{t.objs.SetStateFirst, t.objs.SetStateSecond}
	if opts.Experiment.OneCopy {
		progs = progs[:1]
	}
	for _, prog := range progs {
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			return nil, fmt.Errorf("attach to tracepoint sock:inet_sock_set_state: %w", explainPermission(err))
		}
		t.links = append(t.links, l)
	}
	if !opts.Experiment.NoAccept {
		t.attachAccept()
		t.warnings = append(t.warnings, t.acceptWarnings...)
	}
	if err := t.openReader(); err != nil {
		return nil, err
	}
	t.rearm(time.Now())
	if t.objs.SweepSockets != nil {
		t.sweeping = make(chan struct{})
		t.swept = make(chan struct{})
		go t.sweepEvery(sweepEvery)
	}
	if !t.cookies {
		t.warnings = append(t.warnings, "this kernel (before 5.12) does not give tracing programs socket cookies: "+
			"sockets not yet listed by sock_diag get synthetic ids")
	}
	return t, nil
}

// load creates the maps, then loads the programs in two groups at once:
// the kernel verifies one group on each core. The two copies of the
// transition program are most of the verifier's work, an accept program
// each the rest.
func (t *Tracer) load(spec *ebpf.CollectionSpec, sockets *ebpf.Map, kf *KernelFilter, kernelBTF *btf.Cache) error {
	// Copies with only the programs each load needs: copying all of them
	// for each was a fifth of a cold start's CPU.
	mapsOnly, firstSpec := specWith(spec), specWith(spec, "set_state_first", "accept4_exit")
	secondSpec, itersSpec := specWith(spec, "set_state_second", "accept_exit"), specWith(spec, "sweep_sockets", "list_storage")
	maps, err := ebpf.NewCollectionWithOptions(mapsOnly, ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{"sockets": sockets}})
	if err != nil {
		return err
	}
	defer maps.Close() // the programs hold the maps they use
	if err := loadFilter(maps.Maps["filter_prog"], maps.Maps["filter_prefixes"], kf); err != nil {
		return err
	}
	shared := &ebpf.CollectionOptions{MapReplacements: maps.Maps, Cache: kernelBTF}
	var first struct {
		SetStateFirst *ebpf.Program `ebpf:"set_state_first"`
		Accept4Exit   *ebpf.Program `ebpf:"accept4_exit"`
	}
	var second struct {
		SetStateSecond *ebpf.Program `ebpf:"set_state_second"`
		AcceptExit     *ebpf.Program `ebpf:"accept_exit"`
	}
	loaded := make(chan error, 1)
	go func() { loaded <- secondSpec.LoadAndAssign(&second, shared) }()
	err = firstSpec.LoadAndAssign(&first, shared)
	// Whatever loaded is t's from here, for Close to release on failure.
	err = errors.Join(err, <-loaded)
	t.objs.SetStateFirst, t.objs.Accept4Exit = first.SetStateFirst, first.Accept4Exit
	t.objs.SetStateSecond, t.objs.AcceptExit = second.SetStateSecond, second.AcceptExit
	if err == nil {
		t.loadIterators(itersSpec, shared)
	}
	for _, m := range []struct {
		name string
		to   **ebpf.Map
	}{{"events", &t.objs.Events}, {"cpu_rings", &t.objs.CpuRings}, {"sockets", &t.objs.Sockets}, {"counters", &t.objs.Counters}, {"handled", &t.objs.Handled},
		{"socket_storage", &t.objs.SocketStorage}} {
		*m.to = maps.DetachMap(m.name)
	}
	return err
}

// specWith copies spec with only the named programs.
func specWith(spec *ebpf.CollectionSpec, programs ...string) *ebpf.CollectionSpec {
	only := *spec
	only.Programs = make(map[string]*ebpf.ProgramSpec, len(programs))
	for _, name := range programs {
		only.Programs[name] = spec.Programs[name]
	}
	return only.Copy()
}

// loadIterators loads the programs that sweep and list per-socket state.
// Without them (map iterators came in 5.9, and some hosts' policies refuse
// them) only the sockets map's bound limits the entries of sockets whose
// CLOSE was lost.
func (t *Tracer) loadIterators(spec *ebpf.CollectionSpec, shared *ebpf.CollectionOptions) {
	var iters struct {
		SweepSockets *ebpf.Program `ebpf:"sweep_sockets"`
		ListStorage  *ebpf.Program `ebpf:"list_storage"`
	}
	// Not a warning at every start: events and owners stay exact, and
	// entries of lost closes are rare (a recursion loss); doctor says it.
	if err := spec.LoadAndAssign(&iters, shared); err != nil {
		t.iteratorsErr = fmt.Errorf("%w: %w", ErrNoMapIterators, explainIteratorRefusal(err))
		return
	}
	t.objs.SweepSockets, t.objs.ListStorage = iters.SweepSockets, iters.ListStorage
}

// MapIterators reports why the programs that sweep and list per-socket state
// did not load (wrapping ErrNoMapIterators), or nil when they did.
func (t *Tracer) MapIterators() error { return t.iteratorsErr }

// allocatedAsItFills makes the sockets map a hash whose entries are
// allocated as they are inserted, for when socket storage can hold
// per-socket state: the map holds each socket's state while it has room
// (hashFirst), else only passive opens whose state is in storage, from
// ESTABLISHED to their first transition after accept(), which deletes the
// entry (see queue_for_accept). A socket's close deletes its entry, and the
// sweep those whose close was lost.
// Preallocating the LRU hash's 131 072 entries took the kernel 80 ms,
// which without socket storage every start still pays.
// When it is full a socket's state goes to its storage, and a hand-off
// that finds no room is counted (SocketsFull), where the LRU would have
// evicted another socket's state unseen.
func allocatedAsItFills(spec *ebpf.MapSpec) {
	spec.Type = ebpf.Hash
	spec.Flags |= unix.BPF_F_NO_PREALLOC
}

// preemptRT reports whether the kernel is built with PREEMPT_RT, where
// kernels before 6.1 refuse hashes allocated at run time to tracepoint
// programs (the accept programs).
func preemptRT() bool {
	b, err := os.ReadFile("/sys/kernel/realtime")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// sizeMaps checks and sets the sizes of the ring buffers and sockets map.
// It returns the size of each ring per CPU, 0 without them.
func sizeMaps(spec *ebpf.CollectionSpec, opts Options) (perCPU int, err error) {
	size := opts.RingBufferSize
	if size == 0 {
		size = DefaultRingBufferSize
	}
	page := os.Getpagesize()
	if size < page || size&(size-1) != 0 {
		return 0, fmt.Errorf("ring buffer size %d: want a power of two of at least %d bytes", size, page)
	}
	maxSockets := opts.MaxSockets
	if maxSockets == 0 {
		maxSockets = DefaultMaxSockets
	}
	if maxSockets < 0 {
		return 0, fmt.Errorf("max sockets %d: want a positive number", maxSockets)
	}
	spec.Maps["sockets"].MaxEntries = uint32(maxSockets)
	// The maps of the mode not taken are made as small as they can be.
	events, rings := spec.Maps["events"], spec.Maps["cpu_rings"]
	events.MaxEntries, rings.MaxEntries, rings.InnerMap.MaxEntries = uint32(size), 1, uint32(page)
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return 0, fmt.Errorf("count the CPUs: %w", err)
	}
	// bpf_ringbuf_query asks the one ring.
	if cpus < 2 || opts.Experiment.OneRing || opts.Experiment.QueryWakeup {
		return 0, nil
	}
	perCPU = ringPerCPU(size, cpus)
	events.MaxEntries, rings.MaxEntries, rings.InnerMap.MaxEntries = uint32(page), uint32(cpus), uint32(perCPU)
	return perCPU, nil
}

// ringPerCPU is the size of each CPU's ring: the largest power of two
// within twice an equal share of size, up to size, but at least
// minRingPerCPU or size. A CPU that sends most events (one busy
// connection, one softirq) still has a ring as large as the one ring would
// be on two CPUs, and half on four.
func ringPerCPU(size, cpus int) int {
	n := min(size, minRingPerCPU)
	for n*2 <= size && n*2*cpus <= 2*size {
		n *= 2
	}
	return n
}

// makeCPURings makes a ring buffer for each CPU, before the programs are
// attached: an event sent without one would be lost.
func (t *Tracer) makeCPURings() error {
	if t.ringBytes == 0 {
		return nil
	}
	for cpu := range t.objs.CpuRings.MaxEntries() {
		ring, err := ebpf.NewMap(&ebpf.MapSpec{Name: "cpu_ring", Type: ebpf.RingBuf, MaxEntries: uint32(t.ringBytes)})
		if err != nil {
			return fmt.Errorf("create the ring buffer of CPU %d: %w", cpu, explainPermission(err))
		}
		t.cpuRings = append(t.cpuRings, ring)
		if err := t.objs.CpuRings.Put(cpu, ring); err != nil {
			return fmt.Errorf("add the ring buffer of CPU %d: %w", cpu, err)
		}
	}
	return nil
}

// openReader opens the reader of the one ring buffer or of those per CPU.
func (t *Tracer) openReader() (err error) {
	if t.cpuRings == nil {
		reader, err := ringbuf.NewReader(t.objs.Events)
		if err != nil {
			return fmt.Errorf("open ring buffer: %w", err)
		}
		t.reader = &oneRing{Reader: reader}
		return nil
	}
	fds := make([]int, len(t.cpuRings))
	for i, m := range t.cpuRings {
		fds[i] = m.FD()
	}
	if t.reader, err = newRingSet(fds, t.ringBytes); err != nil {
		return fmt.Errorf("open the ring buffers: %w", err)
	}
	return nil
}

// configure sets the program's constants; sizeMaps must have run.
func configure(spec *ebpf.CollectionSpec, opts Options, t *Tracer, kernelBTF *btf.Cache) error {
	values, err := configureFilter(spec, opts.Filter, kernelBTF)
	if err != nil {
		return err
	}
	for name, value := range map[string]any{
		"have_cookie_helper":           t.cookies,
		"use_sk_storage":               t.storage,
		"state_hash_first":             t.hashFirst,
		"wakeup_records":               wakeupRecords(spec.Maps["events"].MaxEntries, t.ringBytes),
		"ring_per_cpu":                 t.ringBytes != 0,
		"wakeup_bytes":                 uint64(spec.Maps["events"].MaxEntries / 16),
		"sweep_after_ns":               uint64(time.Second),
		"test_skip_first_one_in":       opts.skipFirstOneIn,
		"test_lose_one_in":             opts.loseOneIn,
		"test_second_elsewhere_one_in": opts.secondElsewhereOneIn,
		"test_corrupt_one_in":          opts.corruptOneIn,
		"exp_no_task_comm":             opts.Experiment.NoTaskComm,
		"exp_one_copy":                 opts.Experiment.OneCopy,
		"exp_no_events":                opts.Experiment.NoEvents,
		"exp_no_state":                 opts.Experiment.NoState,
		"exp_query_wakeup":             opts.Experiment.QueryWakeup,
		"exp_no_owner":                 opts.Experiment.NoOwner,
		"exp_staged":                   opts.Experiment.Staged,
	} {
		values[name] = value
	}
	set := map[string]bool{}
	for name, value := range values {
		v, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("BPF object has no variable %s", name)
		}
		if err := v.Set(value); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
		set[name] = true
	}
	// A constant left at its compiled-in value is a setting forgotten.
	for name, v := range spec.Variables {
		if v.Constant() && !set[name] && !strings.HasPrefix(name, "unused_") {
			return fmt.Errorf("BPF object has a constant %s that tcpstat does not set", name)
		}
	}
	return nil
}

// wakeupRecords is how many records each CPU sends per wakeup: a power of
// two near a sixteenth of its own ring, or of its share of the one ring.
func wakeupRecords(ringBytes uint32, perCPU int) uint64 {
	records := uint64(ringBytes) / 16 / uint64(unsafe.Sizeof(tcpstateEvent{})+8) / uint64(max(runtime.NumCPU(), 1))
	if perCPU != 0 {
		records = uint64(perCPU) / 16 / uint64(unsafe.Sizeof(tcpstateEvent{})+8)
	}
	n := uint64(1)
	for n*2 <= records {
		n *= 2
	}
	return n
}

// attachAccept attaches the accept() hooks. Without them tcpstat still works:
// passive opens get an owner at their first system call instead.
func (t *Tracer) attachAccept() {
	if err := ensureTracefs(); err != nil {
		t.acceptWarnings = append(t.acceptWarnings, "owners of accepted connections are unknown until they close: "+err.Error())
		return
	}
	for name, prog := range map[string]*ebpf.Program{
		"sys_exit_accept4": t.objs.Accept4Exit,
		"sys_exit_accept":  t.objs.AcceptExit,
	} {
		l, err := link.Tracepoint("syscalls", name, prog, nil)
		if err != nil {
			t.acceptWarnings = append(t.acceptWarnings, fmt.Sprintf(
				"owners of accepted connections may be unknown until they close: attach syscalls:%s: %v", name, err))
			continue
		}
		t.links = append(t.links, l)
	}
}

// Warnings lists what this kernel or environment could not give, and what
// that costs; MapIterators says why per-socket state is not swept.
func (t *Tracer) Warnings() []string { return t.warnings }

// AcceptWarnings are the warnings about owners of accepted connections
// (the accept() hooks), a part of Warnings.
func (t *Tracer) AcceptWarnings() []string { return t.acceptWarnings }

// SyntheticIDs reports whether events may carry synthetic socket ids
// (Event.Synthetic): this kernel, before 5.12, gives tracing programs no
// socket cookies.
func (t *Tracer) SyntheticIDs() bool { return !t.cookies }

// SocketStorage reports whether per-socket state may live in socket local
// storage, freed with the socket (5.11+), rather than in the sockets map
// only.
func (t *Tracer) SocketStorage() bool { return t.storage }

// StateInMapFirst reports whether, with socket storage, per-socket state
// goes in the sockets map while it has room, and in storage only past it
// (Stats.InStorage counts those sockets).
func (t *Tracer) StateInMapFirst() bool { return t.hashFirst }

// Read blocks until the next event and decodes it into ev.
//
// Per call, reading can go on after: os.ErrDeadlineExceeded (the deadline
// set by SetDeadline passed with nothing to read) and ErrFlushed (every
// event buffered at the time of Flush was read). Terminal, Read will only
// fail again: ErrClosed after Close, and any other error (the ring buffer
// cannot be read). A sample that fails to decode is never returned: Read
// counts it in Stats.Corrupt (and so in Stats.Lost) and reads the next.
func (t *Tracer) Read(ev *Event) error {
	for {
		sample, err := t.reader.next()
		switch {
		case err == nil:
			if t.decoder.Decode(sample, ev) != nil {
				t.corrupt.Add(1)
				continue
			}
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The reader returns what is buffered, then this: either a
			// poll (events may have come without a wakeup) or the end.
			now := time.Now()
			if !t.deadline.IsZero() && !now.Before(t.deadline) {
				return err
			}
			t.rearm(now)
		case errors.Is(err, ringbuf.ErrClosed), errors.Is(err, os.ErrClosed):
			return ErrClosed
		case errors.Is(err, ringbuf.ErrFlushed):
			return ErrFlushed
		default:
			return err
		}
	}
}

// rearm sets the reader's deadline to the next poll or the caller's
// deadline, whichever comes first.
func (t *Tracer) rearm(now time.Time) {
	until := now.Add(pollEvery)
	if !t.deadline.IsZero() && t.deadline.Before(until) {
		until = t.deadline
	}
	t.reader.SetDeadline(until)
}

// SetDeadline makes Read return os.ErrDeadlineExceeded at d once no event
// is waiting; the zero time removes the deadline. Call it from the reading
// goroutine.
func (t *Tracer) SetDeadline(d time.Time) {
	t.deadline = d
	t.rearm(time.Now())
}

// Buffered is the number of bytes waiting in the ring buffers. Call it from
// the reading goroutine, before Close.
func (t *Tracer) Buffered() int { return t.reader.AvailableBytes() }

// Flush wakes Read: it returns what is buffered, then ErrFlushed.
func (t *Tracer) Flush() error { return t.reader.Flush() }

// Detach stops the kernel from producing events; those already buffered can
// still be read. It is idempotent.
func (t *Tracer) Detach() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	t.links = nil
	return errors.Join(errs...)
}

// Close detaches and frees everything. It is idempotent and interrupts Read.
func (t *Tracer) Close() error {
	var err error
	t.closed.Do(func() {
		if t.sweeping != nil {
			close(t.sweeping)
			<-t.swept
		}
		errs := []error{t.Detach()}
		if t.reader != nil {
			errs = append(errs, t.reader.Close())
		}
		for _, m := range t.cpuRings {
			errs = append(errs, m.Close())
		}
		errs = append(errs, t.objs.Close())
		err = errors.Join(errs...)
	})
	return err
}
