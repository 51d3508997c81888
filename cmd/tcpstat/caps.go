package main

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// raiseCapabilities makes the permitted capabilities effective. The image's
// binary carries file capabilities that are permitted only (deploy/): a
// non-root process gets those its pod grants, and raises them here. A
// binary with effective file capabilities would fail to start in a pod
// granting fewer (the kernel refuses such an execve), so one image serves
// the node agent and the sidecar. Nothing is raised that was not granted.
//
// Capabilities belong to threads, and the Go runtime has started some
// before main: every thread is changed at once (AllThreadsSyscall), or a
// goroutine that loads the tracer on an older thread would lack them.
//
// It returns a warning for main to print when it could not: a cgo build
// cannot change every thread.
func raiseCapabilities() string {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return ""
	}
	if data[0].Effective == data[0].Permitted && data[1].Effective == data[1].Permitted {
		return ""
	}
	data[0].Effective, data[1].Effective = data[0].Permitted, data[1].Permitted
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	if errno == syscall.ENOTSUP {
		return "capabilities are permitted but not effective, and this build (cgo) cannot raise them on every thread: " +
			"give the binary effective file capabilities (setcap ...+ep) or build it with CGO_ENABLED=0 (make image does)"
	}
	return "" // on failure the errors of what needs the capabilities name them
}
