#!/usr/bin/env bash
# The kernel matrix for CI: .ci/run calls `bash test/kernels/ci.sh` (as root).
# It installs the host tools the runner needs when they are missing, runs
# `make test-kernels`, and prints the matrix and the output of every failed
# test into the CI log. Kernels are cached under /var/tmp/tcpstat-kernels:
# a fresh machine first downloads about 470 MB from Debian's archive
# (kernel and module packages; measured 30-38 s with the five in parallel).
set -euo pipefail
cd "$(dirname "$0")/../.."

# qemu-system-x86: the VMs; busybox-static: the guest's /init and tools;
# xz-utils, zstd: Debian compresses its kernels with xz (5.10, 6.1) or zstd.
./scripts/deps.sh qemu-system-x86 busybox-static xz-utils zstd

# Every package with tests, as `make test-kernels` runs them. A kernel
# takes 8.5 min alone (cmd/tcpstat and internal/record 2 min each), more
# with two VMs on two cores: hence the runner's limits (20 min a kernel,
# 10 min a package).
status=0
make test-kernels KERNELS_FLAGS="${KERNELS_FLAGS:-}" || status=$?
out=artifacts/kernels
if [[ -f $out/matrix.md ]]; then
	cat "$out/matrix.md"
fi
for f in "$out"/*/failures.txt; do
	[[ -f $f ]] || continue
	echo "::: $f"
	cat "$f"
done
exit "$status"
