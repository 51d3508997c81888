package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWatchJSONContainer runs a connect from a process the test puts in a
// kubelet-shaped cgroup (containerd, systemd driver) and expects watch
// --json to name its container and pod, with the pod's name from a fake
// /var/log/pods.
func TestWatchJSONContainer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the BPF program, makes a cgroup")
	}
	const (
		port = "29161"
		cid  = "9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9"
		uid  = "6f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0"
	)
	mount := cgroup2Mount(t)
	top := filepath.Join(mount, "tcpstat-test-"+strconv.Itoa(os.Getpid())+".slice")
	leaf := filepath.Join(top, "kubepods.slice", "kubepods-burstable.slice",
		"kubepods-burstable-pod"+strings.ReplaceAll(uid, "-", "_")+".slice", "cri-containerd-"+cid+".scope")
	if err := os.MkdirAll(leaf, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for d := leaf; strings.HasPrefix(d, top); d = filepath.Dir(d) {
			os.Remove(d)
		}
	})
	logs := t.TempDir()
	os.Mkdir(filepath.Join(logs, "shop_cart-0_"+uid), 0o755)

	ready := filepath.Join(t.TempDir(), "ready")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"tcpstat", "watch", "--json", "--port", port, "--pod-log-dir", logs, "--ready-file", ready}, &stdout, &stderr)
	}()
	waitReady(t, ready, &stderr)
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	// The shell joins the cgroup, then connects from there.
	sh := exec.Command("bash", "-c", `echo $$ > "$1/cgroup.procs" && exec 3<>/dev/tcp/127.0.0.1/`+port, "bash", leaf)
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("connect from the cgroup: %v: %s", err, out)
	}
	want := `"old_state":"SYN_SENT","new_state":"ESTABLISHED"`
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stdout.String(), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("connect never printed:\n%s", stdout.String())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch: %v", err)
	}
	for _, line := range strings.Split(stdout.String(), "\n") {
		if !strings.Contains(line, want) {
			continue
		}
		var obj struct {
			PID          int    `json:"pid"`
			Container    string `json:"container"`
			Pod          string `json:"pod"`
			PodUID       string `json:"pod_uid"`
			PodNamespace string `json:"pod_namespace"`
		}
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("not JSON: %v: %s", err, line)
		}
		if obj.PID != sh.Process.Pid || obj.Container != cid || obj.Pod != "cart-0" || obj.PodUID != uid || obj.PodNamespace != "shop" {
			t.Errorf("got %+v, want pid %d in container %s of pod shop/cart-0 (%s)", obj, sh.Process.Pid, cid, uid)
		}
		return
	}
}

// cgroup2Mount is where cgroup v2 is mounted (/sys/fs/cgroup/unified on
// hybrid hosts).
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if pre, post, ok := strings.Cut(line, " - "); ok && strings.HasPrefix(post, "cgroup2 ") {
			if f := strings.Fields(pre); len(f) >= 5 {
				return f[4]
			}
		}
	}
	t.Fatal("no cgroup v2 mount")
	return ""
}
