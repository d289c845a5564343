/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * FUSE over io_uring (Linux 6.14): the kernel keeps a queue of requests
 * per CPU, and hands a request made on CPU n to an idle entry that the
 * daemon registered on queue n, writing the request into the entry's
 * buffers and completing the entry's IORING_OP_URING_CMD.  The daemon
 * replies and asks for the next request in one command
 * (COMMIT_AND_FETCH): one system call per request, where /dev/fuse takes
 * a read and a write, and the request is served on the CPU that made it.
 *
 * Each thread here owns one ring and registers one entry.  A thread busy
 * with a request then has no entry the kernel could give another one
 * to: a request that waits in the engine (a write into the chunk being
 * copied, the stun) holds its own thread, and the queue's next request
 * goes to another idle thread of the queue, or waits for the first to
 * finish.  With several entries per thread it would wait behind the one
 * blocked, even with idle threads beside it.
 *
 * A ring's request is laid out as the classic transport reads one (the
 * in-header, the opcode's argument struct, then the rest) by copying
 * the two headers in front of the payload, in the page kept free for
 * them: libfuse's dispatch then serves both alike, and a WRITE's data
 * stays where the kernel put it, page aligned for O_DIRECT.
 *
 * Requests the ring does not carry (FORGET, INTERRUPT) and those sent
 * before every queue has an entry still come through /dev/fuse.
 */
#define _GNU_SOURCE
#include "transport.h"
#include "fuse-abi.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <glib.h>

enum { TAG_STOP = 1, TAG_ENTRY = 2 };

#define URING_MAX_THREADS 256

typedef struct {
	Uring *uring;
	Transport *t;
	unsigned int qid;
	pthread_t thread;
	bool started;
	bool registered; /* the kernel has taken the entry (a request came) */
	struct io_uring ring;
	struct fuse_uring_req_header *header;
	void *mem;     /* a page for the headers, then the payload */
	char *payload; /* mem + page */
	struct iovec iov[2];
} UringThread;

struct Uring {
	Transport *t;
	unsigned int queues, per_queue;
	size_t payload_size;
	UringThread *threads;
};

/*
 * The kernel has a queue for every possible CPU (num_possible_cpus(), a
 * count) and uses none until each has an entry.  "0-3,8-11" is 8.
 */
static unsigned int possible_cpus(void)
{
	g_autofree char *text = NULL;
	unsigned int n = 0;
	char *p;

	if (!g_file_get_contents("/sys/devices/system/cpu/possible", &text, NULL, NULL))
		return (unsigned int)get_nprocs_conf();
	for (p = text; *p && *p != '\n';) {
		unsigned long first = strtoul(p, &p, 10), last = first;

		if (*p == '-')
			last = strtoul(p + 1, &p, 10);
		n += (unsigned int)(last - first + 1);
		if (*p == ',')
			p++;
		else
			break;
	}
	return n ? n : (unsigned int)get_nprocs_conf();
}

/*
 * The size of each argument struct that the kernel puts in a ring
 * entry's op_in (its first in-argument); the rest of a request is in the
 * payload.  Opcodes whose first argument is a name, or that have none,
 * send an empty op_in.  Unknown opcodes: libfuse answers ENOSYS without
 * reading their arguments.
 */
static size_t op_in_size(uint32_t opcode)
{
	switch (opcode) {
	case FUSE_GETATTR:
		return sizeof(struct fuse_getattr_in);
	case FUSE_SETATTR:
		return sizeof(struct fuse_setattr_in);
	case FUSE_MKNOD:
		return sizeof(struct fuse_mknod_in);
	case FUSE_MKDIR:
		return sizeof(struct fuse_mkdir_in);
	case FUSE_RENAME:
		return sizeof(struct fuse_rename_in);
	case FUSE_RENAME2:
		return sizeof(struct fuse_rename2_in);
	case FUSE_LINK:
		return sizeof(struct fuse_link_in);
	case FUSE_OPEN:
	case FUSE_OPENDIR:
		return sizeof(struct fuse_open_in);
	case FUSE_CREATE:
	case FUSE_TMPFILE:
		return sizeof(struct fuse_create_in);
	case FUSE_READ:
	case FUSE_READDIR:
	case FUSE_READDIRPLUS:
		return sizeof(struct fuse_read_in);
	case FUSE_WRITE:
		return sizeof(struct fuse_write_in);
	case FUSE_RELEASE:
	case FUSE_RELEASEDIR:
		return sizeof(struct fuse_release_in);
	case FUSE_FLUSH:
		return sizeof(struct fuse_flush_in);
	case FUSE_FSYNC:
	case FUSE_FSYNCDIR:
		return sizeof(struct fuse_fsync_in);
	case FUSE_SETXATTR:
		/* libfuse 3.14 never asks for FUSE_SETXATTR_EXT: the short struct. */
		return FUSE_COMPAT_SETXATTR_IN_SIZE;
	case FUSE_GETXATTR:
	case FUSE_LISTXATTR:
		return sizeof(struct fuse_getxattr_in);
	case FUSE_ACCESS:
		return sizeof(struct fuse_access_in);
	case FUSE_GETLK:
	case FUSE_SETLK:
	case FUSE_SETLKW:
		return sizeof(struct fuse_lk_in);
	case FUSE_BMAP:
		return sizeof(struct fuse_bmap_in);
	case FUSE_IOCTL:
		return sizeof(struct fuse_ioctl_in);
	case FUSE_POLL:
		return sizeof(struct fuse_poll_in);
	case FUSE_FALLOCATE:
		return sizeof(struct fuse_fallocate_in);
	case FUSE_LSEEK:
		return sizeof(struct fuse_lseek_in);
	case FUSE_COPY_FILE_RANGE:
		return sizeof(struct fuse_copy_file_range_in);
	case FUSE_SYNCFS:
		return sizeof(struct fuse_syncfs_in);
	default:
		return 0;
	}
}

ssize_t uring_reply(TransportRequest *r, const struct iovec *iov, int count)
{
	const struct fuse_out_header *out = iov[0].iov_base;
	size_t len = 0;

	for (int i = 1; i < count; i++) {
		if (iov[i].iov_len > r->payload_max - len) {
			errno = EINVAL; /* larger than any request the kernel sends allows */
			return -1;
		}
		/* Built in place (transport_reply_buffer()): nothing to copy. */
		if (iov[i].iov_base != r->payload + len)
			memmove(r->payload + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	memcpy(r->ring_header->in_out, out, sizeof(*out));
	r->ring_header->ring_ent_in_out.payload_sz = (uint32_t)len;
	r->replied = true;
	return (ssize_t)(sizeof(*out) + len);
}

static void prep_entry_cmd(UringThread *u, uint32_t op, uint64_t commit_id)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	struct fuse_uring_cmd_req *req;

	/* The ring has room: one entry and one poll, never more in flight. */
	g_assert(sqe);
	memset(sqe, 0, 2 * sizeof(*sqe)); /* a 128-byte SQE */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = fuse_session_fd(u->t->se);
	sqe->cmd_op = op;
	sqe->addr = (uintptr_t)u->iov;
	sqe->len = 2;
	io_uring_sqe_set_data64(sqe, TAG_ENTRY);
	req = (struct fuse_uring_cmd_req *)sqe->cmd;
	req->qid = (uint16_t)u->qid;
	req->commit_id = commit_id;
}

/* Serves the request now in the entry; returns its unique, for the commit. */
static uint64_t serve_entry(UringThread *u)
{
	struct fuse_in_header *in = (struct fuse_in_header *)u->header->in_out;
	size_t arg = op_in_size(in->opcode);
	size_t payload = u->header->ring_ent_in_out.payload_sz;
	char *buf = u->payload - sizeof(*in) - arg;
	TransportRequest r = {
	    .ring_header = u->header,
	    .payload = u->payload,
	    .payload_max = u->uring->payload_size,
	};

	if (G_UNLIKELY(payload > u->uring->payload_size))
		payload = u->uring->payload_size; /* the kernel never sends more */
	memcpy(buf, in, sizeof(*in));
	memcpy(buf + sizeof(*in), u->header->op_in, arg);
	((struct fuse_in_header *)buf)->len = (uint32_t)(sizeof(*in) + arg + payload);
	transport_serve(u->t, &r, buf, sizeof(*in) + arg + payload);
	if (G_UNLIKELY(!r.replied)) {
		/* Every request on the ring has a reply; the kernel waits for one. */
		struct fuse_out_header out = {.error = -EIO, .unique = r.unique};

		g_warning("request %" G_GUINT64_FORMAT " (opcode %u) got no reply: EIO", r.unique,
		          r.opcode);
		memcpy(u->header->in_out, &out, sizeof(out));
		u->header->ring_ent_in_out.payload_sz = 0;
	}
	return r.unique;
}

/*
 * After INIT granted FUSE_OVER_IO_URING the kernel holds every request
 * until each queue has an entry: a ring that cannot start would hang the
 * mount.  Ending the session is the only way out, in auto mode too.
 */
static void uring_fatal(Transport *t, const char *what, int err)
{
	g_warning("io_uring: %s: %s; the kernel waits for every queue, so the mount stops "
	          "(mount with -o io_uring=off to serve through /dev/fuse)",
	          what, g_strerror(err));
	g_atomic_int_set(&t->failed, 1);
	fuse_session_exit(t->se);
	eventfd_write(t->stop_fd, 1);
}

/* The kernel's word on the entry: 0 to go on, or the error that ends the thread. */
static int entry_completed(UringThread *u, int res)
{
	Transport *t = u->t;

	if (res == 0) {
		u->registered = true;
		prep_entry_cmd(u, FUSE_IO_URING_CMD_COMMIT_AND_FETCH, serve_entry(u));
		return 0;
	}
	/* ENOTCONN, ECONNABORTED, ECANCELED: the session is over, or ending. */
	if (res == -ENOTCONN || res == -ECONNABORTED || res == -ECANCELED)
		return res;
	if (u->registered) {
		/*
		 * A commit the kernel refused (it logs why): that entry is lost
		 * to the queue, so register the buffers again as a new one.
		 */
		g_warning("io_uring queue %u: a reply was refused: %s; registering again", u->qid,
		          g_strerror(-res));
		u->registered = false;
		prep_entry_cmd(u, FUSE_IO_URING_CMD_REGISTER, 0);
		return 0;
	}
	/*
	 * The kernel refused to register the entry: it has then turned
	 * io_uring off for the connection, and requests keep coming through
	 * /dev/fuse.
	 */
	mfs_set_transport(t->fs, MFS_TRANSPORT_DEV_FUSE);
	if (t->uring_mode == TRANSPORT_URING_ON) {
		g_warning(
		    "io_uring queue %u: the kernel refused the ring: %s; io_uring=on: stopping",
		    u->qid, g_strerror(-res));
		g_atomic_int_set(&t->failed, 1);
		fuse_session_exit(t->se);
		eventfd_write(t->stop_fd, 1);
	} else {
		g_warning("io_uring queue %u: the kernel refused the ring: %s; serving through "
		          "/dev/fuse",
		          u->qid, g_strerror(-res));
	}
	return res;
}

static void *uring_thread_run(void *arg)
{
	UringThread *u = arg;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	bool done = false;

	g_assert(sqe);
	memset(sqe, 0, 2 * sizeof(*sqe));
	io_uring_prep_poll_add(sqe, u->t->stop_fd, POLLIN);
	io_uring_sqe_set_data64(sqe, TAG_STOP);
	prep_entry_cmd(u, FUSE_IO_URING_CMD_REGISTER, 0);
	while (!done) {
		struct io_uring_cqe *cqe;
		unsigned int head, seen = 0;
		int ret = io_uring_submit_and_wait(&u->ring, 1);

		if (ret < 0 && ret != -EINTR) {
			g_warning("io_uring queue %u: waiting: %s", u->qid, g_strerror(-ret));
			break;
		}
		io_uring_for_each_cqe(&u->ring, head, cqe)
		{
			seen++;
			if (cqe->user_data == TAG_STOP || entry_completed(u, cqe->res) < 0)
				done = true;
		}
		io_uring_cq_advance(&u->ring, seen);
	}
	/* A reply served with the stop in the same batch still goes out. */
	if (io_uring_sq_ready(&u->ring))
		io_uring_submit(&u->ring);
	return NULL;
}

static int uring_thread_init(Uring *ur, UringThread *u, unsigned int qid)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	struct io_uring_params p = {
	    .flags = IORING_SETUP_SQE128 | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
	             IORING_SETUP_COOP_TASKRUN,
	};
	int ret;

	u->uring = ur;
	u->t = ur->t;
	u->qid = qid;
	if (posix_memalign(&u->mem, page, page + ur->payload_size) ||
	    posix_memalign((void **)&u->header, 64, sizeof(*u->header)))
		return -ENOMEM;
	u->payload = (char *)u->mem + page;
	u->iov[0] = (struct iovec){.iov_base = u->header, .iov_len = sizeof(*u->header)};
	u->iov[1] = (struct iovec){.iov_base = u->payload, .iov_len = ur->payload_size};
	/* SINGLE_ISSUER: the ring is set up here, then used by its thread alone. */
	p.flags |= IORING_SETUP_R_DISABLED;
	ret = io_uring_queue_init_params(4, &u->ring, &p);
	if (ret < 0)
		return ret;
	return 0;
}

static void *uring_thread_start(void *arg)
{
	UringThread *u = arg;
	/* liburing 2.3 has no io_uring_enable_rings(). */
	long ret =
	    syscall(__NR_io_uring_register, u->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);

	if (ret < 0) {
		uring_fatal(u->t, "cannot enable a ring", errno);
		return NULL;
	}
	return uring_thread_run(u);
}

static void uring_free(Uring *ur)
{
	for (unsigned int i = 0; i < ur->queues * ur->per_queue; i++) {
		UringThread *u = &ur->threads[i];

		if (u->ring.ring_fd > 0)
			io_uring_queue_exit(&u->ring);
		free(u->mem);
		free(u->header);
	}
	g_free(ur->threads);
	g_free(ur);
}

int uring_probe(char **why)
{
	struct io_uring ring;
	int ret = io_uring_queue_init(2, &ring, IORING_SETUP_SQE128);

	if (ret < 0) {
		*why = g_strdup_printf("cannot make an io_uring: %s (see kernel.io_uring_disabled)",
		                       g_strerror(-ret));
		return ret;
	}
	io_uring_queue_exit(&ring);
	return 0;
}

Uring *uring_prepare(Transport *t, char **why)
{
	Uring *ur = g_new0(Uring, 1);
	unsigned int n;
	int ret = 0;

	ur->t = t;
	ur->queues = possible_cpus();
	/*
	 * Every request of a submitter goes to the queue of the CPU it runs
	 * on (one QEMU iothread fills one queue), so each queue gets as many
	 * threads as the classic loop has in all (max_threads), fewer on a
	 * large host (256 in all where two a queue allow it), two at least.
	 */
	ur->per_queue = MAX(2, MIN(t->threads, URING_MAX_THREADS / ur->queues));
	/* The kernel's max_payload_sz: max_write, or max_pages pages (libfuse's 1 MiB). */
	ur->payload_size = 1 << 20;
	n = ur->queues * ur->per_queue;
	ur->threads = g_new0(UringThread, n);
	for (unsigned int i = 0; i < n && ret == 0; i++)
		ret = uring_thread_init(ur, &ur->threads[i], i / ur->per_queue);
	if (ret < 0) {
		*why = g_strdup_printf("cannot set up %u rings: %s", n, g_strerror(-ret));
		uring_free(ur);
		return NULL;
	}
	return ur;
}

void uring_discard(Uring *ur)
{
	uring_free(ur);
}

void uring_start(Transport *t)
{
	unsigned int queues, per_queue;
	Uring *ur;
	int ret = 0;

	mfs_mutex_lock(&t->lock);
	if (t->stopping) {
		/* transport_stop() has taken the rings back already. */
		mfs_mutex_unlock(&t->lock);
		return;
	}
	/* Read under the lock: once it is let go, transport_stop() may free the rings. */
	ur = t->uring;
	queues = ur->queues;
	per_queue = ur->per_queue;
	for (unsigned int i = 0; i < queues * per_queue; i++) {
		UringThread *u = &ur->threads[i];

		ret = mfs_thread_start("mirrorfs-uring", uring_thread_start, u, &u->thread);
		if (ret < 0)
			break;
		u->started = true;
	}
	t->uring_started = true;
	mfs_mutex_unlock(&t->lock);
	if (ret < 0) {
		uring_fatal(t, "cannot start its threads", -ret);
		return;
	}
	mfs_set_transport(t->fs, MFS_TRANSPORT_IO_URING);
	g_message("transport: FUSE over io_uring, %u queue%s of %u threads", queues,
	          queues == 1 ? "" : "s", per_queue);
}

void uring_stop(Uring *ur)
{
	for (unsigned int i = 0; i < ur->queues * ur->per_queue; i++)
		if (ur->threads[i].started)
			pthread_join(ur->threads[i].thread, NULL);
	uring_free(ur);
}
