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
	// AcceptMisses counts runs of the accept programs the kernel skipped
	// because they interrupted another BPF program on the same CPU: each
	// is an Accept event lost (the owner is learned at the socket's next
	// system call instead). Counted by kernels from 6.7; 0 before.
	AcceptMisses uint64
	// Corrupt counts samples Read skipped because they failed to decode.
	Corrupt uint64
	// SocketsFull counts transitions for which no per-socket state could be
	// had (sockets map full, or socket storage refused): they were reported
	// without owner and dwell. With socket storage it also counts accepted
	// sockets that found the sockets map full: they have no owner until
	// their next system call.
	SocketsFull uint64
	// InStorage counts sockets whose state went to socket storage because
	// the sockets map was full (see StateInMapFirst): nothing is lost, each
	// costs more.
	InStorage uint64
	// Swept counts sockets map entries removed because their socket had
	// closed unseen, or closed while the second copy of the transition
	// program, which deletes the entry, was skipped (only for state in the
	// sockets map).
	Swept uint64
	// RunTime and RunCount add up the runs of every attached program; they
	// are zero unless kernel.bpf_stats_enabled is set.
	RunTime  time.Duration
	RunCount uint64

	// forcedLost counts transitions the program dropped on purpose (tests).
	forcedLost uint64
}

// RecursionLost counts events lost to recursion: transitions that neither
// copy of the transition program ran for, and skipped runs of the accept
// programs. While the programs are attached it may briefly count a miss
// whose recovery is still running; after Detach it is exact.
func (s Stats) RecursionLost() uint64 {
	var lost uint64
	if s.RecursionMisses > s.Recovered {
		lost = s.RecursionMisses - s.Recovered
	}
	return lost + s.AcceptMisses + s.forcedLost
}

// Lost counts every event that will never be read.
func (s Stats) Lost() uint64 { return s.RingBufferFull + s.RecursionLost() + s.Corrupt }

// Stats reads the kernel program's counters and the programs' statistics.
func (t *Tracer) Stats() (Stats, error) {
	s := Stats{Corrupt: t.corrupt.Load()}
	// Recovered before misses: every recovery follows its miss, so the
	// difference never goes negative.
	for _, c := range []struct {
		index tcpstateCounter
		to    *uint64
	}{
		{tcpstateCounterCOUNTER_RECOVERED, &s.Recovered},
		{tcpstateCounterCOUNTER_RINGBUF_FULL, &s.RingBufferFull},
		{tcpstateCounterCOUNTER_STATE_FULL, &s.SocketsFull},
		{tcpstateCounterCOUNTER_SWEPT, &s.Swept},
		{tcpstateCounterCOUNTER_IN_STORAGE, &s.InStorage},
		{tcpstateCounterCOUNTER_FORCED_SKIP, &s.RecursionMisses},
		{tcpstateCounterCOUNTER_FORCED_LOST, &s.forcedLost},
	} {
		v, err := t.counter(c.index)
		if err != nil {
			return s, err
		}
		*c.to = v
	}
	for _, prog := range []*ebpf.Program{t.objs.SetStateFirst, t.objs.SetStateSecond, t.objs.Accept4Exit, t.objs.AcceptExit} {
		ps, err := prog.Stats()
		if err != nil {
			return s, fmt.Errorf("read program statistics: %w", err)
		}
		switch prog {
		case t.objs.SetStateFirst:
			s.RecursionMisses += ps.RecursionMisses
		case t.objs.Accept4Exit, t.objs.AcceptExit:
			s.AcceptMisses += ps.RecursionMisses
		}
		s.RunTime += ps.Runtime
		s.RunCount += ps.RunCount
	}
	return s, nil
}

func (t *Tracer) counter(index tcpstateCounter) (uint64, error) {
	var perCPU []uint64
	if err := t.objs.Counters.Lookup(uint32(index), &perCPU); err != nil {
		return 0, fmt.Errorf("read counter %d: %w", index, err)
	}
	var sum uint64
	for _, v := range perCPU {
		sum += v
	}
	return sum, nil
}
