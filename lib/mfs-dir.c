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
#include <string.h>

int mfs_opendir(Mfs *fs, MfsInode *inode, MfsDir **out)
{
	MfsDir *dir;
	DIR *dp;
	int fd;

	GArray *listing = NULL;
	int ret = 0;

	gate_enter(&fs->gate);
	fd = openat(inode->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	dp = fd < 0 ? NULL : fdopendir(fd);
	if (!dp)
		ret = -errno;
	/* A root with placed entries is listed whole, now: its names live in several places. */
	else if (inode == mfs_root(fs))
		listing = mfs_root_listing_inside(fs, dp, &ret);
	gate_leave(&fs->gate);
	if (ret < 0) {
		if (dp)
			closedir(dp);
		else if (fd >= 0)
			close(fd);
		return ret;
	}
	dir = g_new0(MfsDir, 1);
	dir->dp = dp;
	dir->listing = listing;
	dir->fs = fs;
	dir->inode = inode;
	dir->root = inode == mfs_root(fs);
	*out = dir;
	return 0;
}

void mfs_releasedir(Mfs *fs, MfsDir *dir)
{
	(void)fs;
	if (!dir)
		return;
	closedir(dir->dp);
	if (dir->listing)
		g_array_free(dir->listing, TRUE);
	g_free(dir);
}

/*
 * The directory is reached through its inode, not the handle's own
 * descriptor: a handle opened before a switch still reads the source, and
 * a rename made durable after the switch must be flushed on the target.
 */
int mfs_fsyncdir(Mfs *fs, MfsDir *dir, bool datasync)
{
	int fd, ret;

	gate_enter(&fs->gate);
	fd = openat(dir->inode->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ret = fd < 0 || (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? -errno : 0;
	if (fd >= 0)
		close(fd);
	/* The root's placed names live in their homes' directories too. */
	if (ret == 0 && dir->inode == mfs_root(fs))
		ret = mfs_placements_sync_inside(fs, datasync);
	gate_leave(&fs->gate);
	return ret;
}

int mfs_readdir(MfsDir *dir, off_t off, const char **name, ino_t *ino, unsigned char *type,
                off_t *next_off)
{
	if (dir->listing) {
		MfsListed *e;

		/* rewinddir(3): what the root holds now, as an unplaced one shows it. */
		if (off == 0 && dir->listed) {
			GArray *fresh;
			int err;

			gate_enter(&dir->fs->gate);
			rewinddir(dir->dp);
			fresh = mfs_root_listing_inside(dir->fs, dir->dp, &err);
			gate_leave(&dir->fs->gate);
			if (!fresh)
				return err;
			g_array_free(dir->listing, TRUE);
			dir->listing = fresh;
			dir->listed = false;
		}
		if (off < 0 || (guint64)off >= dir->listing->len)
			return 0;
		dir->listed = true;
		e = &g_array_index(dir->listing, MfsListed, off);
		*name = e->name;
		*ino = e->ino;
		*type = e->type;
		*next_off = off + 1;
		return 1;
	}
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
	while (!dir->entry) {
		errno = 0;
		dir->entry = readdir(dir->dp);
		if (!dir->entry)
			return errno ? -errno : 0;
		if (dir->root && journal_is_reserved_name(dir->entry->d_name)) {
			dir->offset = dir->entry->d_off;
			dir->entry = NULL;
		}
	}
	*name = dir->entry->d_name;
	*ino = dir->entry->d_ino;
	*type = dir->entry->d_type;
	*next_off = dir->entry->d_off;
	return 1;
}
