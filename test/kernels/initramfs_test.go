package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type cpioEntry struct {
	Name string
	Mode uint32
	Data string
}

// readCPIO is an independent newc reader, to check what the writer wrote.
func readCPIO(t *testing.T, data []byte) []cpioEntry {
	t.Helper()
	var entries []cpioEntry
	field := func(h []byte, i int) int {
		v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("bad header field %d: %v", i, err)
		}
		return int(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; ; {
		if len(data) < off+110 || string(data[off:off+6]) != "070701" {
			t.Fatalf("no newc header at offset %d", off)
		}
		h := data[off : off+110]
		mode, size, namesize := field(h, 1), field(h, 6), field(h, 11)
		name := string(bytes.TrimRight(data[off+110:off+110+namesize], "\x00"))
		off = align(off + 110 + namesize)
		body := string(data[off : off+size])
		off = align(off + size)
		if name == "TRAILER!!!" {
			return entries
		}
		entries = append(entries, cpioEntry{name, uint32(mode), body})
	}
}

func TestCPIOWriter(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "testdata")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "a.txt"), []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A link in testdata is followed: the guest gets the file itself.
	if err := os.Symlink("sub/a.txt", filepath.Join(src, "link.txt")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	c := newCPIOWriter(&buf)
	for _, step := range []func() error{
		func() error { return c.file("init", 0o755, []byte("#!/bin/sh\n")) },
		func() error { return c.symlink("bin/sh", "busybox") },
		func() error { return c.copyTree("src/pkg/testdata", src) },
		func() error { return c.mkdirAll("src/pkg") },
		c.close,
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	want := []cpioEntry{
		{"init", 0o100755, "#!/bin/sh\n"},
		{"bin", 0o40755, ""},
		{"bin/sh", 0o120777, "busybox"},
		{"src", 0o40755, ""},
		{"src/pkg", 0o40755, ""},
		{"src/pkg/testdata", 0o40755, ""},
		{"src/pkg/testdata/link.txt", 0o100600, "abc"},
		{"src/pkg/testdata/sub", 0o40755, ""},
		{"src/pkg/testdata/sub/a.txt", 0o100600, "abc"},
	}
	if diff := cmp.Diff(want, readCPIO(t, buf.Bytes())); diff != "" {
		t.Errorf("archive (-want +got):\n%s", diff)
	}
}
