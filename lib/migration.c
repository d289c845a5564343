/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The migration job: a whole tree moved to a target directory while it is
 * in use, by I/O mirroring, ending in a quiesce-and-switch.  This file is
 * the job itself: its start, its state (one MigState, mig-state.h), its
 * thread, the control requests, the status.  The other parts are listed
 * in migration-int.h.
 *
 * Start.  With the namespace frozen the target is checked (mig-check.c)
 * and the tree walked once (mig-tree.c): every regular file gets a
 * MirrorFile.  Then a short stun registers the job as the tree's observer
 * (mig-namespace.c) and attaches each MirrorFile to its inode, if the
 * kernel has one; inodes looked up later find theirs at creation.  From
 * then on data changes go through the MirrorFiles (mirror-file.c) and
 * namespace changes are replayed on the target.
 *
 * Copy (mig-copier.c), then switch (mig-switch.c), on the job's thread.
 *
 * Failure and cancel.  A target error in any mirrored operation is
 * recorded and the guest goes on (mirror-file.c); the job STOPS.  The
 * thread then stuns briefly to detach every mirror and the observer, and
 * removes what it made on the target: the names it created at the
 * target's root, which it tracks.
 *
 * Lock order, and what Migration.lock may be held across: lock.h.
 */
#define _GNU_SOURCE
#include "migration-int.h"
#include "mig-options.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void mig_hook(Migration *mig, const char *point)
{
	if (mig->hook)
		mig->hook(mig->fs, point, mig->hook_opaque);
	mfs_test_crash_point(point);
}

static Migration *migration_new(Mfs *fs)
{
	Migration *mig = g_new0(Migration, 1);

	mig->fs = fs;
	mig->dst_root_fd = -1;
	mig->old_root_fd = -1;
	mig->lock_fd = -1;
	mfs_mutex_init(&mig->lock);
	mfs_mutex_init(&mig->ckpt_lock);
	mfs_mutex_init(&mig->job_lock);
	mfs_cond_init(&mig->cond);
	mig->objects =
	    g_hash_table_new_full(mfs_inode_key_hash, mfs_inode_key_equal, NULL, mig_object_free);
	mig->files = g_ptr_array_new();
	mig->root_names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_queue_init(&mig->events);
	return mig;
}

static void migration_free(void *job)
{
	Migration *mig = job;

	if (!mig)
		return;
	if (mig->thread)
		g_thread_join(mig->thread);
	g_ptr_array_free(mig->files, TRUE);
	g_hash_table_destroy(mig->objects);
	/* After the MirrorFiles that record into it. */
	g_clear_pointer(&mig->intents, intent_log_free);
	if (mig->resume)
		g_hash_table_destroy(mig->resume);
	g_hash_table_destroy(mig->root_names);
	mig_final_status_free(mig);
	if (mig->dst_root_fd >= 0)
		close(mig->dst_root_fd);
	if (mig->old_root_fd >= 0)
		close(mig->old_root_fd);
	if (mig->lock_fd >= 0)
		close(mig->lock_fd);
	g_free(mig->source);
	g_free(mig->target);
	g_strfreev(mig->only);
	g_free(mig->error);
	g_free(mig->held);
	g_free(mig->mismatch);
	g_free(mig->walk_error);
	g_strfreev(mig->job);
	g_free(mig->record);
	mig_events_clear(mig);
	g_strfreev(mig->target_keep);
	mfs_cond_clear(&mig->cond);
	mfs_mutex_clear(&mig->ckpt_lock);
	mfs_mutex_clear(&mig->job_lock);
	mfs_mutex_clear(&mig->lock);
	g_free(mig);
}

MigState mig_state(Migration *mig)
{
	MigState s;

	mfs_mutex_lock(&mig->lock);
	s = mig->state;
	mfs_mutex_unlock(&mig->lock);
	return s;
}

/* Log the states an operator follows; @lost: metadata the target refused. */
static void announce(Migration *mig, MigState s, unsigned lost)
{
	if (s == MIG_SWITCHED && lost)
		g_warning("migration %s -> %s: the target holds the files without %u owner(s) or "
		          "extended attribute(s) it refused (the first was logged)",
		          mig->source, mig->target, lost);
	if (s == MIG_SWITCHED)
		g_message("migration %s -> %s: switched (stun %.3f ms)", mig->source, mig->target,
		          mig->stun_ns / 1e6);
	else if (s == MIG_STOPPED)
		g_message("migration %s -> %s: stopped with the daemon; its next start resumes it",
		          mig->source, mig->target);
	else if (s == MIG_MIRRORED || s == MIG_SWITCHING || s == MIG_CANCELLED || s == MIG_FAILED)
		g_message("migration %s -> %s: %s", mig->source, mig->target, mig_state_name(s));
	if (s == MIG_MIRRORED || s == MIG_SWITCHING || s == MIG_SWITCHED || s == MIG_STOPPED ||
	    s == MIG_CANCELLED || s == MIG_FAILED)
		mig_state_event(mig, s);
}

void mig_enter_locked(Migration *mig, MigState to)
{
	if (to == MIG_STOPPING)
		mig->before = mig->state;
	mig->state = to;
	mfs_cond_broadcast(&mig->cond);
}

bool mig_set_state(Migration *mig, MigState from, MigState to)
{
	unsigned lost;

	mfs_mutex_lock(&mig->lock);
	if (mig->state != from) {
		mfs_mutex_unlock(&mig->lock);
		return false;
	}
	mig_enter_locked(mig, to);
	lost = mig->meta_lost;
	mfs_mutex_unlock(&mig->lock);
	announce(mig, to, lost);
	return true;
}

void mig_fail(Migration *mig, const char *fmt, ...)
{
	g_autofree char *why = NULL;
	const char *late = NULL;
	va_list ap;

	va_start(ap, fmt);
	why = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	mfs_mutex_lock(&mig->lock);
	if (mig_state_mirrors_changes(mig->state)) {
		mig->error = g_steal_pointer(&why);
		mig_enter_locked(mig, MIG_STOPPING);
	} else if (mig_state_stopping(mig->state)) {
		/* A failure that stops the job was recorded first; a cancel stays one. */
		late = mig->error ? NULL : "while cancelling";
	} else {
		late = mig->state == MIG_COMMITTED || mig->state == MIG_SWITCHED
		           ? "after the switch"
		           : "after it ended";
	}
	mfs_mutex_unlock(&mig->lock);
	if (late)
		g_warning("migration %s -> %s: %s: %s", mig->source, mig->target, late, why);
}

void mig_commit(Migration *mig)
{
	g_autofree char *late = NULL;

	mfs_mutex_lock(&mig->lock);
	/* Nothing fails inside the stun but us; should it, the journal has decided. */
	if (mig->state == MIG_STOPPING && mig->before == MIG_SWITCHING)
		late = g_steal_pointer(&mig->error);
	mig_enter_locked(mig, MIG_COMMITTED);
	mfs_mutex_unlock(&mig->lock);
	if (late)
		g_warning("migration %s -> %s: switched despite: %s", mig->source, mig->target,
		          late);
}

static gpointer migration_thread(gpointer data);

int mfs_migration_start(Mfs *fs, const MfsMigOptions *opts, char **error)
{
	return mig_start(fs, opts, false, error);
}

int mig_start(Mfs *fs, const MfsMigOptions *opts, bool from_record, char **error)
{
	g_autoptr(GPtrArray) ended = NULL;
	MfsMigOptions recorded = *opts;
	Migration *mig;
	struct stat st;
	bool fresh = true;
	int ret;

	*error = NULL;
	mig = migration_new(fs);
	ret = mfs_mig_options_check(opts, &mig->chunk_size, error);
	if (ret < 0)
		goto out_free;
	mig->hook = opts->hook;
	mig->hook_opaque = opts->hook_opaque;
	mig->manual_switch = opts->manual_switch;
	mig->stop_on_target_error = opts->stop_on_target_error;
	mig->verify = opts->verify ? MFS_MIG_VERIFY_PENDING : MFS_MIG_VERIFY_NONE;
	mig->delete_source = opts->delete_source;
	mig->no_clone = opts->no_clone;
	mig->speed_bps = opts->speed_bps;
	mig->guest_share = opts->guest_share;
	mig->checkpoint_bytes =
	    opts->checkpoint_bytes ? opts->checkpoint_bytes : MFS_DEFAULT_CHECKPOINT;
	/* The same job given again at a restart (-o target=): a pause its record kept holds. */
	recorded.paused = opts->paused || (opts->resume && mig_recorded_paused(fs, opts->target));
	mig->job = mfs_mig_options_to_job(&recorded);
	mig->only = opts->only ? g_strdupv(opts->only) : NULL;

	/*
	 * Before the freeze: a scan of /proc takes a while on a busy host, and
	 * it is a snapshot whenever it runs.  (A migration under way is refused
	 * below in any case.)
	 */
	{
		int root_fd;
		g_autofree char *served = mfs_served_dir_dup_fd(fs, &root_fd);

		ret = root_fd >= 0 ? mig_check_writers(served, root_fd, mig->only, error) : 0;
		if (root_fd >= 0)
			close(root_fd);
		if (ret < 0)
			goto out_free;
	}
	mfs_freeze_namespace(fs);
	mig->source = mfs_served_dir_frozen(fs);
	ret = mig_check_beside_jobs(fs, mig, opts->target, error);
	/* A job recorded that did not resume holds its entries: an operator's start must wait. */
	if (ret == 0 && !from_record)
		ret = mig_check_beside_records(fs, mig, opts->target, error);
	if (ret == 0)
		ret = mig_check_only(fs, mig, error);
	if (ret == 0)
		ret = mig_check_target(fs, mig, opts, &fresh, error);
	if (ret < 0)
		goto out_unlock;
	if (!fresh && opts->resume)
		mig_resume_read(mig);
	else
		mig->ckpt_gen = (uint64_t)g_get_real_time();
	ret = journal_write(mig->dst_root_fd,
	                    &(Journal){.state = "copying",
	                               .source = mig->source,
	                               .target = mig->target,
	                               .home = mig->target_home,
	                               .keep = mig->target_keep},
	                    false);
	if (ret < 0) {
		*error = g_strdup_printf("target '%s': cannot write its journal: %s", opts->target,
		                         g_strerror(-ret));
		goto out_unlock;
	}
	if (fstat(mfs_root_fd(fs), &st) < 0) {
		ret = -errno;
		*error = g_strdup_printf("source: %s", g_strerror(errno));
		goto out_cleanup;
	}
	mig_object_add(mig, &st, dup(mig->dst_root_fd), NULL);
	mig->state = MIG_COPYING;
	mig->walking = true;
	/* Our partial copy, or the old home of a migration back: an image of the source. */
	ret = mig_walk_tree(mig, mfs_root_fd(fs), fresh,
	                    (!fresh && mig->target_keep) || mig->target_home, error);
	mig->walking = false;
	if (ret < 0)
		goto out_cleanup;
	mfs_test_crash_point("walked");
	/* Nobody sees the job yet: a pause its record kept holds from the start. */
	if (recorded.paused)
		mig->state = MIG_PAUSED;
	mig_checkpoints_begin(mig);
	mig->record = mig->only ? journal_job_record_name(mig->target) : g_strdup(MFS_JOURNAL_NAME);
	mig_job_record(mig);

	/*
	 * Attach the mirrors in a stun: no write may be half-way when they
	 * appear.  The oldest jobs that ended go, with their status.
	 */
	ended = mig_jobs_to_drop(fs);
	mfs_stun(fs);
	for (guint i = 0; i < ended->len; i++)
		mfs_drop_job_stunned(fs, g_ptr_array_index(ended, i));
	mig->id = mig_next_job_id();
	mfs_keep_job_stunned(fs, mig, migration_free);
	/* mig_check_beside_jobs() counted those that observe: there is room. */
	ret = mfs_observe_stunned(fs, &mig_observer, mig);
	g_assert(ret == 0);
	mig_attach_mirrors_stunned(fs, mig, true);
	mfs_unstun(fs);
	mfs_thaw_namespace(fs);
	for (guint i = 0; i < ended->len; i++)
		migration_free(g_ptr_array_index(ended, i));

	mig_state_event(mig, recorded.paused ? MIG_PAUSED : MIG_COPYING);
	if (recorded.paused)
		g_message("migration %s -> %s: paused, as it was left (mirrorfsctl resume goes on)",
		          mig->source, mig->target);
	if (!opts->defer_thread)
		mig->thread = mfs_thread_new("mirrorfs-copier", migration_thread, mig);
	return 0;

out_cleanup:
	/* Nothing was attached yet: remove what the walk made, and the journal. */
	{
		GHashTableIter it;
		gpointer name;

		g_hash_table_iter_init(&it, mig->root_names);
		while (g_hash_table_iter_next(&it, &name, NULL))
			mig_remove_tree_at(mig->dst_root_fd, name);
		mig_target_journal_undo(mig);
	}
out_unlock:
	mfs_thaw_namespace(fs);
out_free:
	mig->state = MIG_FAILED;
	migration_free(mig);
	return ret;
}

void mig_drop_objects(Migration *mig)
{
	mig_keep_final_status(mig);
	mfs_mutex_lock(&mig->lock);
	g_ptr_array_set_size(mig->files, 0);
	g_hash_table_remove_all(mig->objects);
	mfs_mutex_unlock(&mig->lock);
	/* After the MirrorFiles that record into it; its mapping would keep the target busy. */
	g_clear_pointer(&mig->intents, intent_log_free);
}

/*
 * Detach every mirror and the observer, remove what we made on the
 * target; end CANCELLED, or FAILED when the job recorded an error.  A
 * daemon that stops (keep_copy) keeps the copy and the job for its next
 * start instead.
 */
static void migration_abort(Migration *mig)
{
	Mfs *fs = mig->fs;
	GHashTableIter it;
	gpointer name;
	MigState end;
	bool keep;

	mfs_freeze_namespace(fs);
	mfs_stun(fs);
	mfs_mutex_lock(&mig->lock);
	if (mig_state_mirrors_changes(mig->state))
		mig_enter_locked(mig, MIG_STOPPING); /* a prepared job never launched */
	mig_enter_locked(mig, MIG_UNDOING);
	keep = mig->keep_copy && !mig->error;
	mfs_mutex_unlock(&mig->lock);
	mig_attach_mirrors_stunned(fs, mig, false);
	mfs_unobserve_stunned(fs, mig);
	mfs_unstun(fs);
	mfs_thaw_namespace(fs);

	if (keep) {
		mig_checkpoint_final(mig);
		mig_drop_objects(mig);
		goto let_go;
	}
	/* First: a cancel that dies half-way is not resumed by the next start. */
	mig_job_forget(mig);
	mig_drop_objects(mig);
	mfs_test_crash_point("abort-detached");
	g_hash_table_iter_init(&it, mig->root_names);
	while (g_hash_table_iter_next(&it, &name, NULL)) {
		int ret = mig_remove_tree_at(mig->dst_root_fd, name);

		if (ret < 0)
			g_warning("migration %s -> %s: cannot remove '%s' from the target: %s",
			          mig->source, mig->target, (char *)name, g_strerror(-ret));
	}
	mfs_test_crash_point("abort-removed");
	mig_target_journal_undo(mig);
let_go:
	/* Let go of the target entirely: its file system can be unmounted now. */
	close(mig->dst_root_fd);
	mig->dst_root_fd = -1;
	if (mig->lock_fd >= 0)
		close(mig->lock_fd);
	mig->lock_fd = -1;
	mfs_mutex_lock(&mig->lock);
	if (mig->error)
		g_warning("migration %s -> %s failed: %s", mig->source, mig->target, mig->error);
	end = mig->error ? MIG_FAILED : keep ? MIG_STOPPED : MIG_CANCELLED;
	mfs_mutex_unlock(&mig->lock);
	mig_set_state(mig, MIG_UNDOING, end);
}

typedef enum { STEP_ON, STEP_AGAIN, STEP_STOP } Step;

/*
 * All is copied: COPYING (or PAUSED after the last chunk) to MIRRORED;
 * again when a held target error came after the copier's last look
 * (@held_gen), stop when the job stopped.
 */
static Step all_copied(Migration *mig, uint64_t held_gen)
{
	Step step;

	mfs_mutex_lock(&mig->lock);
	if (mig->state != MIG_COPYING && mig->state != MIG_PAUSED)
		step = STEP_STOP;
	else if (mig->held_gen != held_gen)
		step = STEP_AGAIN;
	else
		step = STEP_ON;
	if (step == STEP_ON)
		mig_enter_locked(mig, MIG_MIRRORED);
	mfs_mutex_unlock(&mig->lock);
	if (step == STEP_ON)
		announce(mig, MIG_MIRRORED, 0);
	return step;
}

/* Whether a verify pass is asked for and not yet passed or failed. */
static bool verify_due(Migration *mig)
{
	bool due;

	mfs_mutex_lock(&mig->lock);
	due = mig->verify == MFS_MIG_VERIFY_PENDING || mig->verify == MFS_MIG_VERIFY_RUNNING;
	mfs_mutex_unlock(&mig->lock);
	return due;
}

/*
 * MIRRORED to SWITCHING: at once, or when a switch is requested (manual);
 * again when a held target error paused the job meanwhile, and when it
 * was resumed already too (COPYING: the hold and the resume may both come
 * before this thread looks; only a stop ends the job).
 */
static Step switch_due(Migration *mig)
{
	Step step;

	mfs_mutex_lock(&mig->lock);
	/* After differences, only a cancel ends it (request() refuses a switch). */
	if (!mig->manual_switch && mig->state == MIG_MIRRORED &&
	    mig->verify != MFS_MIG_VERIFY_FAILED)
		mig_enter_locked(mig, MIG_SWITCHING);
	while (mig->state == MIG_MIRRORED)
		mfs_cond_wait(&mig->cond, &mig->lock);
	step = mig->state == MIG_SWITCHING                             ? STEP_ON
	       : mig->state == MIG_PAUSED || mig->state == MIG_COPYING ? STEP_AGAIN
	                                                               : STEP_STOP;
	mfs_mutex_unlock(&mig->lock);
	if (step == STEP_ON)
		announce(mig, MIG_SWITCHING, 0);
	return step;
}

static gpointer migration_thread(gpointer data)
{
	Migration *mig = data;

	Step step = STEP_AGAIN;
	uint64_t held_gen;

	mig_hook(mig, "started");
	/* Again and again only after held target errors (on_target_error=stop). */
	while (step == STEP_AGAIN) {
		if (!mig_copier_run(mig, &held_gen))
			goto stop;
		/* A manual switch may be hours away: a restart meanwhile copies nothing again. */
		if (mig->manual_switch)
			mig_checkpoint(mig);
		step = all_copied(mig, held_gen);
		if (step != STEP_ON)
			continue;
		mig_hook(mig, "mirrored");
		if (verify_due(mig)) {
			int verified = mig_verify_run(mig);

			if (verified < 0) {
				/* Held (and maybe resumed already): copy again, then verify. */
				MigState now = mig_state(mig);

				step = now == MIG_PAUSED || now == MIG_COPYING ? STEP_AGAIN
				                                               : STEP_STOP;
				continue;
			}
		}
		step = switch_due(mig);
	}
	if (step == STEP_STOP || mig_switch(mig) < 0)
		goto stop;
	mig_drop_objects(mig);
	/* Before "switched" is announced, so that whoever waits for it finds it done. */
	if (mig->delete_source && !mig->keep_source)
		mig_delete_source(mig);
	/*
	 * The last of the source the daemon held: the old disk can go now.
	 * The tree holds the target by descriptors of its own (the served
	 * root, the placements): the job, kept for its status, lets go of
	 * it, or a move on from here could not unmount it.
	 */
	close(mig->old_root_fd);
	mig->old_root_fd = -1;
	close(mig->dst_root_fd);
	mig->dst_root_fd = -1;
	mig_set_state(mig, MIG_COMMITTED, MIG_SWITCHED);
	return NULL;

stop:
	migration_abort(mig);
	return NULL;
}

/*
 * A control request: its range checked, then decided by the state
 * machine (mig-state.c) under the job's lock, and applied.
 */
static int request_job(Migration *mig, MigRequest r, uint64_t arg)
{
	MigState next;
	int ret;

	if ((r == MIG_REQ_SPEED && arg > MFS_MAX_SIZE) ||
	    (r == MIG_REQ_GUEST_SHARE && arg > MFS_MAX_GUEST_SHARE))
		return -ERANGE;
	mfs_mutex_lock(&mig->lock);
	ret = mig_request_decide(mig->state, r, mig->manual_switch, &next);
	/* Not before the verify pass has passed, and never after it failed. */
	if ((ret == 0 || ret == -EALREADY) && r == MIG_REQ_SWITCH &&
	    mig->verify == MFS_MIG_VERIFY_FAILED)
		ret = -EBADMSG;
	else if (ret == 0 && r == MIG_REQ_SWITCH && mig->verify != MFS_MIG_VERIFY_NONE &&
	         mig->verify != MFS_MIG_VERIFY_PASSED)
		ret = -EINPROGRESS;
	if (ret == 0) {
		if (r == MIG_REQ_RESUME)
			g_clear_pointer(&mig->held, g_free); /* the operator says it is fixed */
		if (r == MIG_REQ_SPEED)
			mig->speed_bps = arg;
		else if (r == MIG_REQ_GUEST_SHARE)
			mig->guest_share = (unsigned)arg;
		if (next != mig->state)
			mig_enter_locked(mig, next);
		/* A new limit or share counts at once: the copier waits on cond. */
		mfs_cond_broadcast(&mig->cond);
	}
	mfs_mutex_unlock(&mig->lock);
	if (ret == 0 && (r == MIG_REQ_PAUSE || r == MIG_REQ_RESUME))
		mig_event(mig, MFS_MIG_EVENT_STATE, r == MIG_REQ_PAUSE ? "paused" : "copying", NULL,
		          -1, NULL);
	/* A restart resumes the job with the limits the operator set last, paused if it was. */
	if (ret == 0 && (r == MIG_REQ_SPEED || r == MIG_REQ_GUEST_SHARE))
		mig_job_set(mig, r == MIG_REQ_SPEED ? "speed" : "guest_share", arg);
	if (ret == 0 && (r == MIG_REQ_PAUSE || r == MIG_REQ_RESUME))
		mig_job_record_pause(mig);
	return ret;
}

static int request(Mfs *fs, const char *job, MigRequest r, uint64_t arg)
{
	Migration *mig;
	int ret = mig_select(fs, job, &mig);

	return ret < 0 ? ret : request_job(mig, r, arg);
}

int mfs_migration_pause(Mfs *fs, const char *job)
{
	return request(fs, job, MIG_REQ_PAUSE, 0);
}

int mfs_migration_resume(Mfs *fs, const char *job)
{
	return request(fs, job, MIG_REQ_RESUME, 0);
}

int mfs_migration_set_speed(Mfs *fs, const char *job, uint64_t speed_bps)
{
	return request(fs, job, MIG_REQ_SPEED, speed_bps);
}

int mfs_migration_set_guest_share(Mfs *fs, const char *job, unsigned percent)
{
	return request(fs, job, MIG_REQ_GUEST_SHARE, percent);
}

int mfs_migration_switch(Mfs *fs, const char *job)
{
	return request(fs, job, MIG_REQ_SWITCH, 0);
}

int mfs_migration_cancel(Mfs *fs, const char *job)
{
	return request(fs, job, MIG_REQ_CANCEL, 0);
}

/* Wait for @mig (which the caller keeps kept). */
static MfsMigState wait_for(Migration *mig, MfsMigState until, int timeout_ms)
{
	gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
	MfsMigState state;

	mfs_mutex_lock(&mig->lock);
	for (;;) {
		state = mig_state_public(mig->state, mig->before);
		if (state == until || !mig_state_live(mig->state) ||
		    (until == MFS_MIG_MIRRORED && state > MFS_MIG_MIRRORED))
			break;
		if (timeout_ms >= 0) {
			if (!mfs_cond_wait_until(&mig->cond, &mig->lock, deadline))
				break;
		} else {
			mfs_cond_wait(&mig->cond, &mig->lock);
		}
	}
	state = mig_state_public(mig->state, mig->before);
	mfs_mutex_unlock(&mig->lock);
	return state;
}

MfsMigState mfs_migration_wait(Mfs *fs, const char *job, MfsMigState until, int timeout_ms)
{
	Migration *mig;

	/* Several running, none named: the newest (mig_select()'s pick). */
	if (mig_select(fs, job, &mig) < 0 && !mig)
		return MFS_MIG_IDLE;
	return wait_for(mig, until, timeout_ms);
}

void mfs_migration_launch(Mfs *fs)
{
	g_autoptr(GPtrArray) jobs = mfs_jobs(fs);

	for (guint i = 0; i < jobs->len; i++) {
		Migration *mig = g_ptr_array_index(jobs, i);

		if (!mig->thread && mig_state_live(mig_state(mig)))
			mig->thread = mfs_thread_new("mirrorfs-copier", migration_thread, mig);
	}
}

void mfs_migration_shutdown(Mfs *fs)
{
	g_autoptr(GPtrArray) jobs = mfs_jobs(fs);

	for (guint i = 0; i < jobs->len; i++) {
		Migration *mig = g_ptr_array_index(jobs, i);

		/* Not cancelled: stopped, to be resumed by the next start. */
		mfs_mutex_lock(&mig->lock);
		mig->keep_copy = true;
		mfs_mutex_unlock(&mig->lock);
		if (mig->thread)
			request_job(mig, MIG_REQ_CANCEL, 0);
		else if (mig_state_live(mig_state(mig)))
			migration_abort(mig); /* prepared, never launched: undo the start here */
	}
	for (guint i = 0; i < jobs->len; i++)
		wait_for(g_ptr_array_index(jobs, i), MFS_MIG_STOPPED, -1);
}
