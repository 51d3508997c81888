package filter

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

const (
	podCID   = "4f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0"
	podUID   = "0b5a7c8e-1d2f-4a6b-9c3d-5e7f8a9b0c1d"
	otherUID = "11111111-2222-3333-4444-555555555555"
)

var dockerCID = strings.Repeat("ab", 32)

// containerEnv is testEnv with a made-up cgroup tree (plain directories:
// their inodes stand in for cgroup ids) holding a containerd container of
// pod shop/cart-0, a container of a pod /var/log/pods does not name, a
// docker container outside Kubernetes and a host service, and a made-up
// /proc whose pid 4242 is in the pod's container by its cgroup path.
func containerEnv(t *testing.T) (e *env, ids map[string]uint64) {
	e = testEnv(t)
	e.procRoot = filepath.Join(filepath.Dir(e.cgroupRoot), "proc")
	paths := map[string]string{
		"cart":    "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(podUID, "-", "_") + ".slice/cri-containerd-" + podCID + ".scope",
		"unnamed": "kubepods/besteffort/pod" + otherUID + "/" + strings.Repeat("cd", 32),
		"docker":  "system.slice/docker-" + dockerCID + ".scope",
		"host":    "system.slice/sshd.service",
	}
	ids = map[string]uint64{}
	for name, p := range paths {
		dir := filepath.Join(e.cgroupRoot, p)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = statIno(fi)
	}
	for _, d := range []string{filepath.Join(e.podLogDir, "shop_cart-0_"+podUID), filepath.Join(e.procRoot, "4242")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(e.procRoot, "4242", "cgroup"), []byte("0::/"+paths["cart"]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return e, ids
}

func TestContainerParse(t *testing.T) {
	e, _ := containerEnv(t)
	for _, tc := range []struct{ in, want string }{
		{"pod cart-0", "pod cart-0"},
		{"pod = shop/cart-0", "pod shop/cart-0"},
		{"pod != shop/cart-0", "not pod shop/cart-0"},
		{"pod " + podUID, "pod " + podUID},
		{"pod cart-*", "pod cart-*"},
		{"pod_namespace shop", "pod_namespace shop"},
		{"pod_namespace=kube-*", "pod_namespace kube-*"},
		{"container " + podCID, "container " + podCID},
		{"container " + podCID[:12], "container " + podCID[:12]},
		{"container *", "container *"},
		{"not container * and sport = :22", "not container * and sport = :22"},
	} {
		f, err := parseEnv(tc.in, e)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got := f.String(); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
		if !f.Uses().Owner {
			t.Errorf("%q: Uses().Owner is false", tc.in)
		}
		if sp := f.Split(); sp.Kernel.String() != strings.TrimPrefix(tc.want, "not container * and ") && sp.User.String() != tc.want {
			t.Errorf("%q: user space part %q, want all of it", tc.in, sp.User.String())
		}
	}
	for _, tc := range []struct{ in, msg string }{
		{"container 4f1e2d", `filter: container needs a container id, its first 12 or more digits, or a glob, not "4f1e2d" at column 11`},
		{"container 4F1E2D3C4B5A6978", `filter: container needs a container id, its first 12 or more digits, or a glob, not "4F1E2D3C4B5A6978" at column 11`},
		{"pod Cart", `filter: pod needs a pod name, namespace/name, UID or glob, not "Cart" at column 5`},
		{"pod a/b/c", `filter: pod needs a pod name, namespace/name, UID or glob, not "a/b/c" at column 5`},
		{"pod_namespace", `filter: pod_namespace needs a Kubernetes namespace or glob, found the end at column 14`},
		{"pod < x", `filter: pod takes = or !=, not "<" at column 5`},
		{"pod [x", `filter: bad glob "[x" at column 5`},
		{"podd x", `filter: unknown condition "podd" at column 1`},
	} {
		_, err := parseEnv(tc.in, e)
		if err == nil {
			t.Errorf("%q: no error", tc.in)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: %v, want %s", tc.in, err, tc.msg)
		}
	}
}

func TestContainerMatch(t *testing.T) {
	e, ids := containerEnv(t)
	subjects := map[string]Subject{
		"cart":    {OwnerKnown: true, PID: 1, Cgroup: ids["cart"]},
		"unnamed": {OwnerKnown: true, PID: 2, Cgroup: ids["unnamed"]},
		"docker":  {OwnerKnown: true, PID: 3, Cgroup: ids["docker"]},
		"host":    {OwnerKnown: true, PID: 4, Cgroup: ids["host"]},
		"scanned": {OwnerKnown: true, PID: 4242}, // a /proc scan's owner: no cgroup id
		"unowned": {Cgroup: ids["cart"]},
	}
	names := []string{"cart", "unnamed", "docker", "host", "scanned", "unowned"}
	for _, tc := range []struct{ expr, want string }{
		{"pod cart-0", "cart scanned"},
		{"pod shop/cart-0", "cart scanned"},
		{"pod shop/*", "cart scanned"},
		{"pod other/cart-0", ""},
		{"pod " + podUID, "cart scanned"},
		{"pod " + otherUID, "unnamed"},
		{"pod *", "cart unnamed scanned"},
		{"not pod *", "docker host unowned"},
		{"pod != cart-0", "unnamed docker host unowned"},
		{"pod_namespace shop", "cart scanned"},
		{"pod_namespace sh*", "cart scanned"},
		{"pod_namespace default", ""},
		{"container " + podCID, "cart scanned"},
		{"container " + podCID[:12], "cart scanned"},
		{"container " + dockerCID[:20], "docker"},
		{"container *", "cart unnamed docker scanned"},
		{"container ab*", "docker"},
		{"container * and not pod *", "docker"},
		{"pod cart-0 or comm sshd", "cart scanned"},
	} {
		f, err := parseEnv(tc.expr, e)
		if err != nil {
			t.Fatalf("%q: %v", tc.expr, err)
		}
		var got []string
		for _, n := range names {
			s := subjects[n]
			if f.Match(&s) {
				got = append(got, n)
			}
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("%q matches %q, want %q", tc.expr, g, tc.want)
		}
	}
}

// TestContainerGate: a pod condition needs the owner, so the gate holds a
// passive open's events until its accept names the owner, then judges
// them all with it.
func TestContainerGate(t *testing.T) {
	e, ids := containerEnv(t)
	ap := netip.MustParseAddrPort
	srv := tracer.Process{PID: 20, Comm: "nginx", Cgroup: ids["cart"]}
	tr := func(tm uint64, old, new tcp.State, owner *tracer.Process) tracer.Event {
		ev := tracer.Event{Kind: tracer.Transition, Time: tm, Cookie: 2, Local: ap("127.0.0.1:80"), Remote: ap("127.0.0.1:40000"), Old: old, New: new}
		if owner != nil {
			ev.Owner, ev.OwnerKnown = *owner, true
		}
		return ev
	}
	acc := tr(3, tcp.Established, tcp.Established, &srv)
	acc.Kind = tracer.Accept
	stream := []tracer.Event{
		tr(1, tcp.Listen, tcp.SynRecv, nil),
		tr(2, tcp.SynRecv, tcp.Established, nil),
		acc,
		tr(4, tcp.Established, tcp.CloseWait, nil),
	}
	for _, tc := range []struct{ expr, want string }{
		{"pod shop/cart-0", "1 2 3 4"},
		{"container " + podCID[:12], "1 2 3 4"},
		{"pod_namespace default", ""},
		{"not pod *", ""},
	} {
		f, err := parseEnv(tc.expr, e)
		if err != nil {
			t.Fatal(err)
		}
		g := NewGate(f)
		var got []string
		emit := func(ev *tracer.Event) error {
			got = append(got, strconv.FormatUint(ev.Time, 10))
			return nil
		}
		for i, ev := range stream {
			if err := g.Push(&ev, emit); err != nil {
				t.Fatal(err)
			}
			if i < 2 && len(got) > 0 {
				t.Errorf("%q: emitted before the owner was known", tc.expr)
			}
		}
		if err := g.Flush(emit); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, strings.Join(got, " ")); diff != "" {
			t.Errorf("%q passes (-want +got):\n%s", tc.expr, diff)
		}
	}
}
