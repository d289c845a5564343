/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Threads and locks of the engine and the daemon.
 *
 * Locks are thin wrappers over pthreads rather than GLib's, because
 * GLib's GMutex is a bare futex on Linux that ThreadSanitizer and
 * helgrind cannot see.  Debug builds make mutexes error-checking, so a
 * double lock or an unlock by another thread aborts at once.  Conditions
 * wait on the monotonic clock.  A failing lock call is a bug, not an
 * error to return: it aborts.
 *
 * Lock order.  This is the one place it is written; the files that take
 * these locks point here.  A thread takes a lock only while it holds none
 * below it in this list (any above may be skipped):
 *
 *   1. Mfs.ns_lock (rwlock).  Namespace changes take it shared, or
 *      exclusive while a job mirrors them (both sides must see them in
 *      one order); a job's walk and its switch take it exclusive.
 *   2. The gate (Mfs.gate, gate.h): every operation but read enters it,
 *      once, never nested (a stun closing it waits for every operation
 *      inside, so one entering twice would wait for itself).  A stun is
 *      ns_lock exclusive and the gate closed.  Its own mutex is gate.c's.
 *   3. Mfs.inodes_lock: the inode table and every nlookup.  Held across no
 *      system call.
 *   4. Migration.lock: the job's state and tables.  Held across no I/O on
 *      the source or the target (the status dups descriptors under it
 *      and reads their /proc/self/fd links after).
 *   5. MirrorFile.lock: a leaf.  Held across no I/O; a MirrorFile's hooks
 *      and error handler are called without it.
 *
 * Migration.job_lock, the job's record in the source, is held across the
 * record's write: taken with none of 3-5 held (the switch takes it in its
 * stun, after 1 and 2); only 4 is taken under it.
 *
 * CopyQueue.lock (copy-queue.c) is a leaf too: taken with none of 1-5
 * held, held across no job, and no lock is taken under it.
 *
 * Mfs.files_lock, the table of open files, is taken with none of 3-5
 * held, and no lock is taken under it.
 *
 * Threads.  Every thread is started with mfs_thread_start() (or, by an
 * owner that keeps a GThread, mfs_thread_new()), which names it and
 * starts it with signals blocked, and is joined by its owner before the
 * daemon exits:
 *
 *   mirrorfs-fuse    the session loop's workers (fuse/loop.c): cancelled
 *                    and joined when the session ends;
 *   mirrorfs-stop    reports a stop refused while files are open
 *                    (fuse/main.c): joined after the session loop;
 *   mirrorfs-ctl     the control server (control.c): joined by
 *                    control_server_stop();
 *   mirrorfs-copier  a migration's: ended by mfs_migration_shutdown() (or
 *                    by itself), joined by migration_free(), at the next
 *                    start or in mfs_free();
 *   mirrorfs-copyio  the copier's queue (copy-queue.c): started and
 *                    joined by the copier thread, around each copy pass.
 *
 * (libfuse's own loop, kept for -o clone_fd, starts and joins its
 * workers itself, with SIGTERM, SIGINT and SIGHUP blocked.)
 *
 * Blocked signals: all but those a fault of the thread itself raises
 * (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS), which cannot go to
 * another thread and whose handlers (a sanitizer's report) must run.  So
 * SIGTERM, SIGINT and SIGHUP are delivered to the main thread only
 * (fuse/main.c's stop handler), and interrupt no worker's system call.
 * A name is at most 15 bytes: Linux keeps no more, and GLib drops a
 * longer one silently.
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

/*
 * Start a thread running @fn(@arg), named @name and with signals blocked
 * (above); its handle in *@out, for pthread_join().  0 or -errno (-ERANGE:
 * the name is too long).
 */
int mfs_thread_start(const char *name, void *(*fn)(void *), void *arg, pthread_t *out);
/* The same as a GThread, for g_thread_join(); aborts on failure, as g_thread_new() does. */
GThread *mfs_thread_new(const char *name, GThreadFunc fn, gpointer arg);

#endif
