package tracer

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tcpstat/tcpstat/internal/netnstest"
)

// A peer is this test binary run as a separate process that opens, accepts
// and closes sockets on command, so that tests can assert which process
// owns each transition. It speaks one line per command on stdin and
// answers "ok [values]" or "err message" on stdout.

const (
	peerEnv      = "TCPSTAT_TEST_PEER"
	peerNetnsEnv = "TCPSTAT_TEST_PEER_NETNS" // a network namespace to open sockets in
)

func TestMain(m *testing.M) {
	if os.Getenv(peerEnv) == "1" {
		if ns := os.Getenv(peerNetnsEnv); ns != "" {
			// Its sockets are made on a thread in the namespace.
			if err := netnstest.Do(ns, func() error { runPeer(os.Stdin, os.Stdout); return nil }); err != nil {
				fmt.Fprintf(os.Stderr, "peer: %v\n", err)
				os.Exit(2)
			}
			return
		}
		runPeer(os.Stdin, os.Stdout)
		return
	}
	os.Exit(m.Run())
}

func runPeer(in io.Reader, out io.Writer) {
	listener, conn := -1, -1
	s := bufio.NewScanner(in)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) == 0 {
			continue
		}
		reply, err := peerCommand(f, &listener, &conn)
		if err != nil {
			fmt.Fprintf(out, "err %v\n", err)
			continue
		}
		fmt.Fprintf(out, "ok%s\n", reply)
	}
}

func peerCommand(f []string, listener, conn *int) (string, error) {
	switch f[0] {
	case "listen":
		fd, err := socketFor(f[1], true)
		if err != nil {
			return "", err
		}
		*listener = fd
		return "", unix.Listen(fd, 128)
	case "connect":
		ap := netip.MustParseAddrPort(f[1])
		fd, err := socketFor(f[1], false)
		if err != nil {
			return "", err
		}
		*conn = fd
		if err := unix.Connect(fd, sockaddr(ap)); err != nil {
			return "", err
		}
		return " " + strconv.Itoa(localPort(fd)), nil
	case "accept":
		fd, _, err := unix.Accept4(*listener, unix.SOCK_CLOEXEC)
		if err != nil {
			return "", err
		}
		*conn = fd
		return " " + strconv.Itoa(localPort(fd)), nil
	case "linger0":
		return "", unix.SetsockoptLinger(*conn, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	case "wait-eof":
		buf := make([]byte, 4096)
		for {
			n, err := unix.Read(*conn, buf)
			if err != nil {
				return "", err
			}
			if n == 0 {
				return "", nil
			}
		}
	case "close":
		return "", unix.Close(*conn)
	case "close-listener":
		return "", unix.Close(*listener)
	}
	return "", fmt.Errorf("unknown command %q", f[0])
}

func socketFor(addr string, bind bool) (int, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return -1, err
	}
	family := unix.AF_INET
	if ap.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil || !bind {
		return fd, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return -1, err
	}
	return fd, unix.Bind(fd, sockaddr(ap))
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

func localPort(fd int) int {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return sa.Port
	case *unix.SockaddrInet6:
		return sa.Port
	}
	return 0
}

// peer is the test's handle on a peer process.
type peer struct {
	t   *testing.T
	pid uint32
	in  io.WriteCloser
	out *bufio.Scanner
}

func startPeer(t *testing.T) *peer {
	t.Helper()
	return startPeerIn(t, "")
}

// startPeerIn starts a peer whose sockets are made in the network
// namespace at netns ("": this test's).
func startPeerIn(t *testing.T, netns string) *peer {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), peerEnv+"=1", peerNetnsEnv+"="+netns)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start peer: %v", err)
	}
	t.Cleanup(func() {
		in.Close()
		cmd.Wait()
	})
	return &peer{t: t, pid: uint32(cmd.Process.Pid), in: in, out: bufio.NewScanner(out)}
}

// do runs one command in the peer and returns the values of its answer.
func (p *peer) do(command string) []string {
	p.t.Helper()
	if _, err := fmt.Fprintln(p.in, command); err != nil {
		p.t.Fatalf("peer %d: %s: %v", p.pid, command, err)
	}
	if !p.out.Scan() {
		p.t.Fatalf("peer %d: %s: no answer", p.pid, command)
	}
	f := strings.Fields(p.out.Text())
	if len(f) == 0 || f[0] != "ok" {
		p.t.Fatalf("peer %d: %s: %s", p.pid, command, p.out.Text())
	}
	return f[1:]
}

// expectErr runs a command that must fail, and returns the error text.
func (p *peer) expectErr(command string) string {
	p.t.Helper()
	fmt.Fprintln(p.in, command)
	if !p.out.Scan() {
		p.t.Fatalf("peer %d: %s: no answer", p.pid, command)
	}
	line := p.out.Text()
	if !strings.HasPrefix(line, "err ") {
		p.t.Fatalf("peer %d: %s: succeeded, want an error", p.pid, command)
	}
	return strings.TrimPrefix(line, "err ")
}
