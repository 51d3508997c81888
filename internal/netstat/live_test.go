package netstat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
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
	"github.com/tcpstat/tcpstat/internal/tcp"
)

// needRoot skips the test unless it runs as root; as root (as CI runs) a
// missing reference tool fails it, since a skipped comparison proves nothing.
func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: compares with netstat/ss and reads every process's descriptors")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("needs %s: run scripts/deps.sh (Debian net-tools, iproute2, util-linux)", tool)
		}
	}
}

// testPorts are the loopback ports the test's own sockets hold. Other test
// binaries run beside this one and use loopback too, so a row is the test's
// only when its protocol, loopback address and port all match.
type testPorts struct{ tcp, udp []string }

// liveSockets opens loopback sockets in every state the listing shows and
// returns the ports they use.
func liveSockets(t *testing.T) testPorts {
	t.Helper()
	var ports testPorts
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
		ports.tcp = append(ports.tcp, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
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
	ports.udp = append(ports.udp, strconv.Itoa(u.LocalAddr().(*net.UDPAddr).Port))
	uc, err := net.Dial("udp4", u.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	keep(uc)
	ports.udp = append(ports.udp, strconv.Itoa(uc.LocalAddr().(*net.UDPAddr).Port))
	ul, err := net.Listen("unix", filepath.Join(t.TempDir(), "live.sock"))
	if err != nil {
		t.Fatal(err)
	}
	keep(ul)
	waitTimeWait(t, ports.tcp)
	return ports
}

// waitTimeWait waits until no socket on the listeners' ports is still
// closing (FIN_WAIT, CLOSING, LAST_ACK): each closed pair has then reached
// TIME_WAIT on the client side (or no TIME_WAIT at all, when the host's
// tcp_max_tw_buckets is full) and CLOSE on the server side, so two
// listings taken one after the other see the same rows.
func waitTimeWait(t *testing.T, ports []string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		socks, err := snapshot.Dump(context.Background(), snapshot.Options{Protos: []snapshot.Proto{snapshot.TCP}})
		if err != nil {
			t.Fatal(err)
		}
		closing := 0
		for _, s := range socks {
			mine := slices.Contains(ports, strconv.Itoa(int(s.Remote.Port()))) || slices.Contains(ports, strconv.Itoa(int(s.Local.Port())))
			switch {
			case !s.Local.Addr().IsLoopback() || !mine:
			case s.State == tcp.FinWait1, s.State == tcp.FinWait2, s.State == tcp.Closing, s.State == tcp.LastAck:
				closing++
			}
		}
		if closing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %d sockets still closing", closing)
		}
		time.Sleep(5 * time.Millisecond)
	}
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

// rows keeps, sorted, the lines that show one of the test's sockets: a
// loopback endpoint on one of its ports, in a row of that protocol, or its
// UNIX socket.
func (p testPorts) rows(text string) []string {
	var rows []string
	for _, l := range strings.Split(text, "\n") {
		if p.shows(l) {
			rows = append(rows, l)
		}
	}
	slices.Sort(rows)
	return rows
}

func (p testPorts) shows(line string) bool {
	if strings.HasPrefix(line, "unix") {
		return strings.Contains(line, "live.sock")
	}
	ports := p.udp
	if strings.HasPrefix(line, "tcp") {
		ports = p.tcp
	} else if !strings.HasPrefix(line, "udp") {
		return false
	}
	for _, port := range ports {
		// -tl and -ta resolve names: loopback is "localhost" in /etc/hosts.
		for _, host := range []string{"127.0.0.1:", "::1:", "localhost:"} {
			if strings.Contains(line, host+port+" ") {
				return true
			}
		}
	}
	return false
}

func TestListMatchesNetstat(t *testing.T) {
	needRoot(t, "netstat")
	ports := liveSockets(t)
	pid := strconv.Itoa(os.Getpid())
	for _, flags := range []string{"-tan", "-tanp", "-tlnp", "-tn", "-uanp", "-tanpe", "-46tan", "-xap", "-an", "-tlW", "-taW", "-tanpeo", "-uano"} {
		t.Run(flags, func(t *testing.T) {
			// Both read the kernel within milliseconds of each other;
			// the test's sockets are idle, so their rows cannot differ.
			want := ports.rows(timerless(theirs(t, "netstat", flags)))
			got := ports.rows(timerless(ours(t, flags)))
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
	mine := func(ap netip.AddrPort) bool {
		a := ap.Addr()
		return (a == netip.AddrFrom4([4]byte{127, 0, 0, 1}) || a == netip.IPv6Loopback()) &&
			slices.Contains(ports.tcp, strconv.Itoa(int(ap.Port())))
	}
	var got, want []string
	for _, s := range socks {
		if !mine(s.Local) && !mine(s.Remote) {
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
		local, _ := netip.ParseAddrPort(f[3])
		remote, _ := netip.ParseAddrPort(f[4])
		if !mine(local) && !mine(remote) {
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
			// CurrEstab is a gauge, not a counter: it may leave the range
			// of the two reads while sockets of other tests open and close.
			if k != "CurrEstab" && (got < lo || got > hi) {
				t.Errorf("%s.%s = %d, /proc said %d then %d", s.Name, k, got, lo, hi)
			}
		}
	}
}
