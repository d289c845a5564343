/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The session loop: a fixed set of threads, each reading requests from
 * the FUSE device into a buffer of its own, placed so that a WRITE's
 * data lands on a page boundary.
 *
 * A WRITE arrives as a header and its arguments followed by the data,
 * and libfuse hands the data to the write callback where it lies in the
 * buffer the request was read into.  libfuse's own loop reads into
 * memory from malloc(), so the data follows 80 bytes of header and an
 * O_DIRECT backing file cannot take it: every write was first copied
 * into an aligned buffer (11% of the daemon's CPU on 1 MiB writes).
 * Here the buffer starts 80 bytes before a page boundary, and that copy
 * is not made.  Other requests do not care where they lie.
 *
 * Every thread blocks in read(2) on the device; the kernel wakes one
 * reader per request.  The workers start with signals blocked (lock.h),
 * so a signal is handled by the main thread, which waits for them.  It
 * takes signals only inside ppoll(2): a stop signal's handler ends the
 * session, and one that came between the check and the wait would
 * otherwise leave the thread waiting for a worker that has no request to
 * wake it.  On exit (a signal, an unmount, an error) it cancels the
 * workers where libfuse's loop does: only while they wait for a request,
 * never in the middle of one.
 */
#define _GNU_SOURCE
#include "mirrorfs.h"
#include "lock.h"
#include "transport.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <glib.h>

/* Where a WRITE's data starts in the request. */
#define WRITE_DATA_OFFSET (sizeof(struct fuse_in_header) + sizeof(struct fuse_write_in))

typedef struct {
	struct fuse_session *se;
	Transport *transport;
	size_t page;
	/*
	 * The largest request: libfuse negotiates at most 256 pages of data
	 * (FUSE_MAX_MAX_PAGES), and the kernel wants room for a header too.
	 */
	size_t request_max;
	int finished_fd; /* eventfd: each worker that stops adds one */
	int error;       /* the first error that stopped a worker, or 0 */
} SessionLoop;

typedef struct {
	SessionLoop *loop;
	pthread_t thread;
	void *mem; /* page aligned; the request is read at mem + page - WRITE_DATA_OFFSET */
} LoopWorker;

/*
 * A worker is cancelled only inside read_request(), and the frames on its
 * stack then are those of read_request(), loop_worker_run() and the
 * thread's start (lib/util.c): they are left uninstrumented by
 * AddressSanitizer, whose redzones in a frame
 * unwound by cancellation would stay poisoned and be reported when the
 * thread's stack is reused at its exit.  They hold no buffer to check.
 */
#define CANCELLABLE __attribute__((no_sanitize_address))

/* Returns the request's size, 0 when the session is over, or -errno. */
static CANCELLABLE ssize_t read_request(struct fuse_session *se, char *buf, size_t size)
{
	for (;;) {
		ssize_t n = read(fuse_session_fd(se), buf, size);
		int err = errno;

		if (fuse_session_exited(se))
			return 0;
		if (n >= (ssize_t)sizeof(struct fuse_in_header))
			return n;
		if (n >= 0)
			return -EIO; /* a short read: the device broke its protocol */
		/*
		 * ENOENT: the request was interrupted before we read it.  EINTR:
		 * a signal, which the workers block (lock.h); retried all the same.
		 */
		if (err == ENOENT || err == EINTR)
			continue;
		/*
		 * ENODEV: unmounted, or aborted through /sys/fs/fuse/connections.
		 * ECONNABORTED: the kernel ended the connection (the last file of
		 * a lazily detached mount closed while we read).
		 */
		if (err == ENODEV || err == ECONNABORTED) {
			fuse_session_exit(se);
			return 0;
		}
		return -err;
	}
}

static void stop_on_error(SessionLoop *loop, int err)
{
	g_warning("reading the FUSE device: %s", g_strerror(-err));
	g_atomic_int_compare_and_exchange(&loop->error, 0, err);
	fuse_session_exit(loop->se);
}

static CANCELLABLE void *loop_worker_run(void *arg)
{
	LoopWorker *w = arg;
	SessionLoop *loop = w->loop;
	char *request = (char *)w->mem + loop->page - WRITE_DATA_OFFSET;

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	while (!fuse_session_exited(loop->se)) {
		ssize_t n;

		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		n = read_request(loop->se, request, loop->request_max);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		if (n == -EINTR || n == -EAGAIN)
			continue;
		if (n < 0)
			stop_on_error(loop, (int)n);
		if (n <= 0)
			break;
		{
			TransportRequest r = {0};

			transport_serve(loop->transport, &r, request, (size_t)n);
		}
	}
	eventfd_write(loop->finished_fd, 1);
	return NULL;
}

/*
 * For a test (test-stop.sh): with MIRRORFS_TEST_SIGNAL_BEFORE_WAIT=FIFO,
 * the first time the main thread is about to wait it reads a byte from
 * FIFO, then raises SIGTERM: the stop signal lands exactly between the
 * check and the wait.
 */
static void test_signal_before_wait(void)
{
	static bool done;
	const char *fifo = g_getenv("MIRRORFS_TEST_SIGNAL_BEFORE_WAIT");
	char byte;
	int fd;

	if (G_LIKELY(!fifo) || done)
		return;
	done = true;
	fd = open(fifo, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, &byte, 1) < 0)
			g_warning("test: reading %s: %s", fifo, g_strerror(errno));
		close(fd);
	}
	g_message("test: SIGTERM before the wait");
	raise(SIGTERM);
}

/*
 * Until the session ends: signals are taken only while waiting.  A
 * worker that stops wakes us, and so does the transport's stop
 * descriptor (a ring that ends the session).
 */
static void wait_for_end(SessionLoop *loop)
{
	struct pollfd pfd[2] = {
	    {.fd = loop->finished_fd, .events = POLLIN},
	    {.fd = loop->transport->stop_fd, .events = POLLIN},
	};
	sigset_t all, taken;
	eventfd_t n;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &taken);
	while (!fuse_session_exited(loop->se)) {
		test_signal_before_wait();
		if (ppoll(pfd, 2, NULL, &taken) > 0 && (pfd[0].revents & POLLIN))
			eventfd_read(loop->finished_fd, &n);
	}
	pthread_sigmask(SIG_SETMASK, &taken, NULL);
}

int mirrorfs_session_loop(Transport *t)
{
	struct fuse_session *se = t->se;
	unsigned int threads = t->threads;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	SessionLoop loop = {
	    .se = se, .transport = t, .page = page, .request_max = 256 * page + 4096};
	LoopWorker *workers = g_new0(LoopWorker, threads);
	unsigned int i, started = 0;
	int ret = 0;

	loop.finished_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (loop.finished_fd < 0) {
		ret = -errno;
		g_warning("cannot make the session loop's eventfd: %s", g_strerror(errno));
		g_free(workers);
		return ret;
	}
	for (i = 0; i < threads; i++) {
		LoopWorker *w = &workers[i];

		w->loop = &loop;
		ret = -posix_memalign(&w->mem, page, page + loop.request_max);
		if (ret == 0)
			ret = mfs_thread_start("mirrorfs-fuse", loop_worker_run, w, &w->thread);
		if (ret < 0) {
			g_warning("starting worker thread %u: %s", i + 1, g_strerror(-ret));
			break;
		}
		started++;
	}
	/* Some threads serve, fewer than asked for; none is an error. */
	if (started == 0)
		fuse_session_exit(se);
	wait_for_end(&loop);
	/* The ring's threads first: each ends when its request is served. */
	transport_stop(t);
	/* Workers start in order, and the first that fails ends the starting. */
	for (i = 0; i < started; i++)
		pthread_cancel(workers[i].thread);
	for (i = 0; i < started; i++)
		pthread_join(workers[i].thread, NULL);
	for (i = 0; i < threads; i++)
		free(workers[i].mem);
	close(loop.finished_fd);
	g_free(workers);
	if (started == 0)
		return ret;
	return loop.error;
}
