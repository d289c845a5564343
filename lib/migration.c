/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The migration job: a whole tree moved to a target directory while it is
 * in use, by I/O mirroring, ending in a quiesce-and-switch.
 *
 * Start.  With namespace changes held off (ns_lock exclusive) the tree is
 * walked once: every directory, symlink and special file is made on the
 * target, and every regular file gets an empty target file and a
 * MirrorFile.  Objects are known by the (st_dev, st_ino) of their source,
 * so renames do not confuse them, and hard links stay links.  Then a
 * short stun attaches each MirrorFile to its inode, if the kernel has one;
 * inodes looked up later find theirs at creation.  From then on:
 *
 *   - data changes go through the MirrorFile (mirror-file.c);
 *   - namespace changes are made on the source and then, with ns_lock
 *     exclusive, on the target, so both see them in one order;
 *   - new regular files are born mirrored.
 *
 * Copy.  The migration thread copies the files one after another, chunk
 * by chunk, rate-limited and pausable.  Mirroring never iterates, so it
 * ends however hard the guest writes.
 *
 * Switch.  Flush the target; stun (ns_lock exclusive, gate closed: no
 * operation but reads runs); flush again; open every target counterpart
 * an inode or open file will need (any failure here aborts, still on the
 * source); write the source's journal, which makes the target
 * authoritative; swap every descriptor; resume.  A crash before the
 * journal is durable leaves the source authoritative (it had every write
 * first); after, the target (flushed, and nothing written since).
 *
 * Failure and cancel.  A target error in any mirrored operation is
 * recorded and the guest goes on (mirror-file.c).  The thread then stuns
 * briefly to detach every mirror and removes what it made on the target:
 * the names it created at the target's root, which it tracks.
 *
 * Lock order: ns_lock, gate, Mfs.inodes_lock, Migration.lock, and a
 * MirrorFile's lock is a leaf.  Migration.lock is never held across I/O.
 */
#define _GNU_SOURCE
#include "mfs-int.h"

#include <dirent.h>
#include <linux/magic.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

typedef struct {
	MfsInodeKey key;
	mode_t type;
	int tfd;        /* O_PATH on the target object; -1 for regular files */
	MirrorFile *mf; /* regular files */
} MigObject;

#define RATE_SAMPLES 16

struct Migration {
	Mfs *fs;
	char *source; /* canonical paths */
	char *target;
	int dst_root_fd; /* O_PATH */
	int old_root_fd; /* the source's root, from the swap until delete_source_files() */
	int lock_fd;     /* claims the target (claim.c) until the switch hands it to the Mfs */
	uint64_t chunk_size;
	bool manual_switch, delete_source;
	bool no_clone;
	bool target_home; /* the target is the old home of our source: see Journal.home */
	bool keep_source; /* the switch's record may not be durable: never delete the source */
	bool walking;     /* the start's walk runs: a refused owner or xattr refuses the start */
	char *walk_error; /* why the walk refused, naming the file; the starting thread's */
	GThread *thread;
	MfsMigHook hook;
	void *hook_opaque;

	MfsMutex lock;
	MfsCond cond;          /* state, requests or error changed */
	MfsMigState state;     /* protected by lock */
	bool paused;           /* protected by lock */
	bool cancel_requested; /* protected by lock */
	bool switch_requested; /* protected by lock */
	bool detached;         /* mirrors taken off the inodes; protected by lock */
	uint64_t speed_bps;    /* protected by lock */
	unsigned guest_share;  /* percent; protected by lock */
	uint64_t rested_us;    /* the copier's rests for the guest; protected by lock */
	unsigned
	    meta_lost;    /* owners, xattrs the target refused after the start; protected by lock */
	char *error;      /* protected by lock */
	uint64_t stun_ns; /* protected by lock */
	uint64_t bytes_total;     /* protected by lock */
	GHashTable *objects;      /* MfsInodeKey -> MigObject; protected by lock */
	GPtrArray *files;         /* MigObject of regular files, in copy order; protected by lock */
	GHashTable *root_names;   /* names made at the target's root; protected by lock */
	MfsMigFileStatus *final;  /* per-file status kept after the end; protected by lock */
	unsigned n_final;         /* protected by lock */
	uint64_t final_counts[5]; /* keep_final_status()'s; protected by lock */
	gint64 rate_t[RATE_SAMPLES];   /* protected by lock */
	uint64_t rate_b[RATE_SAMPLES]; /* protected by lock */
	unsigned rate_n;               /* protected by lock */
};

const char *mfs_mig_state_name(MfsMigState state)
{
	static const char *names[] = {"idle",     "copying", "mirrored", "switching",
	                              "switched", "failed",  "cancelled"};

	return state < G_N_ELEMENTS(names) ? names[state] : "unknown";
}

static bool state_running(MfsMigState s)
{
	return s == MFS_MIG_COPYING || s == MFS_MIG_MIRRORED || s == MFS_MIG_SWITCHING;
}

/*
 * For crash tests: with MIRRORFS_TEST_CRASH_AT=POINT[:N] (N defaults to 1)
 * the daemon kills itself with SIGKILL at the Nth arrival at POINT, so
 * that a test crashes it at an exact place of a migration instead of at a
 * moment it hopes for.  The points are the hooks' (started, chunk-begin,
 * chunk, mirrored, stunned, journaled) and a few more named where they
 * are reached (walked, journal-renamed, swapped, resumed-journal-left,
 * abort-detached, abort-removed, deleting-source).  The line logged first
 * tells the test the kill came from here.
 */
void mfs_test_crash_point(const char *point)
{
	static gint arrivals;
	const char *spec = g_getenv("MIRRORFS_TEST_CRASH_AT");
	size_t len;
	long n = 1;

	if (G_LIKELY(!spec))
		return;
	len = strcspn(spec, ":");
	if (len != strlen(point) || strncmp(spec, point, len) != 0)
		return;
	if (spec[len] == ':')
		n = strtol(spec + len + 1, NULL, 10);
	if (g_atomic_int_add(&arrivals, 1) + 1 != n)
		return;
	g_message("test: crash at %s:%ld", point, n);
	kill(getpid(), SIGKILL);
}

static void run_hook(Migration *mig, const char *point)
{
	if (mig->hook)
		mig->hook(mig->fs, point, mig->hook_opaque);
	mfs_test_crash_point(point);
}

static void object_free(gpointer p)
{
	MigObject *obj = p;

	if (obj->tfd >= 0)
		close(obj->tfd);
	mirror_file_free(obj->mf);
	g_free(obj);
}

static guint key_hash(gconstpointer p)
{
	const MfsInodeKey *k = p;

	return (guint)(k->ino ^ (k->ino >> 32) ^ (k->dev * 0x9e3779b1u));
}

static gboolean key_equal(gconstpointer a, gconstpointer b)
{
	const MfsInodeKey *x = a, *y = b;

	return x->ino == y->ino && x->dev == y->dev;
}

static Migration *migration_new(Mfs *fs)
{
	Migration *mig = g_new0(Migration, 1);

	mig->fs = fs;
	mig->dst_root_fd = -1;
	mig->old_root_fd = -1;
	mig->lock_fd = -1;
	mfs_mutex_init(&mig->lock);
	mfs_cond_init(&mig->cond);
	mig->objects = g_hash_table_new_full(key_hash, key_equal, NULL, object_free);
	mig->files = g_ptr_array_new();
	mig->root_names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	return mig;
}

static void final_status_free(Migration *mig)
{
	for (unsigned i = 0; i < mig->n_final; i++)
		g_free(mig->final[i].path);
	g_clear_pointer(&mig->final, g_free);
	mig->n_final = 0;
}

void migration_free(Migration *mig)
{
	if (!mig)
		return;
	if (mig->thread)
		g_thread_join(mig->thread);
	g_ptr_array_free(mig->files, TRUE);
	g_hash_table_destroy(mig->objects);
	g_hash_table_destroy(mig->root_names);
	final_status_free(mig);
	if (mig->dst_root_fd >= 0)
		close(mig->dst_root_fd);
	if (mig->old_root_fd >= 0)
		close(mig->old_root_fd);
	if (mig->lock_fd >= 0)
		close(mig->lock_fd);
	g_free(mig->source);
	g_free(mig->target);
	g_free(mig->error);
	g_free(mig->walk_error);
	mfs_cond_clear(&mig->cond);
	mfs_mutex_clear(&mig->lock);
	g_free(mig);
}

bool migration_active(Migration *mig)
{
	bool active;

	/* Detached: switched (the source is no longer served) or aborting. */
	mfs_mutex_lock(&mig->lock);
	active =
	    state_running(mig->state) && !mig->detached && !mig->error && !mig->cancel_requested;
	mfs_mutex_unlock(&mig->lock);
	return active;
}

/* Record the first failure; the thread aborts when it sees it. */
static void mig_fail(Migration *mig, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void mig_fail(Migration *mig, const char *fmt, ...)
{
	va_list ap;

	mfs_mutex_lock(&mig->lock);
	if (!mig->error) {
		va_start(ap, fmt);
		mig->error = g_strdup_vprintf(fmt, ap);
		va_end(ap);
	}
	mfs_cond_broadcast(&mig->cond);
	mfs_mutex_unlock(&mig->lock);
}

static void on_mirror_error(MirrorFile *mf, int err, bool on_source, void *opaque)
{
	Migration *mig = opaque;

	mig_fail(mig, "%s: %s", on_source ? "source" : "target", g_strerror(-err));
}

MirrorFile *migration_find_mirror(Migration *mig, const MfsInodeKey *key)
{
	MigObject *obj;
	MirrorFile *mf = NULL;

	mfs_mutex_lock(&mig->lock);
	if (!mig->detached && state_running(mig->state)) {
		obj = g_hash_table_lookup(mig->objects, key);
		if (obj)
			mf = obj->mf;
	}
	mfs_mutex_unlock(&mig->lock);
	return mf;
}

static MigObject *object_add(Migration *mig, const struct stat *st, int tfd, MirrorFile *mf)
{
	MigObject *obj = g_new0(MigObject, 1);

	obj->key = (MfsInodeKey){st->st_dev, st->st_ino};
	obj->type = st->st_mode & S_IFMT;
	obj->tfd = tfd;
	obj->mf = mf;
	if (mf)
		mirror_file_set_error_handler(mf, on_mirror_error, mig);
	mfs_mutex_lock(&mig->lock);
	g_hash_table_replace(mig->objects, &obj->key, obj);
	if (mf)
		g_ptr_array_add(mig->files, obj);
	mfs_mutex_unlock(&mig->lock);
	return obj;
}

static MigObject *object_find(Migration *mig, const MfsInodeKey *key)
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
	MfsInodeKey key = {gone->st_dev, gone->st_ino};
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
static int object_fd(MigObject *obj)
{
	return obj->mf ? mirror_file_target_fd(obj->mf) : obj->tfd;
}

/* Target directory of a source directory inode, or -1 (and the migration fails). */
static int target_dir(Migration *mig, MfsInode *dir)
{
	MigObject *obj = object_find(mig, &dir->key);

	if (!obj || obj->type != S_IFDIR) {
		mig_fail(mig, "target: no counterpart for a source directory");
		return -1;
	}
	return obj->tfd;
}

static void root_name_changed(Migration *mig, MfsInode *parent, const char *name, bool added)
{
	if (parent != &mig->fs->root)
		return;
	mfs_mutex_lock(&mig->lock);
	if (added)
		g_hash_table_add(mig->root_names, g_strdup(name));
	else
		g_hash_table_remove(mig->root_names, name);
	mfs_mutex_unlock(&mig->lock);
}

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
static bool metadata_refused(int err)
{
	return err == EPERM || err == EOPNOTSUPP || err == EACCES || err == E2BIG;
}

static char *target_relpath(Migration *mig, int fd);

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
static int metadata_lost(Migration *mig, int dst_fd, const char *what, int err)
{
	g_autofree char *rel = target_relpath(mig, dst_fd);
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

/*
 * Give a new target object the source's owner, mode bits and xattrs.
 * What the target refuses to hold goes to metadata_lost(); other errors
 * are returned.
 */
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

static int copy_metadata(Migration *mig, int src_fd, int dst_fd, const struct stat *st)
{
	char src_path[MFS_PROC_FD_LEN], dst_path[MFS_PROC_FD_LEN];
	g_autofree char *names = NULL, *value = NULL;
	ssize_t len;
	int ret;

	if (fchownat(dst_fd, "", st->st_uid, st->st_gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		g_autofree char *what = NULL;
		int err = errno;

		if (!metadata_refused(err))
			return -err;
		what =
		    g_strdup_printf("the owner %u:%u", (unsigned)st->st_uid, (unsigned)st->st_gid);
		ret = metadata_lost(mig, dst_fd, what, err);
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

			if (!metadata_refused(err))
				return -err;
			what = g_strdup_printf("the extended attribute '%s'", names + i);
			ret = metadata_lost(mig, dst_fd, what, err);
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
 * that refuses goes to metadata_lost().
 */
static int copy_times(Migration *mig, int dst_fd, mode_t type, const struct stat *st)
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
	return metadata_refused(ret) ? metadata_lost(mig, dst_fd, "the times", ret) : -ret;
}

static int open_path(int dir_fd, const char *name)
{
	return openat(dir_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
}

static int remove_tree_at(int dir_fd, const char *name);

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
	GQueue dirs;         /* (source, target) directory descriptors to walk */
} Walk;

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
	ret = remove_tree_at(dst_dir, name);
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
	int ret;

	if (src_ro < 0)
		return -errno;
	own_root_name(w, name);
	dst = target_file(w, dst_dir, name, st, &made);
	if (dst < 0) {
		ret = dst;
		goto fail;
	}
	ret = copy_metadata(mig, src_ro, dst, st);
	if (ret < 0)
		goto fail;
	claim(w, dst);
	mfs_mutex_lock(&mig->lock);
	mig->bytes_total += MIN((uint64_t)st->st_blocks * 512, (uint64_t)st->st_size);
	mfs_mutex_unlock(&mig->lock);
	/* Only a reused file may hold old bytes where the source has holes. */
	mf = mirror_file_new(src_ro, dst, mig->chunk_size, made);
	mirror_file_set_clone(mf, !mig->no_clone);
	object_add(mig, st, -1, mf);
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
	int fd = object_fd(obj), ret;

	if (fstat(fd, &ost) < 0)
		return -errno;
	own_root_name(w, name);
	if (fstatat(dst_dir, name, &tst, AT_SYMLINK_NOFOLLOW) == 0 && tst.st_dev == ost.st_dev &&
	    tst.st_ino == ost.st_ino)
		return 0;
	ret = remove_tree_at(dst_dir, name);
	if (ret < 0)
		return ret;
	mfs_proc_fd_path(fd, path);
	if (linkat(AT_FDCWD, path, dst_dir, name, AT_SYMLINK_FOLLOW) < 0)
		return -errno;
	return 0;
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
		ret = remove_tree_at(dst_dir, name);
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
	obj = object_find(mig, &(MfsInodeKey){st.st_dev, st.st_ino});
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
	sfd = open_path(src_dir, name);
	if (sfd < 0)
		return -errno;
	/* Directories are made owner-only; copy_metadata() gives them their mode. */
	spec.mode = S_ISDIR(st.st_mode) ? S_IFDIR | 0700 : st.st_mode;
	spec.rdev = st.st_rdev;
	own_root_name(w, name);
	ret = target_node(w, dst_dir, name, &spec, &tfd);
	if (ret < 0)
		goto out;
	ret = copy_metadata(mig, sfd, tfd, &st);
	if (ret == 0 && !S_ISDIR(st.st_mode)) {
		struct stat now; /* our readlink may have moved a symlink's atime */

		ret = fstatat(sfd, "", &now, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0
		          ? -errno
		          : copy_times(mig, tfd, st.st_mode & S_IFMT, &now);
	}
	if (ret < 0)
		goto out;
	claim(w, tfd);
	obj = object_add(mig, &st, tfd, NULL);
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
 * journal stays.
 */
static int prune_dir(int src_dir, int dst_dir, bool at_root)
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
		if (at_root && journal_is_reserved_name(de->d_name))
			continue;
		if (fstatat(src_dir, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
			g_ptr_array_add(gone, g_strdup(de->d_name));
	}
	if (errno)
		ret = -errno;
	for (unsigned i = 0; ret == 0 && i < gone->len; i++)
		ret = remove_tree_at(dirfd(dp), gone->pdata[i]);
	closedir(dp);
	return ret;
}

/*
 * Walk the source tree breadth first and make the target tree.  The
 * target's root is pruned only when @prune_root (it is provably an image
 * of this source): otherwise the operator may keep other files beside our
 * copy, and only the source's own names there are replaced.
 */
static int walk_tree(Migration *mig, int src_root, bool fresh, bool prune_root, char **error)
{
	Walk w = {.mig = mig, .fresh = fresh, .prune_root = prune_root, .at_root = true};
	int ret = 0;

	w.claimed = g_hash_table_new_full(key_hash, key_equal, g_free, NULL);
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
			ret = prune_dir(src, dst, w.at_root);
			if (ret < 0)
				*error =
				    g_strdup_printf("target: removing names the source lacks: %s",
				                    g_strerror(-ret));
		}
		while (ret == 0 && (errno = 0, de = readdir(dp))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			if (w.at_root && journal_is_reserved_name(de->d_name))
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

			ret = fstat(src, &st) < 0 ? -errno : copy_times(mig, dst, S_IFDIR, &st);
			if (ret < 0 && mig->walk_error) {
				*error = g_steal_pointer(&mig->walk_error);
			} else if (ret < 0) {
				g_autofree char *rel = target_relpath(mig, dst);

				*error = g_strdup_printf("copying the times of '%s': %s", rel,
				                         g_strerror(-ret));
			}
		}
		w.at_root = false;
		close(src);
		close(dst);
	}
	g_hash_table_destroy(w.claimed);
	return ret;
}

/* Remove @name below @dir_fd, recursively.  Best effort; returns the first error. */
static int remove_tree_at(int dir_fd, const char *name)
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
		r = remove_tree_at(dirfd(dp), de->d_name);
		if (r < 0 && ret == 0)
			ret = r;
	}
	closedir(dp);
	if (unlinkat(dir_fd, name, AT_REMOVEDIR) < 0 && ret == 0)
		ret = -errno;
	return ret;
}

static bool path_within(const char *inner, const char *outer)
{
	size_t n = strlen(outer);

	if (strcmp(outer, "/") == 0)
		return true;
	return strncmp(inner, outer, n) == 0 && (inner[n] == '/' || inner[n] == '\0');
}

/* Data bytes below @dir_fd (allocated, capped at each file's size). */
static uint64_t tree_data_bytes(int dir_fd)
{
	int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dp = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	uint64_t total = 0;

	if (!dp) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while ((de = readdir(dp))) {
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(dp), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISREG(st.st_mode)) {
			total += MIN((uint64_t)st.st_blocks * 512, (uint64_t)st.st_size);
		} else if (S_ISDIR(st.st_mode)) {
			int sub = open_path(dirfd(dp), de->d_name);

			if (sub >= 0) {
				total += tree_data_bytes(sub);
				close(sub);
			}
		}
	}
	closedir(dp);
	return total;
}

/*
 * Identities, not paths: a target reached through a symlink or a bind
 * mount passes every test on its canonical path.
 */
static bool same_object(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* Is @want the directory @dir_fd (O_PATH) or one of its ancestors? */
static bool is_dir_or_ancestor(int dir_fd, const struct stat *want)
{
	struct stat st, prev = {0};
	int fd = dup(dir_fd);

	for (int hops = 0; fd >= 0 && hops < 4096; hops++) {
		int up;

		if (fstat(fd, &st) < 0 || (hops && same_object(&st, &prev)))
			break; /* "/" is its own parent */
		if (same_object(&st, want)) {
			close(fd);
			return true;
		}
		prev = st;
		up = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
		close(fd);
		fd = up;
	}
	if (fd >= 0)
		close(fd);
	return false;
}

/*
 * Is @want a directory of the tree below @dir_fd?  Then *@where is its
 * path in the tree.  The walk of the preflight, as tree_data_bytes().
 */
static bool tree_holds_dir(int dir_fd, const struct stat *want, const char *prefix, char **where)
{
	int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dp = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	bool found = false;

	if (!dp) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	while (!found && (de = readdir(dp))) {
		g_autofree char *path = NULL;
		struct stat st;
		int sub;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(dp), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISDIR(st.st_mode))
			continue;
		path = prefix ? g_build_filename(prefix, de->d_name, NULL) : g_strdup(de->d_name);
		if (same_object(&st, want)) {
			*where = g_steal_pointer(&path);
			found = true;
			break;
		}
		sub = open_path(dirfd(dp), de->d_name);
		if (sub >= 0) {
			found = tree_holds_dir(sub, want, path, where);
			close(sub);
		}
	}
	closedir(dp);
	return found;
}

/*
 * Refuse a target that leads back into the source or into the daemon's
 * own mount by any road.  Into the mount, the start would create the
 * target's journal through the mount while it holds ns_lock, which the
 * create needs: a deadlock no signal ends.  Into the source, the walk
 * copies into its own output until it runs out of descriptors.  Only
 * fstat and lookups reach the target here, and the mount serves those
 * without ns_lock.
 */
static int check_target_identity(Mfs *fs, Migration *mig, const MfsMigOptions *opts,
                                 const struct stat *tst, char **error)
{
	g_autofree char *where = NULL;

	if (fs->mount_dev_set && tst->st_dev == fs->mount_dev) {
		*error = g_strdup_printf("target '%s' leads into this mirrorfs mount itself; the "
		                         "daemon would write through itself",
		                         opts->target);
		return -EINVAL;
	}
	if (is_dir_or_ancestor(fs->root.fd, tst)) {
		*error = g_strdup_printf("target '%s' is the source '%s' or contains it",
		                         opts->target, mig->source);
		return -EINVAL;
	}
	if (tree_holds_dir(fs->root.fd, tst, NULL, &where)) {
		*error = g_strdup_printf("target '%s' is the directory '%s' of the source '%s', "
		                         "reached by another path",
		                         opts->target, where, mig->source);
		return -EINVAL;
	}
	return 0;
}

/* The switch is made: the target's claim is the daemon's now, the source's is let go. */
static void claim_move(Migration *mig)
{
	Mfs *fs = mig->fs;

	if (fs->lock_fd >= 0)
		close(fs->lock_fd);
	fs->lock_fd = mig->lock_fd;
	mig->lock_fd = -1;
}

void migration_claim_renew(Migration *mig)
{
	mfs_dir_claim_renew(mig->lock_fd);
}

/*
 * Check the target before anything is written: *@fresh says whether it is
 * new to us, or holds the partial files of an earlier run of this same
 * migration (its journal says so), which are then reused.
 */
static int check_target(Mfs *fs, Migration *mig, const MfsMigOptions *opts, bool *fresh,
                        char **error)
{
	g_auto(Journal) j = {0};
	struct stat sst, tst;
	struct statvfs vfs;
	uint64_t need, avail;
	int fd, ret;
	DIR *dp;
	struct dirent *de;

	mig->target = realpath(opts->target, NULL);
	if (!mig->target) {
		*error = g_strdup_printf("target '%s': %s", opts->target, g_strerror(errno));
		return -errno;
	}
	if (stat(mig->target, &tst) < 0 || !S_ISDIR(tst.st_mode)) {
		*error = g_strdup_printf("target '%s' is not a directory", opts->target);
		return -ENOTDIR;
	}
	if (fstat(fs->root.fd, &sst) == 0 && sst.st_dev == tst.st_dev && sst.st_ino == tst.st_ino) {
		*error = g_strdup_printf("target '%s' is the source", opts->target);
		return -EINVAL;
	}
	if (path_within(mig->target, mig->source)) {
		*error = g_strdup_printf("target '%s' lies inside the source '%s'", opts->target,
		                         mig->source);
		return -EINVAL;
	}
	if (path_within(mig->source, mig->target)) {
		*error = g_strdup_printf("target '%s' contains the source '%s'", opts->target,
		                         mig->source);
		return -EINVAL;
	}
	ret = check_target_identity(fs, mig, opts, &tst, error);
	if (ret < 0)
		return ret;
	if (access(mig->target, W_OK | X_OK) < 0) {
		*error = g_strdup_printf("target '%s' is not writable: %s", opts->target,
		                         g_strerror(errno));
		return -EACCES;
	}
	mig->dst_root_fd = open(mig->target, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (mig->dst_root_fd < 0) {
		*error = g_strdup_printf("target '%s': %s", opts->target, g_strerror(errno));
		return -errno;
	}
	/* Checked by identity again: the path may have changed meanwhile. */
	if (fstat(mig->dst_root_fd, &tst) < 0) {
		*error = g_strdup_printf("target '%s': %s", opts->target, g_strerror(errno));
		return -errno;
	}
	ret = check_target_identity(fs, mig, opts, &tst, error);
	if (ret < 0)
		return ret;
	/* An ended migration's claim is of no use: it may be this same target. */
	if (fs->mig && fs->mig->lock_fd >= 0) {
		close(fs->mig->lock_fd);
		fs->mig->lock_fd = -1;
	}
	/* Another daemon serving it would not see our writes, nor we its. */
	ret = mfs_dir_claim(mig->dst_root_fd, &mig->lock_fd);
	if (ret < 0) {
		g_autofree char *holder =
		    ret == -EWOULDBLOCK ? mfs_dir_claim_holder(mig->dst_root_fd) : NULL;

		if (holder)
			*error =
			    g_strdup_printf("target '%s' is served by %s", opts->target, holder);
		else
			*error = g_strdup_printf("target '%s': cannot lock it: %s", opts->target,
			                         g_strerror(-ret));
		return ret;
	}
	if (journal_read(mig->dst_root_fd, &j) == 0) {
		*fresh = !(strcmp(j.state, "copying") == 0 && strcmp(j.source, mig->source) == 0);
		/* A migration back, into the directory that was switched to our source. */
		mig->target_home = (!*fresh && j.home) || (strcmp(j.state, "switched") == 0 &&
		                                           strcmp(j.target, mig->source) == 0);
	}

	/* Names the source has at its root must be free in the target. */
	if (*fresh && !opts->overwrite) {
		fd = openat(fs->root.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		dp = fd >= 0 ? fdopendir(fd) : NULL;
		while (dp && (de = readdir(dp))) {
			struct stat st;

			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
			    journal_is_reserved_name(de->d_name))
				continue;
			if (fstatat(mig->dst_root_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
				*error = g_strdup_printf("target '%s' already holds '%s' (use the "
				                         "overwrite option to replace it)",
				                         opts->target, de->d_name);
				closedir(dp);
				return -EEXIST;
			}
		}
		if (dp)
			closedir(dp);
	}

	/* Room for the data, as Storage vMotion checks before it starts. */
	need = tree_data_bytes(fs->root.fd);
	if (!*fresh)
		need -= MIN(need, tree_data_bytes(mig->dst_root_fd));
	if (fstatvfs(mig->dst_root_fd, &vfs) == 0) {
		avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
		if (need > avail) {
			*error = g_strdup_printf("target '%s' has %" G_GUINT64_FORMAT
			                         " bytes free; the source holds %" G_GUINT64_FORMAT
			                         " bytes of data",
			                         opts->target, avail, need);
			return -ENOSPC;
		}
	}
	return 0;
}

/*
 * Abandoning the copy: remove the target's copying journal, or, in the old
 * home of a migration back, write back the record it replaced, which sends
 * a daemon started there to our source, where the tree still lives.
 */
static void target_journal_undo(Migration *mig)
{
	int ret;

	if (!mig->target_home) {
		journal_remove(mig->dst_root_fd);
		return;
	}
	ret = journal_write(mig->dst_root_fd,
	                    &(Journal){"switched", mig->target, mig->source, false}, true);
	if (ret == 0)
		ret = journal_sync_dir(mig->dst_root_fd);
	if (ret < 0)
		g_warning("migration %s -> %s: cannot restore the journal of '%s', which must send "
		          "a daemon started there to '%s': %s",
		          mig->source, mig->target, mig->target, mig->source, g_strerror(-ret));
}

static int check_options(const MfsMigOptions *opts, uint64_t *chunk, char **error)
{
	*chunk = opts->chunk_size ? opts->chunk_size : MFS_DEFAULT_CHUNK;
	if (*chunk < 4096 || *chunk > (64u << 20) || (*chunk & (*chunk - 1))) {
		*error = g_strdup_printf("chunk size %" G_GUINT64_FORMAT
		                         " must be a power of two from 4K to 64M",
		                         *chunk);
		return -EINVAL;
	}
	if (!opts->target || !*opts->target) {
		*error = g_strdup("no target directory given");
		return -EINVAL;
	}
	if (opts->guest_share > MFS_MAX_GUEST_SHARE) {
		*error = g_strdup_printf("guest share %u%% is over %u%%", opts->guest_share,
		                         MFS_MAX_GUEST_SHARE);
		return -EINVAL;
	}
	if (opts->speed_bps > MFS_MAX_SIZE) {
		*error = g_strdup_printf("speed %" G_GUINT64_FORMAT " bytes/s is over 2^63 - 1",
		                         opts->speed_bps);
		return -ERANGE;
	}
	return 0;
}

/* Whether the source object of @inode has no name left. */
static bool source_object_gone(MfsInode *inode)
{
	struct stat st;

	return fstatat(inode->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 &&
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

	mfs_proc_fd_path(inode->fd, path);
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
	if (copy_metadata(mig, src_ro, dst, &st) < 0 || copy_times(mig, dst, S_IFREG, &st) < 0) {
		close(dst);
		goto fail;
	}
	mfs_mutex_lock(&mig->lock);
	mig->bytes_total += MIN((uint64_t)st.st_blocks * 512, (uint64_t)st.st_size);
	mfs_mutex_unlock(&mig->lock);
	mf = mirror_file_new(src_ro, dst, mig->chunk_size, true);
	mirror_file_set_clone(mf, !mig->no_clone);
	object_add(mig, &st, -1, mf);
	return mf;
fail:
	mig_fail(mig, "target: a file open but unlinked: %s", g_strerror(errno));
	if (src_ro >= 0)
		close(src_ro);
	return NULL;
}

/* Point (or un-point) every inode the kernel knows at its mirror.  Stunned. */
static void attach_mirrors_stunned(Mfs *fs, Migration *mig, bool attach)
{
	g_autoptr(GPtrArray) inodes = mfs_inodes_stunned(fs);

	for (guint i = 0; i < inodes->len; i++) {
		MfsInode *inode = g_ptr_array_index(inodes, i);

		if (inode->type != S_IFREG)
			continue;
		inode->mirror = attach ? migration_find_mirror(mig, &inode->key) : NULL;
		if (attach && !inode->mirror && source_object_gone(inode))
			inode->mirror = mirror_nameless_file(mig, inode);
	}
}

static gpointer migration_thread(gpointer data);

int mfs_migration_start(Mfs *fs, const MfsMigOptions *opts, char **error)
{
	Migration *mig, *old;
	struct stat st;
	bool fresh = true;
	int ret;

	*error = NULL;
	mig = migration_new(fs);
	ret = check_options(opts, &mig->chunk_size, error);
	if (ret < 0)
		goto out_free;
	mig->hook = opts->hook;
	mig->hook_opaque = opts->hook_opaque;
	mig->manual_switch = opts->manual_switch;
	mig->delete_source = opts->delete_source;
	mig->no_clone = opts->no_clone;
	mig->speed_bps = opts->speed_bps;
	mig->guest_share = opts->guest_share;

	mfs_rwlock_writer_lock(&fs->ns_lock);
	old = fs->mig;
	if (old) {
		mfs_mutex_lock(&old->lock);
		ret = state_running(old->state) ? -EBUSY : 0;
		mfs_mutex_unlock(&old->lock);
		if (ret < 0) {
			*error =
			    g_strdup_printf("a migration to '%s' is already running", old->target);
			goto out_unlock;
		}
	}
	mig->source = g_strdup(fs->dir);
	ret = check_target(fs, mig, opts, &fresh, error);
	if (ret < 0)
		goto out_unlock;
	ret =
	    journal_write(mig->dst_root_fd,
	                  &(Journal){"copying", mig->source, mig->target, mig->target_home}, false);
	if (ret < 0) {
		*error = g_strdup_printf("target '%s': cannot write its journal: %s", opts->target,
		                         g_strerror(-ret));
		goto out_unlock;
	}
	if (fstat(fs->root.fd, &st) < 0) {
		ret = -errno;
		*error = g_strdup_printf("source: %s", g_strerror(errno));
		goto out_cleanup;
	}
	object_add(mig, &st, dup(mig->dst_root_fd), NULL);
	mig->state = MFS_MIG_COPYING;
	mig->walking = true;
	/* Our partial copy, or the old home of a migration back: an image of the source. */
	ret = walk_tree(mig, fs->root.fd, fresh, !fresh || mig->target_home, error);
	mig->walking = false;
	if (ret < 0)
		goto out_cleanup;
	mfs_test_crash_point("walked");

	/* Attach the mirrors in a stun: no write may be half-way when they appear. */
	gate_close(&fs->gate);
	fs->mig = mig;
	attach_mirrors_stunned(fs, mig, true);
	gate_open(&fs->gate);
	mfs_rwlock_writer_unlock(&fs->ns_lock);
	migration_free(old);

	if (!opts->defer_thread)
		mig->thread = g_thread_new("mirrorfs-copier", migration_thread, mig);
	return 0;

out_cleanup:
	/* Nothing was attached yet: remove what the walk made, and the journal. */
	{
		GHashTableIter it;
		gpointer name;

		g_hash_table_iter_init(&it, mig->root_names);
		while (g_hash_table_iter_next(&it, &name, NULL))
			remove_tree_at(mig->dst_root_fd, name);
		target_journal_undo(mig);
	}
out_unlock:
	mfs_rwlock_writer_unlock(&fs->ns_lock);
out_free:
	mig->state = MFS_MIG_FAILED;
	migration_free(mig);
	return ret;
}

/* --- the thread --------------------------------------------------------- */

static void rate_sample_locked(Migration *mig, uint64_t copied)
{
	unsigned i = mig->rate_n++ % RATE_SAMPLES;

	mig->rate_t[i] = g_get_monotonic_time();
	mig->rate_b[i] = copied;
}

/* The data copied so far, and the guest operations admitted, over all files. */
static void count_files_locked(Migration *mig, uint64_t *copied, uint64_t *guest_ops)
{
	*copied = *guest_ops = 0;
	for (guint i = 0; i < mig->files->len; i++) {
		MigObject *obj = g_ptr_array_index(mig->files, i);
		MirrorFileStats st;

		mirror_file_stats(obj->mf, &st);
		*copied += st.bytes_copied;
		*guest_ops += st.guest_ops;
	}
}

/*
 * How long the copier rests after a chunk that took @chunk_us while the
 * guest changed a file: long enough that the guest has @guest_share
 * percent of the time to itself.  The copier and the guest share a disk
 * that knows no priority, and while a copier request is in flight the
 * guest's requests wait behind it: measured under 4K random writes at
 * iodepth 16, a copier going flat out left the guest 0.25x of its IOPS,
 * where the double writes of a mirrored file alone left it 0.8x.
 * Resting in proportion to the chunk's own time follows the disk: a
 * chunk slowed by the guest buys the guest a longer rest.  An idle guest
 * costs nothing.  The guest's reads count as much as its changes: the
 * copier's requests hold them up just the same.
 */
static gint64 copier_rest_us(gint64 chunk_us, unsigned guest_share)
{
	if (guest_share == 0 || guest_share >= 100 || chunk_us <= 0)
		return 0;
	return chunk_us * guest_share / (100 - guest_share);
}

/*
 * Between chunks: honour pause, cancel, errors, the speed limit, and the
 * rest owed to a busy guest for a chunk of @rest_chunk_us that ended at
 * @rest_from (0: none owed).  The share and the limit are read afresh at
 * every wake-up, so that a new one counts at once.  Returns false when
 * the copy must stop.
 */
static bool copier_may_go_on(Migration *mig, gint64 window_start, uint64_t window_bytes,
                             gint64 rest_from, gint64 rest_chunk_us)
{
	gint64 now, rest_due = 0;
	bool go_on;

	mfs_mutex_lock(&mig->lock);
	for (;;) {
		gint64 due;

		now = g_get_monotonic_time();
		if (mig->error || mig->cancel_requested)
			break;
		if (mig->paused) {
			mfs_cond_wait(&mig->cond, &mig->lock);
			continue;
		}
		if (rest_from)
			rest_due = rest_from + copier_rest_us(rest_chunk_us, mig->guest_share);
		due = rest_due;
		if (mig->speed_bps)
			due = MAX(due, window_start + (gint64)(window_bytes * G_USEC_PER_SEC /
			                                       mig->speed_bps));
		if (now >= due)
			break;
		mfs_cond_wait_until(&mig->cond, &mig->lock, due);
	}
	if (rest_from)
		mig->rested_us += MAX(0, MIN(now, rest_due) - rest_from);
	go_on = !mig->error && !mig->cancel_requested;
	mfs_mutex_unlock(&mig->lock);
	return go_on;
}

/*
 * Start the writeback of what mirrored writes left in the targets' page
 * cache, without waiting for it.  Left to the kernel, it would be written
 * at the switch's flush, all at once: seconds of random writes in front
 * of the guest's.  Done every WRITEBACK_PERIOD_US of copying, it is
 * spread over the copy.
 */
#define WRITEBACK_PERIOD_US (250 * 1000)

static void start_target_writeback(Migration *mig)
{
	g_autoptr(GPtrArray) files = g_ptr_array_new();

	mfs_mutex_lock(&mig->lock);
	for (guint i = 0; i < mig->files->len; i++)
		g_ptr_array_add(files, ((MigObject *)g_ptr_array_index(mig->files, i))->mf);
	mfs_mutex_unlock(&mig->lock);
	for (guint i = 0; i < files->len; i++)
		mirror_file_start_writeback(g_ptr_array_index(files, i));
}

/*
 * How large a chunk may grow (mirror-file.c): no more than a quarter of a
 * second of the speed limit, so that a limited copier still moves evenly.
 */
static size_t grown_chunk_limit(uint64_t speed_bps)
{
	return speed_bps ? MIN(MFS_MAX_GROWN_CHUNK, speed_bps / 4) : MFS_MAX_GROWN_CHUNK;
}

static bool copy_all_files(Migration *mig)
{
	gint64 window_start = g_get_monotonic_time(), writeback_due = window_start;
	gint64 rest_from = 0, rest_chunk_us = 0;
	uint64_t window_bytes = 0, last_speed, copied_total, guest_ops;
	/* The guest's reads and admitted operations, summed: it used the mount when they move. */
	uint64_t guest_use, last_guest_use = mfs_reads_served(mig->fs);
	bool guest_busy = false;

	mfs_mutex_lock(&mig->lock);
	last_speed = mig->speed_bps;
	count_files_locked(mig, &copied_total, &guest_ops);
	last_guest_use += guest_ops;
	mfs_mutex_unlock(&mig->lock);
	for (guint i = 0;; i++) {
		MigObject *obj;
		int ret;

		mfs_mutex_lock(&mig->lock);
		obj = i < mig->files->len ? g_ptr_array_index(mig->files, i) : NULL;
		mfs_mutex_unlock(&mig->lock);
		if (!obj)
			return true;
		do {
			uint64_t copied;
			gint64 chunk_start;

			if (!copier_may_go_on(mig, window_start, window_bytes, rest_from,
			                      rest_chunk_us))
				return false;
			/*
			 * The MirrorFile grows its chunk while the guest leaves that
			 * file alone; the guest's reads, and its writes to the other
			 * files, hold up its requests just as much: no growth either.
			 */
			mirror_file_set_max_chunk(obj->mf,
			                          guest_busy ? 0 : grown_chunk_limit(last_speed));
			chunk_start = g_get_monotonic_time();
			run_hook(mig, "chunk-begin");
			ret = mirror_file_copy_next(obj->mf, &copied);
			window_bytes += copied;
			guest_use = mfs_reads_served(mig->fs);
			mfs_mutex_lock(&mig->lock);
			count_files_locked(mig, &copied_total, &guest_ops);
			rate_sample_locked(mig, copied_total);
			/* Owe the guest a rest if it used a file during this chunk. */
			rest_from = 0;
			guest_use += guest_ops;
			guest_busy = guest_use != last_guest_use;
			last_guest_use = guest_use;
			if (guest_busy && copied) {
				rest_from = g_get_monotonic_time();
				rest_chunk_us = rest_from - chunk_start;
			}
			if (mig->speed_bps != last_speed) {
				/* A new limit counts from now. */
				last_speed = mig->speed_bps;
				window_start = g_get_monotonic_time();
				window_bytes = 0;
			}
			mfs_mutex_unlock(&mig->lock);
			if (g_get_monotonic_time() >= writeback_due) {
				start_target_writeback(mig);
				writeback_due = g_get_monotonic_time() + WRITEBACK_PERIOD_US;
			}
			run_hook(mig, "chunk");
		} while (ret == 1);
		if (ret < 0) {
			mig_fail(mig, "copying: %s", g_strerror(-ret));
			return false;
		}
	}
}

static void set_state(Migration *mig, MfsMigState state)
{
	unsigned lost;

	mfs_mutex_lock(&mig->lock);
	mig->state = state;
	lost = mig->meta_lost;
	mfs_cond_broadcast(&mig->cond);
	mfs_mutex_unlock(&mig->lock);
	if (state == MFS_MIG_SWITCHED && lost)
		g_warning("migration %s -> %s: the target holds the files without %u owner(s) or "
		          "extended attribute(s) it refused (the first was logged)",
		          mig->source, mig->target, lost);
	if (state == MFS_MIG_SWITCHED)
		g_message("migration %s -> %s: switched (stun %.3f ms)", mig->source, mig->target,
		          mig->stun_ns / 1e6);
	else
		g_message("migration %s -> %s: %s", mig->source, mig->target,
		          mfs_mig_state_name(state));
}

/* Keep the per-file figures once the MirrorFiles are gone. */
static void keep_final_status(Migration *mig)
{
	MfsMigStatus st = {0};

	mfs_migration_status(mig->fs, &st);
	mfs_mutex_lock(&mig->lock);
	final_status_free(mig);
	mig->final = g_steal_pointer(&st.files);
	mig->n_final = st.n_files;
	mig->final_counts[0] = st.bytes_copied;
	mig->final_counts[1] = st.mirrored_writes;
	mig->final_counts[2] = st.waited_writes;
	mig->final_counts[3] = st.max_wait_ns;
	mig->final_counts[4] = st.bytes_cloned;
	st.n_files = 0;
	mfs_mutex_unlock(&mig->lock);
	mfs_migration_status_clear(&st);
}

static void drop_objects(Migration *mig)
{
	keep_final_status(mig);
	mfs_mutex_lock(&mig->lock);
	g_ptr_array_set_size(mig->files, 0);
	g_hash_table_remove_all(mig->objects);
	mfs_mutex_unlock(&mig->lock);
}

/* Detach every mirror, remove what we made on the target, end in @state. */
static void migration_abort(Migration *mig, MfsMigState state)
{
	Mfs *fs = mig->fs;
	GHashTableIter it;
	gpointer name;

	mfs_rwlock_writer_lock(&fs->ns_lock);
	gate_close(&fs->gate);
	mfs_mutex_lock(&mig->lock);
	mig->detached = true;
	mfs_mutex_unlock(&mig->lock);
	attach_mirrors_stunned(fs, mig, false);
	gate_open(&fs->gate);
	mfs_rwlock_writer_unlock(&fs->ns_lock);

	drop_objects(mig);
	mfs_test_crash_point("abort-detached");
	g_hash_table_iter_init(&it, mig->root_names);
	while (g_hash_table_iter_next(&it, &name, NULL)) {
		int ret = remove_tree_at(mig->dst_root_fd, name);

		if (ret < 0)
			g_warning("migration %s -> %s: cannot remove '%s' from the target: %s",
			          mig->source, mig->target, (char *)name, g_strerror(-ret));
	}
	mfs_test_crash_point("abort-removed");
	target_journal_undo(mig);
	/* Let go of the target entirely: its file system can be unmounted now. */
	close(mig->dst_root_fd);
	mig->dst_root_fd = -1;
	if (mig->lock_fd >= 0)
		close(mig->lock_fd);
	mig->lock_fd = -1;
	mfs_mutex_lock(&mig->lock);
	if (mig->error)
		g_warning("migration %s -> %s failed: %s", mig->source, mig->target, mig->error);
	mfs_mutex_unlock(&mig->lock);
	set_state(mig, state);
}

/*
 * Local disk file systems, whose syncfs() writes and flushes every file's
 * data and reports their writeback errors.  Not FUSE, whose syncfs may
 * not reach the server, nor network file systems.
 */
static bool syncfs_covers_files(int fd)
{
	static const __fsword_t local[] = {EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC, BTRFS_SUPER_MAGIC,
	                                   F2FS_SUPER_MAGIC};
	struct statfs sfs;

	if (fstatfs(fd, &sfs) < 0)
		return false;
	for (size_t i = 0; i < G_N_ELEMENTS(local); i++)
		if (sfs.f_type == local[i])
			return true;
	return false;
}

/*
 * Flush every target file, then the target's file system: the names must
 * be durable as well as the data.  With @times, give each file the
 * source's times first (the copier's writes moved the target's mtime; a
 * later guest write moves both sides' again).
 *
 * With @fs_fd, a directory of the target opened before the last full
 * flush, the files on its file system are left to the one syncfs() when
 * it is a local disk file system: it reports the writeback errors of any
 * of them since @fs_fd was opened.
 * In the stun that is one device flush instead of one per file, and a
 * flush is most of a stun's time.
 */
static int flush_targets(Migration *mig, bool times, int fs_fd)
{
	g_autoptr(GPtrArray) files = g_ptr_array_new();
	bool fs_fd_covers = fs_fd >= 0;
	struct stat root;
	int fd, ret = 0;

	/* New files may be added meanwhile; they are born mirrored. */
	mfs_mutex_lock(&mig->lock);
	for (guint i = 0; i < mig->files->len; i++)
		g_ptr_array_add(files, g_ptr_array_index(mig->files, i));
	mfs_mutex_unlock(&mig->lock);
	if (fs_fd >= 0 && (!syncfs_covers_files(fs_fd) || fstat(fs_fd, &root) < 0))
		fs_fd_covers = false;
	for (guint i = 0; i < files->len && ret == 0; i++) {
		MirrorFile *mf = ((MigObject *)g_ptr_array_index(files, i))->mf;
		struct stat st;

		if (times)
			mirror_file_copy_times(mf);
		if (fs_fd_covers && fstat(mirror_file_target_fd(mf), &st) == 0 &&
		    st.st_dev == root.st_dev)
			continue;
		ret = mirror_file_flush_target(mf);
	}
	if (ret < 0)
		return ret;
	fd = fs_fd >= 0 ? fs_fd : openat(mig->dst_root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = syncfs(fd) < 0 ? -errno : 0;
	if (fd != fs_fd)
		close(fd);
	return ret;
}

/*
 * The target must still be where the journal will say it is: a directory
 * removed or a file system unmounted under us would make the switch serve
 * files that nobody can find again.
 */
static int target_still_there(Migration *mig)
{
	struct stat held, named;

	if (fstat(mig->dst_root_fd, &held) < 0)
		return -errno;
	if (held.st_nlink == 0)
		return -ENOENT;
	if (stat(mig->target, &named) < 0)
		return -errno;
	if (held.st_dev != named.st_dev || held.st_ino != named.st_ino)
		return -ESTALE;
	return 0;
}

/*
 * What the switch will swap in, prepared while it can still be undone.
 * An inode whose source object has no name left (a file unlinked while
 * open, a directory removed while a process sits in it) and that the
 * migration never made on the target stays on the source: nobody can
 * reach it by name, and what its holders do with it stays consistent.
 */
typedef struct {
	MfsInode *inode;
	int fd; /* -1: the inode stays on the source */
	MfsInodeKey key;
} InodeSwap;

typedef struct {
	MfsFile *file;
	int fd;
} FileSwap;

static int target_path_fd(Migration *mig, MfsInode *inode)
{
	char path[MFS_PROC_FD_LEN];
	MigObject *obj;
	int fd;

	if (inode == &mig->fs->root)
		return dup(mig->dst_root_fd);
	obj = object_find(mig, &inode->key);
	if (!obj) {
		errno = ENOENT;
		return -1;
	}
	mfs_proc_fd_path(object_fd(obj), path);
	fd = open(path, O_PATH | O_CLOEXEC);
	return fd;
}

/*
 * A directory removed while a process sits in it, a special file removed
 * while the kernel holds it: the target gets a nameless stand-in of the
 * same type (made, opened, removed), which serves what such an object
 * still can, its attributes.  (Regular files have their nameless copy.)
 */
static int nameless_standin(Migration *mig, MfsInode *inode)
{
	MfsNodeSpec spec = {.link = "."};
	char name[64];
	struct stat st;
	int fd;

	if (inode->type == S_IFREG ||
	    fstatat(inode->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -1;
	spec.mode = S_ISDIR(st.st_mode) ? S_IFDIR | 0700 : st.st_mode;
	spec.rdev = st.st_rdev;
	g_snprintf(name, sizeof(name), ".mirrorfs-standin.%ju", (uintmax_t)st.st_ino);
	if (mfs_make_node_at(mig->dst_root_fd, name, &spec) < 0)
		return -1;
	fd = open_path(mig->dst_root_fd, name);
	/* Its owner, mode and times, as best it can: it has nothing else. */
	if (fd >= 0 && copy_metadata(mig, inode->fd, fd, &st) == 0)
		copy_times(mig, fd, st.st_mode & S_IFMT, &st);
	unlinkat(mig->dst_root_fd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
	return fd;
}

static int prepare_inode_swap(Migration *mig, InodeSwap *s)
{
	struct stat st;

	s->fd = target_path_fd(mig, s->inode);
	if (s->fd < 0 && errno == ENOENT && source_object_gone(s->inode)) {
		s->fd = nameless_standin(mig, s->inode);
		if (s->fd < 0) {
			/* Nothing to stand in: it stays where it is, and holds the source. */
			g_message("migration %s -> %s: a nameless object stays on the source",
			          mig->source, mig->target);
			return 0;
		}
	}
	if (s->fd < 0)
		return -errno;
	if (fstat(s->fd, &st) < 0) {
		int ret = -errno;

		close(s->fd);
		s->fd = -1;
		return ret;
	}
	s->key = (MfsInodeKey){st.st_dev, st.st_ino};
	return 0;
}

static int prepare_file_swap(GArray *inodes, FileSwap *s)
{
	int flags =
	    (s->file->flags & ~(O_NOFOLLOW | O_APPEND | O_CREAT | O_EXCL | O_TRUNC)) | O_CLOEXEC;
	char path[MFS_PROC_FD_LEN];

	for (guint i = 0; i < inodes->len; i++) {
		InodeSwap *is = &g_array_index(inodes, InodeSwap, i);

		if (is->inode != s->file->inode)
			continue;
		if (is->fd < 0)
			return 0; /* stays on the source, and so do its files */
		mfs_proc_fd_path(is->fd, path);
		s->fd = open(path, flags);
		/* A target without O_DIRECT (tmpfs) still serves the file. */
		if (s->fd < 0 && errno == EINVAL && (flags & O_DIRECT))
			s->fd = open(path, flags & ~O_DIRECT);
		return s->fd < 0 ? -errno : 0;
	}
	return -ENOENT;
}

/*
 * The stun freezes both tables: everything that adds to them or removes
 * from them (lookup, forget, open, create, release) passes the gate.  So
 * they are read under their locks, and the system calls made without.
 */
static int prepare_swaps(Migration *mig, GArray *inodes, GArray *files)
{
	Mfs *fs = mig->fs;
	g_autoptr(GPtrArray) known = mfs_inodes_stunned(fs);
	GHashTableIter it;
	gpointer key;
	int ret = 0;

	for (guint i = 0; i < known->len; i++)
		g_array_append_val(inodes,
		                   ((InodeSwap){.inode = g_ptr_array_index(known, i), .fd = -1}));
	mfs_mutex_lock(&fs->files_lock);
	g_hash_table_iter_init(&it, fs->files);
	while (g_hash_table_iter_next(&it, &key, NULL))
		g_array_append_val(files, ((FileSwap){.file = key, .fd = -1}));
	mfs_mutex_unlock(&fs->files_lock);

	for (guint i = 0; i < inodes->len && ret == 0; i++)
		ret = prepare_inode_swap(mig, &g_array_index(inodes, InodeSwap, i));
	for (guint i = 0; i < files->len && ret == 0; i++)
		ret = prepare_file_swap(inodes, &g_array_index(files, FileSwap, i));
	return ret;
}

/*
 * How long the swap waits for reads that were already in flight on a
 * file's source descriptor (reads pass no gate) before it closes that
 * descriptor; after that the descriptor is left to the file's release.
 */
#define SWAP_READ_DRAIN_US 10000

/*
 * Point every inode and open file at the target.  The source's
 * descriptors are closed as they are let go, so that once the guests'
 * files are closed the daemon holds nothing of the source and the old
 * disk can be unmounted: nothing but reads uses an inode's descriptor
 * outside the gate, and reads use the file's.  The source's root is kept
 * in old_root_fd for delete_source_files().
 */
static void apply_swaps(Migration *mig, GArray *inodes, GArray *files)
{
	Mfs *fs = mig->fs;
	g_autoptr(GArray) old = g_array_new(FALSE, FALSE, sizeof(int));
	gint64 deadline;

	mfs_mutex_lock(&fs->inodes_lock);
	g_hash_table_steal_all(fs->inodes);
	for (guint i = 0; i < inodes->len; i++) {
		InodeSwap *s = &g_array_index(inodes, InodeSwap, i);

		s->inode->mirror = NULL;
		if (s->fd >= 0) {
			if (s->inode == &fs->root)
				mig->old_root_fd = s->inode->fd;
			else
				g_array_append_val(old, s->inode->fd);
			s->inode->fd = s->fd;
			s->inode->key = s->key;
		}
		g_hash_table_add(fs->inodes, s->inode);
	}
	mfs_mutex_unlock(&fs->inodes_lock);
	for (guint i = 0; i < old->len; i++)
		close(g_array_index(old, int, i));

	for (guint i = 0; i < files->len; i++) {
		FileSwap *s = &g_array_index(files, FileSwap, i);

		if (s->fd >= 0)
			s->fd = mfs_file_swap_fd_stunned(s->file, s->fd);
	}
	deadline = g_get_monotonic_time() + SWAP_READ_DRAIN_US;
	for (guint i = 0; i < files->len; i++) {
		FileSwap *s = &g_array_index(files, FileSwap, i);

		if (s->fd >= 0)
			mfs_file_retire_fd_stunned(s->file, s->fd, deadline);
	}
	g_free(fs->dir);
	fs->dir = g_strdup(mig->target);
}

static void undo_swaps(GArray *inodes, GArray *files)
{
	for (guint i = 0; i < inodes->len; i++)
		if (g_array_index(inodes, InodeSwap, i).fd >= 0)
			close(g_array_index(inodes, InodeSwap, i).fd);
	for (guint i = 0; i < files->len; i++)
		if (g_array_index(files, FileSwap, i).fd >= 0)
			close(g_array_index(files, FileSwap, i).fd);
}

/*
 * For crash tests: with MIRRORFS_TEST_STUN_DELAY_MS set, the switch says
 * where it is and waits there, so that a kill -9 lands inside the stun,
 * before or after the journal, on purpose rather than by luck.
 */
static void crash_test_pause(Migration *mig, const char *point)
{
	const char *ms = g_getenv("MIRRORFS_TEST_STUN_DELAY_MS");

	if (!ms)
		return;
	g_message("migration %s -> %s: test: %s, waiting %s ms", mig->source, mig->target, point,
	          ms);
	g_usleep((gulong)g_ascii_strtoull(ms, NULL, 10) * 1000);
}

static int migration_switch(Migration *mig)
{
	Mfs *fs = mig->fs;
	g_autoptr(GArray) inodes = g_array_new(FALSE, FALSE, sizeof(InodeSwap));
	g_autoptr(GArray) files = g_array_new(FALSE, FALSE, sizeof(FileSwap));
	gint64 t0;
	int ret, sync_ret, fs_fd;

	set_state(mig, MFS_MIG_SWITCHING);
	/* 1. Flush ahead, so that the stun has little left to do. */
	fs_fd = openat(mig->dst_root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ret = fs_fd < 0 ? -errno : flush_targets(mig, true, -1);
	if (ret < 0) {
		mig_fail(mig, "flushing the target: %s", g_strerror(-ret));
		if (fs_fd >= 0)
			close(fs_fd);
		return ret;
	}
	/* 2. Stun. */
	run_hook(mig, "stunning");
	mfs_rwlock_writer_lock(&fs->ns_lock);
	t0 = g_get_monotonic_time();
	gate_close(&fs->gate);
	run_hook(mig, "stunned");
	crash_test_pause(mig, "stunned");
	/* 3. Final flush, the counterparts, then the journal: the point of no return. */
	ret = flush_targets(mig, false, fs_fd);
	if (ret < 0) {
		mig_fail(mig, "flushing the target: %s", g_strerror(-ret));
		goto resume;
	}
	/*
	 * Every write is done now: one that failed on the target since the
	 * decision to switch (a full disk), or a cancel that came meanwhile,
	 * must stop the switch, or the target would lack what it missed.
	 */
	mfs_mutex_lock(&mig->lock);
	ret = mig->error ? -EIO : mig->cancel_requested ? -ECANCELED : 0;
	mfs_mutex_unlock(&mig->lock);
	if (ret < 0)
		goto resume;
	ret = target_still_there(mig);
	if (ret < 0) {
		mig_fail(mig, "the target '%s' is gone: %s", mig->target, g_strerror(-ret));
		goto resume;
	}
	ret = prepare_swaps(mig, inodes, files);
	if (ret < 0) {
		mig_fail(mig, "opening the target's files: %s", g_strerror(-ret));
		undo_swaps(inodes, files);
		goto resume;
	}
	ret = journal_write(fs->root.fd, &(Journal){"switched", mig->source, mig->target, false},
	                    true);
	if (ret < 0) {
		mig_fail(mig, "writing the source's journal: %s", g_strerror(-ret));
		undo_swaps(inodes, files);
		goto resume;
	}
	/*
	 * The journal names the target now: from here the switch completes,
	 * whatever fails.  Going back would leave a journal that may survive
	 * a crash and send a restart to a target no longer kept up to date.
	 */
	mfs_test_crash_point("journal-renamed");
	sync_ret = journal_sync_dir(fs->root.fd);
	if (sync_ret < 0) {
		g_warning("migration %s -> %s: the switch is made, but flushing the source "
		          "directory that records it failed: %s; the source is kept",
		          mig->source, mig->target, g_strerror(-sync_ret));
		mig->keep_source = true;
	}
	run_hook(mig, "journaled");
	crash_test_pause(mig, "journaled");
	/* 4. Every descriptor to the target. */
	apply_swaps(mig, inodes, files);
	claim_move(mig);
	mfs_mutex_lock(&mig->lock);
	mig->detached = true;
	mfs_mutex_unlock(&mig->lock);
	mfs_test_crash_point("swapped");
resume:
	/* 5. Resume. */
	gate_open(&fs->gate);
	mfs_rwlock_writer_unlock(&fs->ns_lock);
	close(fs_fd);
	if (ret == 0) {
		mfs_mutex_lock(&mig->lock);
		mig->stun_ns = (uint64_t)(g_get_monotonic_time() - t0) * 1000;
		mfs_mutex_unlock(&mig->lock);
		mfs_test_crash_point("resumed-journal-left");
		journal_remove(mig->dst_root_fd);
		run_hook(mig, "resumed");
	}
	return ret;
}

static void delete_source_files(Migration *mig)
{
	int fd = openat(mig->old_root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dp = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (!dp) {
		g_warning("migration %s -> %s: cannot delete the source: %s", mig->source,
		          mig->target, g_strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(dp))) {
		int ret;

		/* The journal stays: it sends a restarted daemon to the target. */
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    journal_is_reserved_name(de->d_name))
			continue;
		ret = remove_tree_at(dirfd(dp), de->d_name);
		mfs_test_crash_point("deleting-source");
		if (ret < 0)
			g_warning("migration %s -> %s: cannot delete '%s' from the source: %s",
			          mig->source, mig->target, de->d_name, g_strerror(-ret));
	}
	closedir(dp);
}

static gpointer migration_thread(gpointer data)
{
	Migration *mig = data;
	bool go;

	run_hook(mig, "started");
	if (!copy_all_files(mig))
		goto abort;
	set_state(mig, MFS_MIG_MIRRORED);
	run_hook(mig, "mirrored");
	mfs_mutex_lock(&mig->lock);
	while (mig->manual_switch && !mig->switch_requested && !mig->error &&
	       !mig->cancel_requested)
		mfs_cond_wait(&mig->cond, &mig->lock);
	go = !mig->error && !mig->cancel_requested;
	mfs_mutex_unlock(&mig->lock);
	if (!go || migration_switch(mig) < 0)
		goto abort;
	drop_objects(mig);
	/* Before "switched" is announced, so that whoever waits for it finds it done. */
	if (mig->delete_source && !mig->keep_source)
		delete_source_files(mig);
	/* The last of the source the daemon held: the old disk can go now. */
	close(mig->old_root_fd);
	mig->old_root_fd = -1;
	set_state(mig, MFS_MIG_SWITCHED);
	return NULL;

abort:
	mfs_mutex_lock(&mig->lock);
	go = mig->error == NULL; /* no error: cancelled */
	mfs_mutex_unlock(&mig->lock);
	migration_abort(mig, go ? MFS_MIG_CANCELLED : MFS_MIG_FAILED);
	return NULL;
}

/* --- control ----------------------------------------------------------- */

/* The current (or last) migration, or NULL. */
static Migration *current(Mfs *fs)
{
	Migration *mig;

	mfs_rwlock_reader_lock(&fs->ns_lock);
	mig = fs->mig;
	mfs_rwlock_reader_unlock(&fs->ns_lock);
	return mig;
}

/* A control request, decided under the migration's lock by @fn. */
static int request(Mfs *fs, int (*fn)(Migration *mig, uint64_t arg), uint64_t arg)
{
	Migration *mig = current(fs);
	int ret;

	if (!mig)
		return -ENOENT;
	mfs_mutex_lock(&mig->lock);
	ret = fn(mig, arg);
	mfs_cond_broadcast(&mig->cond);
	mfs_mutex_unlock(&mig->lock);
	return ret;
}

static int pause_locked(Migration *mig, uint64_t unused)
{
	if (mig->state != MFS_MIG_COPYING)
		return -EINVAL;
	if (mig->paused)
		return -EALREADY;
	mig->paused = true;
	return 0;
}

static int resume_locked(Migration *mig, uint64_t unused)
{
	if (!mig->paused)
		return -EINVAL;
	mig->paused = false;
	return 0;
}

static int set_speed_locked(Migration *mig, uint64_t speed_bps)
{
	if (speed_bps > MFS_MAX_SIZE)
		return -ERANGE;
	if (!state_running(mig->state))
		return -EINVAL;
	mig->speed_bps = speed_bps;
	return 0;
}

static int set_guest_share_locked(Migration *mig, uint64_t percent)
{
	if (percent > MFS_MAX_GUEST_SHARE)
		return -ERANGE;
	if (!state_running(mig->state))
		return -EINVAL;
	mig->guest_share = (unsigned)percent;
	return 0;
}

static int switch_locked(Migration *mig, uint64_t unused)
{
	if (mig->state == MFS_MIG_COPYING)
		return -EBUSY; /* not everything is copied yet */
	if (mig->state != MFS_MIG_MIRRORED)
		return -EINVAL;
	if (!mig->manual_switch)
		return -EALREADY;
	mig->switch_requested = true;
	return 0;
}

static int cancel_locked(Migration *mig, uint64_t unused)
{
	if (mig->state == MFS_MIG_CANCELLED)
		return -EALREADY;
	if (mig->state != MFS_MIG_COPYING && mig->state != MFS_MIG_MIRRORED)
		return -EINVAL;
	mig->cancel_requested = true;
	return 0;
}

int mfs_migration_pause(Mfs *fs)
{
	return request(fs, pause_locked, 0);
}

int mfs_migration_resume(Mfs *fs)
{
	return request(fs, resume_locked, 0);
}

int mfs_migration_set_speed(Mfs *fs, uint64_t speed_bps)
{
	return request(fs, set_speed_locked, speed_bps);
}

int mfs_migration_set_guest_share(Mfs *fs, unsigned percent)
{
	return request(fs, set_guest_share_locked, percent);
}

int mfs_migration_switch(Mfs *fs)
{
	return request(fs, switch_locked, 0);
}

int mfs_migration_cancel(Mfs *fs)
{
	return request(fs, cancel_locked, 0);
}

MfsMigState mfs_migration_wait(Mfs *fs, MfsMigState until, int timeout_ms)
{
	Migration *mig = current(fs);
	gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
	MfsMigState state;

	if (!mig)
		return MFS_MIG_IDLE;
	mfs_mutex_lock(&mig->lock);
	while (mig->state != until && state_running(mig->state) &&
	       !(until == MFS_MIG_MIRRORED && mig->state > MFS_MIG_MIRRORED)) {
		if (timeout_ms >= 0) {
			if (!mfs_cond_wait_until(&mig->cond, &mig->lock, deadline))
				break;
		} else {
			mfs_cond_wait(&mig->cond, &mig->lock);
		}
	}
	state = mig->state;
	mfs_mutex_unlock(&mig->lock);
	return state;
}

/* Path of a target file relative to the target root, from its descriptor. */
static char *target_relpath(Migration *mig, int fd)
{
	char path[MFS_PROC_FD_LEN], buf[PATH_MAX];
	size_t n = strlen(mig->target);
	ssize_t len;

	mfs_proc_fd_path(fd, path);
	len = readlink(path, buf, sizeof(buf) - 1);
	if (len < 0)
		return g_strdup("?");
	buf[len] = '\0';
	if (strncmp(buf, mig->target, n) == 0 && buf[n] == '/')
		return g_strdup(buf + n + 1);
	return g_strdup(buf);
}

void mfs_migration_status(Mfs *fs, MfsMigStatus *out)
{
	Migration *mig = current(fs);
	uint64_t copied = 0;

	memset(out, 0, sizeof(*out));
	out->eta_s = -1;
	if (!mig) {
		out->state = MFS_MIG_IDLE;
		out->source = mfs_served_dir(fs);
		return;
	}
	mfs_mutex_lock(&mig->lock);
	out->state = mig->state;
	out->paused = mig->paused && mig->state == MFS_MIG_COPYING;
	out->source = g_strdup(mig->source);
	out->target = g_strdup(mig->target);
	out->bytes_total = mig->bytes_total;
	out->stun_ns = mig->stun_ns;
	out->speed_bps = mig->speed_bps;
	out->guest_share = mig->guest_share;
	out->rested_ns = mig->rested_us * 1000;
	out->error = g_strdup(mig->error);
	if (mig->files->len) {
		out->n_files = mig->files->len;
		out->files = g_new0(MfsMigFileStatus, out->n_files);
		for (guint i = 0; i < mig->files->len; i++) {
			MigObject *obj = g_ptr_array_index(mig->files, i);
			MirrorFileStats st;

			mirror_file_stats(obj->mf, &st);
			out->files[i].path = target_relpath(mig, mirror_file_target_fd(obj->mf));
			out->files[i].size = st.size;
			out->files[i].cp_offset = st.cp_offset;
			out->files[i].mirrored = st.mirrored;
			copied += st.bytes_copied;
			out->bytes_cloned += st.bytes_cloned;
			out->mirrored_writes += st.mirrored_writes;
			out->waited_writes += st.waited_writes;
			out->max_wait_ns = MAX(out->max_wait_ns, st.max_wait_ns);
		}
		out->bytes_copied = copied;
	} else {
		out->n_files = mig->n_final;
		out->files = g_new0(MfsMigFileStatus, MAX(mig->n_final, 1));
		for (unsigned i = 0; i < mig->n_final; i++) {
			out->files[i] = mig->final[i];
			out->files[i].path = g_strdup(mig->final[i].path);
		}
		out->bytes_copied = mig->final_counts[0];
		out->mirrored_writes = mig->final_counts[1];
		out->waited_writes = mig->final_counts[2];
		out->max_wait_ns = mig->final_counts[3];
		out->bytes_cloned = mig->final_counts[4];
	}
	if (mig->rate_n >= 2 && state_running(mig->state)) {
		unsigned newest = (mig->rate_n - 1) % RATE_SAMPLES;
		unsigned oldest = mig->rate_n >= RATE_SAMPLES ? mig->rate_n % RATE_SAMPLES : 0;
		gint64 dt = mig->rate_t[newest] - mig->rate_t[oldest];

		/* A copier that has not moved for a while (paused, limited) has no rate. */
		if (g_get_monotonic_time() - mig->rate_t[newest] > 2 * G_USEC_PER_SEC)
			dt = 0;
		if (dt > 0)
			out->rate_bps = (mig->rate_b[newest] - mig->rate_b[oldest]) *
			                G_USEC_PER_SEC / (uint64_t)dt;
		if (out->rate_bps)
			out->eta_s =
			    (double)(out->bytes_total > copied ? out->bytes_total - copied : 0) /
			    (double)out->rate_bps;
	}
	mfs_mutex_unlock(&mig->lock);
}

void mfs_migration_launch(Mfs *fs)
{
	Migration *mig = current(fs);

	if (mig && !mig->thread && state_running(mig->state))
		mig->thread = g_thread_new("mirrorfs-copier", migration_thread, mig);
}

void mfs_migration_shutdown(Mfs *fs)
{
	Migration *mig = current(fs);

	if (!mig)
		return;
	if (!mig->thread) {
		/* Prepared, never launched: undo here what the start made. */
		if (state_running(mig->state))
			migration_abort(mig, MFS_MIG_CANCELLED);
		return;
	}
	mfs_migration_cancel(fs);
	mfs_migration_wait(fs, MFS_MIG_CANCELLED, -1);
}

void mfs_migration_status_clear(MfsMigStatus *st)
{
	for (unsigned i = 0; i < st->n_files; i++)
		g_free(st->files[i].path);
	g_free(st->files);
	g_free(st->source);
	g_free(st->target);
	g_free(st->error);
	memset(st, 0, sizeof(*st));
}

/* --- namespace changes, mirrored ---------------------------------------- */

/*
 * A mirrored change of @dir's entries moved the target directory's times
 * (and the source's, a moment before): give it the source's.  At once,
 * under ns_lock like the change itself, so that no other change comes in
 * between.  The target's root keeps its own, as in the walk.
 */
static void sync_dir_times(Migration *mig, MfsInode *dir)
{
	MigObject *obj;
	struct stat st;

	if (dir == &mig->fs->root)
		return;
	obj = object_find(mig, &dir->key);
	if (!obj || obj->type != S_IFDIR)
		return; /* target_dir() has failed the migration already */
	if (fstatat(dir->fd, "", &st, AT_EMPTY_PATH) < 0) {
		mig_fail(mig, "source: %s", g_strerror(errno));
		return;
	}
	if (copy_times(mig, obj->tfd, S_IFDIR, &st) < 0)
		mig_fail(mig, "target: changing times: %s", g_strerror(errno));
}

void migration_mirror_create(Mfs *fs, MfsInode *parent, const char *name, const struct stat *st,
                             int src_fd)
{
	Migration *mig = fs->mig;
	char path[MFS_PROC_FD_LEN];
	MigObject *obj;
	MirrorFile *mf;
	int dir, src_ro, dst;

	obj = object_find(mig, &(MfsInodeKey){st->st_dev, st->st_ino});
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

		if (!metadata_refused(err) || metadata_lost(mig, dst, what, err) < 0) {
			mig_fail(mig, "target: creating '%s': %s", name, g_strerror(err));
			close(src_ro);
			close(dst);
			return;
		}
	}
	/* Empty on both sides, and not yet visible to anyone: born mirrored. */
	mf = mirror_file_new(src_ro, dst, mig->chunk_size, true);
	mirror_file_mark_mirrored(mf);
	object_add(mig, st, -1, mf);
	root_name_changed(mig, parent, name, true);
	sync_dir_times(mig, parent);
}

void migration_mirror_node(Mfs *fs, MfsInode *parent, const char *name, MfsEntry *e,
                           const MfsNodeSpec *spec)
{
	Migration *mig = fs->mig;
	int tfd, ret, dir = target_dir(mig, parent);

	if (dir < 0)
		return;
	ret = mfs_make_node_at(dir, name, spec);
	if (ret < 0) {
		mig_fail(mig, "target: making '%s': %s", name, g_strerror(-ret));
		return;
	}
	tfd = open_path(dir, name);
	if (tfd < 0 || copy_metadata(mig, e->inode->fd, tfd, &e->st) < 0 ||
	    copy_times(mig, tfd, e->st.st_mode & S_IFMT, &e->st) < 0) {
		mig_fail(mig, "target: making '%s': %s", name, g_strerror(errno));
		if (tfd >= 0)
			close(tfd);
		return;
	}
	object_add(mig, &e->st, tfd, NULL);
	root_name_changed(mig, parent, name, true);
	sync_dir_times(mig, parent);
}

void migration_mirror_link(Mfs *fs, MfsInode *inode, MfsInode *newparent, const char *newname)
{
	Migration *mig = fs->mig;
	MigObject *obj = object_find(mig, &inode->key);
	char path[MFS_PROC_FD_LEN];
	int dir = target_dir(mig, newparent);

	if (dir < 0)
		return;
	if (!obj) {
		mig_fail(mig, "target: link '%s': no counterpart", newname);
		return;
	}
	mfs_proc_fd_path(object_fd(obj), path);
	if (linkat(AT_FDCWD, path, dir, newname, AT_SYMLINK_FOLLOW) < 0) {
		mig_fail(mig, "target: link '%s': %s", newname, g_strerror(errno));
		return;
	}
	root_name_changed(mig, newparent, newname, true);
	sync_dir_times(mig, newparent);
}

void migration_mirror_unlink(Mfs *fs, MfsInode *parent, const char *name, bool is_dir,
                             const struct stat *gone)
{
	int dir = target_dir(fs->mig, parent);

	if (dir < 0)
		return;
	if (unlinkat(dir, name, is_dir ? AT_REMOVEDIR : 0) < 0) {
		mig_fail(fs->mig, "target: removing '%s': %s", name, g_strerror(errno));
		return;
	}
	root_name_changed(fs->mig, parent, name, false);
	if (gone)
		object_forget(fs->mig, gone);
	sync_dir_times(fs->mig, parent);
}

void migration_mirror_rename(Mfs *fs, MfsInode *parent, const char *name, MfsInode *newparent,
                             const char *newname, unsigned int flags, const struct stat *replaced)
{
	Migration *mig = fs->mig;
	int from = target_dir(mig, parent), to = target_dir(mig, newparent);

	if (from < 0 || to < 0)
		return;
	if (renameat2(from, name, to, newname, flags) < 0) {
		mig_fail(mig, "target: renaming '%s': %s", name, g_strerror(errno));
		return;
	}
	if (!(flags & RENAME_EXCHANGE))
		root_name_changed(mig, parent, name, false);
	root_name_changed(mig, newparent, newname, true);
	if (replaced)
		object_forget(mig, replaced);
	sync_dir_times(mig, parent);
	if (newparent != parent)
		sync_dir_times(mig, newparent);
}

void migration_mirror_setattr(Mfs *fs, MfsInode *inode, const struct stat *attr, int to_set)
{
	Migration *mig = fs->mig;
	MigObject *obj = object_find(mig, &inode->key);
	struct stat st;
	int fd;

	if (!to_set)
		return;
	if (!obj) {
		mig_fail(mig, "target: no counterpart for a changed object");
		return;
	}
	fd = object_fd(obj);
	/* Whatever was asked, the target ends with the source's result. */
	if (fstatat(inode->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		mig_fail(mig, "source: %s", g_strerror(errno));
		return;
	}
	if ((to_set & (MFS_SET_MODE | MFS_SET_UID | MFS_SET_GID)) &&
	    copy_metadata(mig, inode->fd, fd, &st) < 0) {
		mig_fail(mig, "target: changing attributes: %s", g_strerror(errno));
		return;
	}
	if ((to_set & (MFS_SET_ATIME | MFS_SET_MTIME | MFS_SET_ATIME_NOW | MFS_SET_MTIME_NOW)) &&
	    copy_times(mig, fd, obj->type, &st) < 0)
		mig_fail(mig, "target: changing times: %s", g_strerror(errno));
}

void migration_mirror_setxattr(Mfs *fs, MfsInode *inode, const char *name, const void *value,
                               size_t size, int flags)
{
	Migration *mig = fs->mig;
	MigObject *obj = object_find(mig, &inode->key);
	char path[MFS_PROC_FD_LEN];

	if (!obj) {
		mig_fail(mig, "target: no counterpart for a changed object");
		return;
	}
	mfs_proc_fd_path(object_fd(obj), path);
	if (setxattr(path, name, value, size, flags) < 0) {
		int err = errno;
		g_autofree char *what = g_strdup_printf("the extended attribute '%s'", name);

		if (!metadata_refused(err) || metadata_lost(mig, object_fd(obj), what, err) < 0)
			mig_fail(mig, "target: setxattr '%s': %s", name, g_strerror(err));
	}
}

void migration_mirror_removexattr(Mfs *fs, MfsInode *inode, const char *name)
{
	Migration *mig = fs->mig;
	MigObject *obj = object_find(mig, &inode->key);
	char path[MFS_PROC_FD_LEN];

	if (!obj) {
		mig_fail(mig, "target: no counterpart for a changed object");
		return;
	}
	mfs_proc_fd_path(object_fd(obj), path);
	if (removexattr(path, name) < 0)
		mig_fail(mig, "target: removexattr '%s': %s", name, g_strerror(errno));
}
