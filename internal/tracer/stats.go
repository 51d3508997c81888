package tracer

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"
)

// Stats are cumulative counts since the Tracer started. Report deltas
// between two Stats; nothing here is ever reset.
type Stats struct {
	// RingBufferFull counts events lost because the ring buffer was full.
	RingBufferFull uint64
	// RecursionMisses counts transitions the kernel did not run the first
	// program for, because the transition interrupted a run of it on the
	// same CPU; Recovered counts those the second program took instead.
	RecursionMisses uint64
	Recovered       uint64
	// SocketsFull counts transitions whose socket did not fit the sockets
	// map: they were reported without owner and dwell.
	SocketsFull uint64
	// RunTime and RunCount add up the runs of every attached program; they
	// are zero unless kernel.bpf_stats_enabled is set.
	RunTime  time.Duration
	RunCount uint64
}

// RecursionLost counts transitions that neither program ran for. While the
// programs are attached it may briefly count a miss whose recovery is still
// running; after Detach it is exact.
func (s Stats) RecursionLost() uint64 {
	if s.RecursionMisses > s.Recovered {
		return s.RecursionMisses - s.Recovered
	}
	return 0
}

// Lost counts every event that will never be read.
func (s Stats) Lost() uint64 { return s.RingBufferFull + s.RecursionLost() }

// Stats reads the kernel program's counters and the programs' statistics.
func (t *Tracer) Stats() (Stats, error) {
	var s Stats
	// Recovered before misses: every recovery follows its miss, so the
	// difference never goes negative.
	var err error
	if s.Recovered, err = t.counter(counterRecovered); err != nil {
		return s, err
	}
	if s.RingBufferFull, err = t.counter(counterRingbufFull); err != nil {
		return s, err
	}
	if s.SocketsFull, err = t.counter(counterStateFull); err != nil {
		return s, err
	}
	for i, prog := range []*ebpf.Program{t.objs.SetStateFirst, t.objs.SetStateSecond, t.objs.Accept4Exit, t.objs.AcceptExit} {
		ps, err := prog.Stats()
		if err != nil {
			return s, fmt.Errorf("read program statistics: %w", err)
		}
		if i == 0 {
			s.RecursionMisses = ps.RecursionMisses
		}
		s.RunTime += ps.Runtime
		s.RunCount += ps.RunCount
	}
	return s, nil
}

// Counters of bpf/tcpstate.c, enum counter.
const (
	counterRingbufFull = 0
	counterRecovered   = 1
	counterStateFull   = 2
)

func (t *Tracer) counter(index uint32) (uint64, error) {
	var perCPU []uint64
	if err := t.objs.Counters.Lookup(index, &perCPU); err != nil {
		return 0, fmt.Errorf("read counter %d: %w", index, err)
	}
	var sum uint64
	for _, v := range perCPU {
		sum += v
	}
	return sum, nil
}
