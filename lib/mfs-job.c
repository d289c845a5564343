/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The served tree's side of mfs-job.h: the observer and the job it keeps,
 * the namespace freeze and the stun, and the few ways a job may look at
 * the tree or repoint it.  Nothing here calls into a job but through the
 * observer's functions.
 */
#define _GNU_SOURCE
#include "mfs-int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

char *mfs_served_dir_frozen(Mfs *fs)
{
	return g_strdup(fs->dir);
}

void mfs_observe_stunned(Mfs *fs, const MfsObserver *obs, void *opaque)
{
	fs->observer = obs;
	fs->observer_opaque = obs ? opaque : NULL;
}

void mfs_set_job_notify(Mfs *fs, void (*fn)(void *opaque), void *opaque)
{
	mfs_mutex_lock(&fs->job_notify_lock);
	fs->job_notify_fn = fn;
	fs->job_notify_opaque = opaque;
	mfs_mutex_unlock(&fs->job_notify_lock);
}

/* Under the lock: once the listener is unset, none is being told any more. */
void mfs_job_notify(Mfs *fs)
{
	mfs_mutex_lock(&fs->job_notify_lock);
	if (fs->job_notify_fn)
		fs->job_notify_fn(fs->job_notify_opaque);
	mfs_mutex_unlock(&fs->job_notify_lock);
}

void *mfs_job(Mfs *fs)
{
	void *job;

	mfs_rwlock_reader_lock(&fs->ns_lock);
	job = fs->job;
	mfs_rwlock_reader_unlock(&fs->ns_lock);
	return job;
}

void *mfs_job_frozen(Mfs *fs)
{
	return fs->job;
}

void *mfs_set_job_stunned(Mfs *fs, void *job, void (*job_free)(void *job))
{
	void *old = fs->job;

	fs->job = job;
	fs->job_free = job_free;
	return old;
}

void mfs_freeze_namespace(Mfs *fs)
{
	mfs_rwlock_writer_lock(&fs->ns_lock);
}

void mfs_thaw_namespace(Mfs *fs)
{
	mfs_rwlock_writer_unlock(&fs->ns_lock);
}

void mfs_stun(Mfs *fs)
{
	gate_close(&fs->gate);
}

void mfs_unstun(Mfs *fs)
{
	gate_open(&fs->gate);
}

int mfs_root_fd(Mfs *fs)
{
	return fs->root.fd;
}

bool mfs_mount_dev(Mfs *fs, dev_t *dev)
{
	*dev = fs->mount_dev;
	return fs->mount_dev_set;
}

int mfs_inode_fd(const MfsInode *inode)
{
	return inode->fd;
}

MfsInodeKey mfs_inode_key(const MfsInode *inode)
{
	return inode->key;
}

mode_t mfs_inode_type(const MfsInode *inode)
{
	return inode->type;
}

void mfs_inode_set_mirror_stunned(MfsInode *inode, MirrorFile *mf)
{
	inode->mirror = mf;
}

/* Under the table's lock only pointers move; the caller closes the old descriptors. */
void mfs_repoint_inodes_stunned(Mfs *fs, MfsRepoint *r, guint n)
{
	mfs_mutex_lock(&fs->inodes_lock);
	g_hash_table_steal_all(fs->inodes);
	for (guint i = 0; i < n; i++) {
		MfsInode *inode = r[i].inode;

		inode->mirror = NULL;
		if (r[i].fd >= 0) {
			int old = inode->fd;

			inode->fd = r[i].fd;
			inode->key = r[i].key;
			r[i].fd = old;
		}
		g_hash_table_add(fs->inodes, inode);
	}
	mfs_mutex_unlock(&fs->inodes_lock);
}

void mfs_moved_stunned(Mfs *fs, const char *dir, int lock_fd)
{
	g_free(fs->dir);
	fs->dir = g_strdup(dir);
	if (fs->lock_fd >= 0)
		close(fs->lock_fd);
	fs->lock_fd = lock_fd;
}
