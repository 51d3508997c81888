package tracer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fakeRing is a ring buffer in Go memory laid out as the kernel's, written
// as bpf_ringbuf_reserve and bpf_ringbuf_submit write it.
type fakeRing struct {
	mem        []byte // the data area twice, as mapped
	prod, cons uint64
	size       uint64
}

// fakeRings returns a ringSet over n fake rings of size bytes. Its
// deadline has passed: next returns os.ErrDeadlineExceeded when all are
// empty, and never waits.
func fakeRings(n, size int) (*ringSet, []*fakeRing) {
	s := &ringSet{epfd: -1, wakefd: -1, deadline: time.Unix(1, 0)}
	var fakes []*fakeRing
	for range n {
		f := &fakeRing{mem: make([]byte, 2*size), size: uint64(size)}
		fakes = append(fakes, f)
		s.rings = append(s.rings, &cpuRing{consPos: &f.cons, prodPos: &f.prod, data: f.mem, mask: uint64(size - 1)})
	}
	return s, fakes
}

// reserve writes a record's header (busy until committed) and a sample
// of eventSize bytes carrying ts; it returns the record's position.
func (f *fakeRing) reserve(ts uint64) uint64 {
	pos := f.prod
	sample := make([]byte, eventSize)
	binary.NativeEndian.PutUint64(sample[off.ts:], ts)
	f.write(pos, ringBusyBit|uint32(len(sample)), sample)
	f.prod += (uint64(len(sample)) + ringHeaderSize + 7) &^ 7
	return pos
}

// commit clears the busy bit, or marks the record discarded.
func (f *fakeRing) commit(pos uint64, discard bool) {
	hdr := binary.NativeEndian.Uint32(f.mem[pos%f.size:]) &^ ringBusyBit
	if discard {
		hdr |= ringDiscardBit
	}
	f.write(pos, hdr, nil)
}

func (f *fakeRing) send(ts ...uint64) {
	for _, ts := range ts {
		f.commit(f.reserve(ts), false)
	}
}

// write puts the header and sample at pos in both copies of the data.
func (f *fakeRing) write(pos uint64, hdr uint32, sample []byte) {
	for _, base := range []uint64{0, f.size} {
		at := base + pos%f.size
		if at+ringHeaderSize > uint64(len(f.mem)) {
			continue
		}
		copy(f.mem[min(at+ringHeaderSize, uint64(len(f.mem))):], sample)
		atomic.StoreUint32((*uint32)(unsafe.Pointer(&f.mem[at])), hdr)
	}
}

// readAll reads until the rings are empty and returns the samples' times.
func readAll(t *testing.T, s *ringSet) []uint64 {
	t.Helper()
	var got []uint64
	for {
		sample, err := s.next()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return got
		}
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		got = append(got, binary.NativeEndian.Uint64(sample[off.ts:]))
	}
}

func TestRingSetMergesByTime(t *testing.T) {
	s, rings := fakeRings(3, 4096)
	rings[0].send(1, 4, 5)
	rings[1].send(2, 3, 9)
	rings[2].send(6, 7, 8)
	if got, want := readAll(t, s), []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9}; !slices.Equal(got, want) {
		t.Errorf("read %v, want %v", got, want)
	}
	for i, f := range rings {
		if f.cons != f.prod {
			t.Errorf("ring %d: consumer position %d, want %d: space not given back", i, f.cons, f.prod)
		}
	}
}

// A record is returned only once every ring with nothing to give was
// found empty after that record was seen: a record committed before it on
// another CPU (an earlier event of the same socket) goes first, even if
// its ring was found empty a moment before.
func TestRingSetAsksEmptyRingsAgain(t *testing.T) {
	s, rings := fakeRings(2, 4096)
	rings[1].send(20)
	for _, r := range s.rings {
		if err := s.scan(r); err != nil {
			t.Fatal(err)
		}
	}
	rings[0].send(10) // committed before 20 was, after ring 0 was asked
	if got, want := readAll(t, s), []uint64{10, 20}; !slices.Equal(got, want) {
		t.Errorf("read %v, want %v", got, want)
	}
}

// A ring's batch does not hold back another ring's records for long: the
// other rings are asked again every askEvery records, so that records come
// out near the order of their times.
func TestRingSetAsksEveryRingOften(t *testing.T) {
	s, rings := fakeRings(2, 1<<16)
	for ts := uint64(10); ts <= 2000; ts += 10 {
		rings[0].send(ts)
	}
	for _, r := range s.rings {
		if err := s.scan(r); err != nil {
			t.Fatal(err)
		}
	}
	rings[1].send(505)
	got := readAll(t, s)
	at := slices.Index(got, 505)
	if late := slices.Index(got, 10*(askEvery+2)); at < 0 || at > late {
		t.Errorf("the other ring's record came at %d, after ring 0's %dth: %v", at, askEvery+2, got)
	}
}

// A record still being written holds back its ring's later records, and
// next waits for it even past its deadline; a discarded one is passed over;
// records that cross the end of the ring are read whole.
func TestRingSetBusyDiscardedAndWrapped(t *testing.T) {
	record := uint64(eventSize+ringHeaderSize+7) &^ 7
	s, rings := fakeRings(1, 4096)
	f := rings[0]
	// Start near the end, so that the records wrap.
	start := 4096 - record/2
	f.prod, f.cons = start, start
	s.rings[0].pos, s.rings[0].ready, s.rings[0].stored = start, start, start
	dropped := f.reserve(3)
	f.commit(dropped, true)
	busy := f.reserve(1)
	f.send(2)
	committed := make(chan struct{})
	go func() {
		time.Sleep(20 * time.Millisecond)
		f.commit(busy, false)
		close(committed)
	}()
	// The deadline has passed: only waiting for the commit reads anything.
	if got, want := readAll(t, s), []uint64{1, 2}; !slices.Equal(got, want) {
		t.Errorf("read %v, want %v", got, want)
	}
	<-committed
	f.send(4)
	if got, want := readAll(t, s), []uint64{4}; !slices.Equal(got, want) {
		t.Errorf("read %v, want %v", got, want)
	}
	if f.cons != f.prod {
		t.Errorf("consumer position %d, want %d", f.cons, f.prod)
	}
}

func TestRingSetCorruptLength(t *testing.T) {
	s, rings := fakeRings(1, 4096)
	rings[0].write(0, 1<<20, nil)
	rings[0].prod = 8
	if _, err := s.next(); !errors.Is(err, errRingCorrupt) {
		t.Errorf("next on a record longer than its ring: %v, want errRingCorrupt", err)
	}
}

// Whatever the ring holds, reading it returns samples inside it or an
// error, and stops.
func FuzzRingSet(f *testing.F) {
	_, rings := fakeRings(1, 512)
	rings[0].send(1, 2)
	f.Add(rings[0].mem[:512], uint16(rings[0].prod))
	f.Fuzz(func(t *testing.T, data []byte, prod uint16) {
		s, rings := fakeRings(2, 512)
		copy(rings[0].mem, data)
		copy(rings[0].mem[512:], data)
		rings[0].prod = uint64(prod) % 1024
		rings[1].send(5)
		// What next does but wait: a record marked busy is never
		// committed here.
		for range 1024 {
			r, err := s.earliest()
			if err != nil {
				if !errors.Is(err, errRingCorrupt) {
					t.Fatalf("earliest: %v", err)
				}
				return
			}
			if r == nil {
				return
			}
			if len(r.head) > 512 {
				t.Fatalf("a sample of %d bytes from a ring of 512", len(r.head))
			}
			r.advance()
		}
		t.Fatal("1024 samples from a ring of 512 bytes")
	})
}

// Each socket's events come in order when its two ends live on two CPUs:
// the client on one, connecting and closing, the server on the other,
// accepting, reading to the end and closing. Each socket's transitions are
// made on both (a packet's softirq runs on the CPU that sent it), so with
// a ring per CPU they are split between the two rings.
func TestEachSocketsOrderAcrossCPUs(t *testing.T) {
	requireRoot(t)
	if runtime.NumCPU() < 2 {
		t.Fatalf("%d CPU: this test needs two", runtime.NumCPU())
	}
	for i, exp := range []Experiment{{}, {OneRing: true}} {
		name := map[bool]string{false: "ring per CPU", true: "one ring"}[exp.OneRing]
		t.Run(name, func(t *testing.T) {
			port := 29188 + i
			tracer := newTracer(t, Options{Port: uint16(port), Experiment: exp})
			const conns = 400
			churnAcrossCPUs(t, port, conns)
			c := newChains(t, func(*Event) bool { return true })
			s := &stream{t: t, tr: tracer}
			s.waitFor("every socket's end", c.follow)
			c.check(conns)
			checkNoLossBut(t, tracer, 0)
			rings, perCPU := tracer.reader.(*ringSet)
			if perCPU == exp.OneRing {
				t.Fatalf("a ring per CPU: %v, want %v", perCPU, !exp.OneRing)
			}
			if !perCPU {
				return
			}
			for i, r := range rings.rings[:2] {
				if r.pos == 0 {
					t.Errorf("CPU %d's ring got no record", i)
				}
			}
		})
	}
}

// churnAcrossCPUs listens on 127.0.0.1:port and makes conns connections to
// it from CPU 0, accepted on CPU 1, as churn does (a third reset). The
// client runs ahead of the server, so the listen queue holds every
// connection: a handshake dropped at a full queue whose client then resets
// is never accepted.
func churnAcrossCPUs(t *testing.T, port, conns int) {
	t.Helper()
	ln, addr := listenLoopbackBacklog(t, port, conns)
	served := onCPU(1, func() error {
		buf := make([]byte, 1)
		for i := range conns {
			a, err := acceptWithin(ln, time.Minute)
			if err != nil {
				return fmt.Errorf("after %d of %d connections: %w", i, conns, err)
			}
			for {
				n, err := unix.Read(a, buf)
				if n == 0 || err != nil {
					break
				}
			}
			unix.Close(a)
		}
		return nil
	})
	connected := onCPU(0, func() error {
		for i := range conns {
			c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			if err := unix.Connect(c, addr); err != nil {
				return err
			}
			if i%3 == 0 {
				if err := unix.SetsockoptLinger(c, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1}); err != nil {
					return err
				}
			}
			unix.Close(c)
		}
		return nil
	})
	must(t, <-connected)
	must(t, <-served)
	must(t, unix.Close(ln))
}

// acceptWithin accepts a connection on the listening socket ln, or fails if
// none comes within d, saying how many the kernel had queued: a test waits
// with a bound and says why, rather than hanging until the binary's timeout.
func acceptWithin(ln int, d time.Duration) (int, error) {
	fds := []unix.PollFd{{Fd: int32(ln), Events: unix.POLLIN}}
	deadline := time.Now().Add(d)
	for {
		// Never negative: that would wait for ever.
		n, err := unix.Poll(fds, max(int(time.Until(deadline).Milliseconds()), 0))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return -1, fmt.Errorf("poll the listener: %w", err)
		case n == 0:
			// For a listener, tcpi_unacked is the accept queue's length
			// and tcpi_sacked its limit.
			info, err := unix.GetsockoptTCPInfo(ln, unix.IPPROTO_TCP, unix.TCP_INFO)
			if err != nil {
				return -1, fmt.Errorf("no connection to accept within %v (and TCP_INFO: %v)", d, err)
			}
			return -1, fmt.Errorf("no connection to accept within %v; the accept queue holds %d of at most %d",
				d, info.Unacked, info.Sacked)
		}
		// ln has one acceptor: what poll saw queued is still there.
		a, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
		return a, err
	}
}

// onCPU runs f on a thread of its own bound to cpu, and sends its error.
func onCPU(cpu int, f func() error) <-chan error {
	done := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with the goroutine, and its
		// binding with it.
		runtime.LockOSThread()
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			done <- fmt.Errorf("bind to CPU %d: %w", cpu, err)
			return
		}
		done <- f()
	}()
	return done
}
