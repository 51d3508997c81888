//go:build ignore
// SPDX-License-Identifier: GPL-2.0

/*
 * tcpsocks: every TCP socket of the reader's network namespace, listeners,
 * connections, TIME_WAIT and request sockets, through the kernel's tcp
 * iterator (Linux 5.9+): one fixed record per socket where sock_diag builds
 * a netlink message of attributes. Measured against sock_diag for issue 13
 * (internal/tcpiter, docs/performance.md).
 */

#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

/* The kernel types read here beyond kernel.h's; the ___tcpsocks flavour
 * keeps them apart from kernel.h's declarations of the same structs. */

/* include/linux/fs.h */
struct inode___tcpsocks {
	unsigned long i_ino;
} __attribute__((preserve_access_index));

struct file___tcpsocks {
	struct inode___tcpsocks *f_inode;
} __attribute__((preserve_access_index));

/* include/linux/net.h */
struct socket___tcpsocks {
	struct file___tcpsocks *file;
} __attribute__((preserve_access_index));

/* include/net/sock.h */
struct sock___tcpsocks {
	struct socket___tcpsocks *sk_socket;
	__u32 sk_ack_backlog;
	__u32 sk_max_ack_backlog;
} __attribute__((preserve_access_index));

/* include/linux/tcp.h */
struct tcp_sock___tcpsocks {
	__u32 rcv_nxt;
	__u32 copied_seq;
	__u32 write_seq;
	__u32 snd_una;
} __attribute__((preserve_access_index));

/* include/linux/bpf.h, net/ipv4/tcp_ipv4.c */
struct bpf_iter_meta___tcpsocks {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct bpf_iter__tcp {
	struct bpf_iter_meta___tcpsocks *meta;
	struct sock_common *sk_common;
	unsigned int uid;
} __attribute__((preserve_access_index));

#define TCP_NEW_SYN_RECV 12

/* The record the iterator writes: read by user space through bpf2go -type. */
struct tcp_socket {
	__u64 cookie;
	__u64 inode;   /* 0 for TIME_WAIT and request sockets, as sock_diag */
	__u8 saddr[16]; /* IPv4 in the first four bytes */
	__u8 daddr[16];
	__u16 sport;   /* host order */
	__be16 dport;  /* network order, as the kernel keeps it */
	__u8 family;
	__u8 state;
	__u16 pad;
	__u32 uid;
	__u32 rx_queue;
	__u32 tx_queue;
	__u32 pad2;
};

const struct tcp_socket *unused_tcp_socket __attribute__((unused));

SEC("iter/tcp")
int tcp_sockets(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct tcp_socket r = {};

	if (!skc)
		return 0;
	/* The cookie as sock_diag or any earlier caller assigned it: 0 if none
	 * has yet. bpf_get_socket_cookie() would assign one, but iterators may
	 * call it only from Linux 5.12. */
	r.cookie = BPF_CORE_READ(skc, skc_cookie.counter);
	r.family = BPF_CORE_READ(skc, skc_family);
	r.state = BPF_CORE_READ(skc, skc_state);
	r.sport = BPF_CORE_READ(skc, skc_num);
	r.dport = BPF_CORE_READ(skc, skc_dport);
	r.uid = ctx->uid;
	if (r.family == AF_INET6) {
		BPF_CORE_READ_INTO(&r.saddr, skc, skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&r.daddr, skc, skc_v6_daddr);
	} else {
		BPF_CORE_READ_INTO((__u32 *)r.saddr, skc, skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)r.daddr, skc, skc_daddr);
	}
	if (r.state != TCP_TIME_WAIT && r.state != TCP_NEW_SYN_RECV) {
		struct sock___tcpsocks *sk = (void *)skc;
		struct tcp_sock___tcpsocks *tp = (void *)skc;

		r.inode = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
		if (r.state == TCP_LISTEN) {
			r.rx_queue = BPF_CORE_READ(sk, sk_ack_backlog);
			r.tx_queue = BPF_CORE_READ(sk, sk_max_ack_backlog);
		} else {
			__u32 rcv_nxt = BPF_CORE_READ(tp, rcv_nxt);
			__u32 copied = BPF_CORE_READ(tp, copied_seq);
			__u32 write = BPF_CORE_READ(tp, write_seq);
			__u32 una = BPF_CORE_READ(tp, snd_una);

			r.rx_queue = (__s32)(rcv_nxt - copied) > 0 ? rcv_nxt - copied : 0;
			r.tx_queue = write - una;
		}
	}
	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}
