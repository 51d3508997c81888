package format

import (
	"fmt"
	"strconv"
	"time"

	"github.com/tcpstat/tcpstat/internal/tracer"
)

// Loss reasons, as JSON "reason" values of "lost" objects.
const (
	LostRingBufferFull = "ring_buffer_full"
	LostRecursion      = "recursion"
	LostCorrupt        = "corrupt"
)

// AppendLostJSON appends a "lost" object: count events lost for reason since
// the last report, total since the start.
func AppendLostJSON(b []byte, at time.Time, reason string, count, total uint64) []byte {
	b = append(b, `{"type":"lost","time":"`...)
	b = appendJSONTime(b, at)
	b = append(b, `","reason":"`...)
	b = append(b, reason...)
	b = append(b, `","count":`...)
	b = strconv.AppendUint(b, count, 10)
	b = append(b, `,"total":`...)
	b = strconv.AppendUint(b, total, 10)
	return append(b, "}\n"...)
}

// AppendLostLine is the human form of AppendLostJSON.
func AppendLostLine(b []byte, at time.Time, reason string, count, total uint64) []byte {
	b = appendClock(b, at)
	return fmt.Appendf(b, " !! LOST %d events (%s; %d in all)\n", count, reason, total)
}

// Summary is what a run of watch read and lost; the tracer counts corrupt
// samples with its other losses (Stats.Corrupt).
type Summary struct {
	Events uint64
	Stats  tracer.Stats
	// FilterForced counts sockets the filter judged before their port or
	// owner was known (filter.Gate.Forced).
	FilterForced uint64
}

// AppendSummaryJSON appends the "summary" object written when watch ends.
func AppendSummaryJSON(b []byte, at time.Time, s Summary) []byte {
	b = append(b, `{"type":"summary","time":"`...)
	b = appendJSONTime(b, at)
	return fmt.Appendf(b, `","events":%d,"lost":%d,"lost_ring_buffer_full":%d,"lost_recursion":%d,`+
		`"lost_corrupt":%d,"recursion_misses":%d,"recursion_recovered":%d,"sockets_map_full":%d,`+
		`"state_in_storage":%d,"filter_forced":%d,"bpf_run_ns":%d,"bpf_runs":%d}`+"\n",
		s.Events, s.Stats.Lost(), s.Stats.RingBufferFull, s.Stats.RecursionLost(), s.Stats.Corrupt,
		s.Stats.RecursionMisses, s.Stats.Recovered, s.Stats.SocketsFull, s.Stats.InStorage, s.FilterForced,
		s.Stats.RunTime.Nanoseconds(), s.Stats.RunCount)
}

// AppendSummaryLine is the human form of AppendSummaryJSON.
func AppendSummaryLine(b []byte, s Summary) []byte {
	b = fmt.Appendf(b, "%d events, %d lost (ring buffer full %d, recursion %d, corrupt %d); ",
		s.Events, s.Stats.Lost(), s.Stats.RingBufferFull, s.Stats.RecursionLost(), s.Stats.Corrupt)
	b = fmt.Appendf(b, "%d nested transitions recovered by the second program", s.Stats.Recovered)
	if s.Stats.SocketsFull > 0 {
		b = fmt.Appendf(b, "; %d without owner: sockets map full", s.Stats.SocketsFull)
	}
	if s.Stats.InStorage > 0 {
		b = fmt.Appendf(b, "; %d sockets' state in socket storage: sockets map full, nothing lost", s.Stats.InStorage)
	}
	if s.FilterForced > 0 {
		b = fmt.Appendf(b, "; %d sockets judged by the filter before their port or owner was known", s.FilterForced)
	}
	return append(b, '\n')
}
