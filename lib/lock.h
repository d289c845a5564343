/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Locks of the engine: thin wrappers over pthreads rather than GLib's,
 * because GLib's GMutex is a bare futex on Linux that ThreadSanitizer and
 * helgrind cannot see.  Debug builds make mutexes error-checking, so a
 * double lock or an unlock by another thread aborts at once.  Conditions
 * wait on the monotonic clock.  A failing lock call is a bug, not an
 * error to return: it aborts.
 */
#ifndef MFS_LOCK_H
#define MFS_LOCK_H

#include <glib.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

typedef pthread_mutex_t MfsMutex;
typedef pthread_cond_t MfsCond;
typedef pthread_rwlock_t MfsRwLock;

#define MFS_LOCK_CHECK(call)                                                                       \
	do {                                                                                       \
		int lock_err_ = (call);                                                            \
		if (G_UNLIKELY(lock_err_))                                                         \
			g_error("%s: %s", #call, g_strerror(lock_err_));                           \
	} while (0)

static inline void mfs_mutex_init(MfsMutex *m)
{
	pthread_mutexattr_t attr;

	pthread_mutexattr_init(&attr);
#ifndef NDEBUG
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
#endif
	MFS_LOCK_CHECK(pthread_mutex_init(m, &attr));
	pthread_mutexattr_destroy(&attr);
}

static inline void mfs_mutex_clear(MfsMutex *m)
{
	pthread_mutex_destroy(m);
}

static inline void mfs_mutex_lock(MfsMutex *m)
{
	MFS_LOCK_CHECK(pthread_mutex_lock(m));
}

static inline void mfs_mutex_unlock(MfsMutex *m)
{
	MFS_LOCK_CHECK(pthread_mutex_unlock(m));
}

static inline void mfs_cond_init(MfsCond *c)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	MFS_LOCK_CHECK(pthread_cond_init(c, &attr));
	pthread_condattr_destroy(&attr);
}

static inline void mfs_cond_clear(MfsCond *c)
{
	pthread_cond_destroy(c);
}

static inline void mfs_cond_wait(MfsCond *c, MfsMutex *m)
{
	MFS_LOCK_CHECK(pthread_cond_wait(c, m));
}

/* Wait until g_get_monotonic_time() reaches @deadline_us; false on time-out. */
static inline bool mfs_cond_wait_until(MfsCond *c, MfsMutex *m, gint64 deadline_us)
{
	struct timespec ts = {deadline_us / G_USEC_PER_SEC, (deadline_us % G_USEC_PER_SEC) * 1000};
	int err = pthread_cond_timedwait(c, m, &ts);

	if (err && err != ETIMEDOUT)
		g_error("pthread_cond_timedwait: %s", g_strerror(err));
	return err == 0;
}

static inline void mfs_cond_broadcast(MfsCond *c)
{
	MFS_LOCK_CHECK(pthread_cond_broadcast(c));
}

static inline void mfs_rwlock_init(MfsRwLock *l)
{
	MFS_LOCK_CHECK(pthread_rwlock_init(l, NULL));
}

static inline void mfs_rwlock_clear(MfsRwLock *l)
{
	pthread_rwlock_destroy(l);
}

static inline void mfs_rwlock_reader_lock(MfsRwLock *l)
{
	MFS_LOCK_CHECK(pthread_rwlock_rdlock(l));
}

static inline void mfs_rwlock_reader_unlock(MfsRwLock *l)
{
	MFS_LOCK_CHECK(pthread_rwlock_unlock(l));
}

static inline void mfs_rwlock_writer_lock(MfsRwLock *l)
{
	MFS_LOCK_CHECK(pthread_rwlock_wrlock(l));
}

static inline void mfs_rwlock_writer_unlock(MfsRwLock *l)
{
	MFS_LOCK_CHECK(pthread_rwlock_unlock(l));
}

#endif
