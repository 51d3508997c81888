package main

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Debian builds much of networking as modules (veth, for one), and the
// guest has no module tree: the modules the tests need are taken out of
// the kernel's packages, with what they depend on, and loaded by /init.

// moduleSuffixes are the file names a module can have in Debian packages.
var moduleSuffixes = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// moduleName returns the module a packaged file holds ("veth" for
// usr/lib/modules/7.3-amd64/kernel/drivers/net/veth.ko.xz), or "".
func moduleName(p string) string {
	if !strings.Contains(p, "lib/modules/") {
		return ""
	}
	base := path.Base(p)
	for _, s := range moduleSuffixes {
		if strings.HasSuffix(base, s) {
			return canonicalModule(strings.TrimSuffix(base, s))
		}
	}
	return ""
}

// canonicalModule: the kernel treats '-' and '_' in module names alike.
func canonicalModule(name string) string { return strings.ReplaceAll(name, "-", "_") }

// moduleContents decompresses a packaged module file.
func moduleContents(file string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var tool []string
	switch {
	case strings.HasSuffix(file, ".xz"):
		tool = []string{"xz", "-dc"}
	case strings.HasSuffix(file, ".zst"):
		tool = []string{"zstd", "-dcq"}
	case strings.HasSuffix(file, ".gz"):
		tool = []string{"gzip", "-dc"}
	default:
		return data, nil
	}
	cmd := exec.Command(tool[0], tool[1:]...)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", filepath.Base(file), err)
	}
	return out, nil
}

// moduleDepends reads the "depends=" entry of a module's .modinfo section.
func moduleDepends(ko []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, fmt.Errorf("parse module: %w", err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("module has no .modinfo section")
	}
	info, err := io.ReadAll(sec.Open())
	if err != nil {
		return nil, fmt.Errorf("read .modinfo: %w", err)
	}
	for _, kv := range bytes.Split(info, []byte{0}) {
		if deps, ok := strings.CutPrefix(string(kv), "depends="); ok {
			var names []string
			for _, d := range strings.Split(deps, ",") {
				if d != "" {
					names = append(names, canonicalModule(d))
				}
			}
			return names, nil
		}
	}
	return nil, nil
}

// collectModules copies the wanted modules and everything they depend on
// from the packaged files (module name → file) into dir, uncompressed,
// and writes dir/order: one name per line, dependencies first. Modules
// built into the kernel need nothing; wanted modules neither packaged nor
// built in are returned.
func collectModules(files map[string]string, builtin map[string]bool, want []string, dir string) (missing []string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create module directory: %w", err)
	}
	var order []string
	seen := map[string]bool{}
	var visit func(name string, wanted bool) error
	visit = func(name string, wanted bool) error {
		if seen[name] || builtin[name] {
			return nil
		}
		seen[name] = true
		file, ok := files[name]
		if !ok {
			if wanted {
				missing = append(missing, name)
				return nil
			}
			return fmt.Errorf("module dependency %s is not packaged", name)
		}
		ko, err := moduleContents(file)
		if err != nil {
			return err
		}
		deps, err := moduleDepends(ko)
		if err != nil {
			return fmt.Errorf("module %s: %w", name, err)
		}
		for _, d := range deps {
			if err := visit(d, false); err != nil {
				return err
			}
		}
		order = append(order, name)
		return os.WriteFile(filepath.Join(dir, name+".ko"), ko, 0o644)
	}
	for _, name := range want {
		if err := visit(canonicalModule(name), true); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "order"), []byte(strings.Join(order, "\n")+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write module order: %w", err)
	}
	return missing, nil
}

// hasModules reports whether a cache entry was made for (at least) want.
func hasModules(made, want []string) bool {
	for _, w := range want {
		if !slices.Contains(made, canonicalModule(w)) {
			return false
		}
	}
	return true
}

// writeKernelInitramfs writes the common initramfs followed by a second
// archive with the kernel's modules (the kernel unpacks concatenated
// archives in turn).
func writeKernelInitramfs(common, moduleDir, dst string) error {
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("create initramfs: %w", err)
	}
	err = func() error {
		in, err := os.Open(common)
		if err != nil {
			return err
		}
		defer in.Close()
		if _, err := io.Copy(out, in); err != nil {
			return err
		}
		order, err := os.ReadFile(filepath.Join(moduleDir, "order"))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		c := newCPIOWriter(out)
		if err := c.copyFile("lib/modules/tcpstat/order", filepath.Join(moduleDir, "order")); err != nil {
			return err
		}
		for _, name := range strings.Fields(string(order)) {
			if err := c.copyFile("lib/modules/tcpstat/"+name+".ko", filepath.Join(moduleDir, name+".ko")); err != nil {
				return err
			}
		}
		return c.close()
	}()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write kernel initramfs: %w", err)
	}
	return nil
}
