/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The copier's half of a MirrorFile: what it does with a chunk it holds
 * (mirror-file.c claims and releases it, by the rules stated there).
 * Read the source and write the target through O_DIRECT twins where the
 * file systems allow, clone extents where they share blocks, keep holes
 * and preallocated ranges, grow the chunk while the guest leaves the file
 * alone, keep several chunks in flight; and the file's flush, times and
 * figures.  Takes no lock but the file's own, and no I/O under it.
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
#include <unistd.h>

/* What one chunk's copy works with: the file, a buffer, and where it failed. */
typedef struct {
	MirrorFile *mf;
	void *buf;
	size_t buf_len;
	bool on_source; /* the last error was the source's */
} CopyCtx;

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

/* The copier is done with the file, nothing in flight: give back what it held for it. */
void mirror_copy_resources_free(MirrorFile *mf)
{
	g_assert(mf->job_n == 0);
	direct_close(&mf->copy_src_direct);
	direct_close(&mf->copy_dst_direct);
	mf->copy_direct_tried = false; /* a cursor lowered later copies again */
	copy_buf_release(mf);
}

static int direct_reopen(int fd, int flags)
{
	char path[MFS_PROC_FD_LEN];

	mfs_proc_fd_path(fd, path);
	return open(path, flags | O_DIRECT | O_CLOEXEC);
}

/* By the copier's thread, with no chunk in flight. */
static void copy_direct_open(MirrorFile *mf)
{
	if (mf->copy_direct_tried)
		return;
	mf->copy_direct_tried = true;
	/* Failing (EINVAL from tmpfs, for one) leaves the buffered path. */
	mf->copy_src_direct = direct_reopen(mf->src_fd, O_RDONLY);
	mf->copy_dst_direct = direct_reopen(mf->dst_fd, O_WRONLY);
	mf->copy_src_direct_off = mf->copy_dst_direct_off = false;
}

/*
 * The O_DIRECT twin to use at @pos, or -1.  Several chunks may be in
 * flight: a twin that refused an alignment is turned off, not closed
 * under another chunk's I/O (mirror_copy_resources_free() closes it).
 */
static int direct_fd(int fd, bool *off, off_t pos)
{
	if (fd < 0 || pos % MFS_DIRECT_ALIGN || __atomic_load_n(off, __ATOMIC_RELAXED))
		return -1;
	return fd;
}

static void direct_turn_off(bool *off)
{
	__atomic_store_n(off, true, __ATOMIC_RELAXED);
}

/*
 * Read up to @len bytes at @pos into the buffer.  A direct read asks for
 * whole blocks (the file's end may lie inside the last one); what it
 * returns past @len, of a file that grew, is left for the next chunk.
 */
static ssize_t copy_read(CopyCtx *cx, off_t pos, size_t len)
{
	MirrorFile *mf = cx->mf;

	for (;;) {
		int dfd = direct_fd(mf->copy_src_direct, &mf->copy_src_direct_off, pos);
		size_t want = dfd >= 0 ? ROUND_UP(len, MFS_DIRECT_ALIGN) : len;
		ssize_t n = pread(dfd >= 0 ? dfd : mf->src_fd, cx->buf, want, pos);

		if (n >= 0)
			return MIN((size_t)n, len);
		if (errno == EINVAL && dfd >= 0) {
			direct_turn_off(&mf->copy_src_direct_off); /* odd alignment: go buffered */
			continue;
		}
		if (errno != EINTR)
			return -errno;
	}
}

/* Write the buffer's first @len bytes at @pos: whole blocks direct. */
static int copy_write(CopyCtx *cx, size_t len, off_t pos)
{
	MirrorFile *mf = cx->mf;
	int dfd = direct_fd(mf->copy_dst_direct, &mf->copy_dst_direct_off, pos);
	size_t head = dfd >= 0 ? ROUND_DOWN(len, MFS_DIRECT_ALIGN) : 0;
	int ret;

	if (head) {
		ret = mirror_pwrite_all(dfd, cx->buf, head, pos);
		if (ret == -EINVAL) {
			direct_turn_off(&mf->copy_dst_direct_off);
			head = 0;
		} else if (ret < 0) {
			return ret;
		}
	}
	return mirror_pwrite_all(mf->dst_fd, (char *)cx->buf + head, len - head, pos + (off_t)head);
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
		__atomic_store_n(&mf->copy_clone, false, __ATOMIC_RELAXED);
	return ret;
}

static int copy_data(CopyCtx *cx, off_t pos, off_t end, uint64_t *copied, uint64_t *cloned)
{
	MirrorFile *mf = cx->mf;

	if (__atomic_load_n(&mf->copy_clone, __ATOMIC_RELAXED) && copy_clone(mf, pos, end) == 0) {
		mirror_run_hook(mf, MIRROR_HOOK_CHUNK_READ, pos, end);
		*cloned += end - pos;
		return 0;
	}
	if (!cx->buf)
		return -ENOMEM;
	while (pos < end) {
		ssize_t n = copy_read(cx, pos, MIN((off_t)cx->buf_len, end - pos));
		int ret;

		if (n < 0) {
			cx->on_source = true;
			return (int)n;
		}
		if (n == 0)
			break; /* shorter than fstat said: nothing more to copy */
		mirror_run_hook(mf, MIRROR_HOOK_CHUNK_READ, pos, pos + n);
		ret = copy_write(cx, n, pos);
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

	if (!__atomic_exchange_n(&mf->copy_prealloc, false, __ATOMIC_RELAXED))
		return; /* another chunk said it */
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
static int copy_prealloc(CopyCtx *cx, off_t start, off_t end)
{
	MirrorFile *mf = cx->mf;
	union {
		struct fiemap fm;
		char buf[sizeof(struct fiemap) + 32 * sizeof(struct fiemap_extent)];
	} u;
	off_t pos = start;

	while (__atomic_load_n(&mf->copy_prealloc, __ATOMIC_RELAXED) && pos < end) {
		off_t next = pos;

		memset(&u.fm, 0, sizeof(u.fm));
		u.fm.fm_start = (uint64_t)pos;
		u.fm.fm_length = (uint64_t)(end - pos);
		u.fm.fm_extent_count = 32;
		if (ioctl(mf->src_fd, FS_IOC_FIEMAP, &u.fm) < 0) {
			if (errno == EOPNOTSUPP || errno == ENOTTY) {
				/* Not this file system's. */
				__atomic_store_n(&mf->copy_prealloc, false, __ATOMIC_RELAXED);
				return 0;
			}
			cx->on_source = true;
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
static int copy_range_sparse(CopyCtx *cx, off_t start, off_t end, uint64_t *copied,
                             uint64_t *cloned)
{
	MirrorFile *mf = cx->mf;
	off_t pos = start;
	bool fresh;
	int ret;

	mfs_mutex_lock(&mf->lock);
	fresh = mf->dst_fresh;
	mfs_mutex_unlock(&mf->lock);
	while (pos < end) {
		off_t data = lseek(mf->src_fd, pos, SEEK_DATA);
		off_t hole;

		if (data < 0) {
			if (errno != ENXIO) {
				cx->on_source = true;
				return -errno;
			}
			data = end; /* nothing but hole up to the end of file */
		}
		data = MIN(data, end);
		if (data > pos && !fresh &&
		    fallocate(mf->dst_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, pos,
		              data - pos) < 0 &&
		    errno != EOPNOTSUPP)
			return -errno;
		if (data > pos) {
			ret = copy_prealloc(cx, pos, data);
			if (ret < 0)
				return ret;
		}
		if (data >= end)
			break;
		hole = lseek(mf->src_fd, data, SEEK_HOLE);
		if (hole < 0) {
			cx->on_source = true;
			return -errno;
		}
		hole = MIN(hole, end);
		ret = copy_data(cx, data, hole, copied, cloned);
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
 * The buffer of the chunks the copier's own thread copies (no queue, or
 * a range copied again).  Mapped, not malloc'ed: it grows to 16 MiB as
 * the chunk does and is given back when the file is mirrored.  From
 * malloc, a freed buffer that size raises glibc's mmap threshold, the
 * next one comes from an arena, and the arena's holes keep the daemon's
 * resident size growing migration after migration.  A mapping is page
 * aligned, as O_DIRECT wants.
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

/* The copier's own thread's context, its buffer able to hold @len. */
static int copy_ctx_own(MirrorFile *mf, size_t len, CopyCtx *cx)
{
	int ret = copy_buf_reserve(mf, len);

	*cx = (CopyCtx){.mf = mf, .buf = mf->copy_buf, .buf_len = mf->copy_buf_size};
	return ret;
}

/*
 * Copy a range below the cursor again (one a restart found in the intent
 * log), by the chunk protocol: claimed, drained, copied, released.  The
 * guest's changes in it meanwhile reach both sides, before or after.
 * Returns 1 when it copied one, 0 when there is none left.
 */
static int recopy_next(MirrorFile *mf, uint64_t *copied)
{
	uint64_t cloned = 0;
	CopyCtx cx = {.mf = mf};
	off_t start, end;
	int ret;

	if (!mirror_recopy_take(mf, &start, &end))
		return 0;
	mirror_chunk_claim(mf, start, end);
	mfs_mutex_lock(&mf->lock);
	/* A truncate may have brought the cursor down: the copier gets there anyway. */
	end = MIN(end, mf->cp_offset);
	ret = mf->error ? mf->error : mf->detached ? -ECANCELED : 0;
	mfs_mutex_unlock(&mf->lock);
	if (ret == 0)
		ret = copy_ctx_own(mf, mf->next_chunk, &cx);
	if (ret == 0 && start < end)
		ret = copy_range_sparse(&cx, start, end, copied, &cloned);
	mirror_chunk_release(mf, -1, *copied, cloned);
	if (ret < 0 && !cx.on_source && mirror_file_target_failed(mf, ret, start))
		return 1; /* held: the copier waits, then copies the range again */
	if (ret < 0) {
		if (cx.on_source)
			mirror_fail(mf, ret, true);
		return ret;
	}
	return 1;
}

/*
 * Several chunks in flight.  The copier claims chunk after chunk above
 * the cursor, each by rule 2 (claimed, then drained), and hands each to
 * a queue thread; the claimed chunks are one window, [chunk_start,
 * chunk_end), from the cursor up, and no guest change enters it (rule
 * 1).  Chunks are retired oldest first: the cursor moves past a chunk
 * only once it and every chunk below it are on the target (rule 3).  A
 * chunk done above one still in flight stays in the window meanwhile:
 * a write there, above the cursor, would go to the source only, after
 * the copier had read it.  A failed chunk, or a cursor brought down
 * under the window (a held target error), stops the window: what is in
 * flight ends, nothing moves the cursor, and the copier starts again
 * where the cursor is.
 */
static void copy_job_run(CopyJob *base, void *buf, size_t len)
{
	MirrorCopyJob *job = (MirrorCopyJob *)base;
	CopyCtx cx = {.mf = job->mf, .buf = buf, .buf_len = len};

	job->copied = job->cloned = 0;
	job->ret = copy_range_sparse(&cx, job->start, job->end, &job->copied, &job->cloned);
	job->on_source = cx.on_source;
}

static MirrorCopyJob *job_oldest(MirrorFile *mf)
{
	return &mf->jobs[mf->job_head];
}

/* Copy [start, end), claimed, on @q, or here without one. */
static void job_start(MirrorFile *mf, CopyQueue *q, off_t start, off_t end)
{
	MirrorCopyJob *job = &mf->jobs[(mf->job_head + mf->job_n) % COPY_QUEUE_MAX];
	CopyCtx cx;

	*job = (MirrorCopyJob){.base = {.run = copy_job_run, .buf_len = (size_t)(end - start)},
	                       .mf = mf,
	                       .start = start,
	                       .end = end};
	mf->job_n++;
	if (q) {
		copy_queue_submit(q, &job->base);
		return;
	}
	job->ret = copy_ctx_own(mf, (size_t)(end - start), &cx);
	if (job->ret == 0)
		copy_job_run(&job->base, cx.buf, cx.buf_len);
	job->base.done = true;
}

/*
 * Claim the chunk above the newest in flight and start it, unless the
 * file ends there or the cursor came down: false then, nothing claimed.
 */
static bool job_add(MirrorFile *mf, CopyQueue *q, size_t chunk)
{
	MirrorCopyJob *newest = &mf->jobs[(mf->job_head + mf->job_n - 1) % COPY_QUEUE_MAX];
	off_t start = newest->end, end = start + (off_t)chunk;
	struct stat st;

	if (newest->end < newest->claim_end)
		return false; /* the source ended there: the window drains first */
	if (!mirror_chunk_extend(mf, start, end, job_oldest(mf)->start)) {
		mf->jobs_broken = true;
		return false;
	}
	/* After the claim, as for the first chunk: a truncate in flight has drained. */
	if (fstat(mf->src_fd, &st) < 0 || st.st_size <= start) {
		mirror_chunk_extend(mf, start, start, job_oldest(mf)->start);
		return false; /* the end (or an error the first chunk's fstat will meet) */
	}
	mfs_mutex_lock(&mf->lock);
	mf->size = st.st_size;
	mfs_mutex_unlock(&mf->lock);
	job_start(mf, q, start, MIN(st.st_size, end));
	mf->jobs[(mf->job_head + mf->job_n - 1) % COPY_QUEUE_MAX].claim_end = end;
	return true;
}

/*
 * Wait for the oldest chunk and retire it: the cursor moves past it if
 * it was copied and nothing broke the window.  @copied gets its bytes.
 */
static void job_retire(MirrorFile *mf, CopyQueue *q, uint64_t *copied)
{
	MirrorCopyJob *job = job_oldest(mf);
	bool last = mf->job_n == 1;

	if (q)
		copy_queue_wait(q, &job->base);
	if (job->ret < 0 && !mf->jobs_broken) {
		mf->jobs_broken = true;
		mf->jobs_err = job->ret;
		mf->jobs_err_at = job->start;
		mf->jobs_err_on_source = job->on_source;
	}
	*copied += job->copied;
	mfs_mutex_lock(&mf->lock);
	if (mf->cp_offset != job->start)
		mf->jobs_broken = true; /* brought down under the window */
	if (!mf->jobs_broken)
		mf->cp_offset = job->end;
	mf->bytes_copied += job->copied + job->cloned;
	mf->bytes_cloned += job->cloned;
	if (last)
		mf->chunk_start = mf->chunk_end = 0;
	else
		mf->chunk_start = mf->jobs[(mf->job_head + 1) % COPY_QUEUE_MAX].start;
	mfs_cond_broadcast(&mf->cond);
	mfs_mutex_unlock(&mf->lock);
	mf->job_head = (mf->job_head + 1) % COPY_QUEUE_MAX;
	mf->job_n--;
}

/*
 * The window drained after a failed chunk: fail or hold the file as
 * for a chunk copied alone.  Returns 1 when held, else the error.
 */
static int jobs_failed(MirrorFile *mf)
{
	int ret = mf->jobs_err;

	mf->jobs_broken = false;
	mf->jobs_err = 0;
	if (mf->jobs_err_on_source)
		mirror_fail(mf, ret, true);
	else if (mirror_file_target_failed(mf, ret, mf->jobs_err_at))
		return 1; /* held: the copier waits, then copies from here again */
	return ret;
}

/*
 * No chunk in flight but the one claimed at the cursor, which is at the
 * source's end: claim the rest of the file to pin its size, set the
 * target's, and the file is mirrored.  1 when it grew meanwhile, or the
 * cursor came down: copy on.  On an error, the claim is still held.
 */
static int copy_finish(MirrorFile *mf, off_t start, CopyCtx *cx)
{
	struct stat st;

	if (!mirror_chunk_claim(mf, start, MIRROR_OFF_MAX)) {
		mirror_chunk_release(mf, -1, 0, 0); /* the cursor came down: copy from there */
		return 1;
	}
	if (fstat(mf->src_fd, &st) < 0) {
		cx->on_source = true;
		return -errno;
	}
	if (st.st_size > start) {
		mirror_chunk_release(mf, -1, 0, 0); /* it grew meanwhile: go on copying */
		return 1;
	}
	if (ftruncate(mf->dst_fd, st.st_size) < 0)
		return -errno;
	mfs_mutex_lock(&mf->lock);
	mf->size = st.st_size;
	mfs_mutex_unlock(&mf->lock);
	mirror_chunk_release(mf, MIRROR_OFF_MAX, 0, 0);
	mirror_copy_resources_free(mf);
	return 0;
}

int mirror_file_copy_drain(MirrorFile *mf, CopyQueue *q, uint64_t *copied)
{
	while (mf->job_n)
		job_retire(mf, q, copied);
	mf->jobs_broken = false;
	if (mf->jobs_err) {
		int ret = jobs_failed(mf);

		return ret < 0 ? ret : 0; /* held: copied again from there */
	}
	return 0;
}

int mirror_file_copy_next(MirrorFile *mf, CopyQueue *q, unsigned depth, uint64_t *copied)
{
	CopyCtx cx = {.mf = mf};
	uint64_t guest_ops;
	off_t start;
	struct stat st;
	size_t chunk;
	int ret;

	*copied = 0;
	depth = CLAMP(depth, 1, q ? MIN(copy_queue_threads(q), COPY_QUEUE_MAX) : 1);
	mfs_mutex_lock(&mf->lock);
	start = mf->cp_offset;
	guest_ops = mf->guest_ops;
	mfs_mutex_unlock(&mf->lock);
	if (start == MIRROR_OFF_MAX && mf->job_n == 0)
		return 0;
	mirror_run_hook(mf, MIRROR_HOOK_CHUNK_NEXT, start, start);
	chunk = next_chunk_size(mf, guest_ops);
	copy_direct_open(mf);

	if (mf->job_n == 0) {
		ret = recopy_next(mf, copied);
		if (ret != 0)
			return ret;
		/*
		 * The cursor is read again as the chunk is claimed, under one
		 * hold of the lock: a truncate may have lowered it since, and
		 * writes below the old cursor then went to the source only.
		 * Starting at a stale cursor would move it past them.
		 */
		ret = mirror_chunk_claim_at_cursor(mf, chunk, &start);
		if (ret <= 0)
			return ret;
		if (fstat(mf->src_fd, &st) < 0) {
			ret = -errno;
			cx.on_source = true;
			goto fail;
		}
		if (st.st_size <= start) {
			ret = copy_finish(mf, start, &cx);
			if (ret < 0)
				goto fail;
			return ret;
		}
		mfs_mutex_lock(&mf->lock);
		mf->size = st.st_size;
		mfs_mutex_unlock(&mf->lock);
		job_start(mf, q, start, MIN(st.st_size, start + (off_t)chunk));
		job_oldest(mf)->claim_end = start + (off_t)chunk;
	}
	while (mf->job_n < depth && !mf->jobs_broken && job_add(mf, q, chunk))
		;
	job_retire(mf, q, copied);
	if (mf->jobs_broken) {
		/* Nothing moves the cursor now: end what is in flight. */
		ret = mirror_file_copy_drain(mf, q, copied);
		if (ret < 0)
			return ret;
	}
	return 1;

fail:
	mirror_chunk_release(mf, -1, 0, 0);
	if (cx.on_source)
		mirror_fail(mf, ret, true);
	else if (mirror_file_target_failed(mf, ret, start))
		return 1; /* held: the copier waits, then copies from here again */
	return ret;
}

void mirror_file_start_writeback(MirrorFile *mf)
{
	/* Errors show at the flush, which reports them. */
	sync_file_range(mf->dst_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

int mirror_file_sync_target(MirrorFile *mf)
{
	return fdatasync(mf->dst_fd) < 0 ? -errno : 0;
}

int mirror_file_flush_target(MirrorFile *mf)
{
	if (fdatasync(mf->dst_fd) < 0) {
		int ret = -errno;

		/* The pages that did not make it are not known: all of it again. */
		mirror_file_target_failed(mf, ret, 0);
		return ret;
	}
	return 0;
}

int mirror_file_settle(MirrorFile *mf)
{
	if (fdatasync(mf->src_fd) < 0 || fdatasync(mf->dst_fd) < 0)
		return -errno;
	mfs_mutex_lock(&mf->lock);
	mf->change_told = false;
	mfs_mutex_unlock(&mf->lock);
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
	out->bytes_resumed = mf->bytes_resumed;
	out->mirrored_writes = mf->mirrored_writes;
	out->waited_writes = mf->waited_writes;
	out->max_wait_ns = mf->max_wait_ns;
	out->guest_ops = mf->guest_ops;
	out->error = mf->error;
	mfs_mutex_unlock(&mf->lock);
}
