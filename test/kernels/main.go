// Command kernels runs the project's Go tests on Debian kernels from 5.10
// to the newest release candidate, each booted under QEMU (TCG), and
// writes a matrix of the results.
//
//	go run ./test/kernels [-kernels 5.10,6.1,6.12,stable,rc] [-pkgs ./...] [-run regexp] [-skip regexp]
//
// Exit status: 0 when every test passed on every kernel, 1 when a test
// failed on some kernel, 2 when no test failed but a kernel could not be
// tested (fetch failed, boot timeout, no result).
package main

import (
	"context"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code, err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "kernels: %v\n", err)
		os.Exit(2)
	}
	os.Exit(code)
}

type options struct {
	kernels     []kernelSpec
	patterns    []string
	run         string
	skip        string
	parallel    int
	bootRetries int
	vm          vmConfig
	testTimeout time.Duration
	cacheDir    string
	outDir      string
	busybox     string
	hostTools   []string
	modules     []string
	mirrors     mirrors
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("kernels", flag.ContinueOnError)
	fs.SetOutput(stderr)
	labels := make([]string, len(defaultKernels))
	for i, k := range defaultKernels {
		labels[i] = k.Label
	}
	sys := systemMirrors(aptSourceFiles())
	var o options
	kernels := fs.String("kernels", strings.Join(labels, ","), "comma-separated kernels to test: "+strings.Join(labels, ", "))
	pkgs := fs.String("pkgs", "./...", "comma-separated package patterns whose tests run in each kernel")
	fs.StringVar(&o.run, "run", "", "run only tests matching this regexp (-test.run)")
	fs.StringVar(&o.skip, "skip", "", "leave out tests matching this regexp (-test.skip)")
	fs.IntVar(&o.parallel, "parallel", 2, "kernels booted at the same time (each VM uses 2 vCPUs)")
	fs.DurationVar(&o.vm.Timeout, "timeout", 20*time.Minute, "per-kernel limit for boot, all tests and power-off")
	fs.IntVar(&o.vm.CPUs, "cpus", 2, "vCPUs per VM")
	fs.IntVar(&o.bootRetries, "boot-retries", 1, "boots again a guest that died before /init started, this many times (reported)")
	fs.StringVar(&o.vm.TCGThread, "tcg-thread", "single", "QEMU TCG threading: single (all vCPUs in one host thread) or multi (one each)")
	fs.DurationVar(&o.testTimeout, "test-timeout", 10*time.Minute, "per-package limit inside the guest (-test.timeout)")
	fs.StringVar(&o.cacheDir, "cache", "/var/tmp/tcpstat-kernels", "where fetched kernels and apt state are kept")
	fs.StringVar(&o.outDir, "out", "artifacts/kernels", "where logs, doctor output and the matrix are written")
	modules := fs.String("modules", "veth,inet_diag,tcp_diag,udp_diag,raw_diag,unix_diag",
		"comma-separated kernel modules the guest loads (with their dependencies) before the tests")
	tools := fs.String("guest-tools", "ip,ss,netstat,unshare,bash", "comma-separated host programs copied into the guest with their libraries, when installed")
	fs.StringVar(&o.busybox, "busybox", "/bin/busybox", "statically linked busybox for the guest (Debian busybox-static)")
	fs.StringVar(&o.mirrors.Main, "mirror", sys.Main, "Debian archive URI (default: from the system's apt sources)")
	fs.StringVar(&o.mirrors.Security, "security-mirror", sys.Security, "Debian security archive URI (default: from the system's apt sources)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, l := range strings.Split(*kernels, ",") {
		spec, ok := findKernel(strings.TrimSpace(l))
		if !ok {
			return o, fmt.Errorf("unknown kernel %q (known: %s)", l, strings.Join(labels, ", "))
		}
		o.kernels = append(o.kernels, spec)
	}
	o.patterns = splitList(*pkgs)
	o.hostTools = splitList(*tools)
	o.modules = splitList(*modules)
	if o.vm.TCGThread != "single" && o.vm.TCGThread != "multi" {
		return o, fmt.Errorf("-tcg-thread is single or multi, not %q", o.vm.TCGThread)
	}
	if o.vm.CPUs < 1 {
		return o, errors.New("-cpus must be at least 1")
	}
	if o.parallel < 1 {
		return o, errors.New("-parallel must be at least 1")
	}
	return o, nil
}

func splitList(s string) []string {
	var items []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

func findKernel(label string) (kernelSpec, bool) {
	for _, k := range defaultKernels {
		if k.Label == label {
			return k, true
		}
	}
	return kernelSpec{}, false
}

func aptSourceFiles() []string {
	files := []string{"/etc/apt/sources.list"}
	for _, pat := range []string{"/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"} {
		m, _ := filepath.Glob(pat)
		files = append(files, m...)
	}
	return files
}

// kernelRun is one kernel's way through the matrix.
type kernelRun struct {
	Spec     kernelSpec
	Kernel   *kernel
	FetchErr error
	Fetch    time.Duration
	Boot     bootResult
	Report   *guestReport
	Infra    []string // why the kernel could not be (fully) tested
	Retries  []string // boots that died before /init and were retried
	Failed   []string // "package Test" that failed
	OOMKills []string // the kernel console's "Out of memory" lines
	dir      string
}

func run(ctx context.Context, args []string, stdout io.Writer) (int, error) {
	o, err := parseFlags(args, os.Stderr)
	if err != nil {
		return 2, err
	}
	start := time.Now()
	root, err := moduleRoot(ctx)
	if err != nil {
		return 2, err
	}
	if err := checkHostTools(o.busybox); err != nil {
		return 2, err
	}
	if !filepath.IsAbs(o.outDir) {
		o.outDir = filepath.Join(root, o.outDir)
	}
	if err := os.RemoveAll(o.outDir); err != nil {
		return 2, fmt.Errorf("clear %s: %w", o.outDir, err)
	}
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return 2, fmt.Errorf("create %s: %w", o.outDir, err)
	}

	runs := make([]*kernelRun, len(o.kernels))
	for i, spec := range o.kernels {
		runs[i] = &kernelRun{Spec: spec, dir: filepath.Join(o.outDir, spec.Label)}
	}
	// Fetching is network-bound: start it while the tests build.
	f := newFetcher(o.cacheDir, o.mirrors, o.modules, stdout)
	var fetched sync.WaitGroup
	for _, r := range runs {
		fetched.Add(1)
		go func() {
			defer fetched.Done()
			t := time.Now()
			r.Kernel, r.FetchErr = f.fetch(ctx, r.Spec)
			r.Fetch = time.Since(t)
		}()
	}
	guest, initramfs, err := buildGuest(ctx, root, o, stdout)
	if err != nil {
		fetched.Wait()
		return 2, err
	}
	fmt.Fprintf(stdout, "kernels: %d test packages built in %.1fs\n", len(guest.Packages), time.Since(start).Seconds())
	fetched.Wait()

	sem := make(chan struct{}, o.parallel)
	var booted sync.WaitGroup
	for _, r := range runs {
		if r.FetchErr != nil {
			fmt.Fprintf(stdout, "kernels: %s: fetch failed: %v\n", r.Spec.Label, r.FetchErr)
			continue
		}
		booted.Add(1)
		go func() {
			defer booted.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := os.MkdirAll(r.dir, 0o755); err != nil {
				r.Infra = append(r.Infra, err.Error())
				return
			}
			if err := bootKernel(ctx, r, initramfs, o); err != nil {
				r.Infra = append(r.Infra, err.Error())
			}
			fmt.Fprintf(stdout, "kernels: %s: %s in %.1fs\n", r.Spec.Label, r.Kernel.Package, r.Boot.Duration.Seconds())
		}()
	}
	booted.Wait()
	if ctx.Err() != nil {
		return 2, errors.New("interrupted")
	}
	for _, r := range runs {
		classify(r, guest)
		if err := writeKernelArtifacts(r); err != nil {
			return 2, err
		}
	}
	m := matrix{Runs: runs, Packages: guest.Packages, Total: time.Since(start), Start: start}
	if err := m.write(o.outDir); err != nil {
		return 2, err
	}
	return m.summarize(stdout), nil
}

// bootKernel boots r's kernel and reads what the guest reported. A guest
// that dies before /init reports is booted again, up to o.bootRetries
// times, before any test ran; each retry is reported, and a guest that
// fails after /init reported is never retried.
func bootKernel(ctx context.Context, r *kernelRun, common string, o options) error {
	initramfs := strings.TrimSuffix(common, ".cpio") + "-" + r.Spec.Label + ".cpio"
	if err := writeKernelInitramfs(common, r.Kernel.Modules, initramfs); err != nil {
		return err
	}
	defer os.Remove(initramfs)
	for attempt := 0; ; attempt++ {
		r.Boot = boot(ctx, r.Kernel.Vmlinux, initramfs, r.dir, o.vm)
		rep, err := readGuestOutput(ctx, r.Boot.Output)
		if err != nil {
			return err
		}
		r.Report = rep
		if rep.Release != "" || attempt == o.bootRetries || ctx.Err() != nil {
			return nil
		}
		kept := filepath.Join(r.dir, fmt.Sprintf("console-boot%d.log", attempt+1))
		if err := os.Rename(r.Boot.Console, kept); err != nil {
			return fmt.Errorf("keep console log: %w", err)
		}
		r.Retries = append(r.Retries, fmt.Sprintf("boot %d died before /init reported%s; booted again", attempt+1, consoleHint(consoleLines(kept))))
	}
}

// buildGuest builds the test binaries and tcpstat and packs the initramfs.
func buildGuest(ctx context.Context, root string, o options, stdout io.Writer) (guestOptions, string, error) {
	g := guestOptions{TestTimeout: o.testTimeout}
	for _, t := range o.hostTools {
		p, err := exec.LookPath(t)
		if err != nil {
			fmt.Fprintf(stdout, "kernels: %s is not installed here; the guest will not have it\n", t)
			continue
		}
		g.HostTools = append(g.HostTools, p)
	}
	if o.run != "" {
		g.TestFlags = append(g.TestFlags, "-test.run="+o.run)
	}
	if o.skip != "" {
		g.TestFlags = append(g.TestFlags, "-test.skip="+o.skip)
	}
	pkgs, err := listTestPackages(ctx, root, o.patterns)
	if err != nil {
		return g, "", err
	}
	for _, p := range pkgs {
		if p.Rel != "test/kernels" { // the runner's own tests are host tests
			g.Packages = append(g.Packages, p)
		}
	}
	if len(g.Packages) == 0 {
		return g, "", fmt.Errorf("no packages with tests match %s", strings.Join(o.patterns, " "))
	}
	work := filepath.Join(o.outDir, ".build")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return g, "", fmt.Errorf("create build directory: %w", err)
	}
	if err := buildTestBinaries(ctx, root, work, g.Packages); err != nil {
		return g, "", err
	}
	g.Tcpstat = filepath.Join(work, "tcpstat")
	if g.Doctor, err = buildTcpstat(ctx, root, g.Tcpstat); err != nil {
		return g, "", err
	}
	initramfs := filepath.Join(work, "initramfs.cpio")
	if err := writeInitramfs(initramfs, o.busybox, g); err != nil {
		return g, "", err
	}
	return g, initramfs, nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := runTool(ctx, "", "go", "env", "GOMOD")
	if err != nil {
		return "", fmt.Errorf("find the module: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run inside the tcpstat module")
	}
	return filepath.Dir(gomod), nil
}

// checkHostTools fails early, naming the Debian package, when a tool the
// runner needs is missing.
func checkHostTools(busybox string) error {
	for tool, pkg := range map[string]string{
		"qemu-system-x86_64": "qemu-system-x86", "apt-get": "apt", "dpkg-deb": "dpkg",
	} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: install %s", tool, pkg)
		}
	}
	f, err := elf.Open(busybox)
	if err != nil {
		return fmt.Errorf("open %s: %w (install busybox-static)", busybox, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: install busybox-static", busybox)
		}
	}
	return nil
}

func execGo(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "go", args...)
}
