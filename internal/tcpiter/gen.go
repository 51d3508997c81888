package tcpiter

// The BPF objects are committed: building tcpstat needs no clang. `make
// generate` rebuilds them with Debian's clang and libbpf-dev headers.
//go:generate go tool bpf2go -tags linux -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel,bpfeb -type tcp_socket tcpsocks ../../bpf/tcpsocks.c -- -I../../bpf/headers
