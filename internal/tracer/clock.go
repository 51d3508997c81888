package tracer

import (
	"time"

	"golang.org/x/sys/unix"
)

// Clock converts the kernel's CLOCK_BOOTTIME stamps into wall-clock time.
// The offset between the two clocks moves when the wall clock is set or
// slewed: call Sync now and then (once a second is plenty).
type Clock struct {
	offset int64 // realtime - boottime, in ns
}

// NewClock returns a Clock synced now.
func NewClock() *Clock {
	c := &Clock{}
	c.Sync()
	return c
}

// Sync measures the offset, between two boot-time reads to bound the error.
func (c *Clock) Sync() {
	var b1, r, b2 unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &b1)
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &r)
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &b2)
	boot := (b1.Nano() + b2.Nano()) / 2
	c.offset = r.Nano() - boot
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
