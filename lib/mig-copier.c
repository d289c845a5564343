/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The copier: the job's thread copies the files one after another, chunk
 * by chunk (mirror-file.c copies a chunk and keeps the guest's writes in
 * step with it), and paces itself between chunks: pause, the speed limit,
 * and rests that leave a busy guest its share of the disk.  Mirroring
 * never iterates, so the copy ends however hard the guest writes.
 */
#define _GNU_SOURCE
#include "migration-int.h"

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

/*
 * How long the copier rests after a chunk that took @chunk_us while the
 * guest changed a file: long enough that the guest has @guest_share
 * percent of the time to itself.  The copier and the guest share a disk
 * that knows no priority, and while a copier request is in flight the
 * guest's requests wait behind it: measured under 4K random writes at
 * iodepth 16, a copier going flat out left the guest 0.25x of its IOPS,
 * where the double writes of a mirrored file alone left it 0.8x.
 * Resting in proportion to the chunk's own time follows the disk: a
 * chunk slowed by the guest buys the guest a longer rest.  An idle guest
 * costs nothing.  The guest's reads count as much as its changes: the
 * copier's requests hold them up just the same.
 */
static gint64 copier_rest_us(gint64 chunk_us, unsigned guest_share)
{
	if (guest_share == 0 || guest_share >= 100 || chunk_us <= 0)
		return 0;
	return chunk_us * guest_share / (100 - guest_share);
}

/*
 * Between chunks: honour pause, cancel, errors, the speed limit, and the
 * rest owed to a busy guest for a chunk of @rest_chunk_us that ended at
 * @rest_from (0: none owed).  The share and the limit are read afresh at
 * every wake-up, so that a new one counts at once.  Returns false when
 * the pass must stop: the job left @run (COPYING for the copy, MIRRORED
 * for the verify pass) other than for a pause.
 */
static bool copier_may_go_on(Migration *mig, MigState run, gint64 window_start,
                             uint64_t window_bytes, gint64 rest_from, gint64 rest_chunk_us)
{
	gint64 now, rest_due = 0;
	bool go_on;

	mfs_mutex_lock(&mig->lock);
	for (;;) {
		gint64 due;

		now = g_get_monotonic_time();
		if (mig->state != run && mig->state != MIG_PAUSED)
			break;
		if (mig->state == MIG_PAUSED) {
			mfs_cond_wait(&mig->cond, &mig->lock);
			continue;
		}
		if (rest_from)
			rest_due = rest_from + copier_rest_us(rest_chunk_us, mig->guest_share);
		due = rest_due;
		if (mig->speed_bps)
			due = MAX(due, window_start + (gint64)(window_bytes * G_USEC_PER_SEC /
			                                       mig->speed_bps));
		if (now >= due)
			break;
		mfs_cond_wait_until(&mig->cond, &mig->lock, due);
	}
	if (rest_from)
		mig->rested_us += MAX(0, MIN(now, rest_due) - rest_from);
	go_on = mig->state == run;
	mfs_mutex_unlock(&mig->lock);
	return go_on;
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

/* The copier's pacing, carried from one chunk to the next. */
typedef struct {
	Migration *mig;
	gint64 window_start;   /* the speed limit's window, since the limit last changed */
	uint64_t window_bytes; /* copied in the window */
	uint64_t speed_bps;    /* the limit the window counts under */
	gint64 rest_from;      /* the rest owed to the guest for the last chunk: 0, none */
	gint64 rest_chunk_us;
	/* The guest's reads and admitted operations, summed: it used the mount when they move. */
	uint64_t guest_use;
	bool guest_busy; /* during the last chunk */
	gint64 writeback_due;
	uint64_t since_checkpoint; /* data copied since the last checkpoint */
	bool stopped;              /* the job stopped while the copier paced */
} Copier;

static void copier_init(Copier *c, Migration *mig)
{
	uint64_t copied, guest_ops;

	*c = (Copier){.mig = mig, .window_start = g_get_monotonic_time()};
	c->writeback_due = c->window_start;
	c->guest_use = mfs_reads_served(mig->fs);
	mfs_mutex_lock(&mig->lock);
	c->speed_bps = mig->speed_bps;
	count_files_locked(mig, &copied, &guest_ops);
	c->guest_use += guest_ops;
	mfs_mutex_unlock(&mig->lock);
}

/*
 * Pace, then copy the next chunk of @mf: 1 while the file has more, 0 at
 * its end, or the copy's -errno; -ECANCELED and c->stopped when the job
 * stopped meanwhile.
 */
/*
 * After a chunk of @moved bytes begun at @chunk_start: the speed window,
 * the rest owed to the guest if it used the mount meanwhile, and the
 * copier's rate (@copying).
 */
static void copier_account(Copier *c, uint64_t moved, gint64 chunk_start, bool copying)
{
	Migration *mig = c->mig;
	uint64_t copied_total, guest_ops, guest_use;

	c->window_bytes += moved;
	guest_use = mfs_reads_served(mig->fs);
	mfs_mutex_lock(&mig->lock);
	count_files_locked(mig, &copied_total, &guest_ops);
	if (copying)
		rate_sample_locked(mig, copied_total);
	/* Owe the guest a rest if it used a file during this chunk. */
	c->rest_from = 0;
	guest_use += guest_ops;
	c->guest_busy = guest_use != c->guest_use;
	c->guest_use = guest_use;
	if (c->guest_busy && moved) {
		c->rest_from = g_get_monotonic_time();
		c->rest_chunk_us = c->rest_from - chunk_start;
	}
	if (mig->speed_bps != c->speed_bps) {
		/* A new limit counts from now. */
		c->speed_bps = mig->speed_bps;
		c->window_start = g_get_monotonic_time();
		c->window_bytes = 0;
	}
	mfs_mutex_unlock(&mig->lock);
}

static int copier_next_chunk(Copier *c, MirrorFile *mf)
{
	Migration *mig = c->mig;
	uint64_t copied;
	gint64 chunk_start;
	int ret;

	if (!copier_may_go_on(mig, MIG_COPYING, c->window_start, c->window_bytes, c->rest_from,
	                      c->rest_chunk_us)) {
		c->stopped = true;
		return -ECANCELED;
	}
	/*
	 * The MirrorFile grows its chunk while the guest leaves that file
	 * alone; the guest's reads, and its writes to the other files, hold
	 * up its requests just as much: no growth either.
	 */
	mirror_file_set_max_chunk(mf, c->guest_busy ? 0 : grown_chunk_limit(c->speed_bps));
	chunk_start = g_get_monotonic_time();
	mig_hook(mig, "chunk-begin");
	ret = mirror_file_copy_next(mf, &copied);
	c->since_checkpoint += copied;
	copier_account(c, copied, chunk_start, true);
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

bool mig_copier_run(Migration *mig, uint64_t *held_gen)
{
	Copier c;

	copier_init(&c, mig);
	for (guint i = 0;; i++) {
		MirrorFileStats st;
		MigObject *obj;
		int ret;

		mfs_mutex_lock(&mig->lock);
		if (i >= mig->files->len)
			i = first_not_copied_locked(mig);
		obj = i < mig->files->len ? g_ptr_array_index(mig->files, i) : NULL;
		*held_gen = mig->held_gen;
		mfs_mutex_unlock(&mig->lock);
		if (!obj)
			return true;
		mirror_file_stats(obj->mf, &st);
		do
			ret = copier_next_chunk(&c, obj->mf);
		while (ret == 1);
		if (ret == 0 && !st.mirrored) {
			g_autofree char *path =
			    mig_target_relpath(mig, mirror_file_target_fd(obj->mf));

			mig_event(mig, MFS_MIG_EVENT_FILE, "mirrored", NULL, -1, path);
		}
		if (c.stopped)
			return false;
		if (ret < 0) {
			mig_fail(mig, "copying: %s", g_strerror(-ret));
			return false;
		}
	}
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
		gint64 chunk_start;
		off_t mismatch;
		int64_t n;

		if (!copier_may_go_on(mig, MIG_MIRRORED, c->window_start, c->window_bytes,
		                      c->rest_from, c->rest_chunk_us)) {
			c->stopped = true;
			return false;
		}
		chunk_start = g_get_monotonic_time();
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
		copier_account(c, (uint64_t)n, chunk_start, false);
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

	copier_init(&c, mig);
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
