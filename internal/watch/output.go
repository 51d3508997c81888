package watch

import (
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// readerGone returns a check that out's reader went away (the read end of a
// pipe closed, a socket shut down, a terminal hung up), or nil when out is
// not a file. Writes would say so too, but only once there is something
// to write: `watch | head -1` must end even when no event follows.
func readerGone(out io.Writer) func() bool {
	f, ok := out.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	return func() bool {
		gone := false
		raw.Control(func(fd uintptr) {
			// POLLERR and POLLHUP are reported whatever is asked for; a
			// zero timeout only looks.
			fds := []unix.PollFd{{Fd: int32(fd)}}
			n, err := unix.Poll(fds, 0)
			gone = err == nil && n > 0 && fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0
		})
		return gone
	}
}
