package livetable

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/tcpstat/tcpstat/internal/netstat"
	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/table"
	"github.com/tcpstat/tcpstat/internal/tcp"
)

// timeWaitOverflows is the kernel's count, in this network namespace, of
// sockets that closed without a timewait socket because the timewait table
// was full (TcpExt TCPTimeWaitOverflow; the limit is tcp_max_tw_buckets,
// half the established hash: 4096 in the kernel matrix's 1 GiB guest, which
// TestAccuracy's workload fills for a minute).
func timeWaitOverflows(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/net/netstat")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	secs, err := netstat.ParseCounters(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secs {
		for i, k := range s.Keys {
			if s.Name == "TcpExt" && k == "TCPTimeWaitOverflow" {
				return s.Values[i]
			}
		}
	}
	t.Fatal("/proc/net/netstat has no TcpExt TCPTimeWaitOverflow")
	return 0
}

// closerEnd is what the kernel made of the end that closed first once its
// peer acknowledged the FIN.
type closerEnd int

const (
	// A timewait socket in FIN_WAIT2: the peer's FIN moves it to TIME_WAIT.
	timeWaitSocket closerEnd = iota
	// Still the full socket, on a timer: the ACK found it locked by its
	// owner in the middle of close(2), or TCP_LINGER2 outlasts TIME_WAIT.
	fullSocket
	// No socket at all: the timewait table was full and the kernel closed
	// it (TCPTimeWaitOverflow rose). The tracepoint sees the same
	// FIN_WAIT2 → CLOSE as a hand-off, so the table infers a timewait
	// row; the peer's FIN then meets no socket and is answered with a
	// reset, which ends that row.
	noSocket
)

func (c closerEnd) String() string {
	return [...]string{"a timewait socket", "the full socket", "no socket (timewait table full)"}[c]
}

// firstCloser asks the kernel what is left of the end at closer (of a
// connection to peer, both unmapped) after its close: its dump, and the
// timewait overflow count read before the close (overflowsBefore).
func firstCloser(t *testing.T, closer, peer string, overflowsBefore int64) closerEnd {
	t.Helper()
	unlisted := 0 // dumps in a row that did not list it
	for deadline := time.Now().Add(waitTimeout); ; time.Sleep(10 * time.Millisecond) {
		socks, err := snapshot.DumpTCP(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		listed := false
		for _, s := range socks {
			k := table.KeyOf(0, s.Local, s.Remote)
			if k.Local.String() != closer || k.Remote.String() != peer {
				continue
			}
			listed = true
			if s.State != tcp.FinWait2 {
				break // not yet acknowledged
			}
			if s.Timer == snapshot.TimerTimeWait {
				return timeWaitSocket
			}
			t.Logf("%s: FIN_WAIT2 as a full socket, on a timer", closer)
			return fullSocket
		}
		unlisted++
		if listed {
			unlisted = 0
		}
		// Two dumps, as one may skip a socket under churn.
		if unlisted >= 2 && timeWaitOverflows(t) > overflowsBefore {
			t.Logf("%s: closed without a timewait socket, the timewait table being full", closer)
			return noSocket
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s → %s: not in FIN_WAIT2 after %v (listed %v, no timewait overflow)", closer, peer, waitTimeout, listed)
		}
	}
}
