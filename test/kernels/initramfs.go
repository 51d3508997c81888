package main

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
)

// cpioWriter writes the "newc" cpio format the kernel unpacks as an
// initramfs. It is uncompressed on purpose: every Debian kernel can read
// it, and decompressing under TCG would cost seconds per boot.
type cpioWriter struct {
	w     *bufio.Writer
	ino   uint32
	n     int64
	dirs  map[string]bool
	files map[string]bool
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriterSize(w, 1<<20), ino: 1, dirs: map[string]bool{}, files: map[string]bool{}}
}

func (c *cpioWriter) header(name string, mode uint32, size int64) error {
	c.ino++
	_, err := fmt.Fprintf(c.w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	if err != nil {
		return err
	}
	c.n += 110
	if err := c.write([]byte(name + "\x00")); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) write(b []byte) error {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return err
}

func (c *cpioWriter) pad() error {
	if r := c.n % 4; r != 0 {
		return c.write(make([]byte, 4-r))
	}
	return nil
}

// mkdirAll adds name's parent directories, then name, once each.
func (c *cpioWriter) mkdirAll(name string) error {
	if name == "." || name == "/" || name == "" || c.dirs[name] {
		return nil
	}
	if err := c.mkdirAll(path.Dir(name)); err != nil {
		return err
	}
	c.dirs[name] = true
	return c.header(name, 0o040755, 0)
}

// file adds a regular file with the given permission bits; a second file
// of the same name (a library two tools share) is left out.
func (c *cpioWriter) file(name string, perm uint32, data []byte) error {
	if c.files[name] {
		return nil
	}
	c.files[name] = true
	if err := c.mkdirAll(path.Dir(name)); err != nil {
		return err
	}
	if err := c.header(name, 0o100000|perm, int64(len(data))); err != nil {
		return err
	}
	if err := c.write(data); err != nil {
		return err
	}
	return c.pad()
}

// copyFile adds the host file src as name, keeping its permission bits.
func (c *cpioWriter) copyFile(name, src string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	return c.file(name, uint32(st.Mode().Perm()), data)
}

// copyTree adds the host directory src under name: directories, regular
// files and symbolic links (followed, so testdata links to shared files
// still work in the guest).
func (c *cpioWriter) copyTree(name, src string) error {
	var paths []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		dst := path.Join(name, filepath.ToSlash(rel))
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		switch {
		case st.IsDir():
			err = c.mkdirAll(dst)
		case st.Mode().IsRegular():
			err = c.copyFile(dst, p)
		}
		if err != nil {
			return fmt.Errorf("add %s: %w", p, err)
		}
	}
	return nil
}

// symlink adds a symbolic link name pointing at target.
func (c *cpioWriter) symlink(name, target string) error {
	if err := c.mkdirAll(path.Dir(name)); err != nil {
		return err
	}
	if err := c.header(name, 0o120777, int64(len(target))); err != nil {
		return err
	}
	if err := c.write([]byte(target)); err != nil {
		return err
	}
	return c.pad()
}

// close writes the trailer and flushes.
func (c *cpioWriter) close() error {
	if err := c.header("TRAILER!!!", 0, 0); err != nil {
		return err
	}
	return c.w.Flush()
}
