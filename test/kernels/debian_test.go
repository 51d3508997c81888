package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseControl(t *testing.T) {
	in := "Package: linux-image-amd64\nVersion: 7.3~rc7-1~exp1\nDescription: Linux for\n 64-bit PCs\n\nPackage: second-stanza\n"
	want := map[string]string{
		"Package":     "linux-image-amd64",
		"Version":     "7.3~rc7-1~exp1",
		"Description": "Linux for\n64-bit PCs",
	}
	if diff := cmp.Diff(want, parseControl([]byte(in))); diff != "" {
		t.Errorf("parseControl (-want +got):\n%s", diff)
	}
}

func TestDependsOn(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"linux-image-5.10.0-46-amd64 (= 5.10.262-1)", []string{"linux-image-5.10.0-46-amd64"}},
		{"linux-base-amd64 (= 7.3~rc7-1~exp1), linux-image-7.3-amd64 (= 7.3~rc7-1~exp1)", []string{"linux-base-amd64", "linux-image-7.3-amd64"}},
		{"dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, kmod:any", []string{"dracut", "kmod"}},
		{"", nil},
	} {
		if diff := cmp.Diff(tc.want, dependsOn(tc.in)); diff != "" {
			t.Errorf("dependsOn(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestSystemMirrors(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"debian.sources": `Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
`,
		"third-party.list": "deb [arch=amd64 signed-by=/k.gpg] https://packages.example/apt stable main\n",
		"disabled.sources": "Types: deb\nURIs: http://other.example/debian\nSuites: sid\nEnabled: no\n",
	}
	var paths []string
	for _, name := range []string{"third-party.list", "disabled.sources", "debian.sources"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(files[name]), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	want := mirrors{Main: "http://mirror.example/debian", Security: "http://mirror.example/debian-security"}
	if diff := cmp.Diff(want, systemMirrors(append(paths, filepath.Join(dir, "missing.list")))); diff != "" {
		t.Errorf("systemMirrors (-want +got):\n%s", diff)
	}
}

func TestParseSourcesOneLine(t *testing.T) {
	in := "# comment\ndeb http://a.example/debian bullseye main\ndeb-src http://a.example/debian bullseye main\ndeb [signed-by=/x.gpg] http://b.example/debian-security bullseye-security main # trailing\n"
	want := []sourceEntry{
		{uri: "http://a.example/debian", suites: []string{"bullseye"}},
		{uri: "http://b.example/debian-security", suites: []string{"bullseye-security"}},
	}
	if diff := cmp.Diff(want, parseSources(in, false), cmp.AllowUnexported(sourceEntry{})); diff != "" {
		t.Errorf("parseSources (-want +got):\n%s", diff)
	}
}
