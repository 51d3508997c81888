package main

import (
	"golang.org/x/sys/unix"
)

// raiseCapabilities makes the permitted capabilities effective. The image's
// binary carries file capabilities that are permitted only (deploy/): a
// non-root process gets those its pod grants, and raises them here. A
// binary with effective file capabilities would fail to start in a pod
// granting fewer (the kernel refuses such an execve), so one image serves
// the node agent and the sidecar. Nothing is raised that was not granted.
func raiseCapabilities() {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return
	}
	if data[0].Effective == data[0].Permitted && data[1].Effective == data[1].Permitted {
		return
	}
	data[0].Effective, data[1].Effective = data[0].Permitted, data[1].Permitted
	unix.Capset(&hdr, &data[0]) // on failure the errors of what needs them say which
}
