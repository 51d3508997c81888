package netstat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpstat/tcpstat/internal/snapshot"
)

func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: compares with netstat/ss and reads every process's descriptors")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (apt-get install net-tools iproute2)", tool)
		}
	}
}

// liveSockets opens loopback sockets in every state the listing shows and
// returns the ports they use.
func liveSockets(t *testing.T) []string {
	t.Helper()
	var ports []string
	keep := func(c interface{ Close() error }) { t.Cleanup(func() { c.Close() }) }
	for _, network := range []string{"tcp4", "tcp6"} {
		host := "127.0.0.1"
		if network == "tcp6" {
			host = "::1"
		}
		ln, err := net.Listen(network, net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		keep(ln)
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
		// An established pair.
		c, err := net.Dial(network, ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		keep(c)
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		keep(s)
		// A TIME_WAIT: the client closes first, the server answers the FIN.
		c2, err := net.Dial(network, ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s2, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c2.Close()
		buf := make([]byte, 1)
		s2.Read(buf)
		s2.Close()
	}
	u, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	keep(u)
	ports = append(ports, strconv.Itoa(u.LocalAddr().(*net.UDPAddr).Port))
	uc, err := net.Dial("udp4", u.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	keep(uc)
	ports = append(ports, strconv.Itoa(uc.LocalAddr().(*net.UDPAddr).Port))
	ul, err := net.Listen("unix", filepath.Join(t.TempDir(), "live.sock"))
	if err != nil {
		t.Fatal(err)
	}
	keep(ul)
	time.Sleep(100 * time.Millisecond) // let the TIME_WAIT hand-off finish
	return ports
}

// ours runs `tcpstat list` with args and returns its output.
func ours(t *testing.T, args ...string) string {
	t.Helper()
	c, err := Parse(args)
	if err != nil {
		t.Fatal(err)
	}
	var out, warn bytes.Buffer
	if err := Run(context.Background(), c, &out, &warn); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func theirs(t *testing.T, tool string, args ...string) string {
	t.Helper()
	out, err := exec.Command(tool, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", tool, args, err)
	}
	return string(out)
}

// timerless blanks the seconds of netstat -o timers, which tick between
// the two reads; the timer kind and counters stay.
func timerless(text string) string {
	return timerSeconds.ReplaceAllString(text, "(s/")
}

var timerSeconds = regexp.MustCompile(`\(\d+\.\d\d/`)

// rowsWith keeps the lines that mention one of the ports (or the test's
// UNIX socket), sorted.
func rowsWith(text string, needles []string) []string {
	var rows []string
	for _, l := range strings.Split(text, "\n") {
		for _, n := range needles {
			if strings.Contains(l, n) {
				rows = append(rows, l)
				break
			}
		}
	}
	slices.Sort(rows)
	return rows
}

func TestListMatchesNetstat(t *testing.T) {
	needRoot(t, "netstat")
	ports := liveSockets(t)
	var needles []string
	for _, p := range ports {
		needles = append(needles, "127.0.0.1:"+p+" ", "::1:"+p+" ", "localhost:"+p+" ")
	}
	needles = append(needles, "live.sock")
	pid := strconv.Itoa(os.Getpid())
	// -tl and -ta resolve names: loopback is "localhost" in /etc/hosts.
	for _, flags := range []string{"-tan", "-tanp", "-tlnp", "-tn", "-uanp", "-tanpe", "-46tan", "-xap", "-an", "-tlW", "-taW", "-tanpeo", "-uano"} {
		t.Run(flags, func(t *testing.T) {
			// Both read the kernel within milliseconds of each other;
			// the test's sockets are idle, so their rows cannot differ.
			want := rowsWith(timerless(theirs(t, "netstat", flags)), needles)
			got := rowsWith(timerless(ours(t, flags)), needles)
			if len(want) == 0 {
				t.Fatalf("netstat %s shows none of the test's sockets", flags)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("netstat %s vs tcpstat list %s (-netstat +tcpstat):\n%s", flags, flags, diff)
			}
			if strings.Contains(flags, "p") && !strings.Contains(strings.Join(got, "\n"), pid+"/") {
				t.Errorf("no row names this process (%s) as owner", pid)
			}
		})
	}
	t.Run("headers", func(t *testing.T) {
		for _, flags := range []string{"-tanpeo", "-tl", "-t", "-xl"} {
			want := strings.SplitN(theirs(t, "netstat", flags), "\n", 3)[:2]
			got := strings.SplitN(ours(t, flags), "\n", 3)[:2]
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s header (-netstat +tcpstat):\n%s", flags, diff)
			}
		}
	})
}

func TestSnapshotMatchesSS(t *testing.T) {
	needRoot(t, "ss")
	ports := liveSockets(t)
	socks, err := snapshot.Dump(context.Background(), snapshot.Options{Protos: []snapshot.Proto{snapshot.TCP}, Owners: true})
	if err != nil {
		t.Fatal(err)
	}
	out := theirs(t, "ss", "-tanHe")
	mine := func(p uint16) bool { return slices.Contains(ports, strconv.Itoa(int(p))) }
	var got, want []string
	for _, s := range socks {
		if !mine(s.Local.Port()) && !mine(s.Remote.Port()) {
			continue
		}
		st := strings.ReplaceAll(stateName(&s), "_", "-")
		st = strings.Replace(strings.Replace(st, "ESTABLISHED", "ESTAB", 1), "FIN-WAIT", "FIN-WAIT-", 1)
		got = append(got, fmt.Sprintf("%s %s %s sk:%x", st, ssAddr(s.Local.String()), ssAddr(s.Remote.String()), s.Cookie))
		if s.Inode != 0 && (len(s.Owners) == 0 || s.Owners[0].PID != uint32(os.Getpid())) {
			t.Errorf("%v: owners %v, want this process", s.Local, s.Owners)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		lp, rp := f[3][strings.LastIndexByte(f[3], ':')+1:], f[4][strings.LastIndexByte(f[4], ':')+1:]
		if !slices.Contains(ports, lp) && !slices.Contains(ports, rp) {
			continue
		}
		cookie := ""
		for _, x := range f {
			if strings.HasPrefix(x, "sk:") {
				cookie = x
			}
		}
		want = append(want, fmt.Sprintf("%s %s %s %s", f[0], f[3], f[4], cookie))
	}
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ss -tanHe vs snapshot.Dump (-ss +snapshot):\n%s", diff)
	}
}

// ssAddr writes an address the way ss does: port 0 as "*".
func ssAddr(s string) string {
	if strings.HasSuffix(s, ":0") {
		return s[:len(s)-2] + ":*"
	}
	return s
}

func TestStatisticsMatchProc(t *testing.T) {
	needRoot(t)
	before, err := ReadCounters()
	if err != nil {
		t.Fatal(err)
	}
	var doc jsonDoc
	if err := json.Unmarshal([]byte(ours(t, "-s", "--json")), &doc); err != nil {
		t.Fatal(err)
	}
	after, err := ReadCounters()
	if err != nil {
		t.Fatal(err)
	}
	// Counters move between the reads: ours must lie between the two.
	for i, s := range before {
		for j, k := range s.Keys {
			lo, hi := s.Values[j], after[i].Values[j]
			if lo > hi {
				lo, hi = hi, lo
			}
			got, ok := doc.Statistics[s.Name][k]
			if !ok {
				t.Errorf("%s.%s missing from -s --json", s.Name, k)
				continue
			}
			if got < lo || got > hi {
				t.Errorf("%s.%s = %d, /proc said %d then %d", s.Name, k, got, lo, hi)
			}
		}
	}
}
