package sockfds

// The BPF objects are committed: building tcpstat needs no clang. `make
// generate` rebuilds them with Debian's clang and libbpf-dev headers.
//go:generate go tool bpf2go -tags linux -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel,bpfeb -type sock_fd sockfds ../../bpf/sockfds.c -- -I../../bpf/headers
