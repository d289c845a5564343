/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The passthrough: an inode table over the source directory and the
 * namespace operations on it.
 *
 * Every inode holds an O_PATH descriptor of its backing object, found by
 * name relative to its parent's descriptor, so the engine never builds
 * paths and keeps working after it is mounted over its own source.  Two
 * names of one backing object (hard links) share one inode: the table is
 * keyed by (st_dev, st_ino).  An inode lives while the kernel holds lookup
 * counts on it; the root lives as long as the Mfs.
 *
 * Locking: inodes_lock protects the table and every nlookup.  It is taken
 * on lookup and forget only, never on the read/write path, and never
 * across a system call other than close(2).
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

static guint inode_key_hash(gconstpointer p)
{
	const MfsInodeKey *k = p;

	return (guint)(k->ino ^ (k->ino >> 32) ^ (k->dev * 0x9e3779b1u));
}

static gboolean inode_key_equal(gconstpointer a, gconstpointer b)
{
	const MfsInodeKey *x = a, *y = b;

	return x->ino == y->ino && x->dev == y->dev;
}

int mfs_new(const char *source_dir, Mfs **out)
{
	struct stat st;
	Mfs *fs;
	int fd, ret;

	fd = open(source_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	fs = g_new0(Mfs, 1);
	fs->root_fd = fd;
	fs->root.fd = fd;
	fs->root.key = (MfsInodeKey){st.st_dev, st.st_ino};
	fs->root.type = S_IFDIR;
	/* The kernel never forgets the root: one count that is never dropped. */
	fs->root.nlookup = 1;
	g_mutex_init(&fs->inodes_lock);
	fs->inodes = g_hash_table_new(inode_key_hash, inode_key_equal);
	g_hash_table_add(fs->inodes, &fs->root);
	*out = fs;
	return 0;
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
	g_hash_table_iter_init(&it, fs->inodes);
	while (g_hash_table_iter_next(&it, &key, NULL)) {
		if (key != &fs->root)
			inode_free(key);
	}
	g_hash_table_destroy(fs->inodes);
	g_mutex_clear(&fs->inodes_lock);
	close(fs->root_fd);
	g_free(fs);
}

MfsInode *mfs_root(Mfs *fs)
{
	return &fs->root;
}

unsigned mfs_inode_count(Mfs *fs)
{
	unsigned n;

	g_mutex_lock(&fs->inodes_lock);
	n = g_hash_table_size(fs->inodes);
	g_mutex_unlock(&fs->inodes_lock);
	return n;
}

static int stat_path_fd(int fd, struct stat *st)
{
	if (fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return 0;
}

int mfs_lookup(Mfs *fs, MfsInode *parent, const char *name, MfsEntry *out)
{
	MfsInode *inode, *fresh = NULL;
	MfsInodeKey key;
	int fd, ret;

	fd = openat(parent->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = stat_path_fd(fd, &out->st);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	key = (MfsInodeKey){out->st.st_dev, out->st.st_ino};

	g_mutex_lock(&fs->inodes_lock);
	inode = g_hash_table_lookup(fs->inodes, &key);
	if (inode) {
		inode->nlookup++;
	} else {
		fresh = inode = g_new0(MfsInode, 1);
		inode->key = key;
		inode->fd = fd;
		inode->type = out->st.st_mode & S_IFMT;
		inode->nlookup = 1;
		g_hash_table_add(fs->inodes, inode);
	}
	g_mutex_unlock(&fs->inodes_lock);

	if (!fresh)
		close(fd);
	out->inode = inode;
	return 0;
}

void mfs_forget(Mfs *fs, MfsInode *inode, uint64_t nlookup)
{
	bool dead = false;

	g_mutex_lock(&fs->inodes_lock);
	g_assert(inode->nlookup >= nlookup);
	inode->nlookup -= nlookup;
	if (inode->nlookup == 0) {
		g_assert(inode != &fs->root);
		g_hash_table_remove(fs->inodes, &inode->key);
		dead = true;
	}
	g_mutex_unlock(&fs->inodes_lock);
	if (dead)
		inode_free(inode);
}

int mfs_getattr(Mfs *fs, MfsInode *inode, MfsFile *file, struct stat *out)
{
	(void)fs;
	if (file) {
		if (fstat(file->fd, out) < 0)
			return -errno;
		return 0;
	}
	return stat_path_fd(inode->fd, out);
}

int mfs_setattr(Mfs *fs, MfsInode *inode, MfsFile *file, const struct stat *attr, int to_set,
                struct stat *out)
{
	char path[MFS_PROC_FD_LEN];
	int ret;

	mfs_proc_fd_path(inode->fd, path);
	if (to_set & MFS_SET_MODE) {
		ret = file ? fchmod(file->fd, attr->st_mode) : chmod(path, attr->st_mode);
		if (ret < 0)
			return -errno;
	}
	if (to_set & (MFS_SET_UID | MFS_SET_GID)) {
		uid_t uid = (to_set & MFS_SET_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (to_set & MFS_SET_GID) ? attr->st_gid : (gid_t)-1;

		if (fchownat(inode->fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	if (to_set & MFS_SET_SIZE) {
		ret = file ? ftruncate(file->fd, attr->st_size) : truncate(path, attr->st_size);
		if (ret < 0)
			return -errno;
	}
	if (to_set & (MFS_SET_ATIME | MFS_SET_MTIME | MFS_SET_ATIME_NOW | MFS_SET_MTIME_NOW)) {
		struct timespec tv[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};

		if (to_set & MFS_SET_ATIME_NOW)
			tv[0].tv_nsec = UTIME_NOW;
		else if (to_set & MFS_SET_ATIME)
			tv[0] = attr->st_atim;
		if (to_set & MFS_SET_MTIME_NOW)
			tv[1].tv_nsec = UTIME_NOW;
		else if (to_set & MFS_SET_MTIME)
			tv[1] = attr->st_mtim;
		if (file)
			ret = futimens(file->fd, tv);
		else if (inode->type == S_IFLNK)
			ret = utimensat(inode->fd, "", tv, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
		else
			ret = utimensat(AT_FDCWD, path, tv, 0);
		if (ret < 0)
			return -errno;
	}
	return mfs_getattr(fs, inode, file, out);
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

	(void)fs;
	n = readlinkat(inode->fd, "", buf, size);
	if (n < 0)
		return -errno;
	if ((size_t)n >= size)
		return -ENAMETOOLONG;
	buf[n] = '\0';
	return (int)n;
}

int mfs_statfs(Mfs *fs, MfsInode *inode, struct statvfs *out)
{
	(void)fs;
	if (fstatvfs(inode->fd, out) < 0)
		return -errno;
	return 0;
}

/* Look up what a creation just made, or remove it if that fails. */
static int lookup_created(Mfs *fs, MfsInode *parent, const char *name, bool is_dir, MfsEntry *out)
{
	int ret = mfs_lookup(fs, parent, name, out);

	if (ret < 0)
		unlinkat(parent->fd, name, is_dir ? AT_REMOVEDIR : 0);
	return ret;
}

int mfs_mknod(Mfs *fs, MfsInode *parent, const char *name, mode_t mode, dev_t rdev,
              const MfsCred *cred, MfsEntry *out)
{
	MfsCredSaved saved;
	int ret;

	mfs_cred_enter(cred, &saved);
	ret = mknodat(parent->fd, name, mode, rdev) < 0 ? -errno : 0;
	mfs_cred_leave(&saved);
	if (ret < 0)
		return ret;
	return lookup_created(fs, parent, name, false, out);
}

int mfs_mkdir(Mfs *fs, MfsInode *parent, const char *name, mode_t mode, const MfsCred *cred,
              MfsEntry *out)
{
	MfsCredSaved saved;
	int ret;

	mfs_cred_enter(cred, &saved);
	ret = mkdirat(parent->fd, name, mode) < 0 ? -errno : 0;
	mfs_cred_leave(&saved);
	if (ret < 0)
		return ret;
	return lookup_created(fs, parent, name, true, out);
}

int mfs_symlink(Mfs *fs, const char *target, MfsInode *parent, const char *name,
                const MfsCred *cred, MfsEntry *out)
{
	MfsCredSaved saved;
	int ret;

	mfs_cred_enter(cred, &saved);
	ret = symlinkat(target, parent->fd, name) < 0 ? -errno : 0;
	mfs_cred_leave(&saved);
	if (ret < 0)
		return ret;
	return lookup_created(fs, parent, name, false, out);
}

int mfs_link(Mfs *fs, MfsInode *inode, MfsInode *newparent, const char *newname, MfsEntry *out)
{
	char path[MFS_PROC_FD_LEN];

	/* linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; the proc path does not. */
	mfs_proc_fd_path(inode->fd, path);
	if (linkat(AT_FDCWD, path, newparent->fd, newname, AT_SYMLINK_FOLLOW) < 0)
		return -errno;
	return mfs_lookup(fs, newparent, newname, out);
}

int mfs_unlink(Mfs *fs, MfsInode *parent, const char *name)
{
	(void)fs;
	return unlinkat(parent->fd, name, 0) < 0 ? -errno : 0;
}

int mfs_rmdir(Mfs *fs, MfsInode *parent, const char *name)
{
	(void)fs;
	return unlinkat(parent->fd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

int mfs_rename(Mfs *fs, MfsInode *parent, const char *name, MfsInode *newparent,
               const char *newname, unsigned int flags)
{
	(void)fs;
	if (renameat2(parent->fd, name, newparent->fd, newname, flags) < 0)
		return -errno;
	return 0;
}

/*
 * xattr calls take no O_PATH descriptor; the proc path reaches the object.
 * It would follow a symlink, whose own xattrs (trusted.* only) we decline.
 */
static int xattr_path(MfsInode *inode, char path[MFS_PROC_FD_LEN])
{
	if (inode->type == S_IFLNK)
		return -ENOTSUP;
	mfs_proc_fd_path(inode->fd, path);
	return 0;
}

int mfs_getxattr(Mfs *fs, MfsInode *inode, const char *name, void *buf, size_t size)
{
	char path[MFS_PROC_FD_LEN];
	ssize_t n;
	int ret;

	(void)fs;
	ret = xattr_path(inode, path);
	if (ret < 0)
		return ret;
	n = getxattr(path, name, buf, size);
	return n < 0 ? -errno : (int)n;
}

int mfs_listxattr(Mfs *fs, MfsInode *inode, char *buf, size_t size)
{
	char path[MFS_PROC_FD_LEN];
	ssize_t n;

	(void)fs;
	if (inode->type == S_IFLNK)
		return 0;
	mfs_proc_fd_path(inode->fd, path);
	n = listxattr(path, buf, size);
	return n < 0 ? -errno : (int)n;
}

int mfs_setxattr(Mfs *fs, MfsInode *inode, const char *name, const void *value, size_t size,
                 int flags)
{
	char path[MFS_PROC_FD_LEN];
	int ret;

	(void)fs;
	ret = xattr_path(inode, path);
	if (ret < 0)
		return ret;
	return setxattr(path, name, value, size, flags) < 0 ? -errno : 0;
}

int mfs_removexattr(Mfs *fs, MfsInode *inode, const char *name)
{
	char path[MFS_PROC_FD_LEN];
	int ret;

	(void)fs;
	ret = xattr_path(inode, path);
	if (ret < 0)
		return ret;
	return removexattr(path, name) < 0 ? -errno : 0;
}
