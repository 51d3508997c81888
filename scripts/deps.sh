#!/usr/bin/env bash
# Installs the Debian packages tcpstat's build and tests use, when missing:
# clang/llvm/libbpf-dev regenerate the BPF objects; iproute2 (ip, ss),
# net-tools (netstat) and bpftrace are the references the tests and
# benchmarks compare against; prometheus brings promtool, which checks
# serve's metrics; tmux is the real terminal the CLI's tests draw watch and
# top in; bash, zsh and fish load the completion scripts and groff renders
# the man pages in the CLI's tests; nodejs and npm bring DuckDB's Node
# package (installed under ~/.cache/tcpstat-duckdb, or $TCPSTAT_DUCKDB_DIR),
# the independent reader of replay's Parquet files; podman (with
# containers-common's default seccomp profile) and runc build and run the
# image in cmd/tcpstat's TestImage. Extra packages can be named as
# arguments (test/kernels/ci.sh adds what the kernel matrix needs).
# Idempotent; needs root to install.
set -euo pipefail

packages=(clang llvm libbpf-dev bpftool bpftrace iproute2 net-tools util-linux make prometheus tmux zsh fish groff-base libcap2-bin podman runc "$@")
# Node may come from elsewhere than Debian (its npm conflicts with Debian's).
command -v npm >/dev/null || packages+=(nodejs npm)

duckdb() {
	local dir="${TCPSTAT_DUCKDB_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tcpstat-duckdb}"
	[ -d "$dir/node_modules/@duckdb/node-api" ] && return 0
	echo "deps: installing @duckdb/node-api in $dir" >&2
	npm install --prefix "$dir" --no-audit --no-fund @duckdb/node-api >/dev/null
}
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	duckdb
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
duckdb
