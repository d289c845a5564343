/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The served tree's changes: attributes, names made, linked, removed and
 * renamed, extended attributes.  Each is made on the backing object, and,
 * while a job observes the tree (mfs-job.h), reported to it under ns_lock
 * exclusive, so that the job's target sees the changes in the same order.
 * The journal's names at the root are refused.  Touches the inode table
 * only through lookup and forget (mfs.c).
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

/* The observers that mirror the namespace changes now; under ns_lock. */
static MfsObserved observed(Mfs *fs)
{
	MfsObserved mask = 0;

	for (unsigned i = 0; i < fs->n_observers; i++)
		if (fs->observers[i].obs->mirrors_changes(fs->observers[i].opaque))
			mask |= 1u << i;
	return mask;
}

/* Whether a mirrored rename or link must be refused: see MfsObserver.crosses. */
static bool crosses(Mfs *fs, MfsObserved mirrored, MfsInode *inode, MfsInode *parent,
                    const char *name, MfsInode *newparent, const char *newname)
{
	for (unsigned i = 0; i < fs->n_observers; i++)
		if ((mirrored & (1u << i)) && fs->observers[i].obs->crosses &&
		    fs->observers[i].obs->crosses(fs->observers[i].opaque, inode, parent, name,
		                                  newparent, newname))
			return true;
	return false;
}

/* Namespace changes: shared when nothing is mirrored, else exclusive. */
MfsObserved mfs_ns_begin(Mfs *fs)
{
	MfsObserved mask;

	mfs_rwlock_reader_lock(&fs->ns_lock);
	if (observed(fs)) {
		mfs_rwlock_reader_unlock(&fs->ns_lock);
		mfs_rwlock_writer_lock(&fs->ns_lock);
		mask = observed(fs);
		if (mask) {
			gate_enter(&fs->gate);
			return mask;
		}
		mfs_rwlock_writer_unlock(&fs->ns_lock);
		mfs_rwlock_reader_lock(&fs->ns_lock);
	}
	gate_enter(&fs->gate);
	return 0;
}

void mfs_ns_end(Mfs *fs, MfsObserved exclusive)
{
	gate_leave(&fs->gate);
	if (exclusive)
		mfs_rwlock_writer_unlock(&fs->ns_lock);
	else
		mfs_rwlock_reader_unlock(&fs->ns_lock);
}

int mfs_truncate_inside(MfsInode *inode, int fd, off_t size)
{
	char path[MFS_PROC_FD_LEN];
	cleanup_close int own = -1;

	if (fd < 0) {
		mfs_proc_fd_path(inode->fd, path);
		fd = own = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
	}
	/* A mirrored file is truncated by its mirror, in step with the copier. */
	if (inode->mirror)
		return mirror_file_truncate(inode->mirror, fd, size);
	return ftruncate(fd, size) < 0 ? -errno : 0;
}

static int setattr_inside(MfsInode *inode, MfsFile *file, const struct stat *attr, int to_set)
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
		ret = mfs_truncate_inside(inode, file ? file->fd : -1, attr->st_size);
		if (ret < 0)
			return ret;
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
	return 0;
}

int mfs_setattr(Mfs *fs, MfsInode *inode, MfsFile *file, const struct stat *attr, int to_set,
                struct stat *out)
{
	MfsObserved mirrored = mfs_ns_begin(fs);
	int ret = setattr_inside(inode, file, attr, to_set);

	if (ret == 0 && (to_set & ~MFS_SET_SIZE))
		MFS_OBSERVE(fs, mirrored, attr_changed, inode, to_set & ~MFS_SET_SIZE);
	if (ret == 0)
		ret = mfs_getattr_inside(inode, file, out);
	mfs_ns_end(fs, mirrored);
	return ret;
}

/* Look up what a creation just made, or remove it if that fails. */
static int lookup_created(Mfs *fs, MfsInode *parent, const char *name, bool is_dir, MfsEntry *out)
{
	int ret = mfs_lookup_inside(fs, parent, name, out);

	if (ret < 0)
		unlinkat(mfs_entry_dir_fd(fs, parent, name), name, is_dir ? AT_REMOVEDIR : 0);
	return ret;
}

bool mfs_is_journal(Mfs *fs, MfsInode *parent, const char *name)
{
	return parent == &fs->root && journal_is_reserved_name(name);
}

/* The journal's names are reserved at the root: making them is refused. */
#define RETURN_IF_JOURNAL(fs, parent, name)                                                        \
	do {                                                                                       \
		if (mfs_is_journal(fs, parent, name))                                              \
			return -EPERM;                                                             \
	} while (0)

/*
 * mknod, mkdir and symlink: make the node as the caller, look it up, mirror
 * it.  A regular file made by mknod(2) is mirrored as one made by create,
 * with a MirrorFile, before the lookup so that its inode finds it at birth.
 */
static int make_node(Mfs *fs, MfsInode *parent, const char *name, const MfsNodeSpec *spec,
                     const MfsCred *cred, MfsEntry *out)
{
	mode_t type = spec->mode & S_IFMT;
	bool regular = type == S_IFREG || type == 0;
	MfsCredSaved saved;
	MfsObserved mirrored;
	int dir_fd, ret;

	RETURN_IF_JOURNAL(fs, parent, name);
	mirrored = mfs_ns_begin(fs);
	dir_fd = mfs_entry_dir_fd(fs, parent, name);
	mfs_cred_enter(cred, &saved);
	ret = mfs_make_node_at(dir_fd, name, spec);
	mfs_cred_leave(&saved);
	if (ret == 0 && mirrored && regular) {
		struct stat st;
		cleanup_close int fd = openat(dir_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);

		if (fd >= 0 && fstat(fd, &st) == 0)
			MFS_OBSERVE(fs, mirrored, created, parent, name, &st, fd);
	}
	if (ret == 0)
		ret = lookup_created(fs, parent, name, S_ISDIR(spec->mode), out);
	if (ret == 0 && !regular)
		MFS_OBSERVE(fs, mirrored, node_made, parent, name, out, spec);
	mfs_ns_end(fs, mirrored);
	return ret;
}

int mfs_mknod(Mfs *fs, MfsInode *parent, const char *name, mode_t mode, dev_t rdev,
              const MfsCred *cred, MfsEntry *out)
{
	return make_node(fs, parent, name, &(MfsNodeSpec){.mode = mode, .rdev = rdev}, cred, out);
}

int mfs_mkdir(Mfs *fs, MfsInode *parent, const char *name, mode_t mode, const MfsCred *cred,
              MfsEntry *out)
{
	return make_node(fs, parent, name, &(MfsNodeSpec){.mode = S_IFDIR | (mode & 07777)}, cred,
	                 out);
}

int mfs_symlink(Mfs *fs, const char *target, MfsInode *parent, const char *name,
                const MfsCred *cred, MfsEntry *out)
{
	return make_node(fs, parent, name, &(MfsNodeSpec){.mode = S_IFLNK | 0777, .link = target},
	                 cred, out);
}

int mfs_link(Mfs *fs, MfsInode *inode, MfsInode *newparent, const char *newname, MfsEntry *out)
{
	char path[MFS_PROC_FD_LEN];
	MfsObserved mirrored;
	int ret;

	RETURN_IF_JOURNAL(fs, newparent, newname);
	mirrored = mfs_ns_begin(fs);
	/* linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; the proc path does not. */
	mfs_proc_fd_path(inode->fd, path);
	ret = crosses(fs, mirrored, inode, NULL, NULL, newparent, newname) ? -EXDEV : 0;
	if (ret == 0)
		ret = linkat(AT_FDCWD, path, mfs_entry_dir_fd(fs, newparent, newname), newname,
		             AT_SYMLINK_FOLLOW) < 0
		          ? -errno
		          : 0;
	if (ret == 0)
		ret = mfs_lookup_inside(fs, newparent, newname, out);
	if (ret == 0)
		MFS_OBSERVE(fs, mirrored, linked, inode, newparent, newname);
	mfs_ns_end(fs, mirrored);
	return ret;
}

static int remove_entry(Mfs *fs, MfsInode *parent, const char *name, bool dir)
{
	struct stat gone;
	MfsObserved mirrored;
	int dir_fd, ret;

	RETURN_IF_JOURNAL(fs, parent, name);
	mirrored = mfs_ns_begin(fs);
	dir_fd = mfs_entry_dir_fd(fs, parent, name);
	/* What goes away: the migration forgets it if nothing else names it. */
	if (mirrored && fstatat(dir_fd, name, &gone, AT_SYMLINK_NOFOLLOW) < 0)
		gone.st_nlink = 0;
	ret = unlinkat(dir_fd, name, dir ? AT_REMOVEDIR : 0) < 0 ? -errno : 0;
	if (ret == 0)
		MFS_OBSERVE(fs, mirrored, removed, parent, name, dir, gone.st_nlink ? &gone : NULL);
	mfs_ns_end(fs, mirrored);
	return ret;
}

int mfs_unlink(Mfs *fs, MfsInode *parent, const char *name)
{
	return remove_entry(fs, parent, name, false);
}

int mfs_rmdir(Mfs *fs, MfsInode *parent, const char *name)
{
	return remove_entry(fs, parent, name, true);
}

int mfs_rename(Mfs *fs, MfsInode *parent, const char *name, MfsInode *newparent,
               const char *newname, unsigned int flags)
{
	struct stat replaced;
	MfsObserved mirrored;
	int from, to, ret;

	RETURN_IF_JOURNAL(fs, parent, name);
	RETURN_IF_JOURNAL(fs, newparent, newname);
	mirrored = mfs_ns_begin(fs);
	from = mfs_entry_dir_fd(fs, parent, name);
	to = mfs_entry_dir_fd(fs, newparent, newname);
	/* A rename over an existing name removes what that name was. */
	if (!mirrored || (flags & RENAME_EXCHANGE) ||
	    fstatat(to, newname, &replaced, AT_SYMLINK_NOFOLLOW) < 0)
		replaced.st_nlink = 0;
	ret = crosses(fs, mirrored, NULL, parent, name, newparent, newname) ? -EXDEV : 0;
	if (ret == 0)
		ret = renameat2(from, name, to, newname, flags) < 0 ? -errno : 0;
	if (ret == 0)
		MFS_OBSERVE(fs, mirrored, renamed, parent, name, newparent, newname, flags,
		            replaced.st_nlink ? &replaced : NULL);
	mfs_ns_end(fs, mirrored);
	return ret;
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

	gate_enter(&fs->gate);
	n = xattr_path(inode, path);
	if (n == 0) {
		n = getxattr(path, name, buf, size);
		n = n < 0 ? -errno : n;
	}
	gate_leave(&fs->gate);
	return (int)n;
}

int mfs_listxattr(Mfs *fs, MfsInode *inode, char *buf, size_t size)
{
	char path[MFS_PROC_FD_LEN];
	ssize_t n = 0;

	gate_enter(&fs->gate);
	if (inode->type != S_IFLNK) {
		mfs_proc_fd_path(inode->fd, path);
		n = listxattr(path, buf, size);
		n = n < 0 ? -errno : n;
	}
	gate_leave(&fs->gate);
	return (int)n;
}

int mfs_setxattr(Mfs *fs, MfsInode *inode, const char *name, const void *value, size_t size,
                 int flags)
{
	char path[MFS_PROC_FD_LEN];
	MfsObserved mirrored = mfs_ns_begin(fs);
	int ret = xattr_path(inode, path);

	if (ret == 0)
		ret = setxattr(path, name, value, size, flags) < 0 ? -errno : 0;
	if (ret == 0)
		MFS_OBSERVE(fs, mirrored, xattr_set, inode, name, value, size, flags);
	mfs_ns_end(fs, mirrored);
	return ret;
}

int mfs_removexattr(Mfs *fs, MfsInode *inode, const char *name)
{
	char path[MFS_PROC_FD_LEN];
	MfsObserved mirrored = mfs_ns_begin(fs);
	int ret = xattr_path(inode, path);

	if (ret == 0)
		ret = removexattr(path, name) < 0 ? -errno : 0;
	if (ret == 0)
		MFS_OBSERVE(fs, mirrored, xattr_removed, inode, name);
	mfs_ns_end(fs, mirrored);
	return ret;
}
