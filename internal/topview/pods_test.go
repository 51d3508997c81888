package topview

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/container"
	"github.com/tcpstat/tcpstat/internal/filter"
	"github.com/tcpstat/tcpstat/internal/golden"
	"github.com/tcpstat/tcpstat/internal/tcp"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

const (
	podCID = "4f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0"
	podUID = "0b5a7c8e-1d2f-4a6b-9c3d-5e7f8a9b0c1d"
)

// podFrame is testTable's frame with two more connections: one by a
// process of pod shop/cart-0's containerd container, one by a docker
// container outside Kubernetes, both in a made-up cgroup tree (plain
// directories: their inodes stand in for cgroup ids). nginx, found by the
// /proc scan without a cgroup id, is in the pod too, by its cgroup path in
// a made-up /proc; sshd and curl are host processes.
func podFrame(t *testing.T, opts Options, bound bool) (*Frame, Options) {
	root, logs, proc := t.TempDir(), t.TempDir(), t.TempDir()
	cart := filepath.Join("kubepods.slice", "kubepods-burstable.slice", "kubepods-burstable-pod"+strings.ReplaceAll(podUID, "-", "_")+".slice", "cri-containerd-"+podCID+".scope")
	docker := filepath.Join("system.slice", "docker-"+strings.Repeat("ab", 32)+".scope")
	for _, d := range []string{filepath.Join(root, cart), filepath.Join(root, docker), filepath.Join(logs, "shop_cart-0_"+podUID)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for pid, path := range map[string]string{"200": cart, "50": "system.slice/sshd.service"} {
		if err := os.MkdirAll(filepath.Join(proc, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, pid, "cgroup"), []byte("0::/"+path+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ino := func(p string) uint64 {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(root, p), &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	tb, st := testTable()
	ap := netip.MustParseAddrPort
	for _, e := range []tracer.Event{
		{Kind: tracer.Transition, Time: 125 * sec, Cookie: 30, Local: ap("10.1.0.7:41000"), Remote: ap("10.96.0.10:53"), Old: tcp.SynSent, New: tcp.Established,
			Owner: tracer.Process{PID: 400, Comm: "cart", Cgroup: ino(cart)}, OwnerKnown: true},
		{Kind: tracer.Transition, Time: 126 * sec, Cookie: 31, Local: ap("172.17.0.2:42000"), Remote: ap("172.17.0.3:5432"), Old: tcp.SynSent, New: tcp.Established,
			Owner: tracer.Process{PID: 500, Comm: "app", Cgroup: ino(docker)}, OwnerKnown: true},
	} {
		tb.Apply(&e)
	}
	opts.Containers = container.NewResolver(container.Options{CgroupRoot: root, PodLogDir: logs, ProcRoot: proc})
	if opts.Filter != nil {
		f, err := filter.ParseWith(opts.Filter.Source(), filter.Options{Containers: opts.Containers})
		if err != nil {
			t.Fatal(err)
		}
		opts.Filter = f
	}
	var f Frame
	if bound {
		f.Bind(tb, st)
	} else {
		f.Capture(tb, st)
	}
	f.Arrange(opts)
	return &f, opts
}

func TestPodColumn(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		json bool
	}{
		{"top-pods.txt", Options{}, false},
		{"top-pods.json", Options{}, true},
		{"top-pods-filter.txt", Options{Filter: mustParse(t, "pod shop/cart-0")}, false},
		{"top-pods-docker.txt", Options{Filter: mustParse(t, "container * and not pod *")}, false},
	} {
		for _, bound := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/bound=%v", tc.name, bound), func(t *testing.T) {
				f, opts := podFrame(t, tc.opts, bound)
				if !f.Pods {
					t.Error("Pods is false with containers in the table")
				}
				var b bytes.Buffer
				var err error
				if tc.json {
					err = f.WriteJSON(&b, wall)
				} else {
					err = f.WriteText(&b, wall, 1234, opts)
				}
				if err != nil {
					t.Fatal(err)
				}
				golden.Check(t, tc.name, b.Bytes())
			})
		}
	}
	// Without a resolver, or with only host processes, there is no column.
	var f Frame
	f.Capture(testTable())
	f.Arrange(Options{Containers: container.NewResolver(container.Options{CgroupRoot: t.TempDir(), PodLogDir: t.TempDir(), ProcRoot: t.TempDir()})})
	if head, _ := f.Lines(0, 1); f.Pods || strings.Contains(head, "POD") {
		t.Errorf("host processes only: Pods %v, header %q", f.Pods, head)
	}
}
