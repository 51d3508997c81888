/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel types tcpstate.c reads, declared with
 * preserve_access_index so that libbpf-style CO-RE relocations adapt every
 * field offset to the running kernel's BTF. Only the fields read are listed;
 * each struct names the kernel header it mirrors.
 */
#ifndef TCPSTAT_KERNEL_H
#define TCPSTAT_KERNEL_H

/* include/uapi/asm-generic/int-ll64.h, and what libbpf's helper
 * declarations (bpf_helper_defs.h) use. */
typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef signed short __s16;
typedef unsigned int __u32;
typedef signed int __s32;
typedef unsigned long long __u64;
typedef signed long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

/* include/uapi/linux/bpf.h */
enum bpf_map_type {
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_LPM_TRIE = 11,
	BPF_MAP_TYPE_ARRAY_OF_MAPS = 12,
	BPF_MAP_TYPE_SK_STORAGE = 24,
	BPF_MAP_TYPE_RINGBUF = 27,
};
enum {
	BPF_ANY = 0,
};
enum {
	BPF_F_NO_PREALLOC = 1 << 0,
};
enum {
	BPF_SK_STORAGE_GET_F_CREATE = 1 << 0,
};
enum {
	BPF_RB_NO_WAKEUP = 1 << 0,
	BPF_RB_FORCE_WAKEUP = 1 << 1,
};
enum {
	BPF_RB_AVAIL_DATA = 0,
};

/* include/linux/socket.h, include/uapi/linux/in.h */
#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* include/uapi/asm-generic/errno*.h */
#define EPIPE 32
#define ECONNRESET 104
#define ETIMEDOUT 110
#define ECONNREFUSED 111

/* include/net/tcp_states.h */
enum {
	TCP_ESTABLISHED = 1,
	TCP_SYN_SENT,
	TCP_SYN_RECV,
	TCP_FIN_WAIT1,
	TCP_FIN_WAIT2,
	TCP_TIME_WAIT,
	TCP_CLOSE,
	TCP_CLOSE_WAIT,
	TCP_LAST_ACK,
	TCP_LISTEN,
	TCP_CLOSING,
};

/* include/net/sock.h: enum sock_flags. SOCK_DONE is set when the peer's
 * FIN has been received (tcp_fin). */
#define SOCK_DONE 1

/* include/uapi/linux/in6.h */
struct in6_addr {
	union {
		__u8 u6_addr8[16];
	} in6_u;
} __attribute__((preserve_access_index));

/* include/linux/ns_common.h */
struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

/* include/net/net_namespace.h */
struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} __attribute__((preserve_access_index)) possible_net_t;

/* include/linux/types.h */
typedef struct {
	__s64 counter;
} __attribute__((preserve_access_index)) atomic64_t;

/* include/net/sock.h: struct sock_common */
struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	atomic64_t skc_cookie;
	unsigned long skc_flags; /* 6.10+: sk_flags moved here */
} __attribute__((preserve_access_index));

/* include/net/sock.h: socket_lock_t */
typedef struct {
	int owned; /* a task holds the socket lock (lock_sock) */
} __attribute__((preserve_access_index)) socket_lock_t;

/* include/net/sock.h: struct sock */
struct sock {
	struct sock_common __sk_common;
	socket_lock_t sk_lock;
	int sk_err;
	__u16 sk_protocol;
} __attribute__((preserve_access_index));

/* struct sock before 6.10, when sk_flags was its own member. */
struct sock___sk_flags {
	unsigned long sk_flags;
} __attribute__((preserve_access_index));

/* include/net/inet_sock.h */
struct inet_sock {
	__be16 inet_sport; /* kept after close, unlike skc_num */
} __attribute__((preserve_access_index));

/* include/linux/tcp.h */
struct tcp_sock {
	int linger2; /* TCP_LINGER2: < 0 resets instead of entering timewait */
	__u32 srtt_us; /* smoothed rtt << 3, in microseconds */
	__u32 total_retrans;
	__u64 bytes_received;
	__u64 bytes_acked;
} __attribute__((preserve_access_index));

/* include/linux/net.h */
struct socket {
	struct sock *sk;
} __attribute__((preserve_access_index));

/* include/linux/fs.h */
struct file {
	void *private_data;
} __attribute__((preserve_access_index));

/* include/linux/fdtable.h */
struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

/* include/linux/sched.h */
struct task_struct {
	struct files_struct *files;
} __attribute__((preserve_access_index));

/* include/linux/bpf.h: the contexts of BPF iterator programs. */
struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

/* kernel/bpf/map_iter.c */
struct bpf_iter__bpf_map_elem {
	struct bpf_iter_meta *meta;
	void *key;
	void *value;
} __attribute__((preserve_access_index));

/* net/core/bpf_sk_storage.c */
struct bpf_iter__bpf_sk_storage_map {
	struct bpf_iter_meta *meta;
	struct sock *sk;
	void *value;
} __attribute__((preserve_access_index));

#endif /* TCPSTAT_KERNEL_H */
