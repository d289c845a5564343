/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The copier's half of a MirrorFile: what it does with a chunk it holds
 * (mirror-file.c claims and releases it, by the rules stated there).
 * Read the source and write the target through O_DIRECT twins where the
 * file systems allow, clone extents where they share blocks, keep holes
 * and preallocated ranges, grow the chunk while the guest leaves the file
 * alone; and the file's flush, times and figures.  Takes no lock but the
 * file's own, and no I/O under it.
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
void mirror_copy_resources_free(MirrorFile *mf)
{
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

static void copy_direct_open(MirrorFile *mf)
{
	if (mf->copy_direct_tried)
		return;
	mf->copy_direct_tried = true;
	/* Failing (EINVAL from tmpfs, for one) leaves the buffered path. */
	mf->copy_src_direct = direct_reopen(mf->src_fd, O_RDONLY);
	mf->copy_dst_direct = direct_reopen(mf->dst_fd, O_WRONLY);
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
		ret = mirror_pwrite_all(mf->copy_dst_direct, mf->copy_buf, head, pos);
		if (ret == -EINVAL) {
			direct_close(&mf->copy_dst_direct);
			head = 0;
		} else if (ret < 0) {
			return ret;
		}
	}
	return mirror_pwrite_all(mf->dst_fd, (char *)mf->copy_buf + head, len - head,
	                         pos + (off_t)head);
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
		mirror_run_hook(mf, MIRROR_HOOK_CHUNK_READ, pos, end);
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
		mirror_run_hook(mf, MIRROR_HOOK_CHUNK_READ, pos, pos + n);
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
				mf->copy_error_on_source = true;
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

/*
 * Copy a range below the cursor again (one a restart found in the intent
 * log), by the chunk protocol: claimed, drained, copied, released.  The
 * guest's changes in it meanwhile reach both sides, before or after.
 * Returns 1 when it copied one, 0 when there is none left.
 */
static int recopy_next(MirrorFile *mf, uint64_t *copied)
{
	uint64_t cloned = 0;
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
	if (ret == 0 && start < end)
		ret = copy_range_sparse(mf, start, end, copied, &cloned);
	mirror_chunk_release(mf, -1, *copied, cloned);
	if (ret < 0 && !mf->copy_error_on_source && mirror_file_target_failed(mf, ret, start))
		return 1; /* held: the copier waits, then copies the range again */
	if (ret < 0) {
		if (mf->copy_error_on_source)
			mirror_fail(mf, ret, true);
		return ret;
	}
	return 1;
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
	mirror_run_hook(mf, MIRROR_HOOK_CHUNK_NEXT, start, start);
	chunk = next_chunk_size(mf, guest_ops);
	if (copy_buf_reserve(mf, chunk) < 0)
		return -ENOMEM;
	copy_direct_open(mf);

	mf->copy_error_on_source = false;
	ret = recopy_next(mf, copied);
	if (ret != 0)
		return ret;
	/*
	 * The cursor is read again as the chunk is claimed, under one hold of
	 * the lock: a truncate may have lowered it since, and writes below
	 * the old cursor then went to the source only.  Starting at a stale
	 * cursor would move it past them.
	 */
	ret = mirror_chunk_claim_at_cursor(mf, chunk, &start);
	if (ret <= 0)
		return ret;
	if (fstat(mf->src_fd, &st) < 0) {
		ret = -errno;
		mf->copy_error_on_source = true;
		goto fail;
	}
	if (st.st_size <= start) {
		/* At the end: claim the rest of the file to pin its size, then finish. */
		if (!mirror_chunk_claim(mf, start, MIRROR_OFF_MAX)) {
			mirror_chunk_release(mf, -1, 0,
			                     0); /* the cursor came down: copy from there */
			return 1;
		}
		if (fstat(mf->src_fd, &st) < 0) {
			ret = -errno;
			mf->copy_error_on_source = true;
			goto fail;
		}
		if (st.st_size > start) {
			mirror_chunk_release(mf, -1, 0, 0); /* it grew meanwhile: go on copying */
			return 1;
		}
		if (ftruncate(mf->dst_fd, st.st_size) < 0) {
			ret = -errno;
			goto fail;
		}
		mfs_mutex_lock(&mf->lock);
		mf->size = st.st_size;
		mfs_mutex_unlock(&mf->lock);
		mirror_chunk_release(mf, MIRROR_OFF_MAX, 0, 0);
		mirror_copy_resources_free(mf);
		return 0;
	}
	end = MIN(st.st_size, start + (off_t)chunk);
	ret = copy_range_sparse(mf, start, end, copied, &cloned);
	if (ret < 0)
		goto fail;
	mfs_mutex_lock(&mf->lock);
	mf->size = st.st_size;
	mfs_mutex_unlock(&mf->lock);
	mirror_chunk_release(mf, end, *copied, cloned);
	return 1;

fail:
	mirror_chunk_release(mf, -1, 0, 0);
	if (mf->copy_error_on_source)
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

/* Read @len bytes at @pos, fewer only at the end of file. */
static ssize_t pread_full(int fd, void *buf, size_t len, off_t pos)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, pos + (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += n;
	}
	return (ssize_t)done;
}

/* Whether [pos, end) is a hole in @fd: no data there to read. */
static bool all_hole(int fd, off_t pos, off_t end)
{
	off_t data = lseek(fd, pos, SEEK_DATA);

	return (data < 0 && errno == ENXIO) || data >= end;
}

int64_t mirror_file_verify(MirrorFile *mf, off_t pos, size_t len, void *a, void *b, off_t *mismatch)
{
	struct stat ss, ds;
	ssize_t na = 0, nb = 0;
	off_t end;
	int64_t ret;

	*mismatch = -1;
	mirror_chunk_claim(mf, pos, pos + (off_t)len);
	if (fstat(mf->src_fd, &ss) < 0) {
		ret = -errno;
		goto out;
	}
	if (pos >= ss.st_size) {
		/* The end: the sizes, with every change above held off. */
		mirror_chunk_release(mf, -1, 0, 0);
		mirror_chunk_claim(mf, pos, MIRROR_OFF_MAX);
		ret = 0;
		if (fstat(mf->src_fd, &ss) < 0 || fstat(mf->dst_fd, &ds) < 0)
			ret = -errno;
		else if (ss.st_size != ds.st_size)
			*mismatch = MIN(ss.st_size, ds.st_size);
		else if (ss.st_size > pos)
			ret = -EAGAIN; /* it grew meanwhile: compare on */
		goto out;
	}
	end = MIN(ss.st_size, pos + (off_t)len);
	ret = end - pos;
	if (all_hole(mf->src_fd, pos, end) && all_hole(mf->dst_fd, pos, end))
		goto out;
	na = pread_full(mf->src_fd, a, end - pos, pos);
	nb = pread_full(mf->dst_fd, b, end - pos, pos);
	if (na < 0 || nb < 0) {
		ret = na < 0 ? na : nb;
		goto out;
	}
	if (na != nb || memcmp(a, b, na) != 0) {
		ssize_t i = 0;

		while (i < MIN(na, nb) && ((char *)a)[i] == ((char *)b)[i])
			i++;
		*mismatch = pos + i;
	}
out:
	mirror_chunk_release(mf, -1, 0, 0);
	return ret;
}
