//go:build ignore
// SPDX-License-Identifier: GPL-2.0

/*
 * sockfds: every socket descriptor of every process, in one pass through
 * the kernel's task_file iterator, instead of a readlink of each entry of
 * /proc/<pid>/fd. User space adds the names from /proc/<pid>/comm and
 * /proc/<pid>/cmdline, once per process that holds a socket.
 */

#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

/*
 * The kernel types read here, beyond kernel.h's; the ___sockfds flavour
 * keeps them apart from kernel.h's shorter declarations of the same
 * structs, and CO-RE matches them to the kernel's by the name before it.
 */

/* include/linux/fs.h */
struct super_block___sockfds {
	unsigned long s_magic;
} __attribute__((preserve_access_index));

struct inode___sockfds {
	struct super_block___sockfds *i_sb;
	unsigned long i_ino;
} __attribute__((preserve_access_index));

struct file___sockfds {
	struct inode___sockfds *f_inode;
} __attribute__((preserve_access_index));

/* include/linux/sched.h */
struct task_struct___sockfds {
	int pid;
	int tgid;
} __attribute__((preserve_access_index));

/* include/linux/bpf.h */
struct bpf_iter_meta___sockfds {
	struct seq_file *seq;
	__u64 seq_num;
} __attribute__((preserve_access_index));

/* kernel/bpf/task_iter.c */
struct bpf_iter__task_file {
	struct bpf_iter_meta___sockfds *meta;
	struct task_struct___sockfds *task;
	__u32 fd;
	struct file___sockfds *file;
} __attribute__((preserve_access_index));

/* include/uapi/linux/magic.h */
#define SOCKFS_MAGIC 0x534F434B

/* The record the iterator writes: read by user space through bpf2go -type. */
struct sock_fd {
	__u32 pid;   /* thread group id */
	__u32 fd;
	__u64 inode; /* the N of "socket:[N]" */
};

const struct sock_fd *unused_sock_fd __attribute__((unused));

/* The first record names the reader by its pid as this program sees it,
 * with fd = READER_FD: user space compares it with getpid() to know that
 * the pids are those of its own /proc. */
#define READER_FD 0xffffffff

SEC("iter/task_file")
int socket_fds(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct___sockfds *task = ctx->task;
	struct file___sockfds *file = ctx->file;
	struct sock_fd r = {};

	if (ctx->meta->seq_num == 0) {
		r.pid = bpf_get_current_pid_tgid() >> 32;
		r.fd = READER_FD;
		bpf_seq_write(seq, &r, sizeof(r));
	}
	if (!task || !file)
		return 0;
	/*
	 * /proc/<pid>/fd is the thread group leader's table. The iterator
	 * already skips threads that share it; a thread with a table of its
	 * own (unshare(CLONE_FILES)) has no /proc/<pid>/fd, so none here.
	 */
	if (task->pid != task->tgid)
		return 0;
	/* "socket:[N]" is what sockfs names its files; a socket's path on a
	 * file system opened with O_PATH is not one. */
	if (BPF_CORE_READ(file, f_inode, i_sb, s_magic) != SOCKFS_MAGIC)
		return 0;
	r.pid = task->tgid;
	r.fd = ctx->fd;
	r.inode = BPF_CORE_READ(file, f_inode, i_ino);
	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}
