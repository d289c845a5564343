/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The copier's queue (copy-queue.h).  Plain threads rather than io_uring
 * or AIO: a job is a whole chunk's copy (SEEK_DATA, clones, preallocated
 * ranges, direct and buffered I/O), written once in mirror-copy.c, and a
 * thread runs it as it is.  The threads cost nothing between jobs, and a
 * handful of chunks of a MiB or more in flight is all a disk needs.
 *
 * The lock is a leaf: no other lock is taken under it, and it is held
 * across no job.
 */
#define _GNU_SOURCE
#include "copy-queue.h"

#include "lock.h"
#include "util.h"

#include <errno.h>
#include <sys/mman.h>

typedef struct {
	CopyQueue *q;
	pthread_t thread;
	void *buf;
	size_t buf_len;
	unsigned trim_seen; /* the queue's trim_gen when the buffer was last let go */
} CopyThread;

struct CopyQueue {
	MfsMutex lock;
	MfsCond cond;         /* a job queued or done, a trim asked, or the end */
	CopyJob *head, *tail; /* protected by lock: queued, not yet taken */
	unsigned trim_gen;    /* protected by lock */
	bool ending;          /* protected by lock */
	unsigned n;
	CopyThread threads[COPY_QUEUE_MAX];
};

static void thread_buf_release(CopyThread *t)
{
	if (t->buf)
		munmap(t->buf, t->buf_len);
	t->buf = NULL;
	t->buf_len = 0;
}

/*
 * Mapped, not malloc'ed (see mirror-copy.c's buffer): page aligned, and
 * given back whole.  A buffer that cannot grow keeps the one it has.
 */
static void thread_buf_reserve(CopyThread *t, size_t len)
{
	void *buf;

	len = MIN((len + 4095) & ~(size_t)4095, COPY_QUEUE_BUF_MAX);
	if (t->buf_len >= len)
		return;
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return;
	thread_buf_release(t);
	t->buf = buf;
	t->buf_len = len;
}

static void *copy_thread_main(void *opaque)
{
	CopyThread *t = opaque;
	CopyQueue *q = t->q;

	mfs_mutex_lock(&q->lock);
	for (;;) {
		CopyJob *job;

		if (t->trim_seen != q->trim_gen) {
			t->trim_seen = q->trim_gen;
			mfs_mutex_unlock(&q->lock);
			thread_buf_release(t);
			mfs_mutex_lock(&q->lock);
			continue;
		}
		job = q->head;
		if (!job) {
			if (q->ending)
				break;
			mfs_cond_wait(&q->cond, &q->lock);
			continue;
		}
		q->head = job->next;
		if (!q->head)
			q->tail = NULL;
		mfs_mutex_unlock(&q->lock);
		thread_buf_reserve(t, job->buf_len);
		job->run(job, t->buf, t->buf_len);
		mfs_mutex_lock(&q->lock);
		job->done = true;
		mfs_cond_broadcast(&q->cond);
	}
	mfs_mutex_unlock(&q->lock);
	thread_buf_release(t);
	return NULL;
}

CopyQueue *copy_queue_new(unsigned threads)
{
	CopyQueue *q = g_new0(CopyQueue, 1);
	int err = 0;

	g_assert(threads >= 1 && threads <= COPY_QUEUE_MAX);
	mfs_mutex_init(&q->lock);
	mfs_cond_init(&q->cond);
	for (unsigned i = 0; i < threads; i++) {
		q->threads[i].q = q;
		err = mfs_thread_start("mirrorfs-copyio", copy_thread_main, &q->threads[i],
		                       &q->threads[i].thread);
		if (err < 0)
			break;
		q->n++;
	}
	if (q->n == 0) {
		copy_queue_free(q);
		errno = -err;
		return NULL;
	}
	return q;
}

void copy_queue_free(CopyQueue *q)
{
	if (!q)
		return;
	mfs_mutex_lock(&q->lock);
	q->ending = true;
	mfs_cond_broadcast(&q->cond);
	mfs_mutex_unlock(&q->lock);
	for (unsigned i = 0; i < q->n; i++)
		pthread_join(q->threads[i].thread, NULL);
	mfs_cond_clear(&q->cond);
	mfs_mutex_clear(&q->lock);
	g_free(q);
}

unsigned copy_queue_threads(CopyQueue *q)
{
	return q->n;
}

void copy_queue_submit(CopyQueue *q, CopyJob *job)
{
	mfs_mutex_lock(&q->lock);
	job->done = false;
	job->next = NULL;
	if (q->tail)
		q->tail->next = job;
	else
		q->head = job;
	q->tail = job;
	mfs_cond_broadcast(&q->cond);
	mfs_mutex_unlock(&q->lock);
}

void copy_queue_wait(CopyQueue *q, CopyJob *job)
{
	mfs_mutex_lock(&q->lock);
	while (!job->done)
		mfs_cond_wait(&q->cond, &q->lock);
	mfs_mutex_unlock(&q->lock);
}

void copy_queue_trim(CopyQueue *q)
{
	mfs_mutex_lock(&q->lock);
	q->trim_gen++;
	mfs_cond_broadcast(&q->cond);
	mfs_mutex_unlock(&q->lock);
}
