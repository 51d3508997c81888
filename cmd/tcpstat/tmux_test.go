package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// pane is a tmux pane of a private tmux server running tcpstat: a real
// terminal of a chosen width.
type pane struct {
	t      *testing.T
	tmux   string
	sock   string
	width  int
	height int
}

// startPane runs tcpstat args in a new detached tmux session width columns
// wide; the pane stays after tcpstat exits, to be read.
func startPane(t *testing.T, width, height int, args ...string) *pane {
	t.Helper()
	return startPaneEnv(t, nil, width, height, args...)
}

// startPaneEnv is startPane with environment variables (NAME=value) set.
func startPaneEnv(t *testing.T, env []string, width, height int, args ...string) *pane {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the BPF program")
	}
	p := &pane{t: t, tmux: needTool(t, "tmux"), sock: filepath.Join(t.TempDir(), "tmux.sock"), width: width, height: height}
	bin := tcpstatCommand(t).Path
	conf := filepath.Join(t.TempDir(), "tmux.conf")
	if err := os.WriteFile(conf, []byte("set -g remain-on-exit on\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	line := "exec env " + strings.Join(append(env, runAsTcpstat+"=1"), " ") + " '" + bin + "' " + strings.Join(args, " ")
	p.run("-f", conf, "new-session", "-d", "-s", "t", "-x", strconv.Itoa(width), "-y", strconv.Itoa(height), line)
	t.Cleanup(func() { exec.Command(p.tmux, "-S", p.sock, "kill-server").Run() })
	return p
}

func (p *pane) run(args ...string) string {
	p.t.Helper()
	out, err := exec.Command(p.tmux, append([]string{"-S", p.sock}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// screen is the pane's text, one string per screen line; joined, the
// lines tmux wrapped are put back together.
func (p *pane) screen(joined bool) []string {
	args := []string{"capture-pane", "-p", "-t", "t"}
	if joined {
		args = append(args, "-J")
	}
	lines := strings.Split(strings.TrimRight(p.run(args...), "\n "), "\n")
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], " ")
	}
	return lines
}

// waitFor waits until every pattern matches a line of the screen.
func (p *pane) waitFor(patterns ...*regexp.Regexp) []string {
	p.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		lines := p.screen(true)
		missing := ""
		for _, re := range patterns {
			if !matchesLine(re, lines) {
				missing = re.String()
				break
			}
		}
		if missing == "" {
			return lines
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%d columns: no line matches %s; screen:\n%s", p.width, missing, strings.Join(lines, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func matchesLine(re *regexp.Regexp, lines []string) bool {
	for _, l := range lines {
		if re.MatchString(l) {
			return true
		}
	}
	return false
}

// wrapped returns the lines tmux wrapped: those the joined capture has
// longer than the screen's width.
func (p *pane) wrapped() []string {
	var long []string
	for _, l := range p.screen(true) {
		if utf8.RuneCountInString(l) > p.width {
			long = append(long, l)
		}
	}
	return long
}

// connection makes one connection's whole life on 127.0.0.1:port: listen,
// connect, accept, the client closes first, then the server, then the
// listener. It returns the client's port.
func connection(t *testing.T, port int) int {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	client := c.LocalAddr().(*net.TCPAddr).Port
	c.Close()
	// The server closes once the client's FIN arrived: an orderly
	// CLOSE_WAIT → LAST_ACK → CLOSE, and the client's TIME_WAIT.
	a.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.Read(make([]byte, 1)); err == nil {
		t.Fatal("read data, want the client's FIN")
	}
	a.Close()
	return client
}

// TestWatchInTerminal: watch in a real terminal (tmux) 80 and 120 columns
// wide, while a loopback connection lives and dies: every transition is a
// row, and no line wraps. Wide (-W) at 80 columns must wrap: the check
// sees wrapping when there is some.
func TestWatchInTerminal(t *testing.T) {
	for _, tc := range []struct {
		width int
		wide  bool
		port  int
	}{{80, false, 29181}, {120, false, 29182}, {80, true, 29183}} {
		name := strconv.Itoa(tc.width)
		if tc.wide {
			name += "W"
		}
		t.Run(name, func(t *testing.T) {
			ready := filepath.Join(t.TempDir(), "ready")
			args := []string{"watch", "-4", "--port", strconv.Itoa(tc.port), "--ready-file", ready}
			if tc.wide {
				args = append(args, "--wide")
			}
			p := startPane(t, tc.width, 40, args...)
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if _, err := os.Stat(ready); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("watch not ready after 10 s:\n%s", strings.Join(p.screen(false), "\n"))
				}
			}
			client := connection(t, tc.port)
			srv, cli := fmt.Sprintf(`127\.0\.0\.1:%d`, tc.port), fmt.Sprintf(`127\.0\.0\.1:%d`, client)
			arrow, estab, done, tw := "→", "ESTAB", "done", `TIME_WAIT\*`
			if tc.width >= 120 || tc.wide {
				arrow, estab, done, tw = " → ", "ESTABLISHED", `CLOSE\s+\S+\s+done`, `TIME_WAIT\*\s+\S+\s+timewait`
			}
			row := func(local, remote, transition string) *regexp.Regexp {
				return regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3}(\d{3})? \S.*\s` + local + `\s+` + remote + `\s+` + transition + `(\s|$)`)
			}
			rows := []*regexp.Regexp{
				row(srv, `0\.0\.0\.0:0`, "CLOSE"+arrow+"LISTEN"),
				row(`127\.0\.0\.1:0`, srv, "CLOSE"+arrow+"SYN_SENT"),
				row(cli, srv, "SYN_SENT"+arrow+estab),
				row(srv, cli, "LISTEN"+arrow+"SYN_RECV"),
				row(srv, cli, "SYN_RECV"+arrow+estab),
				row(srv, cli, "accept\\(\\) in "+estab),
				row(cli, srv, estab+arrow+"FIN_WAIT1"),
				row(srv, cli, estab+arrow+"CLOSE_WAIT"),
				row(srv, cli, "CLOSE_WAIT"+arrow+"LAST_ACK"),
				row(cli, srv, "FIN_WAIT1"+arrow+"FIN_WAIT2"),
				row(cli, srv, "FIN_WAIT2"+arrow+tw),
				row(srv, cli, "LAST_ACK"+arrow+done),
				row(srv, `0\.0\.0\.0:0`, "LISTEN"+arrow+done),
			}
			lines := p.waitFor(rows...)
			if !strings.HasPrefix(lines[0], "TIME ") || strings.HasPrefix(lines[1], "TIME ") {
				t.Errorf("the first line is not the one header: %q, %q", lines[0], lines[1])
			}
			long := p.wrapped()
			if tc.wide && len(long) == 0 {
				t.Errorf("-W at %d columns: no line wrapped, want the whole fields to wrap:\n%s", tc.width, strings.Join(lines, "\n"))
			}
			if !tc.wide && len(long) > 0 {
				t.Errorf("%d columns: %d lines wrapped:\n%s", tc.width, len(long), strings.Join(long, "\n"))
			}
		})
	}
}

// TestTopInTerminal: top in tmux at 80 and 120 columns shows the
// listener and both ends of an open connection, and no line wraps.
func TestTopInTerminal(t *testing.T) {
	for _, tc := range []struct{ width, port int }{{80, 29184}, {120, 29185}} {
		t.Run(strconv.Itoa(tc.width), func(t *testing.T) {
			ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tc.port})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			a, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			client := c.LocalAddr().(*net.TCPAddr).Port
			port := ":" + strconv.Itoa(tc.port)
			p := startPane(t, tc.width, 50, "top", "--delay", "0.2", "src", "127.0.0.1"+port, "or", "dst", "127.0.0.1"+port)
			pid := strconv.Itoa(os.Getpid())
			srv, cli := fmt.Sprintf(`127\.0\.0\.1:%d`, tc.port), fmt.Sprintf(`127\.0\.0\.1:%d`, client)
			row := func(local, remote, state string) *regexp.Regexp {
				return regexp.MustCompile(`^\s*` + pid + `\s+\S+\s+` + local + `\s+` + remote + `\s+` + state + `\s`)
			}
			lines := p.waitFor(
				regexp.MustCompile(`^tcpstat top - \d\d:\d\d:\d\d  tracing  connections \d+ \(\d+ shown\)`),
				row(srv, `0\.0\.0\.0:0`, "LISTEN"),
				row(cli, srv, "ESTABLISHED"),
				row(srv, cli, "ESTABLISHED"),
			)
			if long := p.wrapped(); len(long) > 0 {
				t.Errorf("%d columns: %d lines wrapped:\n%s", tc.width, len(long), strings.Join(long, "\n"))
			}
			t.Logf("%d columns:\n%s", tc.width, strings.Join(lines, "\n"))
		})
	}
}

// TestWatchResize: a terminal narrowed from 120 to 80 columns gets a new
// header and compact lines that fit: no line after that header wraps.
func TestWatchResize(t *testing.T) {
	const port = 29186
	ready := filepath.Join(t.TempDir(), "ready")
	p := startPane(t, 120, 40, "watch", "-4", "--port", strconv.Itoa(port), "--ready-file", ready)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watch not ready after 10 s:\n%s", strings.Join(p.screen(false), "\n"))
		}
	}
	first := connection(t, port)
	p.waitFor(regexp.MustCompile(fmt.Sprintf(`127\.0\.0\.1:%d\s+127\.0\.0\.1:%d\s+SYN_SENT → ESTABLISHED\s`, first, port)))
	p.run("resize-window", "-t", "t", "-x", "80", "-y", "40")
	p.width = 80
	compactHeader := regexp.MustCompile(`^TIME {9}OWNER +LOCAL +REMOTE +TRANSITION +AGE$`)
	p.waitFor(compactHeader)
	second := connection(t, port)
	row := regexp.MustCompile(fmt.Sprintf(`^\d\d:\d\d:\d\d\.\d{3} \S+\s+127\.0\.0\.1:%d\s+127\.0\.0\.1:%d\s+SYN_SENT→ESTAB\s`, second, port))
	lines := p.waitFor(row)
	after := false
	for _, l := range p.screen(true) {
		if compactHeader.MatchString(l) {
			after = true
		} else if after && utf8.RuneCountInString(l) > 80 {
			t.Errorf("a line after the resize wraps:\n%s", l)
		}
	}
	if !after {
		t.Errorf("no 80-column header after the resize:\n%s", strings.Join(lines, "\n"))
	}
}

// TestWatchColorInTerminal: on a terminal, states are coloured; NO_COLOR
// and --color=never turn that off, --color=always wins over NO_COLOR.
func TestWatchColorInTerminal(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   []string
		flag  string
		color bool
		port  int
	}{
		{"auto", nil, "", true, 29187},
		{"NO_COLOR", []string{"NO_COLOR=1"}, "", false, 29188},
		{"never", nil, "--color=never", false, 29189},
		{"always over NO_COLOR", []string{"NO_COLOR=1"}, "--color=always", true, 29190},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ready := filepath.Join(t.TempDir(), "ready")
			args := []string{"watch", "-4", "--port", strconv.Itoa(tc.port), "--ready-file", ready}
			if tc.flag != "" {
				args = append(args, tc.flag)
			}
			p := startPaneEnv(t, tc.env, 80, 40, args...)
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if _, err := os.Stat(ready); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("watch not ready after 10 s:\n%s", strings.Join(p.screen(false), "\n"))
				}
			}
			client := connection(t, tc.port)
			p.waitFor(regexp.MustCompile(fmt.Sprintf(`127\.0\.0\.1:%d\s+127\.0\.0\.1:%d\s+SYN_SENT→ESTAB\s`, client, tc.port)))
			// With -e, tmux writes the cells' colours as escapes: ESTAB in
			// green (32), LISTEN in cyan (36).
			screen := p.run("capture-pane", "-p", "-e", "-t", "t")
			green, cyan := strings.Contains(screen, "\x1b[32mESTAB"), strings.Contains(screen, "\x1b[36mLISTEN")
			if tc.color != (green && cyan) || (!tc.color && strings.Contains(screen, "\x1b[3")) {
				t.Errorf("colour %v: ESTAB green %v, LISTEN cyan %v; screen:\n%q", tc.color, green, cyan, screen)
			}
		})
	}
}
