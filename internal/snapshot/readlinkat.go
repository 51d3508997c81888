package snapshot

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// readlinkat is unix.Readlinkat without the string conversion of the
// name, which would allocate once per descriptor on the host.
func readlinkat(dirfd int, nameZ *byte, buf []byte) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(nameZ)),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
