package tracer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// sampleReader is what Tracer reads samples from: one ring buffer shared by
// the CPUs (cilium/ebpf's reader) or a ring per CPU (ringSet).
type sampleReader interface {
	// next returns the next sample, valid until the next call.
	next() ([]byte, error)
	SetDeadline(time.Time)
	Flush() error
	AvailableBytes() int
	Close() error
}

// oneRing reads the ring buffer the CPUs share.
type oneRing struct {
	*ringbuf.Reader
	record ringbuf.Record
}

func (o *oneRing) next() ([]byte, error) {
	err := o.ReadInto(&o.record)
	return o.record.RawSample, err
}

// The header of a ring buffer record (include/uapi/linux/bpf.h).
const (
	ringBusyBit    = 1 << 31
	ringDiscardBit = 1 << 30
	ringHeaderSize = 8
)

// cpuRing is one CPU's ring buffer, mapped into memory and read in place.
type cpuRing struct {
	cons, prod       []byte  // the mappings: the consumer's page; the producer's page and the data twice
	consPos, prodPos *uint64 // positions shared with the kernel
	data             []byte  // the data area, mapped twice so that a record never wraps
	mask             uint64
	pos              uint64 // the next record
	stored           uint64 // the position last given back to the kernel
	ready            uint64 // records in [pos, ready) were seen committed
	readyAt          uint64 // the scan that last moved ready
	checkedAt        uint64 // the last scan
	writing          bool   // the last scan stopped at a record being written
	head             []byte // the sample at pos, nil when pos == ready
	headTS           uint64
	headBytes        uint64 // the head's record, header and padding included
}

// ringSet reads a ring buffer per CPU and returns their records in an
// order that keeps each socket's events in order.
//
// One ring gives that order for free: records go in as they are reserved.
// Across rings, a socket's events can be on two CPUs, each made only after
// the one before was committed (the socket's lock orders them). So a record
// may be returned only once every ring with nothing to give was found empty
// after that record was seen committed: any record committed before it is
// then seen. Among the rings' first records the earliest by time goes first,
// which is their order when they are related, and as good as any when not.
//
// cilium/ebpf's reader learns that its ring is empty from epoll_wait, a
// system call; this asks each ring in shared memory, once per batch.
type ringSet struct {
	mu       sync.Mutex // held by next, and by Close to unmap
	rings    []*cpuRing
	current  *cpuRing // the ring whose head next returned last
	epoch    uint64   // counts scans: a logical clock of what was seen when
	epfd     int
	wakefd   int // an eventfd: Flush and Close
	events   []unix.EpollEvent
	deadline time.Time
	flushed  bool // Flush was seen: return what is buffered, then ErrFlushed
	returned int  // records returned since every ring was last asked
	closing  atomic.Bool
}

// newRingSet maps the ring buffers, whose file descriptors stay the
// caller's, each of size bytes.
func newRingSet(fds []int, size int) (_ *ringSet, err error) {
	s := &ringSet{epfd: -1, wakefd: -1}
	defer func() {
		if err != nil {
			s.release()
		}
	}()
	if s.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	if s.wakefd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	for _, fd := range append([]int{s.wakefd}, fds...) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return nil, fmt.Errorf("epoll: %w", err)
		}
	}
	s.events = make([]unix.EpollEvent, len(fds)+1)
	page := os.Getpagesize()
	for _, fd := range fds {
		r := &cpuRing{mask: uint64(size - 1)}
		s.rings = append(s.rings, r)
		if r.cons, err = unix.Mmap(fd, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
			return nil, fmt.Errorf("map a ring buffer's consumer page: %w", err)
		}
		if r.prod, err = unix.Mmap(fd, int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED); err != nil {
			return nil, fmt.Errorf("map a ring buffer's data: %w", err)
		}
		r.consPos = (*uint64)(unsafe.Pointer(&r.cons[0]))
		r.prodPos = (*uint64)(unsafe.Pointer(&r.prod[0]))
		r.data = r.prod[page:]
		r.pos = atomic.LoadUint64(r.consPos)
		r.stored, r.ready = r.pos, r.pos
	}
	return s, nil
}

// errRingCorrupt: a record's length does not fit its ring, or passes the
// producer's position.
var errRingCorrupt = errors.New("ring buffer record longer than its ring or past its end")

func (s *ringSet) next() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current != nil {
		s.current.advance()
		s.current = nil
	}
	for {
		if s.closing.Load() || s.rings == nil {
			return nil, ringbuf.ErrClosed
		}
		r, err := s.earliest()
		if err != nil {
			return nil, err
		}
		if r != nil {
			s.current = r
			s.returned++
			return r.head, nil
		}
		if s.writing() {
			// Committed within microseconds: neither a flush nor a
			// deadline ends the read before it.
			time.Sleep(20 * time.Microsecond)
			continue
		}
		if s.flushed {
			s.flushed = false
			return nil, ringbuf.ErrFlushed
		}
		if !s.deadline.IsZero() && !time.Now().Before(s.deadline) {
			return nil, os.ErrDeadlineExceeded
		}
		if err := s.wait(); err != nil {
			return nil, err
		}
	}
}

// earliest returns the ring whose head goes next, nil if every ring is
// empty.
func (s *ringSet) earliest() (*cpuRing, error) {
	for {
		var best *cpuRing
		for _, r := range s.rings {
			if r.head != nil && (best == nil || r.headTS < best.headTS) {
				best = r
			}
		}
		// With no head, every ring is asked; with one, those asked before
		// it was seen. All are asked every askEvery records as well: a
		// ring's batch can hold thousands, and the events of other CPUs
		// meanwhile would come that much later than their time.
		all := best == nil || s.returned >= askEvery
		if all {
			s.returned = 0
		}
		found := false
		for _, r := range s.rings {
			if r.head == nil && (all || r.checkedAt < best.readyAt) {
				if err := s.scan(r); err != nil {
					return nil, err
				}
				found = found || r.head != nil
			}
		}
		if !found {
			return best, nil
		}
	}
}

// askEvery bounds how many records go by before every ring is asked again.
const askEvery = 64

// writing reports whether a ring's next record is being written.
func (s *ringSet) writing() bool {
	for _, r := range s.rings {
		if r.writing {
			return true
		}
	}
	return false
}

// scan moves r.ready past the records committed since, and loads its head.
func (s *ringSet) scan(r *cpuRing) error {
	end := atomic.LoadUint64(r.prodPos)
	p := r.ready
	for p < end {
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[p&r.mask])))
		if hdr&ringBusyBit != 0 {
			break
		}
		n, err := r.recordBytes(hdr)
		if err != nil {
			return err
		}
		p += n
	}
	if p > end {
		return errRingCorrupt
	}
	r.writing = p < end
	s.epoch++
	r.checkedAt = s.epoch
	if p != r.ready {
		r.ready, r.readyAt = p, s.epoch
	}
	return r.loadHead()
}

func (r *cpuRing) recordBytes(hdr uint32) (uint64, error) {
	n := uint64(hdr&^(ringBusyBit|ringDiscardBit)) + ringHeaderSize
	if n > r.mask+1 {
		return 0, errRingCorrupt
	}
	return (n + 7) &^ 7, nil
}

// loadHead sets head to the first record not discarded, if any.
func (r *cpuRing) loadHead() error {
	r.head = nil
	for r.pos < r.ready {
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[r.pos&r.mask])))
		n, err := r.recordBytes(hdr)
		if err != nil {
			return err
		}
		if hdr&ringDiscardBit != 0 {
			r.pos += n
			continue
		}
		start := r.pos&r.mask + ringHeaderSize
		r.head = r.data[start : start+uint64(hdr&^(ringBusyBit|ringDiscardBit))]
		r.headBytes, r.headTS = n, 0
		if len(r.head) >= int(off.ts)+8 {
			r.headTS = binary.NativeEndian.Uint64(r.head[off.ts:])
		}
		return nil
	}
	r.give()
	return nil
}

// advance passes over the head, which the caller has read.
func (r *cpuRing) advance() {
	r.pos += r.headBytes
	r.head = nil
	// The space goes back to the kernel in batches: the position is a
	// cache line every CPU reserving in this ring reads.
	if r.pos-r.stored >= (r.mask+1)/8 {
		r.give()
	}
	if r.pos < r.ready {
		_ = r.loadHead() // its length was checked by the scan
	}
}

// give hands the space read so far back to the kernel.
func (r *cpuRing) give() {
	if r.stored != r.pos {
		atomic.StoreUint64(r.consPos, r.pos)
		r.stored = r.pos
	}
}

// wait blocks until a ring may have a record, Flush or Close, or the
// deadline.
func (s *ringSet) wait() error {
	// A ring polls readable while the kernel's consumer position is behind.
	for _, r := range s.rings {
		r.give()
	}
	timeout := -1
	if !s.deadline.IsZero() {
		timeout = int((time.Until(s.deadline) + time.Millisecond - 1) / time.Millisecond)
		timeout = max(timeout, 0)
	}
	n, err := unix.EpollWait(s.epfd, s.events, timeout)
	if errors.Is(err, unix.EINTR) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("epoll_wait: %w", err)
	}
	for _, ev := range s.events[:n] {
		if int(ev.Fd) != s.wakefd {
			continue
		}
		var buf [8]byte
		_, _ = unix.Read(s.wakefd, buf[:])
		if s.closing.Load() {
			return ringbuf.ErrClosed
		}
		s.flushed = true
	}
	return nil
}

// SetDeadline makes next return os.ErrDeadlineExceeded at d once every ring
// is empty; the zero time removes it.
func (s *ringSet) SetDeadline(d time.Time) {
	s.mu.Lock()
	s.deadline = d
	s.mu.Unlock()
}

// Flush makes next return every record committed by now, then ErrFlushed.
func (s *ringSet) Flush() error {
	return s.wake()
}

func (s *ringSet) wake() error {
	one := [8]byte{1}
	if _, err := unix.Write(s.wakefd, one[:]); err != nil && !errors.Is(err, unix.EAGAIN) {
		return fmt.Errorf("wake the ring buffer reader: %w", err)
	}
	return nil
}

// AvailableBytes is what the rings hold past what was read. Call it from
// the reading goroutine.
func (s *ringSet) AvailableBytes() int {
	n := 0
	for _, r := range s.rings {
		n += int(atomic.LoadUint64(r.prodPos) - r.pos)
	}
	return n
}

// Close interrupts next and unmaps the rings. It is idempotent.
func (s *ringSet) Close() error {
	if s.closing.Swap(true) {
		return nil
	}
	err := s.wake()
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(err, s.release())
}

func (s *ringSet) release() error {
	var errs []error
	for _, r := range s.rings {
		for _, m := range [][]byte{r.cons, r.prod} {
			if m != nil {
				errs = append(errs, unix.Munmap(m))
			}
		}
	}
	s.rings, s.current = nil, nil
	for _, fd := range []int{s.epfd, s.wakefd} {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
		}
	}
	s.epfd, s.wakefd = -1, -1
	return errors.Join(errs...)
}
