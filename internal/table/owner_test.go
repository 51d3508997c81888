package table

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpstat/tcpstat/internal/snapshot"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// ownerView is what a row says about its owner.
type ownerView struct {
	Current, Former uint32 // pids, 0 when none
	Comm            string
	Source          tracer.OwnerSource
}

func ownerOf(r *Row) ownerView {
	if r == nil {
		return ownerView{Comm: "no row"}
	}
	v := ownerView{Source: r.OwnerSource()}
	if o, ok := r.Owner(); ok {
		v.Current, v.Comm = o.PID, o.Comm
	}
	if o, ok := r.FormerOwner(); ok {
		v.Former, v.Comm = o.PID, o.Comm
	}
	return v
}

func orphan(cookie uint64, state tcp.State) snapshot.Socket {
	s := sock(cookie, state)
	s.Inode = 0 // close() detached it from its file
	return s
}

func TestOwners(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []step
		want  ownerView
	}{
		{
			name:  "a connect names its owner",
			steps: []step{ev(move(5*ms, 1, tcp.Close, tcp.SynSent))},
			want:  ownerView{Current: 100, Comm: "curl", Source: tracer.OwnerSyscall},
		},
		{
			name: "an accept names its owner",
			steps: []step{
				ev(&tracer.Event{Kind: tracer.Transition, Time: 5 * ms, Cookie: 1, NetNS: testNS, Local: server, Remote: client, Old: tcp.SynRecv, New: tcp.Established}),
				ev(accept(6*ms, 1, tcp.Established, nginx)),
			},
			want: ownerView{Current: 200, Comm: "nginx", Source: tracer.OwnerAccept},
		},
		{
			name:  "a socket older than tcpstat gets its owner from the dump",
			steps: []step{dm(dump(10*ms, 20*ms, sock(1, tcp.Established, curlOwner)))},
			want:  ownerView{Current: 100, Comm: "curl", Source: tracer.OwnerSnapshot},
		},
		{
			name: "a dump naming the events' owner keeps how the events knew",
			steps: []step{
				ev(move(5*ms, 1, tcp.SynSent, tcp.Established)),
				dm(dump(10*ms, 20*ms, sock(1, tcp.Established, curlOwner))),
			},
			want: ownerView{Current: 100, Comm: "curl", Source: tracer.OwnerSyscall},
		},
		{
			name: "the timewait hand-off keeps the owner as former",
			steps: []step{
				ev(move(5*ms, 1, tcp.FinWait1, tcp.FinWait2)),
				ev(handOff(6*ms, 1, tcp.FinWait2, false)),
			},
			want: ownerView{Former: 100, Comm: "curl", Source: tracer.OwnerSyscall},
		},
		{
			name: "a dump listing the timewait socket keeps the former owner",
			steps: []step{
				ev(handOff(6*ms, 1, tcp.FinWait2, false)),
				dm(dump(10*ms, 20*ms, sock(1, tcp.TimeWait))),
			},
			want: ownerView{Former: 100, Comm: "curl", Source: tracer.OwnerSyscall},
		},
		{
			name: "a missed hand-off found by a dump keeps the owner as former",
			steps: []step{
				ev(move(5*ms, 1, tcp.Established, tcp.FinWait1)),
				dm(dump(10*ms, 20*ms, sock(1, tcp.TimeWait))),
			},
			want: ownerView{Former: 100, Comm: "curl", Source: tracer.OwnerSyscall},
		},
		{
			name: "an orphaned socket keeps its owner as former",
			steps: []step{
				ev(move(5*ms, 1, tcp.SynSent, tcp.Established)),
				dm(dump(10*ms, 20*ms, orphan(1, tcp.FinWait1))),
			},
			want: ownerView{Former: 100, Comm: "curl", Source: tracer.OwnerSyscall},
		},
		{
			name: "an orphaned socket's next transition leaves its owner former",
			steps: []step{
				ev(move(5*ms, 1, tcp.SynSent, tcp.Established)),
				dm(dump(10*ms, 20*ms, orphan(1, tcp.FinWait1))),
				ev(move(30*ms, 1, tcp.FinWait1, tcp.Closing)),
			},
			want: ownerView{Former: 100, Comm: "curl", Source: tracer.OwnerSyscall},
		},
		{
			name: "an event older than a dump without owners still names the owner",
			steps: []step{
				dm(&Dump{Sockets: []snapshot.Socket{sock(1, tcp.Established)}, Start: 10 * ms, End: 20 * ms, NetNS: testNS}),
				ev(move(5*ms, 1, tcp.SynSent, tcp.Established)),
			},
			want: ownerView{Current: 100, Comm: "curl", Source: tracer.OwnerSyscall},
		},
		{
			name: "an accept older than a dump without owners still names the owner",
			steps: []step{
				dm(&Dump{Sockets: []snapshot.Socket{sock(1, tcp.Established)}, Start: 10 * ms, End: 20 * ms, NetNS: testNS}),
				ev(accept(5*ms, 1, tcp.Established, nginx)),
			},
			want: ownerView{Current: 200, Comm: "nginx", Source: tracer.OwnerAccept},
		},
		{
			name: "an event made during a dump that listed the socket names the owner",
			steps: []step{
				dm(dump(10*ms, 20*ms, sock(1, tcp.Established))),
				ev(move(15*ms, 1, tcp.SynSent, tcp.Established)),
			},
			want: ownerView{Current: 100, Comm: "curl", Source: tracer.OwnerSyscall},
		},
		{
			name: "an event older than a dump that found no owner does not name one",
			steps: []step{
				dm(dump(10*ms, 20*ms, sock(1, tcp.Established))),
				ev(move(5*ms, 1, tcp.SynSent, tcp.Established)),
			},
			want: ownerView{},
		},
		{
			// The scan of a dump that began before accept() may have read
			// the process before the descriptor was there.
			name: "an accept made after a dump began keeps its owner from that dump's scan",
			steps: []step{
				dm(&Dump{Sockets: []snapshot.Socket{sock(1, tcp.Established)}, Start: 10 * ms, End: 20 * ms, NetNS: testNS}),
				ev(accept(30*ms, 1, tcp.Established, nginx)),
				dm(dump(25*ms, 40*ms, sock(1, tcp.Established))),
			},
			want: ownerView{Current: 200, Comm: "nginx", Source: tracer.OwnerAccept},
		},
		{
			name: "an accept made before a dump began takes the dump's word",
			steps: []step{
				dm(&Dump{Sockets: []snapshot.Socket{sock(1, tcp.Established)}, Start: 10 * ms, End: 20 * ms, NetNS: testNS}),
				ev(accept(30*ms, 1, tcp.Established, nginx)),
				dm(dump(35*ms, 40*ms, sock(1, tcp.Established))),
			},
			want: ownerView{},
		},
		{
			name:  "a timewait socket older than tcpstat has no owner",
			steps: []step{dm(dump(10*ms, 20*ms, sock(1, tcp.TimeWait)))},
			want:  ownerView{},
		},
		{
			name: "a socket with a file that no scanned process holds has no owner",
			steps: []step{
				ev(move(5*ms, 1, tcp.SynSent, tcp.Established)),
				dm(dump(10*ms, 20*ms, sock(1, tcp.Established))),
			},
			want: ownerView{},
		},
		{
			name: "a dump without an owner scan leaves the owner alone",
			steps: []step{
				ev(move(5*ms, 1, tcp.SynSent, tcp.Established)),
				dm(&Dump{Sockets: []snapshot.Socket{orphan(1, tcp.FinWait1)}, Start: 10 * ms, End: 20 * ms, NetNS: testNS}),
			},
			want: ownerView{Current: 100, Comm: "curl", Source: tracer.OwnerSyscall},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := New(Options{})
			run(tb, tc.steps)
			if diff := cmp.Diff(tc.want, ownerOf(tb.Lookup(1))); diff != "" {
				t.Errorf("owner (-want +got):\n%s", diff)
			}
		})
	}
}
