// Package sockfds lists every socket descriptor of every process in one
// pass of the kernel's BPF task_file iterator (Linux 5.8+), where a walk of
// /proc/*/fd would readlink each descriptor of the host in turn.
package sockfds

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// ErrUnavailable wraps every reason the iterator cannot run here: missing
// privileges, a kernel without it or without BTF, or a PID namespace whose
// pids are not the kernel's. The caller falls back on /proc.
var ErrUnavailable = errors.New("BPF task_file iterator unavailable")

// readerFD marks the record that names the reading process (bpf/sockfds.c).
const readerFD = 0xffffffff

const recordSize = int(unsafe.Sizeof(sockfdsSockFd{}))

// Scan calls fn for each socket descriptor of each process, with the
// process's pid (its thread group), the descriptor and the socket's inode,
// the N of the "socket:[N]" that /proc/<pid>/fd/<fd> links to. Like /proc,
// it sees each process's own descriptor table, not threads' private ones.
// Any error before the first record wraps ErrUnavailable; fn has then not
// been called.
func Scan(fn func(pid, fd uint32, inode uint64)) error {
	if !privileged() {
		return fmt.Errorf("%w: needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)", ErrUnavailable)
	}
	// The limit only matters before Linux 5.11; a refusal to raise it is
	// not fatal, the load says whether it was needed.
	_ = rlimit.RemoveMemlock()
	var objs sockfdsObjects
	// The kernel's BTF is parsed for the load and dropped with it.
	if err := loadSockfdsObjects(&objs, nil); err != nil {
		return fmt.Errorf("%w: load: %w", ErrUnavailable, err)
	}
	defer objs.Close()
	it, err := link.AttachIter(link.IterOptions{Program: objs.SocketFds})
	if err != nil {
		return fmt.Errorf("%w: attach: %w", ErrUnavailable, err)
	}
	defer it.Close()
	rd, err := it.Open()
	if err != nil {
		return fmt.Errorf("%w: open: %w", ErrUnavailable, err)
	}
	defer rd.Close()
	return read(rd, os.Getpid(), fn)
}

// read decodes the iterator's records. The first names the reader: a pid
// other than self means the kernel's pids are not this /proc's (a nested
// PID namespace), and nothing is passed on.
func read(r io.Reader, self int, fn func(pid, fd uint32, inode uint64)) error {
	buf := make([]byte, 64<<10)
	have, first := 0, true
	for {
		n, err := r.Read(buf[have:])
		have += n
		recs := buf[:have-have%recordSize]
		for len(recs) > 0 {
			pid := binary.NativeEndian.Uint32(recs[0:4])
			fd := binary.NativeEndian.Uint32(recs[4:8])
			inode := binary.NativeEndian.Uint64(recs[8:16])
			recs = recs[recordSize:]
			if first {
				if fd != readerFD {
					return fmt.Errorf("%w: the iterator's first record does not name its reader", ErrUnavailable)
				}
				if int(pid) != self {
					return fmt.Errorf("%w: the kernel sees this process as pid %d, /proc as %d (another PID namespace)", ErrUnavailable, pid, self)
				}
				first = false
				continue
			}
			fn(pid, fd, inode)
		}
		rest := have % recordSize
		copy(buf, buf[have-rest:have])
		have = rest
		switch {
		case err == io.EOF:
			if first {
				return fmt.Errorf("%w: the iterator wrote nothing", ErrUnavailable)
			}
			if have != 0 {
				return fmt.Errorf("read the task_file iterator: %d bytes after the last record", have)
			}
			return nil
		case err != nil:
			if first {
				return fmt.Errorf("%w: read: %w", ErrUnavailable, err)
			}
			return fmt.Errorf("read the task_file iterator: %w", err)
		}
	}
}

// privileged says whether the process may load a tracing program: asking
// first spares an unprivileged listing the parse of the kernel's BTF.
func privileged() bool {
	const capSysAdmin, capPerfmon, capBPF = 21, 38, 39
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return os.Geteuid() == 0
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	return has(capSysAdmin) || (has(capBPF) && has(capPerfmon))
}
