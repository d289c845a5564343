/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The copier: the job's thread copies the files one after another, a
 * few chunks of a file in flight at once on its queue's threads
 * (mirror-copy.c claims and retires them, by the chunk protocol of
 * mirror-file.c), and paces itself: pause, the speed limit, and bursts
 * and rests sized by the pacer (pacer.c) so that a busy guest keeps its
 * share of its own rate.  Mirroring never iterates, so the copy ends
 * however hard the guest writes.
 */
#define _GNU_SOURCE
#include "migration-int.h"
#include "pacer.h"

#include <errno.h>

static void rate_sample_locked(Migration *mig, uint64_t copied)
{
	unsigned i = mig->rate_n++ % RATE_SAMPLES;

	mig->rate_t[i] = g_get_monotonic_time();
	mig->rate_b[i] = copied;
}

/* The data copied so far, and the guest operations admitted, over all files. */
static void count_files_locked(Migration *mig, uint64_t *copied, uint64_t *guest_ops)
{
	*copied = *guest_ops = 0;
	for (guint i = 0; i < mig->files->len; i++) {
		MigObject *obj = g_ptr_array_index(mig->files, i);
		MirrorFileStats st;

		mirror_file_stats(obj->mf, &st);
		*copied += st.bytes_copied;
		*guest_ops += st.guest_ops;
	}
}

/* Every operation the guests made through the mount: reads served, changes admitted. */
static uint64_t guest_use(Migration *mig)
{
	uint64_t copied, guest_ops, reads = mfs_reads_served(mig->fs);

	mfs_mutex_lock(&mig->lock);
	count_files_locked(mig, &copied, &guest_ops);
	mfs_mutex_unlock(&mig->lock);
	return reads + guest_ops;
}

/*
 * Start the writeback of what mirrored writes left in the targets' page
 * cache, without waiting for it.  Left to the kernel, it would be written
 * at the switch's flush, all at once: seconds of random writes in front
 * of the guest's.  Done every WRITEBACK_PERIOD_US of copying, it is
 * spread over the copy.
 */
#define WRITEBACK_PERIOD_US (250 * 1000)

static void start_target_writeback(Migration *mig)
{
	g_autoptr(GPtrArray) files = g_ptr_array_new();

	mfs_mutex_lock(&mig->lock);
	for (guint i = 0; i < mig->files->len; i++)
		g_ptr_array_add(files, ((MigObject *)g_ptr_array_index(mig->files, i))->mf);
	mfs_mutex_unlock(&mig->lock);
	for (guint i = 0; i < files->len; i++)
		mirror_file_start_writeback(g_ptr_array_index(files, i));
}

/*
 * How large a chunk may grow (mirror-file.c): no more than a quarter of a
 * second of the speed limit, so that a limited copier still moves evenly.
 */
static size_t grown_chunk_limit(uint64_t speed_bps)
{
	return speed_bps ? MIN(MFS_MAX_GROWN_CHUNK, speed_bps / 4) : MFS_MAX_GROWN_CHUNK;
}

/*
 * The copier's state from one chunk to the next: its queue and the
 * chunks in flight, the pacer's bursts and rests (pacer.c), the speed
 * limit's window.
 */
typedef struct {
	Migration *mig;
	CopyQueue *q;   /* NULL: one chunk at a time, copied by the job's thread */
	MirrorFile *mf; /* whose chunks may be in flight, or NULL */
	bool in_flight; /* chunks of mf may be in flight */
	int drain_err;  /* a chunk in flight failed the file */
	Pacer pacer;
	gint64 burst_start;    /* the burst under way began; 0: none */
	uint64_t burst_bytes;  /* moved in it */
	uint64_t burst_use;    /* guest_use() as it began */
	gint64 rest_from;      /* the rest owed to the guest began; 0: none owed */
	gint64 rest_us;        /* its length */
	unsigned rest_share;   /* the guest share it was owed under */
	uint64_t rest_use;     /* guest_use() as it began */
	uint64_t last_use;     /* guest_use() after the last chunk */
	bool guest_busy;       /* during the last chunk: no growing chunks */
	gint64 window_start;   /* the speed limit's window: since the limit changed, or a pause */
	uint64_t window_bytes; /* copied in the window */
	uint64_t speed_bps;    /* the limit the window counts under */
	gint64 writeback_due;
	uint64_t since_checkpoint; /* data copied since the last checkpoint */
	bool stopped;              /* the job stopped while the copier paced */
} Copier;

/* Chunks in flight on a queue of this many threads, at most; the pacer picks how many. */
#define COPIER_THREADS 4

static void copier_init(Copier *c, Migration *mig, bool queued)
{
	*c = (Copier){.mig = mig, .window_start = g_get_monotonic_time()};
	c->writeback_due = c->window_start;
	/* Without threads, one chunk at a time: slower under a guest, never wrong. */
	if (queued && !(c->q = copy_queue_new(COPIER_THREADS)))
		g_warning("migration %s -> %s: the copier's threads: %s: one chunk at a time",
		          mig->source, mig->target, g_strerror(errno));
	pacer_init(&c->pacer, c->q ? copy_queue_threads(c->q) : 1);
	mfs_mutex_lock(&mig->lock);
	c->speed_bps = mig->speed_bps;
	mfs_mutex_unlock(&mig->lock);
	c->last_use = guest_use(mig);
}

static void copier_fini(Copier *c)
{
	copy_queue_free(c->q);
	c->q = NULL;
}

/* Retire the chunks in flight: nothing claimed while the copier waits. */
static void copier_drain(Copier *c)
{
	uint64_t copied = 0;
	int ret;

	if (!c->in_flight)
		return;
	c->in_flight = false;
	ret = mirror_file_copy_drain(c->mf, c->q, &copied);
	if (ret < 0 && !c->drain_err)
		c->drain_err = ret;
	c->burst_bytes += copied;
	c->window_bytes += copied;
	c->since_checkpoint += copied;
}

/*
 * Between chunks: honour pause, cancel, errors, the speed limit, and the
 * rest owed to the guest.  Before any wait, the chunks in flight are
 * retired: a claimed chunk holds the guest's writes there.  The share
 * and the limit are read afresh at every wake-up, so that a new one
 * counts at once.  Returns false when the pass must stop: the job left
 * @run (COPYING for the copy, MIRRORED for the verify pass) other than
 * for a pause.
 */
static bool copier_may_go_on(Copier *c, MigState run)
{
	Migration *mig = c->mig;
	bool go_on, paused = false;
	gint64 now;

	mfs_mutex_lock(&mig->lock);
	for (;;) {
		gint64 due = c->rest_from ? c->rest_from + c->rest_us : 0;
		bool go;

		/* A new share counts at once: the next burst's rest follows it. */
		if (mig->guest_share != c->rest_share)
			due = 0;
		now = g_get_monotonic_time();
		if (mig->speed_bps)
			due = MAX(due, c->window_start + (gint64)(c->window_bytes * G_USEC_PER_SEC /
			                                          mig->speed_bps));
		paused |= mig->state == MIG_PAUSED;
		go = mig->state == run && now >= due;
		if (!go && c->in_flight) {
			mfs_mutex_unlock(&mig->lock);
			copier_drain(c);
			mfs_mutex_lock(&mig->lock);
			continue;
		}
		if (go || (mig->state != run && mig->state != MIG_PAUSED))
			break;
		if (mig->state == MIG_PAUSED)
			mfs_cond_wait(&mig->cond, &mig->lock);
		else
			mfs_cond_wait_until(&mig->cond, &mig->lock, due);
	}
	if (c->rest_from) {
		gint64 rested = MAX(0, MIN(now, c->rest_from + c->rest_us) - c->rest_from);

		mig->rested_us += rested;
	}
	/* The limit counts from the resume: a pause's idle time is no credit. */
	if (paused) {
		c->window_start = now;
		c->window_bytes = 0;
	}
	go_on = mig->state == run;
	mfs_mutex_unlock(&mig->lock);
	if (c->rest_from && go_on && !paused) {
		/* The guest's rate alone, from a rest that nothing cut short. */
		pacer_rest_end(&c->pacer, now - c->rest_from, guest_use(mig) - c->rest_use);
	}
	c->rest_from = 0;
	return go_on;
}

/*
 * A burst ended: tell the pacer what it moved and what the guest did
 * meanwhile; it says how long to rest and how many chunks the next
 * burst keeps in flight.
 */
static void copier_burst_end(Copier *c, bool copying)
{
	Migration *mig = c->mig;
	uint64_t use = guest_use(mig), copied_total, guest_ops;
	gint64 now = g_get_monotonic_time();
	unsigned share;

	mfs_mutex_lock(&mig->lock);
	share = mig->guest_share;
	if (copying) {
		count_files_locked(mig, &copied_total, &guest_ops);
		rate_sample_locked(mig, copied_total);
	}
	if (mig->speed_bps != c->speed_bps) {
		/* A new limit counts from now. */
		c->speed_bps = mig->speed_bps;
		c->window_start = now;
		c->window_bytes = 0;
	}
	mfs_mutex_unlock(&mig->lock);
	c->rest_share = share;
	c->rest_us = pacer_burst_end(&c->pacer, c->burst_bytes, now - c->burst_start,
	                             use - c->burst_use, share);
	if (c->rest_us > 0) {
		c->rest_from = now;
		c->rest_use = use;
	}
	c->burst_start = 0;
}

static void copier_burst_begin(Copier *c)
{
	if (c->burst_start)
		return;
	c->burst_start = g_get_monotonic_time();
	c->burst_bytes = 0;
	c->burst_use = guest_use(c->mig);
}

/*
 * Pace, then copy the next chunk of @mf: 1 while the file has more, 0 at
 * its end, or the copy's -errno; -ECANCELED and c->stopped when the job
 * stopped meanwhile.
 */
static int copier_next_chunk(Copier *c, MirrorFile *mf)
{
	Migration *mig = c->mig;
	uint64_t copied, use;
	int ret;

	c->mf = mf;
	if (!copier_may_go_on(c, MIG_COPYING)) {
		c->stopped = true;
		return c->drain_err ? c->drain_err : -ECANCELED;
	}
	if (c->drain_err) {
		ret = c->drain_err;
		c->drain_err = 0;
		return ret;
	}
	copier_burst_begin(c);
	/*
	 * The MirrorFile grows its chunk while the guest leaves that file
	 * alone; the guest's reads, and its writes to the other files, hold
	 * up its requests just as much: no growth either.
	 */
	mirror_file_set_max_chunk(mf, c->guest_busy ? 0 : grown_chunk_limit(c->speed_bps));
	mig_hook(mig, "chunk-begin");
	/*
	 * A test's hook stops the copier between two chunks, and may act as
	 * a guest from this thread: one chunk in flight at a time then (the
	 * chunk protocol's own tests keep several in flight).
	 */
	ret = mirror_file_copy_next(mf, c->q, mig->hook ? 1 : c->pacer.depth, &copied);
	c->in_flight = ret == 1 && c->q;
	use = guest_use(mig);
	c->guest_busy = use != c->last_use;
	c->last_use = use;
	c->burst_bytes += copied;
	c->window_bytes += copied;
	c->since_checkpoint += copied;
	if (ret != 1 || g_get_monotonic_time() - c->burst_start >= PACER_BURST_US)
		copier_burst_end(c, true);
	if (g_get_monotonic_time() >= c->writeback_due) {
		start_target_writeback(mig);
		c->writeback_due = g_get_monotonic_time() + WRITEBACK_PERIOD_US;
	}
	if (c->since_checkpoint >= mig->checkpoint_bytes) {
		mig_checkpoint(mig);
		c->since_checkpoint = 0;
		mig_hook(mig, "checkpoint");
	}
	mig_hook(mig, "chunk");
	return ret;
}

/*
 * Under the job's lock: every file at its end, or the first that is not
 * (a held target error brought its cursor down after the copier passed).
 */
static guint first_not_copied_locked(Migration *mig)
{
	for (guint i = 0; i < mig->files->len; i++) {
		MirrorFileStats st;

		mirror_file_stats(((MigObject *)g_ptr_array_index(mig->files, i))->mf, &st);
		if (!st.mirrored)
			return i;
	}
	return mig->files->len;
}

/* Copy one file to its end; false when the pass must stop (c->stopped) or failed. */
static bool copier_copy_file(Copier *c, MigObject *obj)
{
	Migration *mig = c->mig;
	MirrorFileStats st;
	int ret;

	mirror_file_stats(obj->mf, &st);
	do
		ret = copier_next_chunk(c, obj->mf);
	while (ret == 1);
	/* Nothing in flight past here: 0 and errors come with none, a stop drained. */
	if (ret == 0 && !st.mirrored) {
		g_autofree char *path = mig_target_relpath(mig, mirror_file_target_fd(obj->mf));

		mig_event(mig, MFS_MIG_EVENT_FILE, "mirrored", NULL, -1, path);
	}
	if (c->stopped)
		return false;
	if (ret < 0) {
		mig_fail(mig, "copying: %s", g_strerror(-ret));
		return false;
	}
	return true;
}

bool mig_copier_run(Migration *mig, uint64_t *held_gen)
{
	bool done = false;
	Copier c;

	copier_init(&c, mig, true);
	for (guint i = 0;; i++) {
		MigObject *obj;

		mfs_mutex_lock(&mig->lock);
		if (i >= mig->files->len)
			i = first_not_copied_locked(mig);
		obj = i < mig->files->len ? g_ptr_array_index(mig->files, i) : NULL;
		*held_gen = mig->held_gen;
		mfs_mutex_unlock(&mig->lock);
		if (!obj) {
			done = true;
			break;
		}
		if (!copier_copy_file(&c, obj))
			break;
	}
	copier_fini(&c);
	return done;
}

/*
 * on_target_error=stop: the copier and every mirrored write meet the
 * target's failures here; see migration-int.h.
 */
/* The verify pass compares this much at a time. */
#define VERIFY_CHUNK (1u << 20)

/* A difference: counted, the first kept for the status, each logged. */
static void verify_mismatch(Migration *mig, MirrorFile *mf, off_t at)
{
	g_autofree char *path = mig_target_relpath(mig, mirror_file_target_fd(mf));
	g_autofree char *where =
	    g_strdup_printf("%s at offset %lld", path ? path : "(a file)", (long long)at);

	g_warning("migration %s -> %s: verify: %s differs between source and target", mig->source,
	          mig->target, where);
	mfs_mutex_lock(&mig->lock);
	mig->mismatches++;
	if (!mig->mismatch)
		mig->mismatch = g_steal_pointer(&where);
	mfs_mutex_unlock(&mig->lock);
}

/* Compare one file whole; false when the pass must stop (c->stopped) or failed. */
static bool verify_file(Copier *c, MirrorFile *mf, void *a, void *b)
{
	Migration *mig = c->mig;
	off_t pos = 0;

	for (;;) {
		off_t mismatch;
		int64_t n;

		if (!copier_may_go_on(c, MIG_MIRRORED)) {
			c->stopped = true;
			return false;
		}
		copier_burst_begin(c);
		n = mirror_file_verify(mf, pos, VERIFY_CHUNK, a, b, &mismatch);
		if (n == -EAGAIN)
			continue;
		if (n < 0) {
			g_autofree char *path = mig_target_relpath(mig, mirror_file_target_fd(mf));

			mig_fail(mig, "verify: %s: %s", path ? path : "(a file)",
			         g_strerror((int)-n));
			return false;
		}
		if (mismatch >= 0)
			verify_mismatch(mig, mf, mismatch);
		if (n == 0)
			return true;
		pos += n;
		mfs_mutex_lock(&mig->lock);
		mig->verify_bytes += (uint64_t)n;
		mfs_mutex_unlock(&mig->lock);
		c->burst_bytes += (uint64_t)n;
		c->window_bytes += (uint64_t)n;
		if (g_get_monotonic_time() - c->burst_start >= PACER_BURST_US)
			copier_burst_end(c, false);
		mig_hook(mig, "verify-chunk");
	}
}

int mig_verify_run(Migration *mig)
{
	g_autofree void *a = g_malloc(VERIFY_CHUNK), *b = g_malloc(VERIFY_CHUNK);
	g_autofree char *first = NULL;
	MfsMigVerify end;
	unsigned mismatches;
	Copier c;

	/* One chunk at a time: comparing reads both sides, and holds the guest's changes. */
	copier_init(&c, mig, false);
	mfs_mutex_lock(&mig->lock);
	mig->verify = MFS_MIG_VERIFY_RUNNING;
	mig->verify_bytes = 0;
	mig->mismatches = 0;
	g_clear_pointer(&mig->mismatch, g_free);
	mfs_mutex_unlock(&mig->lock);
	g_message("migration %s -> %s: verifying", mig->source, mig->target);
	for (guint i = 0;; i++) {
		MigObject *obj;

		mfs_mutex_lock(&mig->lock);
		obj = i < mig->files->len ? g_ptr_array_index(mig->files, i) : NULL;
		mfs_mutex_unlock(&mig->lock);
		if (!obj)
			break;
		if (!verify_file(&c, obj->mf, a, b))
			return -1;
	}
	mfs_mutex_lock(&mig->lock);
	mismatches = mig->mismatches;
	first = g_strdup(mig->mismatch);
	end = mismatches ? MFS_MIG_VERIFY_FAILED : MFS_MIG_VERIFY_PASSED;
	mig->verify = end;
	mfs_cond_broadcast(&mig->cond);
	mfs_mutex_unlock(&mig->lock);
	if (end == MFS_MIG_VERIFY_PASSED)
		g_message("migration %s -> %s: verified: source and target are the same",
		          mig->source, mig->target);
	else
		g_warning("migration %s -> %s: verify found %u difference(s), the first %s: not "
		          "switching; mirrorfsctl MOUNTPOINT cancel, then start again",
		          mig->source, mig->target, mismatches, first);
	mig_event(mig, MFS_MIG_EVENT_VERIFY, end == MFS_MIG_VERIFY_PASSED ? "passed" : "failed",
	          first, -1, NULL);
	return end == MFS_MIG_VERIFY_PASSED;
}

void mig_lower_cursor(Migration *mig, MirrorFile *mf, off_t from)
{
	mfs_mutex_lock(&mig->lock);
	mirror_file_lower_cursor(mf, from);
	mig->held_gen++;
	mfs_mutex_unlock(&mig->lock);
}

bool mig_hold(Migration *mig, MirrorFile *mf, int err, off_t from)
{
	g_autofree char *path = NULL, *why = NULL;
	bool holds, first = false;

	if (!mig->stop_on_target_error)
		return false;
	path = mig_target_relpath(mig, mirror_file_target_fd(mf));
	why = g_strdup_printf("target: %s: %s", path ? path : "(a file)", g_strerror(-err));
	/* No checkpoint computed before the lowering may be written after it. */
	mfs_mutex_lock(&mig->ckpt_lock);
	mfs_mutex_lock(&mig->lock);
	/* Not once the switch began: its flushes are the last word on the target. */
	holds = mig->state == MIG_COPYING || mig->state == MIG_PAUSED || mig->state == MIG_MIRRORED;
	if (holds) {
		/* Under the job's lock: the copier's last look sees the cursor and the count. */
		mirror_file_lower_cursor(mf, from);
		mig->held_gen++;
		first = !mig->held;
		g_free(mig->held);
		mig->held = g_strdup(why);
		if (mig->state != MIG_PAUSED)
			mig_enter_locked(mig, MIG_PAUSED);
	}
	mfs_mutex_unlock(&mig->lock);
	if (first)
		mig_event(mig, MFS_MIG_EVENT_STATE, "error-paused", why, -1, NULL);
	/*
	 * Before the guest's operation returns: a crash now must not find a
	 * record that trusts the target above the cursor.  Durably after a
	 * failed flush (from 0), which a reboot would otherwise trust.
	 */
	if (holds)
		mig_checkpoint_lowered_locked(mig, from == 0);
	mfs_mutex_unlock(&mig->ckpt_lock);
	if (first)
		g_warning("migration %s -> %s: paused on a target error: %s/%s: %s; the guests "
		          "go on; free the space or fix the target, then mirrorfsctl MOUNTPOINT "
		          "resume (or cancel)",
		          mig->source, mig->target, mig->target, path ? path : "(a file)",
		          g_strerror(-err));
	return holds;
}
