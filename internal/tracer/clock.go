package tracer

import (
	"math"
	"time"

	"golang.org/x/sys/unix"
)

// Clock converts the kernel's CLOCK_BOOTTIME stamps into wall-clock time.
// The offset between the two clocks moves when the wall clock is set or
// slewed: call Sync now and then (once a second is plenty).
type Clock struct {
	offset int64 // realtime - boottime, in ns
}

// NewClock returns a Clock synced now. Its first offset is the best
// measurement there is, even one Sync would drop.
func NewClock() *Clock {
	offset, _ := measureOffset()
	return &Clock{offset: offset}
}

// Sync measures the offset again; without a consistent measurement the
// offset stays.
func (c *Clock) Sync() {
	if offset, ok := measureOffset(); ok {
		c.offset = offset
	}
}

// measureOffset measures the offset between two boot-time reads, to bound
// the error.
func measureOffset() (offset int64, ok bool) {
	return narrowestOffset(func() (b1, r, b2 int64) {
		var t1, tr, t2 unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &t1)
		_ = unix.ClockGettime(unix.CLOCK_REALTIME, &tr)
		_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &t2)
		return t1.Nano(), tr.Nano(), t2.Nano()
	})
}

// syncTries bounds the measurements of one Sync; one within syncEnough
// ends it early.
const (
	syncTries  = 8
	syncEnough = 20 * time.Microsecond
)

// narrowestOffset takes the offset from the measurement whose two boot-time
// reads are closest: a thread preempted between them (for 100 ms on a
// loaded host, or in an emulated guest) would put the midpoint, and every
// time converted, off by up to half the preemption. A measurement whose
// second boot-time read comes before its first is no measurement: the
// thread moved between CPUs whose clocks disagree (unsynchronized TSCs, as
// in an emulated guest), and its realtime read may be either CPU's. ok is
// false when every measurement was such; offset is then the last one's.
func narrowestOffset(read func() (b1, r, b2 int64)) (offset int64, ok bool) {
	width := int64(math.MaxInt64)
	for range syncTries {
		b1, r, b2 := read()
		if w := b2 - b1; w >= 0 && w < width {
			width, offset, ok = w, r-(b1+b2)/2, true
		} else if !ok {
			offset = r - (b1+b2)/2
		}
		if width <= int64(syncEnough) {
			break
		}
	}
	return offset, ok
}

// Time converts a boot-time stamp to wall-clock time.
func (c *Clock) Time(boot uint64) time.Time {
	return time.Unix(0, int64(boot)+c.offset)
}

// Now reads CLOCK_BOOTTIME: the current time on the clock of Event.Time.
func Now() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return uint64(ts.Nano())
}
