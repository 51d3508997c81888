package snapshot

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"iter"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/sockfds"
)

// PartialError says the owner scan could not read some processes'
// descriptors (not root, or another user's process under hidepid). The
// map returned with it is still valid for every process that was read.
type PartialError struct {
	Unreadable int // processes whose fd directory could not be read
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("could not read the descriptors of %d processes; their sockets show no owner (reading them needs CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE, or root)", e.Unreadable)
}

// Owners maps socket inodes to the processes holding them. The
// descriptors come from one pass of the BPF task_file iterator where it
// loads (privileges, Linux 5.8+, the kernel's own PID namespace), else from
// a walk of /proc/*/fd, in parallel; LastOwnerScan says which. Either way a
// process that exits mid-scan is skipped or keeps its pid with empty names,
// and the names are read from /proc/<pid>/comm and cmdline. When some
// processes could not be read the index is returned with a *PartialError.
func Owners(ctx context.Context) (*OwnerIndex, error) {
	owners, err := iterOwners(ctx, "/proc")
	if err == nil || ctx.Err() != nil {
		lastScan.Store(&OwnerScan{Method: ScanIterator})
		return owners, err
	}
	lastScan.Store(&OwnerScan{Method: ScanProc, Fallback: err})
	return scanOwners(ctx, "/proc")
}

// How an owner scan found the sockets' descriptors.
const (
	ScanIterator = "bpf task_file iterator"
	ScanProc     = "/proc/*/fd walk"
)

// OwnerScan says how the last owner scan of this process was made.
type OwnerScan struct {
	Method   string // ScanIterator or ScanProc
	Fallback error  // why the iterator was not used, with ScanProc
}

var lastScan atomic.Pointer[OwnerScan]

// LastOwnerScan says how the last call of Owners found the descriptors;
// nil before the first.
func LastOwnerScan() *OwnerScan { return lastScan.Load() }

// iterOwners is Owners through the BPF iterator, with the names read from
// procRoot once per process that holds a socket.
func iterOwners(ctx context.Context, procRoot string) (*OwnerIndex, error) {
	var x OwnerIndex
	err := sockfds.Scan(func(pid, _ uint32, inode uint64) {
		// Records come grouped by process: describe each once, later.
		if len(x.procs) == 0 || x.procs[len(x.procs)-1].PID != pid {
			x.procs = append(x.procs, Owner{PID: pid})
		}
		x.refs = append(x.refs, ownerRef{inode, uint32(len(x.procs) - 1)})
	})
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i := range x.procs {
		x.procs[i] = describe(procRoot, x.procs[i].PID)
	}
	x.index()
	return &x, nil
}

func scanOwners(ctx context.Context, procRoot string) (*OwnerIndex, error) {
	pids, err := listPIDs(procRoot)
	if err != nil {
		return nil, err
	}
	workers := min(max(runtime.GOMAXPROCS(0), 2), 8)
	jobs := make(chan uint32, workers)
	type result struct {
		found      OwnerIndex
		unreadable int
	}
	results := make([]result, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[w]
			sc := fdScanner{root: procRoot}
			for pid := range jobs {
				var err error
				if err = sc.scan(pid, &r.found); err != nil {
					r.unreadable++
				}
			}
		}()
	}
	for _, pid := range pids {
		if ctx.Err() != nil {
			break
		}
		jobs <- pid
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var owners OwnerIndex
	unreadable := 0
	for _, r := range results {
		base := uint32(len(owners.procs))
		owners.procs = append(owners.procs, r.found.procs...)
		for _, ref := range r.found.refs {
			owners.refs = append(owners.refs, ownerRef{ref.inode, base + ref.proc})
		}
		unreadable += r.unreadable
	}
	owners.index()
	if unreadable > 0 {
		return &owners, &PartialError{Unreadable: unreadable}
	}
	return &owners, nil
}

// OwnerIndex finds the processes that hold a socket, by the socket's inode.
// A record per descriptor names its process by index, so the processes'
// names are held once: at 100 000 sockets that is 16 bytes per socket
// where a map of owner slices took about 150, held at once with the dump.
type OwnerIndex struct {
	refs  []ownerRef // by inode, then pid
	procs []Owner    // the processes holding sockets, by ownerRef.proc
	// shared are the owners, by pid, of the few sockets that more than one
	// descriptor holds: Of returns one process's Owner in place otherwise.
	shared map[uint64][]Owner
}

// ownerRef is one descriptor of a socket, as the scan finds it.
type ownerRef struct {
	inode uint64
	proc  uint32
}

// NewOwnerIndex indexes owners given by socket inode.
func NewOwnerIndex(owners map[uint64][]Owner) *OwnerIndex {
	x := &OwnerIndex{}
	for ino, held := range owners {
		for _, o := range held {
			x.refs = append(x.refs, ownerRef{ino, uint32(len(x.procs))})
			x.procs = append(x.procs, o)
		}
	}
	x.index()
	return x
}

// index sorts the records and collects the shared sockets' owners.
func (x *OwnerIndex) index() {
	slices.SortFunc(x.refs, func(a, b ownerRef) int {
		if c := cmp.Compare(a.inode, b.inode); c != 0 {
			return c
		}
		return cmp.Compare(x.procs[a.proc].PID, x.procs[b.proc].PID)
	})
	for i := 1; i < len(x.refs); i++ {
		if ino := x.refs[i].inode; ino == x.refs[i-1].inode {
			if x.shared == nil {
				x.shared = make(map[uint64][]Owner)
			}
			if x.shared[ino] == nil {
				x.shared[ino] = []Owner{x.procs[x.refs[i-1].proc]}
			}
			x.shared[ino] = append(x.shared[ino], x.procs[x.refs[i].proc])
		}
	}
}

// Of returns the owners of the socket with inode, by pid, or nil. The
// slice is the index's own: it must not be changed.
func (x *OwnerIndex) Of(inode uint64) []Owner {
	if x == nil {
		return nil
	}
	i, found := slices.BinarySearchFunc(x.refs, inode, func(r ownerRef, ino uint64) int { return cmp.Compare(r.inode, ino) })
	switch {
	case !found:
		return nil
	case i+1 < len(x.refs) && x.refs[i+1].inode == inode:
		return x.shared[inode]
	}
	p := x.refs[i].proc
	return x.procs[p : p+1 : p+1]
}

// Len is the number of socket descriptors indexed.
func (x *OwnerIndex) Len() int {
	if x == nil {
		return 0
	}
	return len(x.refs)
}

// All yields every socket's inode and owners, by inode.
func (x *OwnerIndex) All() iter.Seq2[uint64, []Owner] {
	return func(yield func(uint64, []Owner) bool) {
		if x == nil {
			return
		}
		for i := 0; i < len(x.refs); i++ {
			ino := x.refs[i].inode
			for i+1 < len(x.refs) && x.refs[i+1].inode == ino {
				i++
			}
			if !yield(ino, x.Of(ino)) {
				return
			}
		}
	}
}

// listPIDs returns the numeric entries of /proc.
func listPIDs(procRoot string) ([]uint32, error) {
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	pids := make([]uint32, 0, len(names))
	for _, n := range names {
		if pid, err := strconv.ParseUint(n, 10, 32); err == nil {
			pids = append(pids, uint32(pid))
		}
	}
	return pids, nil
}

// fdScanner reads one process's fd directory with raw getdents and
// readlinkat, reusing its buffers: the owner scan touches every
// descriptor on the host, so it must not allocate per descriptor.
type fdScanner struct {
	root    string
	dirent  [32 << 10]byte
	link    [64]byte
	pathBuf []byte
}

// scan adds pid's sockets to found, unindexed. It returns no error for a
// vanished process, and one only when the descriptors could not be read.
func (s *fdScanner) scan(pid uint32, found *OwnerIndex) error {
	s.pathBuf = append(s.pathBuf[:0], s.root...)
	s.pathBuf = append(s.pathBuf, '/')
	s.pathBuf = strconv.AppendUint(s.pathBuf, uint64(pid), 10)
	s.pathBuf = append(s.pathBuf, "/fd"...)
	dfd, err := unix.Open(string(s.pathBuf), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ENOENT || err == unix.ESRCH {
			return nil
		}
		return err
	}
	defer unix.Close(dfd)

	proc := -1
	for {
		n, err := unix.Getdents(dfd, s.dirent[:])
		if err != nil {
			if err == unix.ENOENT || err == unix.ESRCH {
				return nil
			}
			return err
		}
		if n <= 0 {
			return nil
		}
		for b := s.dirent[:n]; len(b) >= 19; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				break
			}
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			b = b[reclen:]
			if len(name) == 0 || name[0] < '0' || name[0] > '9' {
				continue
			}
			ino, ok := s.socketInode(dfd, name)
			if !ok {
				continue
			}
			if proc < 0 {
				proc = len(found.procs)
				found.procs = append(found.procs, describe(s.root, pid))
			}
			found.refs = append(found.refs, ownerRef{ino, uint32(proc)})
		}
	}
}

// socketInode reads one fd link and returns the inode of "socket:[N]".
func (s *fdScanner) socketInode(dfd int, name []byte) (uint64, bool) {
	var nameZ [24]byte
	if len(name) >= len(nameZ) {
		return 0, false
	}
	copy(nameZ[:], name)
	n, err := readlinkat(dfd, &nameZ[0], s.link[:])
	if err != nil {
		return 0, false
	}
	return parseSocketLink(s.link[:n])
}

// parseSocketLink parses the target of a socket descriptor, "socket:[N]".
func parseSocketLink(b []byte) (uint64, bool) {
	const prefix = "socket:["
	if len(b) < len(prefix)+2 || string(b[:len(prefix)]) != prefix || b[len(b)-1] != ']' {
		return 0, false
	}
	var v uint64
	for _, c := range b[len(prefix) : len(b)-1] {
		if c < '0' || c > '9' || v > (1<<64-1)/10-1 {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

// describe reads comm and the base name of argv[0]; a process that exits
// first keeps its pid and empty names.
func describe(procRoot string, pid uint32) Owner {
	o := Owner{PID: pid}
	dir := procRoot + "/" + strconv.FormatUint(uint64(pid), 10)
	if b, err := os.ReadFile(dir + "/comm"); err == nil {
		o.Comm = string(bytes.TrimRight(b, "\n"))
	}
	if b, err := os.ReadFile(dir + "/cmdline"); err == nil {
		o.Cmd = cmdName(b)
	}
	return o
}

// cmdName returns what netstat -p shows: argv[0], cut to its base name
// when it is an absolute path.
func cmdName(cmdline []byte) string {
	if i := bytes.IndexByte(cmdline, 0); i >= 0 {
		cmdline = cmdline[:i]
	}
	if len(cmdline) > 0 && cmdline[0] == '/' {
		cmdline = cmdline[bytes.LastIndexByte(cmdline, '/')+1:]
	}
	return string(cmdline)
}
