package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeModule builds an ELF relocatable file whose only content is a
// .modinfo section, which is all collectModules reads of a module.
func fakeModule(modinfo string) []byte {
	le := binary.LittleEndian
	shstrtab := "\x00.modinfo\x00.shstrtab\x00"
	const ehsize, shsize = 64, 64
	infoOff := ehsize
	strOff := infoOff + len(modinfo)
	shOff := (strOff + len(shstrtab) + 7) &^ 7
	b := make([]byte, shOff+3*shsize)
	copy(b, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	le.PutUint16(b[16:], 1) // ET_REL
	le.PutUint16(b[18:], 62)
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[40:], uint64(shOff))
	le.PutUint16(b[52:], ehsize)
	le.PutUint16(b[58:], shsize)
	le.PutUint16(b[60:], 3) // e_shnum
	le.PutUint16(b[62:], 2) // e_shstrndx
	copy(b[infoOff:], modinfo)
	copy(b[strOff:], shstrtab)
	section := func(i int, name, typ uint32, off, size int) {
		sh := b[shOff+i*shsize:]
		le.PutUint32(sh[0:], name)
		le.PutUint32(sh[4:], typ)
		le.PutUint64(sh[24:], uint64(off))
		le.PutUint64(sh[32:], uint64(size))
		le.PutUint64(sh[48:], 1)
	}
	section(1, 1, 1, infoOff, len(modinfo))  // .modinfo, SHT_PROGBITS
	section(2, 10, 3, strOff, len(shstrtab)) // .shstrtab, SHT_STRTAB
	return b
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"usr/lib/modules/7.3-amd64/kernel/drivers/net/veth.ko.xz":             "veth",
		"lib/modules/5.10.0-46-amd64/kernel/net/sched/sch_netem.ko":           "sch_netem",
		"lib/modules/6.1.0-56-amd64/kernel/net/netfilter/nf-conntrack.ko.zst": "nf_conntrack",
		"usr/lib/modules/7.3-amd64/vmlinuz":                                   "",
		"usr/share/doc/veth.ko":                                               "",
	} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCollectModules(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	files := map[string]string{}
	for name, info := range map[string]string{
		"sch_netem": "license=GPL\x00depends=\x00name=sch_netem\x00",
		"veth":      "depends=lib_a,lib-b\x00name=veth\x00",
		"lib_a":     "depends=lib_b\x00",
		"lib_b":     "depends=inet_diag\x00name=lib_b\x00",
	} {
		p := filepath.Join(src, name+".ko")
		if err := os.WriteFile(p, fakeModule(info), 0o644); err != nil {
			t.Fatal(err)
		}
		files[name] = p
	}
	builtin := map[string]bool{"inet_diag": true}
	missing, err := collectModules(files, builtin, []string{"veth", "sch-netem", "inet_diag", "not_packaged"}, dst)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"not_packaged"}, missing); diff != "" {
		t.Errorf("missing (-want +got):\n%s", diff)
	}
	order, err := os.ReadFile(filepath.Join(dst, "order"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("lib_b\nlib_a\nveth\nsch_netem\n", string(order)); diff != "" {
		t.Errorf("load order (-want +got):\n%s", diff)
	}

	// The modules go into a second archive after the common one.
	var common bytes.Buffer
	c := newCPIOWriter(&common)
	if err := c.file("init", 0o755, []byte("#!/bin/sh\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	commonPath, out := filepath.Join(t.TempDir(), "common.cpio"), filepath.Join(t.TempDir(), "kernel.cpio")
	if err := os.WriteFile(commonPath, common.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeKernelInitramfs(commonPath, dst, out); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, common.Bytes()) {
		t.Fatal("kernel initramfs does not start with the common archive")
	}
	var names []string
	for _, e := range readCPIO(t, data[common.Len():]) {
		names = append(names, e.Name)
	}
	want := []string{"lib", "lib/modules", "lib/modules/tcpstat", "lib/modules/tcpstat/order",
		"lib/modules/tcpstat/lib_b.ko", "lib/modules/tcpstat/lib_a.ko", "lib/modules/tcpstat/veth.ko", "lib/modules/tcpstat/sch_netem.ko"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("module archive (-want +got):\n%s", diff)
	}
}

func TestCollectModulesMissingDependency(t *testing.T) {
	src := filepath.Join(t.TempDir(), "veth.ko")
	if err := os.WriteFile(src, fakeModule("depends=gone\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := collectModules(map[string]string{"veth": src}, nil, []string{"veth"}, t.TempDir())
	if want := "module dependency gone is not packaged"; err == nil || err.Error() != want {
		t.Fatalf("collectModules() error = %v, want %q", err, want)
	}
}
