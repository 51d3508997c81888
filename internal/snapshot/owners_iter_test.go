package snapshot

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// holderEnv makes the test binary a process that holds sockets (see
// TestMain): "hold" waits for its stdin to close, "exit N" exits N
// microseconds after it has said ready; " shared" after either means it
// also holds the socket it inherited as descriptor 3.
const holderEnv = "TCPSTAT_SNAPSHOT_HOLDER"

func TestMain(m *testing.M) {
	mode := os.Getenv(holderEnv)
	if mode == "" {
		os.Exit(m.Run())
	}
	if err := holdSockets(mode); err != nil {
		fmt.Fprintln(os.Stderr, "socket holder:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// holdSockets opens loopback connections, a descriptor duplicated onto the
// same socket, a UNIX socket pair, keeps the socket inherited as fd 3,
// prints "ready" and the inodes of every socket descriptor, one per
// descriptor, and waits.
func holdSockets(mode string) error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var fds []int
	add := func(c syscall.Conn) error {
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		return rc.Control(func(fd uintptr) { fds = append(fds, int(fd)) })
	}
	if err := add(ln.(*net.TCPListener)); err != nil {
		return err
	}
	for range 3 {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return err
		}
		s, err := ln.Accept()
		if err != nil {
			return err
		}
		if err := add(c.(*net.TCPConn)); err != nil {
			return err
		}
		if err := add(s.(*net.TCPConn)); err != nil {
			return err
		}
	}
	dup, err := syscall.Dup(fds[1])
	if err != nil {
		return err
	}
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	fds = append(fds, dup, pair[0], pair[1])
	if strings.HasSuffix(mode, " shared") {
		fds = append(fds, 3) // the first of cmd.ExtraFiles
	}
	line := []string{"ready"}
	for _, fd := range fds {
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil {
			return err
		}
		line = append(line, strconv.FormatUint(st.Ino, 10))
	}
	fmt.Println(strings.Join(line, " "))
	if us, ok := strings.CutPrefix(mode, "exit "); ok {
		n, err := strconv.Atoi(us)
		if err != nil {
			return err
		}
		time.Sleep(time.Duration(n) * time.Microsecond)
		os.Exit(0)
	}
	_, err = io.Copy(io.Discard, os.Stdin)
	return err
}

// holder is a running socket holder and the inodes of its descriptors.
type holder struct {
	cmd    *exec.Cmd
	stdin  io.Closer
	inodes []uint64
}

func startHolder(t *testing.T, mode string, inherit *os.File) *holder {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holderEnv+"="+mode)
	cmd.Stderr = os.Stderr
	if inherit != nil {
		cmd.ExtraFiles = []*os.File{inherit}
		cmd.Env[len(cmd.Env)-1] += " shared"
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holder{cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		h.stdin.Close()
		h.cmd.Process.Kill()
		h.cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("holder %d did not get ready: %v", cmd.Process.Pid, err)
	}
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "ready" {
		t.Fatalf("holder %d said %q", cmd.Process.Pid, line)
	}
	for _, s := range f[1:] {
		ino, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		h.inodes = append(h.inodes, ino)
	}
	return h
}

func (h *holder) pid() uint32 { return uint32(h.cmd.Process.Pid) }

// TestIteratorOwnersMatchProc scans the owners of sockets held by several
// processes (two of them sharing one socket, one holding a socket on two
// descriptors) through the BPF iterator and through /proc: both must give
// exactly the owners the holders report, names included, while another
// process exits in the middle of the scans.
func TestIteratorOwnersMatchProc(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load the iterator and read every /proc/<pid>/fd")
	}
	shared, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	sharedFile, err := shared.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer sharedFile.Close()
	var holders []*holder
	for i := range 4 {
		var inherit *os.File
		if i < 2 {
			inherit = sharedFile
		}
		holders = append(holders, startHolder(t, "hold", inherit))
	}
	sharedFile.Close()
	shared.Close()

	// What the holders say they hold: inode → their pids, once per
	// descriptor, in pid order as the scans give them.
	want := map[uint64][]uint32{}
	for _, h := range holders {
		for _, ino := range h.inodes {
			want[ino] = append(want[ino], h.pid())
		}
	}
	for ino := range want {
		slices.Sort(want[ino])
	}
	comm := filepath.Base(os.Args[0])
	if len(comm) > 15 {
		comm = comm[:15]
	}
	// What netstat -p shows: argv[0], cut to its base name when absolute.
	cmd := os.Args[0]
	if filepath.IsAbs(cmd) {
		cmd = filepath.Base(cmd)
	}

	ctx := context.Background()
	for round := range 8 {
		// A holder that exits by itself a little later: during the
		// scans, or between them.
		exiting := startHolder(t, fmt.Sprintf("exit %d", round*2000), nil)
		byIter, err := iterOwners(ctx, "/proc")
		if err != nil {
			t.Fatalf("round %d: iterator scan: %v", round, err)
		}
		byProc, err := scanOwners(ctx, "/proc")
		if err != nil {
			t.Fatalf("round %d: /proc scan: %v", round, err)
		}
		exiting.cmd.Wait()
		for name, got := range map[string]*OwnerIndex{"iterator": byIter, "/proc": byProc} {
			for ino, owners := range got.All() {
				for _, o := range owners {
					if o.PID == exiting.pid() && !slices.Contains(exiting.inodes, ino) {
						t.Errorf("round %d: %s scan: the exiting holder %d owns socket %d, not one of its own", round, name, o.PID, ino)
					}
				}
			}
			for ino, pids := range want {
				var gotPIDs []uint32
				for _, o := range got.Of(ino) {
					gotPIDs = append(gotPIDs, o.PID)
					if o.Comm != comm || o.Cmd != cmd {
						t.Errorf("round %d: %s scan: socket %d: owner %+v, want comm %q and cmd %q", round, name, ino, o, comm, cmd)
					}
				}
				if !slices.Equal(gotPIDs, pids) {
					t.Errorf("round %d: %s scan: socket %d owned by %v, want %v", round, name, ino, gotPIDs, pids)
				}
			}
		}
		held := func(x *OwnerIndex) map[uint64][]Owner {
			out := map[uint64][]Owner{}
			for ino := range want {
				out[ino] = x.Of(ino)
			}
			return out
		}
		if diff := cmp.Diff(held(byProc), held(byIter)); diff != "" {
			t.Errorf("round %d: the scans differ on the holders' sockets (-/proc +iterator):\n%s", round, diff)
		}
	}

	if _, err := Owners(ctx); err != nil {
		t.Fatal(err)
	}
	if s := LastOwnerScan(); s == nil || s.Method != ScanIterator {
		t.Errorf("Owners used %+v, want the iterator as root on this kernel", s)
	}
}
