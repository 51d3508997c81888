// Package container names the container and Kubernetes pod a process runs
// in from what the host already exposes: the path of its cgroup (v2) and,
// where it is mounted, /var/log/pods. No container runtime or Kubernetes
// API is asked.
//
// The cgroup layouts understood are those of the kubelet's two cgroup
// drivers and of the runtimes under them:
//
//	systemd:  /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope
//	          …/crio-<id>.scope, …/docker-<id>.scope, /system.slice/docker-<id>.scope, …/libpod-<id>.scope
//	cgroupfs: /kubepods/besteffort/pod<uid>/<id>, /kubepods/pod<uid>/<id> (guaranteed), /docker/<id>
//
// A trailing /container or /init.scope (a runtime's own sub-cgroup) is
// looked through.
package container

import (
	"strconv"
	"strings"
)

// Identity is what a cgroup path says about its processes. Empty fields
// are unknown; a host process has none.
type Identity struct {
	Runtime   string // containerd, cri-o, docker, podman, or "" when the layout does not say
	Container string // the runtime's container id (64 hex digits)
	PodUID    string // the pod's UID, with dashes
	QoS       string // guaranteed, burstable or besteffort (pods only)
	// PodNamespace and PodName come from /var/log/pods.
	PodNamespace string
	PodName      string
}

// AppendJSON appends the known fields as JSON object members, each with
// its leading comma: "container", "pod" (the name, or the UID where
// /var/log/pods is not mounted), "pod_uid", "pod_namespace". Nothing for a
// host process.
func (id Identity) AppendJSON(b []byte) []byte {
	field := func(name, v string) {
		if v != "" {
			b = append(b, `,"`...)
			b = append(b, name...)
			b = append(b, `":`...)
			b = strconv.AppendQuote(b, v) // ids and Kubernetes names are ASCII
		}
	}
	field("container", id.Container)
	if id.PodName != "" {
		field("pod", id.PodName)
	} else {
		field("pod", id.PodUID)
	}
	field("pod_uid", id.PodUID)
	field("pod_namespace", id.PodNamespace)
	return b
}

// Short names the pod or container in a few characters, as a table column
// shows it: the pod's namespace/name, its UID where /var/log/pods is not
// mounted, or, outside a pod, the container id's first 12 digits (docker
// ps's short form); "" for a host process.
func (id Identity) Short() string {
	switch {
	case id.PodName != "":
		return id.PodNamespace + "/" + id.PodName
	case id.PodUID != "":
		return id.PodUID
	case len(id.Container) > ShortID:
		return id.Container[:ShortID]
	}
	return id.Container
}

// ShortID is the length of a container id's short form.
const ShortID = 12

// IsZero reports whether nothing is known.
func (id Identity) IsZero() bool { return id == Identity{} }

// scopePrefixes are the systemd scope names' prefixes per runtime.
var scopePrefixes = []struct{ prefix, runtime string }{
	{"cri-containerd-", "containerd"},
	{"crio-conmon-", ""}, // CRI-O's monitor, not the container
	{"crio-", "cri-o"},
	{"docker-", "docker"},
	{"libpod-conmon-", ""},
	{"libpod-", "podman"},
}

// Parse reads a cgroup v2 path (as /proc/PID/cgroup's "0::" line gives it,
// or relative to the cgroup mount).
func Parse(path string) Identity {
	var id Identity
	parts := strings.Split(strings.Trim(path, "/"), "/")
	// A runtime's own sub-cgroup below the container's.
	for len(parts) > 1 && (parts[len(parts)-1] == "container" || parts[len(parts)-1] == "init.scope") {
		parts = parts[:len(parts)-1]
	}
	for i, p := range parts {
		switch {
		case p == "kubepods" || p == "kubepods.slice":
			id.QoS = "guaranteed"
		case id.QoS != "" && (p == "burstable" || p == "besteffort"):
			id.QoS = p
		case id.QoS != "" && (p == "kubepods-burstable.slice" || p == "kubepods-besteffort.slice"):
			id.QoS = strings.TrimSuffix(strings.TrimPrefix(p, "kubepods-"), ".slice")
		case id.QoS != "" && strings.HasPrefix(p, "pod"):
			// cgroupfs: pod<uid with dashes>
			if uid := p[3:]; isUID(uid) {
				id.PodUID = uid
			}
		case id.QoS != "" && strings.HasPrefix(p, "kubepods-") && strings.HasSuffix(p, ".slice"):
			// systemd: kubepods[-qos]-pod<uid with underscores>.slice
			if j := strings.LastIndex(p, "-pod"); j >= 0 {
				if uid := strings.ReplaceAll(p[j+4:len(p)-len(".slice")], "_", "-"); isUID(uid) {
					id.PodUID = uid
				}
			}
		case strings.HasSuffix(p, ".scope"):
			name := strings.TrimSuffix(p, ".scope")
			for _, sp := range scopePrefixes {
				if rest, ok := strings.CutPrefix(name, sp.prefix); ok {
					if sp.runtime != "" && isContainerID(rest) {
						id.Container, id.Runtime = rest, sp.runtime
					}
					break
				}
			}
		case isContainerID(p):
			// cgroupfs: the id alone, under a pod or a runtime's directory.
			id.Container = p
			if i > 0 && parts[i-1] == "docker" {
				id.Runtime = "docker"
			}
		}
	}
	if id.PodUID == "" && id.Container == "" {
		return Identity{} // a kubepods slice alone is no pod
	}
	return id
}

// isContainerID reports whether s is 64 lowercase hex digits, the form
// containerd, CRI-O, Docker and podman give their ids.
func isContainerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// isUID reports whether s has the 8-4-4-4-12 shape of a pod UID.
func isUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}
