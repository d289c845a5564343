/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Regression tests of the engine for the integrity defects of issue 17:
 * operations around the write path that a guest can make in any phase of
 * a migration (open with O_TRUNC, mknod, release and forget during the
 * switch, namespace changes just after it, ...).  Each forces its
 * interleaving at a migration hook and ends with a full compare of the
 * source and the target.
 */
#define _GNU_SOURCE
#include "migration-fixture.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

/* Run @fn from the migration thread the first time it reaches @point. */
typedef struct {
	const char *point;
	void (*fn)(Mfs *hfs, void *arg);
	void *arg;
	bool reached; /* the migration thread's */
	gint done;    /* atomic: @fn has returned */
} AtPoint;

static void at_point_hook(Mfs *hfs, const char *point, void *opaque)
{
	AtPoint *at = opaque;

	if (at->reached || strcmp(point, at->point) != 0)
		return;
	at->reached = true;
	at->fn(hfs, at->arg);
	g_atomic_int_set(&at->done, 1);
}

static void start_at(AtPoint *at, bool manual)
{
	start(&(MfsMigOptions){.hook = at_point_hook, .hook_opaque = at, .manual_switch = manual});
}

/* Wait until the hook has run; the "mirrored" one runs after the state is set. */
static void wait_done(AtPoint *at)
{
	gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;

	while (!g_atomic_int_get(&at->done) && g_get_monotonic_time() < deadline)
		g_usleep(1000);
	ck_assert_msg(g_atomic_int_get(&at->done), "the hook at '%s' never ran", at->point);
}

static void switch_and_compare(AtPoint *at)
{
	MfsMigStatus st;

	wait_for(MFS_MIG_MIRRORED);
	wait_done(at);
	assert_trees_equal(src, dst);
	ck_assert_int_eq(mfs_migration_switch(fs, NULL), 0);
	wait_for(MFS_MIG_SWITCHED);
	assert_trees_equal(src, dst);
	mfs_migration_status(fs, NULL, &st);
	ck_assert_msg(st.error == NULL, "switched with an error: %s", st.error);
	mfs_migration_status_clear(&st);
}

/* --- open(O_TRUNC) and create over an existing name ----------------------- */

static void truncate_by_open(Mfs *hfs, void *arg)
{
	MfsEntry e;
	MfsFile *f;

	(void)arg;
	ck_assert_int_eq(mfs_lookup(hfs, mfs_root(hfs), "disk.img", &e), 0);
	ck_assert_int_eq(mfs_open(hfs, e.inode, O_WRONLY | O_TRUNC, &f), 0);
	ck_assert_int_eq(mfs_file_write(hfs, f, "new image", 9, 3 * CHUNK), 9);
	mfs_release(hfs, f);
	mfs_forget(hfs, e.inode, 1);
}

static void truncate_by_create(Mfs *hfs, void *arg)
{
	MfsEntry e;
	MfsFile *f;

	(void)arg;
	ck_assert_int_eq(
	    mfs_create(hfs, mfs_root(hfs), "disk.img", 0644, O_WRONLY | O_TRUNC, &cred, &e, &f), 0);
	ck_assert_int_eq(mfs_file_write(hfs, f, "created over", 12, 3 * CHUNK), 12);
	mfs_release(hfs, f);
	mfs_forget(hfs, e.inode, 1);
}

/*
 * While copying (the cursor one chunk in) and once mirrored, by open and
 * by create; the new image leaves a hole where the old one had data
 * below the cursor, so a target that was not truncated differs.
 */
START_TEST(test_open_trunc_is_mirrored)
{
	static const char *points[] = {"chunk", "mirrored"};
	void (*fns[])(Mfs *, void *) = {truncate_by_open, truncate_by_create};
	AtPoint at = {.point = points[_i % 2], .fn = fns[_i / 2]};

	start_at(&at, true);
	switch_and_compare(&at);
}
END_TEST

/* --- mknod of a regular file ---------------------------------------------- */

static void mknod_and_write(Mfs *hfs, void *arg)
{
	MfsEntry e;
	MfsFile *f;

	(void)arg;
	ck_assert_int_eq(mfs_mknod(hfs, mfs_root(hfs), "made.img", S_IFREG | 0640, 0, &cred, &e),
	                 0);
	ck_assert_int_eq(mfs_open(hfs, e.inode, O_RDWR, &f), 0);
	ck_assert_int_eq(mfs_file_write(hfs, f, "mknod data", 10, 4096), 10);
	mfs_release(hfs, f);
	mfs_forget(hfs, e.inode, 1);
}

START_TEST(test_mknod_regular_file_is_mirrored)
{
	AtPoint at = {.point = _i ? "mirrored" : "chunk", .fn = mknod_and_write};

	start_at(&at, true);
	switch_and_compare(&at);
	ck_assert(exists(dst, "made.img"));
}
END_TEST

/* --- release and forget during the switch --------------------------------- */

typedef struct {
	MfsFile *file;
	MfsInode *inode;
	gint finished; /* atomic */
} ReleaseJob;

static gpointer release_and_forget(gpointer data)
{
	ReleaseJob *job = data;

	mfs_release(fs, job->file);
	mfs_forget(fs, job->inode, 1);
	g_atomic_int_set(&job->finished, 1);
	return NULL;
}

/*
 * Between the journal and the swap the switch holds pointers to every
 * open file and inode: a release or forget that ran then would free them
 * under it.  They must wait for the stun to end.
 */
static void release_inside_the_stun(Mfs *hfs, void *arg)
{
	ReleaseJob *job = arg;
	GThread *t = g_thread_new("release", release_and_forget, job);
	gint64 deadline = g_get_monotonic_time() + 300 * 1000;

	(void)hfs;
	while (!g_atomic_int_get(&job->finished) && g_get_monotonic_time() < deadline)
		g_usleep(1000);
	ck_assert_msg(!g_atomic_int_get(&job->finished), "a release ran inside the stun");
	g_thread_unref(t);
}

START_TEST(test_release_and_forget_wait_for_the_stun)
{
	ReleaseJob job = {0};
	AtPoint at = {.point = "journaled", .fn = release_inside_the_stun, .arg = &job};
	MfsEntry e;

	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "empty", &e), 0);
	ck_assert_int_eq(mfs_open(fs, e.inode, O_RDWR, &job.file), 0);
	job.inode = e.inode;
	start_at(&at, false);
	wait_for(MFS_MIG_SWITCHED);
	wait_done(&at);
	while (!g_atomic_int_get(&job.finished))
		g_usleep(1000);
	assert_trees_equal(src, dst);
}
END_TEST

/* --- namespace changes right after the swap ------------------------------- */

static void change_after_the_swap(Mfs *hfs, void *arg)
{
	MfsEntry e;
	MfsFile *f;

	(void)arg;
	ck_assert_int_eq(mfs_mkdir(hfs, mfs_root(hfs), "after", 0755, &cred, &e), 0);
	mfs_forget(hfs, e.inode, 1);
	ck_assert_int_eq(mfs_create(hfs, mfs_root(hfs), "after.img", 0644, O_RDWR, &cred, &e, &f),
	                 0);
	mfs_release(hfs, f);
	mfs_forget(hfs, e.inode, 1);
	ck_assert_int_eq(mfs_unlink(hfs, mfs_root(hfs), "empty"), 0);
}

START_TEST(test_changes_just_after_the_swap)
{
	AtPoint at = {.point = "resumed", .fn = change_after_the_swap};
	MfsMigStatus st;

	start_at(&at, false);
	wait_for(MFS_MIG_SWITCHED);
	wait_done(&at);
	mfs_migration_status(fs, NULL, &st);
	ck_assert_msg(st.error == NULL, "switched with an error: %s", st.error);
	mfs_migration_status_clear(&st);
	ck_assert(exists(dst, "after"));
	ck_assert(exists(dst, "after.img"));
	ck_assert(!exists(dst, "empty"));
	ck_assert(exists(src, "empty"));
}
END_TEST

/* --- the journal's temporary name ----------------------------------------- */

/*
 * A symlink planted at the journal's temporary name, in the source and in
 * the target, must not have the daemon (root) write where it points; and
 * a guest cannot make that name through the mount.
 */
START_TEST(test_journal_tmp_symlink_is_not_followed)
{
	g_autofree char *victim = g_build_filename(top, "victim", NULL);
	g_autofree char *s_tmp = g_build_filename(src, MFS_JOURNAL_NAME ".tmp", NULL);
	g_autofree char *d_tmp = g_build_filename(dst, MFS_JOURNAL_NAME ".tmp", NULL);
	g_autofree char *text = NULL;
	MfsEntry e;
	MfsFile *f;

	ck_assert(g_file_set_contents(victim, "precious", -1, NULL));
	ck_assert_int_eq(symlink(victim, s_tmp), 0);
	ck_assert_int_eq(symlink(victim, d_tmp), 0);
	ck_assert_int_eq(
	    mfs_create(fs, mfs_root(fs), MFS_JOURNAL_NAME ".tmp", 0644, O_RDWR, &cred, &e, &f),
	    -EPERM);
	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), MFS_JOURNAL_NAME ".tmp", &e), -ENOENT);
	start(NULL);
	wait_for(MFS_MIG_SWITCHED);
	ck_assert(g_file_get_contents(victim, &text, NULL, NULL));
	ck_assert_str_eq(text, "precious");
	ck_assert(journal_says_switched(src));
}
END_TEST

/* --- a migration back, abandoned ------------------------------------------ */

static void cancel_now(Mfs *hfs, void *arg)
{
	(void)arg;
	ck_assert_int_eq(mfs_migration_cancel(hfs, NULL), 0);
}

/* Migrate src -> dst, then back dst -> src, cancelled half-way. */
static void migrate_back_and_cancel(void)
{
	AtPoint at = {.point = "chunk", .fn = cancel_now};
	g_autofree char *error = NULL;
	MfsMigOptions back = {.target = src,
	                      .chunk_size = CHUNK,
	                      .overwrite = true,
	                      .hook = at_point_hook,
	                      .hook_opaque = &at};

	MfsEntry sub;

	/* No hard link: --overwrite's handling of links is tested on its own. */
	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "sub", &sub), 0);
	ck_assert_int_eq(mfs_unlink(fs, sub.inode, "alias.img"), 0);
	mfs_forget(fs, sub.inode, 1);
	ck_assert_msg(mfs_migration_start(fs, &back, &error) == 0, "%s", error);
	wait_for(MFS_MIG_CANCELLED);
	wait_done(&at);
}

/*
 * After src -> dst switched, src's journal sends a daemon to dst.  A
 * migration back, cancelled, must leave it so: with no journal, the
 * boot command line 'mirrorfs src MNT' would serve src, emptied.
 */
START_TEST(test_cancelled_migration_back_keeps_the_way_home)
{
	g_autofree char *real_dst = realpath(dst, NULL), *served = NULL;

	start(NULL);
	wait_for(MFS_MIG_SWITCHED);
	migrate_back_and_cancel();
	ck_assert(journal_says_switched(src));
	mfs_free(fs);
	ck_assert_int_eq(mfs_new(src, &fs), 0);
	served = mfs_served_dir(fs);
	ck_assert_str_eq(served, real_dst);
}
END_TEST

/*
 * The same after a crash in the copy back: the copying journal left in
 * src (home=true) is reused by the restarted migration, which is then
 * cancelled.
 */
START_TEST(test_cancelled_restart_back_keeps_the_way_home)
{
	g_autofree char *real_dst = realpath(dst, NULL), *real_src = realpath(src, NULL);
	g_autofree char *served = NULL;
	g_auto(Journal) j = {0};
	int src_fd;

	start(NULL);
	wait_for(MFS_MIG_SWITCHED);
	/* What a crash in the copy back leaves in src. */
	src_fd = open(src, O_PATH | O_DIRECTORY);
	ck_assert_int_ge(src_fd, 0);
	ck_assert_int_eq(journal_write(src_fd,
	                               &(Journal){.state = "copying",
	                                          .source = real_dst,
	                                          .target = real_src,
	                                          .home = true},
	                               false),
	                 0);
	mfs_free(fs);
	ck_assert_int_eq(mfs_new(src, &fs), 0);
	served = mfs_served_dir(fs);
	ck_assert_str_eq(served, real_dst);
	migrate_back_and_cancel();
	ck_assert_int_eq(journal_read(src_fd, &j), 0);
	ck_assert_str_eq(j.state, "switched");
	ck_assert_str_eq(j.target, real_dst);
	close(src_fd);
}
END_TEST

/* --- objects with no name left, at the switch ----------------------------- */

/* How many of this process's descriptors lead into @dir. */
static unsigned fds_below(const char *dir)
{
	g_autofree char *real = realpath(dir, NULL);
	g_autoptr(GDir) d = g_dir_open("/proc/self/fd", 0, NULL);
	size_t n = strlen(real);
	const char *name;
	unsigned count = 0;

	while ((name = g_dir_read_name(d))) {
		g_autofree char *path = g_build_filename("/proc/self/fd", name, NULL);
		g_autofree char *to = g_file_read_link(path, NULL);

		if (to && strncmp(to, real, n) == 0 && (to[n] == '/' || to[n] == '\0'))
			count++;
	}
	return count;
}

/*
 * A guest's file unlinked before the migration began, a directory and a
 * FIFO removed during the copy while the kernel still holds them: the
 * switch must succeed, the open file keep working, and none of them hold
 * the source.
 */
static void remove_held_objects(Mfs *hfs, void *arg)
{
	MfsEntry *held = arg;

	ck_assert_int_eq(mfs_mkdir(hfs, mfs_root(hfs), "gone", 0755, &cred, &held[0]), 0);
	ck_assert_int_eq(mfs_rmdir(hfs, mfs_root(hfs), "gone"), 0);
	ck_assert_int_eq(mfs_lookup(hfs, mfs_root(hfs), "sub", &held[1]), 0);
	ck_assert_int_eq(mfs_lookup(hfs, held[1].inode, "fifo", &held[2]), 0);
	ck_assert_int_eq(mfs_unlink(hfs, held[1].inode, "fifo"), 0);
}

START_TEST(test_switch_with_nameless_objects)
{
	MfsEntry held[3], tmp;
	AtPoint at = {.point = "chunk", .fn = remove_held_objects, .arg = held};
	const void *data;
	MfsFile *f;

	ck_assert_int_eq(mfs_create(fs, mfs_root(fs), "scratch", 0600, O_RDWR, &cred, &tmp, &f), 0);
	ck_assert_int_eq(mfs_unlink(fs, mfs_root(fs), "scratch"), 0);
	ck_assert_int_eq(mfs_file_write(fs, f, "before", 6, 0), 6);
	start_at(&at, false);
	wait_for(MFS_MIG_SWITCHED);
	wait_done(&at);
	assert_trees_equal(src, dst);
	ck_assert_int_eq(mfs_file_write(fs, f, "after", 5, 6), 5);
	ck_assert_int_eq(mfs_file_read(f, 11, 0, &data), 11);
	ck_assert_mem_eq(data, "beforeafter", 11);
	/* Each went with the rest: the source can be unmounted. */
	ck_assert_uint_eq(fds_below(src), 0);
	mfs_release(fs, f);
	mfs_forget(fs, tmp.inode, 1);
	for (int i = 0; i < 3; i++)
		mfs_forget(fs, held[i].inode, 1);
}
END_TEST

/* --- the old disk can be retired ------------------------------------------ */

/*
 * After the switch the daemon holds nothing of the source, even with the
 * guest's files and directories still open: the old disk can be unmounted.
 */
START_TEST(test_nothing_of_the_source_is_held_after_the_switch)
{
	MfsEntry e, sub;
	MfsFile *f;
	const void *data;

	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "disk.img", &e), 0);
	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "sub", &sub), 0);
	ck_assert_int_eq(mfs_open(fs, e.inode, O_RDWR, &f), 0);
	ck_assert_uint_gt(fds_below(src), 0);
	start(&(MfsMigOptions){.delete_source = _i == 1});
	wait_for(MFS_MIG_SWITCHED);
	ck_assert_uint_eq(fds_below(src), 0);
	ck_assert_int_eq(mfs_file_read(f, 4, 0, &data), 4);
	mfs_release(fs, f);
	mfs_forget(fs, e.inode, 1);
	mfs_forget(fs, sub.inode, 1);
}
END_TEST

/* --- a new file over a name the target already has ------------------------ */

static void create_over_a_target_name(Mfs *hfs, void *arg)
{
	MfsEntry e;
	MfsFile *f;

	(void)arg;
	ck_assert_int_eq(mfs_create(hfs, mfs_root(hfs), "new.img", 0644, O_RDWR, &cred, &e, &f), 0);
	ck_assert_int_eq(mfs_file_write(hfs, f, "guest data", 10, 0), 10);
	mfs_release(hfs, f);
	mfs_forget(hfs, e.inode, 1);
}

/*
 * The target holds a name the source does not (the operator's, a link to
 * a backup outside it); the guest then creates that name: the target's
 * name is replaced, and the backup is left alone.
 */
START_TEST(test_create_does_not_write_through_a_target_name)
{
	AtPoint at = {.point = "chunk", .fn = create_over_a_target_name};
	g_autofree char *backup = g_build_filename(top, "backup", NULL);
	g_autofree char *stale = g_build_filename(dst, "new.img", NULL);
	g_autofree char *text = NULL;

	ck_assert(g_file_set_contents(backup, "backup", -1, NULL));
	ck_assert_int_eq(link(backup, stale), 0);
	start_at(&at, true);
	switch_and_compare(&at);
	ck_assert(g_file_get_contents(backup, &text, NULL, NULL));
	ck_assert_str_eq(text, "backup");
}
END_TEST

/* --- found in review -------------------------------------------------------- */

/*
 * A mirrored write admitted before the stun fails on the target (a full or
 * failing disk, emulated by swapping the target's descriptor for a
 * read-only one) after the switch was decided: the file detaches and the
 * migration records the error.  The switch must not complete, or the
 * target served after it would lack an acknowledged write.
 */
typedef struct {
	gint stunning; /* atomic: the switch is about to stun */
} StunJob;

static void note_stunning(Mfs *hfs, void *arg)
{
	(void)hfs;
	g_atomic_int_set(&((StunJob *)arg)->stunning, 1);
}

START_TEST(test_target_failure_just_before_the_stun)
{
	g_autofree char *tpath = g_build_filename(dst, "disk.img", NULL);
	StunJob job = {0};
	AtPoint at = {.point = "stunning", .fn = note_stunning, .arg = &job};
	const void *data;
	MfsMigStatus st;
	MfsMigState end;
	MfsEntry e;
	MfsFile *f;
	int ro;

	start_at(&at, true);
	wait_for(MFS_MIG_MIRRORED);
	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "disk.img", &e), 0);
	ck_assert_int_eq(mfs_open(fs, e.inode, O_RDWR, &f), 0);
	ck_assert_ptr_nonnull(e.inode->mirror);
	/* A guest write is inside the gate when the switch comes to stun. */
	gate_enter(&fs->gate);
	ck_assert_int_eq(mfs_migration_switch(fs, NULL), 0);
	wait_done(&at);
	ro = open(tpath, O_RDONLY);
	ck_assert_int_ge(ro, 0);
	ck_assert_int_ge(dup2(ro, mirror_file_target_fd(e.inode->mirror)), 0);
	close(ro);
	ck_assert_int_eq(mirror_file_write(e.inode->mirror, f->fd, "ACKED!", 6, 0), 6);
	gate_leave(&fs->gate);
	end = mfs_migration_wait(fs, NULL, MFS_MIG_SWITCHED, 30000);
	ck_assert_int_eq(end, MFS_MIG_FAILED);
	ck_assert_int_eq(mfs_file_read(f, 6, 0, &data), 6);
	ck_assert_mem_eq(data, "ACKED!", 6);
	mfs_migration_status(fs, NULL, &st);
	ck_assert_ptr_nonnull(st.error);
	mfs_migration_status_clear(&st);
	ck_assert(!journal_says_switched(src));
	mfs_release(fs, f);
	mfs_forget(fs, e.inode, 1);
}
END_TEST

/*
 * Paths are bytes.  After a switch to a target whose path is not UTF-8,
 * a restart must serve the target, never the source.
 */
START_TEST(test_restart_after_a_switch_to_a_non_utf8_target)
{
	g_autofree char *t8 = g_build_filename(top, "t\xe9", NULL);
	g_autofree char *error = NULL, *served = NULL;
	MfsMigOptions opts = {.chunk_size = CHUNK};

	ck_assert_int_eq(mkdir(t8, 0755), 0);
	opts.target = t8;
	ck_assert_msg(mfs_migration_start(fs, &opts, &error) == 0, "%s", error);
	wait_for(MFS_MIG_SWITCHED);
	ck_assert(journal_says_switched(src));
	mfs_free(fs);
	ck_assert_int_eq(mfs_new(src, &fs), 0);
	served = mfs_served_dir(fs);
	ck_assert_str_eq(served, t8);
}
END_TEST

/* A journal that cannot be read is refused, not taken for none. */
START_TEST(test_an_unreadable_journal_is_refused)
{
	g_autofree char *path = g_build_filename(src, MFS_JOURNAL_NAME, NULL);
	g_autofree char *error = NULL;
	Mfs *other = NULL;

	ck_assert(g_file_set_contents(path, "[migration]\nstate=switched\n", -1, NULL));
	ck_assert_int_eq(mfs_new_explained(src, &other, &error), -EBADMSG);
	ck_assert_ptr_nonnull(error);
	ck_assert_ptr_nonnull(strstr(error, "cannot be read"));
}
END_TEST

/* A file the guest holds open but unlinked keeps its attributes across the switch. */
START_TEST(test_nameless_file_keeps_its_attributes)
{
	g_autofree char *path = g_build_filename(src, "scratch", NULL);
	struct stat before, after;
	MfsEntry e;
	MfsFile *f;

	write_file(src, "scratch", 5000, 9);
	ck_assert_int_eq(chmod(path, 0644), 0);
	ck_assert_int_eq(chown(path, 1234, 4321), 0);
	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "scratch", &e), 0);
	ck_assert_int_eq(mfs_open(fs, e.inode, O_RDWR, &f), 0);
	ck_assert_int_eq(mfs_unlink(fs, mfs_root(fs), "scratch"), 0);
	ck_assert_int_eq(mfs_getattr(fs, e.inode, f, &before), 0);
	start(NULL);
	wait_for(MFS_MIG_SWITCHED);
	ck_assert_int_eq(mfs_getattr(fs, e.inode, f, &after), 0);
	ck_assert_uint_eq(before.st_mode, after.st_mode);
	ck_assert_uint_eq(before.st_uid, after.st_uid);
	ck_assert_uint_eq(before.st_gid, after.st_gid);
	ck_assert_int_eq(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
	ck_assert_int_eq(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
	mfs_release(fs, f);
	mfs_forget(fs, e.inode, 1);
}
END_TEST

/*
 * A directory kept from an earlier copy (a migration back onto the old
 * home) must not keep an attribute the guest removed since.  (Found by
 * the long operation fuzzer run, seed 4107995694.)
 */
START_TEST(test_kept_directory_loses_stale_xattrs)
{
	g_autofree char *sub_src = g_build_filename(src, "sub", NULL);
	g_autofree char *error = NULL;
	MfsMigOptions back = {.target = src, .chunk_size = CHUNK, .overwrite = true};
	MfsEntry sub;
	char value[16];

	if (setxattr(sub_src, "user.stale", "v", 1, 0) < 0 && errno == ENOTSUP)
		return; /* no user xattrs where the tests run */
	ck_assert_int_eq(getxattr(sub_src, "user.stale", value, sizeof(value)), 1);
	start(NULL);
	wait_for(MFS_MIG_SWITCHED);
	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "sub", &sub), 0);
	ck_assert_int_eq(mfs_removexattr(fs, sub.inode, "user.stale"), 0);
	ck_assert_int_eq(mfs_unlink(fs, sub.inode, "alias.img"), 0);
	mfs_forget(fs, sub.inode, 1);
	ck_assert_msg(mfs_migration_start(fs, &back, &error) == 0, "%s", error);
	wait_for(MFS_MIG_SWITCHED);
	ck_assert_int_eq(getxattr(sub_src, "user.stale", value, sizeof(value)), -1);
	ck_assert_int_eq(errno, ENODATA);
}
END_TEST

/* A tree moved 40 times: a restart follows every journal to where it is. */
START_TEST(test_a_long_chain_of_journals_is_followed)
{
	g_autofree char *last = NULL, *served = NULL;
	Mfs *other = NULL;

	for (int i = 0; i < 40; i++) {
		g_autofree char *from = g_strdup_printf("%s/hop%d", top, i);
		g_autofree char *to = g_strdup_printf("%s/hop%d", top, i + 1);
		int fd;

		ck_assert_int_eq(mkdir(from, 0755), 0);
		fd = open(from, O_PATH | O_DIRECTORY);
		ck_assert_int_eq(journal_write(fd,
		                               &(Journal){.state = "switched",
		                                          .source = from,
		                                          .target = to,
		                                          .home = false},
		                               false),
		                 0);
		close(fd);
		g_free(last);
		last = g_steal_pointer(&to);
	}
	ck_assert_int_eq(mkdir(last, 0755), 0);
	{
		g_autofree char *first = g_strdup_printf("%s/hop0", top);

		ck_assert_int_eq(mfs_new(first, &other), 0);
	}
	served = mfs_served_dir(other);
	ck_assert_str_eq(served, last);
	mfs_free(other);
}
END_TEST

static Suite *integrity_suite(void)
{
	Suite *s = suite_create("integrity");
	TCase *ops = tcase_create("operations");
	TCase *sw = tcase_create("switch");

	tcase_add_checked_fixture(ops, setup, teardown);
	tcase_add_loop_test(ops, test_open_trunc_is_mirrored, 0, 4);
	tcase_add_loop_test(ops, test_mknod_regular_file_is_mirrored, 0, 2);
	tcase_add_test(ops, test_create_does_not_write_through_a_target_name);
	suite_add_tcase(s, ops);
	tcase_add_checked_fixture(sw, setup, teardown);
	tcase_add_test(sw, test_release_and_forget_wait_for_the_stun);
	tcase_add_test(sw, test_changes_just_after_the_swap);
	tcase_add_test(sw, test_journal_tmp_symlink_is_not_followed);
	tcase_add_test(sw, test_cancelled_migration_back_keeps_the_way_home);
	tcase_add_test(sw, test_cancelled_restart_back_keeps_the_way_home);
	tcase_add_test(sw, test_switch_with_nameless_objects);
	tcase_add_loop_test(sw, test_nothing_of_the_source_is_held_after_the_switch, 0, 2);
	tcase_add_test(sw, test_target_failure_just_before_the_stun);
	tcase_add_test(sw, test_restart_after_a_switch_to_a_non_utf8_target);
	tcase_add_test(sw, test_an_unreadable_journal_is_refused);
	tcase_add_test(sw, test_nameless_file_keeps_its_attributes);
	tcase_add_test(sw, test_kept_directory_loses_stale_xattrs);
	tcase_add_test(sw, test_a_long_chain_of_journals_is_followed);
	suite_add_tcase(s, sw);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(integrity_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
