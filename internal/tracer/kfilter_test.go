package tracer

import (
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/tcpstat/tcpstat/internal/tcp"
)

// cgroup2Root is the cgroup v2 mount's directory and id.
func cgroup2Root(t *testing.T) uint64 {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "cgroup2" {
			var st syscall.Stat_t
			if err := syscall.Stat(f[1], &st); err != nil {
				t.Fatal(err)
			}
			return st.Ino
		}
	}
	t.Fatal("no cgroup v2 hierarchy mounted")
	return 0
}

// TestKernelFilterProgram loads a filter that uses every test the program
// has, in both homes of per-socket state: IPv4, this namespace, a peer in
// 127.0.0.0/8 (an LPM set), an owner in the root cgroup (known for the
// server's child only at accept), and port 29154 at either end (the
// client's local port is 0 at CLOSE → SYN_SENT). The IPv6 connection to
// the same port must not reach user space; both IPv4 sockets must, whole.
// Nothing else may: other tests' connects, whose CLOSE → SYN_SENT (port 0)
// the program cannot judge, are judged at their next transition.
func TestKernelFilterProgram(t *testing.T) {
	requireRoot(t)
	const port = 29154
	var ns syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &ns); err != nil {
		t.Fatal(err)
	}
	const r = FilterReject
	kf := &KernelFilter{
		Insns: []FilterInsn{
			{Op: FilterFamily, Value: afInet, Yes: 1, No: r},
			{Op: FilterNetNS, Value: ns.Ino, Yes: 2, No: r},
			{Op: FilterRemoteSet, Set: 0, Yes: 3, No: r},
			{Op: FilterOwnerCgroup, Slot: 0, Yes: 4, No: r},
			{Op: FilterLocalPort, Lo: port, Hi: port, Yes: FilterAccept, No: 5},
			{Op: FilterRemotePort, Lo: port, Hi: port, Yes: FilterAccept, No: r},
		},
		Prefixes: []FilterPrefix{{0, netip.MustParsePrefix("127.0.0.0/8")}, {0, netip.MustParsePrefix("0.0.0.0/32")},
			{0, netip.MustParsePrefix("fd00::/8")}},
		Cgroups:        []FilterCgroup{{ID: cgroup2Root(t), Level: 0}},
		NeedsLocalPort: true,
		NeedsOwner:     true,
	}
	// Where tracing programs cannot find cgroup ancestors (5.10), the
	// program goes without that test, and New refuses one with it.
	if ok, err := HaveCgroupAncestors(); err != nil {
		t.Fatal(err)
	} else if !ok {
		if _, err := New(Options{Filter: kf}); err == nil || !strings.Contains(err.Error(), "check cgroups in user space") {
			t.Errorf("New with a cgroup test on a kernel without bpf_get_current_ancestor_cgroup_id: %v", err)
		}
		kf.Insns[2].Yes, kf.Insns[3] = 4, FilterInsn{Op: FilterFamily, Value: afInet, Yes: 4, No: r}
		kf.Cgroups, kf.NeedsOwner = nil, false
	}
	for _, mode := range stateModes(t) {
		t.Run(mode.name, func(t *testing.T) {
			tracer := newTracer(t, Options{Filter: kf, mapState: mode.mapState, storageOnly: mode.storageOnly})
			verifierHeadroom(t, tracer)
			s := &stream{t: t, tr: tracer}
			server, client := startPeer(t), startPeer(t)
			server.do("listen [::1]:29154")
			client.do("connect [::1]:29154")
			server.do("close-listener")
			server.do("listen 127.0.0.1:29154")
			client.do("connect 127.0.0.1:29154")
			server.do("accept")
			client.do("close")
			server.do("wait-eof")
			server.do("close")
			server.do("close-listener")
			s.waitFor("the listener's CLOSE", func(ev *Event) bool {
				return ev.Old == tcp.Listen && ev.New == tcp.Close && !ev.IPv6()
			})
			s.waitFor("the server socket's CLOSE", func(ev *Event) bool {
				return ev.Old == tcp.LastAck && ev.New == tcp.Close
			})
			var kinds []string
			for _, ev := range s.events {
				if ev.IPv6() || (ev.Local.Port() != port && ev.Remote.Port() != port) {
					t.Errorf("filter let through %s → %s %s %s", ev.Old, ev.New, ev.Local, ev.Remote)
				}
				kinds = append(kinds, ev.Old.String()+"→"+ev.New.String())
			}
			for _, want := range []string{"CLOSE→SYN_SENT", "SYN_SENT→ESTABLISHED", "LISTEN→SYN_RECV",
				"SYN_RECV→ESTABLISHED", "ESTABLISHED→ESTABLISHED", "ESTABLISHED→CLOSE_WAIT", "FIN_WAIT2→TIME_WAIT"} {
				if !strings.Contains(" "+strings.Join(kinds, " ")+" ", " "+want+" ") {
					t.Errorf("no %s among %s", want, kinds)
				}
			}
		})
	}
}

func TestKernelFilterChecked(t *testing.T) {
	for _, kf := range []*KernelFilter{
		{},
		{Insns: []FilterInsn{{Op: FilterFamily, Yes: 0, No: FilterReject}}},
		{Insns: []FilterInsn{{Op: 99, Yes: FilterAccept, No: FilterReject}}},
		{Insns: []FilterInsn{{Op: FilterOwnerCgroup, Yes: FilterAccept, No: FilterReject}}},
		{Insns: []FilterInsn{{Op: FilterFamily, Yes: 5, No: FilterReject}}},
	} {
		if err := kf.check(); err == nil {
			t.Errorf("%+v passed the check", kf)
		}
	}
}

// TestPrefixSets: the value of each prefix names every set that holds it
// or a shorter prefix containing it, per family.
func TestPrefixSets(t *testing.T) {
	p := netip.MustParsePrefix
	got := prefixSets([]FilterPrefix{
		{0, p("10.0.0.0/8")}, {1, p("10.1.0.0/16")}, {2, p("10.1.2.0/24")}, {2, p("10.0.0.0/8")},
		{3, p("0.0.0.0/0")}, {4, p("::/0")}, {4, p("fd00::/8")}, {1, p("10.1.9.9/16")},
	})
	want := map[netip.Prefix]uint64{
		p("10.0.0.0/8"): 1<<0 | 1<<2 | 1<<3, p("10.1.0.0/16"): 1<<0 | 1<<1 | 1<<2 | 1<<3,
		p("10.1.2.0/24"): 1<<0 | 1<<1 | 1<<2 | 1<<3, p("0.0.0.0/0"): 1 << 3,
		p("::/0"): 1 << 4, p("fd00::/8"): 1 << 4,
	}
	if len(got) != len(want) {
		t.Errorf("%d prefixes, want %d: %v", len(got), len(want), got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: sets %b, want %b", k, got[k], v)
		}
	}
}

// verifierHeadroom fails when the kernel's verifier came within a tenth of
// its limit (1 000 000 instructions) on a copy of the transition program,
// before kernels refuse it. With every kind of filter test, the worst case,
// 6.1's verifier works hardest: 522 000 instructions in socket storage
// only, 776 000 with the sockets map first (2026-12-03); 6.18's 36 000 and
// 53 000.
// Kernels before 5.16 do not say.
func verifierHeadroom(t *testing.T, tr *Tracer) {
	t.Helper()
	for _, p := range []*ebpf.Program{tr.objs.SetStateFirst, tr.objs.SetStateSecond} {
		info, err := p.Info()
		must(t, err)
		if n, ok := info.VerifiedInstructions(); ok && n > 900_000 {
			t.Errorf("%s: the verifier processed %d instructions, within a tenth of its limit", info.Name, n)
		} else if ok {
			t.Logf("%s: the verifier processed %d instructions", info.Name, n)
		}
	}
}
