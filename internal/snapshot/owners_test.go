package snapshot

import (
	"context"
	"errors"
	"maps"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tcpstat/tcpstat/internal/tcp"
)

// fakeProc builds a /proc-shaped tree: pid → fd symlinks, comm, cmdline.
func fakeProc(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	mk := func(pid, comm, cmdline string, fds map[string]string) {
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(filepath.Join(dir, "fd"), 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "comm"), []byte(comm+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "cmdline"), []byte(cmdline), 0o644)
		for fd, target := range fds {
			if err := os.Symlink(target, filepath.Join(dir, "fd", fd)); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("10", "nginx", "/usr/sbin/nginx\x00-g\x00", map[string]string{"3": "socket:[100]", "4": "socket:[101]", "5": "/dev/null"})
	mk("7", "nginx", "nginx: worker\x00", map[string]string{"6": "socket:[100]"})
	mk("20", "cat", "cat\x00", map[string]string{"0": "pipe:[5]"})
	// A process that exited between the /proc listing and the fd scan.
	os.MkdirAll(filepath.Join(root, "30"), 0o755)
	os.Mkdir(filepath.Join(root, "self"), 0o755)
	return root
}

func TestScanOwners(t *testing.T) {
	got, err := scanOwners(context.Background(), fakeProc(t))
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64][]Owner{
		100: {{PID: 7, Comm: "nginx", Cmd: "nginx: worker"}, {PID: 10, Comm: "nginx", Cmd: "nginx"}},
		101: {{PID: 10, Comm: "nginx", Cmd: "nginx"}},
	}
	if diff := cmp.Diff(want, maps.Collect(got.All())); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestScanOwnersMissingRoot(t *testing.T) {
	if _, err := scanOwners(context.Background(), filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Error("want an error for a missing /proc")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := scanOwners(ctx, fakeProc(t)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled scan: err = %v, want context.Canceled", err)
	}
}

// TestNetlinkMatchesProcfs dumps the same live sockets through both
// sources: they must agree on everything procfs can tell.
func TestNetlinkMatchesProcfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for sock_diag of every socket")
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	type row struct {
		State         string
		Local, Remote string
		Inode         uint64
		UID           uint32
	}
	// Exactly the test's three sockets: other tests may reuse the port
	// numbers on other addresses or in TIME_WAIT.
	mine := map[[2]string]bool{
		{ln.Addr().String(), "0.0.0.0:0"}:                 true,
		{c.LocalAddr().String(), c.RemoteAddr().String()}: true,
		{s.LocalAddr().String(), s.RemoteAddr().String()}: true,
	}
	rows := func(src Source) []row {
		socks, err := Dump(context.Background(), Options{Protos: []Proto{TCP}, Families: []Family{IPv4}, Source: src})
		if err != nil {
			t.Fatal(err)
		}
		var out []row
		for _, s := range socks {
			if mine[[2]string{s.Local.String(), s.Remote.String()}] && s.State != tcp.TimeWait {
				if src == Netlink && s.Cookie == 0 {
					t.Errorf("netlink row without cookie: %v", s.Local)
				}
				out = append(out, row{s.State.String(), s.Local.String(), s.Remote.String(), s.Inode, s.UID})
			}
		}
		return out
	}
	nl, pf := rows(Netlink), rows(Procfs)
	if len(nl) != 3 {
		t.Errorf("netlink: %d rows for the test's listener and pair, want 3", len(nl))
	}
	less := func(a, b row) bool { return a.Local+a.Remote < b.Local+b.Remote }
	if diff := cmp.Diff(pf, nl, cmpopts.SortSlices(less)); diff != "" {
		t.Errorf("(-procfs +netlink)\n%s", diff)
	}
}

// TestOwnerIndex: a socket one process holds gets that process's owner, a
// socket several descriptors hold gets all of them by pid (repeats kept, as
// the scans find them), and an unknown inode none.
func TestOwnerIndex(t *testing.T) {
	nginx, worker, cat := Owner{PID: 10, Comm: "nginx"}, Owner{PID: 7, Comm: "nginx"}, Owner{PID: 20, Comm: "cat"}
	x := &OwnerIndex{procs: []Owner{nginx, worker, cat}, refs: []ownerRef{{101, 0}, {100, 0}, {300, 2}, {100, 1}, {200, 2}, {300, 2}}}
	x.index()
	want := map[uint64][]Owner{
		100: {worker, nginx},
		101: {nginx},
		200: {cat},
		300: {cat, cat},
	}
	for ino, owners := range want {
		if diff := cmp.Diff(owners, x.Of(ino)); diff != "" {
			t.Errorf("Of(%d) (-want +got)\n%s", ino, diff)
		}
	}
	if got := x.Of(150); got != nil {
		t.Errorf("Of(150) = %v, want none", got)
	}
	var inodes []uint64
	for ino, owners := range x.All() {
		inodes = append(inodes, ino)
		if diff := cmp.Diff(want[ino], owners); diff != "" {
			t.Errorf("All: %d (-want +got)\n%s", ino, diff)
		}
	}
	if diff := cmp.Diff([]uint64{100, 101, 200, 300}, inodes); diff != "" {
		t.Errorf("All's inodes (-want +got)\n%s", diff)
	}
	if diff := cmp.Diff(want, maps.Collect(NewOwnerIndex(want).All())); diff != "" {
		t.Errorf("NewOwnerIndex (-want +got)\n%s", diff)
	}
	if x.Len() != 6 {
		t.Errorf("Len() = %d, want 6 descriptors", x.Len())
	}
	var none *OwnerIndex
	if none.Of(100) != nil || none.Len() != 0 {
		t.Error("a nil index found owners")
	}
}
