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

int mfs_observe_stunned(Mfs *fs, const MfsObserver *obs, void *opaque)
{
	if (fs->n_observers == MFS_MAX_JOBS)
		return -EBUSY;
	fs->observers[fs->n_observers].obs = obs;
	fs->observers[fs->n_observers].opaque = opaque;
	fs->n_observers++;
	return 0;
}

void mfs_unobserve_stunned(Mfs *fs, void *opaque)
{
	for (unsigned i = 0; i < fs->n_observers; i++) {
		if (fs->observers[i].opaque != opaque)
			continue;
		memmove(&fs->observers[i], &fs->observers[i + 1],
		        (fs->n_observers - i - 1) * sizeof(fs->observers[0]));
		fs->n_observers--;
		return;
	}
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

static GPtrArray *jobs_copy(Mfs *fs)
{
	GPtrArray *copy = g_ptr_array_sized_new(fs->jobs->len);

	for (guint i = 0; i < fs->jobs->len; i++)
		g_ptr_array_add(copy, g_ptr_array_index(fs->jobs, i));
	return copy;
}

GPtrArray *mfs_jobs(Mfs *fs)
{
	GPtrArray *jobs;

	mfs_rwlock_reader_lock(&fs->ns_lock);
	jobs = jobs_copy(fs);
	mfs_rwlock_reader_unlock(&fs->ns_lock);
	return jobs;
}

GPtrArray *mfs_jobs_frozen(Mfs *fs)
{
	return jobs_copy(fs);
}

void mfs_keep_job_stunned(Mfs *fs, void *job, void (*job_free)(void *job))
{
	g_ptr_array_add(fs->jobs, job);
	fs->job_free = job_free;
}

void mfs_drop_job_stunned(Mfs *fs, void *job)
{
	g_ptr_array_remove(fs->jobs, job);
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

MirrorFile *mfs_inode_mirror_stunned(const MfsInode *inode)
{
	return inode->mirror;
}

/* Under the table's lock only pointers move; the caller closes the old descriptors. */
void mfs_repoint_inodes_stunned(Mfs *fs, MfsRepoint *r, guint n)
{
	mfs_mutex_lock(&fs->inodes_lock);
	g_hash_table_steal_all(fs->inodes);
	for (guint i = 0; i < n; i++) {
		MfsInode *inode = r[i].inode;

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
