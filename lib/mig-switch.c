/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The switch: the target becomes authoritative in a stun of milliseconds.
 *
 * Flush the target; stun (no operation but reads runs); flush again; open
 * every target counterpart an inode or open file will need (any failure
 * here aborts, still on the source); write the source's journal, which
 * makes the target authoritative (the job is COMMITTED); repoint every
 * descriptor; resume.  A crash before the journal is durable leaves the
 * source authoritative (it had every write first); after, the target
 * (flushed, and nothing written since).
 */
#define _GNU_SOURCE
#include "migration-int.h"

#include <dirent.h>
#include <linux/magic.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

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
typedef MfsRepoint InodeSwap; /* fd -1: the inode stays on the source */

typedef struct {
	MfsFile *file;
	int fd;
} FileSwap;

static int target_path_fd(Migration *mig, MfsInode *inode)
{
	char path[MFS_PROC_FD_LEN];
	MfsInodeKey key;
	MigObject *obj;
	int fd;

	if (inode == mfs_root(mig->fs))
		return dup(mig->dst_root_fd);
	key = mfs_inode_key(inode);
	obj = mig_object_find(mig, &key);
	if (!obj) {
		errno = ENOENT;
		return -1;
	}
	mfs_proc_fd_path(mig_object_fd(obj), path);
	fd = open(path, O_PATH | O_CLOEXEC);
	return fd;
}

static bool object_moved(Migration *mig, MfsInode *inode)
{
	MfsInodeKey key = mfs_inode_key(inode);

	return mig_object_find(mig, &key) != NULL;
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

	if (mfs_inode_type(inode) == S_IFREG ||
	    fstatat(mfs_inode_fd(inode), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -1;
	spec.mode = S_ISDIR(st.st_mode) ? S_IFDIR | 0700 : st.st_mode;
	spec.rdev = st.st_rdev;
	g_snprintf(name, sizeof(name), ".mirrorfs-standin.%ju", (uintmax_t)st.st_ino);
	if (mfs_make_node_at(mig->dst_root_fd, name, &spec) < 0)
		return -1;
	fd = mig_open_path(mig->dst_root_fd, name);
	/* Its owner, mode and times, as best it can: it has nothing else. */
	if (fd >= 0 && mig_copy_metadata(mig, mfs_inode_fd(inode), fd, &st) == 0)
		mig_copy_times(mig, fd, st.st_mode & S_IFMT, &st);
	unlinkat(mig->dst_root_fd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
	return fd;
}

static int prepare_inode_swap(Migration *mig, InodeSwap *s)
{
	struct stat st;

	/* A per-VM job moves its entries' objects only: the root and the rest stay. */
	if (mig->only && (s->inode == mfs_root(mig->fs) || !object_moved(mig, s->inode)))
		return 0;
	s->fd = target_path_fd(mig, s->inode);
	if (s->fd < 0 && errno == ENOENT && mig_source_object_gone(s->inode)) {
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

/* @inode: the swap prepared for the file's inode, or NULL if it has none. */
static int prepare_file_swap(FileSwap *s, const InodeSwap *inode)
{
	int flags =
	    (mfs_file_open_flags(s->file) & ~(O_NOFOLLOW | O_APPEND | O_CREAT | O_EXCL | O_TRUNC)) |
	    O_CLOEXEC;
	char path[MFS_PROC_FD_LEN];

	if (!inode)
		return -ENOENT;
	if (inode->fd < 0)
		return 0; /* stays on the source, and so do its files */
	mfs_proc_fd_path(inode->fd, path);
	s->fd = open(path, flags);
	/* A target without O_DIRECT (tmpfs) still serves the file. */
	if (s->fd < 0 && errno == EINVAL && (flags & O_DIRECT))
		s->fd = open(path, flags & ~O_DIRECT);
	return s->fd < 0 ? -errno : 0;
}

/*
 * The stun freezes both tables: everything that adds to them or removes
 * from them (lookup, forget, open, create, release) passes the gate.  So
 * the system calls are made without their locks.
 */
static int prepare_swaps(Migration *mig, GArray *inodes, GArray *files)
{
	Mfs *fs = mig->fs;
	g_autoptr(GPtrArray) known = mfs_inodes_stunned(fs);
	g_autoptr(GPtrArray) open_files = mfs_files_stunned(fs);
	g_autoptr(GHashTable) index = g_hash_table_new(NULL, NULL); /* MfsInode -> swap + 1 */
	int ret = 0;

	for (guint i = 0; i < known->len; i++)
		g_array_append_val(inodes,
		                   ((InodeSwap){.inode = g_ptr_array_index(known, i), .fd = -1}));
	for (guint i = 0; i < open_files->len; i++)
		g_array_append_val(
		    files, ((FileSwap){.file = g_ptr_array_index(open_files, i), .fd = -1}));

	for (guint i = 0; i < inodes->len && ret == 0; i++) {
		InodeSwap *is = &g_array_index(inodes, InodeSwap, i);

		ret = prepare_inode_swap(mig, is);
		g_hash_table_insert(index, is->inode, GUINT_TO_POINTER(i + 1));
	}
	for (guint i = 0; i < files->len && ret == 0; i++) {
		FileSwap *fsw = &g_array_index(files, FileSwap, i);
		guint at = GPOINTER_TO_UINT(g_hash_table_lookup(index, mfs_file_inode(fsw->file)));

		ret = prepare_file_swap(fsw, at ? &g_array_index(inodes, InodeSwap, at - 1) : NULL);
	}
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
 * in old_root_fd for mig_delete_source().
 */
static void apply_swaps(Migration *mig, GArray *inodes, GArray *files)
{
	Mfs *fs = mig->fs;
	gint64 deadline;

	/* Before the repoint, which gives the moved inodes the target's keys. */
	mig_attach_mirrors_stunned(fs, mig, false);
	mfs_unobserve_stunned(fs, mig);
	mfs_repoint_inodes_stunned(fs, (MfsRepoint *)inodes->data, inodes->len);
	/* Each repointed entry holds the descriptor its inode had. */
	for (guint i = 0; i < inodes->len; i++) {
		InodeSwap *s = &g_array_index(inodes, InodeSwap, i);

		if (s->fd < 0)
			continue;
		if (s->inode == mfs_root(fs))
			mig->old_root_fd = s->fd;
		else
			close(s->fd);
		s->fd = -1;
	}

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
	/* A per-VM job's target is not the tree's home: its entries were placed (record_switch()).
	 */
	if (!mig->only) {
		mfs_moved_stunned(fs, mig->target, mig->lock_fd);
		mig->lock_fd = -1;
	}
}

/*
 * The point of no return, in the source's root: for the whole tree, its
 * journal says "switched" (over the job's record); for a per-VM job, the
 * placements record names its entries' new home, then the job's record
 * goes (a crash between the two leaves a record that the next start
 * finds done: mig-resume.c).
 */
static int record_switch(Migration *mig)
{
	Mfs *fs = mig->fs;
	int ret;

	if (!mig->only)
		return journal_write(
		    mfs_root_fd(fs),
		    &(Journal){.state = "switched", .source = mig->source, .target = mig->target},
		    true);
	ret = mfs_place_stunned(fs, mig->only, mig->target, mig->dst_root_fd);
	mfs_test_crash_point("placed");
	if (ret == 0)
		journal_remove_named(mfs_root_fd(fs), mig->record);
	return ret;
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

int mig_switch(Migration *mig)
{
	Mfs *fs = mig->fs;
	g_autoptr(GArray) inodes = g_array_new(FALSE, FALSE, sizeof(InodeSwap));
	g_autoptr(GArray) files = g_array_new(FALSE, FALSE, sizeof(FileSwap));
	gint64 t0;
	int ret, sync_ret, fs_fd;

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
	mig_hook(mig, "stunning");
	mfs_freeze_namespace(fs);
	t0 = g_get_monotonic_time();
	mfs_stun(fs);
	mig_hook(mig, "stunned");
	crash_test_pause(mig, "stunned");
	/* 3. Final flush, the counterparts, then the journal: the point of no return. */
	ret = flush_targets(mig, false, fs_fd);
	if (ret < 0) {
		mig_fail(mig, "flushing the target: %s", g_strerror(-ret));
		goto resume;
	}
	/*
	 * Every write is done now: one that failed on the target since the
	 * decision to switch (a full disk) stopped the job, and must stop the
	 * switch, or the target would lack what it missed.
	 */
	if (mig_state(mig) != MIG_SWITCHING) {
		ret = -EIO;
		goto resume;
	}
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
	/*
	 * In the job record's place, under its lock: a speed change that read
	 * the record just before must not write "migrating" over "switched",
	 * and none may look at the source's root once the swaps begin.
	 */
	mfs_mutex_lock(&mig->job_lock);
	ret = record_switch(mig);
	if (ret == 0)
		mig->job_forgotten = true;
	mfs_mutex_unlock(&mig->job_lock);
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
	mig_commit(mig);
	mfs_test_crash_point("journal-renamed");
	sync_ret = journal_sync_dir(mfs_root_fd(fs));
	if (sync_ret < 0) {
		g_warning("migration %s -> %s: the switch is made, but flushing the source "
		          "directory that records it failed: %s; the source is kept",
		          mig->source, mig->target, g_strerror(-sync_ret));
		mig->keep_source = true;
	}
	mig_hook(mig, "journaled");
	crash_test_pause(mig, "journaled");
	/* 4. Every descriptor to the target. */
	apply_swaps(mig, inodes, files);
	mfs_test_crash_point("swapped");
resume:
	/* 5. Resume. */
	mfs_unstun(fs);
	mfs_thaw_namespace(fs);
	close(fs_fd);
	if (ret == 0) {
		mfs_mutex_lock(&mig->lock);
		mig->stun_ns = (uint64_t)(g_get_monotonic_time() - t0) * 1000;
		mfs_mutex_unlock(&mig->lock);
		mfs_test_crash_point("resumed-journal-left");
		journal_remove(mig->dst_root_fd);
		mig_checkpoints_remove(mig);
		mig_hook(mig, "resumed");
	}
	return ret;
}

void mig_delete_source(Migration *mig)
{
	int fd;

	/* A per-VM job's entries only: the source's root still serves the rest. */
	if (mig->only) {
		for (char **n = mig->only; *n; n++) {
			int ret = mig_remove_tree_at(mfs_root_fd(mig->fs), *n);

			if (ret < 0)
				g_warning(
				    "migration %s -> %s: cannot delete '%s' from the source: %s",
				    mig->source, mig->target, *n, g_strerror(-ret));
		}
		return;
	}
	fd = openat(mig->old_root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
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
		ret = mig_remove_tree_at(dirfd(dp), de->d_name);
		mfs_test_crash_point("deleting-source");
		if (ret < 0)
			g_warning("migration %s -> %s: cannot delete '%s' from the source: %s",
			          mig->source, mig->target, de->d_name, g_strerror(-ret));
	}
	closedir(dp);
}
