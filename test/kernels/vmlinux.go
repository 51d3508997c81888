package main

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// A bzImage holds the real kernel as a compressed payload behind a small
// decompressor. Booting the ELF inside it through its PVH entry note saves
// the 1.5-6 s the decompressor takes under TCG on every boot.

// compression is a payload format a bzImage may use, found by its magic.
type compression struct {
	name  string
	magic []byte
	tool  []string // a decompressor reading stdin, writing stdout
}

var compressions = []compression{
	{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, []string{"xz", "-dc"}},
	{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}, []string{"zstd", "-dcq"}},
	{"gzip", []byte{0x1f, 0x8b, 0x08}, []string{"gzip", "-dc"}},
	{"lz4", []byte{0x02, 0x21, 0x4c, 0x18}, []string{"lz4", "-dcq"}},
}

// extractVmlinux finds the compressed ELF in the bzImage at src and writes
// it to dst. Every magic occurrence is tried in order because the same
// bytes can appear by chance before the real payload; the first candidate
// that decompresses to an ELF with a PVH entry note wins.
func extractVmlinux(src, dst string) error {
	img, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read kernel image: %w", err)
	}
	if isPVHElf(img) == nil {
		return os.WriteFile(dst, img, 0o644)
	}
	var tried []string
	for _, c := range compressions {
		for off := bytes.Index(img, c.magic); off >= 0; {
			if _, err := exec.LookPath(c.tool[0]); err != nil {
				return fmt.Errorf("kernel image is %s-compressed but %s is not installed", c.name, c.tool[0])
			}
			out := decompressPrefix(c, img[off:])
			err := isPVHElf(out)
			if err == nil {
				return os.WriteFile(dst, out, 0o644)
			}
			tried = append(tried, fmt.Sprintf("%s at %d: %v", c.name, off, err))
			next := bytes.Index(img[off+1:], c.magic)
			if next < 0 {
				break
			}
			off += 1 + next
		}
	}
	if len(tried) == 0 {
		return fmt.Errorf("no compressed payload in %s", filepath.Base(src))
	}
	return fmt.Errorf("no bootable ELF in %s (tried %v)", filepath.Base(src), tried)
}

// decompressPrefix decompresses data that may carry trailing bytes after
// the stream; decompressors then complain, but the output is complete,
// so their exit status is not trusted either way and the ELF is checked.
func decompressPrefix(c compression, data []byte) []byte {
	cmd := exec.Command(c.tool[0], c.tool[1:]...)
	cmd.Stdin = bytes.NewReader(data)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = io.Discard
	_ = cmd.Run()
	return out.Bytes()
}

// isPVHElf reports why data is not an x86-64 ELF kernel with a Xen
// PHYS32_ENTRY note, the entry QEMU's -kernel uses for an ELF image.
func isPVHElf(data []byte) error {
	if !bytes.HasPrefix(data, []byte(elf.ELFMAG)) {
		return errors.New("not an ELF file")
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("parse ELF: %w", err)
	}
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("ELF for %v, want x86-64", f.Machine)
	}
	const xenElfnotePhys32Entry = 18
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(p.Open())
		if err != nil {
			return fmt.Errorf("read ELF notes: %w", err)
		}
		if hasNote(notes, f.ByteOrder, "Xen", xenElfnotePhys32Entry) {
			return nil
		}
	}
	return errors.New("ELF has no PVH entry note")
}

// hasNote walks an ELF note segment (namesz, descsz, type, name, desc,
// each padded to 4 bytes) looking for the note called name of type typ.
func hasNote(notes []byte, bo interface{ Uint32([]byte) uint32 }, name string, typ uint32) bool {
	align := func(n uint32) uint64 { return (uint64(n) + 3) &^ 3 }
	for len(notes) >= 12 {
		namesz, descsz, t := bo.Uint32(notes), bo.Uint32(notes[4:]), bo.Uint32(notes[8:])
		end := 12 + align(namesz) + align(descsz)
		if end > uint64(len(notes)) {
			return false
		}
		n := notes[12 : 12+namesz]
		if t == typ && string(bytes.TrimRight(n, "\x00")) == name {
			return true
		}
		notes = notes[end:]
	}
	return false
}
