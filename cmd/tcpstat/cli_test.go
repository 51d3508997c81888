package main

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/tcpstat/tcpstat/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// tcpstatOut runs tcpstat in this process and returns stdout and the error.
func tcpstatOut(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), append([]string{"tcpstat"}, args...), &stdout, &stderr)
	return stdout.String(), err
}

// needTool finds a tool the test drives (a terminal, a shell, groff). As
// root on a Debian system (CI) its absence is a failure: scripts/deps.sh
// installs it. Where apt is missing too (the kernel matrix's busybox
// guest) nothing could: the test is skipped and says why.
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	testenv.SkipInMinimalGuest(t, name+" is missing and there is no apt-get to install it")
	if os.Geteuid() == 0 {
		t.Fatalf("%s is missing: run scripts/deps.sh", name)
	}
	t.Skipf("%s is missing (scripts/deps.sh installs it as root)", name)
	return ""
}

func TestDidYouMean(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"wach"}, `unknown command "wach"; did you mean watch? (see --help)`},
		{[]string{"tpo"}, `unknown command "tpo"; did you mean top? (see --help)`},
		{[]string{"frobnicate"}, `unknown command "frobnicate" (see --help)`},
		{[]string{"watch", "--prot", "443"}, "watch: flag provided but not defined: -prot; did you mean --port? (see tcpstat watch --help)"},
		{[]string{"watch", "-w"}, "watch: flag provided but not defined: -w; did you mean -W? (see tcpstat watch --help)"},
		{[]string{"watch", "--bogus"}, "watch: flag provided but not defined: -bogus (see tcpstat watch --help)"},
		{[]string{"top", "--srot", "state"}, "top: flag provided but not defined: -srot; did you mean --sort? (see tcpstat top --help)"},
		{[]string{"list", "--statee", "x"}, "list: unknown flag --statee (did you mean --state?) (see tcpstat list --help)"},
		{[]string{"list", "--bogus"}, "list: unknown flag --bogus (see tcpstat list --help)"},
		{[]string{"serve", "--web.listen-adress", ":1"}, "serve: flag provided but not defined: -web.listen-adress; did you mean --web.listen-address? (see tcpstat serve --help)"},
		{[]string{"--verison"}, "flag provided but not defined: -verison; did you mean --version? (see --help)"},
		{[]string{"completion"}, "completion takes one shell: bash, zsh or fish"},
		{[]string{"completion", "tcsh"}, `completion "tcsh": want bash, zsh or fish`},
		{[]string{"watch", "--color", "sometimes"}, `--color "sometimes": want auto, always or never`},
		{[]string{"watch", "--cgroup-root", "/nonexistent"}, "--cgroup-root /nonexistent: no such directory; give the host's cgroup v2 mount"},
		{[]string{"list", "-tan", "--pod-log-dir", "/nonexistent"}, "--pod-log-dir /nonexistent: no such directory; give kubelet's pod log directory (/var/log/pods)"},
		{[]string{"list", "-tan", "--pod-log-dir"}, "list: --pod-log-dir needs a directory: kubelet's pod logs"},
		{[]string{"list", "-tan", "--pod-log-dir", "--cgroup-root", "/tmp"}, "list: --pod-log-dir needs a directory: kubelet's pod logs"},
		{[]string{"list", "-tan", "--cgroup-root", "/etc/passwd"}, "--cgroup-root /etc/passwd: not a directory; give the host's cgroup v2 mount"},
		{[]string{"replay", "--pod-log-dir", "/nonexistent", "x.tcprec"}, "--pod-log-dir /nonexistent: no such directory; give kubelet's pod log directory (/var/log/pods)"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, err := tcpstatOut(t, tc.args...)
			if err == nil || err.Error() != tc.want {
				t.Errorf("error %v, want %q", err, tc.want)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing: the error is one line", out)
			}
		})
	}
}

// TestHelpExamples: every command's help ends with two or three examples
// of that command.
func TestHelpExamples(t *testing.T) {
	for _, cmd := range []string{"watch", "top", "list", "doctor", "record", "replay", "serve", "filter", "version", "completion"} {
		t.Run(cmd, func(t *testing.T) {
			out, err := tcpstatOut(t, cmd, "--help")
			if err != nil {
				t.Fatal(err)
			}
			_, ex, ok := strings.Cut(out, "Examples:\n")
			if !ok {
				t.Fatalf("no examples in help:\n%s", out)
			}
			n := 0
			for _, line := range strings.Split(ex, "\n") {
				if strings.HasPrefix(strings.TrimSpace(line), "tcpstat "+cmd) {
					n++
				} else if strings.TrimSpace(line) != "" {
					break
				}
			}
			if n < 2 || n > 3 {
				t.Errorf("%d examples of tcpstat %s, want 2 or 3:\n%s", n, cmd, ex)
			}
		})
	}
	for cmd, want := range map[string]string{"watch": "tcpstat watch --port 443", "top": "tcpstat top --sort state", "list": "tcpstat list -tanp"} {
		if out, _ := tcpstatOut(t, cmd, "--help"); !strings.Contains(out, want) {
			t.Errorf("%s --help lacks %q", cmd, want)
		}
	}
}

func TestVersion(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "v1.2.3", "0123456789abcdef0123456789abcdef01234567"
	want := regexp.MustCompile(`^tcpstat v1\.2\.3\ncommit  0123456789abcdef0123456789abcdef01234567( \(modified\))?\ngo      go1\.\d+[^ ]* [a-z0-9]+/[a-z0-9]+\n$`)
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, err := tcpstatOut(t, args...)
		if err != nil || !want.MatchString(out) {
			t.Errorf("%v: %q, %v; want %s", args, out, err, want)
		}
	}
	for _, args := range [][]string{{"version", "--json"}, {"--version", "--json"}} {
		out, err := tcpstatOut(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		var b buildInfo
		if err := json.Unmarshal([]byte(out), &b); err != nil {
			t.Fatalf("%v: not JSON: %v\n%s", args, err, out)
		}
		if b.Version != "v1.2.3" || b.Commit != commit || !strings.HasPrefix(b.Go, "go1.") || b.Kernel != "" || b.Features != nil {
			t.Errorf("%v: %+v", args, b)
		}
	}
	if _, err := tcpstatOut(t, "--json"); err == nil || err.Error() != "--verbose and --json go with --version, or after a command" {
		t.Errorf("--json alone: %v", err)
	}

	// Without link flags: the toolchain's build info, or (devel).
	version, commit = "", ""
	if b := readBuildInfo(); b.Version == "" || b.Commit == "" {
		t.Errorf("without link flags: %+v, want a version and a commit, known or not", b)
	}
}

// TestVersionVerbose: --verbose adds the kernel and doctor's features.
func TestVersionVerbose(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: doctor loads the tracer")
	}
	out, err := tcpstatOut(t, "--version", "--verbose")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nkernel  ", "\n  available    watch: live TCP transitions\n", "\n  available    top: live connection table\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("version --verbose lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n > 15 {
		t.Errorf("version --verbose is %d lines, want one short block:\n%s", n, out)
	}
}

func completionScript(t *testing.T, shell string) string {
	t.Helper()
	out, err := tcpstatOut(t, "completion", shell)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tcpstat."+shell)
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCompletionBash loads the script in bash and completes as bash would.
func TestCompletionBash(t *testing.T) {
	bash := needTool(t, "bash")
	script := completionScript(t, "bash")
	for _, tc := range []struct {
		words string
		want  string
	}{
		{"tcpstat w", "watch"},
		{"tcpstat ", "watch list doctor top record replay serve filter version completion --verbose --json --help -h --version"},
		{"tcpstat watch --por", "--port"},
		{"tcpstat watch --color a", "auto always"},
		{"tcpstat top --sort s", "state"},
		{"tcpstat top --r", "--reverse --replay"},
		{"tcpstat watch state fin", "fin-wait-1 fin-wait-2"},
		{"tcpstat watch sp", "sport"},
		{"tcpstat top co", "comm container"},
		{"tcpstat watch pod", "pod pod_namespace"},
		{"tcpstat list --sta", "--state --statistics"},
		{"tcpstat list --state time", "time-wait"},
		{"tcpstat completion z", "zsh"},
		{"tcpstat filter e", "explain"},
	} {
		words := strings.Fields(tc.words)
		if strings.HasSuffix(tc.words, " ") {
			words = append(words, "")
		}
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + w + "'"
		}
		cmd := exec.Command(bash, "-c", `source "$1"; COMP_WORDS=(`+strings.Join(quoted, " ")+`); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _tcpstat; echo "${COMPREPLY[*]}"`, "bash", script)
		out, err := cmd.CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != tc.want {
			t.Errorf("%q: %q, %v; want %q", tc.words, got, err, tc.want)
		}
	}
}

// TestCompletionFish loads the script in fish and asks fish to complete.
func TestCompletionFish(t *testing.T) {
	fish := needTool(t, "fish")
	script := completionScript(t, "fish")
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"tcpstat wa", []string{"watch\tprint every TCP state transition as it happens"}},
		{"tcpstat top --sort st", []string{"state\tsort by KEY: age, state, pid, comm, local, remote"}},
		{"tcpstat watch --col", []string{"--color\tcolour states and close reasons: WHEN is auto (on a terminal, unless NO_COLOR is set), always or never"}},
		{"tcpstat watch state time", []string{"time-wait"}},
		{"tcpstat completion f", []string{"fish"}},
	} {
		out, err := exec.Command(fish, "--no-config", "-c", `source $argv[1]; complete -C $argv[2]`, script, tc.line).CombinedOutput()
		got := strings.Split(strings.TrimSpace(string(out)), "\n")
		if err != nil || strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("%q: %q, %v; want %q", tc.line, got, err, tc.want)
		}
	}
}

// TestCompletionZsh loads the script as zsh's compinit does (from fpath)
// and completes in an interactive zsh, as a Tab would
// (testdata/zsh-complete.zsh).
func TestCompletionZsh(t *testing.T) {
	zsh := needTool(t, "zsh")
	script := completionScript(t, "zsh")
	dir := filepath.Dir(script)
	if err := os.Rename(script, filepath.Join(dir, "_tcpstat")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(zsh, "-n", filepath.Join(dir, "_tcpstat")).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"tcpstat wa", []string{"watch"}},
		{"tcpstat top --sort s", []string{"state"}},
		{"tcpstat watch --col", []string{"--color"}},
		{"tcpstat watch --color a", []string{"auto", "always"}},
		{"tcpstat watch fin", []string{"fin-wait-1", "fin-wait-2"}},
		{"tcpstat completion f", []string{"fish"}},
	} {
		out, err := exec.Command(zsh, "-f", "testdata/zsh-complete.zsh", dir, tc.line).CombinedOutput()
		got := strings.Fields(string(out))
		if err != nil || strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%q: %q, %v; want %q", tc.line, got, err, tc.want)
		}
	}
}

// TestManPages: the pages render in groff without a warning and carry the
// commands' examples.
func TestManPages(t *testing.T) {
	groff := needTool(t, "groff")
	dir := t.TempDir()
	if _, err := tcpstatOut(t, "man-pages", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "*.1"))
	if want := len(newApp(nil, nil).VisibleCommands()) + 1; len(pages) != want {
		t.Fatalf("%d pages, want tcpstat.1 and one per command: %v", len(pages), pages)
	}
	for _, p := range pages {
		if out, err := exec.Command(groff, "-man", "-ww", "-z", "-Tutf8", p).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("%s: %v\n%s", filepath.Base(p), err, out)
		}
	}
	filterPage, err := exec.Command(groff, "-man", "-Tutf8", "-P", "-c", filepath.Join(dir, "tcpstat-filter.1")).Output()
	if err != nil {
		t.Fatal(err)
	}
	if text := regexp.MustCompile(`.\x08`).ReplaceAllString(string(filterPage), ""); !strings.Contains(text, "tcpstat filter explain EXPR\n") {
		t.Errorf("tcpstat-filter(1) lacks its explain command:\n%s", text)
	}
	out, err := exec.Command(groff, "-man", "-Tutf8", "-P", "-c", filepath.Join(dir, "tcpstat-watch.1")).Output()
	if err != nil {
		t.Fatal(err)
	}
	text := regexp.MustCompile(`.\x08`).ReplaceAllString(string(out), "")
	for _, want := range []string{"tcpstat-watch - print every TCP state transition as it happens", "--port, -p PORT",
		"tcpstat watch --port 443", "local → remote", "tcpstat-top(1)"} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered tcpstat-watch(1) lacks %q:\n%s", want, text)
		}
	}
}
