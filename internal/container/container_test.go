package container

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

const (
	cid  = "4f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0"
	uid  = "0b5a7c8e-1d2f-4a6b-9c3d-5e7f8a9b0c1d"
	uidU = "0b5a7c8e_1d2f_4a6b_9c3d_5e7f8a9b0c1d"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		want       Identity
	}{
		{"systemd containerd burstable",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			Identity{Runtime: "containerd", Container: cid, PodUID: uid, QoS: "burstable"}},
		{"systemd cri-o besteffort",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/crio-" + cid + ".scope",
			Identity{Runtime: "cri-o", Container: cid, PodUID: uid, QoS: "besteffort"}},
		{"systemd cri-o sub-cgroup",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/crio-" + cid + ".scope/container",
			Identity{Runtime: "cri-o", Container: cid, PodUID: uid, QoS: "besteffort"}},
		{"systemd cri-o conmon is the pod, not a container",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/crio-conmon-" + cid + ".scope",
			Identity{PodUID: uid, QoS: "besteffort"}},
		{"systemd guaranteed",
			"/kubepods.slice/kubepods-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope",
			Identity{Runtime: "containerd", Container: cid, PodUID: uid, QoS: "guaranteed"}},
		{"systemd docker in kubernetes",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/docker-" + cid + ".scope",
			Identity{Runtime: "docker", Container: cid, PodUID: uid, QoS: "burstable"}},
		{"cgroupfs burstable", "/kubepods/burstable/pod" + uid + "/" + cid,
			Identity{Container: cid, PodUID: uid, QoS: "burstable"}},
		{"cgroupfs guaranteed", "/kubepods/pod" + uid + "/" + cid,
			Identity{Container: cid, PodUID: uid, QoS: "guaranteed"}},
		{"cgroupfs besteffort pod cgroup", "/kubepods/besteffort/pod" + uid,
			Identity{PodUID: uid, QoS: "besteffort"}},
		{"docker systemd", "/system.slice/docker-" + cid + ".scope",
			Identity{Runtime: "docker", Container: cid}},
		{"docker cgroupfs", "/docker/" + cid, Identity{Runtime: "docker", Container: cid}},
		{"podman", "/machine.slice/libpod-" + cid + ".scope/container", Identity{Runtime: "podman", Container: cid}},
		{"podman rootless", "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + cid + ".scope",
			Identity{Runtime: "podman", Container: cid}},
		{"host service", "/system.slice/sshd.service", Identity{}},
		{"root", "/", Identity{}},
		{"init scope", "/init.scope", Identity{}},
		{"kubelet slice alone", "/kubepods.slice/kubepods-burstable.slice", Identity{}},
		{"short id is no container", "/docker/4f1e2d3c", Identity{}},
		{"upper-case hex is no container id", "/docker/" + strings.ToUpper(cid), Identity{}},
		{"pod prefix outside kubepods", "/pod" + uid, Identity{}},
		{"bad uid", "/kubepods/burstable/podnot-a-uid/" + cid, Identity{Container: cid, QoS: "burstable"}},
	} {
		if diff := cmp.Diff(tc.want, Parse(tc.path)); diff != "" {
			t.Errorf("%s: %s (-want +got)\n%s", tc.name, tc.path, diff)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope")
	f.Add("/kubepods/pod" + uid + "/" + cid)
	f.Add("/docker/" + cid + "/container")
	f.Fuzz(func(t *testing.T, path string) {
		id := Parse(path)
		if id.Container != "" && !isContainerID(id.Container) {
			t.Errorf("%q: container %q", path, id.Container)
		}
		if id.PodUID != "" && !isUID(id.PodUID) {
			t.Errorf("%q: pod uid %q", path, id.PodUID)
		}
	})
}

func TestPodNames(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{
		"default_web-7d9f8c6b5-x2x9q_" + uid,
		"kube-system_coredns-5d78c9869d-abcde_11111111-2222-3333-4444-555555555555",
		"no-uid_pod_name",
		"Upper_Case_" + uid,
		"trailing_",
	} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string][2]string{
		uid:                                    {"default", "web-7d9f8c6b5-x2x9q"},
		"11111111-2222-3333-4444-555555555555": {"kube-system", "coredns-5d78c9869d-abcde"},
	}
	if diff := cmp.Diff(want, podNames(dir)); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if got := podNames(filepath.Join(dir, "absent")); len(got) != 0 {
		t.Errorf("absent dir: %v", got)
	}
}

// TestResolverFakeTree resolves ids from a made-up cgroup tree (plain
// directories: their inodes stand in for cgroup ids) and pod log tree,
// and finds a container that appears after the first scan.
func TestResolverFakeTree(t *testing.T) {
	root, logs := t.TempDir(), t.TempDir()
	podDir := filepath.Join(root, "kubepods.slice", "kubepods-burstable.slice", "kubepods-burstable-pod"+uidU+".slice")
	first := filepath.Join(podDir, "cri-containerd-"+cid+".scope")
	host := filepath.Join(root, "system.slice", "sshd.service")
	for _, d := range []string{first, host, filepath.Join(logs, "shop_cart-0_"+uid)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r := NewResolver(Options{CgroupRoot: root, PodLogDir: logs, Rescan: 1})
	want := Identity{Runtime: "containerd", Container: cid, PodUID: uid, QoS: "burstable", PodNamespace: "shop", PodName: "cart-0"}
	if diff := cmp.Diff(want, r.Lookup(ino(t, first))); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if got := r.Lookup(ino(t, host)); !got.IsZero() {
		t.Errorf("host cgroup: %+v", got)
	}
	second := filepath.Join(podDir, "cri-containerd-"+strings.Repeat("ab", 32)+".scope")
	if err := os.Mkdir(second, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := r.Lookup(ino(t, second)); got.Container != strings.Repeat("ab", 32) || got.PodName != "cart-0" {
		t.Errorf("new container: %+v", got)
	}
	if r.Err() != nil {
		t.Error(r.Err())
	}
}

func ino(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestResolverRealCgroup makes a kubepods-shaped cgroup on the host's
// cgroup v2 mount, moves a process into it, and resolves the cgroup id the
// kernel gives that process (name_to_handle_at on its cgroup, as BPF's
// bpf_get_current_cgroup_id sees it).
func TestResolverRealCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (makes a cgroup)")
	}
	mount := cgroup2Mount()
	if mount == "" {
		t.Fatal("no cgroup v2 mount on this host")
	}
	top := filepath.Join(mount, "tcpstat-test-"+strconv.Itoa(os.Getpid())+".slice")
	// The kubelet's layout, under a slice of the test's own.
	pods := filepath.Join(top, "kubepods.slice", "kubepods-besteffort.slice")
	leaf := filepath.Join(pods, "kubepods-besteffort-pod"+uidU+".slice", "cri-containerd-"+cid+".scope")
	if err := os.MkdirAll(leaf, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		for d := leaf; strings.HasPrefix(d, top); d = filepath.Dir(d) {
			os.Remove(d)
		}
	})
	if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	// The kernel's view of the process: its cgroup path and that cgroup's id.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var rel string
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			rel = p
		}
	}
	if rel != strings.TrimPrefix(leaf, mount) {
		t.Fatalf("process cgroup %q, want %q", rel, strings.TrimPrefix(leaf, mount))
	}
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, leaf, 0)
	if err != nil {
		t.Fatal(err)
	}
	id := uint64(0)
	for i, c := range h.Bytes()[:8] {
		id |= uint64(c) << (8 * i)
	}
	// Pod names come from a fake log tree: the host has no kubelet.
	logs := t.TempDir()
	os.Mkdir(filepath.Join(logs, "prod_api-1_"+uid), 0o755)
	r := NewResolver(Options{PodLogDir: logs})
	want := Identity{Runtime: "containerd", Container: cid, PodUID: uid, QoS: "besteffort", PodNamespace: "prod", PodName: "api-1"}
	if diff := cmp.Diff(want, r.Lookup(id)); diff != "" {
		t.Errorf("cgroup %d %s: (-want +got)\n%s", id, rel, diff)
	}
}

func TestAppendJSON(t *testing.T) {
	for _, tc := range []struct {
		id   Identity
		want string
	}{
		{Identity{}, `{}`},
		{Identity{Runtime: "docker", Container: cid}, `{"container":"` + cid + `"}`},
		{Identity{Container: cid, PodUID: uid}, `{"container":"` + cid + `","pod":"` + uid + `","pod_uid":"` + uid + `"}`},
		{Identity{Container: cid, PodUID: uid, PodNamespace: "shop", PodName: "cart-0"},
			`{"container":"` + cid + `","pod":"cart-0","pod_uid":"` + uid + `","pod_namespace":"shop"}`},
	} {
		b := tc.id.AppendJSON([]byte("{"))
		got := "{" + strings.TrimPrefix(string(b[1:]), ",") + "}"
		if got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.id, got, tc.want)
		}
	}
}

// TestLookupPID resolves owners known only by pid (a /proc scan's) through
// a made-up /proc/PID/cgroup, and a pod that appears in /var/log/pods after
// the first read.
func TestLookupPID(t *testing.T) {
	proc, logs := t.TempDir(), t.TempDir()
	write := func(pid, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(proc, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, pid, "cgroup"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A hybrid host lists v1 hierarchies before the v2 line.
	write("100", "12:cpu,cpuacct:/kubepods/pod"+uid+"/"+cid+"\n0::/kubepods/burstable/pod"+uid+"/"+cid+"\n")
	write("200", "0::/system.slice/sshd.service\n")
	r := NewResolver(Options{CgroupRoot: t.TempDir(), PodLogDir: logs, ProcRoot: proc, Rescan: 1})
	want := Identity{Container: cid, PodUID: uid, QoS: "burstable"}
	if diff := cmp.Diff(want, r.Owner(0, 100)); diff != "" {
		t.Errorf("pid 100 before its pod log: (-want +got)\n%s", diff)
	}
	if err := os.Mkdir(filepath.Join(logs, "shop_cart-0_"+uid), 0o755); err != nil {
		t.Fatal(err)
	}
	want.PodNamespace, want.PodName = "shop", "cart-0"
	if diff := cmp.Diff(want, r.LookupPID(100)); diff != "" {
		t.Errorf("pid 100: (-want +got)\n%s", diff)
	}
	for _, pid := range []uint32{0, 200, 300} {
		if got := r.LookupPID(pid); !got.IsZero() {
			t.Errorf("pid %d: %+v, want none", pid, got)
		}
	}
}

func TestShort(t *testing.T) {
	for _, tc := range []struct {
		id   Identity
		want string
	}{
		{Identity{}, ""},
		{Identity{Runtime: "docker", Container: cid}, cid[:12]},
		{Identity{Container: cid, PodUID: uid}, uid},
		{Identity{Container: cid, PodUID: uid, PodNamespace: "shop", PodName: "cart-0"}, "shop/cart-0"},
		{Identity{PodUID: uid, PodNamespace: "shop", PodName: "cart-0"}, "shop/cart-0"},
	} {
		if got := tc.id.Short(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.id, got, tc.want)
		}
	}
}
