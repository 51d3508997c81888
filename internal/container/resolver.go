package container

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Options says where the host's files are; zero values are the defaults.
type Options struct {
	// CgroupRoot is the cgroup v2 mount; default: found in
	// /proc/self/mountinfo (/sys/fs/cgroup, or /sys/fs/cgroup/unified on
	// hybrid hosts).
	CgroupRoot string
	// PodLogDir is the kubelet's pod log directory, whose entries are named
	// <namespace>_<name>_<uid>; default /var/log/pods. Absent is fine.
	PodLogDir string
	// Rescan is the least time between two walks of the cgroup tree for an
	// unknown id, and how long a process's cgroup path read by LookupPID
	// is kept; default 1 s.
	Rescan time.Duration
	// ProcRoot is where LookupPID reads /proc/PID/cgroup; default /proc.
	ProcRoot string
}

// Resolver maps cgroup ids (the tracer's Process.Cgroup: the cgroup
// directory's inode on cgroup v2) to identities. The cgroup tree is walked
// once, and again when an unknown id turns up (a new container), at most
// once per Rescan. It is safe for concurrent use.
type Resolver struct {
	opts Options

	mu      sync.Mutex
	byID    map[uint64]Identity
	pods    map[string][2]string // pod UID → namespace, name
	scanned time.Time
	scanErr error
	// byPID caches LookupPID; it is emptied every Rescan (pids are reused).
	byPID     map[uint32]Identity
	pidsSince time.Time
	podsRead  time.Time
}

// NewResolver returns a Resolver; it reads nothing until asked.
func NewResolver(opts Options) *Resolver {
	if opts.CgroupRoot == "" {
		opts.CgroupRoot = cgroup2Mount()
	}
	if opts.PodLogDir == "" {
		opts.PodLogDir = "/var/log/pods"
	}
	if opts.Rescan <= 0 {
		opts.Rescan = time.Second
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	return &Resolver{opts: opts}
}

// Owner is the identity of a process known by its cgroup id (the tracer's
// owners) or, when that is 0, by its pid (owners found by a scan of /proc,
// which gives no cgroup id).
func (r *Resolver) Owner(cgroup uint64, pid uint32) Identity {
	if cgroup != 0 {
		return r.Lookup(cgroup)
	}
	return r.LookupPID(pid)
}

// LookupPID returns the identity of process pid from its cgroup path in
// /proc/PID/cgroup; the zero Identity for a host process or one that has
// exited. A pid's answer is kept for up to Rescan.
func (r *Resolver) LookupPID(pid uint32) Identity {
	if pid == 0 {
		return Identity{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.pidsSince) >= r.opts.Rescan {
		r.byPID, r.pidsSince = make(map[uint32]Identity), time.Now()
	}
	if ident, ok := r.byPID[pid]; ok {
		return ident
	}
	ident := r.lookupPath(procCgroup(filepath.Join(r.opts.ProcRoot, strconv.FormatUint(uint64(pid), 10), "cgroup")))
	r.byPID[pid] = ident
	return ident
}

// LookupPath returns the identity of a cgroup v2 path, as /proc/PID/cgroup
// gives it, with the pod's name where /var/log/pods has it.
func (r *Resolver) LookupPath(path string) Identity {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookupPath(path)
}

// lookupPath is LookupPath with r.mu held. An unknown pod UID rereads
// /var/log/pods, at most once per Rescan.
func (r *Resolver) lookupPath(path string) Identity {
	ident := Parse(path)
	if ident.PodUID == "" {
		return ident
	}
	n, ok := r.pods[ident.PodUID]
	if !ok && (r.pods == nil || time.Since(r.podsRead) >= r.opts.Rescan) {
		r.pods, r.podsRead = podNames(r.opts.PodLogDir), time.Now()
		n, ok = r.pods[ident.PodUID]
	}
	if ok {
		ident.PodNamespace, ident.PodName = n[0], n[1]
	}
	return ident
}

// procCgroup reads the cgroup v2 path of a /proc/PID/cgroup file ("0::"
// line), "" if it cannot.
func procCgroup(file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	return ""
}

// Lookup returns the identity of cgroup id, the zero Identity for a host
// cgroup or an id still unknown after a rescan.
func (r *Resolver) Lookup(id uint64) Identity {
	if id == 0 {
		return Identity{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if ident, ok := r.byID[id]; ok {
		return ident
	}
	if r.byID == nil || time.Since(r.scanned) >= r.opts.Rescan {
		r.scan()
	}
	return r.byID[id]
}

// Err is the last scan's error (no cgroup v2 mount, unreadable tree).
func (r *Resolver) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.scanErr
}

// scan walks the cgroup tree and /var/log/pods, with r.mu held.
func (r *Resolver) scan() {
	r.scanned = time.Now()
	r.pods, r.podsRead = podNames(r.opts.PodLogDir), r.scanned
	byID := map[uint64]Identity{}
	root := r.opts.CgroupRoot
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root {
				return err
			}
			return nil // removed under the walk, or unreadable: skip it
		}
		if !d.IsDir() {
			return nil
		}
		var st unix.Stat_t
		if unix.Stat(path, &st) != nil {
			return nil
		}
		// Host cgroups are kept too (as nothing), so that their ids do
		// not count as new ones and cause rescans.
		ident := Parse(strings.TrimPrefix(path, root))
		if n, ok := r.pods[ident.PodUID]; ok && ident.PodUID != "" {
			ident.PodNamespace, ident.PodName = n[0], n[1]
		}
		byID[st.Ino] = ident
		return nil
	})
	if err != nil && root == "" {
		err = errors.New("no cgroup v2 mount: container identities are unknown")
	}
	r.byID, r.scanErr = byID, err
}

// podNames reads /var/log/pods: <namespace>_<name>_<uid>. Neither
// Kubernetes names nor UIDs can hold '_', so the split is exact.
func podNames(dir string) map[string][2]string {
	m := map[string][2]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return m
	}
	for _, e := range entries {
		ns, rest, ok := strings.Cut(e.Name(), "_")
		if !ok {
			continue
		}
		name, uid, ok := strings.Cut(rest, "_")
		if !ok || !isDNSName(ns) || !isDNSName(name) || !isUID(uid) {
			continue
		}
		m[uid] = [2]string{ns, name}
	}
	return m
}

// cgroup2Mount finds where cgroup v2 is mounted, "" if nowhere.
func cgroup2Mount() string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options … - fstype source …
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		if fs := strings.Fields(pre); len(fs) >= 5 {
			return unescapeMount(fs[4])
		}
	}
	return ""
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			v := 0
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + int(c-'0')
			}
			if ok {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isDNSName reports whether s could be a Kubernetes namespace or pod name:
// lowercase letters, digits, '-' and '.', at most 253 bytes.
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '.' {
			return false
		}
	}
	return true
}
