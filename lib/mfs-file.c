/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Open files: data I/O on the backing descriptor.
 *
 * O_DIRECT is kept on the backing open: a guest started with cache=none
 * asked for no host page cache, and the passthrough should not silently
 * add one.  O_DIRECT needs aligned memory, and the request buffers the
 * daemon hands us are not aligned (data follows a FUSE header), so reads
 * land in a per-thread aligned buffer and unaligned writes are bounced
 * through one.  Offsets and lengths are passed on unchanged: a misaligned
 * O_DIRECT request fails with EINVAL exactly as it would natively.
 *
 * O_APPEND is dropped from the backing open: the kernel has already put
 * an appending write at the end of the file and tells us the offset, and
 * pwrite(2) on an O_APPEND descriptor would ignore it.
 *
 * No lock is taken here: the kernel orders what needs ordering, and the
 * backing file system does the rest.
 */
#define _GNU_SOURCE
#include "mfs-int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

static int file_new(MfsInode *inode, int fd, int flags, MfsFile **out)
{
	MfsFile *file = g_new0(MfsFile, 1);

	file->inode = inode;
	file->fd = fd;
	file->direct = flags & O_DIRECT;
	*out = file;
	return 0;
}

int mfs_open(Mfs *fs, MfsInode *inode, int flags, MfsFile **out)
{
	char path[MFS_PROC_FD_LEN];
	int fd;

	(void)fs;
	mfs_proc_fd_path(inode->fd, path);
	flags &= ~(O_NOFOLLOW | O_APPEND | O_CREAT | O_EXCL);
	fd = open(path, flags | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return file_new(inode, fd, flags, out);
}

int mfs_create(Mfs *fs, MfsInode *parent, const char *name, mode_t mode, int flags,
               const MfsCred *cred, MfsEntry *entry, MfsFile **out)
{
	MfsCredSaved saved;
	int fd, ret;

	mfs_cred_enter(cred, &saved);
	fd = openat(parent->fd, name, (flags & ~(O_NOFOLLOW | O_APPEND)) | O_CREAT | O_CLOEXEC,
	            mode);
	ret = fd < 0 ? -errno : 0;
	mfs_cred_leave(&saved);
	if (ret < 0)
		return ret;
	ret = mfs_lookup(fs, parent, name, entry);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	return file_new(entry->inode, fd, flags, out);
}

void mfs_release(Mfs *fs, MfsFile *file)
{
	(void)fs;
	if (!file)
		return;
	close(file->fd);
	g_free(file);
}

bool mfs_file_is_direct(const MfsFile *file)
{
	return file->direct;
}

ssize_t mfs_file_read(MfsFile *file, size_t size, off_t off, const void **data)
{
	void *buf = mfs_thread_buffer(size);
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	n = pread(file->fd, buf, size, off);
	if (n < 0)
		return -errno;
	*data = buf;
	return n;
}

ssize_t mfs_file_write(MfsFile *file, const void *buf, size_t size, off_t off)
{
	ssize_t n;

	if (file->direct && ((uintptr_t)buf % MFS_DIRECT_ALIGN)) {
		void *bounce = mfs_thread_buffer(size);

		if (!bounce)
			return -ENOMEM;
		memcpy(bounce, buf, size);
		buf = bounce;
	}
	n = pwrite(file->fd, buf, size, off);
	return n < 0 ? -errno : n;
}

int mfs_file_flush(MfsFile *file)
{
	/*
	 * close(2) of a duplicate reports what the backing file system defers
	 * to close (NFS write-back errors, for one) without closing ours.
	 */
	int fd = dup(file->fd);

	if (fd < 0)
		return -errno;
	return close(fd) < 0 ? -errno : 0;
}

int mfs_file_fsync(MfsFile *file, bool datasync)
{
	int ret = datasync ? fdatasync(file->fd) : fsync(file->fd);

	return ret < 0 ? -errno : 0;
}

int mfs_file_fallocate(MfsFile *file, int mode, off_t off, off_t len)
{
	return fallocate(file->fd, mode, off, len) < 0 ? -errno : 0;
}

off_t mfs_file_lseek(MfsFile *file, off_t off, int whence)
{
	off_t res = lseek(file->fd, off, whence);

	return res < 0 ? -errno : res;
}

ssize_t mfs_file_copy_range(MfsFile *in, off_t off_in, MfsFile *out, off_t off_out, size_t len,
                            unsigned int flags)
{
	ssize_t n = copy_file_range(in->fd, &off_in, out->fd, &off_out, len, flags);

	return n < 0 ? -errno : n;
}
