package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tcpstat/tcpstat/internal/testenv"
)

// deploy/seccomp-tcpstat.json is the container runtime's default seccomp
// profile (containers-common's /usr/share/containers/seccomp.json, the
// one podman and CRI-O use) with bpf() allowed to CAP_BPF and
// perf_event_open() to CAP_PERFMON, as containerd's current default
// already does; Debian 12's default allows both only to CAP_SYS_ADMIN.
// `go test ./cmd/tcpstat -run TestSeccompProfile -update-seccomp` writes it.
const (
	seccompProfile        = "../../deploy/seccomp-tcpstat.json"
	runtimeSeccompDefault = "/usr/share/containers/seccomp.json"
)

var updateSeccomp = flag.Bool("update-seccomp", false, "write "+seccompProfile+" from "+runtimeSeccompDefault)

// tracingSyscalls are the calls the profile opens, each with its capability.
var tracingSyscalls = map[string]string{"bpf": "CAP_BPF", "perf_event_open": "CAP_PERFMON"}

// deriveSeccompProfile takes the tracing calls out of every rule of def
// and gives each its own rules: allowed with CAP_SYS_ADMIN (as before) or
// with its capability, EPERM (as before) to a container with neither.
func deriveSeccompProfile(def []byte) ([]byte, error) {
	var p map[string]any
	if err := json.Unmarshal(def, &p); err != nil {
		return nil, err
	}
	rules, _ := p["syscalls"].([]any)
	var out []any
	for _, r := range rules {
		rule := r.(map[string]any)
		var names []any
		for _, n := range rule["names"].([]any) {
			if _, ok := tracingSyscalls[n.(string)]; !ok {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			continue
		}
		rule["names"] = names
		out = append(out, rule)
	}
	for _, call := range []string{"bpf", "perf_event_open"} {
		c := tracingSyscalls[call]
		for _, includes := range []string{"CAP_SYS_ADMIN", c} {
			out = append(out, map[string]any{"names": []any{call}, "action": "SCMP_ACT_ALLOW", "args": []any{},
				"comment": "tcpstat: " + call + " with " + includes, "includes": map[string]any{"caps": []any{includes}}, "excludes": map[string]any{}})
		}
		out = append(out, map[string]any{"names": []any{call}, "action": "SCMP_ACT_ERRNO", "args": []any{}, "errnoRet": 1, "errno": "EPERM",
			"comment": "tcpstat: " + call + " refused without CAP_SYS_ADMIN or " + c, "includes": map[string]any{}, "excludes": map[string]any{"caps": []any{"CAP_SYS_ADMIN", c}}})
	}
	p["syscalls"] = out
	b, err := json.MarshalIndent(p, "", "\t")
	return append(b, '\n'), err
}

// TestSeccompProfile: the committed profile is the runtime's default
// (installed with podman by scripts/deps.sh) with only the tracing calls'
// rules changed, and those allow each call with its capability or
// CAP_SYS_ADMIN and refuse it (EPERM) otherwise.
func TestSeccompProfile(t *testing.T) {
	testenv.SkipInMinimalGuest(t, "deploy/ and the runtime's profile are not in the guest")
	got, err := os.ReadFile(seccompProfile)
	if err != nil && !*updateSeccomp {
		t.Fatal(err)
	}
	def, err := os.ReadFile(runtimeSeccompDefault)
	switch {
	case err == nil:
		want, err := deriveSeccompProfile(def)
		if err != nil {
			t.Fatalf("%s: %v", runtimeSeccompDefault, err)
		}
		if *updateSeccomp {
			if err := os.WriteFile(seccompProfile, want, 0o644); err != nil {
				t.Fatal(err)
			}
			got = want
		} else if !bytes.Equal(got, want) {
			t.Errorf("%s is not %s with the tracing calls' rules: run go test ./cmd/tcpstat -run TestSeccompProfile -update-seccomp", seccompProfile, runtimeSeccompDefault)
		}
	case os.Geteuid() == 0:
		t.Fatalf("%v: run scripts/deps.sh (podman brings containers-common's profile)", err)
	}
	var p struct {
		DefaultAction string `json:"defaultAction"`
		Syscalls      []struct {
			Names    []string `json:"names"`
			Action   string   `json:"action"`
			Includes struct {
				Caps []string `json:"caps"`
			} `json:"includes"`
			Excludes struct {
				Caps []string `json:"caps"`
			} `json:"excludes"`
			Errno string `json:"errno"`
		} `json:"syscalls"`
	}
	if err := json.Unmarshal(got, &p); err != nil {
		t.Fatalf("%s: %v", seccompProfile, err)
	}
	if p.DefaultAction == "SCMP_ACT_ALLOW" {
		t.Errorf("%s allows every call not named", seccompProfile)
	}
	for call, c := range tracingSyscalls {
		var allowed, refused []string
		for _, r := range p.Syscalls {
			if !slices.Contains(r.Names, call) {
				continue
			}
			switch {
			case r.Action == "SCMP_ACT_ALLOW" && len(r.Includes.Caps) == 1:
				allowed = append(allowed, r.Includes.Caps[0])
			case r.Action == "SCMP_ACT_ERRNO" && r.Errno == "EPERM" && len(r.Includes.Caps) == 0:
				refused = append(refused, r.Excludes.Caps...)
			default:
				t.Errorf("%s: unexpected rule for %s: %+v", seccompProfile, call, r)
			}
		}
		slices.Sort(allowed)
		slices.Sort(refused)
		want := []string{"CAP_SYS_ADMIN", c}
		slices.Sort(want)
		if !slices.Equal(allowed, want) || !slices.Equal(refused, want) {
			t.Errorf("%s: %s allowed with %v and refused without %v, want both %v", seccompProfile, call, allowed, refused, want)
		}
	}
}

// TestSeccompProfileDocs: docs/deploy.md names the profile, shows the
// Localhost securityContext that uses it, and the manifests set no
// seccompProfile (Kubernetes' default, Unconfined, needs none).
func TestSeccompProfileDocs(t *testing.T) {
	testenv.SkipInMinimalGuest(t, "deploy/ and docs/ are not copied into the guest")
	doc, err := os.ReadFile("../../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"deploy/seccomp-tcpstat.json",
		"type: Localhost",
		"localhostProfile: tcpstat/seccomp-tcpstat.json",
		"--security-opt seccomp=deploy/seccomp-tcpstat.json",
	} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/deploy.md does not say %q", want)
		}
	}
	dss, deps, _, _ := manifests(t)
	for _, spec := range []struct {
		who string
		sc  any
		c   any
	}{
		{"node agent", dss[0].Spec.Template.Spec.SecurityContext, tcpstatContainer(t, dss[0].Spec.Template.Spec).SecurityContext},
		{"sidecar", deps[0].Spec.Template.Spec.SecurityContext, tcpstatContainer(t, deps[0].Spec.Template.Spec).SecurityContext},
	} {
		for _, v := range []any{spec.sc, spec.c} {
			b, _ := json.Marshal(v)
			if strings.Contains(string(b), "seccompProfile") {
				t.Errorf("%s sets a seccompProfile: %s; docs/deploy.md says the manifests set none", spec.who, b)
			}
		}
	}
}
