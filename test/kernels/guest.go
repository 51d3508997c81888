package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// marker starts every line the guest's /init writes about its own
// progress on the test port, so they are never confused with test output.
const marker = "@@kernels "

// testPackage is one Go package whose tests run in the guest.
type testPackage struct {
	ImportPath string
	Dir        string // host source directory (testdata lives there)
	Rel        string // directory relative to the module root: the path in the guest
	Binary     string // static test binary on the host
}

// guestOptions say what the guest runs and how.
type guestOptions struct {
	Packages    []testPackage
	Tcpstat     string // static tcpstat binary, "" when it cannot be built
	Doctor      bool   // whether that binary has a doctor command
	TestTimeout time.Duration
	TestFlags   []string // extra -test.* flags for every binary
	HostTools   []string // host programs (with their libraries) the tests may run
}

// listTestPackages returns the packages matching patterns that have test
// files, with their directories, from the module root.
func listTestPackages(ctx context.Context, root string, patterns []string) ([]testPackage, error) {
	args := append([]string{"list", "-json=ImportPath,Dir,TestGoFiles,XTestGoFiles"}, patterns...)
	out, err := runTool(ctx, root, "go", args...)
	if err != nil {
		return nil, fmt.Errorf("list packages: %w", err)
	}
	var pkgs []testPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			ImportPath, Dir           string
			TestGoFiles, XTestGoFiles []string
		}
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("read go list output: %w", err)
		}
		if len(p.TestGoFiles)+len(p.XTestGoFiles) == 0 {
			continue
		}
		rel, err := filepath.Rel(root, p.Dir)
		if err != nil || strings.HasPrefix(rel, "..") {
			return nil, fmt.Errorf("package %s is outside the module at %s", p.ImportPath, root)
		}
		pkgs = append(pkgs, testPackage{ImportPath: p.ImportPath, Dir: p.Dir, Rel: filepath.ToSlash(rel)})
	}
	return pkgs, nil
}

// buildTestBinaries compiles static test binaries for pkgs into dir.
func buildTestBinaries(ctx context.Context, root, dir string, pkgs []testPackage) error {
	for i := range pkgs {
		p := &pkgs[i]
		p.Binary = filepath.Join(dir, fmt.Sprintf("%02d-%s.test", i, path.Base(p.ImportPath)))
		if err := goBuild(ctx, root, "test", "-c", "-o", p.Binary, p.ImportPath); err != nil {
			return fmt.Errorf("build tests of %s: %w", p.ImportPath, err)
		}
	}
	return nil
}

// buildTcpstat compiles the static tcpstat binary and reports whether it
// has a doctor command yet (the guest runs it when it does).
func buildTcpstat(ctx context.Context, root, dst string) (doctor bool, err error) {
	if err := goBuild(ctx, root, "build", "-o", dst, "./cmd/tcpstat"); err != nil {
		return false, fmt.Errorf("build tcpstat: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, dst, "doctor", "--help").Run() == nil, nil
}

func goBuild(ctx context.Context, root string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return nil
}

// initScript is the guest's PID 1: it mounts what the tests need, brings
// loopback up (it is down in a fresh VM and dials would hang), runs every
// test binary from its package directory (testdata is relative to it),
// then tcpstat doctor, and powers off.
func initScript(o guestOptions) string {
	var b strings.Builder
	b.WriteString(`#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp
mkdir -p /proc /sys /dev /tmp /root /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
stty -F /dev/ttyS1 raw -echo
exec 3>/dev/ttyS1
say() { echo "` + marker + `$*" >&3; }
need() { "$@" || say warn "failed: $*"; }
need mount -t tracefs tracefs /sys/kernel/tracing
need mount -t debugfs debugfs /sys/kernel/debug
need mount -t bpf bpf /sys/fs/bpf
need mount -t cgroup2 cgroup2 /sys/fs/cgroup
need mount -t tmpfs tmpfs /tmp
need ip link set lo up
if [ -f /lib/modules/tcpstat/order ]; then
	for m in $(cat /lib/modules/tcpstat/order); do need insmod /lib/modules/tcpstat/$m.ko; done
fi
say uname "$(uname -r)"
`)
	if o.Tcpstat != "" {
		// No Go toolchain in the guest: tests that run the command use this.
		b.WriteString("export TCPSTAT_BIN=/bin/tcpstat\n")
	}
	flags := append([]string{"-test.v=test2json", "-test.timeout=" + o.TestTimeout.String()}, o.TestFlags...)
	for _, p := range o.Packages {
		fmt.Fprintf(&b, "say begin %s\n", p.Rel)
		fmt.Fprintf(&b, "(cd /src/%s && exec ./%s %s) >&3 2>&3\n", p.Rel, filepath.Base(p.Binary), shellQuote(flags))
		fmt.Fprintf(&b, "say end %s $?\n", p.Rel)
	}
	if o.Tcpstat != "" && o.Doctor {
		b.WriteString("say doctor-begin\n/bin/tcpstat doctor >&3 2>&3\nsay doctor-end $?\n")
	}
	b.WriteString("say done\nsync\npoweroff -f\n")
	return b.String()
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// writeInitramfs packs busybox, /init, tcpstat and each package's test
// binary with its testdata into an uncompressed cpio archive at dst.
func writeInitramfs(dst, busybox string, o guestOptions) error {
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("create initramfs: %w", err)
	}
	c := newCPIOWriter(f)
	err = func() error {
		for _, d := range []string{"proc", "sys", "dev", "tmp", "root", "run"} {
			if err := c.mkdirAll(d); err != nil {
				return err
			}
		}
		if err := c.copyFile("bin/busybox", busybox); err != nil {
			return fmt.Errorf("add busybox: %w", err)
		}
		if err := c.symlink("bin/sh", "busybox"); err != nil {
			return err
		}
		if err := c.file("init", 0o755, []byte(initScript(o))); err != nil {
			return err
		}
		if err := addEtc(c); err != nil {
			return err
		}
		for _, tool := range o.HostTools {
			if err := addHostTool(c, tool); err != nil {
				return err
			}
		}
		if o.Tcpstat != "" {
			if err := c.copyFile("bin/tcpstat", o.Tcpstat); err != nil {
				return fmt.Errorf("add tcpstat: %w", err)
			}
		}
		for _, p := range o.Packages {
			dir := path.Join("src", p.Rel)
			if err := c.copyFile(path.Join(dir, filepath.Base(p.Binary)), p.Binary); err != nil {
				return fmt.Errorf("add tests of %s: %w", p.ImportPath, err)
			}
			td := filepath.Join(p.Dir, "testdata")
			if st, err := os.Stat(td); err == nil && st.IsDir() {
				if err := c.copyTree(path.Join(dir, "testdata"), td); err != nil {
					return fmt.Errorf("add testdata of %s: %w", p.ImportPath, err)
				}
			}
		}
		return c.close()
	}()
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	return nil
}

// addEtc gives the guest the host's service and protocol names (listing
// tests print them) and minimal users and hosts files.
func addEtc(c *cpioWriter) error {
	for _, name := range []string{"etc/services", "etc/protocols"} {
		if _, err := os.Stat("/" + name); err != nil {
			continue
		}
		if err := c.copyFile(name, "/"+name); err != nil {
			return fmt.Errorf("add /%s: %w", name, err)
		}
	}
	for name, data := range map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
		"etc/hosts":  "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
	} {
		if err := c.file(name, 0o644, []byte(data)); err != nil {
			return err
		}
	}
	return nil
}

// addHostTool copies the host program path and the shared libraries ldd
// says it loads into the archive, at the same paths, so tests can run
// the real iproute2 or net-tools in the guest (busybox's ip, for one, has
// no netns).
func addHostTool(c *cpioWriter, path string) error {
	out, err := exec.Command("ldd", path).Output()
	if err != nil {
		// Not a dynamic executable: the program alone is enough.
		out = nil
	}
	files := []string{path}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			files = append(files, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			files = append(files, f[0]) // the dynamic loader
		}
	}
	for _, f := range files {
		if err := c.copyFile(strings.TrimPrefix(f, "/"), f); err != nil {
			return fmt.Errorf("add host tool %s: %w", path, err)
		}
	}
	return nil
}

// bootResult is what one VM run left behind.
type bootResult struct {
	Duration time.Duration
	TimedOut bool
	ExitErr  error  // QEMU's own failure, if any
	Console  string // path of the kernel console log
	Output   string // path of the test port log
}

// vmConfig is the shape of every VM.
type vmConfig struct {
	Timeout time.Duration // boot, all tests and power-off
	CPUs    int
	// TCGThread is QEMU's "thread" TCG option: "single" runs all vCPUs
	// in one host thread, "multi" gives each its own. Single is the
	// default. With multi, QEMU 7.2 (Debian 12) lets a vCPU run stale
	// translated code while the kernel patches its text on the other
	// (static keys flip at boot and whenever a BPF program attaches):
	// "Oops: int3" killed 1 boot in 50 and 1 kernel in 5 of a full
	// matrix run. One thread takes code changes in before any vCPU runs
	// again. Multi stays available for speed.
	TCGThread string
}

// boot runs vmlinux with the initramfs under QEMU TCG until the guest
// powers off or the timeout passes. The kernel console goes to the first
// serial port, the tests' output to the second.
func boot(ctx context.Context, vmlinux, initramfs, outDir string, vm vmConfig) bootResult {
	res := bootResult{
		Console: filepath.Join(outDir, "console.log"),
		Output:  filepath.Join(outDir, "tests.log"),
	}
	ctx, cancel := context.WithTimeout(ctx, vm.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-M", "pc", "-accel", "tcg,thread="+vm.TCGThread, "-cpu", "max", "-smp", strconv.Itoa(vm.CPUs), "-m", "2048M",
		"-nodefaults", "-display", "none", "-no-reboot",
		"-kernel", vmlinux, "-initrd", initramfs,
		"-append", "console=ttyS0 panic=-1 rdinit=/init no_timer_check",
		"-serial", "file:"+res.Console,
		"-serial", "file:"+res.Output,
	)
	// no_timer_check: a slow TCG guest can fail the IO-APIC timer check
	// and panic at boot (seen under host load).
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	res.Duration = time.Since(start)
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		res.TimedOut = true
	case err != nil:
		res.ExitErr = fmt.Errorf("qemu: %w: %s", err, lastLines(stderr.String(), 5))
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		res.ExitErr = errors.New("interrupted")
	}
	return res
}
