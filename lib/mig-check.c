/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The checks before a start, which change nothing when they refuse: the
 * target (a writable directory, not the source, neither inside it nor
 * containing it by any road, not served by another daemon, free of the
 * source's names unless overwrite, with room for the data).  The
 * options' rules are mig-options.c's.  The target's journal tells a fresh
 * target from our own partial copy.
 */
#define _GNU_SOURCE
#include "mig-options.h"
#include "migration-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/statvfs.h>

bool mig_only_holds(char **only, const char *rel)
{
	if (!only)
		return true;
	for (char **n = only; *n; n++) {
		size_t len = strlen(*n);

		if (strncmp(rel, *n, len) == 0 && (rel[len] == '\0' || rel[len] == '/'))
			return true;
	}
	return false;
}

/* The first of @only's entries (names at the root) that @other names too, or NULL. */
static const char *shared_entry(char **only, char **other)
{
	for (char **n = only; *n; n++)
		if (g_strv_contains((const char *const *)other, *n))
			return *n;
	return NULL;
}

static bool is_dir_or_ancestor(int dir_fd, const struct stat *want);

/*
 * Is one of the directories @a and @b the other or inside it, by identity
 * (a bind mount or a symlink hides no road)?  No when either is missing:
 * the target's own checks say why.
 */
static bool dirs_nest(const char *a, const char *b)
{
	int fa = open(a, O_PATH | O_DIRECTORY | O_CLOEXEC);
	int fb = open(b, O_PATH | O_DIRECTORY | O_CLOEXEC);
	struct stat sa, sb;
	bool nest = fa >= 0 && fb >= 0 && fstat(fa, &sa) == 0 && fstat(fb, &sb) == 0 &&
	            (is_dir_or_ancestor(fa, &sb) || is_dir_or_ancestor(fb, &sa));

	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
	return nest;
}

int mig_check_beside_jobs(Mfs *fs, Migration *mig, const char *target, char **error)
{
	g_autoptr(GPtrArray) jobs = mfs_jobs_frozen(fs);
	unsigned live = 0;

	for (guint i = 0; i < jobs->len; i++) {
		Migration *other = g_ptr_array_index(jobs, i);
		const char *shared;

		if (!mig_state_live(mig_state(other)))
			continue;
		live++;
		if (!mig->only || !other->only) {
			*error = g_strdup_printf(
			    "a migration to '%s' is already running (job %u): a migration of the "
			    "whole tree runs alone%s",
			    other->target, other->id,
			    mig->only ? ""
			              : "; several run at once only with 'only', each on its own "
			                "entries");
			return -EBUSY;
		}
		shared = shared_entry(mig->only, other->only);
		if (shared) {
			*error = g_strdup_printf("'%s' is being moved already, by job %u (to '%s')",
			                         shared, other->id, other->target);
			return -EBUSY;
		}
		if (dirs_nest(target, other->target)) {
			*error = g_strdup_printf("target '%s': job %u moves into '%s': each job "
			                         "needs a target of its own",
			                         target, other->id, other->target);
			return -EBUSY;
		}
	}
	if (live >= MFS_MAX_JOBS) {
		*error = g_strdup_printf(
		    "%u migrations are running: the most one mount runs at once", live);
		return -EBUSY;
	}
	return 0;
}

int mig_check_only(Mfs *fs, Migration *mig, char **error)
{
	const char *placed = mfs_a_placed_name_frozen(fs);

	if (!mig->only && placed) {
		*error =
		    g_strdup_printf("'%s' and maybe more of the tree were moved by per-VM jobs "
		                    "(to %s): move the rest with 'only' too",
		                    placed, mfs_placed_dir_frozen(fs, placed));
		return -EXDEV;
	}
	for (char **n = mig->only; n && *n; n++) {
		g_autofree char *name = NULL;
		struct stat st;
		int ret = mfs_mig_only_name(*n, &name, error);

		if (ret < 0)
			return ret;
		if (strcmp(name, *n) != 0) {
			*error = g_strdup_printf("'%s': give the name alone ('%s')", *n, name);
			return -EINVAL;
		}
		if (g_strv_contains((const char *const *)(n + 1), *n)) {
			*error = g_strdup_printf("'%s' is given twice", *n);
			return -EINVAL;
		}
		if (mfs_placed_dir_frozen(fs, *n)) {
			*error = g_strdup_printf("'%s' was moved to %s already", *n,
			                         mfs_placed_dir_frozen(fs, *n));
			return -EALREADY;
		}
		if (fstatat(mfs_root_fd(fs), *n, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			ret = -errno;
			*error = g_strdup_printf("'%s': %s", *n, g_strerror(errno));
			return ret;
		}
	}
	if (mig->only && !mig->only[0]) {
		*error = g_strdup("'only' names nothing to move");
		return -EINVAL;
	}
	return 0;
}

/* Data bytes below @dir_fd (allocated, capped at each file's size), of @only's entries at its top.
 */
static uint64_t tree_data_bytes_of(int dir_fd, char **only);

static uint64_t tree_data_bytes(int dir_fd)
{
	return tree_data_bytes_of(dir_fd, NULL);
}

static uint64_t tree_data_bytes_of(int dir_fd, char **only)
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

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    !mig_only_holds(only, de->d_name))
			continue;
		if (fstatat(dirfd(dp), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISREG(st.st_mode)) {
			total += MIN((uint64_t)st.st_blocks * 512, (uint64_t)st.st_size);
		} else if (S_ISDIR(st.st_mode)) {
			int sub = mig_open_path(dirfd(dp), de->d_name);

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
		sub = mig_open_path(dirfd(dp), de->d_name);
		if (sub >= 0) {
			found = tree_holds_dir(sub, want, path, where);
			close(sub);
		}
	}
	closedir(dp);
	return found;
}

/*
 * The entries per-VM jobs moved are the served tree too: a target that is
 * one of them, or lies inside one, would put the files it moves there
 * under a second name of the mount, one of them not mirrored.
 */
static int check_target_not_placed(Mfs *fs, const MfsMigOptions *opts, const struct stat *tst,
                                   char **error)
{
	g_auto(GStrv) dirs = NULL;
	g_auto(GStrv) names = mfs_placements_frozen(fs, &dirs);
	int ret = 0;

	for (guint i = 0; names[i] && ret == 0; i++) {
		g_autofree char *entry = g_build_filename(dirs[i], names[i], NULL);
		g_autofree char *where = NULL;
		int fd = open(entry, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		struct stat st;

		if (fd < 0)
			continue; /* not a directory: nothing lies inside it */
		if ((fstat(fd, &st) == 0 && same_object(&st, tst)) ||
		    tree_holds_dir(fd, tst, NULL, &where)) {
			*error = g_strdup_printf("target '%s' lies inside '%s', which the mount "
			                         "serves from %s (moved there by a per-VM job)",
			                         opts->target, names[i], dirs[i]);
			ret = -EINVAL;
		}
		close(fd);
	}
	return ret;
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
	dev_t mount_dev;

	if (mfs_mount_dev(fs, &mount_dev) && tst->st_dev == mount_dev) {
		*error = g_strdup_printf("target '%s' leads into this mirrorfs mount itself; the "
		                         "daemon would write through itself",
		                         opts->target);
		return -EINVAL;
	}
	if (is_dir_or_ancestor(mfs_root_fd(fs), tst)) {
		*error = g_strdup_printf("target '%s' is the source '%s' or contains it",
		                         opts->target, mig->source);
		return -EINVAL;
	}
	if (tree_holds_dir(mfs_root_fd(fs), tst, NULL, &where)) {
		*error = g_strdup_printf("target '%s' is the directory '%s' of the source '%s', "
		                         "reached by another path",
		                         opts->target, where, mig->source);
		return -EINVAL;
	}
	return check_target_not_placed(fs, opts, tst, error);
}

/*
 * The names in the target's root that are not the source's: the
 * operator's, which a restart onto the partial copy must leave alone.
 * None in the old home of a migration back: all of it was the source's.
 */
static int operator_names(Mfs *fs, Migration *mig, char ***out)
{
	g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
	int fd = -1;
	DIR *dp = NULL;
	struct dirent *de;
	int ret = 0;

	if (!mig->target_home) {
		fd = openat(mig->dst_root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		dp = fd >= 0 ? fdopendir(fd) : NULL;
	}
	if (!mig->target_home && !dp) {
		ret = -errno;
		if (fd >= 0)
			close(fd);
		return ret;
	}
	while (dp && (errno = 0, de = readdir(dp))) {
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    journal_is_reserved_name(de->d_name))
			continue;
		/* A per-VM job owns its entries only: the rest is someone else's. */
		if ((mig->only && !mig_only_holds(mig->only, de->d_name)) ||
		    (fstatat(mfs_root_fd(fs), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 &&
		     errno == ENOENT))
			g_ptr_array_add(names, g_strdup(de->d_name));
	}
	if (dp && errno)
		ret = -errno;
	if (dp)
		closedir(dp);
	g_ptr_array_add(names, NULL);
	*out = (char **)g_ptr_array_steal(names, NULL);
	return ret;
}

/*
 * Check the target before anything is written: *@fresh says whether it is
 * new to us, or holds the partial files of an earlier run of this same
 * migration (its journal says so), which are then reused.
 */
int mig_check_target(Mfs *fs, Migration *mig, const MfsMigOptions *opts, bool *fresh, char **error)
{
	g_auto(Journal) j = {0};
	g_autoptr(GPtrArray) jobs = mfs_jobs_frozen(fs);
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
	if (fstat(mfs_root_fd(fs), &sst) == 0 && sst.st_dev == tst.st_dev &&
	    sst.st_ino == tst.st_ino) {
		*error = g_strdup_printf("target '%s' is the source", opts->target);
		return -EINVAL;
	}
	if (mfs_path_within(mig->target, mig->source)) {
		*error = g_strdup_printf("target '%s' lies inside the source '%s'", opts->target,
		                         mig->source);
		return -EINVAL;
	}
	if (mfs_path_within(mig->source, mig->target)) {
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
	for (guint i = 0; i < jobs->len; i++) {
		Migration *ended = g_ptr_array_index(jobs, i);

		if (!mig_state_live(mig_state(ended)) && ended->lock_fd >= 0) {
			close(ended->lock_fd);
			ended->lock_fd = -1;
		}
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
		if (!*fresh)
			mig->target_keep = g_steal_pointer(&j.keep);
	}
	if (*fresh) {
		ret = operator_names(fs, mig, &mig->target_keep);
		if (ret < 0) {
			*error = g_strdup_printf("target '%s': reading it: %s", opts->target,
			                         g_strerror(-ret));
			return ret;
		}
	}

	/* Names the source has at its root must be free in the target. */
	if (*fresh && !opts->overwrite) {
		fd = openat(mfs_root_fd(fs), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		dp = fd >= 0 ? fdopendir(fd) : NULL;
		while (dp && (de = readdir(dp))) {
			struct stat st;

			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
			    journal_is_reserved_name(de->d_name) ||
			    !mig_only_holds(mig->only, de->d_name))
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
	need = tree_data_bytes_of(mfs_root_fd(fs), mig->only);
	if (!*fresh)
		need -= MIN(need, tree_data_bytes_of(mig->dst_root_fd, mig->only));
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
 * Abandoning the copy: remove its checkpoints and the target's copying
 * journal, or, in the old
 * home of a migration back, write back the record it replaced, which sends
 * a daemon started there to our source, where the tree still lives.
 */
void mig_target_journal_undo(Migration *mig)
{
	int ret;

	/* First: a copying journal left without them only makes a restart copy from 0. */
	mig_checkpoints_remove(mig);
	if (!mig->target_home) {
		journal_remove(mig->dst_root_fd);
		return;
	}
	ret = journal_write(
	    mig->dst_root_fd,
	    &(Journal){.state = "switched", .source = mig->target, .target = mig->source}, true);
	if (ret == 0)
		ret = journal_sync_dir(mig->dst_root_fd);
	if (ret < 0)
		g_warning("migration %s -> %s: cannot restore the journal of '%s', which must send "
		          "a daemon started there to '%s': %s",
		          mig->source, mig->target, mig->target, mig->source, g_strerror(-ret));
}
