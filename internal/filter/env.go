package filter

import (
	"bufio"
	"context"
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tcpstat/tcpstat/internal/container"
	"github.com/tcpstat/tcpstat/internal/snapshot"
)

var errNoZone = errors.New("zones are not supported")

// env is where names in an expression are resolved: services, network
// namespaces, cgroups, the ephemeral port range. Tests point it elsewhere.
type env struct {
	servicesPath string
	procRoot     string
	netnsDir     string
	cgroupRoot   string
	podLogDir    string

	// lookupHost resolves a host name (/etc/hosts, then DNS, as ss's
	// getaddrinfo does).
	lookupHost func(ctx context.Context, name string) ([]netip.Addr, error)
	// linkIndex resolves a device name for dev, in the namespace listed.
	linkIndex func(name string) (uint32, error)
	// listing allows dev and fwmark (Options.Listing).
	listing bool

	once     sync.Once
	services map[string]uint16
	// ids names owners' containers and pods; made when a condition
	// first needs it, unless given.
	ids *container.Resolver
}

// hostTimeout bounds a host name's resolution.
const hostTimeout = 5 * time.Second

func defaultEnv() *env {
	return &env{
		servicesPath: "/etc/services",
		procRoot:     "/proc",
		netnsDir:     snapshot.NetNSDir,
		cgroupRoot:   cgroup2Mount("/proc/self/mounts"),
		podLogDir:    "/var/log/pods",
		lookupHost: func(ctx context.Context, name string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", name)
		},
		linkIndex: func(name string) (uint32, error) { return snapshot.LinkIndex(nil, name) },
	}
}

// containers is the resolver of container, pod and pod_namespace.
func (e *env) containers() *container.Resolver {
	if e.ids == nil {
		e.ids = container.NewResolver(container.Options{CgroupRoot: e.cgroupRoot, PodLogDir: e.podLogDir, ProcRoot: e.procRoot})
	}
	return e.ids
}

// cgroup2Mount is where the cgroup v2 hierarchy is mounted (the one whose
// ids the BPF program sees): /sys/fs/cgroup, or /sys/fs/cgroup/unified on
// hybrid systems.
func cgroup2Mount(mounts string) string {
	b, _ := os.ReadFile(mounts)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[2] == "cgroup2" {
			return f[1]
		}
	}
	return "/sys/fs/cgroup"
}

// service looks a TCP service name (or alias) up in /etc/services.
func (e *env) service(name string) (uint16, bool) {
	e.once.Do(func() {
		e.services = make(map[string]uint16)
		f, err := os.Open(e.servicesPath)
		if err != nil {
			return
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line, _, _ := strings.Cut(sc.Text(), "#")
			fs := strings.Fields(line)
			if len(fs) < 2 {
				continue
			}
			portStr, proto, ok := strings.Cut(fs[1], "/")
			if !ok || proto != "tcp" {
				continue
			}
			port, err := strconv.ParseUint(portStr, 10, 16)
			if err != nil {
				continue
			}
			for _, n := range append(fs[:1:1], fs[2:]...) {
				if _, dup := e.services[n]; !dup {
					e.services[n] = uint16(port)
				}
			}
		}
	})
	p, ok := e.services[name]
	return p, ok
}

// ephemeralRange is the kernel's range for automatically bound ports (ss's
// autobound), 32768-60999 if it cannot be read.
func (e *env) ephemeralRange() (lo, hi int64) {
	lo, hi = 32768, 60999
	b, err := os.ReadFile(filepath.Join(e.procRoot, "sys/net/ipv4/ip_local_port_range"))
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	l, err1 := strconv.ParseInt(f[0], 10, 32)
	h, err2 := strconv.ParseInt(f[1], 10, 32)
	if err1 != nil || err2 != nil {
		return lo, hi
	}
	return l, h
}

// netns resolves an inode number, pid:N (that process's namespace) or a
// name made by `ip netns add` to the namespace's inode.
func (e *env) netns(v token) (uint32, error) {
	if n, err := strconv.ParseUint(v.text, 10, 32); err == nil {
		return uint32(n), nil
	}
	var p string
	if pid, ok := strings.CutPrefix(v.text, "pid:"); ok {
		if _, err := strconv.ParseUint(pid, 10, 32); err != nil {
			return 0, errorf(v.col, "netns pid:%s needs a process id", pid)
		}
		p = filepath.Join(e.procRoot, pid, "ns/net")
	} else {
		if strings.ContainsRune(v.text, '/') || v.text == "." || v.text == ".." {
			return 0, errorf(v.col, "netns %q is not a name under %s", v.text, e.netnsDir)
		}
		p = filepath.Join(e.netnsDir, v.text)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return 0, errorf(v.col, "no network namespace %q (%s: %v)", v.text, p, err)
	}
	return uint32(st.Ino), nil
}

// cgroupTree is a cgroup v2 directory and, as far as last seen, the ids of
// it and its descendants (a cgroup's id is its directory's inode number).
type cgroupTree struct {
	path     string // as /proc/PID/cgroup shows it: "/system.slice/x.service"
	dir      string // in the file system
	procRoot string

	mu      sync.Mutex
	ids     map[uint64]bool
	scanned time.Time
	paths   map[uint32]string // pid → cgroup path, for sockets listed without a cgroup id
}

// cgroup resolves a path relative to the cgroup v2 root (or an absolute
// one under it).
func (e *env) cgroup(v token) (*cgroupTree, error) {
	rel := v.text
	if r, ok := strings.CutPrefix(filepath.Clean(rel), e.cgroupRoot); ok && (r == "" || r[0] == '/') {
		rel = r
	}
	rel = filepath.Clean("/" + rel)
	dir := filepath.Join(e.cgroupRoot, rel)
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return nil, errorf(v.col, "no cgroup %q under %s", v.text, e.cgroupRoot)
	}
	t := &cgroupTree{path: rel, dir: dir, procRoot: e.procRoot, paths: make(map[uint32]string)}
	t.scan()
	return t, nil
}

func (t *cgroupTree) scan() {
	ids := make(map[uint64]bool)
	filepath.WalkDir(t.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				ids[st.Ino] = true
			}
		}
		return nil
	})
	t.ids, t.scanned = ids, time.Now()
}

// contains reports whether cgroup id is the tree's or a descendant's. An
// unknown id rescans the tree (at most once a second): cgroups come and go.
func (t *cgroupTree) contains(id uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ids[id] {
		return true
	}
	if time.Since(t.scanned) > time.Second {
		t.scan()
	}
	return t.ids[id]
}

func (t *cgroupTree) containsPath(p string) bool {
	return t.path == "/" || p == t.path || strings.HasPrefix(p, t.path+"/")
}

// pidPath reads a process's cgroup v2 path from /proc/PID/cgroup.
func (t *cgroupTree) pidPath(pid uint32) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.paths[pid]; ok {
		return p
	}
	b, _ := os.ReadFile(filepath.Join(t.procRoot, strconv.FormatUint(uint64(pid), 10), "cgroup"))
	p := ""
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			p = rest
		}
	}
	t.paths[pid] = p
	return p
}

func statIno(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}
