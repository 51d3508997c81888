package tracer

// The BPF objects are committed: building tcpstat needs no clang. `make
// generate` rebuilds them with Debian's clang and libbpf-dev headers.
//go:generate go tool bpf2go -tags linux -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel,bpfeb -type event -type event_kind -type event_flag -type owner_source -type close_reason -type counter -type kept_socket -type filter_op -type filter_end -type filter_insn -type filter_key tcpstate ../../bpf/tcpstate.c -- -I../../bpf/headers
