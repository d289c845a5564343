/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The passthrough: the served directory (found by following the journals
 * of switched migrations), its claim, and the inode table over it, with
 * the operations that only read (lookup, getattr, access, readlink,
 * statfs).  Changes are in mfs-ns.c, open files in mfs-file.c, directory
 * handles in mfs-dir.c, what a job may do in mfs-job.c.
 *
 * Every inode holds an O_PATH descriptor of its backing object, found by
 * name relative to its parent's descriptor, so the engine never builds
 * paths and keeps working after it is mounted over its own source.  Two
 * names of one backing object (hard links) share one inode: the table is
 * keyed by (st_dev, st_ino).  An inode lives while the kernel holds lookup
 * counts on it; the root lives as long as the Mfs.
 *
 * Every operation but read passes the stun gate (gate.h), so that a
 * switch can stop them all, repoint every descriptor and let them go on.
 * Namespace changes also take ns_lock (lock.h): while a job observes
 * the tree they are reported to it, in the same order.
 *
 * inodes_lock protects the table and every nlookup.  The lock order, and
 * what each lock may be held across, are written in lock.h.
 */
#define _GNU_SOURCE
#include "mfs-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

/* Follow the journals of switched migrations to the directory to serve. */
/*
 * Follow the journals to the authoritative directory: a "switched" one
 * points at where the tree went, a "copying" one (a partial copy left by
 * a crash) back at the source it was being copied from.  A crash between
 * the two journal updates of a switch leaves both, pointing at each other;
 * the "switched" record is the later event, so its target wins.
 */
/*
 * Every migration leaves a journal in the directory it left: a tree moved
 * often is a long chain.  Cycles are caught by name, so this only bounds
 * the work of a pathological one.
 */
#define MAX_JOURNAL_HOPS 4096

static int open_served_dir(const char *source_dir, char **served, char **error)
{
	g_autofree char *dir = g_strdup(source_dir);
	g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autofree char *last_switched = NULL, *came_from = NULL;
	bool switched = false;
	int fd, ret;

	for (int hops = 0;; hops++) {
		g_auto(Journal) j = {0};
		char *next;

		fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			int err = errno;

			/* Name the journal that led here, not the source given. */
			if (came_from && error && switched)
				*error = g_strdup_printf(
				    "%s/%s says the files moved to %s, which is "
				    "missing: %s",
				    came_from, MFS_JOURNAL_NAME, dir, g_strerror(err));
			else if (came_from && error)
				*error = g_strdup_printf("%s/%s says it is a partial copy of %s, "
				                         "which is missing: %s",
				                         came_from, MFS_JOURNAL_NAME, dir,
				                         g_strerror(err));
			return -err;
		}
		ret = journal_read(fd, &j);
		if (ret == -ENOENT)
			break;
		if (ret < 0) {
			/*
			 * It may say the files moved: serving this directory
			 * instead could serve a stale tree.  Refuse.
			 */
			if (error)
				*error =
				    g_strdup_printf("%s/%s cannot be read (%s); it says where "
				                    "the files are: repair it, or remove it "
				                    "if %s is the tree to serve",
				                    dir, MFS_JOURNAL_NAME, g_strerror(-ret), dir);
			close(fd);
			return ret;
		}
		if (strcmp(j.state, "switched") == 0) {
			next = j.target;
			g_free(last_switched);
			last_switched = g_strdup(j.target);
		} else if (strcmp(j.state, "copying") == 0 && strcmp(j.target, dir) == 0) {
			next = j.source;
		} else {
			break;
		}
		if (g_hash_table_contains(seen, dir)) {
			/* A cycle: the last switch made is the one that holds. */
			close(fd);
			g_free(dir);
			dir = g_steal_pointer(&last_switched);
			fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
			if (fd < 0) {
				int err = errno;

				if (error)
					*error = g_strdup_printf("the journals say the files moved "
					                         "to %s, which is missing: %s",
					                         dir, g_strerror(err));
				return -err;
			}
			break;
		}
		g_hash_table_add(seen, g_strdup(dir));
		close(fd);
		if (hops == MAX_JOURNAL_HOPS)
			return -ELOOP;
		switched = strcmp(j.state, "switched") == 0;
		g_free(came_from);
		came_from = dir;
		dir = g_strdup(next);
	}
	*served = g_steal_pointer(&dir);
	return fd;
}

int mfs_new(const char *source_dir, Mfs **out)
{
	return mfs_new_explained(source_dir, out, NULL);
}

int mfs_new_explained(const char *source_dir, Mfs **out, char **error)
{
	struct stat st;
	char *served = NULL;
	Mfs *fs;
	int fd, ret;

	fd = open_served_dir(source_dir, &served, error);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		close(fd);
		g_free(served);
		return ret;
	}
	fs = g_new0(Mfs, 1);
	fs->dir = served;
	fs->test_write_hold_us =
	    (gulong)g_ascii_strtoull(g_getenv("MIRRORFS_TEST_WRITE_HOLD_MS") ?: "0", NULL, 10) *
	    1000;
	fs->root.fd = fd;
	fs->lock_fd = -1;
	fs->root.key = (MfsInodeKey){st.st_dev, st.st_ino};
	fs->root.type = S_IFDIR;
	/* The kernel never forgets the root: one count that is never dropped. */
	fs->root.nlookup = 1;
	gate_init(&fs->gate);
	mfs_rwlock_init(&fs->ns_lock);
	mfs_mutex_init(&fs->inodes_lock);
	fs->inodes = g_hash_table_new(mfs_inode_key_hash, mfs_inode_key_equal);
	g_hash_table_add(fs->inodes, &fs->root);
	mfs_mutex_init(&fs->files_lock);
	mfs_mutex_init(&fs->job_notify_lock);
	fs->jobs = g_ptr_array_new();
	fs->files = g_hash_table_new(NULL, NULL);
	ret = mfs_placements_load(fs, error);
	if (ret < 0) {
		mfs_free(fs);
		return ret;
	}
	*out = fs;
	return 0;
}

char *mfs_served_dir(Mfs *fs)
{
	return mfs_served_dir_dup_fd(fs, NULL);
}

char *mfs_served_dir_dup_fd(Mfs *fs, int *fd)
{
	char *dir;

	/* The switch replaces both under the namespace lock, taken to write. */
	mfs_rwlock_reader_lock(&fs->ns_lock);
	dir = g_strdup(fs->dir);
	if (fd)
		*fd = fcntl(fs->root.fd, F_DUPFD_CLOEXEC, 0);
	mfs_rwlock_reader_unlock(&fs->ns_lock);
	return dir;
}

static void inode_free(gpointer p)
{
	MfsInode *inode = p;

	close(inode->fd);
	g_free(inode);
}

void mfs_free(Mfs *fs)
{
	GHashTableIter it;
	gpointer key;

	if (!fs)
		return;
	for (guint i = 0; i < fs->jobs->len; i++)
		fs->job_free(g_ptr_array_index(fs->jobs, i));
	g_ptr_array_free(fs->jobs, TRUE);
	g_hash_table_iter_init(&it, fs->inodes);
	while (g_hash_table_iter_next(&it, &key, NULL)) {
		if (key != &fs->root)
			inode_free(key);
	}
	g_hash_table_destroy(fs->inodes);
	/* Files the kernel never released (a lazy unmount that ended the session). */
	g_hash_table_iter_init(&it, fs->files);
	while (g_hash_table_iter_next(&it, &key, NULL)) {
		mfs_file_free(key);
	}
	g_hash_table_destroy(fs->files);
	mfs_placements_free(fs);
	mfs_mutex_clear(&fs->inodes_lock);
	mfs_mutex_clear(&fs->files_lock);
	mfs_mutex_clear(&fs->job_notify_lock);
	mfs_rwlock_clear(&fs->ns_lock);
	gate_clear(&fs->gate);
	close(fs->root.fd);
	if (fs->lock_fd >= 0)
		close(fs->lock_fd);
	g_free(fs->dir);
	g_free(fs);
}

int mfs_claim(Mfs *fs, char **error)
{
	int ret;

	*error = NULL;
	if (fs->lock_fd >= 0) {
		/* After a fork: the claims are this process's now. */
		mfs_dir_claim_renew(fs->lock_fd);
		return 0;
	}
	ret = mfs_dir_claim(fs->root.fd, &fs->lock_fd);
	if (ret == -EWOULDBLOCK) {
		g_autofree char *holder = mfs_dir_claim_holder(fs->root.fd);

		*error = g_strdup_printf("'%s' is already served by %s", fs->dir, holder);
	} else if (ret < 0) {
		*error = g_strdup_printf("'%s': cannot lock it: %s", fs->dir, g_strerror(-ret));
	}
	return ret;
}

void mfs_set_transport(Mfs *fs, const char *name)
{
	g_atomic_pointer_set(&fs->transport, name);
}

const char *mfs_transport(Mfs *fs)
{
	const char *name = g_atomic_pointer_get(&fs->transport);

	return name ? name : MFS_TRANSPORT_DEV_FUSE;
}

void mfs_set_mount_dev(Mfs *fs, dev_t dev)
{
	fs->mount_dev = dev;
	fs->mount_dev_set = true;
}

unsigned mfs_open_files(Mfs *fs)
{
	return (unsigned)g_atomic_int_get(&fs->open_files);
}

MfsInode *mfs_root(Mfs *fs)
{
	return &fs->root;
}

GPtrArray *mfs_inodes_stunned(Mfs *fs)
{
	return mfs_table_keys(fs->inodes, &fs->inodes_lock);
}

unsigned mfs_inode_count(Mfs *fs)
{
	unsigned n;

	mfs_mutex_lock(&fs->inodes_lock);
	n = g_hash_table_size(fs->inodes);
	mfs_mutex_unlock(&fs->inodes_lock);
	return n;
}

static int stat_path_fd(int fd, struct stat *st)
{
	if (fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return 0;
}

/* Lookup inside the gate: what lookup and every creation share. */
int mfs_lookup_inside(Mfs *fs, MfsInode *parent, const char *name, MfsEntry *out)
{
	MfsInode *inode, *fresh = NULL;
	MfsInodeKey key;
	int fd, ret;

	if (mfs_is_journal(fs, parent, name))
		return -ENOENT;
	fd = openat(mfs_entry_dir_fd(fs, parent, name), name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = stat_path_fd(fd, &out->st);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	key = (MfsInodeKey){out->st.st_dev, out->st.st_ino};

	mfs_mutex_lock(&fs->inodes_lock);
	inode = g_hash_table_lookup(fs->inodes, &key);
	if (inode) {
		inode->nlookup++;
	} else {
		fresh = inode = g_new0(MfsInode, 1);
		inode->key = key;
		inode->fd = fd;
		inode->type = out->st.st_mode & S_IFMT;
		inode->nlookup = 1;
		/* Jobs move disjoint sets of files: one at most has a mirror for it. */
		for (unsigned i = 0;
		     i < fs->n_observers && inode->type == S_IFREG && !inode->mirror; i++)
			inode->mirror =
			    fs->observers[i].obs->mirror_of(fs->observers[i].opaque, &key);
		g_hash_table_add(fs->inodes, inode);
	}
	mfs_mutex_unlock(&fs->inodes_lock);

	if (!fresh)
		close(fd);
	out->inode = inode;
	return 0;
}

int mfs_lookup(Mfs *fs, MfsInode *parent, const char *name, MfsEntry *out)
{
	int ret;

	gate_enter(&fs->gate);
	ret = mfs_lookup_inside(fs, parent, name, out);
	gate_leave(&fs->gate);
	return ret;
}

void mfs_forget(Mfs *fs, MfsInode *inode, uint64_t nlookup)
{
	/* The switch holds every known inode from its preparation to the swap. */
	gate_enter(&fs->gate);
	mfs_forget_inside(fs, inode, nlookup);
	gate_leave(&fs->gate);
}

void mfs_forget_inside(Mfs *fs, MfsInode *inode, uint64_t nlookup)
{
	bool dead = false;

	mfs_mutex_lock(&fs->inodes_lock);
	g_assert(inode->nlookup >= nlookup);
	inode->nlookup -= nlookup;
	if (inode->nlookup == 0) {
		g_assert(inode != &fs->root);
		g_hash_table_remove(fs->inodes, &inode->key);
		dead = true;
	}
	mfs_mutex_unlock(&fs->inodes_lock);
	if (dead)
		inode_free(inode);
}

int mfs_getattr_inside(MfsInode *inode, MfsFile *file, struct stat *out)
{
	if (file)
		return fstat(file->fd, out) < 0 ? -errno : 0;
	return stat_path_fd(inode->fd, out);
}

int mfs_getattr(Mfs *fs, MfsInode *inode, MfsFile *file, struct stat *out)
{
	int ret;

	gate_enter(&fs->gate);
	ret = mfs_getattr_inside(inode, file, out);
	gate_leave(&fs->gate);
	return ret;
}

int mfs_access(Mfs *fs, MfsInode *inode, int mask, const MfsCred *cred, const gid_t *groups,
               int ngroups)
{
	struct stat st;
	unsigned bits;
	int ret;

	ret = mfs_getattr(fs, inode, NULL, &st);
	if (ret < 0 || mask == F_OK)
		return ret;
	if (cred->uid == 0) {
		/* root may do anything but execute what nobody may execute. */
		if ((mask & X_OK) && !S_ISDIR(st.st_mode) && !(st.st_mode & 0111))
			return -EACCES;
		return 0;
	}
	if (st.st_uid == cred->uid) {
		bits = (st.st_mode >> 6) & 7;
	} else {
		bool member = st.st_gid == cred->gid;

		for (int i = 0; i < ngroups && !member; i++)
			member = groups[i] == st.st_gid;
		bits = member ? (st.st_mode >> 3) & 7 : st.st_mode & 7;
	}
	return ((unsigned)mask & ~bits) ? -EACCES : 0;
}

int mfs_readlink(Mfs *fs, MfsInode *inode, char *buf, size_t size)
{
	ssize_t n;

	gate_enter(&fs->gate);
	n = readlinkat(inode->fd, "", buf, size);
	n = n < 0 ? -errno : n;
	gate_leave(&fs->gate);
	if (n < 0)
		return (int)n;
	if ((size_t)n >= size)
		return -ENAMETOOLONG;
	buf[n] = '\0';
	return (int)n;
}

int mfs_statfs(Mfs *fs, MfsInode *inode, struct statvfs *out)
{
	int ret;

	gate_enter(&fs->gate);
	ret = fstatvfs(inode->fd, out) < 0 ? -errno : 0;
	gate_leave(&fs->gate);
	return ret;
}
