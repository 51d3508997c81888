package filter

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// runKernel is a model of the BPF program's interpreter (bpf/tcpstate.c,
// run_filter): the same instructions, tests and jumps.
func runKernel(t testing.TB, kf *tracer.KernelFilter, s *Subject, ancestors map[uint16]uint64) bool {
	if kf == nil {
		return true
	}
	pc := 0
	for steps := 0; ; steps++ {
		if pc == int(tracer.FilterAccept) {
			return true
		}
		if pc == int(tracer.FilterReject) {
			return false
		}
		if pc >= len(kf.Insns) || steps > tracer.MaxFilterInsns {
			t.Fatalf("program runs off at %d after %d steps", pc, steps)
		}
		in := kf.Insns[pc]
		var ok bool
		switch in.Op {
		case tracer.FilterFamily:
			fam := uint64(afInet)
			if s.IPv6 {
				fam = afInet6
			}
			ok = fam == in.Value
		case tracer.FilterLocalPort, tracer.FilterRemotePort:
			p := s.Local.Port()
			if in.Op == tracer.FilterRemotePort {
				p = s.Remote.Port()
			}
			ok = in.Lo <= p && p <= in.Hi
		case tracer.FilterLocalSet, tracer.FilterRemoteSet:
			a := s.Local.Addr()
			if in.Op == tracer.FilterRemoteSet {
				a = s.Remote.Addr()
			}
			for _, p := range kf.Prefixes {
				if p.Set != in.Set {
					continue
				}
				// An IPv4 socket looks up the IPv4 prefixes; an IPv6 one the
				// IPv6 prefixes, and if v4-mapped the IPv4 ones too.
				v4 := p.Prefix.Addr().Is4()
				switch {
				case !s.IPv6 && v4, s.IPv6 && !v4:
					ok = ok || p.Prefix.Contains(a)
				case s.IPv6 && v4 && a.Is4In6():
					ok = ok || p.Prefix.Contains(a.Unmap())
				}
			}
		case tracer.FilterNetNS:
			ok = uint64(s.NetNS) == in.Value
		case tracer.FilterOwnerCgroup:
			ok = s.OwnerKnown && ancestors[uint16(kf.Cgroups[in.Slot].Level)] == kf.Cgroups[in.Slot].ID
		default:
			t.Fatalf("unknown op %d", in.Op)
		}
		next := in.No
		if ok {
			next = in.Yes
		}
		if int(next) <= pc && next < tracer.FilterAccept {
			t.Fatalf("jump back from %d to %d", pc, next)
		}
		pc = int(next)
	}
}

// subjects are sockets of every kind the kernel tests tell apart.
func testSubjects() []Subject {
	var out []Subject
	addrs4 := []string{"127.0.0.1", "127.0.0.2", "10.1.2.3", "192.168.0.9", "0.0.0.0"}
	addrs6 := []string{"::1", "2001:db8::5", "fe80::1", "::", "::ffff:127.0.0.1", "::ffff:10.1.2.3"}
	ports := []uint16{0, 22, 80, 443, 1023, 1024, 1025, 8080, 40000, 65535}
	r := rand.New(rand.NewPCG(1, 2))
	for range 400 {
		v6 := r.IntN(2) == 1
		pick := func() netip.Addr {
			if v6 {
				return netip.MustParseAddr(addrs6[r.IntN(len(addrs6))])
			}
			return netip.MustParseAddr(addrs4[r.IntN(len(addrs4))])
		}
		out = append(out, Subject{
			IPv6: v6, State: tcp.State(1 + r.IntN(11)),
			Local:  netip.AddrPortFrom(pick(), ports[r.IntN(len(ports))]),
			Remote: netip.AddrPortFrom(pick(), ports[r.IntN(len(ports))]),
			NetNS:  uint32(7 + r.IntN(2)),
		})
	}
	return out
}

var kernelExprs = []string{
	"sport = :22", "sport != :22", "sport > :1024", "sport >= :1024", "sport < :1024", "sport <= :1024",
	"dport = :*", "sport < :0", "sport >= :0", "dport > :65535",
	"src 127.0.0.1", "src 127.0.0.0/8", "dst 10.0.0.0/8", "src [::1]", "src [::ffff:127.0.0.1]",
	"src [::ffff:10.0.0.0/104]", "dst 0.0.0.0/0", "dst [::/0]", "src *:22", "dst inet6:*", "src inet:*",
	"dst 127.0.0.1:8080", "dst [::1]:443",
	"src 127.0.0.1 or src 10.1.2.3 or src [::1] or dst 192.168.0.9 or dst [2001:db8::/32]",
	"src 127.0.0.1 or sport = :22 or src 10.0.0.0/8",
	"( dport = :80 or dport = :443 ) and not src [::1]",
	"not ( sport = :22 or dport = :22 ) and family inet6",
	"family inet", "not family inet", "netns 7", "not netns 7 or sport = :80",
	"sport = :22 or sport = :80 and src 127.0.0.1",
	"not not not dst 10.1.2.3",
	"( src 127.0.0.1 or src 127.0.0.2 ) and ( dst 127.0.0.1 or dst 10.1.2.3 )",
	"state established and sport = :22", "comm x or sport = :22", "( comm x and sport = :22 ) or dport = :80",
}

// TestKernelProgram: on every test socket the compiled program decides as
// the kernel part of the expression does.
func TestKernelProgram(t *testing.T) {
	e := testEnv(t)
	subjects := testSubjects()
	for _, expr := range kernelExprs {
		f, err := parseEnv(expr, e)
		if err != nil {
			t.Fatal(err)
		}
		kf, err := f.Kernel()
		if err != nil {
			t.Fatalf("%q: %v", expr, err)
		}
		k := f.Split().Kernel
		var pass int
		for i := range subjects {
			s := &subjects[i]
			want := k.Match(s)
			if got := runKernel(t, kf, s, nil); got != want {
				t.Errorf("%q on %+v: kernel %v, expression %v\n%s", expr, *s, got, want, dump(kf))
				break
			}
			if want {
				pass++
			}
			if f.Match(s) && !want {
				t.Errorf("%q: the expression matches %+v, which its kernel part rejects", expr, *s)
			}
		}
		t.Logf("%-60q %2d insns, passes %3d of %d", expr, len(kfInsns(kf)), pass, len(subjects))
	}
}

func kfInsns(kf *tracer.KernelFilter) []tracer.FilterInsn {
	if kf == nil {
		return nil
	}
	return kf.Insns
}

func dump(kf *tracer.KernelFilter) string {
	var b strings.Builder
	for i, in := range kfInsns(kf) {
		fmt.Fprintf(&b, "%d: %+v\n", i, in)
	}
	return b.String()
}

// TestKernelSets: an "or" of 50 prefixes is one lookup.
func TestKernelSets(t *testing.T) {
	var terms []string
	for i := range 50 {
		terms = append(terms, fmt.Sprintf("dst 10.%d.0.0/16", i))
	}
	f, err := parseEnv(strings.Join(terms, " or "), testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	kf, err := f.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	if len(kf.Insns) != 1 || len(kf.Prefixes) != 50 || kf.Insns[0].Op != tracer.FilterRemoteSet {
		t.Errorf("50 prefixes: %d instructions, %d prefixes:\n%s", len(kf.Insns), len(kf.Prefixes), dump(kf))
	}
	if kf.NeedsLocalPort || kf.NeedsOwner {
		t.Errorf("an address filter waits for the port or owner: %+v", kf)
	}
}

func TestKernelTooLarge(t *testing.T) {
	var terms []string
	for i := range tracer.MaxFilterInsns + 1 {
		terms = append(terms, fmt.Sprintf("sport = :%d", i+1))
	}
	f, err := parseEnv(strings.Join(terms, " or "), testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Kernel()
	if tl, ok := err.(*TooLargeError); !ok || tl.N != tracer.MaxFilterInsns+1 {
		t.Errorf("%d ports: %v, want a TooLargeError", len(terms), err)
	}
}

func TestKernelNeeds(t *testing.T) {
	assumeKernelCgroups(t)
	e := testEnv(t)
	for _, tc := range []struct {
		expr        string
		port, owner bool
	}{
		{"sport = :22", true, false},
		{"src 127.0.0.1:22", true, false},
		{"src 127.0.0.1", false, false},
		{"dport = :22", false, false},
		{"cgroup /system.slice", false, true},
		{"comm x and sport = :1", true, false},
	} {
		f, err := parseEnv(tc.expr, e)
		if err != nil {
			t.Fatal(err)
		}
		kf, err := f.Kernel()
		if err != nil {
			t.Fatal(err)
		}
		if kf.NeedsLocalPort != tc.port || kf.NeedsOwner != tc.owner {
			t.Errorf("%q: needs port %v owner %v, want %v %v", tc.expr, kf.NeedsLocalPort, kf.NeedsOwner, tc.port, tc.owner)
		}
	}
}

func TestKernelCgroup(t *testing.T) {
	assumeKernelCgroups(t)
	e := testEnv(t)
	f, err := parseEnv("cgroup /system.slice/nginx.service or cgroup /system.slice", e)
	if err != nil {
		t.Fatal(err)
	}
	kf, err := f.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	if len(kf.Cgroups) != 2 || kf.Cgroups[0].Level+kf.Cgroups[1].Level != 3 || len(kf.Insns) != 2 {
		t.Errorf("cgroups %v, %d insns:\n%s", kf.Cgroups, len(kf.Insns), dump(kf))
	}
}

// assumeKernelCgroups makes the compiler take cgroups into the kernel
// part, whatever this kernel offers, for tests of the compiler.
func assumeKernelCgroups(t *testing.T) {
	saved := kernelCgroups
	kernelCgroups = func() bool { return true }
	t.Cleanup(func() { kernelCgroups = saved })
}
