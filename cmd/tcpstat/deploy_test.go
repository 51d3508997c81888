package main

import (
	"bufio"
	"github.com/tcpstat/tcpstat/internal/testenv"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// What deploy/ and docs/deploy.md promise about privileges.
var (
	agentCaps   = []corev1.Capability{"BPF", "PERFMON", "SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"}
	sidecarCaps = []corev1.Capability{"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH"}
)

const metricsPort = 9977

// manifests decodes every document of every deploy/*.yaml strictly (an
// unknown or misspelt field fails) into the Kubernetes API types.
func manifests(t *testing.T) (dss []appsv1.DaemonSet, deps []appsv1.Deployment, svcs []corev1.Service, sms []monitoringv1.ServiceMonitor) {
	t.Helper()
	files, err := filepath.Glob("../../deploy/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(b), "\n---\n") {
			var meta struct {
				Kind string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			var target any
			switch meta.Kind {
			case "DaemonSet":
				dss = append(dss, appsv1.DaemonSet{})
				target = &dss[len(dss)-1]
			case "Deployment":
				deps = append(deps, appsv1.Deployment{})
				target = &deps[len(deps)-1]
			case "Service":
				svcs = append(svcs, corev1.Service{})
				target = &svcs[len(svcs)-1]
			case "ServiceMonitor":
				sms = append(sms, monitoringv1.ServiceMonitor{})
				target = &sms[len(sms)-1]
			default:
				t.Fatalf("%s document %d: unexpected kind %q", f, i, meta.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), target); err != nil {
				t.Errorf("%s document %d (%s): %v", f, i, meta.Kind, err)
			}
		}
	}
	return dss, deps, svcs, sms
}

// tcpstatContainer finds the container running the tcpstat image.
func tcpstatContainer(t *testing.T, spec corev1.PodSpec) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if strings.Contains(c.Image, "tcpstat") {
			return c
		}
	}
	t.Fatal("no tcpstat container")
	return corev1.Container{}
}

func TestManifests(t *testing.T) {
	testenv.SkipInMinimalGuest(t, "deploy/ and docs/ are not copied into the guest")
	dss, deps, svcs, sms := manifests(t)
	if len(dss) != 1 || len(deps) != 1 || len(svcs) != 1 || len(sms) != 1 {
		t.Fatalf("want a DaemonSet, a sidecar Deployment, a Service and a ServiceMonitor; got %d, %d, %d, %d", len(dss), len(deps), len(svcs), len(sms))
	}
	agent := tcpstatContainer(t, dss[0].Spec.Template.Spec)
	sidecar := tcpstatContainer(t, deps[0].Spec.Template.Spec)
	for _, tc := range []struct {
		name string
		c    corev1.Container
		caps []corev1.Capability
	}{{"node agent", agent, agentCaps}, {"sidecar", sidecar, sidecarCaps}} {
		sc := tc.c.SecurityContext
		if sc == nil || sc.Capabilities == nil {
			t.Fatalf("%s: no securityContext.capabilities", tc.name)
		}
		if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || !slices.Equal(sc.Capabilities.Add, tc.caps) {
			t.Errorf("%s: capabilities drop %v add %v, want drop [ALL] add %v", tc.name, sc.Capabilities.Drop, sc.Capabilities.Add, tc.caps)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s: privileged", tc.name)
		}
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != 65532 {
			t.Errorf("%s: not run as the image's non-root user 65532", tc.name)
		}
		if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation false sets no_new_privs, which voids the binary's file capabilities", tc.name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: root filesystem writable", tc.name)
		}
		if len(tc.c.Ports) != 1 || tc.c.Ports[0].ContainerPort != metricsPort || tc.c.Ports[0].Name != "metrics" {
			t.Errorf("%s: ports %v, want metrics %d", tc.name, tc.c.Ports, metricsPort)
		}
		if p := tc.c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
			t.Errorf("%s: no /healthz liveness probe", tc.name)
		}
		checkArgs(t, tc.name, tc.c.Args)
		if !slices.Contains(tc.c.Args, "--web.listen-address=:9977") {
			t.Errorf("%s: serve does not listen on the pod's :%d (it binds 127.0.0.1 by default)", tc.name, metricsPort)
		}
	}
	if !slices.Contains(sidecar.Args, "--netns=self") {
		t.Error("sidecar: not scoped to its pod's namespace (--netns=self)")
	}
	// The sidecar's one host path: tracefs, whose tracepoint ids the
	// accept() programs are attached by (a container's /sys has none).
	if spec := deps[0].Spec.Template.Spec; spec.HostPID || spec.HostNetwork {
		t.Error("sidecar: host namespaces")
	}
	checkHostPaths(t, "sidecar", deps[0].Spec.Template.Spec, sidecar, map[string]string{"/sys/kernel/tracing": "/sys/kernel/tracing"})
	spec := dss[0].Spec.Template.Spec
	if !spec.HostPID || spec.HostNetwork {
		t.Errorf("node agent: hostPID %v hostNetwork %v, want the host's processes in the pod's own network namespace", spec.HostPID, spec.HostNetwork)
	}
	checkHostPaths(t, "node agent", spec, agent, map[string]string{"/sys/fs/cgroup": "/host/cgroup", "/var/run/netns": "/var/run/netns", "/var/log/pods": "/var/log/pods", "/sys/kernel/tracing": "/sys/kernel/tracing"})
	if !slices.Contains(agent.Args, "--cgroup-root=/host/cgroup") {
		t.Error("node agent: --cgroup-root does not point at the host's cgroup tree")
	}
	if svc := svcs[0]; svc.Spec.Ports[0].Port != metricsPort || svc.Spec.Selector["app.kubernetes.io/name"] != dss[0].Spec.Template.Labels["app.kubernetes.io/name"] {
		t.Errorf("service does not select the agents' metrics port: %+v", svc.Spec)
	}
	if ep := sms[0].Spec.Endpoints; len(ep) != 1 || ep[0].Port != "metrics" || ep[0].Path != "/metrics" ||
		sms[0].Spec.Selector.MatchLabels["app.kubernetes.io/name"] != svcs[0].Labels["app.kubernetes.io/name"] {
		t.Errorf("service monitor does not scrape the service's metrics port: %+v", sms[0].Spec)
	}
}

// checkHostPaths: the pod's host paths are exactly want's (host path →
// mount path), each mounted read-only in tcpstat's container.
func checkHostPaths(t *testing.T, who string, spec corev1.PodSpec, c corev1.Container, want map[string]string) {
	t.Helper()
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	for _, v := range spec.Volumes {
		if v.HostPath == nil {
			continue
		}
		m, ok := mounts[v.Name]
		if mp, wanted := want[v.HostPath.Path]; !ok || !wanted || mp != m.MountPath || !m.ReadOnly {
			t.Errorf("%s: host path %s mounted at %q (read-only %v), want %q read-only", who, v.HostPath.Path, m.MountPath, m.ReadOnly, mp)
		}
		delete(want, v.HostPath.Path)
	}
	if len(want) != 0 {
		t.Errorf("%s: host paths missing: %v", who, want)
	}
}

// checkArgs runs the container's arguments through the CLI's own flag
// definitions: a flag serve does not have fails here, not in the cluster.
func checkArgs(t *testing.T, who string, args []string) {
	t.Helper()
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("%s: args %q, want serve", who, args)
	}
	names := map[string]bool{}
	for _, f := range serveCommand().Flags {
		for _, n := range f.Names() {
			names[n] = true
		}
	}
	for _, a := range args[1:] {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !names[name] {
			t.Errorf("%s: serve has no flag %q", who, a)
		}
	}
}

// TestManifestReasons: every added capability, host path, mount and host
// namespace carries a one-line reason (a comment on its line).
func TestManifestReasons(t *testing.T) {
	testenv.SkipInMinimalGuest(t, "deploy/ and docs/ are not copied into the guest")
	needs := regexp.MustCompile(`^\s*(- (BPF|PERFMON|SYS_ADMIN|SYS_PTRACE|DAC_READ_SEARCH)\b|path: /|mountPath: |hostPID: |hostNetwork: |shareProcessNamespace: |- --web.listen-address)`)
	files, _ := filepath.Glob("../../deploy/*.yaml")
	for _, f := range files {
		file, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(file)
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			if needs.MatchString(line) && !strings.Contains(line, " # ") && !strings.Contains(line, "/healthz") && !strings.Contains(line, "path: /metrics") {
				t.Errorf("%s:%d: no reason given: %s", filepath.Base(f), n, strings.TrimSpace(line))
			}
		}
		file.Close()
	}
}

// TestImageAndDocsPromises: the Containerfile runs the non-root user the
// manifests expect and exposes the metrics port; docs/deploy.md names
// every capability the manifests add, and the port.
func TestImageAndDocsPromises(t *testing.T) {
	testenv.SkipInMinimalGuest(t, "deploy/ and docs/ are not copied into the guest")
	cf, err := os.ReadFile("../../deploy/Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FROM scratch", "USER 65532:65532", "EXPOSE 9977"} {
		if !strings.Contains(string(cf), want+"\n") {
			t.Errorf("Containerfile: no %q", want)
		}
	}
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range agentCaps {
		if !strings.Contains(string(mk), "cap_"+strings.ToLower(string(c))) {
			t.Errorf("make image does not give the binary %s", c)
		}
	}
	doc, err := os.ReadFile("../../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range agentCaps {
		if !strings.Contains(string(doc), "CAP_"+string(c)) {
			t.Errorf("docs/deploy.md does not name CAP_%s", c)
		}
	}
	if !strings.Contains(string(doc), ":9977") {
		t.Error("docs/deploy.md does not name the metrics port")
	}
}
