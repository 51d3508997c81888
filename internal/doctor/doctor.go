// Package doctor finds out what the running kernel and this process offer
// to tcpstat, and which features that enables.
package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/sockfds"
	"github.com/tcpstat/tcpstat/internal/tracer"
)

// Check is one thing the kernel or process offers, or does not, and what
// tcpstat uses it for. Doctor checks nothing tcpstat does not use.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
	For    string `json:"for"`
}

// Feature is something tcpstat does, and whether it works here.
type Feature struct {
	Name   string `json:"name"`
	Status string `json:"status"` // "available", "degraded" or "unavailable"
	Detail string `json:"detail,omitempty"`
}

// Report is everything doctor found.
type Report struct {
	Kernel   string    `json:"kernel"`
	Checks   []Check   `json:"checks"`
	Features []Feature `json:"features"`
}

const taskFilesCheck = "BPF task_file iterator (iter/task_file, Linux 5.8+)"

// Run examines the kernel. It loads and attaches the real tracer once, as
// the final word on whether tracing works, and detaches it at once.
func Run() Report {
	var r Report
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		r.Kernel = unix.ByteSliceToString(uts.Release[:]) + " " + unix.ByteSliceToString(uts.Machine[:])
	}
	check := func(name, usedFor string, err error, ok string) bool {
		c := Check{Name: name, OK: err == nil, Detail: ok, For: usedFor}
		if err != nil {
			c.Detail = err.Error()
		}
		r.Checks = append(r.Checks, c)
		return c.OK
	}

	const forTracing = "loading and attaching the BPF programs (watch, top)"
	privileged := check("privileges (CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN)", forTracing,
		boolErr(tracer.HaveTracingPrivileges(), "missing: run as root or grant CAP_BPF and CAP_PERFMON"), "present")
	const forBTF = "adapting the BPF program to this kernel's structure layouts (CO-RE)"
	haveBTF := check("kernel BTF (/sys/kernel/btf/vmlinux)", forBTF, statErr("/sys/kernel/btf/vmlinux"), "present")
	var kernelBTF *btf.Spec
	if haveBTF {
		var err error
		kernelBTF, err = btf.LoadKernelSpec()
		haveBTF = check("kernel BTF parses", forBTF, err, "ok")
	}
	haveTP := haveBTF && check("tracepoint sock:inet_sock_set_state", "every TCP state transition",
		typeErr(kernelBTF, "btf_trace_inet_sock_set_state"), "present")
	// Present in the kernel's BTF is not enough: some hosts refuse these
	// iterators to root while they load others, so a privileged doctor
	// loads one.
	mapIterators := funcErr(kernelBTF, "bpf_iter_bpf_map_elem")
	if mapIterators == nil && privileged {
		ok, err := tracer.HaveMapIterators()
		if mapIterators = err; err == nil && !ok {
			mapIterators = errors.New("present in kernel BTF, but the kernel does not load them")
		}
	}
	check("BPF map iterators (iter/bpf_map_elem, Linux 5.9+)",
		"sweeping per-socket state of sockets whose close was lost (else it stays in the sockets map, within its bound)",
		mapIterators, "load")

	// No probe for the tracing program type itself: the library's probe
	// loads an fentry program, which some kernels refuse while tp_btf
	// works. Loading the tracer below is the real test.
	var haveRing, haveCookie, haveStorage bool
	if privileged {
		haveRing = check("BPF ring buffer", "sending events to user space", features.HaveMapType(ebpf.RingBuf), "supported")
		if haveTP {
			ok, err := tracer.HaveSocketCookieHelper()
			if err == nil && !ok {
				err = errors.New("not callable from tracing programs (Linux < 5.12): synthetic cookies")
			}
			haveCookie = check("bpf_get_socket_cookie() in tracing programs", "connection ids that match ss and sock_diag", err, "callable")
			ok, err = tracer.HaveSocketStorage()
			if err == nil && !ok {
				err = errors.New("not callable from tracing programs (Linux < 5.11): per-socket state in an LRU map, swept every 10 s")
			}
			haveStorage = check("socket local storage in tracing programs", "per-socket state (owner, time in state) past the sockets map's bound, freed with the socket",
				err, "callable: no bound on the sockets whose state is kept")
		}
	}
	tracefs := tracer.TracefsDir()
	tracefsErr := boolErr(tracefs != "", "not mounted (tcpstat mounts it at /sys/kernel/tracing when it can)")
	if _, err := os.Stat("/sys/kernel/tracing/events"); tracefs == "" && errors.Is(err, fs.ErrPermission) {
		tracefsErr = errors.New("not readable (root's, mode 0700): reading its tracepoint ids needs CAP_DAC_READ_SEARCH")
	}
	check("tracefs", "attaching the accept() tracepoints", tracefsErr, "mounted at "+tracefs)
	haveAcceptTP := check("tracepoint syscalls:sys_exit_accept4", "owners of accepted connections, at accept()",
		boolErr(tracefs == "" || exists(tracefs+"/events/syscalls/sys_exit_accept4"), "missing (CONFIG_FTRACE_SYSCALLS)"),
		"present")
	stats, _ := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled")
	check("BPF run-time statistics (kernel.bpf_stats_enabled)", "BPF time per event in watch's summary and the benchmark",
		boolErr(strings.TrimSpace(string(stats)) == "1",
			"off: tcpstat's BPF time per event is not measured (sysctl kernel.bpf_stats_enabled=1)"), "on")
	haveTaskFiles := false
	if privileged {
		haveTaskFiles = check(taskFilesCheck, "finding socket owners (list -p, top) in one pass of the kernel, else a walk of /proc/*/fd",
			sockfds.Scan(func(uint32, uint32, uint64) {}), "loads and runs")
	}
	haveDiag := check("netlink sock_diag", "socket listings (list) and the live table's dumps (top)", sockDiagErr(), "available")

	var tracerErr, iteratorsErr error
	var acceptWarnings []string
	if privileged && haveBTF && haveTP {
		t, err := tracer.New(tracer.Options{})
		if err == nil {
			acceptWarnings, iteratorsErr = t.AcceptWarnings(), t.MapIterators()
			err = t.Close()
		}
		tracerErr = err
		check("tracer loads and attaches", "the final word on tracing: the real programs, loaded and attached", err, "yes")
	}

	tracing := privileged && haveBTF && haveTP && haveRing && tracerErr == nil
	r.Features = append(r.Features, feature("watch: live TCP transitions", tracing, false, whyNot(privileged, haveBTF, haveTP, tracerErr)))
	owners := strings.Join(acceptWarnings, "; ")
	r.Features = append(r.Features, feature("owners of accepted connections", tracing, !haveAcceptTP || owners != "",
		firstNonEmpty(owners, whyNot(privileged, haveBTF, haveTP, tracerErr))))
	r.Features = append(r.Features, feature("socket cookies matching ss and sock_diag", tracing && haveCookie, tracing && !haveCookie,
		"tracing programs cannot read cookies on this kernel: sockets get synthetic ids until listed"))
	r.Features = append(r.Features, feature("per-socket kernel state freed with its socket", tracing && haveStorage, tracing && !haveStorage,
		"kept in an LRU map instead (Linux < 5.11), swept every 10 s of sockets whose close was lost"))
	r.Features = append(r.Features, feature("sweep of per-socket state whose close was lost", tracing && iteratorsErr == nil, tracing && iteratorsErr != nil,
		fmt.Sprint(unswept(haveStorage), iteratorsErr)))
	r.Features = append(r.Features, feature("socket owners in one kernel pass", haveTaskFiles, false,
		"owners come from a walk of /proc/*/fd, slower with many sockets"))
	r.Features = append(r.Features, feature("list: netstat-style listings", true, !haveDiag,
		"sock_diag unavailable: listings read /proc/net instead (no cookies, no tcp_info)"))
	r.Features = append(r.Features, feature("top: live connection table", tracing && haveDiag, tracing && !haveDiag,
		firstNonEmpty(whyNot(privileged, haveBTF, haveTP, tracerErr), "sock_diag unavailable")))
	return r
}

func feature(name string, ok, degraded bool, why string) Feature {
	switch {
	case ok && !degraded:
		return Feature{Name: name, Status: "available"}
	case ok || degraded:
		return Feature{Name: name, Status: "degraded", Detail: why}
	}
	return Feature{Name: name, Status: "unavailable", Detail: why}
}

func whyNot(privileged, haveBTF, haveTP bool, tracerErr error) string {
	switch {
	case !privileged:
		return "needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)"
	case !haveBTF:
		return "needs kernel BTF (CONFIG_DEBUG_INFO_BTF=y)"
	case !haveTP:
		return "needs the sock:inet_sock_set_state tracepoint, and the kernel types tcpstat reads, in the kernel's BTF"
	case tracerErr != nil:
		return tracerErr.Error()
	}
	return ""
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func boolErr(ok bool, msg string) error {
	if ok {
		return nil
	}
	return errors.New(msg)
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

func statErr(path string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("missing (CONFIG_DEBUG_INFO_BTF): %w", err)
	}
	return nil
}

func typeErr(spec *btf.Spec, name string) error {
	if spec == nil {
		return errors.New("unknown: no kernel BTF")
	}
	if _, err := spec.AnyTypeByName(name); err != nil {
		return errors.New("missing from kernel BTF")
	}
	return nil
}

func funcErr(spec *btf.Spec, name string) error {
	if spec == nil {
		return errors.New("unknown: no kernel BTF")
	}
	var fn *btf.Func
	if err := spec.TypeByName(name, &fn); err != nil {
		return errors.New("missing from kernel BTF")
	}
	return nil
}

func sockDiagErr() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return fmt.Errorf("open netlink sock_diag: %w", err)
	}
	unix.Close(fd)
	return nil
}

// unswept says what becomes of the per-socket state of sockets whose close
// was lost when nothing sweeps it.
func unswept(storage bool) string {
	if storage {
		// Past the map's bound, state goes to socket storage.
		return "a socket whose close was lost keeps its entry in the sockets map until a newer socket at its address takes it, " +
			"or tcpstat exits; once the map is full, new sockets' state goes to socket storage: "
	}
	return "left to the LRU map, which evicts it only when full: "
}
