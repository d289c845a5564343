/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The target tree: the walk that makes it at the start, the owners, modes,
 * xattrs and times its objects get, and its removal.
 *
 * With namespace changes held off, the walk goes over the source once:
 * every directory, symlink and special file is made on the target, and
 * every regular file gets an empty (or reused) target file and a
 * MirrorFile to fill it (mig-copier.c).  Everything is done relative to
 * directory descriptors and without following symlinks, so that one
 * planted in the target leads nowhere.
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

/*
 * The name list of @path (@name NULL) or the value of its attribute @name,
 * into *@buf (g_realloc'ed, the caller's), sized from the call itself: the
 * size is asked first, and asked again when the list or value grew in
 * between (ERANGE).  No fixed buffer: a list may reach 64 KiB (more than a
 * page of long names) and so may a value.  Returns the length or -errno.
 */
static ssize_t xattr_fetch(const char *path, const char *name, char **buf)
{
	for (;;) {
		ssize_t size = name ? getxattr(path, name, NULL, 0) : listxattr(path, NULL, 0);
		ssize_t n;

		if (size < 0)
			return -errno;
		*buf = g_realloc(*buf, size ? (size_t)size : 1);
		n = name ? getxattr(path, name, *buf, size) : listxattr(path, *buf, size);
		if (n >= 0)
			return n;
		if (errno != ERANGE)
			return -errno;
	}
}

/*
 * Errors by which a target says that it cannot hold an owner or an
 * attribute at all, rather than that it failed: a server that may not give
 * files away although we are root (a root-squashing NFS, a FUSE server not
 * run by root), a namespace or ACLs it does not support, a value too large
 * for it, a security module's refusal.
 */
bool mig_metadata_refused(int err)
{
	return err == EPERM || err == EOPNOTSUPP || err == EACCES || err == E2BIG;
}

/*
 * The target refused @what (an owner, an xattr) of the object at @dst_fd
 * with @err.  During the start's walk that refuses the start (returns
 * -@err; the walk's error names the file and the attribute): the operator
 * decides, before anything is copied, to change the source or to choose
 * another target, and the tree made so far is removed.  After the start
 * (an object made, a chown or a setxattr mirrored) the guest has already
 * done it on the source: the migration goes on without it, and says so,
 * naming the file and the attribute the first time and counting the rest
 * (returns 0; the count is logged at the switch).
 */
int mig_metadata_lost(Migration *mig, int dst_fd, const char *what, int err)
{
	g_autofree char *rel = mig_target_relpath(mig, dst_fd);
	unsigned n;

	if (mig->walking) {
		if (!mig->walk_error)
			mig->walk_error = g_strdup_printf("target '%s' cannot hold %s of '%s': %s",
			                                  mig->target, what, rel, g_strerror(err));
		return -err;
	}
	mfs_mutex_lock(&mig->lock);
	n = ++mig->meta_lost;
	mfs_mutex_unlock(&mig->lock);
	if (n == 1)
		g_warning("migration %s -> %s: the target cannot hold %s of '%s' (%s): its copy "
		          "goes without; further such losses are only counted",
		          mig->source, mig->target, what, rel, g_strerror(err));
	return 0;
}

static bool xattr_listed(const char *names, ssize_t len, const char *name)
{
	for (ssize_t i = 0; i < len; i += strlen(names + i) + 1)
		if (strcmp(names + i, name) == 0)
			return true;
	return false;
}

/*
 * A target object kept from an earlier copy (a restart, a migration back)
 * may hold attributes the source no longer has: they go.  Not the
 * security namespace's, which the target's own policy may have set.
 */
static int drop_stale_xattrs(const char *dst_path, const char *src_names, ssize_t src_len)
{
	g_autofree char *names = NULL;
	ssize_t len = xattr_fetch(dst_path, NULL, &names);

	if (len == -ENOTSUP)
		return 0;
	if (len < 0)
		return (int)len;
	for (ssize_t i = 0; i < len; i += strlen(names + i) + 1) {
		if (g_str_has_prefix(names + i, "security.") ||
		    xattr_listed(src_names, src_len, names + i))
			continue;
		if (removexattr(dst_path, names + i) < 0 && errno != ENODATA)
			return -errno;
	}
	return 0;
}

/*
 * Give a new target object the source's owner, mode bits and xattrs.
 * What the target refuses to hold goes to mig_metadata_lost(); other errors
 * are returned.
 */
int mig_copy_metadata(Migration *mig, int src_fd, int dst_fd, const struct stat *st)
{
	char src_path[MFS_PROC_FD_LEN], dst_path[MFS_PROC_FD_LEN];
	g_autofree char *names = NULL, *value = NULL;
	ssize_t len;
	int ret;

	if (fchownat(dst_fd, "", st->st_uid, st->st_gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		g_autofree char *what = NULL;
		int err = errno;

		if (!mig_metadata_refused(err))
			return -err;
		what =
		    g_strdup_printf("the owner %u:%u", (unsigned)st->st_uid, (unsigned)st->st_gid);
		ret = mig_metadata_lost(mig, dst_fd, what, err);
		if (ret < 0)
			return ret;
	}
	if (S_ISLNK(st->st_mode))
		return 0;
	mfs_proc_fd_path(dst_fd, dst_path);
	if (chmod(dst_path, st->st_mode & 07777) < 0)
		return -errno;
	mfs_proc_fd_path(src_fd, src_path);
	len = xattr_fetch(src_path, NULL, &names);
	if (len == -ENOTSUP)
		len = 0; /* the source has none */
	if (len < 0)
		return (int)len;
	ret = drop_stale_xattrs(dst_path, names, len);
	if (ret < 0)
		return ret;
	for (ssize_t i = 0; i < len; i += strlen(names + i) + 1) {
		ssize_t n = xattr_fetch(src_path, names + i, &value);

		if (n == -ENODATA)
			continue; /* removed since it was listed */
		if (n < 0)
			return (int)n;
		if (setxattr(dst_path, names + i, value, n, 0) < 0) {
			g_autofree char *what = NULL;
			int err = errno;

			if (!mig_metadata_refused(err))
				return -err;
			what = g_strdup_printf("the extended attribute '%s'", names + i);
			ret = mig_metadata_lost(mig, dst_fd, what, err);
			if (ret < 0)
				return ret;
		}
	}
	return 0;
}

/*
 * Give the target object at @dst_fd (O_PATH) the source's atime and mtime.
 * Times last: the copier's writes move a file's mtime again (files get
 * theirs at the switch, flush_targets()), and making an entry moves its
 * directory's (a directory gets its times after its entries are made, and
 * again after each mirrored change in it, sync_dir_times()).  A target
 * that refuses goes to mig_metadata_lost().
 */
int mig_copy_times(Migration *mig, int dst_fd, mode_t type, const struct stat *st)
{
	struct timespec tv[2] = {st->st_atim, st->st_mtim};
	char path[MFS_PROC_FD_LEN];
	int ret;

	if (type == S_IFLNK) {
		ret = utimensat(dst_fd, "", tv, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
	} else {
		mfs_proc_fd_path(dst_fd, path);
		ret = utimensat(AT_FDCWD, path, tv, 0);
	}
	if (ret == 0)
		return 0;
	ret = errno;
	return mig_metadata_refused(ret) ? mig_metadata_lost(mig, dst_fd, "the times", ret) : -ret;
}

int mig_open_path(int dir_fd, const char *name)
{
	return openat(dir_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
}

/*
 * One walk of the source tree.  The target may hold names already: the
 * partial copy of an earlier run of this migration (!fresh: reused), or
 * anything at all (overwrite).  None is trusted for what it seems: a name
 * is kept only when it is the right kind of object and no other source
 * object of this walk has it (an earlier run may have linked two files
 * that are distinct now), a file only on a reused target, and names the
 * source lacks are removed.  Everything is done relative to directory
 * descriptors and without following symlinks, so that one planted in the
 * target leads nowhere.
 */
typedef struct {
	Migration *mig;
	bool fresh;          /* the target is not a partial copy of ours */
	bool prune_root;     /* the target's root is an image of this source */
	bool at_root;        /* walking the root directory's entries */
	GHashTable *claimed; /* MfsInodeKey of every target object made or kept */
	GHashTable *linked;  /* a per-VM job's: MfsInodeKey -> LinkCount of objects with links */
	GQueue dirs;         /* (source, target) directory descriptors to walk */
} Walk;

typedef struct {
	MfsInodeKey key;
	nlink_t nlink; /* the object's, as the walk first saw it */
	nlink_t found; /* names the walk found in the job's entries */
	char *name;    /* the first of them, for the message */
} LinkCount;

static void link_count_free(gpointer p)
{
	g_free(((LinkCount *)p)->name);
	g_free(p);
}

/*
 * A per-VM job moves its entries' objects; a file with a name outside them
 * as well would be two files after the switch, one of them stale.  Count
 * the names of each object with links, to compare at the end of the walk.
 */
static void count_link(Walk *w, int dst_dir, const char *name, const struct stat *st)
{
	MfsInodeKey key = {st->st_dev, st->st_ino};
	LinkCount *c;

	if (!w->linked || S_ISDIR(st->st_mode) || st->st_nlink < 2)
		return;
	c = g_hash_table_lookup(w->linked, &key);
	if (!c) {
		c = g_new0(LinkCount, 1);
		c->key = key;
		c->nlink = st->st_nlink;
		if (w->at_root) {
			c->name = g_strdup(name);
		} else {
			g_autofree char *dir = mig_target_relpath(w->mig, dst_dir);

			c->name = g_build_filename(dir, name, NULL);
		}
		g_hash_table_insert(w->linked, &c->key, c);
	}
	c->found++;
}

static int check_links(Walk *w, char **error)
{
	GHashTableIter it;
	LinkCount *c;

	if (!w->linked)
		return 0;
	g_hash_table_iter_init(&it, w->linked);
	while (g_hash_table_iter_next(&it, NULL, (gpointer *)&c)) {
		if (c->found >= c->nlink)
			continue;
		*error =
		    g_strdup_printf("'%s' has %ju hard links, %ju of them outside the entries to "
		                    "move: moved, its other names would serve a stale copy",
		                    c->name, (uintmax_t)c->nlink, (uintmax_t)(c->nlink - c->found));
		return -EMLINK;
	}
	return 0;
}

static bool claimed(Walk *w, const struct stat *tst)
{
	MfsInodeKey key = {tst->st_dev, tst->st_ino};

	return g_hash_table_contains(w->claimed, &key);
}

static void claim(Walk *w, int tfd)
{
	struct stat tst;

	if (fstat(tfd, &tst) == 0)
		g_hash_table_add(w->claimed, g_memdup2(&(MfsInodeKey){tst.st_dev, tst.st_ino},
		                                       sizeof(MfsInodeKey)));
}

/*
 * Recorded before the target is touched there, so that a failure half-way
 * removes it too; not before, so that a failure that touched nothing
 * leaves an unrelated name (overwrite) in place.
 */
static void own_root_name(Walk *w, const char *name)
{
	if (w->at_root)
		g_hash_table_add(w->mig->root_names, g_strdup(name));
}

/*
 * The target file of a source file.  A reused target's file is kept if it
 * is a regular file that no other source object claimed and that has no
 * more links than the source's (none elsewhere to write through); any
 * other name is replaced, never opened for writing: a target file may be
 * a hard link of something else (a backup made with cp -al).
 */
static int target_file(Walk *w, int dst_dir, const char *name, const struct stat *st, bool *made)
{
	struct stat tst, fst;
	int fd, ret;

	if (!w->fresh && fstatat(dst_dir, name, &tst, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISREG(tst.st_mode) && tst.st_nlink <= st->st_nlink && !claimed(w, &tst)) {
		fd = openat(dst_dir, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0 && fstat(fd, &fst) == 0 && fst.st_dev == tst.st_dev &&
		    fst.st_ino == tst.st_ino) {
			*made = false;
			return fd;
		}
		if (fd >= 0)
			close(fd);
	}
	ret = mig_remove_tree_at(dst_dir, name);
	if (ret < 0)
		return ret;
	*made = true;
	fd = openat(dst_dir, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	return fd < 0 ? -errno : fd;
}

/* A regular file: an empty (or reused) target file and a MirrorFile to fill it. */
static int walk_file(Walk *w, int src_dir, int dst_dir, const char *name, const struct stat *st)
{
	Migration *mig = w->mig;
	int src_ro = openat(src_dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int dst = -1;
	bool made = true;
	MirrorFile *mf;
	uint64_t trusted = 0;
	int ret;

	if (src_ro < 0)
		return -errno;
	own_root_name(w, name);
	dst = target_file(w, dst_dir, name, st, &made);
	if (dst < 0) {
		ret = dst;
		goto fail;
	}
	ret = mig_copy_metadata(mig, src_ro, dst, st);
	if (ret < 0)
		goto fail;
	claim(w, dst);
	mfs_mutex_lock(&mig->lock);
	mig->bytes_total += MIN((uint64_t)st->st_blocks * 512, (uint64_t)st->st_size);
	mfs_mutex_unlock(&mig->lock);
	/* Only a reused file may hold old bytes where the source has holes. */
	mf = mirror_file_new(src_ro, dst, mig->chunk_size, made);
	mirror_file_set_clone(mf, !mig->no_clone);
	if (!made)
		trusted = mig_resume_file(mig, mf, dst, st);
	mig_object_add(mig, st, -1, mf)->trusted = trusted;
	return 0;
fail:
	close(src_ro);
	if (dst >= 0)
		close(dst);
	return ret;
}

/*
 * Another name of an object already made: a hard link to its target.  A
 * name there already is kept only if it is that very object (an earlier
 * run linked it); another file is replaced, never served for this one.
 */
static int walk_link(Walk *w, MigObject *obj, int dst_dir, const char *name)
{
	char path[MFS_PROC_FD_LEN];
	struct stat ost, tst;
	int fd = mig_object_fd(obj), ret;

	if (fstat(fd, &ost) < 0)
		return -errno;
	own_root_name(w, name);
	if (fstatat(dst_dir, name, &tst, AT_SYMLINK_NOFOLLOW) == 0 && tst.st_dev == ost.st_dev &&
	    tst.st_ino == ost.st_ino)
		return 0;
	ret = mig_remove_tree_at(dst_dir, name);
	if (ret < 0)
		return ret;
	mfs_proc_fd_path(fd, path);
	if (linkat(AT_FDCWD, path, dst_dir, name, AT_SYMLINK_FOLLOW) < 0)
		return -errno;
	ret = mig_check_link(dst_dir, name, &ost);
	if (ret < 0)
		unlinkat(dst_dir, name, 0);
	return ret == -EOPNOTSUPP ? mig_metadata_lost(w->mig, fd, MIG_LINK_LOST, -ret) : ret;
}

int mig_check_link(int dir_fd, const char *name, const struct stat *object)
{
	struct stat st;

	if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return st.st_dev == object->st_dev && st.st_ino == object->st_ino ? 0 : -EOPNOTSUPP;
}

/*
 * A directory, a symlink or a special file; *@tfd gets an O_PATH
 * descriptor of it.  A directory already there is kept (its contents are
 * reconciled when the walk gets to it); anything else is replaced.
 */
static int target_node(Walk *w, int dst_dir, const char *name, const MfsNodeSpec *spec, int *tfd)
{
	bool dir = S_ISDIR(spec->mode);
	struct stat tst;
	int ret;

	if (!(dir && fstatat(dst_dir, name, &tst, AT_SYMLINK_NOFOLLOW) == 0 &&
	      S_ISDIR(tst.st_mode) && !claimed(w, &tst))) {
		ret = mig_remove_tree_at(dst_dir, name);
		if (ret == 0)
			ret = mfs_make_node_at(dst_dir, name, spec);
		if (ret < 0)
			return ret;
	}
	/* O_DIRECTORY: what we walk into is a directory, not a symlink to one. */
	*tfd = openat(dst_dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC | (dir ? O_DIRECTORY : 0));
	return *tfd < 0 ? -errno : 0;
}

/* Make the target counterpart of one source entry. */
static int walk_entry(Walk *w, int src_dir, int dst_dir, const char *name)
{
	Migration *mig = w->mig;
	char link[PATH_MAX];
	MfsNodeSpec spec = {.link = link};
	struct stat st;
	MigObject *obj;
	int sfd = -1, tfd = -1, ret = 0;

	if (fstatat(src_dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	count_link(w, dst_dir, name, &st);
	obj = mig_object_find(mig, &(MfsInodeKey){st.st_dev, st.st_ino});
	if (obj && !S_ISDIR(st.st_mode))
		return walk_link(w, obj, dst_dir, name);
	if (S_ISREG(st.st_mode))
		return walk_file(w, src_dir, dst_dir, name, &st);
	if (S_ISLNK(st.st_mode)) {
		ssize_t n = readlinkat(src_dir, name, link, sizeof(link) - 1);

		if (n < 0)
			return -errno;
		link[n] = '\0';
	}
	sfd = mig_open_path(src_dir, name);
	if (sfd < 0)
		return -errno;
	/* Directories are made owner-only; mig_copy_metadata() gives them their mode. */
	spec.mode = S_ISDIR(st.st_mode) ? S_IFDIR | 0700 : st.st_mode;
	spec.rdev = st.st_rdev;
	own_root_name(w, name);
	ret = target_node(w, dst_dir, name, &spec, &tfd);
	if (ret < 0)
		goto out;
	ret = mig_copy_metadata(mig, sfd, tfd, &st);
	if (ret == 0 && !S_ISDIR(st.st_mode)) {
		struct stat now; /* our readlink may have moved a symlink's atime */

		ret = fstatat(sfd, "", &now, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0
		          ? -errno
		          : mig_copy_times(mig, tfd, st.st_mode & S_IFMT, &now);
	}
	if (ret < 0)
		goto out;
	claim(w, tfd);
	obj = mig_object_add(mig, &st, tfd, NULL);
	tfd = -1;
	if (S_ISDIR(st.st_mode)) {
		g_queue_push_tail(&w->dirs, GINT_TO_POINTER(sfd));
		g_queue_push_tail(&w->dirs, GINT_TO_POINTER(dup(obj->tfd)));
		sfd = -1;
	}
out:
	if (sfd >= 0)
		close(sfd);
	if (tfd >= 0)
		close(tfd);
	return ret;
}

/*
 * Remove the names of a target directory that its source lacks: files of
 * images deleted since an earlier run, or since the target was last the
 * source (a migration back), would reappear after the switch.  Collected
 * first: a directory is not changed while it is read.  At the root the
 * journal and the operator's names (@keep) stay.
 */
static int prune_dir(int src_dir, int dst_dir, bool at_root, char **keep, char **only)
{
	int fd = openat(dst_dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dp = fd >= 0 ? fdopendir(fd) : NULL;
	g_autoptr(GPtrArray) gone = g_ptr_array_new_with_free_func(g_free);
	struct dirent *de;
	int ret = 0;

	if (!dp) {
		ret = -errno;
		if (fd >= 0)
			close(fd);
		return ret;
	}
	while ((errno = 0, de = readdir(dp))) {
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		/* A per-VM job's target holds other entries, moved by other jobs: its own only. */
		if (at_root && (journal_is_reserved_name(de->d_name) ||
		                (keep && g_strv_contains((const char *const *)keep, de->d_name)) ||
		                !mig_only_holds(only, de->d_name)))
			continue;
		if (fstatat(src_dir, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
			g_ptr_array_add(gone, g_strdup(de->d_name));
	}
	if (errno)
		ret = -errno;
	for (unsigned i = 0; ret == 0 && i < gone->len; i++)
		ret = mig_remove_tree_at(dirfd(dp), gone->pdata[i]);
	closedir(dp);
	return ret;
}

/*
 * Walk the source tree breadth first and make the target tree.  The
 * target's root is pruned only when @prune_root (it is provably an image
 * of this source): otherwise the operator may keep other files beside our
 * copy, and only the source's own names there are replaced.
 */
int mig_walk_tree(Migration *mig, int src_root, bool fresh, bool prune_root, char **error)
{
	Walk w = {.mig = mig, .fresh = fresh, .prune_root = prune_root, .at_root = true};
	int ret = 0;

	w.claimed = g_hash_table_new_full(mfs_inode_key_hash, mfs_inode_key_equal, g_free, NULL);
	if (mig->only)
		w.linked = g_hash_table_new_full(mfs_inode_key_hash, mfs_inode_key_equal, NULL,
		                                 link_count_free);
	g_queue_init(&w.dirs);
	g_queue_push_tail(&w.dirs, GINT_TO_POINTER(dup(src_root)));
	g_queue_push_tail(&w.dirs, GINT_TO_POINTER(dup(mig->dst_root_fd)));
	while (!g_queue_is_empty(&w.dirs)) {
		int src = GPOINTER_TO_INT(g_queue_pop_head(&w.dirs));
		int dst = GPOINTER_TO_INT(g_queue_pop_head(&w.dirs));
		int rfd = ret == 0 ? openat(src, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
		DIR *dp = rfd >= 0 ? fdopendir(rfd) : NULL;
		struct dirent *de;

		if (ret == 0 && !dp) {
			ret = -errno;
			*error = g_strdup_printf("source: %s", g_strerror(-ret));
		}
		if (ret == 0 && (!w.at_root || w.prune_root)) {
			ret = prune_dir(src, dst, w.at_root, mig->target_keep, mig->only);
			if (ret < 0)
				*error =
				    g_strdup_printf("target: removing names the source lacks: %s",
				                    g_strerror(-ret));
		}
		while (ret == 0 && (errno = 0, de = readdir(dp))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			if (w.at_root && (journal_is_reserved_name(de->d_name) ||
			                  !mig_only_holds(mig->only, de->d_name)))
				continue;
			ret = walk_entry(&w, src, dst, de->d_name);
			if (ret < 0 && mig->walk_error)
				*error = g_steal_pointer(&mig->walk_error);
			else if (ret < 0)
				*error = g_strdup_printf("copying the tree, at '%s': %s",
				                         de->d_name, g_strerror(-ret));
		}
		if (dp)
			closedir(dp);
		else if (rfd >= 0)
			close(rfd);
		/*
		 * Its entries are made: the directory's times now (after the
		 * read, which may have moved the source's atime).  Not the
		 * target's root: the operator's directory, whose mtime the
		 * journal moves anyway.
		 */
		if (ret == 0 && !w.at_root) {
			struct stat st;

			ret = fstat(src, &st) < 0 ? -errno : mig_copy_times(mig, dst, S_IFDIR, &st);
			if (ret < 0 && mig->walk_error) {
				*error = g_steal_pointer(&mig->walk_error);
			} else if (ret < 0) {
				g_autofree char *rel = mig_target_relpath(mig, dst);

				*error = g_strdup_printf("copying the times of '%s': %s", rel,
				                         g_strerror(-ret));
			}
		}
		w.at_root = false;
		close(src);
		close(dst);
	}
	if (ret == 0)
		ret = check_links(&w, error);
	g_hash_table_destroy(w.claimed);
	if (w.linked)
		g_hash_table_destroy(w.linked);
	return ret;
}

/* Remove @name below @dir_fd, recursively.  Best effort; returns the first error. */
int mig_remove_tree_at(int dir_fd, const char *name)
{
	int fd, ret = 0;
	DIR *dp;
	struct dirent *de;

	if (unlinkat(dir_fd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	dp = fdopendir(fd);
	if (!dp) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(dp))) {
		int r;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		r = mig_remove_tree_at(dirfd(dp), de->d_name);
		if (r < 0 && ret == 0)
			ret = r;
	}
	closedir(dp);
	if (unlinkat(dir_fd, name, AT_REMOVEDIR) < 0 && ret == 0)
		ret = -errno;
	return ret;
}

char *mig_target_relpath(Migration *mig, int fd)
{
	char path[MFS_PROC_FD_LEN], buf[PATH_MAX];
	const char *rel;
	ssize_t len;

	mfs_proc_fd_path(fd, path);
	len = readlink(path, buf, sizeof(buf) - 1);
	if (len < 0)
		return g_strdup("?");
	buf[len] = '\0';
	rel = mfs_path_within(buf, mig->target);
	return g_strdup(rel && *rel ? rel : buf);
}
