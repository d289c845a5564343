/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Per-file I/O mirroring.
 *
 * A file being migrated has a copy cursor, cp_offset: every byte below it
 * is already on the target.  The copier advances it one chunk at a time;
 * the guest keeps writing.  Three kinds of range are tracked under the
 * file's lock:
 *
 *   - the chunk in flight, [chunk_start, chunk_end), claimed by the
 *     copier while it reads the source and writes the target;
 *   - the guest operations in flight (write, fallocate, truncate), each
 *     a range admitted under the lock and released when it is done on
 *     both sides;
 *   - cp_offset itself, which only the copier moves (and truncate, down).
 *
 * Rules, and why they are enough:
 *
 * 1. A guest operation is admitted only when its range overlaps neither
 *    the chunk in flight nor another operation in flight.  At admission it
 *    decides, once, which part goes to both sides: [start, cp_offset).
 *    The part at or above cp_offset goes to the source only.
 *
 * 2. The copier claims its chunk first and only then waits for the
 *    operations in flight inside it to drain.  Once claimed, no new
 *    operation can enter the chunk (rule 1), so the drain ends: a stream
 *    of guest writes into the chunk cannot starve the copier.  Operations
 *    elsewhere are not held up at all.
 *
 * 3. The copier reads the chunk only after the drain, so every write that
 *    decided "source only" for a part of the chunk has reached the source
 *    before the copier reads it (no lost write).  cp_offset moves past the
 *    chunk under the lock, after the chunk is on the target, so no write
 *    can decide "source only" for a range the copier has already read.
 *
 * 4. Overlapping operations never run at the same time (rule 1), so they
 *    reach source and target in the same order, and both end with the
 *    same bytes.
 *
 * When the copier finds the cursor at the end of the source, it claims
 * everything from there to infinity, drains, sets the target's size to
 * the source's and marks the file mirrored (cp_offset = MIRROR_OFF_MAX):
 * from then on every change goes to both sides, growth included.
 *
 * The copier reads and writes through descriptors of its own opened with
 * O_DIRECT, where the file systems allow it.  A migration streams whole
 * images: through the page cache it would evict the host's cache and
 * pile up dirty pages, whose writeback then throttles every writer of the
 * target's disk, the guest's mirrored writes included.  A byte range is
 * written by one of the two paths at a time (the chunk in flight excludes
 * guest writes), and the kernel keeps direct and buffered I/O coherent.
 *
 * The chunk grows while the guest leaves the file alone: each chunk
 * copied without a guest operation admitted meanwhile makes the next one
 * twice as large, up to max_chunk; the first operation brings it back to
 * chunk_size.  (The owner sets max_chunk to 0 while the guest uses other
 * files, or reads: those pass no MirrorFile of this file.)  Large direct
 * writes are what it takes to copy at the disk's speed (the block layer
 * splits them into requests in parallel), and they cost a busy guest
 * most of its IOPS: measured under 4K random writes, 1 MiB chunks left
 * the guest 0.65x of its IOPS, 16 MiB ones 0.1x; idle, 16 MiB ones
 * copied in 0.6x the time of 1 MiB ones.
 *
 * Where source and target lie on one file system that shares blocks
 * between files (XFS with reflink, btrfs), the copier clones each data
 * extent instead (FICLONERANGE), as cp does by default: a chunk then costs
 * a metadata update, not its bytes' reads and writes.  The clone honours
 * the chunk protocol like a copy; the file system itself holds both files'
 * I/O for its duration.  Where a clone is refused (another file system,
 * none that can), the file is copied.  Cloned blocks stay shared with
 * the source until either side is written or the source deleted.
 *
 * A failure on the target (or of the copier) is never the guest's
 * failure: it is recorded, the file is detached (source only from then
 * on) and the owner is told, so that the migration aborts.
 *
 * MirrorFile.lock: where it stands in the lock order, and what it may be
 * held across, is written in lock.h.
 */
#define _GNU_SOURCE
#include "mirror-file-int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

MirrorFile *mirror_file_new(int src_fd, int dst_fd, size_t chunk_size, bool dst_fresh)
{
	MirrorFile *mf = g_new0(MirrorFile, 1);

	mf->src_fd = src_fd;
	mf->dst_fd = dst_fd;
	mf->chunk_size = mf->max_chunk = mf->next_chunk = chunk_size;
	mf->ops_seen = UINT64_MAX; /* nothing seen yet: start small */
	mf->dst_fresh = dst_fresh;
	mf->copy_src_direct = mf->copy_dst_direct = -1;
	mf->copy_clone = true;
	mf->copy_prealloc = true;
	mfs_mutex_init(&mf->lock);
	{
		struct stat st;

		/* Known from the start, so the status shows files not reached yet. */
		if (fstat(src_fd, &st) == 0)
			mf->size = st.st_size;
	}
	mfs_cond_init(&mf->cond);
	return mf;
}

void mirror_file_mark_mirrored(MirrorFile *mf)
{
	mfs_mutex_lock(&mf->lock);
	mf->cp_offset = MIRROR_OFF_MAX;
	mfs_mutex_unlock(&mf->lock);
}

void mirror_file_free(MirrorFile *mf)
{
	if (!mf)
		return;
	g_assert(!mf->inflight);
	while (mf->recopy) {
		Range *r = mf->recopy;

		mf->recopy = r->next;
		g_free(r);
	}
	mirror_copy_resources_free(mf);
	close(mf->src_fd);
	close(mf->dst_fd);
	mfs_cond_clear(&mf->cond);
	mfs_mutex_clear(&mf->lock);
	g_free(mf);
}

void mirror_file_set_max_chunk(MirrorFile *mf, size_t max_chunk)
{
	mf->max_chunk = MAX(max_chunk, mf->chunk_size);
}

void mirror_file_set_clone(MirrorFile *mf, bool clone)
{
	mf->copy_clone = clone;
}

void mirror_file_set_hook(MirrorFile *mf, MirrorHook hook, void *opaque)
{
	mf->hook = hook;
	mf->hook_opaque = opaque;
}

void mirror_file_set_error_handler(MirrorFile *mf, MirrorErrorFn fn, void *opaque)
{
	mf->on_error = fn;
	mf->error_opaque = opaque;
}

void mirror_file_set_hold_handler(MirrorFile *mf, MirrorHoldFn fn, void *opaque)
{
	mf->on_hold = fn;
	mf->hold_opaque = opaque;
}

void mirror_file_lower_cursor(MirrorFile *mf, off_t from)
{
	mfs_mutex_lock(&mf->lock);
	if (from < mf->cp_offset) {
		mf->cp_offset = from;
		mf->bytes_resumed = MIN(mf->bytes_resumed, (uint64_t)from);
		mf->dst_fresh = false;
	}
	mfs_mutex_unlock(&mf->lock);
}

void mirror_file_set_intent_log(MirrorFile *mf, IntentLog *log, uint32_t id)
{
	mf->intents = log;
	mf->intent_id = id;
}

void mirror_file_set_change_handler(MirrorFile *mf, MirrorChangeFn fn, void *opaque)
{
	mf->on_change = fn;
	mf->change_opaque = opaque;
}

void mirror_file_resume_at(MirrorFile *mf, off_t cursor, bool changed)
{
	mfs_mutex_lock(&mf->lock);
	mf->cp_offset = cursor;
	mf->change_told = changed;
	mf->bytes_resumed = (uint64_t)cursor;
	mfs_mutex_unlock(&mf->lock);
}

void mirror_file_recopy(MirrorFile *mf, off_t start, off_t end)
{
	Range *r;

	mfs_mutex_lock(&mf->lock);
	if (start < mf->cp_offset && end >= mf->cp_offset) {
		mf->bytes_resumed -= (uint64_t)(mf->cp_offset - start);
		mf->cp_offset = start;
	} else if (start < end && end < mf->cp_offset) {
		r = g_new0(Range, 1);
		r->start = start;
		r->end = end;
		r->next = mf->recopy;
		mf->recopy = r;
	}
	mfs_mutex_unlock(&mf->lock);
}

bool mirror_recopy_take(MirrorFile *mf, off_t *start, off_t *end)
{
	Range *r;

	mfs_mutex_lock(&mf->lock);
	r = mf->recopy;
	if (r)
		mf->recopy = r->next;
	mfs_mutex_unlock(&mf->lock);
	if (!r)
		return false;
	*start = r->start;
	*end = r->end;
	g_free(r);
	return true;
}

off_t mirror_file_checkpoint(MirrorFile *mf, bool *changed)
{
	off_t cursor;

	mfs_mutex_lock(&mf->lock);
	cursor = mf->detached ? 0 : mf->cp_offset;
	for (Range *r = mf->recopy; r; r = r->next)
		cursor = MIN(cursor, r->start);
	/* The range the copier is copying again is off the list, still claimed. */
	if (mf->chunk_start < mf->chunk_end)
		cursor = MIN(cursor, mf->chunk_start);
	*changed = mf->change_told || mf->change_telling;
	mfs_mutex_unlock(&mf->lock);
	return cursor;
}

/*
 * The first change that reaches both sides: the owner is told before it
 * is made (to record, durably, that the two sides are now written apart),
 * and any other change waits meanwhile.
 */
static void tell_first_change(MirrorFile *mf)
{
	mfs_mutex_lock(&mf->lock);
	while (mf->change_telling)
		mfs_cond_wait(&mf->cond, &mf->lock);
	if (!mf->change_told) {
		mf->change_telling = true;
		mfs_mutex_unlock(&mf->lock);
		mf->on_change(mf, mf->change_opaque);
		mfs_mutex_lock(&mf->lock);
		mf->change_telling = false;
		mf->change_told = true;
		mfs_cond_broadcast(&mf->cond);
	}
	mfs_mutex_unlock(&mf->lock);
}

void mirror_run_hook(MirrorFile *mf, MirrorHookPoint point, off_t start, off_t end)
{
	if (mf->hook)
		mf->hook(mf, point, start, end - start, mf->hook_opaque);
}

static bool overlaps(off_t a, off_t b, off_t c, off_t d)
{
	return a < d && c < b;
}

static bool overlaps_inflight_locked(MirrorFile *mf, off_t start, off_t end)
{
	for (Range *r = mf->inflight; r; r = r->next)
		if (overlaps(start, end, r->start, r->end))
			return true;
	return false;
}

static bool overlaps_chunk_locked(MirrorFile *mf, off_t start, off_t end)
{
	return mf->chunk_start < mf->chunk_end &&
	       overlaps(start, end, mf->chunk_start, mf->chunk_end);
}

/*
 * Rule 1: wait until [start, end) conflicts with nothing, register it and
 * return where its mirrored part ends (== start when there is none).
 */
static off_t range_admit(MirrorFile *mf, Range *r, off_t start, off_t end)
{
	gint64 t0 = 0;
	bool chunk_wait = false, tell;
	off_t mirror_end;

	mfs_mutex_lock(&mf->lock);
	while (!mf->detached) {
		bool on_chunk = overlaps_chunk_locked(mf, start, end);

		if (!on_chunk && !overlaps_inflight_locked(mf, start, end))
			break;
		chunk_wait |= on_chunk;
		if (!t0) {
			t0 = g_get_monotonic_time();
			if (mf->hook) {
				mfs_mutex_unlock(&mf->lock);
				mirror_run_hook(mf, MIRROR_HOOK_WRITE_WAITING, start, end);
				mfs_mutex_lock(&mf->lock);
				continue;
			}
		}
		mfs_cond_wait(&mf->cond, &mf->lock);
	}
	if (chunk_wait) {
		uint64_t ns = (uint64_t)(g_get_monotonic_time() - t0) * 1000;

		mf->waited_writes++;
		if (ns > mf->max_wait_ns)
			mf->max_wait_ns = ns;
	}
	mirror_end = mf->detached ? start : MIN(end, mf->cp_offset);
	if (mirror_end < start)
		mirror_end = start;
	r->start = start;
	r->end = end;
	r->intent = -1;
	r->next = mf->inflight;
	mf->inflight = r;
	mf->guest_ops++;
	if (mirror_end > start)
		mf->mirrored_writes++;
	tell = mirror_end > start && mf->on_change && !mf->change_told;
	mfs_mutex_unlock(&mf->lock);
	if (tell)
		tell_first_change(mf);
	/* Before either side changes: a restart must know the range may differ. */
	if (mirror_end > start && mf->intents)
		r->intent = intent_log_begin(mf->intents, mf->intent_id, start, mirror_end);
	mirror_run_hook(mf, MIRROR_HOOK_WRITE_ADMITTED, start, end);
	return mirror_end;
}

static void range_release_locked(MirrorFile *mf, Range *r)
{
	Range **p;

	/* Both sides hold the change (or the file is detached, and the copy abandoned). */
	if (r->intent >= 0)
		intent_log_end(mf->intents, r->intent);
	for (p = &mf->inflight; *p != r; p = &(*p)->next)
		g_assert(*p);
	*p = r->next;
	mfs_cond_broadcast(&mf->cond);
}

static void range_release(MirrorFile *mf, Range *r)
{
	mfs_mutex_lock(&mf->lock);
	range_release_locked(mf, r);
	mfs_mutex_unlock(&mf->lock);
}

/* Record the first target failure, detach, and tell the owner once. */
void mirror_fail(MirrorFile *mf, int err, bool on_source)
{
	bool first;

	mfs_mutex_lock(&mf->lock);
	first = mf->error == 0;
	if (first)
		mf->error = err;
	mf->detached = true;
	mfs_cond_broadcast(&mf->cond);
	mfs_mutex_unlock(&mf->lock);
	if (first && mf->on_error)
		mf->on_error(mf, err, on_source, mf->error_opaque);
}

bool mirror_file_target_failed(MirrorFile *mf, int err, off_t from)
{
	if (mf->on_hold && mf->on_hold(mf, err, from, mf->hold_opaque))
		return true;
	mirror_fail(mf, err, false);
	return false;
}

void mirror_file_detach(MirrorFile *mf)
{
	mfs_mutex_lock(&mf->lock);
	mf->detached = true;
	mfs_cond_broadcast(&mf->cond);
	mfs_mutex_unlock(&mf->lock);
}

int mirror_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ENOSPC;
		p += n;
		len -= n;
		off += n;
	}
	return 0;
}

ssize_t mirror_file_write(MirrorFile *mf, int src_fd, const void *buf, size_t len, off_t off)
{
	Range r;
	off_t mirror_end = range_admit(mf, &r, off, off + (off_t)len);
	ssize_t n = pwrite(src_fd, buf, len, off);
	ssize_t ret = n < 0 ? -errno : n;

	if (n > 0 && mirror_end > off) {
		int err;

		mfs_test_crash_point("mirror-half");
		err = mirror_pwrite_all(mf->dst_fd, buf, MIN((off_t)n, mirror_end - off), off);
		if (err < 0)
			mirror_file_target_failed(mf, err, off);
	}
	range_release(mf, &r);
	return ret;
}

int mirror_file_fallocate(MirrorFile *mf, int src_fd, int mode, off_t off, off_t len)
{
	Range r;
	off_t mirror_end = range_admit(mf, &r, off, off + len);
	int ret = fallocate(src_fd, mode, off, len) < 0 ? -errno : 0;

	if (ret == 0 && mirror_end > off) {
		/* Mirrored whole when the file is, so that growth is mirrored too. */
		off_t tlen = mirror_end == MIRROR_OFF_MAX ? len : mirror_end - off;

		if (fallocate(mf->dst_fd, mode, off, tlen) < 0)
			mirror_file_target_failed(mf, -errno, off);
	}
	range_release(mf, &r);
	return ret;
}

int mirror_file_truncate(MirrorFile *mf, int src_fd, off_t size)
{
	struct stat st;
	Range r;
	off_t mirror_end, from;
	int ret;

	if (fstat(src_fd, &st) < 0)
		return -errno;
	/* Everything from the lower of the two sizes up changes. */
	from = MIN(size, st.st_size);
	mirror_end = range_admit(mf, &r, from, MIRROR_OFF_MAX);
	ret = ftruncate(src_fd, size) < 0 ? -errno : 0;
	/*
	 * The target follows when the new end lies in its copied part; above
	 * the cursor the copier will find the new size by itself.
	 */
	if (ret == 0 && mirror_end > from && size <= mirror_end) {
		if (ftruncate(mf->dst_fd, size) < 0) {
			mirror_fail(mf, -errno, false);
		} else if (mirror_end != MIRROR_OFF_MAX) {
			mfs_mutex_lock(&mf->lock);
			mf->cp_offset = MIN(mf->cp_offset, size);
			mfs_mutex_unlock(&mf->lock);
		}
	}
	mfs_mutex_lock(&mf->lock);
	if (ret == 0)
		mf->size = size;
	range_release_locked(mf, &r);
	mfs_mutex_unlock(&mf->lock);
	return ret;
}

int mirror_file_fsync(MirrorFile *mf, int src_fd, bool datasync)
{
	int ret = (datasync ? fdatasync(src_fd) : fsync(src_fd)) < 0 ? -errno : 0;
	bool detached;

	mfs_mutex_lock(&mf->lock);
	detached = mf->detached;
	mfs_mutex_unlock(&mf->lock);
	if (ret == 0 && !detached) {
		/* The pages that did not make it are not known: all of it again. */
		if ((datasync ? fdatasync(mf->dst_fd) : fsync(mf->dst_fd)) < 0)
			mirror_file_target_failed(mf, -errno, 0);
	}
	return ret;
}

/*
 * Rule 2, second half: wait for the operations in the claimed chunk to
 * drain.  Returns whether the cursor is still at @start: a truncate that
 * was in flight when the chunk was claimed may have lowered it, and then
 * writes below @start went to the source only.
 */
static bool chunk_drain(MirrorFile *mf, off_t start, off_t end, off_t cursor)
{
	bool held;

	mirror_run_hook(mf, MIRROR_HOOK_CHUNK_CLAIMED, start, end);
	mfs_mutex_lock(&mf->lock);
	while (!mf->detached && overlaps_inflight_locked(mf, start, end))
		mfs_cond_wait(&mf->cond, &mf->lock);
	held = mf->cp_offset == cursor;
	mfs_mutex_unlock(&mf->lock);
	return held;
}

/* Rule 2: claim [start, end) for the copier and wait for the operations in it. */
bool mirror_chunk_claim(MirrorFile *mf, off_t start, off_t end)
{
	mfs_mutex_lock(&mf->lock);
	mf->chunk_start = start;
	mf->chunk_end = end;
	mfs_mutex_unlock(&mf->lock);
	return chunk_drain(mf, start, end, start);
}

bool mirror_chunk_extend(MirrorFile *mf, off_t start, off_t end, off_t cursor)
{
	mfs_mutex_lock(&mf->lock);
	mf->chunk_end = end;
	if (end <= start)
		mfs_cond_broadcast(&mf->cond); /* given back: writes there go on */
	mfs_mutex_unlock(&mf->lock);
	return end <= start || chunk_drain(mf, start, end, cursor);
}

/*
 * Release the chunk, moving the cursor to @new_cp when the copy succeeded,
 * unless a held target failure brought it down meanwhile, below the chunk.
 */
void mirror_chunk_release(MirrorFile *mf, off_t new_cp, uint64_t copied, uint64_t cloned)
{
	mfs_mutex_lock(&mf->lock);
	if (new_cp >= 0 && mf->cp_offset >= mf->chunk_start)
		mf->cp_offset = new_cp;
	mf->bytes_copied += copied + cloned;
	mf->bytes_cloned += cloned;
	mf->chunk_start = mf->chunk_end = 0;
	mfs_cond_broadcast(&mf->cond);
	mfs_mutex_unlock(&mf->lock);
}

/*
 * Claim @chunk bytes at the cursor, reading the cursor under the same
 * hold of the lock, and drain.  Returns 1 with *@start set, 0 when the
 * file is mirrored already, or the file's error.
 */
int mirror_chunk_claim_at_cursor(MirrorFile *mf, size_t chunk, off_t *start)
{
	for (;;) {
		int ret = 1;

		mfs_mutex_lock(&mf->lock);
		*start = mf->cp_offset;
		if (mf->error)
			ret = mf->error;
		else if (mf->detached)
			ret = -ECANCELED;
		else if (*start == MIRROR_OFF_MAX)
			ret = 0;
		if (ret == 1) {
			mf->chunk_start = *start;
			mf->chunk_end = *start + (off_t)chunk;
		}
		mfs_mutex_unlock(&mf->lock);
		if (ret != 1 || chunk_drain(mf, *start, *start + (off_t)chunk, *start))
			return ret;
		/* The cursor came down under the drain: claim again where it is. */
		mirror_chunk_release(mf, -1, 0, 0);
	}
}
