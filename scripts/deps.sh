#!/usr/bin/env bash
# Installs the Debian packages tcpstat's build and tests use, when missing:
# clang/llvm/libbpf-dev regenerate the BPF objects; iproute2 (ip, ss),
# net-tools (netstat) and bpftrace are the references the tests and
# benchmarks compare against; prometheus brings promtool, which checks
# serve's metrics; tmux is the real terminal the CLI's tests draw watch and
# top in; bash, zsh and fish load the completion scripts and groff renders
# the man pages in the CLI's tests. Extra packages can be named as
# arguments (test/kernels/ci.sh adds what the kernel matrix needs).
# Idempotent; needs root to install.
set -euo pipefail

packages=(clang llvm libbpf-dev bpftool bpftrace iproute2 net-tools util-linux make prometheus tmux zsh fish groff-base "$@")
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
