//go:build ignore
// SPDX-License-Identifier: GPL-2.0

/*
 * tcpstate: every TCP state transition, with the process that owns the
 * socket, through one ring buffer to user space.
 *
 * Two copies of the transition program are attached to the same tracepoint.
 * The kernel will not run a tracing program on a CPU where it is already
 * running: a softirq transition that interrupts a run in process context is
 * skipped for that program and counted in its recursion_misses. Each copy
 * has its own guard, so the second copy takes exactly the transitions the
 * first one missed (see dedupe below) and none is lost.
 */

#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define TASK_COMM_LEN 16

enum event_kind {
	KIND_TRANSITION = 1,
	KIND_ACCEPT = 2,
};

enum event_flag {
	FLAG_OWNER_KNOWN = 1 << 0,
	FLAG_DWELL_KNOWN = 1 << 1,
	FLAG_INFERRED = 1 << 2,	   /* hand-off to a timewait mini-socket */
	FLAG_TW_FIN_WAIT2 = 1 << 3, /* ... made before the peer's FIN arrived */
	FLAG_SYNTHETIC_COOKIE = 1 << 4,
};

/* Why a socket left the connection; mirrors tracer.Reason. */
enum close_reason {
	REASON_NONE = 0,
	REASON_TIMEWAIT,
	REASON_DONE,
	REASON_RESET,
	REASON_REFUSED,
	REASON_TIMEOUT,
	REASON_ABORT,
	REASON_ERROR,
};

/* One report to user space; bpf2go generates its Go twin (tcpstateEvent). */
struct event {
	__u64 ts_ns; /* CLOCK_BOOTTIME */
	__u64 cookie;
	__u64 dwell_ns; /* time in the old state, if FLAG_DWELL_KNOWN */
	__u64 owner_cgroup;
	__u64 bytes_received; /* counters: set when leaving the connection */
	__u64 bytes_acked;
	__u32 total_retrans;
	__u32 srtt_us;
	__u32 netns;
	__u32 owner_pid;
	__u32 owner_uid;
	__u32 task_pid;
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 err; /* sk_err at close */
	__u8 kind;
	__u8 oldstate;
	__u8 newstate;
	__u8 flags;
	__u8 reason;
	__u8 pad[3];
	char owner_comm[TASK_COMM_LEN];
	char task_comm[TASK_COMM_LEN];
};

/* Keeps struct event in the object's BTF for bpf2go -type event. */
const struct event *unused_event __attribute__((unused));

/* What we keep per live socket between its transitions. */
struct sock_state {
	__u64 cookie;
	__u64 entered_ns; /* when the current state began; 0 = not seen */
	__u64 owner_cgroup;
	__u32 owner_pid;
	__u32 owner_uid;
	char owner_comm[TASK_COMM_LEN];
	__u8 owner_known;
	__u8 synthetic;
	__u8 birth_pending; /* a passive open's LISTEN → SYN_RECV, not yet reported */
	__u8 pad[1];
	__u32 birth_task_pid; /* who was running at that birth */
	__u64 birth_ns;
	char birth_task_comm[TASK_COMM_LEN];
};

/* A transition the first copy handled and the second copy has not yet
 * passed over, on this CPU. */
struct handled {
	__u64 sk;
	__u64 cookie;
	__u32 states;
	__u32 seq; /* insertion order: a full set overwrites its oldest */
};

/* Contexts nest at most process, softirq: two entries are ever pending at
 * once. The rest absorb entries whose second run was itself skipped. */
#define HANDLED_MAX 8

struct handled_set {
	__u32 seq;
	__u32 pad;
	struct handled slot[HANDLED_MAX];
};

enum counter {
	COUNTER_RINGBUF_FULL = 0, /* events lost: ring buffer reservation failed */
	COUNTER_RECOVERED,	  /* transitions the first copy missed, taken by the second */
	COUNTER_STATE_FULL,	  /* sockets map full: owner and dwell unknown */
	COUNTER_SYNTHETIC,	  /* not a count: the sequence of synthetic cookies */
	COUNTER_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 23); /* user space sets the size */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 17); /* user space sets the size */
	__type(key, __u64);	      /* struct sock address, only while the socket lives */
	__type(value, struct sock_state);
} sockets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct handled_set);
} handled SEC(".maps");

/* Set by user space before load. */
const volatile __u16 filter_family = 0; /* AF_INET, AF_INET6 or 0 for both */
const volatile __u16 filter_port = 0;	/* either end; 0 for any */
/* bpf_get_socket_cookie() is callable from tracing programs since 5.12. */
const volatile bool have_cookie_helper = true;
/* Wake the consumer each time this much more is waiting: it also polls,
 * and a wakeup (an IPI) per event would cost more than the event. */
const volatile __u64 wakeup_bytes = 1;

static __always_inline void count(enum counter c)
{
	__u32 key = c;
	__u64 *v = bpf_map_lookup_elem(&counters, &key);

	if (v)
		*v += 1; /* per-CPU: no atomics needed */
}

static __always_inline bool wanted(__u16 family, __u16 sport, __u16 dport)
{
	if (filter_family && family != filter_family)
		return false;
	if (filter_port && sport != filter_port && dport != filter_port)
		return false;
	return true;
}

static __always_inline unsigned long sock_flags(struct sock *sk)
{
	struct sock___sk_flags *old = (void *)sk;

	if (bpf_core_field_exists(old->sk_flags))
		return BPF_CORE_READ(old, sk_flags);
	return BPF_CORE_READ(sk, __sk_common.skc_flags);
}

/* An id for a socket whose real cookie tracing programs cannot get. It
 * sets the top bit, which real cookies (a counter from 1) never reach, then
 * the CPU and a per-CPU sequence: unique while tcpstat runs. */
static __always_inline __u64 synthetic_cookie(void)
{
	__u32 key = COUNTER_SYNTHETIC;
	__u64 *seq = bpf_map_lookup_elem(&counters, &key);
	__u64 n = 0;

	if (seq)
		n = ++*seq;
	return (1ULL << 63) | ((__u64)(bpf_get_smp_processor_id() & 0x7fff) << 48) | (n & ((1ULL << 48) - 1));
}

/* A record's share of the ring: the event and its 8-byte header. */
#define RECORD_BYTES ((sizeof(struct event) + 8 + 7) / 8 * 8)

/*
 * Wakes the consumer only when this record takes the waiting data past a
 * multiple of wakeup_bytes, not on every record above it: while a slow
 * consumer catches up, each forced wakeup would otherwise send an IPI.
 * Records reserved at once on two CPUs may step over a multiple together;
 * the consumer's poll picks those up.
 */
static __always_inline void submit(struct event *e)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (avail >= RECORD_BYTES && avail / wakeup_bytes != (avail - RECORD_BYTES) / wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

static __always_inline void set_owner(struct sock_state *st)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (st->owner_known && st->owner_pid == pid)
		return; /* the usual case: nothing to read again */
	st->owner_pid = pid;
	st->owner_uid = (__u32)bpf_get_current_uid_gid();
	st->owner_cgroup = bpf_get_current_cgroup_id();
	bpf_get_current_comm(&st->owner_comm, sizeof(st->owner_comm));
	st->owner_known = 1;
}

static __always_inline void fill_addrs(struct event *e, struct sock *sk, __u16 family)
{
	if (family == AF_INET) {
		__builtin_memcpy(e->saddr, &sk->__sk_common.skc_rcv_saddr, 4);
		__builtin_memcpy(e->daddr, &sk->__sk_common.skc_daddr, 4);
	} else {
		__builtin_memcpy(e->saddr, &sk->__sk_common.skc_v6_rcv_saddr, 16);
		__builtin_memcpy(e->daddr, &sk->__sk_common.skc_v6_daddr, 16);
	}
}

static __always_inline void fill_owner(struct event *e, struct sock_state *st)
{
	if (!st->owner_known)
		return;
	e->flags |= FLAG_OWNER_KNOWN;
	e->owner_pid = st->owner_pid;
	e->owner_uid = st->owner_uid;
	e->owner_cgroup = st->owner_cgroup;
	__builtin_memcpy(e->owner_comm, st->owner_comm, sizeof(e->owner_comm));
}

/*
 * How the socket leaves the connection. The tracepoint fires after the
 * socket was unhashed, so the timewait hand-off (tcp_time_wait) is told
 * apart by elimination: from FIN_WAIT2 or CLOSING, every other way to CLOSE
 * sets sk_err (reset, timeout) or follows a negative TCP_LINGER2. A timewait
 * table overflow or an abort on data after close look like a hand-off here;
 * user space confirms or expires the inferred TIME_WAIT from sock_diag.
 */
static __always_inline __u8 close_reason(struct sock *sk, int oldstate, bool owned, __u8 *flags)
{
	int err = sk->sk_err;

	switch (err) {
	case 0:
		break;
	case ECONNREFUSED:
		return REASON_REFUSED;
	case ECONNRESET:
	case EPIPE:
		return REASON_RESET;
	case ETIMEDOUT:
		return REASON_TIMEOUT;
	default:
		return REASON_ERROR;
	}
	if (oldstate == TCP_FIN_WAIT2 || oldstate == TCP_CLOSING) {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);

		if (tp && tp->linger2 >= 0) {
			*flags |= FLAG_INFERRED;
			if (!(sock_flags(sk) & (1UL << SOCK_DONE)))
				*flags |= FLAG_TW_FIN_WAIT2;
			return REASON_TIMEWAIT;
		}
	}
	/* Without an error, LAST_ACK and LISTEN end in order. From the other
	 * states, a system call aborted it (close() with unread data, SO_LINGER
	 * 0, disconnect); softirq leaves them only on an error. */
	if (oldstate == TCP_LAST_ACK || oldstate == TCP_LISTEN || !owned)
		return REASON_DONE;
	return REASON_ABORT;
}

/* The local port, given skc_num. skc_num is cleared when the socket leaves
 * the bind table, just before the CLOSE transition is reported; inet_sport
 * is kept. */
static __always_inline __u16 local_port(struct sock *sk, __u16 num)
{
	if (num)
		return num;
	return bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
}

static __always_inline void fill_counters(struct event *e, struct sock *sk)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);

	if (!tp)
		return;
	e->bytes_received = tp->bytes_received;
	e->bytes_acked = tp->bytes_acked;
	e->total_retrans = tp->total_retrans;
	e->srtt_us = tp->srtt_us >> 3;
}

/* Reports one transition. A deferred birth carries the task that was
 * running when it happened, kept in st; others the current task. */
static __always_inline void emit(struct sock *sk, struct sock_state *st, __u16 family, __u16 sport, __u16 dport,
				 __u64 ts, int oldstate, int newstate, __u64 dwell, __u8 flags, __u8 reason, bool birth)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = KIND_TRANSITION;
	e->ts_ns = ts;
	e->cookie = st->cookie;
	e->dwell_ns = dwell;
	e->netns = sk->__sk_common.skc_net.net->ns.inum;
	e->family = family;
	e->sport = sport;
	e->dport = dport;
	e->oldstate = oldstate;
	e->newstate = (flags & FLAG_INFERRED) ? TCP_TIME_WAIT : newstate;
	e->reason = reason;
	e->flags = flags | (st->synthetic ? FLAG_SYNTHETIC_COOKIE : 0);
	if (newstate == TCP_CLOSE) {
		e->err = sk->sk_err;
		fill_counters(e, sk);
	}
	fill_addrs(e, sk, family);
	if (birth) {
		e->task_pid = st->birth_task_pid;
		__builtin_memcpy(e->task_comm, st->birth_task_comm, sizeof(e->task_comm));
	} else {
		fill_owner(e, st);
		e->task_pid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(&e->task_comm, sizeof(e->task_comm));
	}
	submit(e);
}

static __always_inline void transition(struct sock *sk, int oldstate, int newstate)
{
	__u16 family = sk->__sk_common.skc_family;
	__u64 now = bpf_ktime_get_boot_ns();
	__u64 key = (__u64)sk;
	struct sock_state zero = {}, *st;
	bool owned = sk->sk_lock.owned;
	bool birth;

	if (family != AF_INET && family != AF_INET6)
		return;

	/* A socket's first transition starts its life here: forget whatever
	 * an earlier socket at the same address left behind. */
	birth = oldstate == TCP_CLOSE || (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV);
	st = birth ? NULL : bpf_map_lookup_elem(&sockets, &key);
	if (!st) {
		if (bpf_map_update_elem(&sockets, &key, &zero, BPF_ANY) == 0)
			st = bpf_map_lookup_elem(&sockets, &key);
		if (!st) {
			count(COUNTER_STATE_FULL);
			st = &zero;
		}
	}
	if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV && st != &zero) {
		/* The new child still holds its listener's copy here: its own
		 * cookie and its peer's address are set after this tracepoint
		 * (inet_csk_clone_lock; 6.1 and 6.12 show the listener's cookie,
		 * 5.10 to 6.12 no peer). Its next transition follows in the same
		 * softirq and reports this one too. */
		st->birth_pending = 1;
		st->birth_ns = st->entered_ns = now;
		st->birth_task_pid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(&st->birth_task_comm, sizeof(st->birth_task_comm));
		return;
	}
	if (!st->cookie) {
		if (have_cookie_helper) {
			st->cookie = bpf_get_socket_cookie(sk);
		} else {
			st->cookie = sk->__sk_common.skc_cookie.counter;
			if (!st->cookie) {
				st->cookie = synthetic_cookie();
				st->synthetic = 1;
			}
		}
	}
	/* Only a task holding the socket lock acts on the socket from a system
	 * call; softirq and timers never own it, whoever is current. */
	if (owned)
		set_owner(st);

	__u16 sport = local_port(sk, sk->__sk_common.skc_num);
	__u16 dport = bpf_ntohs(sk->__sk_common.skc_dport);
	__u8 flags = 0, reason = REASON_NONE;
	__u64 dwell = 0;

	if (st->entered_ns) {
		dwell = now - st->entered_ns;
		flags |= FLAG_DWELL_KNOWN;
	}
	st->entered_ns = now;
	if (newstate == TCP_CLOSE)
		reason = close_reason(sk, oldstate, owned, &flags);

	if (wanted(family, sport, dport)) {
		if (st->birth_pending)
			emit(sk, st, family, sport, dport, st->birth_ns, TCP_LISTEN, TCP_SYN_RECV, 0, 0, REASON_NONE, true);
		emit(sk, st, family, sport, dport, now, oldstate, newstate, dwell, flags, reason, false);
	}
	st->birth_pending = 0;
	if (newstate == TCP_CLOSE)
		bpf_map_delete_elem(&sockets, &key);
}

/*
 * Exactly one copy handles each transition. The tracepoint runs the first
 * copy then the second, with preemption off, so only an interrupt (softirq)
 * comes between them. The first copy handles what it runs for and adds it
 * to this CPU's handled set; the second copy takes such an entry out and
 * passes over the transition, and handles every transition without one:
 * those the first copy's guard skipped because they interrupted it. A set,
 * not a slot per nesting level, because a softirq transition may fall
 * between the two copies' runs for a process-context one, and must neither
 * overwrite its entry nor make the second copy handle it twice. The
 * signature includes the raw cookie field so that a reused socket address
 * cannot match an old entry.
 */
static __always_inline int dedupe(struct sock *sk, int oldstate, int newstate, bool second)
{
	__u32 zero = 0;
	struct handled_set *set = bpf_map_lookup_elem(&handled, &zero);
	__u64 addr = (__u64)sk;
	__u32 states = (oldstate << 8) | newstate;
	int i;

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if (!set) /* cannot happen: per-CPU arrays are preallocated */
		return 0;
	if (second) {
		__u64 cookie = sk->__sk_common.skc_cookie.counter;

		for (i = 0; i < HANDLED_MAX; i++) {
			struct handled *h = &set->slot[i];

			if (h->sk == addr && h->cookie == cookie && h->states == states) {
				h->sk = 0;
				return 0;
			}
		}
		count(COUNTER_RECOVERED);
		transition(sk, oldstate, newstate);
		return 0;
	}
	transition(sk, oldstate, newstate);

	/* A free slot, else the oldest: an entry the second copy never took
	 * because its own guard skipped that transition. */
	__u32 victim = 0, age = 0;

	for (i = 0; i < HANDLED_MAX; i++) {
		struct handled *h = &set->slot[i];

		if (!h->sk) {
			victim = i;
			break;
		}
		if (set->seq - h->seq >= age) {
			age = set->seq - h->seq;
			victim = i;
		}
	}
	if (victim < HANDLED_MAX) {
		struct handled *h = &set->slot[victim];

		h->sk = 0; /* an interrupt must not match it half written */
		h->cookie = sk->__sk_common.skc_cookie.counter; /* may be new */
		h->states = states;
		h->seq = ++set->seq;
		h->sk = addr;
	}
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(set_state_first, struct sock *sk, int oldstate, int newstate)
{
	return dedupe(sk, oldstate, newstate, false);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(set_state_second, struct sock *sk, int oldstate, int newstate)
{
	return dedupe(sk, oldstate, newstate, true);
}

/* include/trace/events/syscalls.h: sys_exit_* records. */
struct syscall_exit {
	__u64 common;
	__s64 syscall_nr;
	__s64 ret;
};

/* accept() and accept4() return a new socket: its owner is the caller. The
 * socket is found through the returned descriptor. */
static __always_inline int accepted(__s64 fd)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds, *file;
	struct socket *sock;
	struct sock *sk;

	if (fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;

	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u16 sport = local_port(sk, BPF_CORE_READ(sk, __sk_common.skc_num));
	__u16 dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	__u64 now = bpf_ktime_get_boot_ns();
	__u64 key = (__u64)sk;
	struct sock_state zero = {}, *st;

	if (family != AF_INET && family != AF_INET6)
		return 0;
	st = bpf_map_lookup_elem(&sockets, &key);
	if (!st) {
		/* Created before tcpstat started. */
		if (bpf_map_update_elem(&sockets, &key, &zero, BPF_ANY) == 0)
			st = bpf_map_lookup_elem(&sockets, &key);
		if (!st) {
			count(COUNTER_STATE_FULL);
			return 0;
		}
	}
	if (!st->cookie) {
		st->cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
		if (!st->cookie && !have_cookie_helper) {
			st->cookie = synthetic_cookie();
			st->synthetic = 1;
		}
	}
	set_owner(st);
	/* Not yet given a cookie, and this program type cannot make one: the
	 * next transition will. */
	if (!st->cookie || !wanted(family, sport, dport))
		return 0;

	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = KIND_ACCEPT;
	e->ts_ns = now;
	e->cookie = st->cookie;
	if (st->entered_ns) {
		e->dwell_ns = now - st->entered_ns; /* time in the accept queue */
		e->flags |= FLAG_DWELL_KNOWN;
	}
	e->flags |= st->synthetic ? FLAG_SYNTHETIC_COOKIE : 0;
	e->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	e->family = family;
	e->sport = sport;
	e->dport = dport;
	e->oldstate = e->newstate = BPF_CORE_READ(sk, __sk_common.skc_state);
	if (family == AF_INET) {
		BPF_CORE_READ_INTO((__u32 *)e->saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)e->daddr, sk, __sk_common.skc_daddr);
	} else {
		BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
	fill_owner(e, st);
	e->task_pid = e->owner_pid;
	__builtin_memcpy(e->task_comm, e->owner_comm, sizeof(e->task_comm));
	submit(e);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int accept4_exit(struct syscall_exit *ctx)
{
	return accepted(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int accept_exit(struct syscall_exit *ctx)
{
	return accepted(ctx->ret);
}
