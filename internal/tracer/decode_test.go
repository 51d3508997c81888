package tracer

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"
	"github.com/google/go-cmp/cmp"

	"github.com/tcpstat/tcpstat/internal/tcp"
)

// sample encodes a struct event the way the kernel program writes it.
func sample(t testing.TB, e tcpstateEvent) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, e); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func comm(s string) (c [16]int8) {
	for i := range len(s) {
		c[i] = int8(s[i])
	}
	return c
}

func TestDecode(t *testing.T) {
	v6 := netip.MustParseAddr("2001:db8::1").As16()
	for _, tc := range []struct {
		name string
		in   tcpstateEvent
		want Event
	}{{
		name: "active open with owner",
		in: tcpstateEvent{
			TsNs: 1_000, Cookie: 42, DwellNs: 1500, Netns: 4026531840, Family: afInet,
			Saddr: [16]uint8{127, 0, 0, 1}, Daddr: [16]uint8{127, 0, 0, 2}, Sport: 40000, Dport: 80,
			Kind: 1, Oldstate: 2, Newstate: 1, Flags: flagOwnerKnown | flagDwellKnown, OwnerSource: 1,
			OwnerPid: 100, OwnerUid: 1000, OwnerCgroup: 7, OwnerComm: comm("curl"),
			TaskPid: 0, TaskComm: comm("swapper/1"),
		},
		want: Event{
			Kind: Transition, Time: 1_000, Cookie: 42, NetNS: 4026531840,
			Local:  netip.MustParseAddrPort("127.0.0.1:40000"),
			Remote: netip.MustParseAddrPort("127.0.0.2:80"),
			Old:    tcp.SynSent, New: tcp.Established,
			Owner: Process{PID: 100, Comm: "curl", UID: 1000, Cgroup: 7}, OwnerKnown: true, OwnerSource: OwnerSyscall,
			Task:  Process{Comm: "swapper/1"},
			Dwell: 1500 * time.Nanosecond, DwellKnown: true,
		},
	}, {
		name: "inferred timewait over IPv6 with counters, owner unknown",
		in: tcpstateEvent{
			TsNs: 5, Cookie: 9, Family: afInet6, Saddr: v6, Daddr: v6, Sport: 443, Dport: 5555,
			Kind: 1, Oldstate: 5, Newstate: 6, Flags: flagInferred | flagTimeWaitFinWait | flagSynthetic,
			Reason: 1, BytesReceived: 10, BytesAcked: 20, TotalRetrans: 3, SrttUs: 250,
			OwnerPid: 99, OwnerComm: comm("ignored"), TaskComm: comm("ksoftirqd/0"), TaskPid: 14,
		},
		want: Event{
			Kind: Transition, Time: 5, Cookie: 9,
			Local:  netip.AddrPortFrom(netip.AddrFrom16(v6), 443),
			Remote: netip.AddrPortFrom(netip.AddrFrom16(v6), 5555),
			Old:    tcp.FinWait2, New: tcp.TimeWait, Inferred: true, TimeWaitFinWait2: true,
			Reason: ReasonTimeWait, Synthetic: true,
			Task:     Process{PID: 14, Comm: "ksoftirqd/0"},
			Counters: Counters{BytesReceived: 10, BytesAcked: 20, Retransmits: 3, SRTT: 250 * time.Microsecond},
		},
	}, {
		name: "accept, full-length command name",
		in: tcpstateEvent{
			Cookie: 3, Family: afInet, Kind: 2, Oldstate: 1, Newstate: 1, Flags: flagOwnerKnown, OwnerSource: 2,
			OwnerPid: 5, OwnerComm: comm("0123456789abcdef"), TaskComm: comm("0123456789abcdef"), TaskPid: 5,
		},
		want: Event{
			Kind: Accept, Cookie: 3, Local: netip.MustParseAddrPort("0.0.0.0:0"), Remote: netip.MustParseAddrPort("0.0.0.0:0"),
			Old: tcp.Established, New: tcp.Established,
			Owner: Process{PID: 5, Comm: "0123456789abcdef"}, OwnerKnown: true, OwnerSource: OwnerAccept,
			Task: Process{PID: 5, Comm: "0123456789abcdef"},
		},
	}, {
		name: "a TCP state this build does not know passes through",
		in:   tcpstateEvent{Cookie: 4, Family: afInet, Kind: 1, Oldstate: 1, Newstate: 14},
		want: Event{
			Kind: Transition, Cookie: 4, Local: netip.MustParseAddrPort("0.0.0.0:0"), Remote: netip.MustParseAddrPort("0.0.0.0:0"),
			Old: tcp.Established, New: tcp.State(14),
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var got Event
			if err := NewDecoder().Decode(sample(t, tc.in), &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("Decode (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	valid := tcpstateEvent{Family: afInet, Kind: 1, Oldstate: 7, Newstate: 2}
	for _, tc := range []struct {
		name string
		raw  []byte
		want string
	}{
		{"empty", nil, "0 bytes"},
		{"short", sample(t, valid)[:eventSize-1], "bytes, want"},
		{"kind", sample(t, func() tcpstateEvent { e := valid; e.Kind = 9; return e }()), "unknown kind"},
		{"state 0", sample(t, func() tcpstateEvent { e := valid; e.Newstate = 0; return e }()), "TCP state 0"},
		{"owner source without owner", sample(t, func() tcpstateEvent { e := valid; e.OwnerSource = 1; return e }()), "owner source"},
		{"owner without source", sample(t, func() tcpstateEvent { e := valid; e.Flags = flagOwnerKnown; return e }()), "owner source"},
		{"owner source", sample(t, func() tcpstateEvent { e := valid; e.Flags = flagOwnerKnown; e.OwnerSource = 9; return e }()), "owner source"},
		{"family", sample(t, func() tcpstateEvent { e := valid; e.Family = 1; return e }()), "unknown address family"},
		{"reason", sample(t, func() tcpstateEvent { e := valid; e.Reason = 200; return e }()), "unknown close reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ev Event
			err := NewDecoder().Decode(tc.raw, &ev)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decode: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestDecoderCommCacheIsBounded(t *testing.T) {
	d := NewDecoder()
	e := tcpstateEvent{Family: afInet, Kind: 1, Oldstate: 7, Newstate: 2}
	var ev Event
	for i := range maxComms + 100 {
		e.TaskComm = comm(string(rune('a'+i%26)) + strings.Repeat("x", i%10) + string(rune('A'+i/26%26)) + string(rune('0'+i/676)))
		if err := d.Decode(sample(t, e), &ev); err != nil {
			t.Fatal(err)
		}
	}
	if len(d.comms) > maxComms {
		t.Errorf("cache holds %d names, bound is %d", len(d.comms), maxComms)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(sample(f, tcpstateEvent{Family: afInet, Kind: 1, Oldstate: 7, Newstate: 2}))
	f.Add(sample(f, tcpstateEvent{Family: afInet6, Kind: 2, Oldstate: 1, Newstate: 1, Flags: 0xff}))
	f.Add([]byte{})
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, raw []byte) {
		var ev Event
		if err := d.Decode(raw, &ev); err != nil {
			return
		}
		if ev.Old == 0 || ev.New == 0 || !ev.Local.Addr().IsValid() || ev.OwnerKnown != (ev.OwnerSource != OwnerNone) {
			t.Errorf("accepted an invalid event: %+v", ev)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	raw := sample(b, tcpstateEvent{
		Family: afInet, Kind: 1, Oldstate: 2, Newstate: 1, Flags: flagOwnerKnown, OwnerSource: 1,
		OwnerComm: comm("nginx"), TaskComm: comm("ksoftirqd/0"),
	})
	d := NewDecoder()
	var ev Event
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Decode(raw, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRecursionLostCountsEveryProgram(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   Stats
		want uint64
	}{
		{"all recovered", Stats{RecursionMisses: 5, Recovered: 5}, 0},
		{"first and second both skipped", Stats{RecursionMisses: 5, Recovered: 3}, 2},
		{"accept programs skipped", Stats{RecursionMisses: 5, Recovered: 5, AcceptMisses: 4}, 4},
		{"a recovery still running", Stats{RecursionMisses: 5, Recovered: 6, AcceptMisses: 1}, 1},
	} {
		if got := tc.st.RecursionLost(); got != tc.want {
			t.Errorf("%s: RecursionLost() = %d, want %d", tc.name, got, tc.want)
		}
		if got := tc.st.Lost(); got != tc.want {
			t.Errorf("%s: Lost() = %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := (Stats{RingBufferFull: 2, Corrupt: 3, AcceptMisses: 1}).Lost(); got != 6 {
		t.Errorf("Lost() = %d, want ring buffer 2 + corrupt 3 + accept 1", got)
	}
}

// Every constant of the BPF object is set before load, whatever Options
// hold: one left at its compiled-in value is a forgotten setting (the
// wakeup period was, once, and every event woke the consumer).
func TestConfigureSetsEveryConstant(t *testing.T) {
	spec, err := loadTcpstate()
	if err != nil {
		t.Fatal(err)
	}
	perCPU, err := sizeMaps(spec, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := configure(spec, Options{}, &Tracer{cookies: true, storage: true, hashFirst: true, ringBytes: perCPU}, btf.NewCache()); err != nil {
		t.Fatal(err)
	}
	var records uint64
	if err := spec.Variables["wakeup_records"].Get(&records); err != nil {
		t.Fatal(err)
	}
	if records < 2 || records&(records-1) != 0 {
		t.Errorf("wakeup_records = %d with the default ring buffer, want a power of two above 1", records)
	}
}

func TestRingPerCPU(t *testing.T) {
	for _, tc := range []struct{ size, cpus, want int }{
		{8 << 20, 1, 8 << 20},
		{8 << 20, 2, 8 << 20},
		{8 << 20, 3, 4 << 20},
		{8 << 20, 4, 4 << 20},
		{8 << 20, 64, 1 << 20},
		{1 << 20, 2, 1 << 20},
		{4096, 2, 4096},
		{64 << 20, 4, 32 << 20},
	} {
		if got := ringPerCPU(tc.size, tc.cpus); got != tc.want {
			t.Errorf("ringPerCPU(%d, %d) = %d, want %d", tc.size, tc.cpus, got, tc.want)
		}
	}
}

func TestWakeupRecords(t *testing.T) {
	for _, size := range []uint32{4096, 1 << 16, DefaultRingBufferSize, 1 << 30} {
		for _, perCPU := range []int{0, int(size)} {
			n := wakeupRecords(size, perCPU)
			if n == 0 || n&(n-1) != 0 {
				t.Errorf("wakeupRecords(%d, %d) = %d, want a power of two", size, perCPU, n)
			}
			if sixteenth := uint64(size) / 16 / uint64(eventSize+8); n > max(sixteenth, 1) {
				t.Errorf("wakeupRecords(%d, %d) = %d, more than a sixteenth of the ring (%d records)", size, perCPU, n, sixteenth)
			}
		}
	}
	if one, own := wakeupRecords(1<<22, 0), wakeupRecords(1<<12, 1<<22); runtime.NumCPU() > 1 && one >= own {
		t.Errorf("wakeupRecords: %d records per wakeup from a share of one ring, %d from a ring of its own, want fewer", one, own)
	}
}
