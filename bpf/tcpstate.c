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
 *
 * Per-socket state lives in the socket's local storage where the kernel
 * lets tracing programs have it (5.11+), and goes with the socket whatever
 * was lost; on older kernels in an LRU hash keyed by the socket's address,
 * deleted at its CLOSE and swept of sockets whose CLOSE was never seen.
 */

#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define TASK_COMM_LEN 16

/* The enums below are read by user space through bpf2go -type: their
 * names and values are the contract. */

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

/* How the program learned a socket's owner. */
enum owner_source {
	OWNER_NONE = 0,
	OWNER_SYSCALL = 1, /* the task held the socket lock at a transition */
	OWNER_ACCEPT = 2,  /* accept() returned the socket to the task */
};

/* Why a socket left the connection. */
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

/* What a filter instruction tests (internal/filter compiles them). */
enum filter_op {
	FILTER_FAMILY = 1,	/* family == value */
	FILTER_LOCAL_PORT = 2,	/* lo <= sport <= hi */
	FILTER_REMOTE_PORT = 3, /* lo <= dport <= hi */
	FILTER_LOCAL_SET = 4,	/* saddr in address set `set` (0 to 63) */
	FILTER_REMOTE_SET = 5,	/* daddr in address set `set` */
	FILTER_NETNS = 6,	/* netns inode == value */
	FILTER_CGROUP = 7,	/* the owner is in filter cgroup `slot` or below it */
};

/* Jump targets that end a filter program: bits of the set of reached
 * instructions too, which keeps the program's walk free of branches. */
enum filter_end {
	FILTER_ACCEPT = 62,
	FILTER_REJECT = 63,
};

/* A socket's first transition, held back to be reported with its next
 * one (birth_ns and birth_task_* say when and who). */
enum pending {
	PENDING_NONE = 0,
	PENDING_BIRTH = 1,   /* a passive open's LISTEN → SYN_RECV */
	PENDING_CONNECT = 2, /* CLOSE → SYN_SENT the filter could not judge (port 0) */
};

/* A socket's standing with the filter, decided once. */
enum verdict {
	VERDICT_UNDECIDED = 0,
	VERDICT_PASS = 1,
	VERDICT_DROP = 2,
};

enum counter {
	COUNTER_RINGBUF_FULL = 0, /* events lost: ring buffer reservation failed */
	COUNTER_RECOVERED,	  /* transitions the first copy missed, taken by the second */
	COUNTER_STATE_FULL,	  /* no per-socket state could be had: owner and dwell unknown */
	COUNTER_SYNTHETIC,	  /* not a count: the sequence of synthetic cookies */
	COUNTER_SWEPT,		  /* sockets map entries whose CLOSE was never seen, swept */
	COUNTER_FORCED_SKIP,	  /* tests: runs the first copy passed over on purpose */
	COUNTER_FORCED_LOST,	  /* tests: moves to CLOSE dropped on purpose */
	COUNTER_RECORDS,	  /* not a count: records this CPU sent, for wakeups */
	COUNTER_IN_STORAGE,	  /* sockets whose state went to socket storage: the sockets map was full */
	COUNTER_MAX,
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
	__u8 kind;  /* enum event_kind */
	__u8 oldstate;
	__u8 newstate;
	__u8 flags;	   /* enum event_flag */
	__u8 reason;	   /* enum close_reason */
	__u8 owner_source; /* enum owner_source */
	__u8 pad[2];
	char owner_comm[TASK_COMM_LEN];
	char task_comm[TASK_COMM_LEN];
};

/* One instruction of the filter program: test, then go to yes or no (always
 * forward), until FILTER_ACCEPT or FILTER_REJECT. */
struct filter_insn {
	__u8 op; /* enum filter_op */
	__u8 yes;
	__u8 no;
	__u8 slot;
	__u16 lo;
	__u16 hi;
	__u32 set;
	__u64 value;
};

#define FILTER_MAX_INSNS 62
#define FILTER_MAX_CGROUPS 8

/* A prefix in the LPM trie of the filter's address sets: the family is
 * matched whole, then prefixlen - 32 bits of the address. Its value is the
 * sets (bit n: set n) that hold it or a shorter prefix containing it, so
 * that one lookup of an address, which finds the longest prefix, tells
 * every set the address is in. */
struct filter_key {
	__u32 prefixlen;
	__u32 family;
	__u8 addr[16];
};

/* Keep these types in the object's BTF for bpf2go -type. */
const struct event *unused_event __attribute__((unused));
const enum event_kind *unused_kind __attribute__((unused));
const enum event_flag *unused_flag __attribute__((unused));
const enum owner_source *unused_owner_source __attribute__((unused));
const enum close_reason *unused_reason __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));
const enum filter_op *unused_filter_op __attribute__((unused));
const enum filter_end *unused_filter_end __attribute__((unused));
const struct filter_insn *unused_filter_insn __attribute__((unused));
const struct filter_key *unused_filter_key __attribute__((unused));

/* What we keep per live socket between its transitions. */
struct sock_state {
	__u64 cookie;
	__u64 entered_ns; /* when the current state began; 0 = not seen */
	__u64 owner_cgroup;
	__u32 owner_pid;
	__u32 owner_uid;
	char owner_comm[TASK_COMM_LEN];
	__u8 owner_source; /* enum owner_source; OWNER_NONE: no owner known */
	__u8 synthetic;
	__u8 birth_pending; /* enum pending: a first transition not yet reported */
	__u8 verdict;	    /* enum verdict: the filter's, decided once */
	__u32 birth_task_pid; /* who was running at that birth */
	__u64 birth_ns;
	char birth_task_comm[TASK_COMM_LEN];
	/* Bit i: the owner is in the filter's cgroup i (or below it). */
	__u8 owner_in_cgroup;
	__u8 sent_undecided; /* events went out before the verdict */
	__u8 in_storage;     /* this state is in socket storage */
	/* A sockets map entry only handing an accepted socket's owner over to
	 * its state in socket storage (or, if it has none, to become it). */
	__u8 handoff;
	__u8 pad[2];
	/* (old << 8 | new) of the transition the first copy of the program
	 * handled and the second has not yet passed over; 0 if none. */
	__u16 handled;
};

/* The socket's addresses and ports, read once per run. */
struct endpoint {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 netns;
	__u16 family;
	__u16 sport;
	__u16 dport;
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
	__u32 second_running; /* tests only: see test_skip_first_one_in */
	struct handled slot[HANDLED_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 23); /* user space sets the size */
} events SEC(".maps");

/* With ring_per_cpu: a ring buffer per CPU, indexed by CPU, in place of
 * events. User space makes them and merges them in order. */
struct cpu_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 12); /* user space sets the size */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1); /* user space sets it: the possible CPUs */
	__type(key, __u32);
	__array(values, struct cpu_ring);
} cpu_rings SEC(".maps");

/* Without socket storage: every live socket's state. With it, a hash
 * allocated as it fills (user space makes it one): every live socket's
 * state while it has room (state_hash_first), and the hand-off of an
 * accepted socket's owner from the accept programs (classic tracepoints,
 * which cannot reach socket storage) to a state in storage. Keyed by the
 * struct sock address, only while the socket lives. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 17); /* user space sets the size */
	__type(key, __u64);
	__type(value, struct sock_state);
} sockets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_state);
} socket_storage SEC(".maps");

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

/* Benchmark only (exp_staged): where an event is built when it is not
 * reserved in the ring buffer. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct event);
} staging SEC(".maps");

/* The filter program: filter_len instructions from 0. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FILTER_MAX_INSNS);
	__type(key, __u32);
	__type(value, struct filter_insn);
} filter_prog SEC(".maps");

/* The filter's address sets. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1); /* user space sets the size */
	__type(key, struct filter_key);
	__type(value, __u64);
} filter_prefixes SEC(".maps");

/* Set by user space before load. */
/* Instructions in filter_prog; 0: no filter, and no cost. */
const volatile __u32 filter_len = 0;
/* The filter cannot judge a socket before its local port is known (0 at
 * CLOSE → SYN_SENT), or before its owner is. */
const volatile bool filter_needs_port = false;
const volatile bool filter_needs_owner = false;
/* The program tests address sets. */
const volatile bool filter_has_sets = false;
/* The cgroups FILTER_CGROUP asks about: their ids and tree levels (the
 * root is level 0). */
const volatile __u32 filter_cgroups = 0;
const volatile __u64 filter_cgroup_id[FILTER_MAX_CGROUPS] = {};
const volatile __u32 filter_cgroup_level[FILTER_MAX_CGROUPS] = {};
/* bpf_get_socket_cookie() is callable from tracing programs since 5.12. */
const volatile bool have_cookie_helper = true;
/* bpf_sk_storage_get() is callable from tracing programs since 5.11. */
const volatile bool use_sk_storage = true;
/* With socket storage: each socket's state goes in the sockets map while it
 * has room, in socket storage only past that. An entry costs less than
 * making a socket's storage (its allocation and memory cgroup charge) and
 * freeing it. Needs real cookies: an entry's cookie tells a socket from an
 * earlier one at its address whose close was lost. */
const volatile bool state_hash_first = false;
/* Each CPU wakes the consumer once per this many records (a power of two):
 * it also polls, and a wakeup (an IPI) per event would cost more than the
 * event. User space sets it to a sixteenth of the ring per CPU. */
const volatile __u64 wakeup_records = 1;
/* The same in bytes, for exp_query_wakeup. */
const volatile __u64 wakeup_bytes = 1;
/* Each CPU reserves in its own ring buffer (cpu_rings), not in events:
 * one ring's lock, taken by every CPU, costs more with each CPU that
 * sends. User space restores the order across rings. */
const volatile bool ring_per_cpu = false;
/* Tests only: 1 in n runs of the first copy pass the transition to the
 * second copy as a recursion would (only while no run of the second copy is
 * in progress on the CPU: the real guard cannot skip the first copy then);
 * 1 in n moves to CLOSE are dropped, the losses that would leave per-socket
 * state behind. */
const volatile __u32 test_skip_first_one_in = 0;
const volatile __u32 test_lose_one_in = 0;
/* Tests only: 1 in n runs of the second copy do not see this CPU's handled
 * set, as when the task moved to another CPU between the two copies. */
const volatile __u32 test_second_elsewhere_one_in = 0;
/* Benchmark only (Options.Experiment), each dropping a guarantee: no
 * task_comm; a single copy of the transition program, without the handled
 * set; no events at all; no per-socket state; no owner in events; events
 * built in a per-CPU buffer and never sent (no ring buffer reservation). */
const volatile bool exp_no_task_comm = false;
const volatile bool exp_one_copy = false;
const volatile bool exp_no_events = false;
const volatile bool exp_no_state = false;
const volatile bool exp_query_wakeup = false;
const volatile bool exp_no_owner = false;
const volatile bool exp_staged = false;
/* Tests only: 1 in n events is sent with kind 0, which user space rejects. */
const volatile __u32 test_corrupt_one_in = 0;
/* A sockets map entry whose socket is in CLOSE and has not moved for this
 * long lost its CLOSE transition: the sweep deletes it. */
const volatile __u64 sweep_after_ns = 1000000000;

static __always_inline void count(enum counter c)
{
	__u32 key = c;
	__u64 *v = bpf_map_lookup_elem(&counters, &key);

	/* Per-CPU, yet atomic: where tracepoints run preemptible, another
	 * program may run on this CPU between a read and its write. The
	 * wakeup count and the synthetic cookies' sequence stay plain: one
	 * only paces wakeups, the other needs a fetching add (5.12+) and
	 * serves kernels before 5.12, which keep preemption off. */
	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline bool one_in(__u32 n)
{
	return n && bpf_get_prandom_u32() % n == 0;
}

/* The filter's address sets addr (of family) is in, as a bit set. An IPv4
 * prefix also matches a v4-mapped IPv6 address, as in ss. */
static __always_inline __u64 sets_of(const __u8 *addr, __u16 family)
{
	struct filter_key k = {};
	__u64 *v, sets = 0;

	if (family == AF_INET) {
		k.prefixlen = 32 + 32;
		k.family = AF_INET;
		__builtin_memcpy(k.addr, addr, 4);
		v = bpf_map_lookup_elem(&filter_prefixes, &k);
		return v ? *v : 0;
	}
	k.prefixlen = 32 + 128;
	k.family = AF_INET6;
	__builtin_memcpy(k.addr, addr, 16);
	v = bpf_map_lookup_elem(&filter_prefixes, &k);
	if (v)
		sets = *v;
	if (((__u32 *)addr)[0] || ((__u32 *)addr)[1] || ((__u32 *)addr)[2] != bpf_htonl(0xffff))
		return sets;
	__builtin_memset(&k, 0, sizeof(k));
	k.prefixlen = 32 + 32;
	k.family = AF_INET;
	__builtin_memcpy(k.addr, addr + 12, 4);
	v = bpf_map_lookup_elem(&filter_prefixes, &k);
	return v ? sets | *v : sets;
}

/*
 * Runs the filter program. A test about what is not yet known (the local
 * port, the owner) may go both ways: the program's instructions are taken
 * in order, each reached by a jump from one taken before (jumps only go
 * forward), and the verdict is whichever ends can be reached: only
 * FILTER_ACCEPT passes, only FILTER_REJECT drops, both is undecided. Not
 * inlined: its stack frame is its own, not added to its callers'.
 */
static __noinline enum verdict run_filter(const struct endpoint *ep, const struct sock_state *st, bool port_unknown,
					  bool owner_unknown)
{
	__u64 reached = 1; /* instruction 0; bits 62 and 63: the ends */
	__u64 local_sets = 0, remote_sets = 0;

	if (filter_has_sets) {
		local_sets = sets_of(ep->saddr, ep->family);
		remote_sets = sets_of(ep->daddr, ep->family);
	}

#pragma unroll
	for (__u32 pc = 0; pc < FILTER_MAX_INSNS; pc++) {
		struct filter_insn *in;
		__u32 key = pc;
		__u64 ok = 0, unknown = 0;

		if (pc >= filter_len)
			break;
		if (!(reached & (1ULL << pc)))
			continue;
		in = bpf_map_lookup_elem(&filter_prog, &key);
		if (!in)
			return VERDICT_PASS; /* cannot happen: user space checked the program */
		switch (in->op) {
		case FILTER_FAMILY:
			ok = ep->family == in->value;
			break;
		case FILTER_LOCAL_PORT:
			ok = ep->sport >= in->lo && ep->sport <= in->hi;
			unknown = port_unknown;
			break;
		case FILTER_REMOTE_PORT:
			ok = ep->dport >= in->lo && ep->dport <= in->hi;
			break;
		case FILTER_LOCAL_SET:
			ok = local_sets >> (in->set & 63) & 1;
			break;
		case FILTER_REMOTE_SET:
			ok = remote_sets >> (in->set & 63) & 1;
			break;
		case FILTER_NETNS:
			ok = ep->netns == in->value;
			break;
		case FILTER_CGROUP:
			ok = st->owner_source != OWNER_NONE && (st->owner_in_cgroup >> (in->slot & 7) & 1);
			unknown = owner_unknown;
			break;
		}
		/* Jumps go forward (user space checked), to an instruction or an end. */
		reached |= ((ok | unknown) & 1) << (in->yes & 63);
		reached |= (((ok ^ 1) | unknown) & 1) << (in->no & 63);
	}
	bool accept = reached >> FILTER_ACCEPT & 1, reject = reached >> FILTER_REJECT & 1;

	if (reject && !accept)
		return VERDICT_DROP;
	if (accept && reject)
		return VERDICT_UNDECIDED;
	return VERDICT_PASS;
}

/*
 * Keep or drop: whether this socket's transitions are reported. The one
 * place where a socket is judged, once, as soon as the filter can tell;
 * the verdict stays with its state, so its events all go or none does.
 * While the filter cannot tell (it asks about a local port still 0, or an
 * owner not yet known), its events go and user space holds them; if it is
 * then dropped, the deciding event goes too, telling user space to let go.
 * Its state is kept either way, so that a socket that becomes wanted has
 * its owner. Without a filter (filter_len 0 is a constant) all of this is
 * left out of the program.
 */
static __always_inline bool keep(const struct endpoint *ep, struct sock_state *st)
{
	enum verdict v;

	if (!filter_len)
		return true;
	if (st->verdict == VERDICT_PASS)
		return true;
	if (st->verdict == VERDICT_DROP)
		return false;
	v = run_filter(ep, st, filter_needs_port && !ep->sport, filter_needs_owner && st->owner_source == OWNER_NONE);
	if (v == VERDICT_UNDECIDED) {
		st->sent_undecided = 1;
		return true;
	}
	st->verdict = v;
	return v == VERDICT_PASS || st->sent_undecided;
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

/* The socket's cookie, given once per socket: the kernel's where this
 * program may ask for it (tracing programs, 5.12+), else the one the kernel
 * already gave (given: skc_cookie, 0 if none yet), else (before 5.12) a
 * synthetic one. It stays 0 when only asking could give it: the socket's
 * next transition will. */
static __always_inline void set_cookie(struct sock_state *st, struct sock *sk, __u64 given, bool may_ask)
{
	if (st->cookie)
		return;
	if (may_ask && have_cookie_helper) {
		st->cookie = bpf_get_socket_cookie(sk);
		return;
	}
	st->cookie = given;
	if (!st->cookie && !have_cookie_helper) {
		st->cookie = synthetic_cookie();
		st->synthetic = 1;
	}
}

/* A new, zeroed sockets map entry for sk; NULL when the map is full. */
static __always_inline struct sock_state *new_map_state(struct sock *sk)
{
	struct sock_state zero = {};
	__u64 key = (__u64)sk;

	if (bpf_map_update_elem(&sockets, &key, &zero, BPF_ANY))
		return NULL;
	return bpf_map_lookup_elem(&sockets, &key);
}

/* The sockets map entry of sk; a new one if create (a birth forgets
 * whatever an earlier socket at the same address left behind). With
 * state_hash_first, an entry whose cookie is not the socket's (cookie) was
 * left by an earlier socket at the address whose close was lost: it goes. */
static __always_inline struct sock_state *map_state(struct sock *sk, bool fresh, bool create, __u64 cookie)
{
	struct sock_state *st = NULL;
	__u64 key = (__u64)sk;

	if (!fresh) {
		st = bpf_map_lookup_elem(&sockets, &key);
		if (st && state_hash_first && st->cookie && st->cookie != cookie) {
			bpf_map_delete_elem(&sockets, &key);
			st = NULL;
		}
	}
	if (st || !create)
		return st;
	st = new_map_state(sk);
	if (!st)
		count(COUNTER_STATE_FULL);
	return st;
}

/* The socket storage of sk, made if missing and create. */
static __always_inline struct sock_state *stored_state(struct sock *sk, bool fresh, bool create)
{
	struct sock_state *st;

	st = bpf_sk_storage_get(&socket_storage, sk, 0, create ? BPF_SK_STORAGE_GET_F_CREATE : 0);
	if (!st) {
		if (create)
			count(COUNTER_STATE_FULL);
		return NULL;
	}
	if (fresh)
		__builtin_memset(st, 0, sizeof(*st));
	if (!st->in_storage) {
		st->in_storage = 1;
		if (state_hash_first)
			count(COUNTER_IN_STORAGE);
	}
	return st;
}

/* The state of sk, made if missing and create; NULL if none can be had
 * (counted when create). With state_hash_first it is looked for in the
 * sockets map, then in storage, and made in the map, else in storage.
 * Only tracing programs may call it: classic ones cannot reach socket
 * storage, and use map_state. */
static __always_inline struct sock_state *state_of(struct sock *sk, bool fresh, bool create)
{
	struct sock_state *st, *handoff = NULL;

	if (exp_no_state)
		return NULL;
	if (!use_sk_storage)
		return map_state(sk, fresh, create, 0);
	if (!state_hash_first)
		return stored_state(sk, fresh, create);
	if (!fresh) {
		st = map_state(sk, false, false, sk->__sk_common.skc_cookie.counter);
		if (st && !st->handoff)
			return st;
		handoff = st;
		/* Its owner, if handed over, is taken next (take_accepted_owner). */
		st = stored_state(sk, false, false);
		if (st)
			return st;
		if (handoff) {
			/* Accepted before any of its transitions was seen. */
			handoff->handoff = handoff->in_storage = 0;
			return handoff;
		}
		if (!create)
			return NULL;
	}
	st = new_map_state(sk);
	if (st)
		return st;
	return stored_state(sk, fresh, true);
}

/* The socket leaves the connection: its sockets map entry goes now
 * (storage goes with the socket). */
static __always_inline void forget(struct sock *sk)
{
	__u64 key = (__u64)sk;

	if (!use_sk_storage || state_hash_first)
		bpf_map_delete_elem(&sockets, &key);
}

/*
 * A passive open whose state is in socket storage waits in the sockets map
 * from ESTABLISHED until its first transition after accept(), which takes
 * the owner the accept program left there. Any entry found is taken, so
 * none outlives that transition. One whose state is in the sockets map
 * (in_map) needs no hand-off: the accept program finds its state there.
 */
static __always_inline void queue_for_accept(struct sock *sk, struct sock_state *st, bool in_map)
{
	__u64 key = (__u64)sk;

	if (!use_sk_storage || in_map)
		return;
	/* Full (a hash allocated as it fills): the owner is learned at the
	 * socket's next system call instead. */
	st->handoff = 1;
	if (bpf_map_update_elem(&sockets, &key, st, BPF_ANY))
		count(COUNTER_STATE_FULL);
	st->handoff = 0;
}

static __always_inline void take_accepted_owner(struct sock *sk, struct sock_state *st, bool in_map)
{
	__u64 key = (__u64)sk;
	struct sock_state *q;

	if (!use_sk_storage || in_map || st->owner_source != OWNER_NONE)
		return;
	q = bpf_map_lookup_elem(&sockets, &key);
	if (!q)
		return;
	if (q->owner_source != OWNER_NONE && q->cookie == st->cookie) {
		st->owner_source = q->owner_source;
		st->owner_pid = q->owner_pid;
		st->owner_uid = q->owner_uid;
		st->owner_cgroup = q->owner_cgroup;
		__builtin_memcpy(st->owner_comm, q->owner_comm, sizeof(st->owner_comm));
		st->owner_in_cgroup = q->owner_in_cgroup;
		/* The accept program may have judged it. */
		if (q->verdict != VERDICT_UNDECIDED)
			st->verdict = q->verdict;
		st->sent_undecided |= q->sent_undecided;
	}
	bpf_map_delete_elem(&sockets, &key);
}

/* A record's share of the ring: the event and its 8-byte header. */
#define RECORD_BYTES ((sizeof(struct event) + 8 + 7) / 8 * 8)

/*
 * Wakes the consumer once per wakeup_records records of this CPU, not per
 * record. Asking the ring how much is waiting (bpf_ringbuf_query) would
 * read the consumer's position, a cache line the consumer writes from
 * another CPU: this per-CPU count costs nothing shared. Records a quiet CPU
 * sends without a wakeup wait for the consumer's poll.
 */
static __always_inline void submit(struct event *e)
{
	__u32 key = COUNTER_RECORDS;
	__u64 *n = bpf_map_lookup_elem(&counters, &key);
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (exp_staged)
		return;
	if (exp_query_wakeup) {
		__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);

		if (avail >= RECORD_BYTES && avail / wakeup_bytes != (avail - RECORD_BYTES) / wakeup_bytes)
			flags = BPF_RB_FORCE_WAKEUP;
	} else if (n && (++*n & (wakeup_records - 1)) == 0) {
		flags = BPF_RB_FORCE_WAKEUP;
	}
	if (one_in(test_corrupt_one_in))
		e->kind = 0;
	bpf_ringbuf_submit(e, flags);
}

static __always_inline void set_owner(struct sock_state *st, enum owner_source source)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (st->owner_source != OWNER_NONE && st->owner_pid == pid)
		return; /* the usual case: nothing to read again */
	st->owner_pid = pid;
	st->owner_uid = (__u32)bpf_get_current_uid_gid();
	st->owner_cgroup = bpf_get_current_cgroup_id();
	bpf_get_current_comm(&st->owner_comm, sizeof(st->owner_comm));
	st->owner_source = source;
	st->owner_in_cgroup = 0;
	for (int i = 0; i < FILTER_MAX_CGROUPS; i++)
		if (i < filter_cgroups &&
		    bpf_get_current_ancestor_cgroup_id(filter_cgroup_level[i]) == filter_cgroup_id[i])
			st->owner_in_cgroup |= 1 << i;
}

/* The endpoint of a socket the tracepoint hands over (direct reads). */
static __always_inline bool read_endpoint(struct endpoint *ep, struct sock *sk)
{
	ep->family = sk->__sk_common.skc_family;
	if (ep->family == AF_INET) {
		__builtin_memcpy(ep->saddr, &sk->__sk_common.skc_rcv_saddr, 4);
		__builtin_memcpy(ep->daddr, &sk->__sk_common.skc_daddr, 4);
	} else if (ep->family == AF_INET6) {
		__builtin_memcpy(ep->saddr, &sk->__sk_common.skc_v6_rcv_saddr, 16);
		__builtin_memcpy(ep->daddr, &sk->__sk_common.skc_v6_daddr, 16);
	} else {
		return false;
	}
	ep->netns = sk->__sk_common.skc_net.net->ns.inum;
	ep->sport = sk->__sk_common.skc_num;
	/* skc_num is cleared when the socket leaves the bind table, just
	 * before the CLOSE transition is reported; inet_sport is kept. */
	if (!ep->sport)
		ep->sport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	ep->dport = bpf_ntohs(sk->__sk_common.skc_dport);
	return true;
}

/* Room for the kernel's struct sock_common (136 bytes from 5.10 to 6.18). */
#define SOCK_COMMON_MAX 192

/* The same, for a socket found through a file: from a copy of its
 * sock_common made with one probed read, not one read per field. */
static __always_inline bool copy_endpoint(struct endpoint *ep, const struct sock_common *skc, struct sock *sk)
{
	ep->family = skc->skc_family;
	if (ep->family == AF_INET) {
		__builtin_memcpy(ep->saddr, &skc->skc_rcv_saddr, 4);
		__builtin_memcpy(ep->daddr, &skc->skc_daddr, 4);
	} else if (ep->family == AF_INET6) {
		__builtin_memcpy(ep->saddr, &skc->skc_v6_rcv_saddr, 16);
		__builtin_memcpy(ep->daddr, &skc->skc_v6_daddr, 16);
	} else {
		return false;
	}
	ep->netns = BPF_CORE_READ(skc->skc_net.net, ns.inum);
	ep->sport = skc->skc_num;
	if (!ep->sport)
		ep->sport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	ep->dport = bpf_ntohs(skc->skc_dport);
	return true;
}

/* Room for an event in this CPU's ring, or the one ring. */
static __always_inline struct event *reserve_event(void)
{
	if (ring_per_cpu) {
		__u32 cpu = bpf_get_smp_processor_id();
		void *ring = bpf_map_lookup_elem(&cpu_rings, &cpu);

		return ring ? bpf_ringbuf_reserve(ring, sizeof(struct event), 0) : NULL;
	}
	return bpf_ringbuf_reserve(&events, sizeof(struct event), 0);
}

/* Reserves an event and fills what every event carries: the socket, its
 * identity and its owner. NULL (counted) when the ring buffer is full. */
static __always_inline struct event *new_event(const struct endpoint *ep, struct sock_state *st, __u8 kind, __u64 ts)
{
	struct event *e;

	if (exp_no_events)
		return NULL;
	if (exp_staged) {
		__u32 zero = 0;

		e = bpf_map_lookup_elem(&staging, &zero);
	} else {
		e = reserve_event();
	}
	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->ts_ns = ts;
	e->cookie = st->cookie;
	e->netns = ep->netns;
	e->family = ep->family;
	e->sport = ep->sport;
	e->dport = ep->dport;
	__builtin_memcpy(e->saddr, ep->saddr, sizeof(e->saddr));
	__builtin_memcpy(e->daddr, ep->daddr, sizeof(e->daddr));
	if (st->synthetic)
		e->flags |= FLAG_SYNTHETIC_COOKIE;
	if (st->owner_source != OWNER_NONE && !exp_no_owner) {
		e->flags |= FLAG_OWNER_KNOWN;
		e->owner_source = st->owner_source;
		e->owner_pid = st->owner_pid;
		e->owner_uid = st->owner_uid;
		e->owner_cgroup = st->owner_cgroup;
		__builtin_memcpy(e->owner_comm, st->owner_comm, sizeof(e->owner_comm));
	}
	return e;
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

/* Reports a passive open's birth, deferred to its next transition: it
 * carries the task that was running when it happened, kept in st. */
static __always_inline void emit_birth(const struct endpoint *ep, struct sock_state *st)
{
	struct event *e = new_event(ep, st, KIND_TRANSITION, st->birth_ns);

	if (!e)
		return;
	e->flags &= ~FLAG_OWNER_KNOWN; /* nobody owned it then */
	e->owner_source = OWNER_NONE;
	e->owner_pid = e->owner_uid = 0;
	e->owner_cgroup = 0;
	__builtin_memset(e->owner_comm, 0, sizeof(e->owner_comm));
	e->oldstate = TCP_LISTEN;
	e->newstate = TCP_SYN_RECV;
	e->task_pid = st->birth_task_pid;
	__builtin_memcpy(e->task_comm, st->birth_task_comm, sizeof(e->task_comm));
	submit(e);
}

/* Reports an active open's CLOSE → SYN_SENT, deferred by the filter to
 * its next transition: as it was then, local port 0, with the task that
 * called connect(). */
static __always_inline void emit_connect(const struct endpoint *ep, struct sock_state *st)
{
	struct event *e = new_event(ep, st, KIND_TRANSITION, st->birth_ns);

	if (!e)
		return;
	e->sport = 0;
	e->oldstate = TCP_CLOSE;
	e->newstate = TCP_SYN_SENT;
	e->task_pid = st->birth_task_pid;
	__builtin_memcpy(e->task_comm, st->birth_task_comm, sizeof(e->task_comm));
	submit(e);
}

static __always_inline void emit(struct sock *sk, const struct endpoint *ep, struct sock_state *st, __u64 ts,
				 int oldstate, int newstate, __u64 dwell, __u8 flags, __u8 reason)
{
	struct event *e = new_event(ep, st, KIND_TRANSITION, ts);

	if (!e)
		return;
	e->dwell_ns = dwell;
	e->oldstate = oldstate;
	e->newstate = (flags & FLAG_INFERRED) ? TCP_TIME_WAIT : newstate;
	e->reason = reason;
	e->flags |= flags;
	if (newstate == TCP_CLOSE) {
		e->err = sk->sk_err;
		fill_counters(e, sk);
	}
	e->task_pid = bpf_get_current_pid_tgid() >> 32;
	if (!exp_no_task_comm)
		bpf_get_current_comm(&e->task_comm, sizeof(e->task_comm));
	submit(e);
}

/* Reports one transition; returns the socket's state it used, NULL if it
 * had none (dropped before, or none could be had). */
static __always_inline struct sock_state *transition(struct sock *sk, int oldstate, int newstate)
{
	/* A socket's first transition starts its life here. */
	bool birth = oldstate == TCP_CLOSE || (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV);
	bool owned = sk->sk_lock.owned;
	struct sock_state scratch = {}, *st;
	struct endpoint ep;
	__u64 now, dwell = 0;
	__u8 flags = 0, reason = REASON_NONE;
	bool pass;

	if (newstate == TCP_CLOSE && one_in(test_lose_one_in)) {
		count(COUNTER_FORCED_LOST);
		return NULL;
	}
	if (!read_endpoint(&ep, sk))
		return NULL;
	now = bpf_ktime_get_boot_ns();
	st = state_of(sk, birth, true);
	if (!st)
		st = &scratch;
	if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV) {
		if (st == &scratch)
			return NULL;
		/* The new child still holds its listener's copy here: its own
		 * cookie and its peer's address are set after this tracepoint
		 * (inet_csk_clone_lock; 6.1 and 6.12 show the listener's cookie,
		 * 5.10 to 6.12 no peer). Its next transition follows in the same
		 * softirq and reports this one too. */
		st->birth_pending = PENDING_BIRTH;
		st->birth_ns = st->entered_ns = now;
		st->birth_task_pid = bpf_get_current_pid_tgid() >> 32;
		if (!exp_no_task_comm)
			bpf_get_current_comm(&st->birth_task_comm, sizeof(st->birth_task_comm));
		return st;
	}
	set_cookie(st, sk, sk->__sk_common.skc_cookie.counter, true);
	take_accepted_owner(sk, st, state_hash_first && st != &scratch && !st->in_storage);
	/* Only a task holding the socket lock acts on the socket from a system
	 * call; softirq and timers never own it, whoever is current. */
	if (owned)
		set_owner(st, OWNER_SYSCALL);
	if (st->entered_ns) {
		dwell = now - st->entered_ns;
		flags |= FLAG_DWELL_KNOWN;
	}
	st->entered_ns = now;
	if (newstate == TCP_CLOSE)
		reason = close_reason(sk, oldstate, owned, &flags);

	pass = keep(&ep, st);
	if (filter_len && pass && st->verdict == VERDICT_UNDECIDED && oldstate == TCP_CLOSE &&
	    newstate == TCP_SYN_SENT && st != &scratch) {
		/* connect() picks the local port right after this: the next
		 * transition can judge the socket and report this one with it,
		 * so that a socket filtered out takes no ring buffer space. */
		st->sent_undecided = 0;
		st->birth_pending = PENDING_CONNECT;
		st->birth_ns = now;
		st->birth_task_pid = bpf_get_current_pid_tgid() >> 32;
		if (!exp_no_task_comm)
			bpf_get_current_comm(&st->birth_task_comm, sizeof(st->birth_task_comm));
		return st;
	}
	if (pass) {
		if (st->birth_pending == PENDING_BIRTH)
			emit_birth(&ep, st);
		else if (st->birth_pending == PENDING_CONNECT)
			emit_connect(&ep, st);
		emit(sk, &ep, st, now, oldstate, newstate, dwell, flags, reason);
	}
	st->birth_pending = PENDING_NONE;
	if (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED)
		queue_for_accept(sk, st, state_hash_first && st != &scratch && !st->in_storage);
	return st == &scratch ? NULL : st;
}

/*
 * Exactly one copy handles each transition. The tracepoint runs the first
 * copy, then the second. The first copy handles what it runs for and marks
 * it in the socket's state; the second passes over a transition so marked,
 * and handles every other one: those the first copy's guard skipped because
 * they interrupted it. The mark is kept in the socket, not the CPU: where
 * tracepoints no longer turn preemption off (SRCU-fast tracepoints), the
 * task may be preempted and moved to another CPU between the two copies,
 * and a mark left in the first CPU would make the second copy report the
 * transition again (seen once on 7.3-rc7). A socket's transitions are
 * serialized by its lock, so the mark the second copy finds is for its own
 * transition or stale (its second run skipped), and a stale one can never
 * match: consecutive transitions of a socket never share (old, new). A
 * transition that had no state of its own is marked in this CPU's handled
 * set instead, which is exact only where the tracepoint keeps preemption
 * off. Without socket storage the first copy leaves a closed socket's
 * sockets map entry to the second, which deletes it after reading the mark
 * (if that run is skipped, the sweep removes the entry), and an entry the
 * LRU evicts between the two copies, with more live sockets than the map
 * holds, loses its mark: the second copy reports that transition again.
 */

/* The handled set's signature includes the raw cookie field, so that a
 * reused socket address cannot match an old entry. A set, not a slot per
 * nesting level, because a softirq transition may fall between the two
 * copies' runs for a process-context one. */
static __always_inline void add_handled(struct sock *sk, __u16 states)
{
	__u32 zero = 0, victim = 0, age = 0;
	struct handled_set *set = bpf_map_lookup_elem(&handled, &zero);
	int i;

	if (!set) /* cannot happen: per-CPU arrays are preallocated */
		return;
	/* A free slot, else the oldest: an entry the second copy never took
	 * because its own guard skipped that transition. */
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
		h->sk = (__u64)sk;
	}
}

/* Takes the transition's entry out of this CPU's handled set, if there. */
static __always_inline bool take_handled(struct sock *sk, __u16 states)
{
	__u32 zero = 0;
	struct handled_set *set = bpf_map_lookup_elem(&handled, &zero);
	__u64 cookie = sk->__sk_common.skc_cookie.counter;
	int i;

	if (!set || one_in(test_second_elsewhere_one_in))
		return false;
	for (i = 0; i < HANDLED_MAX; i++) {
		struct handled *h = &set->slot[i];

		if (h->sk == (__u64)sk && h->cookie == cookie && h->states == states) {
			h->sk = 0;
			return true;
		}
	}
	return false;
}

/* Tests only (test_skip_first_one_in): adds delta to the count of runs of
 * the second copy in progress on this CPU, and returns it. */
static __always_inline __u32 second_running(int delta)
{
	__u32 zero = 0;
	struct handled_set *set;

	if (!test_skip_first_one_in)
		return 0;
	set = bpf_map_lookup_elem(&handled, &zero);
	if (!set)
		return 0;
	set->second_running += delta;
	return set->second_running;
}

static __always_inline void second_copy(struct sock *sk, int oldstate, int newstate, __u16 states)
{
	bool close = newstate == TCP_CLOSE;
	struct sock_state *st = state_of(sk, false, false);
	bool marked = false;

	if (st && st->handled) {
		marked = st->handled == states;
		st->handled = 0;
	}
	if (marked) {
		/* The first copy left a closed socket's state to this run. */
		if (close)
			forget(sk);
		return;
	}
	if (take_handled(sk, states))
		return;
	count(COUNTER_RECOVERED);
	st = transition(sk, oldstate, newstate);
	if (st && close)
		forget(sk);
}

static __always_inline int dedupe(struct sock *sk, int oldstate, int newstate, bool second)
{
	__u16 states = (oldstate << 8) | newstate;
	struct sock_state *st;

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if (second) {
		second_running(1);
		second_copy(sk, oldstate, newstate, states);
		second_running(-1);
		return 0;
	}
	if (one_in(test_skip_first_one_in) && !second_running(0)) {
		count(COUNTER_FORCED_SKIP);
		return 0;
	}
	st = transition(sk, oldstate, newstate);
	if (exp_one_copy) {
		if (st && newstate == TCP_CLOSE)
			forget(sk);
		return 0;
	}
	if (st)
		st->handled = states;
	else
		add_handled(sk, states);
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

/*
 * accept() and accept4() return a new socket: its owner is the caller. The
 * socket is found through the returned descriptor, in the task's file
 * table. Its state is in the sockets map: all of it without socket storage
 * or while the map has room (state_hash_first), else its hand-off entry
 * since ESTABLISHED (made here, and marked so, for a socket older than
 * tcpstat). A socket already closed gets none: nothing would delete it.
 */
static __always_inline int accepted(__s64 fd)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	__u8 skc_copy[SOCK_COMMON_MAX];
	struct file **fds, *file;
	struct sock_common *skc;
	struct sock_state *st;
	struct endpoint ep;
	struct socket *sock;
	struct sock *sk;
	struct event *e;
	__u64 now;

	if (fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	if (bpf_core_type_size(struct sock_common) > SOCK_COMMON_MAX ||
	    bpf_probe_read_kernel(skc_copy, bpf_core_type_size(struct sock_common), sk))
		return 0;
	skc = (void *)skc_copy;
	if (!copy_endpoint(&ep, skc, sk))
		return 0;

	__u8 state = skc->skc_state;

	st = map_state(sk, false, false, skc->skc_cookie.counter);
	if (!st && state != TCP_CLOSE) {
		st = map_state(sk, true, true, 0);
		/* With socket storage the socket may have its state there. */
		if (st && use_sk_storage)
			st->handoff = 1;
	}
	if (!st)
		return 0;
	now = bpf_ktime_get_boot_ns();
	set_cookie(st, sk, skc->skc_cookie.counter, false);
	set_owner(st, OWNER_ACCEPT);
	if (!st->cookie || !keep(&ep, st))
		return 0;
	e = new_event(&ep, st, KIND_ACCEPT, now);
	if (!e)
		return 0;
	if (st->entered_ns) {
		e->dwell_ns = now - st->entered_ns; /* time in the accept queue */
		e->flags |= FLAG_DWELL_KNOWN;
	}
	e->oldstate = e->newstate = state;
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

/* One socket the program keeps state for, as the iterators below list it. */
struct kept_socket {
	__u64 sk;
	__u32 netns;
	__u8 state;
	__u8 in_storage;
	__u8 pad[2];
};

/* Keeps struct kept_socket in the object's BTF for bpf2go -type. */
const struct kept_socket *unused_kept_socket __attribute__((unused));

static __always_inline void list_socket(struct seq_file *seq, struct sock *sk, __u8 state, bool in_storage)
{
	struct kept_socket k = {.sk = (__u64)sk, .state = state, .in_storage = in_storage};

	k.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	bpf_seq_write(seq, &k, sizeof(k));
}

/*
 * Walks the sockets map: deletes the entries of sockets that closed unseen
 * (a CLOSE transition lost), lists the others. The key is only an address:
 * the socket may be gone, so it is read with a probe, and a read that fails
 * counts as closed. TCP sockets are freed type-safe (SLAB_TYPESAFE_BY_RCU):
 * a live socket at that address is a newer one, which its birth gave an
 * entry of its own (and a recent entered_ns).
 */
SEC("iter/bpf_map_elem")
int sweep_sockets(struct bpf_iter__bpf_map_elem *ctx)
{
	struct sock_state *st = ctx->value;
	__u64 *at = ctx->key;
	__u8 state = TCP_CLOSE;
	struct sock *sk;
	__u64 key;

	if (!at || !st)
		return 0;
	key = *at; /* the helper wants it on the stack */
	sk = (void *)key;
	BPF_CORE_READ_INTO(&state, sk, __sk_common.skc_state);
	if (state == TCP_CLOSE && st->entered_ns + sweep_after_ns < bpf_ktime_get_boot_ns()) {
		if (bpf_map_delete_elem(&sockets, &key) == 0)
			count(COUNTER_SWEPT);
		return 0;
	}
	list_socket(ctx->meta->seq, sk, state, false);
	return 0;
}

/* Lists the sockets that hold storage of ours: it goes with them. */
SEC("iter/bpf_sk_storage_map")
int list_storage(struct bpf_iter__bpf_sk_storage_map *ctx)
{
	struct sock *sk = ctx->sk;

	if (!sk || !ctx->value)
		return 0;
	list_socket(ctx->meta->seq, sk, BPF_CORE_READ(sk, __sk_common.skc_state), true);
	return 0;
}
