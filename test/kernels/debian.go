package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// archiveKind says which Debian archive a suite lives in: the main one or
// the security one (they have different mirrors).
type archiveKind int

const (
	mainArchive archiveKind = iota
	securityArchive
)

// kernelSpec names a kernel the matrix boots and where Debian keeps it.
// Versions are never written here: the metapackage resolves them, so the
// matrix follows Debian's updates (ABI names rotate with every one).
type kernelSpec struct {
	Label   string // short name used in flags, file names and the matrix
	Suite   string
	Archive archiveKind
	Meta    string // metapackage that depends on the current image
}

// defaultKernels is the matrix: the oldest kernel Debian still ships (5.10),
// the two bookworm kernels, and sid's newest stable and experimental's rc.
var defaultKernels = []kernelSpec{
	{Label: "5.10", Suite: "bullseye-security", Archive: securityArchive, Meta: "linux-image-amd64"},
	{Label: "6.1", Suite: "bookworm-security", Archive: securityArchive, Meta: "linux-image-amd64"},
	{Label: "6.12", Suite: "bookworm-security", Archive: securityArchive, Meta: "linux-image-6.12-amd64"},
	{Label: "stable", Suite: "sid", Archive: mainArchive, Meta: "linux-image-amd64"},
	{Label: "rc", Suite: "experimental", Archive: mainArchive, Meta: "linux-image-amd64"},
}

// kernel is a fetched kernel, ready to boot.
type kernel struct {
	Spec     kernelSpec `json:"-"`
	Package  string     `json:"package"` // the ABI image package the metapackage resolved to
	Version  string     `json:"version"` // its Debian version
	Vmlinux  string     `json:"-"`       // uncompressed ELF with a PVH note
	Config   string     `json:"-"`       // the kernel's .config, kept as evidence
	Release  string     `json:"release"` // uname -r as seen in the guest, filled after boot
	Cached   bool       `json:"cached"`
	Modules  string     `json:"-"` // directory of the modules /init loads
	Missing  []string   `json:"missing_modules,omitempty"`
	Download string     `json:"download,omitempty"` // what was downloaded, when it was
}

// mirrors are the archive URIs; by default the ones the system's apt
// sources already use, so the runner goes where the machine is allowed to.
type mirrors struct {
	Main     string
	Security string
}

// aptRepo is a private apt state (sources, lists, cache) for one suite.
// The system's apt configuration is never modified.
type aptRepo struct {
	dir   string
	once  sync.Once
	err   error
	suite string
	uri   string
	// mu serializes apt runs on this state: two kernels of one suite
	// must not rebuild its package cache at the same time, and apt's own
	// locking is off (it would fail rather than wait).
	mu sync.Mutex
}

// apt runs an apt tool on r's private state, one at a time.
func (r *aptRepo) apt(ctx context.Context, dir, tool string, args ...string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return runTool(ctx, dir, tool, append(r.aptOptions(), args...)...)
}

// fetcher resolves and fetches kernels into a cache directory.
type fetcher struct {
	cacheDir string
	mirrors  mirrors
	modules  []string // kernel modules the guest loads
	log      io.Writer

	mu    sync.Mutex
	repos map[string]*aptRepo
}

func newFetcher(cacheDir string, m mirrors, modules []string, log io.Writer) *fetcher {
	return &fetcher{cacheDir: cacheDir, mirrors: m, modules: modules, log: log, repos: map[string]*aptRepo{}}
}

func (f *fetcher) repo(spec kernelSpec) (*aptRepo, error) {
	uri := f.mirrors.Main
	if spec.Archive == securityArchive {
		uri = f.mirrors.Security
	}
	if uri == "" {
		return nil, fmt.Errorf("no mirror known for suite %s (see -mirror and -security-mirror)", spec.Suite)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.repos[spec.Suite]
	if !ok {
		r = &aptRepo{dir: filepath.Join(f.cacheDir, "apt", spec.Suite), suite: spec.Suite, uri: uri}
		f.repos[spec.Suite] = r
	}
	return r, nil
}

// aptOptions points apt at the private state of r and at nothing else.
func (r *aptRepo) aptOptions() []string {
	return []string{
		"-o", "Dir::Etc::SourceList=" + filepath.Join(r.dir, "sources.list"),
		"-o", "Dir::Etc::SourceParts=/dev/null",
		"-o", "Dir::State::Lists=" + filepath.Join(r.dir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(r.dir, "cache"),
		"-o", "Acquire::Languages=none",
		"-o", "Debug::NoLocking=true",
	}
}

// update refreshes the suite's package lists once per run.
func (r *aptRepo) update(ctx context.Context) error {
	r.once.Do(func() {
		for _, d := range []string{"lists/partial", "cache/archives/partial"} {
			if err := os.MkdirAll(filepath.Join(r.dir, d), 0o755); err != nil {
				r.err = fmt.Errorf("create apt state for %s: %w", r.suite, err)
				return
			}
		}
		// Only the Packages index: no translations, no DEP-11 metadata.
		line := fmt.Sprintf("deb [target=Packages] %s %s main\n", r.uri, r.suite)
		if err := os.WriteFile(filepath.Join(r.dir, "sources.list"), []byte(line), 0o644); err != nil {
			r.err = fmt.Errorf("write apt sources for %s: %w", r.suite, err)
			return
		}
		if _, err := r.apt(ctx, "", "apt-get", "-q", "--error-on=any", "update"); err != nil {
			r.err = fmt.Errorf("apt-get update for %s: %w", r.suite, err)
		}
	})
	return r.err
}

// show returns the fields of the candidate version of pkg.
func (r *aptRepo) show(ctx context.Context, pkg string) (map[string]string, error) {
	out, err := r.apt(ctx, "", "apt-cache", "show", "--no-all-versions", pkg)
	if err != nil {
		return nil, fmt.Errorf("look up %s in %s: %w", pkg, r.suite, err)
	}
	fields := parseControl(out)
	if fields["Package"] != pkg {
		return nil, fmt.Errorf("look up %s in %s: not found", pkg, r.suite)
	}
	return fields, nil
}

// parseControl reads the first stanza of Debian control data.
func parseControl(data []byte) map[string]string {
	fields := map[string]string{}
	var last string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if len(fields) > 0 {
				break
			}
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if last != "" {
				fields[last] += "\n" + strings.TrimSpace(line)
			}
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		last = k
		fields[k] = strings.TrimSpace(v)
	}
	return fields
}

// dependsOn lists the package names in a Depends field, first
// alternative of each.
func dependsOn(depends string) []string {
	var names []string
	for _, d := range strings.Split(depends, ",") {
		alt, _, _ := strings.Cut(d, "|")
		name, _, _ := strings.Cut(strings.TrimSpace(alt), " ")
		name, _, _ = strings.Cut(name, ":")
		if name != "" {
			names = append(names, name)
		}
	}
	return names
}

var imagePackage = regexp.MustCompile(`^linux-image-[0-9][^ ]*$`)

// plan decides what to download for spec: the ABI image package the
// metapackage depends on, then either its "-unsigned" twin (which holds
// /boot/vmlinuz and the modules; 5.10 to 6.12) or the linux-binary-*
// (vmlinuz), linux-base-* (config) and, when modules are wanted,
// linux-modules-* packages it depends on (newer packaging).
func (f *fetcher) plan(ctx context.Context, r *aptRepo, spec kernelSpec) (image, version string, debs []string, err error) {
	meta, err := r.show(ctx, spec.Meta)
	if err != nil {
		return "", "", nil, err
	}
	for _, d := range dependsOn(meta["Depends"]) {
		if imagePackage.MatchString(d) {
			image = d
			break
		}
	}
	if image == "" {
		return "", "", nil, fmt.Errorf("%s in %s depends on no linux-image-<abi> package (Depends: %s)", spec.Meta, spec.Suite, meta["Depends"])
	}
	img, err := r.show(ctx, image)
	if err != nil {
		return "", "", nil, err
	}
	version = img["Version"]
	for _, d := range dependsOn(img["Depends"]) {
		if strings.HasPrefix(d, "linux-binary-") || strings.HasPrefix(d, "linux-base-") ||
			strings.HasPrefix(d, "linux-modules-") && len(f.modules) > 0 {
			debs = append(debs, d)
		}
	}
	if len(debs) > 0 {
		return image, version, debs, nil
	}
	unsigned := image + "-unsigned"
	if _, err := r.show(ctx, unsigned); err != nil {
		return "", "", nil, err
	}
	return image, version, []string{unsigned}, nil
}

// fetch resolves spec to the current package version and returns the
// kernel, from the cache when that version was fetched before.
func (f *fetcher) fetch(ctx context.Context, spec kernelSpec) (*kernel, error) {
	r, err := f.repo(spec)
	if err != nil {
		return nil, err
	}
	if err := r.update(ctx); err != nil {
		return nil, err
	}
	image, version, debs, err := f.plan(ctx, r, spec)
	if err != nil {
		return nil, err
	}
	k := &kernel{Spec: spec, Package: image, Version: version}
	dir := filepath.Join(f.cacheDir, "kernels", image+"_"+version)
	k.Vmlinux = filepath.Join(dir, "vmlinux")
	k.Config = filepath.Join(dir, "config")
	k.Modules = filepath.Join(dir, "modules")
	if meta, err := readCacheMeta(dir); err == nil && hasModules(meta.Modules, f.modules) {
		k.Cached, k.Missing = true, meta.Missing
		return k, nil
	}
	fmt.Fprintf(f.log, "kernels: %s: fetching %s (%s)\n", spec.Label, strings.Join(debs, " "), version)
	if k.Missing, err = f.download(ctx, r, dir, debs); err != nil {
		return nil, fmt.Errorf("fetch %s %s: %w", image, version, err)
	}
	k.Download = strings.Join(debs, " ")
	return k, nil
}

// cacheMeta is kernel.json in a cache entry.
type cacheMeta struct {
	Packages []string `json:"packages"`
	Modules  []string `json:"modules"` // asked for when the entry was made
	Missing  []string `json:"missing_modules,omitempty"`
}

func readCacheMeta(dir string) (cacheMeta, error) {
	var m cacheMeta
	data, err := os.ReadFile(filepath.Join(dir, "kernel.json"))
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(data, &m)
}

// download fetches debs, takes vmlinuz, config and the wanted modules out
// of them, unpacks the ELF vmlinux and moves the result into dir in one
// rename, so a cache entry is either complete or absent.
func (f *fetcher) download(ctx context.Context, r *aptRepo, dir string, debs []string) (missing []string, err error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("create kernel cache: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".fetch-")
	if err != nil {
		return nil, fmt.Errorf("create download directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	if _, err := r.apt(ctx, tmp, "apt-get", append([]string{"-q", "download"}, debs...)...); err != nil {
		return nil, fmt.Errorf("apt-get download: %w", err)
	}
	files, err := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if err != nil || len(files) != len(debs) {
		return nil, fmt.Errorf("apt-get download left %d .deb files for %d packages", len(files), len(debs))
	}
	got := bootFiles{modules: map[string]string{}, builtin: map[string]bool{}}
	if len(f.modules) > 0 {
		got.moduleDir = filepath.Join(tmp, "packaged-modules")
		if err := os.Mkdir(got.moduleDir, 0o755); err != nil {
			return nil, fmt.Errorf("create module directory: %w", err)
		}
	}
	for _, deb := range files {
		if err := extractBootFiles(ctx, deb, tmp, &got); err != nil {
			return nil, err
		}
	}
	if got.vmlinuz == "" {
		return nil, errors.New("no vmlinuz in the downloaded packages")
	}
	out := filepath.Join(tmp, "kernel")
	if err := os.Mkdir(out, 0o755); err != nil {
		return nil, fmt.Errorf("create kernel directory: %w", err)
	}
	if err := extractVmlinux(got.vmlinuz, filepath.Join(out, "vmlinux")); err != nil {
		return nil, err
	}
	if got.config != "" {
		if err := os.Rename(got.config, filepath.Join(out, "config")); err != nil {
			return nil, fmt.Errorf("keep kernel config: %w", err)
		}
	}
	if missing, err = collectModules(got.modules, got.builtin, f.modules, filepath.Join(out, "modules")); err != nil {
		return nil, err
	}
	meta := cacheMeta{Packages: debs, Missing: missing}
	for _, m := range f.modules {
		meta.Modules = append(meta.Modules, canonicalModule(m))
	}
	data, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode kernel metadata: %w", err)
	}
	if err := os.WriteFile(filepath.Join(out, "kernel.json"), data, 0o644); err != nil {
		return nil, fmt.Errorf("write kernel metadata: %w", err)
	}
	// An entry made for other modules is replaced.
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("replace cached kernel: %w", err)
	}
	if err := os.Rename(out, dir); err != nil {
		return nil, fmt.Errorf("move kernel into the cache: %w", err)
	}
	return missing, nil
}

// bootFiles are what is taken out of the packages.
type bootFiles struct {
	vmlinuz, config string
	moduleDir       string            // where module files go; "" for none
	modules         map[string]string // module name → file in moduleDir
	builtin         map[string]bool   // modules built into the kernel
}

// extractBootFiles copies the kernel image, its config and (when
// got.moduleDir is set) every module file out of a .deb. Old packages
// keep image and config in /boot (vmlinuz-<abi>, config-<abi>), newer ones
// in /usr/lib/modules/<abi>/ (vmlinuz, config).
func extractBootFiles(ctx context.Context, deb, dir string, got *bootFiles) error {
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("unpack %s: %w", filepath.Base(deb), err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("unpack %s: %w", filepath.Base(deb), err)
	}
	readErr := readBootFiles(pipe, dir, filepath.Base(deb), got)
	// Drain the rest so dpkg-deb does not die of a broken pipe.
	io.Copy(io.Discard, pipe)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("unpack %s: %w: %s", filepath.Base(deb), err, strings.TrimSpace(stderr.String()))
	}
	return readErr
}

func readBootFiles(r io.Reader, dir, name string, got *bootFiles) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		p := strings.TrimPrefix(h.Name, "./")
		base := filepath.Base(p)
		var out string
		switch {
		case strings.HasPrefix(p, "boot/vmlinuz-"), strings.HasPrefix(p, "usr/lib/modules/") && base == "vmlinuz":
			out = filepath.Join(dir, name+".vmlinuz")
			got.vmlinuz = out
		case strings.HasPrefix(p, "boot/config-"), strings.HasPrefix(p, "usr/lib/modules/") && base == "config":
			out = filepath.Join(dir, name+".config")
			got.config = out
		case got.moduleDir != "" && base == "modules.builtin":
			data, err := io.ReadAll(tr)
			if err != nil {
				return fmt.Errorf("read %s from %s: %w", p, name, err)
			}
			for _, line := range strings.Fields(string(data)) {
				got.builtin[moduleName("lib/modules/"+line)] = true
			}
			continue
		case got.moduleDir != "" && moduleName(p) != "":
			out = filepath.Join(got.moduleDir, base)
			got.modules[moduleName(p)] = out
		default:
			continue
		}
		if err := writeFile(out, tr); err != nil {
			return fmt.Errorf("extract %s from %s: %w", p, name, err)
		}
	}
}

func writeFile(path string, r io.Reader) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// runTool runs a host tool and returns its standard output; on failure
// the error carries the tail of its standard error.
func runTool(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s: %w: %s", name, err, lastLines(stderr.String(), 5))
	}
	return stdout.Bytes(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// systemMirrors finds the Debian archive URIs in the system's apt sources
// (one-line and deb822 formats): the URI of a "-security" suite is the
// security mirror, the URI of any other suite the main mirror.
func systemMirrors(files []string) mirrors {
	var m mirrors
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, e := range parseSources(string(data), strings.HasSuffix(file, ".sources")) {
			if !strings.Contains(e.uri, "debian") {
				continue // a third-party repository
			}
			for _, s := range e.suites {
				switch {
				case strings.HasSuffix(s, "-security") || strings.HasSuffix(s, "/updates"):
					if m.Security == "" {
						m.Security = e.uri
					}
				case m.Main == "":
					m.Main = e.uri
				}
			}
		}
	}
	return m
}

type sourceEntry struct {
	uri    string
	suites []string
}

func parseSources(text string, deb822 bool) []sourceEntry {
	var entries []sourceEntry
	if !deb822 {
		for _, line := range strings.Split(text, "\n") {
			line, _, _ = strings.Cut(line, "#")
			f := strings.Fields(line)
			if len(f) < 3 || f[0] != "deb" {
				continue
			}
			f = f[1:]
			if strings.HasPrefix(f[0], "[") {
				for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
					f = f[1:]
				}
				if len(f) > 0 {
					f = f[1:]
				}
			}
			if len(f) >= 2 {
				entries = append(entries, sourceEntry{uri: f[0], suites: []string{f[1]}})
			}
		}
		return entries
	}
	for _, stanza := range strings.Split(text, "\n\n") {
		var lines []string
		for _, l := range strings.Split(stanza, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "#") {
				lines = append(lines, l)
			}
		}
		fields := parseControl([]byte(strings.Join(lines, "\n")))
		if !strings.Contains(" "+fields["Types"]+" ", " deb ") || strings.EqualFold(fields["Enabled"], "no") {
			continue
		}
		uris, suites := strings.Fields(fields["URIs"]), strings.Fields(fields["Suites"])
		if len(uris) > 0 && len(suites) > 0 {
			entries = append(entries, sourceEntry{uri: uris[0], suites: suites})
		}
	}
	return entries
}
