package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// NetNSDir is where iproute2 names network namespaces (ip netns add):
// /var/run/netns, which is /run/netns on systems where /var/run links
// there, and /run/netns where there is no /var/run at all (a minimal
// userland, such as the kernel matrix's guest).
var NetNSDir = func() string {
	if _, err := os.Stat("/var/run"); err != nil {
		return "/run/netns"
	}
	return "/var/run/netns"
}()

// Namespace is one network namespace and the paths that reach it. A
// sock_diag socket lists the sockets of the namespace it was made in, so
// dumping another namespace means making the socket from a thread that
// joined it.
type Namespace struct {
	Inode uint32   // the nsfs inode, as ip netns identify, lsns and the tracer's events show it
	Names []string // names under /var/run/netns, if any
	PID   uint32   // a process in it (the lowest found), 0 if none was found
	// paths are the files to open it through, best first: a name, then
	// /proc/PID/ns/net of up to a few processes (any may exit first).
	paths []string
}

// maxPaths bounds the process paths kept per namespace: enough that one
// exiting process rarely leaves a namespace unreachable.
const maxPaths = 4

// NamespacesError says some processes' namespaces could not be read (not
// root: reading another user's /proc/PID/ns/net needs CAP_SYS_PTRACE).
// The namespaces returned with it are the ones that could.
type NamespacesError struct {
	Unreadable int
}

func (e *NamespacesError) Error() string {
	return fmt.Sprintf("could not read the network namespace of %d processes (needs CAP_SYS_PTRACE); their namespaces are left out", e.Unreadable)
}

// Namespaces finds every network namespace of the host: those of all
// processes (/proc/*/ns/net) and the named ones (/var/run/netns),
// deduplicated by inode and sorted by it. Processes that exit during the
// scan are skipped. When some could not be read, the rest is returned with
// a *NamespacesError.
func Namespaces() ([]Namespace, error) {
	return findNamespaces("/proc", NetNSDir)
}

func findNamespaces(procRoot, namedDir string) ([]Namespace, error) {
	byInode := map[uint32]*Namespace{}
	get := func(ino uint32) *Namespace {
		n := byInode[ino]
		if n == nil {
			n = &Namespace{Inode: ino}
			byInode[ino] = n
		}
		return n
	}
	if entries, err := os.ReadDir(namedDir); err == nil {
		for _, e := range entries {
			p := filepath.Join(namedDir, e.Name())
			ino, err := nsInode(p)
			if err != nil {
				continue // a name left over from a deleted namespace
			}
			n := get(ino)
			n.Names = append(n.Names, e.Name())
			n.paths = append(n.paths, p)
		}
	}
	pids, err := listPIDs(procRoot)
	if err != nil {
		return nil, err
	}
	slices.Sort(pids)
	unreadable := 0
	for _, pid := range pids {
		p := procRoot + "/" + strconv.FormatUint(uint64(pid), 10) + "/ns/net"
		ino, err := nsInode(p)
		if err != nil {
			if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
				unreadable++
			}
			continue // exited, or a kernel thread without namespaces
		}
		n := get(ino)
		if n.PID == 0 {
			n.PID = pid
		}
		if len(n.paths) < maxPaths {
			n.paths = append(n.paths, p)
		}
	}
	out := make([]Namespace, 0, len(byInode))
	for _, n := range byInode {
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b Namespace) int { return int(int64(a.Inode) - int64(b.Inode)) })
	if unreadable > 0 {
		return out, &NamespacesError{Unreadable: unreadable}
	}
	return out, nil
}

// nsInode returns the inode of the namespace a path reaches.
func nsInode(path string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return uint32(st.Ino), nil
}

// CurrentNetNS returns the inode of tcpstat's own network namespace.
func CurrentNetNS() (uint32, error) {
	ino, err := nsInode("/proc/self/ns/net")
	if err != nil {
		return 0, fmt.Errorf("read the network namespace: %w", err)
	}
	return ino, nil
}

// ResolveNetNS finds the namespace a --netns selector names: its inode, a
// name under /var/run/netns, pid:N, "self" (tcpstat's own), or the path of
// a namespace file (/proc/N/ns/net, a bind mount).
func ResolveNetNS(sel string) (Namespace, error) {
	return resolveNetNS(sel, "/proc", NetNSDir)
}

func resolveNetNS(sel, procRoot, namedDir string) (Namespace, error) {
	var path string
	switch {
	case sel == "":
		return Namespace{}, errors.New("empty network namespace: give an inode, a name, pid:N or a path")
	case sel == "self":
		path = procRoot + "/self/ns/net"
	case strings.HasPrefix(sel, "pid:"):
		pid, err := strconv.ParseUint(sel[4:], 10, 32)
		if err != nil || pid == 0 {
			return Namespace{}, fmt.Errorf("network namespace %q: pid:N needs a process id", sel)
		}
		path = procRoot + "/" + strconv.FormatUint(pid, 10) + "/ns/net"
	case strings.ContainsRune(sel, '/'):
		path = sel
	default:
		if ino, err := strconv.ParseUint(sel, 10, 32); err == nil {
			return findByInode(uint32(ino), procRoot, namedDir)
		}
		if strings.HasPrefix(sel, ".") {
			return Namespace{}, fmt.Errorf("network namespace %q: not a name under %s", sel, namedDir)
		}
		path = filepath.Join(namedDir, sel)
	}
	ino, err := nsInode(path)
	if err != nil {
		return Namespace{}, fmt.Errorf("network namespace %q: %w", sel, nsErr(err))
	}
	if !isNetNS(path) {
		return Namespace{}, fmt.Errorf("network namespace %q: %s is not a network namespace", sel, path)
	}
	n := Namespace{Inode: ino, paths: []string{path}}
	if strings.HasPrefix(path, namedDir+"/") {
		n.Names = []string{filepath.Base(path)}
	}
	return n, nil
}

// findByInode looks the inode up among the host's namespaces.
func findByInode(ino uint32, procRoot, namedDir string) (Namespace, error) {
	nss, err := findNamespaces(procRoot, namedDir)
	for _, n := range nss {
		if n.Inode == ino {
			return n, nil
		}
	}
	if err != nil {
		return Namespace{}, fmt.Errorf("network namespace %d: not found (%w)", ino, err)
	}
	return Namespace{}, fmt.Errorf("network namespace %d: no process or name under %s holds it", ino, namedDir)
}

// isNetNS reports whether path is a network namespace file: nsfs answers
// NS_GET_NSTYPE (4.11+) for its own files only.
func isNetNS(path string) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	return err == nil && typ == unix.CLONE_NEWNET
}

// nsErr says which capability a namespace operation lacked.
func nsErr(err error) error {
	switch {
	case errors.Is(err, unix.EACCES):
		return fmt.Errorf("%w (another user's process: needs CAP_SYS_PTRACE)", err)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w (joining another network namespace needs CAP_SYS_ADMIN)", err)
	}
	return err
}

// ErrNetNSGone says a namespace ceased to exist before it could be
// joined: every process in it exited and no name held it.
var ErrNetNSGone = errors.New("network namespace gone")

// openDiagIn makes sock_diag sockets in each namespace, from one OS thread
// that joins them in turn. The sockets list their own namespace's sockets
// from any thread; the thread, left in a foreign namespace, is never handed
// back to the Go scheduler: its goroutine ends locked, so the runtime ends
// the thread. conns[i] is nil where errs[i] says why; a namespace whose
// every path is gone gets ErrNetNSGone.
func openDiagIn(nss []Namespace) (conns []*diagConn, errs []error) {
	conns = make([]*diagConn, len(nss))
	errs = make([]error, len(nss))
	self, selfErr := CurrentNetNS()
	var joinable []int
	for i := range nss {
		if selfErr == nil && nss[i].Inode == self {
			conns[i], errs[i] = openDiag()
			continue
		}
		joinable = append(joinable, i)
	}
	if len(joinable) == 0 {
		return conns, errs
	}
	OnDiscardedThread(func() {
		for _, i := range joinable {
			conns[i], errs[i] = joinAndOpen(&nss[i])
		}
	})
	return conns, errs
}

// OnDiscardedThread runs fn on an OS thread of its own that ends with it,
// for fn to join other namespaces: no other goroutine ever runs there. The
// runtime ends a thread whose goroutine exits locked to it, except the
// main thread, which it keeps idle instead; /proc/self/ns/net and
// /proc/self/net follow the main thread, so fn must never run there.
func OnDiscardedThread(fn func()) {
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// Holding the main thread, the nested goroutine gets another.
			OnDiscardedThread(fn)
			runtime.UnlockOSThread()
			close(done)
			return
		}
		defer close(done)
		fn()
		// No UnlockOSThread: the thread leaves with this goroutine.
	}()
	<-done
}

// joinAndOpen joins ns on the calling (locked) thread and makes a
// sock_diag socket there. It tries each path; a path that now reaches a
// different namespace (its process exited and the pid was reused) is
// skipped.
func joinAndOpen(ns *Namespace) (*diagConn, error) {
	if err := join(ns); err != nil {
		return nil, err
	}
	c, err := openDiag()
	if err != nil {
		return nil, fmt.Errorf("in network namespace %d: %w", ns.Inode, err)
	}
	return c, nil
}

// join joins ns on the calling (locked) thread through the first of its
// paths that still reaches it.
func join(ns *Namespace) error {
	var firstErr error
	for _, p := range ns.paths {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) && firstErr == nil {
				firstErr = fmt.Errorf("open %s: %w", p, nsErr(err))
			}
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || uint32(st.Ino) != ns.Inode {
			unix.Close(fd)
			continue
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("join network namespace %d: %w", ns.Inode, nsErr(err))
		}
		return nil
	}
	if firstErr != nil {
		return firstErr
	}
	return fmt.Errorf("network namespace %d: %w", ns.Inode, ErrNetNSGone)
}

// NetNSResult says how one namespace's dump went.
type NetNSResult struct {
	Namespace
	Sockets int
	Err     error // ErrNetNSGone (wrapped) when it vanished before it was joined
}

// WalkNetNS dumps each namespace in nss as Walk dumps the current one, and
// calls fn for every socket, with Socket.NetNS set. The sockets are made
// first, by one thread that joins each namespace; the dumps then run on up
// to workers goroutines (fn is called from one at a time). A namespace that
// is gone before it was joined, or that could not be joined, is reported
// in its result and the others are still dumped; err is for ctx and fn
// errors, and for dumps that failed after they began.
func WalkNetNS(ctx context.Context, nss []Namespace, opts Options, workers int, fn func(*Socket) error) ([]NetNSResult, error) {
	res := make([]NetNSResult, len(nss))
	conns, errs := openDiagIn(nss)
	for i := range nss {
		res[i] = NetNSResult{Namespace: nss[i], Err: errs[i]}
	}
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	var mu sync.Mutex
	var fnErr error
	call := func(s *Socket) error {
		mu.Lock()
		defer mu.Unlock()
		if fnErr != nil {
			return fnErr
		}
		fnErr = fn(s)
		return fnErr
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	walkErrs := make([]error, len(nss))
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				ns := nss[i].Inode
				n := 0
				walkErrs[i] = walkConn(ctx, conns[i], false, opts, func(s *Socket) error {
					s.NetNS = ns
					n++
					return call(s)
				})
				res[i].Sockets = n
			}
		}()
	}
	for i := range nss {
		if conns[i] == nil {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if fnErr != nil {
		return res, fnErr
	}
	var all []error
	for i, err := range walkErrs {
		if err != nil {
			err = fmt.Errorf("network namespace %d: %w", nss[i].Inode, err)
			res[i].Err = err
			all = append(all, err)
		}
	}
	return res, errors.Join(all...)
}
