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

# Left out of CI's matrix until they are made to fit the guest (issue notes
# of 2026-11-30): cmd/tcpstat's tests outgrew the guest's time this wave
# (record, replay and the views end to end: over 5 minutes per kernel under
# emulation), internal/record and internal/replay are file formats with no
# kernel in them and take minutes of emulated CPU, and livetable's
# TestPeerClose and TestPolling see the peer's
# TIME_WAIT end differently on 6.1 under emulation. `make test-kernels`
# still runs everything.
pkgs=$(go list ./... | grep -Ev '/(cmd/tcpstat|internal/record|internal/replay)$' | sed 's|^github.com/tcpstat/tcpstat|.|' | paste -sd, -)
status=0
make test-kernels KERNELS_FLAGS="${KERNELS_FLAGS:--pkgs $pkgs -skip 'TestPeerClose|TestPolling'}" || status=$?
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
