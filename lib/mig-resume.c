/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Checkpoints, and resuming a copy from them.
 *
 * Every checkpoint interval of data copied, the copier records each
 * walked file's cursor in the target (checkpoint.c): a restarted
 * migration that finds its own partial copy there starts each file where
 * its record allows instead of at 0.  What the record may be trusted for
 * depends on how the last run ended:
 *
 *   - The daemon died (kill -9, a crash, an abort): the page cache lived
 *     on, with every byte the copier and the mirrored writes put in the
 *     target.  Below its cursor a file's target then equals its source,
 *     but for the mirrored changes that were half-way: reached the source
 *     and not yet the target.  The intent log (intent-log.c) names those;
 *     they are copied again first.  Without a readable log, a file the
 *     guest changed is copied from the start.
 *   - The machine rebooted: the page cache is gone, and with it any
 *     unflushed mirrored write, on one side and not the other for all we
 *     know.  Only a file that no mirrored change ever reached keeps its
 *     cursor, and only because its target was flushed (fdatasync) before
 *     the cursor was recorded, durably.  The first mirrored change of a
 *     file whose durable record says "unchanged" records "changed",
 *     durably, before it is made (mirror_file_set_change_handler()).
 *
 * The job itself is recorded in the source (mig-record.c).  A daemon
 * that stops cleanly (unmount, SIGTERM) first flushes both sides and
 * records every file as unchanged: then even a reboot keeps it all.
 *
 * A file is known again by its target path and its source's inode
 * number; a cursor is never trusted beyond either side's size.  Only a
 * start made before the mount serves may resume (MfsMigOptions.resume):
 * otherwise a guest write between the walk and the mirrors' attach would
 * reach the source alone, below a cursor that says the target has it.
 */
#define _GNU_SOURCE
#include "checkpoint.h"
#include "mig-options.h"
#include "migration-int.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
	uint64_t cursor;
	uint64_t src_ino;
	bool changed;
	GArray *recopy; /* off_t pairs: [start, end) */
} MigResume;

static void resume_free(gpointer p)
{
	MigResume *r = p;

	g_array_unref(r->recopy);
	g_free(r);
}

static void on_intent(uint32_t id, off_t start, off_t end, void *opaque)
{
	MigResume *r = g_hash_table_lookup(opaque, GUINT_TO_POINTER(id));

	if (r) {
		g_array_append_val(r->recopy, start);
		g_array_append_val(r->recopy, end);
	}
}

void mig_resume_read(Migration *mig)
{
	g_auto(Checkpoints) c = {0};
	g_autoptr(GHashTable) by_id = g_hash_table_new(NULL, NULL);
	bool same_boot, log_ok = false;
	guint kept = 0;

	mig->ckpt_gen = (uint64_t)g_get_real_time();
	if (checkpoints_read(mig->dst_root_fd, &c) < 0 || strcmp(c.source, mig->source) != 0)
		return;
	mig->ckpt_gen = MAX(mig->ckpt_gen, c.gen + 1);
	/* Its trust is not ours to know file by file: the next record is flushed. */
	mig->ckpt_inherited = true;
	mig->resume = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, resume_free);
	for (guint i = 0; i < c.files->len; i++) {
		CheckpointFile *f = &g_array_index(c.files, CheckpointFile, i);
		MigResume *r = g_new0(MigResume, 1);

		r->cursor = f->cursor;
		r->src_ino = f->src_ino;
		r->changed = f->changed;
		r->recopy = g_array_new(FALSE, FALSE, sizeof(off_t));
		g_hash_table_insert(by_id, GUINT_TO_POINTER(f->id), r);
		g_hash_table_replace(mig->resume, g_steal_pointer(&f->path), r);
	}
	same_boot = *c.boot && strcmp(c.boot, checkpoints_boot_id()) == 0;
	if (same_boot)
		log_ok = intent_log_read(mig->dst_root_fd, c.gen, on_intent, by_id) == 0;
	/* Without both, a changed file's two sides may differ anywhere below its cursor. */
	if (!log_ok) {
		GHashTableIter it;
		MigResume *r;

		g_hash_table_iter_init(&it, mig->resume);
		while (g_hash_table_iter_next(&it, NULL, (gpointer *)&r))
			if (r->changed)
				g_hash_table_iter_remove(&it);
	}
	kept = g_hash_table_size(mig->resume);
	g_message("migration %s -> %s: resuming from the checkpoints of %u of %u files (%s)",
	          mig->source, mig->target, kept, c.files->len,
	          !same_boot ? "after a reboot: only files the guest never changed"
	          : !log_ok  ? "no intent log: only files the guest never changed"
	                     : "after the daemon stopped");
}

uint64_t mig_resume_file(Migration *mig, MirrorFile *mf, int dst_fd, const struct stat *st)
{
	g_autofree char *path = NULL;
	MigResume *r;
	struct stat tst;
	uint64_t cursor;
	bool changed;

	if (!mig->resume)
		return 0;
	path = mig_target_relpath(mig, dst_fd);
	r = g_hash_table_lookup(mig->resume, path);
	if (!r || r->src_ino != (uint64_t)st->st_ino || fstat(dst_fd, &tst) < 0)
		return 0;
	/* Never beyond either side: a truncate below the cursor may have come since. */
	cursor = MIN(r->cursor, (uint64_t)MIN(st->st_size, tst.st_size));
	mirror_file_resume_at(mf, (off_t)cursor, r->changed);
	for (guint i = 0; i + 1 < r->recopy->len; i += 2)
		mirror_file_recopy(mf, g_array_index(r->recopy, off_t, i),
		                   g_array_index(r->recopy, off_t, i + 1));
	changed = r->changed;
	/* One file a record: another name of it (a hard link) starts at 0. */
	g_hash_table_remove(mig->resume, path);
	/*
	 * An unchanged file's cursor in any record is one a reboot may trust
	 * (its data was flushed first, checkpoint_write_locked()).
	 */
	return changed ? 0 : cursor;
}

typedef enum {
	CKPT_VOLATILE,     /* not flushed: a reboot may find it or the last durable one */
	CKPT_DURABLE,      /* flushed, whatever it says */
	CKPT_IF_NEEDED,    /* flushed only if a reboot would trust something else */
	CKPT_FIRST_CHANGE, /* flushed only if a reboot may trust the file now changing */
} CkptMode;

typedef struct {
	MigObject *obj;
	off_t cursor;
	bool changed;
} CkptEntry;

/* What a reboot would trust of an entry recorded durably now. */
static uint64_t reboot_trust(const CkptEntry *e)
{
	return e->changed || e->cursor <= 0 ? 0 : (uint64_t)e->cursor;
}

/*
 * Whether the record must be flushed.  A flush stalls the guest's writes
 * queued on the target's disk behind it (on some disks for most of a
 * second), so it is paid only when a reboot would learn something from
 * it: an unchanged file copied further, a file it trusted now changed, or
 * names moved under an earlier durable record.  A crash without a reboot
 * needs no flush: the page cache outlives the daemon.
 */
static bool ckpt_must_flush(Migration *mig, CkptMode mode, const GArray *entries,
                            const MirrorFile *changing)
{
	if (mode == CKPT_DURABLE)
		return true;
	if (mode == CKPT_VOLATILE)
		return false;
	if (mig->ckpt_inherited)
		return true;
	if (mode == CKPT_IF_NEEDED && g_atomic_int_get(&mig->ckpt_names_moved))
		return true;
	for (guint i = 0; i < entries->len; i++) {
		const CkptEntry *e = &g_array_index(entries, CkptEntry, i);

		if (mode == CKPT_FIRST_CHANGE && e->obj->mf != changing)
			continue;
		if (reboot_trust(e) != e->obj->trusted)
			return true;
	}
	return false;
}

/*
 * Under ckpt_lock.  Returns 0 or the target's -errno, with *@failed the
 * file whose target would not flush, if that was it (the caller reports
 * it once the lock is let go: mirror_file_target_failed()).  @changing:
 * the file of a CKPT_FIRST_CHANGE.
 *
 * A record that is not flushed may reach the disk before a reboot, or
 * not: it never lets a reboot trust more of a file than the last flushed
 * one did (an unchanged file's cursor is cut to its trusted one).
 */
static int checkpoint_write_locked(Migration *mig, CkptMode mode, const MirrorFile *changing,
                                   MirrorFile **failed)
{
	g_auto(Checkpoints) c = {0};
	g_autoptr(GArray) entries = g_array_new(FALSE, FALSE, sizeof(CkptEntry));
	bool durable;
	int ret = 0;

	checkpoints_init(&c);
	c.source = g_strdup(mig->source);
	c.boot = g_strdup(checkpoints_boot_id());
	c.gen = mig->ckpt_gen;
	mfs_mutex_lock(&mig->lock);
	for (guint i = 0; i < mig->files->len && i < mig->n_walked; i++) {
		CkptEntry e = {.obj = g_ptr_array_index(mig->files, i)};

		g_array_append_val(entries, e);
	}
	mfs_mutex_unlock(&mig->lock);
	for (guint i = 0; i < entries->len; i++) {
		CkptEntry *e = &g_array_index(entries, CkptEntry, i);

		e->cursor = mirror_file_checkpoint(e->obj->mf, &e->changed);
	}
	durable = ckpt_must_flush(mig, mode, entries, changing);
	if (durable) {
		/* Cleared first: a name moved while this one is written flushes the next. */
		g_atomic_int_set(&mig->ckpt_names_moved, 0);
		mig_hook(mig, "checkpoint-flush");
	}
	for (guint i = 0; i < entries->len; i++) {
		CkptEntry *e = &g_array_index(entries, CkptEntry, i);
		CheckpointFile f = {
		    .id = e->obj->id, .src_ino = e->obj->key.ino, .changed = e->changed};
		off_t cursor = e->cursor;

		if (!durable && !e->changed)
			cursor = MIN(cursor, (off_t)e->obj->trusted);
		if (cursor <= 0)
			continue;
		/*
		 * The flush is for a reboot, which trusts only unchanged files;
		 * after a crash, the page cache holds what the cursor says.
		 */
		if (durable && !e->changed) {
			ret = mirror_file_sync_target(e->obj->mf);
			if (ret < 0) {
				*failed = e->obj->mf;
				break;
			}
		}
		f.cursor = (uint64_t)cursor;
		f.path = mig_target_relpath(mig, mirror_file_target_fd(e->obj->mf));
		g_array_append_val(c.files, f);
	}
	if (ret == 0)
		ret = checkpoints_write(mig->dst_root_fd, &c, durable);
	if (!durable)
		return ret;
	if (ret < 0) {
		/* What the disk holds now is not known: the next record is flushed. */
		mig->ckpt_inherited = true;
		return ret;
	}
	mig->ckpt_inherited = false;
	for (guint i = 0; i < entries->len; i++) {
		CkptEntry *e = &g_array_index(entries, CkptEntry, i);

		e->obj->trusted = reboot_trust(e);
	}
	return 0;
}

static int checkpoint_locked(Migration *mig, CkptMode mode, const MirrorFile *changing,
                             MirrorFile **failed)
{
	int ret = checkpoint_write_locked(mig, mode, changing, failed);

	if (ret < 0 && !*failed && !mig->ckpt_failed) {
		mig->ckpt_failed = true;
		g_warning("migration %s -> %s: cannot record a checkpoint in the target: %s (a "
		          "restart would copy again what was copied since the last one)",
		          mig->source, mig->target, g_strerror(-ret));
	}
	return ret;
}

/*
 * A checkpoint, and what a target that would not flush means: the pages
 * that did not make it are not known, so the file fails, or, held
 * (on_target_error=stop), is copied again from 0.
 */
static void checkpoint(Migration *mig, CkptMode mode, const MirrorFile *changing)
{
	MirrorFile *failed = NULL;
	int ret;

	mfs_mutex_lock(&mig->ckpt_lock);
	ret = checkpoint_locked(mig, mode, changing, &failed);
	mfs_mutex_unlock(&mig->ckpt_lock);
	if (failed)
		mirror_file_target_failed(failed, ret, 0);
}

void mig_checkpoint(Migration *mig)
{
	checkpoint(mig, CKPT_IF_NEEDED, NULL);
}

void mig_checkpoint_names_moved(Migration *mig)
{
	g_atomic_int_set(&mig->ckpt_names_moved, 1);
}

void mig_checkpoint_lowered_locked(Migration *mig, bool durable)
{
	MirrorFile *failed = NULL;

	if (checkpoint_write_locked(mig, durable ? CKPT_DURABLE : CKPT_VOLATILE, NULL, &failed) ==
	    0)
		return;
	/* No record rather than one that trusts what the target may lack. */
	checkpoints_remove(mig->dst_root_fd);
	journal_sync_dir(mig->dst_root_fd);
	/* Whether the removal reached the disk is not known either. */
	mig->ckpt_inherited = true;
	if (failed)
		mig_lower_cursor(mig, failed, 0);
}

/*
 * A file's first mirrored change, before it is made (the file now counts
 * as changed, mirror_file_checkpoint()).  Recorded at once, so that a
 * crash restarts it with the intent log; durably only where a reboot
 * might otherwise trust the file as unchanged.
 */
static void on_first_change(MirrorFile *mf, void *opaque)
{
	checkpoint(opaque, CKPT_FIRST_CHANGE, mf);
}

void mig_checkpoints_begin(Migration *mig)
{
	g_autoptr(GPtrArray) files = g_ptr_array_new();

	g_clear_pointer(&mig->resume, g_hash_table_destroy);
	mfs_mutex_lock(&mig->lock);
	mig->n_walked = mig->files->len;
	for (guint i = 0; i < mig->files->len; i++)
		g_ptr_array_add(files, g_ptr_array_index(mig->files, i));
	mfs_mutex_unlock(&mig->lock);
	/*
	 * The record first, with this run's ids, then the log that uses them:
	 * a crash in between leaves a log of the old generation, ignored, and
	 * a record whose cursors stop below every range still to copy again.
	 * Not flushed: a fresh copy has nothing to record, and a resumed one
	 * only cursors its last durable record holds too.  A flush here would
	 * stall the guest's writes at every start (see journal.c).
	 */
	mfs_mutex_lock(&mig->ckpt_lock);
	checkpoint_locked(mig, CKPT_VOLATILE, NULL, &(MirrorFile *){NULL});
	mfs_mutex_unlock(&mig->ckpt_lock);
	mig->intents = intent_log_create(mig->dst_root_fd, mig->ckpt_gen);
	if (!mig->intents)
		g_message("migration %s -> %s: the target cannot hold an intent log (%s): after a "
		          "crash, files the guest changed will be copied again from the start",
		          mig->source, mig->target, g_strerror(errno));
	for (guint i = 0; i < files->len; i++) {
		MigObject *obj = g_ptr_array_index(files, i);

		if (mig->intents)
			mirror_file_set_intent_log(obj->mf, mig->intents, obj->id);
		mirror_file_set_change_handler(obj->mf, on_first_change, mig);
	}
}

void mig_checkpoints_remove(Migration *mig)
{
	checkpoints_remove(mig->dst_root_fd);
	intent_log_remove(mig->dst_root_fd);
}

void mig_checkpoint_final(Migration *mig)
{
	g_autoptr(GPtrArray) files = g_ptr_array_new();

	mfs_mutex_lock(&mig->lock);
	for (guint i = 0; i < mig->files->len && i < mig->n_walked; i++)
		g_ptr_array_add(files, g_ptr_array_index(mig->files, i));
	mfs_mutex_unlock(&mig->lock);
	/* A file that cannot be flushed is not trusted at all: copied whole. */
	for (guint i = 0; i < files->len; i++) {
		MirrorFile *mf = ((MigObject *)g_ptr_array_index(files, i))->mf;

		if (mirror_file_settle(mf) < 0)
			mirror_file_lower_cursor(mf, 0);
	}
	checkpoint(mig, CKPT_DURABLE, NULL);
}
