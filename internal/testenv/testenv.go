// Package testenv holds what tests of several packages share about their
// machine: what it lacks, and how to close a connection the same way on a
// busy one. The kernel matrix (test/kernels) runs every test in a busybox
// guest with no apt-get, so nothing scripts/deps.sh installs can be had
// there: tests that need such a tool, or the repository's files beyond
// testdata/, skip in that guest with Marker in their message, and the
// matrix counts any other skip as a failure. On a Debian machine (CI) they
// run, and a missing tool fails.
package testenv

import (
	"os/exec"
	"testing"
)

// Marker is what a skip in the kernel matrix's guest says.
const Marker = "(a minimal guest)"

// MinimalGuest reports a machine without apt-get: the kernel matrix's guest.
func MinimalGuest() bool {
	_, err := exec.LookPath("apt-get")
	return err != nil
}

// SkipInMinimalGuest skips t in the kernel matrix's guest, saying what the
// guest lacks.
func SkipInMinimalGuest(t testing.TB, lacks string) {
	t.Helper()
	if MinimalGuest() {
		t.Skipf("%s %s", lacks, Marker)
	}
}
