/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The job's table of objects, and the namespace changes it replays on the
 * target.
 *
 * Objects are known by the (st_dev, st_ino) of their source, so renames
 * do not confuse them, and hard links stay links.  The table is filled by
 * the start's walk (mig-tree.c) and by the changes below.
 *
 * The served tree reports each change through mig_observer (mfs-job.h),
 * after it succeeded on the source and with the namespace frozen for
 * everyone else, so both sides see the changes in one order: names made,
 * linked, removed and renamed, attributes and xattrs changed, and new
 * regular files, born mirrored.  A change the target refuses fails the
 * job (mig_fail()); the guest goes on, on the source.
 */
#define _GNU_SOURCE
#include "migration-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

void mig_object_free(gpointer p)
{
	MigObject *obj = p;

	if (obj->tfd >= 0)
		close(obj->tfd);
	mirror_file_free(obj->mf);
	g_free(obj);
}

static void on_mirror_error(MirrorFile *mf, int err, bool on_source, void *opaque)
{
	Migration *mig = opaque;

	mig_fail(mig, "%s: %s", on_source ? "source" : "target", g_strerror(-err));
}

static bool on_mirror_hold(MirrorFile *mf, int err, off_t from, void *opaque)
{
	return mig_hold(opaque, mf, err, from);
}

/* The observer's mirror_of: at the lookup that makes an inode, under the table's lock. */
static MirrorFile *find_mirror(void *opaque, const MfsInodeKey *key)
{
	Migration *mig = opaque;
	MigObject *obj;
	MirrorFile *mf = NULL;

	mfs_mutex_lock(&mig->lock);
	if (mig_state_mirrors(mig->state)) {
		obj = g_hash_table_lookup(mig->objects, key);
		if (obj)
			mf = obj->mf;
	}
	mfs_mutex_unlock(&mig->lock);
	return mf;
}

MigObject *mig_object_add(Migration *mig, const struct stat *st, int tfd, MirrorFile *mf)
{
	MigObject *obj = g_new0(MigObject, 1);

	obj->key = mfs_key_of(st);
	obj->type = st->st_mode & S_IFMT;
	obj->tfd = tfd;
	obj->mf = mf;
	if (mf) {
		mirror_file_set_error_handler(mf, on_mirror_error, mig);
		mirror_file_set_hold_handler(mf, on_mirror_hold, mig);
	}
	mfs_mutex_lock(&mig->lock);
	obj->id = mig->files->len;
	g_hash_table_replace(mig->objects, &obj->key, obj);
	if (mf)
		g_ptr_array_add(mig->files, obj);
	mfs_mutex_unlock(&mig->lock);
	return obj;
}

MigObject *mig_object_find(Migration *mig, const MfsInodeKey *key)
{
	MigObject *obj;

	mfs_mutex_lock(&mig->lock);
	obj = g_hash_table_lookup(mig->objects, key);
	mfs_mutex_unlock(&mig->lock);
	return obj;
}

/*
 * A source object is gone (its last name removed): forget it, lest a new
 * object that gets its inode number be taken for it.  A regular file is
 * kept: its MirrorFile holds the source open, so its number is not reused,
 * and open handles may still write to it.
 */
static void object_forget(Migration *mig, const struct stat *gone)
{
	MfsInodeKey key = mfs_key_of(gone);
	MigObject *obj;

	if (gone->st_nlink > 1 && !S_ISDIR(gone->st_mode))
		return;
	mfs_mutex_lock(&mig->lock);
	obj = g_hash_table_lookup(mig->objects, &key);
	if (obj && !obj->mf)
		g_hash_table_remove(mig->objects, &key);
	mfs_mutex_unlock(&mig->lock);
}

/* The target descriptor of an object: a directory's, or a file's data fd. */
int mig_object_fd(MigObject *obj)
{
	return obj->mf ? mirror_file_target_fd(obj->mf) : obj->tfd;
}

/* Target directory of a source directory inode, or -1 (and the migration fails). */
static int target_dir(Migration *mig, MfsInode *dir)
{
	MfsInodeKey key = mfs_inode_key(dir);
	MigObject *obj = mig_object_find(mig, &key);

	if (!obj || obj->type != S_IFDIR) {
		mig_fail(mig, "target: no counterpart for a source directory");
		return -1;
	}
	return obj->tfd;
}

/*
 * A per-VM job mirrors only what lies in its entries: at the root, the
 * names selected; below, what the walk or a mirrored change made on the
 * target (a directory outside the selection has no counterpart).
 */
static bool in_scope(Migration *mig, MfsInode *parent, const char *name)
{
	MfsInodeKey key;

	if (!mig->only)
		return true;
	if (parent == mfs_root(mig->fs))
		return mig_only_holds(mig->only, name);
	key = mfs_inode_key(parent);
	return mig_object_find(mig, &key) != NULL;
}

/* The same for an object changed in place: the root is the operator's. */
static bool object_in_scope(Migration *mig, MfsInode *inode)
{
	MfsInodeKey key;

	if (!mig->only)
		return true;
	if (inode == mfs_root(mig->fs))
		return false;
	key = mfs_inode_key(inode);
	return mig_object_find(mig, &key) != NULL;
}

static bool crosses(void *opaque, MfsInode *inode, MfsInode *parent, const char *name,
                    MfsInode *newparent, const char *newname)
{
	Migration *mig = opaque;
	bool from = inode ? object_in_scope(mig, inode) : in_scope(mig, parent, name);

	return from != in_scope(mig, newparent, newname);
}

static void root_name_changed(Migration *mig, MfsInode *parent, const char *name, bool added)
{
	if (parent != mfs_root(mig->fs))
		return;
	mfs_mutex_lock(&mig->lock);
	if (added)
		g_hash_table_add(mig->root_names, g_strdup(name));
	else
		g_hash_table_remove(mig->root_names, name);
	mfs_mutex_unlock(&mig->lock);
}

/* Whether the source object of @inode has no name left. */
bool mig_source_object_gone(MfsInode *inode)
{
	struct stat st;

	return fstatat(mfs_inode_fd(inode), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 &&
	       st.st_nlink == 0;
}

/*
 * A file the guest unlinked and still holds open has no name the walk
 * could find; it is migrated as a nameless file of the target (O_TMPFILE,
 * or a name removed at once where the file system has no O_TMPFILE), so
 * that the switch can move it too and the source is let go entirely.
 */
static MirrorFile *mirror_nameless_file(Migration *mig, MfsInode *inode)
{
	char path[MFS_PROC_FD_LEN], name[64];
	MirrorFile *mf;
	struct stat st;
	int src_ro, dst = -1;

	mfs_proc_fd_path(mfs_inode_fd(inode), path);
	src_ro = open(path, O_RDONLY | O_CLOEXEC);
	if (src_ro < 0 || fstat(src_ro, &st) < 0)
		goto fail;
	dst = openat(mig->dst_root_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (dst < 0 && (errno == EOPNOTSUPP || errno == EISDIR)) {
		g_snprintf(name, sizeof(name), ".mirrorfs-nameless.%ju", (uintmax_t)st.st_ino);
		dst = openat(mig->dst_root_fd, name,
		             O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (dst >= 0)
			unlinkat(mig->dst_root_fd, name, 0);
	}
	if (dst < 0)
		goto fail;
	if (mig_copy_metadata(mig, src_ro, dst, &st) < 0 ||
	    mig_copy_times(mig, dst, S_IFREG, &st) < 0) {
		close(dst);
		goto fail;
	}
	mfs_mutex_lock(&mig->lock);
	mig->bytes_total += MIN((uint64_t)st.st_blocks * 512, (uint64_t)st.st_size);
	mfs_mutex_unlock(&mig->lock);
	mf = mirror_file_new(src_ro, dst, mig->chunk_size, true);
	mirror_file_set_clone(mf, !mig->no_clone);
	mig_object_add(mig, &st, -1, mf);
	return mf;
fail:
	mig_fail(mig, "target: a file open but unlinked: %s", g_strerror(errno));
	if (src_ro >= 0)
		close(src_ro);
	return NULL;
}

/* Point (or un-point) every inode the kernel knows at its mirror.  Stunned. */
void mig_attach_mirrors_stunned(Mfs *fs, Migration *mig, bool attach)
{
	g_autoptr(GPtrArray) inodes = mfs_inodes_stunned(fs);

	for (guint i = 0; i < inodes->len; i++) {
		MfsInode *inode = g_ptr_array_index(inodes, i);
		MfsInodeKey key = mfs_inode_key(inode);
		MirrorFile *mf = NULL;

		if (mfs_inode_type(inode) != S_IFREG)
			continue;
		if (!attach) {
			MigObject *obj = mig->only ? mig_object_find(mig, &key) : NULL;

			/* The other jobs' files keep theirs; a job of the whole tree runs alone. */
			if (!mig->only || (obj && obj->mf == mfs_inode_mirror_stunned(inode)))
				mfs_inode_set_mirror_stunned(inode, NULL);
			continue;
		}
		mf = find_mirror(mig, &key);
		/* A per-VM job cannot tell whose a nameless file was: it stays. */
		if (!mf && !mig->only && mig_source_object_gone(inode))
			mf = mirror_nameless_file(mig, inode);
		if (mf)
			mfs_inode_set_mirror_stunned(inode, mf);
	}
}

/*
 * A mirrored change of @dir's entries moved the target directory's times
 * (and the source's, a moment before): give it the source's.  At once,
 * under ns_lock like the change itself, so that no other change comes in
 * between.  The target's root keeps its own, as in the walk.
 */
static void sync_dir_times(Migration *mig, MfsInode *dir)
{
	MfsInodeKey key;
	MigObject *obj;
	struct stat st;

	if (dir == mfs_root(mig->fs))
		return;
	key = mfs_inode_key(dir);
	obj = mig_object_find(mig, &key);
	if (!obj || obj->type != S_IFDIR)
		return; /* target_dir() has failed the migration already */
	if (fstatat(mfs_inode_fd(dir), "", &st, AT_EMPTY_PATH) < 0) {
		mig_fail(mig, "source: %s", g_strerror(errno));
		return;
	}
	if (mig_copy_times(mig, obj->tfd, S_IFDIR, &st) < 0)
		mig_fail(mig, "target: changing times: %s", g_strerror(errno));
}

static void mirror_create(void *opaque, MfsInode *parent, const char *name, const struct stat *st,
                          int src_fd)
{
	Migration *mig = opaque;
	char path[MFS_PROC_FD_LEN];
	MigObject *obj;
	MirrorFile *mf;
	int dir, src_ro, dst;

	if (!in_scope(mig, parent, name))
		return;
	obj = mig_object_find(mig, &(MfsInodeKey){st->st_dev, st->st_ino});
	if (obj && obj->mf)
		return; /* an existing file, opened with O_CREAT: already mirrored */
	dir = target_dir(mig, parent);
	if (dir < 0)
		return;
	mfs_proc_fd_path(src_fd, path);
	src_ro = open(path, O_RDONLY | O_CLOEXEC);
	/*
	 * A name there is not ours (the source had none): replace it, never
	 * write through it, or a link to it would get the guest's data.
	 */
	if (unlinkat(dir, name, 0) < 0 && errno != ENOENT)
		dst = -1;
	else
		dst = openat(dir, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		             st->st_mode & 07777);
	if (src_ro < 0 || dst < 0) {
		mig_fail(mig, "target: creating '%s': %s", name, g_strerror(errno));
		if (src_ro >= 0)
			close(src_ro);
		if (dst >= 0)
			close(dst);
		return;
	}
	if (fchown(dst, st->st_uid, st->st_gid) < 0) {
		int err = errno;
		g_autofree char *what =
		    g_strdup_printf("the owner %u:%u", (unsigned)st->st_uid, (unsigned)st->st_gid);

		if (!mig_metadata_refused(err) || mig_metadata_lost(mig, dst, what, err) < 0) {
			mig_fail(mig, "target: creating '%s': %s", name, g_strerror(err));
			close(src_ro);
			close(dst);
			return;
		}
	}
	/* Empty on both sides, and not yet visible to anyone: born mirrored. */
	mf = mirror_file_new(src_ro, dst, mig->chunk_size, true);
	mirror_file_mark_mirrored(mf);
	mig_object_add(mig, st, -1, mf);
	root_name_changed(mig, parent, name, true);
	sync_dir_times(mig, parent);
}

static void mirror_node(void *opaque, MfsInode *parent, const char *name, const MfsEntry *e,
                        const MfsNodeSpec *spec)
{
	Migration *mig = opaque;
	int tfd, ret, dir;

	if (!in_scope(mig, parent, name))
		return;
	dir = target_dir(mig, parent);
	if (dir < 0)
		return;
	ret = mfs_make_node_at(dir, name, spec);
	if (ret < 0) {
		mig_fail(mig, "target: making '%s': %s", name, g_strerror(-ret));
		return;
	}
	tfd = mig_open_path(dir, name);
	if (tfd < 0 || mig_copy_metadata(mig, mfs_inode_fd(e->inode), tfd, &e->st) < 0 ||
	    mig_copy_times(mig, tfd, e->st.st_mode & S_IFMT, &e->st) < 0) {
		mig_fail(mig, "target: making '%s': %s", name, g_strerror(errno));
		if (tfd >= 0)
			close(tfd);
		return;
	}
	mig_object_add(mig, &e->st, tfd, NULL);
	root_name_changed(mig, parent, name, true);
	sync_dir_times(mig, parent);
}

static void mirror_link(void *opaque, MfsInode *inode, MfsInode *newparent, const char *newname)
{
	Migration *mig = opaque;
	MfsInodeKey key = mfs_inode_key(inode);
	MigObject *obj = mig_object_find(mig, &key);
	char path[MFS_PROC_FD_LEN];
	struct stat st;
	int dir, ret;

	if (!in_scope(mig, newparent, newname))
		return;
	dir = target_dir(mig, newparent);
	if (dir < 0)
		return;
	if (!obj) {
		mig_fail(mig, "target: link '%s': no counterpart", newname);
		return;
	}
	mfs_proc_fd_path(mig_object_fd(obj), path);
	if (linkat(AT_FDCWD, path, dir, newname, AT_SYMLINK_FOLLOW) < 0) {
		mig_fail(mig, "target: link '%s': %s", newname, g_strerror(errno));
		return;
	}
	/* Two files where the source has one would part at the first write. */
	ret = fstat(mig_object_fd(obj), &st) < 0 ? -errno : mig_check_link(dir, newname, &st);
	if (ret < 0) {
		unlinkat(dir, newname, 0);
		if (ret == -EOPNOTSUPP)
			mig_fail(mig, "target: link '%s': the target cannot hold %s", newname,
			         MIG_LINK_LOST);
		else
			mig_fail(mig, "target: link '%s': %s", newname, g_strerror(-ret));
		return;
	}
	root_name_changed(mig, newparent, newname, true);
	sync_dir_times(mig, newparent);
}

static void mirror_unlink(void *opaque, MfsInode *parent, const char *name, bool is_dir,
                          const struct stat *gone)
{
	Migration *mig = opaque;
	int dir;

	if (!in_scope(mig, parent, name))
		return;
	dir = target_dir(mig, parent);
	if (dir < 0)
		return;
	if (unlinkat(dir, name, is_dir ? AT_REMOVEDIR : 0) < 0) {
		mig_fail(mig, "target: removing '%s': %s", name, g_strerror(errno));
		return;
	}
	root_name_changed(mig, parent, name, false);
	mig_checkpoint_names_moved(mig);
	if (gone)
		object_forget(mig, gone);
	sync_dir_times(mig, parent);
}

static void mirror_rename(void *opaque, MfsInode *parent, const char *name, MfsInode *newparent,
                          const char *newname, unsigned int flags, const struct stat *replaced)
{
	Migration *mig = opaque;
	int from, to;

	/* One that crossed the job's selection was refused (crosses()). */
	if (!in_scope(mig, parent, name))
		return;
	from = target_dir(mig, parent);
	to = target_dir(mig, newparent);
	if (from < 0 || to < 0)
		return;
	if (renameat2(from, name, to, newname, flags) < 0) {
		mig_fail(mig, "target: renaming '%s': %s", name, g_strerror(errno));
		return;
	}
	if (!(flags & RENAME_EXCHANGE))
		root_name_changed(mig, parent, name, false);
	root_name_changed(mig, newparent, newname, true);
	mig_checkpoint_names_moved(mig);
	if (replaced)
		object_forget(mig, replaced);
	sync_dir_times(mig, parent);
	if (newparent != parent)
		sync_dir_times(mig, newparent);
}

/* The target's counterpart of a changed source object, or NULL (and the job fails). */
static MigObject *changed_object(Migration *mig, MfsInode *inode)
{
	MfsInodeKey key = mfs_inode_key(inode);
	MigObject *obj = mig_object_find(mig, &key);

	if (!obj)
		mig_fail(mig, "target: no counterpart for a changed object");
	return obj;
}

static void mirror_setattr(void *opaque, MfsInode *inode, int to_set)
{
	Migration *mig = opaque;
	MigObject *obj;
	struct stat st;
	int fd;

	if (!to_set || !object_in_scope(mig, inode) || !(obj = changed_object(mig, inode)))
		return;
	fd = mig_object_fd(obj);
	/* Whatever was asked, the target ends with the source's result. */
	if (fstatat(mfs_inode_fd(inode), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		mig_fail(mig, "source: %s", g_strerror(errno));
		return;
	}
	if ((to_set & (MFS_SET_MODE | MFS_SET_UID | MFS_SET_GID)) &&
	    mig_copy_metadata(mig, mfs_inode_fd(inode), fd, &st) < 0) {
		mig_fail(mig, "target: changing attributes: %s", g_strerror(errno));
		return;
	}
	if ((to_set & (MFS_SET_ATIME | MFS_SET_MTIME | MFS_SET_ATIME_NOW | MFS_SET_MTIME_NOW)) &&
	    mig_copy_times(mig, fd, obj->type, &st) < 0)
		mig_fail(mig, "target: changing times: %s", g_strerror(errno));
}

static void mirror_setxattr(void *opaque, MfsInode *inode, const char *name, const void *value,
                            size_t size, int flags)
{
	Migration *mig = opaque;
	MigObject *obj = object_in_scope(mig, inode) ? changed_object(mig, inode) : NULL;
	char path[MFS_PROC_FD_LEN];

	if (!obj)
		return;
	mfs_proc_fd_path(mig_object_fd(obj), path);
	if (setxattr(path, name, value, size, flags) < 0) {
		int err = errno;
		g_autofree char *what = g_strdup_printf("the extended attribute '%s'", name);

		if (!mig_metadata_refused(err) ||
		    mig_metadata_lost(mig, mig_object_fd(obj), what, err) < 0)
			mig_fail(mig, "target: setxattr '%s': %s", name, g_strerror(err));
	}
}

static void mirror_removexattr(void *opaque, MfsInode *inode, const char *name)
{
	Migration *mig = opaque;
	MigObject *obj = object_in_scope(mig, inode) ? changed_object(mig, inode) : NULL;
	char path[MFS_PROC_FD_LEN];

	if (!obj)
		return;
	mfs_proc_fd_path(mig_object_fd(obj), path);
	if (removexattr(path, name) < 0)
		mig_fail(mig, "target: removexattr '%s': %s", name, g_strerror(errno));
}

/* The changes are mirrored while the job runs and has neither stopped nor committed. */
static bool mirrors_changes(void *opaque)
{
	Migration *mig = opaque;

	return mig_state_mirrors_changes(mig_state(mig));
}

const MfsObserver mig_observer = {
    .mirror_of = find_mirror,
    .mirrors_changes = mirrors_changes,
    .created = mirror_create,
    .node_made = mirror_node,
    .linked = mirror_link,
    .removed = mirror_unlink,
    .renamed = mirror_rename,
    .crosses = crosses,
    .attr_changed = mirror_setattr,
    .xattr_set = mirror_setxattr,
    .xattr_removed = mirror_removexattr,
};
