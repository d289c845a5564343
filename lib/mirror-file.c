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
 * Lock order: MirrorFile.lock is a leaf; no other lock is taken under it,
 * and no I/O is done under it.  Hooks and the error handler are called
 * without it.
 */
#define _GNU_SOURCE
#include "mirror-file.h"
#include "mfs-int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#define MIRROR_OFF_MAX   INT64_MAX
#define ROUND_UP(n, a)   (((n) + (a)-1) / (a) * (a))
#define ROUND_DOWN(n, a) ((n) / (a) * (a))

typedef struct Range Range;
struct Range {
	off_t start, end;
	Range *next;
};

struct MirrorFile {
	int src_fd;        /* immutable; the copier's */
	int dst_fd;        /* immutable */
	size_t chunk_size; /* immutable */
	size_t max_chunk;  /* set before use */
	size_t next_chunk; /* the copier's */
	uint64_t ops_seen; /* the copier's: guest_ops when it claimed its last chunk */
	bool dst_fresh;    /* immutable */
	MirrorHook hook;   /* set before use */
	void *hook_opaque;
	MirrorErrorFn on_error; /* set before use */
	void *error_opaque;
	void *copy_buf;            /* the copier's, aligned */
	size_t copy_buf_size;      /* the copier's */
	int copy_src_direct;       /* the copier's O_DIRECT twins of src_fd, dst_fd, */
	int copy_dst_direct;       /* or -1: not open, or no O_DIRECT there */
	bool copy_direct_tried;    /* the copier's: the twins were opened */
	bool copy_error_on_source; /* the copier's: its last error was the source's */
	bool copy_clone;           /* the copier's: try FICLONERANGE first */
	bool copy_prealloc;        /* the copier's: look for preallocated ranges in holes */

	MfsMutex lock;
	MfsCond cond;                 /* a range was released, or the file detached */
	off_t cp_offset;              /* protected by lock */
	off_t chunk_start, chunk_end; /* protected by lock; equal when none */
	Range *inflight;              /* protected by lock */
	bool detached;                /* protected by lock */
	int error;                    /* protected by lock */
	off_t size;                   /* protected by lock */
	uint64_t bytes_copied;        /* protected by lock */
	uint64_t bytes_cloned;        /* protected by lock: part of bytes_copied */
	uint64_t guest_ops;           /* protected by lock: operations admitted */
	uint64_t mirrored_writes;     /* protected by lock */
	uint64_t waited_writes;       /* protected by lock */
	uint64_t max_wait_ns;         /* protected by lock */
};

static void direct_close(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void copy_buf_release(MirrorFile *mf)
{
	if (mf->copy_buf)
		munmap(mf->copy_buf, mf->copy_buf_size);
	mf->copy_buf = NULL;
	mf->copy_buf_size = 0;
}

/* The copier is done with the file: give back what it held for it. */
static void copy_resources_free(MirrorFile *mf)
{
	direct_close(&mf->copy_src_direct);
	direct_close(&mf->copy_dst_direct);
	copy_buf_release(mf);
}

static int direct_reopen(int fd, int flags)
{
	char path[MFS_PROC_FD_LEN];

	mfs_proc_fd_path(fd, path);
	return open(path, flags | O_DIRECT | O_CLOEXEC);
}

static void copy_direct_open(MirrorFile *mf)
{
	if (mf->copy_direct_tried)
		return;
	mf->copy_direct_tried = true;
	/* Failing (EINVAL from tmpfs, for one) leaves the buffered path. */
	mf->copy_src_direct = direct_reopen(mf->src_fd, O_RDONLY);
	mf->copy_dst_direct = direct_reopen(mf->dst_fd, O_WRONLY);
}

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
	copy_resources_free(mf);
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

static void run_hook(MirrorFile *mf, MirrorHookPoint point, off_t start, off_t end)
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
	bool chunk_wait = false;
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
				run_hook(mf, MIRROR_HOOK_WRITE_WAITING, start, end);
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
	r->next = mf->inflight;
	mf->inflight = r;
	mf->guest_ops++;
	if (mirror_end > start)
		mf->mirrored_writes++;
	mfs_mutex_unlock(&mf->lock);
	run_hook(mf, MIRROR_HOOK_WRITE_ADMITTED, start, end);
	return mirror_end;
}

static void range_release_locked(MirrorFile *mf, Range *r)
{
	Range **p;

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
static void mirror_fail(MirrorFile *mf, int err, bool on_source)
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

void mirror_file_detach(MirrorFile *mf)
{
	mfs_mutex_lock(&mf->lock);
	mf->detached = true;
	mfs_cond_broadcast(&mf->cond);
	mfs_mutex_unlock(&mf->lock);
}

static int pwrite_all(int fd, const void *buf, size_t len, off_t off)
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
		int err = pwrite_all(mf->dst_fd, buf, MIN((off_t)n, mirror_end - off), off);

		if (err < 0)
			mirror_fail(mf, err, false);
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
			mirror_fail(mf, -errno, false);
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
		if ((datasync ? fdatasync(mf->dst_fd) : fsync(mf->dst_fd)) < 0)
			mirror_fail(mf, -errno, false);
	}
	return ret;
}

/*
 * Rule 2, second half: wait for the operations in the claimed chunk to
 * drain.  Returns whether the cursor is still at @start: a truncate that
 * was in flight when the chunk was claimed may have lowered it, and then
 * writes below @start went to the source only.
 */
static bool chunk_drain(MirrorFile *mf, off_t start, off_t end)
{
	bool held;

	run_hook(mf, MIRROR_HOOK_CHUNK_CLAIMED, start, end);
	mfs_mutex_lock(&mf->lock);
	while (!mf->detached && overlaps_inflight_locked(mf, start, end))
		mfs_cond_wait(&mf->cond, &mf->lock);
	held = mf->cp_offset == start;
	mfs_mutex_unlock(&mf->lock);
	return held;
}

/* Rule 2: claim [start, end) for the copier and wait for the operations in it. */
static bool chunk_claim(MirrorFile *mf, off_t start, off_t end)
{
	mfs_mutex_lock(&mf->lock);
	mf->chunk_start = start;
	mf->chunk_end = end;
	mfs_mutex_unlock(&mf->lock);
	return chunk_drain(mf, start, end);
}

/* Release the chunk, moving the cursor to @new_cp when the copy succeeded. */
static void chunk_release(MirrorFile *mf, off_t new_cp, uint64_t copied, uint64_t cloned)
{
	mfs_mutex_lock(&mf->lock);
	if (new_cp >= 0)
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
static int chunk_claim_at_cursor(MirrorFile *mf, size_t chunk, off_t *start)
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
		if (ret != 1 || chunk_drain(mf, *start, *start + (off_t)chunk))
			return ret;
		/* The cursor came down under the drain: claim again where it is. */
		chunk_release(mf, -1, 0, 0);
	}
}

static bool direct_ok(int fd, off_t pos)
{
	return fd >= 0 && pos % MFS_DIRECT_ALIGN == 0;
}

/*
 * Read up to @len bytes at @pos into the copy buffer.  A direct read asks
 * for whole blocks (the file's end may lie inside the last one); what it
 * returns past @len, of a file that grew, is left for the next chunk.
 */
static ssize_t copy_read(MirrorFile *mf, off_t pos, size_t len)
{
	for (;;) {
		bool direct = direct_ok(mf->copy_src_direct, pos);
		size_t want = direct ? ROUND_UP(len, MFS_DIRECT_ALIGN) : len;
		ssize_t n =
		    pread(direct ? mf->copy_src_direct : mf->src_fd, mf->copy_buf, want, pos);

		if (n >= 0)
			return MIN((size_t)n, len);
		if (errno == EINVAL && direct) {
			direct_close(&mf->copy_src_direct); /* odd alignment: go buffered */
			continue;
		}
		if (errno != EINTR)
			return -errno;
	}
}

/* Write the copy buffer's first @len bytes at @pos: whole blocks direct. */
static int copy_write(MirrorFile *mf, size_t len, off_t pos)
{
	size_t head = direct_ok(mf->copy_dst_direct, pos) ? ROUND_DOWN(len, MFS_DIRECT_ALIGN) : 0;
	int ret;

	if (head) {
		ret = pwrite_all(mf->copy_dst_direct, mf->copy_buf, head, pos);
		if (ret == -EINVAL) {
			direct_close(&mf->copy_dst_direct);
			head = 0;
		} else if (ret < 0) {
			return ret;
		}
	}
	return pwrite_all(mf->dst_fd, (char *)mf->copy_buf + head, len - head, pos + (off_t)head);
}

/*
 * Clone [pos, end) of the source onto the target.  Returns 0 when done,
 * -errno when the file system would not: then the range is copied.  A
 * refusal that says no clone will ever work here turns cloning off for
 * the file; EINVAL may only be this range's (a partial block at the end
 * of a file that grew meanwhile, say).
 */
static int copy_clone(MirrorFile *mf, off_t pos, off_t end)
{
	struct file_clone_range range = {
	    .src_fd = mf->src_fd,
	    .src_offset = (uint64_t)pos,
	    .src_length = (uint64_t)(end - pos),
	    .dest_offset = (uint64_t)pos,
	};
	int ret;

	do
		ret = ioctl(mf->dst_fd, FICLONERANGE, &range) < 0 ? -errno : 0;
	while (ret == -EINTR);
	if (ret < 0 && ret != -EINVAL)
		mf->copy_clone = false;
	return ret;
}

static int copy_data(MirrorFile *mf, off_t pos, off_t end, uint64_t *copied, uint64_t *cloned)
{
	if (mf->copy_clone && copy_clone(mf, pos, end) == 0) {
		run_hook(mf, MIRROR_HOOK_CHUNK_READ, pos, end);
		*cloned += end - pos;
		return 0;
	}
	while (pos < end) {
		ssize_t n = copy_read(mf, pos, MIN((off_t)mf->copy_buf_size, end - pos));
		int ret;

		if (n < 0) {
			mf->copy_error_on_source = true;
			return (int)n;
		}
		if (n == 0)
			break; /* shorter than fstat said: nothing more to copy */
		run_hook(mf, MIRROR_HOOK_CHUNK_READ, pos, pos + n);
		ret = copy_write(mf, n, pos);
		if (ret < 0)
			return ret;
		*copied += n;
		pos += n;
	}
	return 0;
}

/*
 * The target cannot preallocate (EOPNOTSUPP: NFSv3, many FUSE servers):
 * its copy of the file gets holes where the source had space reserved.
 * Said once per file; the copy goes on.
 */
static void prealloc_unsupported(MirrorFile *mf)
{
	char path[MFS_PROC_FD_LEN], name[PATH_MAX];
	ssize_t n;

	mf->copy_prealloc = false;
	mfs_proc_fd_path(mf->dst_fd, path);
	n = readlink(path, name, sizeof(name) - 1);
	name[n < 0 ? 0 : n] = '\0';
	g_warning("'%s': the target cannot preallocate (%s): the source's preallocated ranges "
	          "become holes there",
	          name, g_strerror(EOPNOTSUPP));
}

/*
 * Preallocate on the target what the source has preallocated in
 * [start, end), a range SEEK_DATA calls a hole.  ext4, XFS and btrfs
 * answer SEEK_DATA for an unwritten extent (fallocate's, qemu-img's
 * preallocation=falloc) as for a hole: it reads as zeros.  Copied as a
 * hole it would leave a target sized for preallocated images to run out
 * of space later; copied as data it would cost writing the zeros.  So
 * FIEMAP finds the unwritten extents and fallocate(KEEP_SIZE) reserves
 * them again (the file's size is set at its end, as for the rest): what
 * is a true hole stays one.  Only holes cost a FIEMAP call, and only one
 * per hole met in a chunk.  A source without FIEMAP (tmpfs) has nothing
 * found here.
 */
static int copy_prealloc(MirrorFile *mf, off_t start, off_t end)
{
	union {
		struct fiemap fm;
		char buf[sizeof(struct fiemap) + 32 * sizeof(struct fiemap_extent)];
	} u;
	off_t pos = start;

	while (mf->copy_prealloc && pos < end) {
		off_t next = pos;

		memset(&u.fm, 0, sizeof(u.fm));
		u.fm.fm_start = (uint64_t)pos;
		u.fm.fm_length = (uint64_t)(end - pos);
		u.fm.fm_extent_count = 32;
		if (ioctl(mf->src_fd, FS_IOC_FIEMAP, &u.fm) < 0) {
			if (errno == EOPNOTSUPP || errno == ENOTTY) {
				mf->copy_prealloc = false; /* not this file system's */
				return 0;
			}
			mf->copy_error_on_source = true;
			return -errno;
		}
		for (unsigned i = 0; i < u.fm.fm_mapped_extents; i++) {
			struct fiemap_extent *e = &u.fm.fm_extents[i];
			off_t a = MAX((off_t)e->fe_logical, pos);
			off_t b = MIN((off_t)(e->fe_logical + e->fe_length), end);

			if ((e->fe_flags & FIEMAP_EXTENT_UNWRITTEN) && a < b &&
			    fallocate(mf->dst_fd, FALLOC_FL_KEEP_SIZE, a, b - a) < 0) {
				if (errno != EOPNOTSUPP)
					return -errno; /* ENOSPC: the target is too small */
				prealloc_unsupported(mf);
				return 0;
			}
			next = MAX(next, b);
			if (e->fe_flags & FIEMAP_EXTENT_LAST)
				return 0;
		}
		if (u.fm.fm_mapped_extents < u.fm.fm_extent_count || next <= pos)
			return 0; /* all of the range seen */
		pos = next;
	}
	return 0;
}

/*
 * Copy the data extents of [start, end) and leave its holes as holes,
 * preallocated where the source's are.  A target that may hold old bytes
 * (reused after a crash) gets them punched out.
 */
static int copy_range_sparse(MirrorFile *mf, off_t start, off_t end, uint64_t *copied,
                             uint64_t *cloned)
{
	off_t pos = start;
	int ret;

	while (pos < end) {
		off_t data = lseek(mf->src_fd, pos, SEEK_DATA);
		off_t hole;

		if (data < 0) {
			if (errno != ENXIO) {
				mf->copy_error_on_source = true;
				return -errno;
			}
			data = end; /* nothing but hole up to the end of file */
		}
		data = MIN(data, end);
		if (data > pos && !mf->dst_fresh &&
		    fallocate(mf->dst_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, pos,
		              data - pos) < 0 &&
		    errno != EOPNOTSUPP)
			return -errno;
		if (data > pos) {
			ret = copy_prealloc(mf, pos, data);
			if (ret < 0)
				return ret;
		}
		if (data >= end)
			break;
		hole = lseek(mf->src_fd, data, SEEK_HOLE);
		if (hole < 0) {
			mf->copy_error_on_source = true;
			return -errno;
		}
		hole = MIN(hole, end);
		ret = copy_data(mf, data, hole, copied, cloned);
		if (ret < 0)
			return ret;
		pos = hole;
	}
	return 0;
}

/* The size of the next chunk: twice the last if the guest left the file alone. */
static size_t next_chunk_size(MirrorFile *mf, uint64_t guest_ops)
{
	if (guest_ops != mf->ops_seen)
		mf->next_chunk = mf->chunk_size;
	else
		mf->next_chunk = MIN(mf->next_chunk * 2, mf->max_chunk);
	mf->ops_seen = guest_ops;
	return mf->next_chunk;
}

/*
 * The buffer is mapped, not malloc'ed: it grows to 16 MiB as the chunk does
 * and is given back when the file is mirrored.  From malloc, a freed buffer
 * that size raises glibc's mmap threshold, the next one comes from an arena,
 * and the arena's holes keep the daemon's resident size growing migration
 * after migration.  A mapping is page aligned, as O_DIRECT wants.
 */
static int copy_buf_reserve(MirrorFile *mf, size_t size)
{
	void *buf;

	if (mf->copy_buf_size >= size)
		return 0;
	copy_buf_release(mf);
	buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return -ENOMEM;
	mf->copy_buf = buf;
	mf->copy_buf_size = size;
	return 0;
}

int mirror_file_copy_next(MirrorFile *mf, uint64_t *copied)
{
	uint64_t guest_ops, cloned = 0;
	off_t start, end;
	struct stat st;
	size_t chunk;
	int ret;

	*copied = 0;
	mfs_mutex_lock(&mf->lock);
	start = mf->cp_offset;
	guest_ops = mf->guest_ops;
	mfs_mutex_unlock(&mf->lock);
	if (start == MIRROR_OFF_MAX)
		return 0;
	run_hook(mf, MIRROR_HOOK_CHUNK_NEXT, start, start);
	chunk = next_chunk_size(mf, guest_ops);
	if (copy_buf_reserve(mf, chunk) < 0)
		return -ENOMEM;
	copy_direct_open(mf);

	mf->copy_error_on_source = false;
	/*
	 * The cursor is read again as the chunk is claimed, under one hold of
	 * the lock: a truncate may have lowered it since, and writes below
	 * the old cursor then went to the source only.  Starting at a stale
	 * cursor would move it past them.
	 */
	ret = chunk_claim_at_cursor(mf, chunk, &start);
	if (ret <= 0)
		return ret;
	if (fstat(mf->src_fd, &st) < 0) {
		ret = -errno;
		mf->copy_error_on_source = true;
		goto fail;
	}
	if (st.st_size <= start) {
		/* At the end: claim the rest of the file to pin its size, then finish. */
		if (!chunk_claim(mf, start, MIRROR_OFF_MAX)) {
			chunk_release(mf, -1, 0, 0); /* the cursor came down: copy from there */
			return 1;
		}
		if (fstat(mf->src_fd, &st) < 0) {
			ret = -errno;
			mf->copy_error_on_source = true;
			goto fail;
		}
		if (st.st_size > start) {
			chunk_release(mf, -1, 0, 0); /* it grew meanwhile: go on copying */
			return 1;
		}
		if (ftruncate(mf->dst_fd, st.st_size) < 0) {
			ret = -errno;
			goto fail;
		}
		mfs_mutex_lock(&mf->lock);
		mf->size = st.st_size;
		mfs_mutex_unlock(&mf->lock);
		chunk_release(mf, MIRROR_OFF_MAX, 0, 0);
		copy_resources_free(mf);
		return 0;
	}
	end = MIN(st.st_size, start + (off_t)chunk);
	ret = copy_range_sparse(mf, start, end, copied, &cloned);
	if (ret < 0)
		goto fail;
	mfs_mutex_lock(&mf->lock);
	mf->size = st.st_size;
	mfs_mutex_unlock(&mf->lock);
	chunk_release(mf, end, *copied, cloned);
	return 1;

fail:
	chunk_release(mf, -1, 0, 0);
	mirror_fail(mf, ret, mf->copy_error_on_source);
	return ret;
}

void mirror_file_start_writeback(MirrorFile *mf)
{
	/* Errors show at the flush, which reports them. */
	sync_file_range(mf->dst_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

int mirror_file_flush_target(MirrorFile *mf)
{
	if (fdatasync(mf->dst_fd) < 0) {
		int ret = -errno;

		mirror_fail(mf, ret, false);
		return ret;
	}
	return 0;
}

void mirror_file_copy_times(MirrorFile *mf)
{
	struct stat st;

	if (fstat(mf->src_fd, &st) == 0)
		futimens(mf->dst_fd, (struct timespec[2]){st.st_atim, st.st_mtim});
}

int mirror_file_target_fd(MirrorFile *mf)
{
	return mf->dst_fd;
}

void mirror_file_stats(MirrorFile *mf, MirrorFileStats *out)
{
	mfs_mutex_lock(&mf->lock);
	out->size = mf->size;
	out->mirrored = mf->cp_offset == MIRROR_OFF_MAX;
	out->cp_offset = out->mirrored ? mf->size : mf->cp_offset;
	out->bytes_copied = mf->bytes_copied;
	out->bytes_cloned = mf->bytes_cloned;
	out->mirrored_writes = mf->mirrored_writes;
	out->waited_writes = mf->waited_writes;
	out->max_wait_ns = mf->max_wait_ns;
	out->guest_ops = mf->guest_ops;
	out->error = mf->error;
	mfs_mutex_unlock(&mf->lock);
}
