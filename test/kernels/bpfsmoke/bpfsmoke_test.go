package bpfsmoke

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/tcpstat/tcpstat/internal/tcp"
)

// requireBPF skips unless root, and lifts the memlock limit that kernels
// before 5.11 charge BPF maps against (map creation fails with EPERM).
func requireBPF(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatalf("remove memlock limit: %v", err)
	}
}

func TestKernelBTFDescribesTCPSock(t *testing.T) {
	requireBPF(t)
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatalf("load kernel BTF: %v", err)
	}
	var sock *btf.Struct
	if err := spec.TypeByName("tcp_sock", &sock); err != nil {
		t.Fatalf("find struct tcp_sock in kernel BTF: %v", err)
	}
	for _, field := range []string{"srtt_us", "total_retrans", "bytes_received"} {
		found := false
		for _, m := range sock.Members {
			found = found || m.Name == field
		}
		if !found {
			t.Errorf("struct tcp_sock has no %s in kernel BTF", field)
		}
	}
}

// transition is one (old, new) state pair the program reports.
type transition struct{ from, to tcp.State }

func (tr transition) String() string { return fmt.Sprintf("%v→%v", tr.from, tr.to) }

// loadStateTracer loads a tp_btf program on inet_sock_set_state that puts
// (oldstate, newstate) of every transition into a ring buffer, and
// attaches it. Written with the assembler so the test needs no compiler.
func loadStateTracer(t *testing.T) *ringbuf.Reader {
	t.Helper()
	events, err := ebpf.NewMap(&ebpf.MapSpec{Name: "smoke_events", Type: ebpf.RingBuf, MaxEntries: 64 * 1024})
	if err != nil {
		t.Fatalf("create ring buffer: %v", err)
	}
	t.Cleanup(func() { events.Close() })
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:       "smoke_state",
		Type:       ebpf.Tracing,
		AttachType: ebpf.AttachTraceRawTp,
		AttachTo:   "inet_sock_set_state",
		License:    "GPL",
		Instructions: asm.Instructions{
			// ctx holds the tracepoint's arguments as u64s: sk, oldstate, newstate.
			asm.LoadMem(asm.R2, asm.R1, 8, asm.DWord),
			asm.LoadMem(asm.R3, asm.R1, 16, asm.DWord),
			asm.StoreMem(asm.RFP, -8, asm.R2, asm.Word),
			asm.StoreMem(asm.RFP, -4, asm.R3, asm.Word),
			asm.LoadMapPtr(asm.R1, events.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -8),
			asm.Mov.Imm(asm.R3, 8),
			asm.Mov.Imm(asm.R4, 0),
			asm.FnRingbufOutput.Call(),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatalf("load tp_btf/inet_sock_set_state: %+v", err)
	}
	t.Cleanup(func() { prog.Close() })
	l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		t.Fatalf("attach tp_btf/inet_sock_set_state: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	rd, err := ringbuf.NewReader(events)
	if err != nil {
		t.Fatalf("open ring buffer reader: %v", err)
	}
	t.Cleanup(func() { rd.Close() })
	return rd
}

func TestInetSockSetStateReachesRingBuffer(t *testing.T) {
	requireBPF(t)
	rd := loadStateTracer(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	defer ln.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial loopback: %v", err)
	}
	c.Close()
	if err := <-accepted; err != nil {
		t.Fatalf("accept on loopback: %v", err)
	}

	// Every kernel from 5.10 on reports these for one loopback connection.
	want := map[transition]bool{
		{tcp.Close, tcp.Listen}:        false,
		{tcp.Close, tcp.SynSent}:       false,
		{tcp.SynSent, tcp.Established}: false,
		{tcp.SynRecv, tcp.Established}: false,
	}
	missing := len(want)
	var seen []transition
	// A bound so a kernel that never delivers fails instead of hanging;
	// not a measure of speed (TCG guests are slow).
	rd.SetDeadline(time.Now().Add(time.Minute))
	for missing > 0 {
		rec, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("ring buffer delivered only %v; missing some of %v", seen, want)
		}
		if err != nil {
			t.Fatalf("read ring buffer: %v", err)
		}
		if len(rec.RawSample) != 8 {
			t.Fatalf("record of %d bytes, want 8", len(rec.RawSample))
		}
		tr := transition{
			from: tcp.State(binary.NativeEndian.Uint32(rec.RawSample[0:4])),
			to:   tcp.State(binary.NativeEndian.Uint32(rec.RawSample[4:8])),
		}
		seen = append(seen, tr)
		if done, ok := want[tr]; ok && !done {
			want[tr] = true
			missing--
		}
	}
}
