package snapshot

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
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
// processes could not be read the map is returned with a *PartialError.
func Owners(ctx context.Context) (map[uint64][]Owner, error) {
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
func iterOwners(ctx context.Context, procRoot string) (map[uint64][]Owner, error) {
	var refs []ownerRef
	err := sockfds.Scan(func(pid, _ uint32, inode uint64) {
		refs = append(refs, ownerRef{inode, Owner{PID: pid}})
	})
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Records come grouped by process; describe each once.
	var last Owner
	for i := range refs {
		if i == 0 || refs[i].owner.PID != last.PID {
			last = describe(procRoot, refs[i].owner.PID)
		}
		refs[i].owner = last
	}
	return indexOwners(refs), nil
}

func scanOwners(ctx context.Context, procRoot string) (map[uint64][]Owner, error) {
	pids, err := listPIDs(procRoot)
	if err != nil {
		return nil, err
	}
	workers := min(max(runtime.GOMAXPROCS(0), 2), 8)
	jobs := make(chan uint32, workers)
	type result struct {
		refs       []ownerRef
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
				if r.refs, err = sc.scan(pid, r.refs); err != nil {
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
	var refs []ownerRef
	unreadable := 0
	for _, r := range results {
		refs = append(refs, r.refs...)
		unreadable += r.unreadable
	}
	owners := indexOwners(refs)
	if unreadable > 0 {
		return owners, &PartialError{Unreadable: unreadable}
	}
	return owners, nil
}

// ownerRef is one descriptor of a socket, as the scan finds it.
type ownerRef struct {
	inode uint64
	owner Owner
}

// indexOwners builds the inode → owners map with every owners slice cut
// from one backing array, sorted by PID: one allocation for 100 000
// sockets instead of one each. It sorts 16-byte keys rather than the
// 48-byte refs themselves.
func indexOwners(refs []ownerRef) map[uint64][]Owner {
	type key struct {
		inode uint64
		pid   uint32
		ref   int32
	}
	keys := make([]key, len(refs))
	for i := range refs {
		keys[i] = key{refs[i].inode, refs[i].owner.PID, int32(i)}
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := cmp.Compare(a.inode, b.inode); c != 0 {
			return c
		}
		return cmp.Compare(a.pid, b.pid)
	})
	backing := make([]Owner, len(keys))
	unique := 0
	for i := range keys {
		backing[i] = refs[keys[i].ref].owner
		if i == 0 || keys[i].inode != keys[i-1].inode {
			unique++
		}
	}
	m := make(map[uint64][]Owner, unique)
	for i := 0; i < len(keys); {
		j := i + 1
		for j < len(keys) && keys[j].inode == keys[i].inode {
			j++
		}
		m[keys[i].inode] = backing[i:j:j]
		i = j
	}
	return m
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

// scan appends pid's sockets to refs. It returns no error for a vanished
// process, and one only when the descriptors could not be read.
func (s *fdScanner) scan(pid uint32, refs []ownerRef) ([]ownerRef, error) {
	s.pathBuf = append(s.pathBuf[:0], s.root...)
	s.pathBuf = append(s.pathBuf, '/')
	s.pathBuf = strconv.AppendUint(s.pathBuf, uint64(pid), 10)
	s.pathBuf = append(s.pathBuf, "/fd"...)
	dfd, err := unix.Open(string(s.pathBuf), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ENOENT || err == unix.ESRCH {
			return refs, nil
		}
		return refs, err
	}
	defer unix.Close(dfd)

	var owner *Owner
	for {
		n, err := unix.Getdents(dfd, s.dirent[:])
		if err != nil {
			if err == unix.ENOENT || err == unix.ESRCH {
				return refs, nil
			}
			return refs, err
		}
		if n <= 0 {
			return refs, nil
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
			if owner == nil {
				o := describe(s.root, pid)
				owner = &o
			}
			refs = append(refs, ownerRef{ino, *owner})
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
