package doctor

import (
	"os"
	"testing"
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
	}
	for _, name := range []string{
		"kernel BTF (/sys/kernel/btf/vmlinux)", "tracepoint sock:inet_sock_set_state",
		"BPF ring buffer", "tracer loads and attaches", "netlink sock_diag",
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
	for _, name := range []string{"watch: live TCP transitions", "list: netstat-style listings"} {
		if status[name] != "available" {
			t.Errorf("%s: %q, want available", name, status[name])
		}
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
