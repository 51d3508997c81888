package doctor

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/tracer"
)

// On the project's machines (BTF, tp_btf, ring buffers, root), everything
// tracing needs must be found, and the features must say so.
func TestRunFindsWhatTracingNeeds(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the tracer")
	}
	r := Run()
	if r.Kernel == "" {
		t.Error("no kernel release")
	}
	checks := map[string]Check{}
	for _, c := range r.Checks {
		checks[c.Name] = c
		if c.For == "" {
			t.Errorf("check %q does not say what tcpstat uses it for", c.Name)
		}
	}
	for _, name := range []string{
		"kernel BTF (/sys/kernel/btf/vmlinux)", "tracepoint sock:inet_sock_set_state",
		"BPF ring buffer", "tracer loads and attaches", "netlink sock_diag", taskFilesCheck,
	} {
		c, ok := checks[name]
		if !ok {
			t.Errorf("no check %q", name)
		} else if !c.OK {
			t.Errorf("%s: %s", name, c.Detail)
		}
	}
	status := map[string]string{}
	for _, f := range r.Features {
		status[f.Name] = f.Status
	}
	for _, name := range []string{"watch: live TCP transitions", "list: netstat-style listings", "socket owners in one kernel pass"} {
		if status[name] != "available" {
			t.Errorf("%s: %q, want available", name, status[name])
		}
	}
	// The map iterators check and feature must say what the tracer finds:
	// some hosts refuse these iterators to root (a BPF LSM policy) though
	// their kernel's BTF has them.
	tr, err := tracer.New(tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	iterErr := tr.MapIterators()
	tr.Close()
	iterators, sweep := checks["BPF map iterators (iter/bpf_map_elem, Linux 5.9+)"], "available"
	if iterErr != nil {
		sweep = "degraded"
	}
	if iterators.Name == "" || iterators.OK != (iterErr == nil) {
		t.Errorf("map iterators check %+v, but the tracer's iterators: %v", iterators, iterErr)
	}
	if errors.Is(iterErr, unix.EPERM) && !strings.Contains(iterators.Detail, "refused") {
		t.Errorf("map iterators check %q does not say the kernel refused them (%v)", iterators.Detail, iterErr)
	}
	if got := status["sweep of per-socket state whose close was lost"]; got != sweep {
		t.Errorf("sweep feature %q, want %q (tracer: %v)", got, sweep, iterErr)
	}
	// Socket storage in tracing programs came in 5.11.
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	var major, minor int
	fmt.Sscanf(unix.ByteSliceToString(uts.Release[:]), "%d.%d", &major, &minor)
	storage, want := checks["socket local storage in tracing programs"], "available"
	if major < 5 || major == 5 && minor < 11 {
		want = "degraded"
	}
	if storage.Name == "" || storage.OK != (want == "available") {
		t.Errorf("kernel %d.%d: socket storage check %+v", major, minor, storage)
	}
	if got := status["per-socket kernel state freed with its socket"]; got != want {
		t.Errorf("kernel %d.%d: per-socket state %q, want %q", major, minor, got, want)
	}
}

func TestFeatureStatus(t *testing.T) {
	for _, tc := range []struct {
		ok, degraded bool
		want         string
	}{{true, false, "available"}, {true, true, "degraded"}, {false, true, "degraded"}, {false, false, "unavailable"}} {
		f := feature("x", tc.ok, tc.degraded, "why")
		if f.Status != tc.want {
			t.Errorf("feature(ok=%v, degraded=%v) = %q, want %q", tc.ok, tc.degraded, f.Status, tc.want)
		}
		if (f.Detail == "") != (tc.want == "available") {
			t.Errorf("feature(ok=%v, degraded=%v): detail %q", tc.ok, tc.degraded, f.Detail)
		}
	}
}
