package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeKernel builds the smallest x86-64 ELF file with one PT_NOTE segment
// holding a note (name, type); with ("Xen", 18) it is what QEMU boots as a
// PVH kernel.
func fakeKernel(name string, typ uint32) []byte {
	le := binary.LittleEndian
	var note bytes.Buffer
	nameb := append([]byte(name), 0)
	for _, v := range []uint32{uint32(len(nameb)), 4, typ} {
		binary.Write(&note, le, v)
	}
	note.Write(nameb)
	for note.Len()%4 != 0 {
		note.WriteByte(0)
	}
	note.Write([]byte{0, 0, 0x10, 0})

	const ehsize, phsize = 64, 56
	b := make([]byte, ehsize+phsize)
	copy(b, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	le.PutUint16(b[16:], 2)  // ET_EXEC
	le.PutUint16(b[18:], 62) // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[32:], ehsize) // e_phoff
	le.PutUint16(b[52:], ehsize)
	le.PutUint16(b[54:], phsize)
	le.PutUint16(b[56:], 1) // e_phnum
	le.PutUint16(b[58:], 64)
	ph := b[ehsize:]
	le.PutUint32(ph[0:], 4) // PT_NOTE
	le.PutUint64(ph[8:], ehsize+phsize)
	le.PutUint64(ph[32:], uint64(note.Len()))
	le.PutUint64(ph[40:], uint64(note.Len()))
	le.PutUint64(ph[48:], 4)
	return append(b, note.Bytes()...)
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func xzed(t *testing.T, data []byte) []byte {
	t.Helper()
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("xz is not installed")
	}
	cmd := exec.Command("xz", "-c")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz: %v", err)
	}
	return out
}

func TestExtractVmlinux(t *testing.T) {
	pvh := fakeKernel("Xen", 18)
	// A decoy: the gzip magic followed by bytes that do not decompress,
	// as happens by chance in a real bzImage's setup code.
	decoy := []byte{0x1f, 0x8b, 0x08, 0xde, 0xad, 0xbe, 0xef}
	for _, tc := range []struct {
		name    string
		image   func(t *testing.T) []byte
		wantErr string
	}{
		{"gzip after a decoy", func(t *testing.T) []byte {
			return bytes.Join([][]byte{[]byte("setup code"), decoy, gzipped(t, pvh), []byte("trailer")}, nil)
		}, ""},
		{"xz", func(t *testing.T) []byte {
			return append([]byte("setup code"), xzed(t, pvh)...)
		}, ""},
		{"already an ELF", func(*testing.T) []byte { return pvh }, ""},
		{"ELF without a PVH note", func(t *testing.T) []byte {
			return append([]byte("setup"), gzipped(t, fakeKernel("GNU", 3))...)
		}, "no PVH entry note"},
		{"no payload", func(*testing.T) []byte { return []byte("just setup code") }, "no compressed payload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src, dst := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "vmlinux")
			if err := os.WriteFile(src, tc.image(t), 0o644); err != nil {
				t.Fatal(err)
			}
			err := extractVmlinux(src, dst)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("extractVmlinux() error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("extractVmlinux(): %v", err)
			}
			got, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, pvh) {
				t.Errorf("extracted %d bytes, want the %d-byte ELF", len(got), len(pvh))
			}
		})
	}
}

func FuzzIsPVHElf(f *testing.F) {
	f.Add(fakeKernel("Xen", 18))
	f.Add(fakeKernel("GNU", 3))
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		isPVHElf(data) // must not panic
		hasNote(data, binary.LittleEndian, "Xen", 18)
	})
}
