package tracer

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// Errors New returns when the kernel or the process lacks what tracing
// needs; each is wrapped with what is missing and what still works.
var (
	ErrNoBTF        = errors.New("kernel has no BTF")
	ErrNoPermission = errors.New("missing privileges")
	ErrNoTracepoint = errors.New("this kernel lacks the tracepoint sock:inet_sock_set_state or a kernel type tcpstat reads (tracing needs Linux 5.8+)")
)

const vmlinuxBTF = "/sys/kernel/btf/vmlinux"

// stillWorks tells users what they keep when tracing is impossible.
const stillWorks = "`tcpstat list` (netstat-style listings) still works"

func checkKernel() error {
	if _, err := os.Stat(vmlinuxBTF); err != nil {
		return fmt.Errorf("%w: %s is missing (the kernel needs CONFIG_DEBUG_INFO_BTF=y; tracing needs it): %s",
			ErrNoBTF, vmlinuxBTF, stillWorks)
	}
	return nil
}

// Capability numbers, include/uapi/linux/capability.h.
const (
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// effectiveCaps reads the effective capability set of this process.
func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff line in /proc/self/status")
}

// HaveTracingPrivileges reports whether this process may load and attach
// the tracer: CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN.
func HaveTracingPrivileges() bool {
	caps, err := effectiveCaps()
	if err != nil {
		return os.Geteuid() == 0
	}
	has := func(c uint) bool { return caps&(1<<c) != 0 }
	return has(capSysAdmin) || (has(capBPF) && has(capPerfmon))
}

const privilegeHint = "tracing needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): run as root, " +
	"or grant them (setcap cap_bpf,cap_perfmon+ep tcpstat; in Kubernetes, securityContext.capabilities.add)"

func checkCapabilities() error {
	if !HaveTracingPrivileges() {
		return fmt.Errorf("%w: %s; %s", ErrNoPermission, privilegeHint, stillWorks)
	}
	return nil
}

// explainPermission adds what to do to a permission error from the kernel:
// a process can hold the capabilities and still be refused (lockdown,
// seccomp, unprivileged_bpf_disabled, a container's profile).
func explainPermission(err error) error {
	if (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)) && HaveTracingPrivileges() && seccompFiltered() {
		// Holding the capabilities, refused anyway: in a container the
		// usual cause is the runtime's default seccomp profile.
		return fmt.Errorf("%w: %w: tcpstat has the capabilities tracing needs but runs under a seccomp filter, which may refuse "+
			"bpf() and perf_event_open(): some container runtimes' default profiles allow them only with CAP_SYS_ADMIN; "+
			"use a profile that allows them with CAP_BPF and CAP_PERFMON (docs/deploy.md)", ErrNoPermission, err)
	}
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: %w: %s (the kernel refused: check lockdown, seccomp and the container's profile)",
			ErrNoPermission, err, privilegeHint)
	}
	return err
}

// seccompFiltered reports whether this process runs under a seccomp
// filter (Seccomp: 2 in /proc/self/status), as containers do.
func seccompFiltered() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Seccomp:"); ok {
			return strings.TrimSpace(v) == "2"
		}
	}
	return false
}

// HaveSocketCookieHelper reports whether tracing programs may call
// bpf_get_socket_cookie() (Linux 5.12 and later), by loading a program
// that does.
func HaveSocketCookieHelper() (bool, error) { return haveSocketCookieHelper(btf.NewCache()) }

func haveSocketCookieHelper(kernelBTF *btf.Cache) (bool, error) {
	return remember("bpf_get_socket_cookie", func() (bool, error) {
		return probeTracing(kernelBTF, "bpf_get_socket_cookie", asm.Instructions{
			asm.LoadMem(asm.R1, asm.R1, 0, asm.DWord), // the struct sock argument
			asm.FnGetSocketCookie.Call(),
		})
	})
}

// HaveSocketStorage reports whether tracing programs may keep socket local
// storage (bpf_sk_storage_get, Linux 5.11 and later), by loading a program
// that does.
func HaveSocketStorage() (bool, error) { return haveSocketStorage(btf.NewCache()) }

func haveSocketStorage(kernelBTF *btf.Cache) (bool, error) {
	return remember("socket storage", func() (bool, error) { return probeSocketStorage(kernelBTF) })
}

func probeSocketStorage(kernelBTF *btf.Cache) (bool, error) {
	storage, err := ebpf.NewMap(&ebpf.MapSpec{
		Type: ebpf.SkStorage, Flags: unix.BPF_F_NO_PREALLOC, KeySize: 4, ValueSize: 8,
		Key: &btf.Int{Size: 4}, Value: &btf.Int{Size: 8},
	})
	if err != nil {
		return false, fmt.Errorf("probe for socket storage: create a map: %w", explainPermission(err))
	}
	defer storage.Close()
	return probeTracing(kernelBTF, "socket storage", asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.DWord), // the struct sock argument
		asm.LoadMapPtr(asm.R1, storage.FD()),
		asm.Mov.Imm(asm.R3, 0),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnSkStorageGet.Call(),
	})
}

// ErrNoMapIterators: the kernel has no BPF map iterators (Linux 5.9+) or
// refuses them. Per-socket state is then not swept or listed.
var ErrNoMapIterators = errors.New("no BPF map iterators")

// HaveMapIterators reports whether the kernel loads BPF map iterators
// (iter/bpf_map_elem), by loading one: false on a kernel without them, an
// error when the kernel has them but refuses them.
func HaveMapIterators() (bool, error) {
	return remember("map iterators", func() (bool, error) {
		probe, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type: ebpf.Tracing, AttachType: ebpf.AttachTraceIter, AttachTo: "bpf_map_elem", License: "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		})
		if err == nil {
			probe.Close()
			return true, nil
		}
		// The library wraps every refused load in a VerifierError, EPERM too.
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return false, fmt.Errorf("probe for BPF map iterators: %w", explainIteratorRefusal(err))
		}
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) || errors.Is(err, unix.EINVAL) || errors.Is(err, btf.ErrNotFound) {
			return false, nil
		}
		return false, fmt.Errorf("probe for BPF map iterators: %w", err)
	})
}

// explainIteratorRefusal says why loading a map iterator failed. Hosts
// have been seen that load task and socket iterators but refuse, to root,
// the iterators that read and write any map's elements (bpf_map_elem,
// bpf_sk_storage_map, sockmap): a BPF LSM policy.
func explainIteratorRefusal(err error) error {
	if (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)) && HaveTracingPrivileges() && !seccompFiltered() {
		return fmt.Errorf("%w (the kernel refused them to a process holding CAP_BPF and CAP_PERFMON: "+
			"a security policy of this host, such as a BPF LSM program, forbids map iterators)", err)
	}
	return explainPermission(err)
}

// probed keeps each probe's answer: what the kernel's tracing programs may
// call does not change while the process runs, and doctor, the filter's
// compiler and New ask the same questions. Errors are not kept.
var probed sync.Map // what → bool

func remember(what string, probe func() (bool, error)) (bool, error) {
	if ok, found := probed.Load(what); found {
		return ok.(bool), nil
	}
	ok, err := probe()
	if err == nil {
		probed.Store(what, ok)
	}
	return ok, err
}

// probeTracing reports whether the kernel loads a tracing program on
// inet_sock_set_state made of body (then return 0): false when the verifier
// refuses it, an error when loading fails for another reason. The program
// is loaded as a collection, the one kind of load that takes the caller's
// parsed kernel BTF (ebpf.NewProgram parses its own).
func probeTracing(kernelBTF *btf.Cache, what string, body asm.Instructions) (bool, error) {
	probe, err := ebpf.NewCollectionWithOptions(&ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{"probe": {
		Type:         ebpf.Tracing,
		AttachType:   ebpf.AttachTraceRawTp,
		AttachTo:     "inet_sock_set_state",
		License:      "GPL",
		Instructions: append(body, asm.Mov.Imm(asm.R0, 0), asm.Return()),
	}}}, ebpf.CollectionOptions{Cache: kernelBTF})
	if err == nil {
		probe.Close()
		return true, nil
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) || errors.Is(err, unix.EINVAL) {
		return false, nil
	}
	return false, fmt.Errorf("probe for %s in tracing programs: %w", what, explainPermission(err))
}

var tracefsDirs = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

// TracefsDir returns the mounted tracefs, or "" if none is.
func TracefsDir() string {
	for _, dir := range tracefsDirs {
		if _, err := os.Stat(dir + "/events"); err == nil {
			return dir
		}
	}
	return ""
}

// ensureTracefs mounts tracefs where the kernel provides its mount point
// and nothing is mounted yet; syscall tracepoints are attached through it.
func ensureTracefs() error {
	dir := TracefsDir()
	if dir == "" {
		// Mounted but root's (0700): the ids are there, unreadable.
		if _, err := os.Stat(tracefsDirs[0] + "/events"); errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("tracefs at %s is not readable: reading its tracepoint ids needs CAP_DAC_READ_SEARCH", tracefsDirs[0])
		}
		if err := unix.Mount("nodev", tracefsDirs[0], "tracefs", 0, ""); err != nil {
			return fmt.Errorf("tracefs is not mounted and mounting it at %s failed: %w", tracefsDirs[0], err)
		}
		dir = tracefsDirs[0]
	}
	if _, err := os.Stat(dir + "/events/syscalls/sys_exit_accept4"); err != nil {
		return errors.New("this kernel has no syscall tracepoints (CONFIG_FTRACE_SYSCALLS)")
	}
	return nil
}
