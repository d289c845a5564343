/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Placements: entries of the root served from another directory.
 *
 * A per-VM job (a migration started with "only") moves some entries of
 * the root, a VM's image or its directory, and leaves the rest.  After
 * its switch the tree is served from two places or more: the source
 * root, and for each moved entry the directory it moved to, under the
 * same name.  Only the root has placements, so only an operation on a
 * name of the root asks where that name lives (mfs_entry_dir_fd());
 * below a moved entry every inode already holds a descriptor in its new
 * home.  The record of them (journal.h's placements) lives in the source
 * root, written durably before any descriptor moves, so that a restart
 * serves each entry from where it went.
 *
 * The table changes only stunned: inside the gate it is read without a
 * lock.
 */
#define _GNU_SOURCE
#include "mfs-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
	char *dir; /* where the entry lives now */
	int fd;    /* O_PATH of dir */
} MfsPlaced;

static void placed_free(gpointer p)
{
	MfsPlaced *pl = p;

	close(pl->fd);
	g_free(pl->dir);
	g_free(pl);
}

static void place(Mfs *fs, const char *name, char *dir, int fd)
{
	MfsPlaced *pl = g_new0(MfsPlaced, 1);

	pl->dir = dir;
	pl->fd = fd;
	if (!fs->placed)
		fs->placed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, placed_free);
	g_hash_table_replace(fs->placed, g_strdup(name), pl);
}

/*
 * A per-VM job's switch records its placements, then removes its records
 * in the target (the "copying" journal, checkpoints, intent log).  A
 * crash in between leaves them in a directory that is now an entry's
 * home: a later job into it would take them for a partial copy of its
 * own.  They go, unless the source records a job under way into @dir,
 * whose resume needs them.
 */
void mfs_placement_home_settle(Mfs *fs, const char *dir, int dir_fd)
{
	static const char *const leftovers[] = {MFS_CHECKPOINT_NAME, MFS_INTENT_LOG_NAME,
	                                        MFS_JOURNAL_NAME};
	g_autofree char *record = journal_job_record_name(dir);
	g_auto(Journal) home = {0};
	g_auto(Journal) ours = {0};
	g_auto(Journal) old = {0};

	if (journal_read(dir_fd, &home) < 0 || strcmp(home.state, "copying") ||
	    strcmp(home.source, fs->dir))
		return;
	/* Its record, or one an older daemon kept in the journal. */
	if (journal_read_named(fs->root.fd, record, &ours) == 0 &&
	    !strcmp(ours.state, "migrating") && !strcmp(ours.target, dir))
		return;
	if (journal_read(fs->root.fd, &old) == 0 && !strcmp(old.state, "migrating") &&
	    !strcmp(old.target, dir))
		return;
	g_message("%s: the records of a per-VM job that switched are left there: removed", dir);
	for (size_t i = 0; i < G_N_ELEMENTS(leftovers); i++)
		unlinkat(dir_fd, leftovers[i], 0);
}

int mfs_placements_load(Mfs *fs, char **error)
{
	g_auto(GStrv) names = NULL, dirs = NULL;
	int ret = placements_read(fs->root.fd, &names, &dirs);

	if (ret == -ENOENT)
		return 0;
	if (ret < 0) {
		if (error)
			*error = g_strdup_printf("%s/%s cannot be read (%s); it says where "
			                         "some of the files are: repair it",
			                         fs->dir, MFS_PLACEMENTS_NAME, g_strerror(-ret));
		return ret;
	}
	for (guint i = 0; names[i]; i++) {
		int fd = open(dirs[i], O_PATH | O_DIRECTORY | O_CLOEXEC);

		if (fd < 0) {
			ret = -errno;
			if (error)
				*error = g_strdup_printf("%s/%s says '%s' moved to %s, which is "
				                         "missing: %s",
				                         fs->dir, MFS_PLACEMENTS_NAME, names[i],
				                         dirs[i], g_strerror(-ret));
			return ret;
		}
		place(fs, names[i], g_strdup(dirs[i]), fd);
		mfs_placement_home_settle(fs, dirs[i], fd);
	}
	return 0;
}

void mfs_placements_free(Mfs *fs)
{
	g_clear_pointer(&fs->placed, g_hash_table_destroy);
}

int mfs_entry_dir_fd(Mfs *fs, MfsInode *parent, const char *name)
{
	MfsPlaced *pl;

	if (parent != &fs->root || !fs->placed)
		return parent->fd;
	pl = g_hash_table_lookup(fs->placed, name);
	return pl ? pl->fd : parent->fd;
}

const char *mfs_placed_dir_frozen(Mfs *fs, const char *name)
{
	MfsPlaced *pl = fs->placed ? g_hash_table_lookup(fs->placed, name) : NULL;

	return pl ? pl->dir : NULL;
}

const char *mfs_a_placed_name_frozen(Mfs *fs)
{
	GHashTableIter it;
	gpointer key;

	if (!fs->placed)
		return NULL;
	g_hash_table_iter_init(&it, fs->placed);
	return g_hash_table_iter_next(&it, &key, NULL) ? key : NULL;
}

char **mfs_placements(Mfs *fs, char ***dirs)
{
	char **names;

	/* The switch changes the table with the namespace frozen. */
	mfs_rwlock_reader_lock(&fs->ns_lock);
	names = mfs_placements_frozen(fs, dirs);
	mfs_rwlock_reader_unlock(&fs->ns_lock);
	return names;
}

char **mfs_placements_frozen(Mfs *fs, char ***dirs)
{
	GPtrArray *n = g_ptr_array_new(), *d = g_ptr_array_new();
	GHashTableIter it;
	gpointer key, value;

	if (fs->placed) {
		g_hash_table_iter_init(&it, fs->placed);
		while (g_hash_table_iter_next(&it, &key, &value)) {
			g_ptr_array_add(n, g_strdup(key));
			g_ptr_array_add(d, g_strdup(((MfsPlaced *)value)->dir));
		}
	}
	g_ptr_array_add(n, NULL);
	g_ptr_array_add(d, NULL);
	if (dirs)
		*dirs = (char **)g_ptr_array_free(d, FALSE);
	else
		g_strfreev((char **)g_ptr_array_free(d, FALSE));
	return (char **)g_ptr_array_free(n, FALSE);
}

bool mfs_placed_in(Mfs *fs, char *const *names, const char *dir)
{
	bool all = true;

	mfs_rwlock_reader_lock(&fs->ns_lock);
	for (char *const *n = names; *n && all; n++) {
		MfsPlaced *pl = fs->placed ? g_hash_table_lookup(fs->placed, *n) : NULL;

		all = pl && strcmp(pl->dir, dir) == 0;
	}
	mfs_rwlock_reader_unlock(&fs->ns_lock);
	return all;
}

int mfs_place_stunned(Mfs *fs, char *const *names, const char *dir, int dir_fd)
{
	g_autoptr(GPtrArray) all_names = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) all_dirs = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GArray) fds = g_array_new(FALSE, FALSE, sizeof(int));
	GHashTableIter it;
	gpointer key, value;
	int ret = 0;

	/* Every descriptor before the record: past the record nothing may fail. */
	for (char *const *n = names; *n && ret == 0; n++) {
		int fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);

		if (fd < 0)
			ret = -errno;
		else
			g_array_append_val(fds, fd);
	}
	if (fs->placed) {
		g_hash_table_iter_init(&it, fs->placed);
		while (g_hash_table_iter_next(&it, &key, &value)) {
			if (g_strv_contains((const char *const *)names, key))
				continue;
			g_ptr_array_add(all_names, g_strdup(key));
			g_ptr_array_add(all_dirs, g_strdup(((MfsPlaced *)value)->dir));
		}
	}
	for (char *const *n = names; *n; n++) {
		g_ptr_array_add(all_names, g_strdup(*n));
		g_ptr_array_add(all_dirs, g_strdup(dir));
	}
	g_ptr_array_add(all_names, NULL);
	g_ptr_array_add(all_dirs, NULL);
	/* The record is what a restart follows. */
	if (ret == 0)
		ret = placements_write(fs->root.fd, (char *const *)all_names->pdata,
		                       (char *const *)all_dirs->pdata);
	for (guint i = 0; i < fds->len; i++) {
		if (ret == 0)
			place(fs, names[i], g_strdup(dir), g_array_index(fds, int, i));
		else
			close(g_array_index(fds, int, i));
	}
	return ret;
}

static void listing_add(GArray *listing, const char *name, ino_t ino, unsigned char type)
{
	MfsListed e = {.name = g_strdup(name), .ino = ino, .type = type};

	g_array_append_val(listing, e);
}

static void listed_clear(gpointer p)
{
	g_free(((MfsListed *)p)->name);
}

GArray *mfs_root_listing_inside(Mfs *fs, DIR *dp, int *err)
{
	GArray *listing;
	GHashTableIter it;
	gpointer key, value;
	struct dirent *de;

	*err = 0;
	if (!fs->placed)
		return NULL;
	listing = g_array_new(FALSE, FALSE, sizeof(MfsListed));
	g_array_set_clear_func(listing, listed_clear);
	/* The source's names but the journal's and the placed ones, */
	for (errno = 0; (de = readdir(dp)); errno = 0) {
		if (journal_is_reserved_name(de->d_name) ||
		    g_hash_table_contains(fs->placed, de->d_name))
			continue;
		listing_add(listing, de->d_name, de->d_ino, de->d_type);
	}
	if (errno) {
		*err = -errno;
		g_array_free(listing, TRUE);
		return NULL;
	}
	/* then each placed one that its home still holds. */
	g_hash_table_iter_init(&it, fs->placed);
	while (g_hash_table_iter_next(&it, &key, &value)) {
		struct stat st;

		if (fstatat(((MfsPlaced *)value)->fd, key, &st, AT_SYMLINK_NOFOLLOW) == 0)
			listing_add(listing, key, st.st_ino, IFTODT(st.st_mode));
	}
	return listing;
}

int mfs_placements_sync_inside(Mfs *fs, bool datasync)
{
	g_autoptr(GHashTable) done = NULL;
	GHashTableIter it;
	gpointer value;
	int ret = 0;

	if (!fs->placed)
		return 0;
	/* Several entries share a home: each directory once. */
	done = g_hash_table_new(g_str_hash, g_str_equal);
	g_hash_table_iter_init(&it, fs->placed);
	while (ret == 0 && g_hash_table_iter_next(&it, NULL, &value)) {
		MfsPlaced *pl = value;
		int fd;

		if (!g_hash_table_add(done, pl->dir))
			continue;
		fd = openat(pl->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		ret = fd < 0 || (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? -errno : 0;
		if (fd >= 0)
			close(fd);
	}
	return ret;
}
