package snapshot

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// fakeNS builds /proc/PID/ns/net files and a /var/run/netns directory from
// plain files: hard links share an inode as processes in one namespace do.
func fakeNS(t *testing.T) (proc, named string, inode func(string) uint32) {
	root := t.TempDir()
	proc, named = filepath.Join(root, "proc"), filepath.Join(root, "netns")
	store := filepath.Join(root, "store")
	for _, d := range []string{proc, named, store} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(store, ns), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(ns, to string) {
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(filepath.Join(store, ns), to); err != nil {
			t.Fatal(err)
		}
	}
	for pid, ns := range map[int]string{1: "a", 7: "a", 30: "b", 31: "b", 32: "b", 33: "b", 34: "b", 35: "b"} {
		link(ns, filepath.Join(proc, strconv.Itoa(pid), "ns", "net"))
	}
	os.MkdirAll(filepath.Join(proc, "2"), 0o755) // a kernel thread: no ns/net
	link("b", filepath.Join(named, "blue"))
	link("c", filepath.Join(named, "cyan"))
	inode = func(ns string) uint32 {
		ino, err := nsInode(filepath.Join(store, ns))
		if err != nil {
			t.Fatal(err)
		}
		return ino
	}
	return proc, named, inode
}

func TestFindNamespaces(t *testing.T) {
	proc, named, inode := fakeNS(t)
	got, err := findNamespaces(proc, named)
	if err != nil {
		t.Fatal(err)
	}
	want := []Namespace{
		{Inode: inode("a"), PID: 1, paths: []string{proc + "/1/ns/net", proc + "/7/ns/net"}},
		{Inode: inode("b"), Names: []string{"blue"}, PID: 30, paths: []string{named + "/blue", proc + "/30/ns/net", proc + "/31/ns/net", proc + "/32/ns/net"}},
		{Inode: inode("c"), Names: []string{"cyan"}, paths: []string{named + "/cyan"}},
	}
	opt := cmpopts.SortSlices(func(a, b Namespace) bool { return a.Inode < b.Inode })
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(Namespace{}), opt); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestResolveNetNSSelectors(t *testing.T) {
	proc, named, inode := fakeNS(t)
	for _, tc := range []struct {
		sel  string
		want uint32 // 0: an error naming errWord
		word string
	}{
		{sel: strconv.Itoa(int(inode("a"))), want: inode("a")},
		{sel: strconv.Itoa(int(inode("c"))), want: inode("c")},
		{sel: "4026531999", word: "no process or name"},
		{sel: "", word: "empty"},
		{sel: "pid:x", word: "process id"},
		{sel: "pid:0", word: "process id"},
		{sel: "pid:999", word: "no such file"},
		{sel: "nosuch", word: "no such file"},
		{sel: "..", word: "not a name"},
		// Plain files are not namespaces: the path and name forms check.
		{sel: "pid:7", word: "not a network namespace"},
		{sel: "blue", word: "not a network namespace"},
	} {
		got, err := resolveNetNS(tc.sel, proc, named)
		if tc.want == 0 {
			if err == nil || !strings.Contains(err.Error(), tc.word) {
				t.Errorf("%q: got %v, %v; want an error with %q", tc.sel, got.Inode, err, tc.word)
			}
			continue
		}
		if err != nil || got.Inode != tc.want {
			t.Errorf("%q: got %d, %v; want %d", tc.sel, got.Inode, err, tc.want)
		}
	}
}
