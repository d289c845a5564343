/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What both transports share: the dispatch of a request, the reply hook,
 * the INIT flags libfuse 3.14 does not know, and the credentials a
 * request asks for (see transport.h).
 */
#define _GNU_SOURCE
#include "transport.h"
#include "fuse-abi.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <glib.h>

#define URING_PARAMETER "/sys/module/fuse/parameters/enable_uring"

static __thread TransportRequest *current_request;

int transport_uring_mode_parse(const char *text, TransportUringMode *mode)
{
	static const char *const names[] = {
	    [TRANSPORT_URING_OFF] = "off",
	    [TRANSPORT_URING_AUTO] = "auto",
	    [TRANSPORT_URING_ON] = "on",
	};

	for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
		if (strcmp(text, names[i]) == 0) {
			*mode = (TransportUringMode)i;
			return 0;
		}
	}
	return -EINVAL;
}

int transport_uring_available(char **why)
{
	char value = 0;
	int fd = open(URING_PARAMETER, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		*why = g_strdup_printf("this kernel has no FUSE over io_uring (%s: %s; it needs "
		                       "Linux 6.14 or later built with CONFIG_FUSE_IO_URING)",
		                       URING_PARAMETER, g_strerror(errno));
		return -EOPNOTSUPP;
	}
	if (read(fd, &value, 1) != 1)
		value = 0;
	close(fd);
	if (value != 'Y') {
		*why = g_strdup_printf("the kernel does not offer FUSE over io_uring: %s is %c "
		                       "(as root: echo Y > %s)",
		                       URING_PARAMETER, value ? value : '?', URING_PARAMETER);
		return -EOPNOTSUPP;
	}
	return uring_probe(why);
}

/*
 * libfuse's read hook: a plain read.  The hook is needed only because
 * libfuse takes the write hook with it, and it serves libfuse's own loop
 * (-o clone_fd).
 */
static ssize_t transport_read(int fd, void *buf, size_t len, void *userdata)
{
	(void)userdata;
	return read(fd, buf, len);
}

/*
 * The flags our INIT reply adds to libfuse's, each only if the kernel
 * offered it:
 *  - FUSE_HANDLE_KILLPRIV_V2: we clear setuid/setgid when the request
 *    says so (request_set_creds()); the kernel then stops asking for
 *    security.capability before every write, one round trip each.
 *  - FUSE_DIRECT_IO_ALLOW_MMAP: a file opened for direct I/O can still
 *    be mapped shared (QEMU maps images now and then, so do tools).
 *  - FUSE_OVER_IO_URING, when io_uring= allows it.
 */
static void negotiate_init_reply(Transport *t, struct iovec *iov, int count)
{
	struct fuse_out_header *out = iov[0].iov_base;
	struct fuse_init_out *arg;
	uint64_t want = FUSE_HANDLE_KILLPRIV_V2 | FUSE_DIRECT_IO_ALLOW_MMAP;

	if (out->error || count < 2 || iov[1].iov_len < sizeof(*arg))
		return;
	arg = iov[1].iov_base;
	if (t->uring_mode != TRANSPORT_URING_OFF)
		want |= FUSE_OVER_IO_URING;
	want &= t->kernel_flags;
	/* The high half needs FUSE_INIT_EXT, which a kernel offering it has sent. */
	if (!(t->kernel_flags & FUSE_INIT_EXT))
		want &= 0xffffffffu;
	/*
	 * Once granted, the kernel holds every request until each queue has
	 * an entry: set the rings up first, and grant only what can start.
	 */
	if (want & FUSE_OVER_IO_URING) {
		Uring *u = uring_prepare(t, &t->uring_why);
		bool ready = false;

		mfs_mutex_lock(&t->lock);
		if (u && !t->stopping) {
			t->uring = g_steal_pointer(&u);
			ready = true;
		}
		mfs_mutex_unlock(&t->lock);
		if (u)
			uring_discard(u);
		if (!ready)
			want &= ~FUSE_OVER_IO_URING;
	}
	arg->flags |= (uint32_t)want;
	if (want >> 32) {
		arg->flags |= FUSE_INIT_EXT;
		arg->flags2 |= (uint32_t)(want >> 32);
	}
	/* Atomic: other threads read it, ordered after INIT by the kernel alone. */
	__atomic_store_n(&t->granted, want, __ATOMIC_RELEASE);
}

uint64_t transport_granted(Transport *t)
{
	return __atomic_load_n(&t->granted, __ATOMIC_ACQUIRE);
}

static ssize_t transport_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	Daemon *d = userdata;
	TransportRequest *r = current_request;
	const struct fuse_out_header *out = iov[0].iov_base;

	if (r && out->unique == r->unique) {
		if (r->ring_header)
			return uring_reply(r, iov, count);
		if (G_UNLIKELY(r->opcode == FUSE_INIT))
			negotiate_init_reply(d->transport, iov, count);
	}
	return writev(fd, iov, count);
}

/*
 * FUSE_HANDLE_KILLPRIV_V2 leaves clearing setuid and setgid on write,
 * truncate and open(O_TRUNC) to us, flagged in the request when the
 * caller may not keep them (it lacks CAP_FSETID).  The daemon runs as
 * root, whose writes keep them: for such a request the serving thread
 * drops CAP_FSETID (capabilities are per thread), and the backing file
 * system clears the bits as it would for the caller.  A thread keeps the
 * state it has until a request wants the other one, so a guest whose
 * writes are all flagged (QEMU run as its own user) costs no syscall
 * per write.  Requests that never change the bits leave it as it is.
 */
enum { FSETID_UNKNOWN, FSETID_DROPPED, FSETID_KEPT };
static __thread int fsetid_state;
static gint fsetid_unmanaged; /* not in our permitted set: nothing to drop or keep */

static void set_fsetid(bool keep)
{
	int ret = mfs_cap_fsetid_set(keep);

	if (ret == -EPERM) {
		/* A daemon without CAP_FSETID: the backing file system clears the bits anyway. */
		if (g_atomic_int_compare_and_exchange(&fsetid_unmanaged, 0, 1))
			g_message("CAP_FSETID is not in the daemon's permitted set: setuid and "
			          "setgid bits are cleared on every write");
		return;
	}
	if (ret < 0) {
		g_warning("cannot %s CAP_FSETID: %s", keep ? "restore" : "drop", g_strerror(-ret));
		fsetid_state = FSETID_UNKNOWN;
		return;
	}
	fsetid_state = keep ? FSETID_KEPT : FSETID_DROPPED;
}

/* Reads the kill flag of the request at @buf, for the opcodes that carry one. */
static bool request_kills_suidgid(const struct fuse_in_header *in, size_t size, bool *cares)
{
	const void *arg = in + 1;

	*cares = true;
	switch (in->opcode) {
	case FUSE_WRITE:
		return size >= sizeof(*in) + sizeof(struct fuse_write_in) &&
		       (((const struct fuse_write_in *)arg)->write_flags & FUSE_WRITE_KILL_SUIDGID);
	case FUSE_OPEN:
		return size >= sizeof(*in) + sizeof(struct fuse_open_in) &&
		       (((const struct fuse_open_in *)arg)->open_flags & FUSE_OPEN_KILL_SUIDGID);
	case FUSE_CREATE:
		return size >= sizeof(*in) + sizeof(struct fuse_create_in) &&
		       (((const struct fuse_create_in *)arg)->open_flags & FUSE_OPEN_KILL_SUIDGID);
	case FUSE_SETATTR:
		return size >= sizeof(*in) + sizeof(struct fuse_setattr_in) &&
		       (((const struct fuse_setattr_in *)arg)->valid & FATTR_KILL_SUIDGID);
	case FUSE_MKNOD:
	case FUSE_MKDIR:
	case FUSE_SETXATTR:
		/* Whether a new or changed mode keeps setgid may depend on CAP_FSETID. */
	case FUSE_FALLOCATE:
	case FUSE_COPY_FILE_RANGE:
		/* They change data but carry no flag: the daemon's own rule, kept. */
		return false;
	default:
		*cares = false;
		return false;
	}
}

static void request_set_creds(TransportRequest *r, const struct fuse_in_header *in, size_t size)
{
	bool cares;

	r->kill_suidgid = request_kills_suidgid(in, size, &cares);
	if (!cares || g_atomic_int_get(&fsetid_unmanaged))
		return;
	if (fsetid_state != (r->kill_suidgid ? FSETID_DROPPED : FSETID_KEPT))
		set_fsetid(!r->kill_suidgid);
}

/* The INIT reply is written: the kernel has taken our flags, and a ring can register. */
static void init_done(Transport *t)
{
	g_autofree char *why = NULL;

	if (transport_granted(t) & FUSE_OVER_IO_URING) {
		uring_start(t);
		return;
	}
	if (t->uring_mode == TRANSPORT_URING_OFF) {
		g_message("transport: /dev/fuse (io_uring=off)");
		return;
	}
	if (t->uring_why)
		why = g_strdup(t->uring_why);
	else if (transport_uring_available(&why) == 0)
		why = g_strdup("the kernel did not offer FUSE over io_uring in INIT");
	if (t->uring_mode == TRANSPORT_URING_AUTO) {
		g_message("transport: /dev/fuse (%s)", why);
		return;
	}
	g_warning("io_uring=on: %s; stopping", why);
	g_atomic_int_set(&t->failed, 1);
	fuse_session_exit(t->se);
	eventfd_write(t->stop_fd, 1);
}

void transport_serve(Transport *t, TransportRequest *r, char *buf, size_t size)
{
	const struct fuse_in_header *in = (const void *)buf;
	struct fuse_buf fbuf = {.mem = buf, .size = size};

	r->unique = in->unique;
	r->opcode = in->opcode;
	r->replied = false;
	if (G_UNLIKELY(in->opcode == FUSE_INIT) &&
	    size >= sizeof(*in) + sizeof(struct fuse_init_in)) {
		const struct fuse_init_in *arg = (const void *)(in + 1);

		t->kernel_flags = arg->flags;
		if (arg->flags & FUSE_INIT_EXT)
			t->kernel_flags |= (uint64_t)arg->flags2 << 32;
	}
	if (transport_granted(t) & FUSE_HANDLE_KILLPRIV_V2)
		request_set_creds(r, in, size);
	current_request = r;
	fuse_session_process_buf(t->se, &fbuf);
	current_request = NULL;
	if (G_UNLIKELY(r->opcode == FUSE_INIT))
		init_done(t);
}

void *transport_reply_buffer(size_t size)
{
	TransportRequest *r = current_request;

	if (r && r->ring_header && size <= r->payload_max)
		return r->payload;
	return NULL;
}

int transport_init(Transport *t, struct fuse_session *se, Mfs *fs, TransportUringMode mode,
                   unsigned int threads)
{
	static const struct fuse_custom_io io = {
	    .read = transport_read,
	    .writev = transport_writev,
	};
	int ret;

	*t = (Transport){.se = se, .fs = fs, .uring_mode = mode, .threads = threads};
	mfs_set_transport(fs, MFS_TRANSPORT_DEV_FUSE);
	mfs_mutex_init(&t->lock);
	t->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->stop_fd < 0) {
		ret = -errno;
		goto fail;
	}
	/* The same descriptor: libfuse keeps it, and unmounts through it. */
	ret = fuse_session_custom_io(se, &io, fuse_session_fd(se));
	if (ret < 0)
		goto fail;
	return 0;

fail:
	transport_destroy(t);
	return ret;
}

void transport_stop(Transport *t)
{
	Uring *u;
	bool started;

	mfs_mutex_lock(&t->lock);
	t->stopping = true;
	u = t->uring;
	started = t->uring_started;
	t->uring = NULL;
	mfs_mutex_unlock(&t->lock);
	eventfd_write(t->stop_fd, 1);
	if (u && started)
		uring_stop(u);
	else if (u)
		uring_discard(u);
}

void transport_destroy(Transport *t)
{
	if (t->uring)
		uring_discard(t->uring);
	if (t->stop_fd >= 0)
		close(t->stop_fd);
	g_free(t->uring_why);
	mfs_mutex_clear(&t->lock);
}
