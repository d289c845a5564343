/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Open directories.  The kernel serializes readdir on one open directory,
 * so an MfsDir needs no lock.  An entry that did not fit the caller's
 * buffer stays pending until the caller asks for the offset after it, so
 * a reply that ends early costs no seekdir(3).
 */
#define _GNU_SOURCE
#include "mfs-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>

int mfs_opendir(Mfs *fs, MfsInode *inode, MfsDir **out)
{
	MfsDir *dir;
	DIR *dp;
	int fd;

	(void)fs;
	fd = openat(inode->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	dp = fdopendir(fd);
	if (!dp) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	dir = g_new0(MfsDir, 1);
	dir->dp = dp;
	*out = dir;
	return 0;
}

void mfs_releasedir(Mfs *fs, MfsDir *dir)
{
	(void)fs;
	if (!dir)
		return;
	closedir(dir->dp);
	g_free(dir);
}

int mfs_fsyncdir(MfsDir *dir, bool datasync)
{
	int fd = dirfd(dir->dp);
	int ret = datasync ? fdatasync(fd) : fsync(fd);

	return ret < 0 ? -errno : 0;
}

int mfs_readdir(MfsDir *dir, off_t off, const char **name, ino_t *ino, unsigned char *type,
                off_t *next_off)
{
	if (off != dir->offset) {
		if (dir->entry && off == dir->entry->d_off) {
			/* The caller took the pending entry. */
			dir->entry = NULL;
		} else {
			seekdir(dir->dp, off);
			dir->entry = NULL;
		}
		dir->offset = off;
	}
	if (!dir->entry) {
		errno = 0;
		dir->entry = readdir(dir->dp);
		if (!dir->entry)
			return errno ? -errno : 0;
	}
	*name = dir->entry->d_name;
	*ino = dir->entry->d_ino;
	*type = dir->entry->d_type;
	*next_off = dir->entry->d_off;
	return 1;
}
