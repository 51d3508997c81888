package sockfds

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"
	"testing/iotest"

	"golang.org/x/sys/unix"
)

type rec struct {
	pid, fd uint32
	inode   uint64
}

func encode(recs ...rec) []byte {
	var b bytes.Buffer
	for _, r := range recs {
		binary.Write(&b, binary.NativeEndian, sockfdsSockFd{Pid: r.pid, Fd: r.fd, Inode: r.inode})
	}
	return b.Bytes()
}

func collect(r io.Reader, self int) ([]rec, error) {
	var got []rec
	err := read(r, self, func(pid, fd uint32, inode uint64) { got = append(got, rec{pid, fd, inode}) })
	return got, err
}

func TestRead(t *testing.T) {
	want := []rec{{10, 3, 100}, {10, 4, 101}, {7, 6, 100}}
	in := encode(append([]rec{{42, readerFD, 0}}, want...)...)
	// One byte per read: records split across reads are joined.
	for name, r := range map[string]io.Reader{"whole": bytes.NewReader(in), "bytewise": iotest.OneByteReader(bytes.NewReader(in))} {
		got, err := collect(r, 42)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: got %v, want %v", name, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s: record %d = %v, want %v", name, i, got[i], want[i])
			}
		}
	}
}

func TestReadRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		in          []byte
		unavailable bool
	}{
		"empty":                 {nil, true},
		"another pid ns":        {encode(rec{5, readerFD, 0}, rec{10, 3, 100}), true},
		"no reader record":      {encode(rec{42, 3, 100}), true},
		"torn last record":      {encode(rec{42, readerFD, 0}, rec{10, 3, 100})[:20], false},
		"reader record only ok": {encode(rec{42, readerFD, 0}), false},
	} {
		got, err := collect(bytes.NewReader(tc.in), 42)
		if name == "reader record only ok" {
			if err != nil || len(got) != 0 {
				t.Errorf("%s: got %v, %v; want no records, no error", name, got, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if errors.Is(err, ErrUnavailable) != tc.unavailable {
			t.Errorf("%s: %v: wraps ErrUnavailable = %v, want %v", name, err, !tc.unavailable, tc.unavailable)
		}
		if tc.unavailable && len(got) != 0 {
			t.Errorf("%s: records passed on before the error: %v", name, got)
		}
	}
}

func FuzzRead(f *testing.F) {
	f.Add(encode(rec{42, readerFD, 0}, rec{10, 3, 100}))
	f.Add(encode(rec{42, readerFD, 0})[:9])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := collect(iotest.HalfReader(bytes.NewReader(in)), 42)
		if err == nil && len(in) != (len(got)+1)*recordSize {
			t.Errorf("%d bytes gave %d records and no error", len(in), len(got))
		}
	})
}

// TestScan runs the real iterator: as root it must load on every kernel
// tcpstat supports (task_file iterators are Linux 5.8+), and it must find
// the socket this test holds, on its descriptor.
func TestScan(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF and CAP_PERFMON) to load the iterator")
	}
	fds, err := unixSocketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(fds)
	inode, err := inodeOf(fds[0])
	if err != nil {
		t.Fatal(err)
	}
	found := false
	if err := Scan(func(pid, fd uint32, ino uint64) {
		if int(pid) == os.Getpid() && int(fd) == fds[0] {
			found = ino == inode
			if !found {
				t.Errorf("fd %d: inode %d, want %d", fd, ino, inode)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Errorf("the scan did not list this process's socket on fd %d", fds[0])
	}
}
func unixSocketpair() ([2]int, error) {
	return unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
}

func closeAll(fds [2]int) {
	unix.Close(fds[0])
	unix.Close(fds[1])
}

func inodeOf(fd int) (uint64, error) {
	var st unix.Stat_t
	err := unix.Fstat(fd, &st)
	return st.Ino, err
}
