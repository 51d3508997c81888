// Package bpfsmoke holds privileged tests that prove, on whatever kernel
// runs them, that the BPF features tcpstat is built on work from Go:
// kernel BTF with the TCP socket types, a ring buffer map, and a tp_btf
// program on sock:inet_sock_set_state that sees real loopback connections.
// In the kernel matrix (test/kernels) they tell a kernel that lacks a
// feature apart from a bug in tcpstat's own tracer.
package bpfsmoke
