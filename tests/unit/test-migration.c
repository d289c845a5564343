/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the migration job (lib/migration.c) without FUSE: the
 * tree copy, changes made while it runs (forced at the copier's hook),
 * the switch with open handles, the journal and restart, cancel, bad
 * targets, and a concurrent stress test against a model.
 */
#define _GNU_SOURCE
#include "mfs-int.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>

#include "migration-fixture.h"

START_TEST(test_tree_is_copied_and_switched)
{
	MfsMigStatus st;
	struct stat a, b;
	g_autofree char *real_dst = realpath(dst, NULL), *served = NULL;
	g_autofree char *d1 = g_build_filename(dst, "disk.img", NULL);
	g_autofree char *d2 = g_build_filename(dst, "sub/alias.img", NULL);

	{
		g_autofree char *s1 = g_build_filename(src, "disk.img", NULL);
		struct timespec old[2] = {{1000000000, 5}, {1000000000, 7}};

		ck_assert_int_eq(utimensat(AT_FDCWD, s1, old, 0), 0);
	}
	start(NULL);
	wait_for(MFS_MIG_SWITCHED);
	assert_trees_equal(src, dst);
	/* Times are the source's, not those of the copy. */
	ck_assert_int_eq(stat(d1, &a), 0);
	ck_assert_int_eq(a.st_mtim.tv_sec, 1000000000);
	ck_assert_int_eq(a.st_mtim.tv_nsec, 7);
	/* Hard links stay links. */
	ck_assert_int_eq(stat(d1, &a), 0);
	ck_assert_int_eq(stat(d2, &b), 0);
	ck_assert_uint_eq(a.st_ino, b.st_ino);
	ck_assert(journal_says_switched(src));
	ck_assert(!exists(dst, MFS_JOURNAL_NAME));
	served = mfs_served_dir(fs);
	ck_assert_str_eq(served, real_dst);
	mfs_migration_status(fs, NULL, &st);
	ck_assert_int_eq(st.state, MFS_MIG_SWITCHED);
	ck_assert_uint_eq(st.n_files, 3); /* disk.img (and its alias), empty, vm.conf */
	ck_assert_uint_ge(st.bytes_copied, 40 * CHUNK + 123 + 300);
	ck_assert_uint_gt(st.stun_ns, 0);
	mfs_migration_status_clear(&st);
	/* Restart: the journal sends a new daemon to the target. */
	mfs_free(fs);
	ck_assert_int_eq(mfs_new(src, &fs), 0);
	g_free(served);
	served = mfs_served_dir(fs);
	ck_assert_str_eq(served, real_dst);
}
END_TEST

START_TEST(test_switch_repoints_open_handles)
{
	MfsMigOptions opts = {.manual_switch = true};
	g_autofree char *src_disk = g_build_filename(src, "disk.img", NULL);
	g_autofree char *dst_disk = g_build_filename(dst, "disk.img", NULL);
	g_autofree char *sc = NULL, *dc = NULL;
	const void *data;
	MfsEntry e, again;
	MfsFile *f;
	struct stat st;

	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "disk.img", &e), 0);
	ck_assert_int_eq(mfs_open(fs, e.inode, O_RDWR, &f), 0);
	start(&opts);
	wait_for(MFS_MIG_MIRRORED);
	/* Mirrored: a write lands on both sides. */
	ck_assert_int_eq(mfs_file_write(fs, f, "MIRROR", 6, 10), 6);
	ck_assert(g_file_get_contents(dst_disk, &dc, NULL, NULL));
	ck_assert_mem_eq(dc + 10, "MIRROR", 6);
	ck_assert_int_eq(mfs_migration_switch(fs, NULL), 0);
	wait_for(MFS_MIG_SWITCHED);
	/* The same handle now writes the target only, and reads it back. */
	ck_assert_int_eq(mfs_file_write(fs, f, "TARGET", 6, 100), 6);
	ck_assert_int_eq(mfs_file_read(f, 6, 100, &data), 6);
	ck_assert_mem_eq(data, "TARGET", 6);
	g_free(dc);
	ck_assert(g_file_get_contents(dst_disk, &dc, NULL, NULL));
	ck_assert(g_file_get_contents(src_disk, &sc, NULL, NULL));
	ck_assert_mem_eq(dc + 100, "TARGET", 6);
	ck_assert_mem_ne(sc + 100, "TARGET", 6);
	/* The inode the kernel holds resolves in the target too. */
	ck_assert_int_eq(mfs_getattr(fs, e.inode, NULL, &st), 0);
	{
		struct stat d;

		ck_assert_int_eq(stat(dst_disk, &d), 0);
		ck_assert_uint_eq(st.st_ino, d.st_ino);
	}
	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "disk.img", &again), 0);
	ck_assert_ptr_eq(again.inode, e.inode);
	mfs_release(fs, f);
	mfs_forget(fs, e.inode, 2);
}
END_TEST

/* Changes made from the copier's hook, with the copy half done. */
typedef struct {
	bool done;
	MfsFile *disk;
} ChangeJob;

static void change_during_copy(Mfs *hfs, const char *point, void *opaque)
{
	ChangeJob *job = opaque;
	MfsEntry sub, e, n, d;
	MfsFile *f;
	struct stat attr = {.st_mode = 0600, .st_size = 50 * CHUNK};
	char block[CHUNK];

	if (strcmp(point, "chunk") != 0 || job->done)
		return;
	job->done = true;
	memset(block, 0x5a, sizeof(block));
	/* Below and above the cursor, and growth past the end. */
	ck_assert_int_eq(mfs_file_write(hfs, job->disk, block, CHUNK, 0), CHUNK);
	ck_assert_int_eq(mfs_file_write(hfs, job->disk, block, CHUNK, 30 * CHUNK + 7), CHUNK);
	ck_assert_int_eq(mfs_setattr(hfs, job->disk->inode, job->disk, &attr,
	                             MFS_SET_SIZE | MFS_SET_MODE, &attr),
	                 0);
	ck_assert_int_eq(mfs_file_write(hfs, job->disk, block, 100, 49 * CHUNK), 100);
	/* Namespace: create, mkdir, rename across directories, unlink, symlink. */
	ck_assert_int_eq(mfs_create(hfs, mfs_root(hfs), "new.img", 0644, O_RDWR, &cred, &n, &f), 0);
	ck_assert_int_eq(mfs_file_write(hfs, f, "born mirrored", 13, 0), 13);
	mfs_release(hfs, f);
	ck_assert_int_eq(mfs_mkdir(hfs, mfs_root(hfs), "newdir", 0700, &cred, &d), 0);
	ck_assert_int_eq(mfs_rename(hfs, mfs_root(hfs), "new.img", d.inode, "moved.img", 0), 0);
	ck_assert_int_eq(mfs_lookup(hfs, mfs_root(hfs), "sub", &sub), 0);
	ck_assert_int_eq(mfs_unlink(hfs, sub.inode, "fifo"), 0);
	ck_assert_int_eq(mfs_symlink(hfs, "../disk.img", d.inode, "ln", &cred, &e), 0);
	ck_assert_int_eq(
	    mfs_setxattr(hfs, n.inode, "user.test", "v", 1, 0) == 0 || errno == ENOTSUP, 1);
	mfs_forget(hfs, sub.inode, 1);
	mfs_forget(hfs, e.inode, 1);
	mfs_forget(hfs, n.inode, 1);
	mfs_forget(hfs, d.inode, 1);
}

START_TEST(test_changes_during_copy_are_mirrored)
{
	ChangeJob job = {0};
	MfsMigOptions opts = {
	    .hook = change_during_copy, .hook_opaque = &job, .manual_switch = true};
	MfsEntry e;

	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "disk.img", &e), 0);
	ck_assert_int_eq(mfs_open(fs, e.inode, O_RDWR, &job.disk), 0);
	start(&opts);
	wait_for(MFS_MIG_MIRRORED);
	ck_assert(job.done);
	/* Before the switch the source is authoritative: compare against it. */
	assert_trees_equal(src, dst);
	ck_assert_int_eq(mfs_migration_switch(fs, NULL), 0);
	wait_for(MFS_MIG_SWITCHED);
	assert_trees_equal(src, dst);
	ck_assert(exists(dst, "newdir/moved.img"));
	ck_assert(!exists(dst, "sub/fifo"));
	mfs_release(fs, job.disk);
	mfs_forget(fs, e.inode, 1);
}
END_TEST

/*
 * Times of every object, not only of regular files: a directory, a
 * symlink, a fifo, an empty directory.  Old times, so that the copy's own
 * ("now") cannot pass for them.
 */
static const struct timespec old_times[2] = {{1000000000, 11}, {1000000000, 13}};

static void set_old_times(const char *rel)
{
	g_autofree char *path = g_build_filename(src, rel, NULL);

	ck_assert_int_eq(utimensat(AT_FDCWD, path, old_times, AT_SYMLINK_NOFOLLOW), 0);
}

static void assert_times_equal(const char *rel)
{
	g_autofree char *a = g_build_filename(src, rel, NULL);
	g_autofree char *b = g_build_filename(dst, rel, NULL);
	struct stat sa, sb;

	ck_assert_int_eq(lstat(a, &sa), 0);
	ck_assert_int_eq(lstat(b, &sb), 0);
	ck_assert_msg(sa.st_mtim.tv_sec == sb.st_mtim.tv_sec &&
	                  sa.st_mtim.tv_nsec == sb.st_mtim.tv_nsec,
	              "%s: mtime %ld.%09ld on the target, %ld.%09ld on the source", rel,
	              (long)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec, (long)sa.st_mtim.tv_sec,
	              sa.st_mtim.tv_nsec);
	ck_assert_msg(sa.st_atim.tv_sec == sb.st_atim.tv_sec &&
	                  sa.st_atim.tv_nsec == sb.st_atim.tv_nsec,
	              "%s: atime %ld.%09ld on the target, %ld.%09ld on the source", rel,
	              (long)sb.st_atim.tv_sec, sb.st_atim.tv_nsec, (long)sa.st_atim.tv_sec,
	              sa.st_atim.tv_nsec);
}

START_TEST(test_times_of_every_object)
{
	g_autofree char *empty = g_build_filename(src, "sub/emptydir", NULL);

	ck_assert_int_eq(mkdir(empty, 0755), 0);
	set_old_times("sub/emptydir");
	set_old_times("sub/fifo");
	set_old_times("link");
	set_old_times("sub"); /* last: making its entries moved its mtime */
	start(NULL);
	wait_for(MFS_MIG_SWITCHED);
	assert_times_equal("sub");
	assert_times_equal("sub/emptydir");
	assert_times_equal("sub/fifo");
	assert_times_equal("link");
	assert_times_equal("sub/vm.conf");
}
END_TEST

/* From the copier's hook: namespace changes and utimens on non-files. */
static void times_during_copy(Mfs *hfs, const char *point, void *opaque)
{
	bool *done = opaque;
	struct stat attr = {.st_atim = old_times[0], .st_mtim = old_times[1]};
	MfsEntry sub, dir, ln, n, d;
	struct stat out;
	MfsFile *f;

	if (strcmp(point, "chunk") != 0 || *done)
		return;
	*done = true;
	ck_assert_int_eq(mfs_lookup(hfs, mfs_root(hfs), "sub", &sub), 0);
	ck_assert_int_eq(mfs_lookup(hfs, mfs_root(hfs), "link", &ln), 0);
	/* Entries made, renamed and removed: the directories' mtimes move. */
	ck_assert_int_eq(mfs_create(hfs, sub.inode, "new.img", 0644, O_RDWR, &cred, &n, &f), 0);
	mfs_release(hfs, f);
	ck_assert_int_eq(mfs_mkdir(hfs, sub.inode, "newdir", 0755, &cred, &d), 0);
	ck_assert_int_eq(mfs_rename(hfs, sub.inode, "new.img", d.inode, "moved.img", 0), 0);
	ck_assert_int_eq(mfs_unlink(hfs, sub.inode, "fifo"), 0);
	/* utimens on a symlink and on a directory. */
	ck_assert_int_eq(
	    mfs_setattr(hfs, ln.inode, NULL, &attr, MFS_SET_ATIME | MFS_SET_MTIME, &out), 0);
	ck_assert_int_eq(mfs_mkdir(hfs, mfs_root(hfs), "olddir", 0755, &cred, &dir), 0);
	ck_assert_int_eq(
	    mfs_setattr(hfs, dir.inode, NULL, &attr, MFS_SET_ATIME | MFS_SET_MTIME, &out), 0);
	mfs_forget(hfs, sub.inode, 1);
	mfs_forget(hfs, ln.inode, 1);
	mfs_forget(hfs, n.inode, 1);
	mfs_forget(hfs, d.inode, 1);
	mfs_forget(hfs, dir.inode, 1);
}

START_TEST(test_times_follow_mirrored_changes)
{
	bool done = false;
	MfsMigOptions opts = {.hook = times_during_copy, .hook_opaque = &done};

	set_old_times("sub");
	start(&opts);
	wait_for(MFS_MIG_SWITCHED);
	ck_assert(done);
	assert_times_equal("sub");
	assert_times_equal("sub/newdir");
	assert_times_equal("sub/newdir/moved.img");
	assert_times_equal("link");
	assert_times_equal("olddir");
	{
		g_autofree char *olddir = g_build_filename(dst, "olddir", NULL);
		struct stat st;

		ck_assert_int_eq(stat(olddir, &st), 0);
		ck_assert_int_eq(st.st_mtim.tv_sec, old_times[1].tv_sec);
	}
}
END_TEST

/*
 * The copier's rests for a busy guest, forced: a guest thread does
 * operations steadily, except while a chunk is being copied (from the
 * "chunk-begin" hook to the "chunk" hook), so copying leaves it nothing
 * of its rate; every chunk takes REST_CHUNK_MS.  At a share of 50 % the
 * pacer must then rest about as long as it copies; at 0 never; for a
 * guest that reads, as for one that writes; and not at all for an idle
 * guest.  A share cut from 90 % to 0 ends the long rest at once.
 */
#define REST_CHUNK_MS 5

typedef enum { GUEST_IDLE, GUEST_WRITES, GUEST_READS } GuestDoes;

typedef struct {
	GuestDoes guest;
	MfsFile *disk, *other;
	Mfs *fs;
	int copying;      /* atomic: a chunk is being copied */
	int chunks_ended; /* atomic */
	int stop;         /* atomic */
	int ops;          /* atomic */
} RestJob;

static void rest_hook(Mfs *hfs, const char *point, void *opaque)
{
	RestJob *job = opaque;

	if (!strcmp(point, "chunk-begin")) {
		g_atomic_int_set(&job->copying, 1);
		g_usleep(REST_CHUNK_MS * 1000);
	} else if (!strcmp(point, "chunk")) {
		const void *data;

		/* One operation at each chunk's end too: the chunk does not grow. */
		if (job->guest == GUEST_WRITES)
			ck_assert_int_eq(mfs_file_write(hfs, job->other, "x", 1, 0), 1);
		else if (job->guest == GUEST_READS)
			ck_assert_int_eq(mfs_file_read(job->disk, 512, 0, &data), 512);
		g_atomic_int_set(&job->copying, 0);
		g_atomic_int_inc(&job->chunks_ended);
	}
}

static gpointer rest_guest(gpointer opaque)
{
	RestJob *job = opaque;
	const void *data;

	while (!g_atomic_int_get(&job->stop)) {
		if (g_atomic_int_get(&job->copying)) {
			g_usleep(100);
			continue;
		}
		if (job->guest == GUEST_WRITES)
			ck_assert_int_eq(mfs_file_write(job->fs, job->other, "x", 1, 0), 1);
		else
			ck_assert_int_eq(mfs_file_read(job->disk, 512, 0, &data), 512);
		g_atomic_int_inc(&job->ops);
		g_usleep(100);
	}
	return NULL;
}

START_TEST(test_copier_rests_for_a_busy_guest)
{
	/* _i: 0 guest writes, 50 %; 1 writes, 0; 2 idle, 50 %; 3 writes, 90 % cut to 0; 4 reads, 50
	 * %. */
	static const unsigned share[] = {50, 0, 50, 90, 50};
	static const GuestDoes guest[] = {GUEST_WRITES, GUEST_WRITES, GUEST_IDLE, GUEST_WRITES,
	                                  GUEST_READS};
	RestJob job = {.guest = guest[_i], .fs = fs};
	MfsMigOptions opts = {.hook = rest_hook,
	                      .hook_opaque = &job,
	                      .manual_switch = true,
	                      .guest_share = share[_i]};
	g_autofree char *conf = g_build_filename(src, "sub", "vm.conf", NULL);
	GThread *guest_thread = NULL;
	gint64 copy_us, t0;
	MfsMigStatus st;
	MfsEntry e, o;

	ck_assert_int_eq(unlink(conf), 0);
	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "disk.img", &e), 0);
	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "empty", &o), 0);
	ck_assert_int_eq(mfs_open(fs, e.inode, O_RDONLY, &job.disk), 0);
	ck_assert_int_eq(mfs_open(fs, o.inode, O_RDWR, &job.other), 0);
	t0 = g_get_monotonic_time();
	start(&opts);
	if (job.guest != GUEST_IDLE)
		guest_thread = g_thread_new("guest", rest_guest, &job);
	if (_i == 3) {
		/* Well into a rest 9 times as long as a burst: a new share counts at once. */
		while (g_atomic_int_get(&job.chunks_ended) < 12)
			g_usleep(1000);
		g_usleep(200 * 1000);
		ck_assert_int_eq(mfs_migration_set_guest_share(fs, NULL, 0), 0);
		t0 = g_get_monotonic_time();
		wait_for(MFS_MIG_MIRRORED);
		ck_assert_int_lt(g_get_monotonic_time() - t0, 2 * G_USEC_PER_SEC);
		opts.guest_share = 0;
	}
	wait_for(MFS_MIG_MIRRORED);
	copy_us = g_get_monotonic_time() - t0;
	g_atomic_int_set(&job.stop, 1);
	if (guest_thread)
		g_thread_join(guest_thread);
	mfs_migration_status(fs, NULL, &st);
	if (share[_i] == 50 && job.guest != GUEST_IDLE) {
		/*
		 * Copying at least REST_CHUNK_MS a chunk, and leaving the
		 * guest nothing meanwhile: at 50 % it rested about as long as
		 * it copied, so a third of the time at the very least.
		 */
		ck_assert_int_gt(g_atomic_int_get(&job.ops), 0);
		ck_assert_uint_ge(st.rested_ns / 1000, (uint64_t)copy_us / 3);
	} else if (share[_i] == 0) {
		ck_assert_uint_eq(st.rested_ns, 0);
	} else if (job.guest == GUEST_IDLE) {
		ck_assert_uint_eq(st.rested_ns, 0);
	}
	ck_assert_uint_eq(st.guest_share, opts.guest_share);
	mfs_migration_status_clear(&st);
	assert_trees_equal(src, dst);
	ck_assert_int_eq(mfs_migration_switch(fs, NULL), 0);
	wait_for(MFS_MIG_SWITCHED);
	mfs_release(fs, job.disk);
	mfs_release(fs, job.other);
	mfs_forget(fs, e.inode, 1);
	mfs_forget(fs, o.inode, 1);
}
END_TEST

/*
 * The chunk grows only while the guest leaves the whole mount alone: a
 * guest that reads disk.img, or writes another file, at the end of every
 * chunk keeps it at CHUNK.  disk.img is 40 chunks and a bit: copied in
 * chunks of CHUNK (the first may be twice that, copied before the guest
 * did anything) that is some 40 copier steps; growing, under ten.
 */
typedef struct {
	GuestDoes guest;
	MfsFile *disk, *other;
	int chunks;
} GrowthJob;

static void growth_hook(Mfs *hfs, const char *point, void *opaque)
{
	GrowthJob *job = opaque;
	const void *data;

	if (strcmp(point, "chunk") != 0)
		return;
	job->chunks++;
	if (job->guest == GUEST_READS)
		ck_assert_int_eq(mfs_file_read(job->disk, 512, 0, &data), 512);
	else if (job->guest == GUEST_WRITES)
		ck_assert_int_eq(mfs_file_write(hfs, job->other, "x", 1, 0), 1);
}

START_TEST(test_chunk_grows_only_while_the_guest_is_idle)
{
	static const GuestDoes guest[] = {GUEST_IDLE, GUEST_READS, GUEST_WRITES};
	GrowthJob job = {.guest = guest[_i]};
	MfsMigOptions opts = {
	    .hook = growth_hook, .hook_opaque = &job, .manual_switch = true, .guest_share = 0};
	g_autofree char *conf = g_build_filename(src, "sub", "vm.conf", NULL);
	MfsEntry e, o;

	/* disk.img, and the empty file the guest may write. */
	ck_assert_int_eq(unlink(conf), 0);
	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "disk.img", &e), 0);
	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "empty", &o), 0);
	ck_assert_int_eq(mfs_open(fs, e.inode, O_RDONLY, &job.disk), 0);
	ck_assert_int_eq(mfs_open(fs, o.inode, O_RDWR, &job.other), 0);
	start(&opts);
	wait_for(MFS_MIG_MIRRORED);
	if (job.guest == GUEST_IDLE)
		ck_assert_int_le(job.chunks, 10);
	else
		ck_assert_int_ge(job.chunks, 40);
	ck_assert_int_eq(mfs_migration_switch(fs, NULL), 0);
	wait_for(MFS_MIG_SWITCHED);
	mfs_release(fs, job.disk);
	mfs_release(fs, job.other);
	mfs_forget(fs, e.inode, 1);
	mfs_forget(fs, o.inode, 1);
}
END_TEST

/*
 * Objects removed during the copy free their inode numbers, and new files
 * get them: a new file must not be taken for the removed object.
 */
static void reuse_inode_numbers(Mfs *hfs, const char *point, void *opaque)
{
	int *done = opaque;

	if (strcmp(point, "chunk") != 0 || *done)
		return;
	*done = 1;
	for (int i = 0; i < 20; i++) {
		g_autofree char *dname = g_strdup_printf("tmpdir%d", i);
		g_autofree char *fname = g_strdup_printf("new%d", i);
		g_autofree char *sname = g_strdup_printf("sym%d", i);
		MfsEntry d, s, f;
		MfsFile *file;

		ck_assert_int_eq(mfs_mkdir(hfs, mfs_root(hfs), dname, 0755, &cred, &d), 0);
		ck_assert_int_eq(mfs_symlink(hfs, "x", mfs_root(hfs), sname, &cred, &s), 0);
		ck_assert_int_eq(mfs_rmdir(hfs, mfs_root(hfs), dname), 0);
		ck_assert_int_eq(mfs_unlink(hfs, mfs_root(hfs), sname), 0);
		mfs_forget(hfs, d.inode, 1);
		mfs_forget(hfs, s.inode, 1);
		ck_assert_int_eq(
		    mfs_create(hfs, mfs_root(hfs), fname, 0644, O_RDWR, &cred, &f, &file), 0);
		ck_assert_int_eq(mfs_file_write(hfs, file, fname, strlen(fname), 0),
		                 (ssize_t)strlen(fname));
		if (f.st.st_ino == d.st.st_ino || f.st.st_ino == s.st.st_ino)
			*done = 2; /* the case this test is about did happen */
		mfs_release(hfs, file);
		mfs_forget(hfs, f.inode, 1);
	}
}

START_TEST(test_reused_inode_numbers)
{
	int done = 0;

	start(&(MfsMigOptions){.hook = reuse_inode_numbers, .hook_opaque = &done});
	wait_for(MFS_MIG_SWITCHED);
	ck_assert_int_ge(done, 1);
	if (done != 2)
		fprintf(stderr, "note: no inode number was reused on this file system\n");
	assert_trees_equal(src, dst);
	ck_assert(exists(dst, "new19"));
}
END_TEST

START_TEST(test_cancel_cleans_the_target)
{
	MfsMigOptions opts = {.manual_switch = true};
	g_autofree char *keep = g_build_filename(dst, "unrelated", NULL);
	g_autofree char *error = NULL;
	MfsEntry e;
	MfsFile *f;

	ck_assert(g_file_set_contents(keep, "not ours", -1, NULL));
	start(&opts);
	wait_for(MFS_MIG_MIRRORED);
	ck_assert(exists(dst, "disk.img"));
	ck_assert_int_eq(mfs_create(fs, mfs_root(fs), "late", 0644, O_RDWR, &cred, &e, &f), 0);
	ck_assert_int_eq(mfs_migration_cancel(fs, NULL), 0);
	wait_for(MFS_MIG_CANCELLED);
	ck_assert_int_eq(mfs_migration_cancel(fs, NULL), -EALREADY);
	ck_assert(!exists(dst, "disk.img"));
	ck_assert(!exists(dst, "sub"));
	ck_assert(!exists(dst, "late"));
	ck_assert(!exists(dst, MFS_JOURNAL_NAME));
	ck_assert(exists(dst, "unrelated"));
	ck_assert(!journal_says_switched(src));
	/* The guest carries on against the source. */
	ck_assert_int_eq(mfs_file_write(fs, f, "after", 5, 0), 5);
	ck_assert(exists(src, "late"));
	mfs_release(fs, f);
	mfs_forget(fs, e.inode, 1);
	/* And a new migration can start and complete. */
	ck_assert_int_eq(unlink(keep), 0);
	start(NULL);
	wait_for(MFS_MIG_SWITCHED);
	assert_trees_equal(src, dst);
	(void)error;
}
END_TEST

START_TEST(test_control_refuses_what_makes_no_sense)
{
	MfsMigOptions opts = {.manual_switch = true, .speed_bps = 1};
	g_autofree char *error = NULL;

	ck_assert_int_eq(mfs_migration_pause(fs, NULL), -ENOENT);
	ck_assert_int_eq(mfs_migration_switch(fs, NULL), -ENOENT);
	start(&opts); /* 1 byte/s: stays copying */
	ck_assert_int_eq(mfs_migration_switch(fs, NULL), -EBUSY);
	ck_assert_int_eq(mfs_migration_resume(fs, NULL), -EINVAL);
	ck_assert_int_eq(mfs_migration_pause(fs, NULL), 0);
	ck_assert_int_eq(mfs_migration_pause(fs, NULL), -EALREADY);
	{
		MfsMigStatus st;

		mfs_migration_status(fs, NULL, &st);
		ck_assert(st.paused);
		ck_assert_int_eq(st.state, MFS_MIG_COPYING);
		mfs_migration_status_clear(&st);
	}
	ck_assert_int_eq(mfs_migration_start(fs, &(MfsMigOptions){.target = dst}, &error), -EBUSY);
	ck_assert_ptr_nonnull(strstr(error, "already running"));
	ck_assert_int_eq(mfs_migration_resume(fs, NULL), 0);
	ck_assert_int_eq(mfs_migration_set_speed(fs, NULL, 0), 0);
	wait_for(MFS_MIG_MIRRORED);
	ck_assert_int_eq(mfs_migration_switch(fs, NULL), 0);
	wait_for(MFS_MIG_SWITCHED);
	ck_assert_int_eq(mfs_migration_cancel(fs, NULL), -EINVAL);
	ck_assert_int_eq(mfs_migration_set_speed(fs, NULL, 5), -EINVAL);
}
END_TEST

/*
 * A pause lends the copier no speed: after it the limit counts from the
 * resume, not from before the pause (whose idle time once let the copier
 * copy that much flat out).
 */
START_TEST(test_a_pause_lends_no_speed)
{
	const uint64_t speed = 64 << 10;
	MfsMigStatus st;
	uint64_t left;
	gint64 t0, took;

	start(&(MfsMigOptions){.manual_switch = true, .speed_bps = speed});
	ck_assert_int_eq(mfs_migration_pause(fs, NULL), 0);
	/* Not a race: the time a pause lasts is what the old window lent. */
	g_usleep(1500 * 1000);
	mfs_migration_status(fs, NULL, &st);
	left = st.bytes_total - st.bytes_copied;
	mfs_migration_status_clear(&st);
	ck_assert_uint_gt(left, 2 * speed);
	t0 = g_get_monotonic_time();
	ck_assert_int_eq(mfs_migration_resume(fs, NULL), 0);
	wait_for(MFS_MIG_MIRRORED);
	took = g_get_monotonic_time() - t0;
	ck_assert_msg(took >= (gint64)(left * G_USEC_PER_SEC / speed) * 8 / 10,
	              "%" G_GUINT64_FORMAT " bytes at %" G_GUINT64_FORMAT " B/s in %.2f s", left,
	              speed, took / 1e6);
	ck_assert_int_eq(mfs_migration_cancel(fs, NULL), 0);
	wait_for(MFS_MIG_CANCELLED);
}
END_TEST

/* The copier held in its hook after its first chunk until the test lets it go. */
typedef struct {
	MfsMutex lock; /* pthreads: ThreadSanitizer sees them (lock.h) */
	MfsCond cond;
	bool held, released;
} HeldCopier;

static void hold_hook(Mfs *hfs, const char *point, void *opaque)
{
	HeldCopier *h = opaque;

	if (strcmp(point, "chunk"))
		return;
	mfs_mutex_lock(&h->lock);
	h->held = true;
	mfs_cond_broadcast(&h->cond);
	while (!h->released)
		mfs_cond_wait(&h->cond, &h->lock);
	mfs_mutex_unlock(&h->lock);
}

/*
 * A cancel under way (STOPPING: the copier has not seen it yet) refuses
 * every other request with -ECANCELED, takes a second cancel, and a job
 * paused before it still shows paused; it ends cancelled, not failed.
 */
START_TEST(test_a_cancel_under_way_refuses_the_rest)
{
	HeldCopier h = {.held = false};
	MfsMigOptions opts = {.hook = hold_hook, .hook_opaque = &h, .manual_switch = true};
	MfsMigStatus st;

	mfs_mutex_init(&h.lock);
	mfs_cond_init(&h.cond);
	start(&opts);
	mfs_mutex_lock(&h.lock);
	while (!h.held)
		mfs_cond_wait(&h.cond, &h.lock);
	mfs_mutex_unlock(&h.lock);

	ck_assert_int_eq(mfs_migration_pause(fs, NULL), 0);
	ck_assert_int_eq(mfs_migration_cancel(fs, NULL), 0);
	mfs_migration_status(fs, NULL, &st);
	ck_assert_int_eq(st.state, MFS_MIG_COPYING);
	ck_assert(st.paused);
	ck_assert_ptr_null(st.error);
	mfs_migration_status_clear(&st);
	ck_assert_int_eq(mfs_migration_resume(fs, NULL), -ECANCELED);
	ck_assert_int_eq(mfs_migration_pause(fs, NULL), -ECANCELED);
	ck_assert_int_eq(mfs_migration_set_speed(fs, NULL, 5), -ECANCELED);
	ck_assert_int_eq(mfs_migration_set_guest_share(fs, NULL, 10), -ECANCELED);
	ck_assert_int_eq(mfs_migration_switch(fs, NULL), -ECANCELED);
	ck_assert_int_eq(mfs_migration_cancel(fs, NULL), 0);

	mfs_mutex_lock(&h.lock);
	h.released = true;
	mfs_cond_broadcast(&h.cond);
	mfs_mutex_unlock(&h.lock);
	wait_for(MFS_MIG_CANCELLED);
	mfs_migration_status(fs, NULL, &st);
	ck_assert(!st.paused);
	ck_assert_ptr_null(st.error);
	mfs_migration_status_clear(&st);
	ck_assert(!exists(dst, "disk.img"));
	mfs_cond_clear(&h.cond);
	mfs_mutex_clear(&h.lock);
}
END_TEST

static void assert_start_fails(const char *target, MfsMigOptions opts, const char *why)
{
	g_autofree char *error = NULL;
	g_autofree char *listing_before = NULL, *listing_after = NULL;
	g_autofree char *cmd = g_strdup_printf("ls -laR '%s'", dst);

	g_spawn_command_line_sync(cmd, &listing_before, NULL, NULL, NULL);
	opts.target = target;
	ck_assert_int_lt(mfs_migration_start(fs, &opts, &error), 0);
	ck_assert_msg(error && strstr(error, why), "error '%s' lacks '%s'", error, why);
	g_spawn_command_line_sync(cmd, &listing_after, NULL, NULL, NULL);
	ck_assert_str_eq(listing_before, listing_after);
	ck_assert(!journal_says_switched(src));
}

START_TEST(test_bad_targets_change_nothing)
{
	g_autofree char *inside = g_build_filename(src, "sub", NULL);
	g_autofree char *file = g_build_filename(top, "plain", NULL);
	g_autofree char *clash = g_build_filename(dst, "disk.img", NULL);

	assert_start_fails(src, (MfsMigOptions){0}, "is the source");
	assert_start_fails(inside, (MfsMigOptions){0}, "inside the source");
	assert_start_fails(top, (MfsMigOptions){0}, "contains the source");
	assert_start_fails("/nonexistent/x", (MfsMigOptions){0}, "No such file");
	ck_assert(g_file_set_contents(file, "", 0, NULL));
	assert_start_fails(file, (MfsMigOptions){0}, "not a directory");
	assert_start_fails(dst, (MfsMigOptions){.chunk_size = 3000}, "power of two");
	assert_start_fails(dst, (MfsMigOptions){.chunk_size = 1ull << 30}, "power of two");
	assert_start_fails(NULL, (MfsMigOptions){0}, "no target");
	ck_assert(g_file_set_contents(clash, "someone else's", -1, NULL));
	assert_start_fails(dst, (MfsMigOptions){0}, "already holds 'disk.img'");
	/* With overwrite, the same target is accepted and the clash replaced. */
	start(&(MfsMigOptions){.overwrite = true});
	wait_for(MFS_MIG_SWITCHED);
	assert_trees_equal(src, dst);
}
END_TEST

START_TEST(test_delete_source)
{
	g_autoptr(GDir) d = NULL;
	const char *name;
	unsigned left = 0;

	start(&(MfsMigOptions){.delete_source = true});
	wait_for(MFS_MIG_SWITCHED);
	d = g_dir_open(src, 0, NULL);
	while ((name = g_dir_read_name(d)))
		if (strcmp(name, MFS_JOURNAL_NAME) != 0) {
			fprintf(stderr, "left in the source: %s\n", name);
			left++;
		}
	ck_assert_uint_eq(left, 0);
	ck_assert(journal_says_switched(src));
	ck_assert(exists(dst, "disk.img"));
}
END_TEST

START_TEST(test_restart_reuses_own_partial_target)
{
	g_autofree char *error = NULL;
	g_autofree char *partial = g_build_filename(dst, "disk.img", NULL);
	g_autofree char *jpath = g_build_filename(dst, MFS_JOURNAL_NAME, NULL);
	g_autofree char *real_src = realpath(src, NULL);
	g_autofree char *jtext =
	    g_strdup_printf("[migration]\nstate=copying\nsource=%s\ntarget=%s\n", real_src, dst);

	/* What a crash mid-copy leaves: the journal and a partial, stale file. */
	ck_assert(g_file_set_contents(jpath, jtext, -1, NULL));
	write_file(dst, "disk.img", 100 * CHUNK, 9);
	start(NULL); /* no "already holds" refusal: the journal says it is ours */
	wait_for(MFS_MIG_SWITCHED);
	assert_trees_equal(src, dst);
	(void)partial;
	(void)error;
}
END_TEST

/* --- reuse and overwrite: the target's old names (issue 17, defects 6 and 10) */

static void start_to(const char *target, MfsMigOptions opts)
{
	g_autofree char *error = NULL;

	opts.target = target;
	opts.chunk_size = CHUNK;
	ck_assert_msg(mfs_migration_start(fs, &opts, &error) == 0, "%s", error);
}

/* What a crash mid-copy leaves: a "copying" journal naming our source. */
/* An earlier run's journal; @keep: its list of the operator's names ("a;b;"), or none. */
static void plant_journal_keeping(const char *keep)
{
	g_autofree char *jpath = g_build_filename(dst, MFS_JOURNAL_NAME, NULL);
	g_autofree char *real_src = realpath(src, NULL);
	g_autofree char *jtext =
	    g_strdup_printf("[migration]\nstate=copying\nsource=%s\ntarget=%s\n%s%s\n", real_src,
	                    dst, keep ? "keep=" : "", keep ? keep : "");

	ck_assert(g_file_set_contents(jpath, jtext, -1, NULL));
}

/* An earlier run's journal, of a target that held nothing of the operator's. */
static void plant_own_journal(void)
{
	plant_journal_keeping("");
}

static void mkdir_in(const char *dir, const char *name)
{
	g_autofree char *path = g_build_filename(dir, name, NULL);

	ck_assert_int_eq(mkdir(path, 0755), 0);
}

static void link_in(const char *dir, const char *from, const char *to)
{
	g_autofree char *a = g_build_filename(dir, from, NULL);
	g_autofree char *b = g_build_filename(dir, to, NULL);

	ck_assert_int_eq(link(a, b), 0);
}

static void assert_same_inode(const char *dir, const char *a, const char *b, bool same)
{
	g_autofree char *pa = g_build_filename(dir, a, NULL);
	g_autofree char *pb = g_build_filename(dir, b, NULL);
	struct stat sa, sb;

	ck_assert_int_eq(lstat(pa, &sa), 0);
	ck_assert_int_eq(lstat(pb, &sb), 0);
	ck_assert_msg((sa.st_ino == sb.st_ino) == same, "%s and %s: %s", pa, pb,
	              same ? "not one file" : "one file");
}

static void assert_file_holds(const char *dir, const char *name, const char *want)
{
	g_autofree char *path = g_build_filename(dir, name, NULL);
	g_autofree char *text = NULL;

	ck_assert(g_file_get_contents(path, &text, NULL, NULL));
	ck_assert_str_eq(text, want);
}

/* Restart: names the source no longer has are not brought back. */
START_TEST(test_reuse_drops_names_the_source_lost)
{
	plant_own_journal();
	write_file(dst, "deleted.img", 3 * CHUNK, 5);
	mkdir_in(dst, "olddir");
	write_file(dst, "olddir/x", 10, 5);
	mkdir_in(dst, "sub");
	write_file(dst, "sub/gone.conf", 10, 5);
	write_file(dst, "disk.img", 7 * CHUNK, 9);
	start(NULL);
	wait_for(MFS_MIG_SWITCHED);
	ck_assert(!exists(dst, "deleted.img"));
	ck_assert(!exists(dst, "olddir"));
	ck_assert(!exists(dst, "sub/gone.conf"));
	assert_trees_equal(src, dst);
}
END_TEST

/* Restart: the operator's names beside the copy stay, whatever the source lost. */
START_TEST(test_reuse_keeps_the_operators_names)
{
	plant_journal_keeping("mine.txt;");
	write_file(dst, "mine.txt", 10, 3);
	write_file(dst, "deleted.img", 3 * CHUNK, 5);
	mkdir_in(dst, "sub");
	write_file(dst, "sub/gone.conf", 10, 5);
	start(NULL);
	wait_for(MFS_MIG_SWITCHED);
	ck_assert(exists(dst, "mine.txt"));
	ck_assert(!exists(dst, "deleted.img"));
	ck_assert(!exists(dst, "sub/gone.conf"));
}
END_TEST

/* Restart after a journal without that list (older): no root name goes. */
START_TEST(test_reuse_of_an_older_journal_keeps_root_names)
{
	plant_journal_keeping(NULL);
	write_file(dst, "mine.txt", 10, 3);
	mkdir_in(dst, "sub");
	write_file(dst, "sub/gone.conf", 10, 5);
	start(NULL);
	wait_for(MFS_MIG_SWITCHED);
	ck_assert(exists(dst, "mine.txt"));
	ck_assert(!exists(dst, "sub/gone.conf"));
}
END_TEST

/* Restart: target names linked together, or not, are made to match the source. */
START_TEST(test_reuse_fixes_wrong_links)
{
	plant_own_journal();
	/* "empty" and "sub/vm.conf" are distinct in the source, one file here. */
	write_file(dst, "empty", 50, 5);
	mkdir_in(dst, "sub");
	link_in(dst, "empty", "sub/vm.conf");
	/* "sub/alias.img" is disk.img's link in the source, a file of its own here. */
	write_file(dst, "disk.img", 2 * CHUNK, 9);
	write_file(dst, "sub/alias.img", 3 * CHUNK, 7);
	start(NULL);
	wait_for(MFS_MIG_SWITCHED);
	assert_trees_equal(src, dst);
	assert_same_inode(dst, "empty", "sub/vm.conf", false);
	assert_same_inode(dst, "disk.img", "sub/alias.img", true);
}
END_TEST

/* Restart: a name of the wrong type is replaced; a planted symlink is not followed. */
START_TEST(test_reuse_replaces_wrong_types)
{
	g_autofree char *outside = g_build_filename(top, "outside", NULL);
	g_autofree char *sub = g_build_filename(dst, "sub", NULL);
	g_autofree char *empty = g_build_filename(dst, "empty", NULL);

	plant_own_journal();
	ck_assert_int_eq(mkdir(outside, 0755), 0);
	write_file(outside, "vm.conf", 20, 3);
	ck_assert_int_eq(symlink(outside, sub), 0);
	mkdir_in(dst, "disk.img");
	write_file(dst, "disk.img/inner", 10, 3);
	ck_assert_int_eq(symlink(outside, empty), 0);
	write_file(dst, "link", 10, 3);
	start(NULL);
	wait_for(MFS_MIG_SWITCHED);
	assert_trees_equal(src, dst);
	/* The planted symlink's target is untouched. */
	ck_assert(!exists(outside, "alias.img"));
	ck_assert(!exists(outside, "fifo"));
	{
		g_autofree char *text = NULL;
		g_autofree char *path = g_build_filename(outside, "vm.conf", NULL);
		struct stat st;
		gsize len;

		ck_assert(g_file_get_contents(path, &text, &len, NULL));
		ck_assert_uint_eq(len, 20);
		ck_assert_int_eq(stat(outside, &st), 0);
		ck_assert_uint_eq(st.st_mode & 07777, 0755);
	}
}
END_TEST

/* Overwrite: a target file linked to a backup outside the target leaves the backup alone. */
START_TEST(test_overwrite_spares_a_linked_backup)
{
	g_autofree char *backup = g_build_filename(top, "backup.img", NULL);
	g_autofree char *target_disk = g_build_filename(dst, "disk.img", NULL);
	g_autofree char *unrelated = g_build_filename(dst, "unrelated", NULL);

	write_file(top, "backup.img", 5 * CHUNK, 42);
	ck_assert_int_eq(link(backup, target_disk), 0);
	ck_assert(g_file_set_contents(unrelated, "not ours", -1, NULL));
	start(&(MfsMigOptions){.overwrite = true});
	wait_for(MFS_MIG_SWITCHED);
	{
		g_autofree char *text = NULL;
		gsize len;
		bool same = true;

		ck_assert(g_file_get_contents(backup, &text, &len, NULL));
		ck_assert_uint_eq(len, 5 * CHUNK);
		for (size_t i = 0; i < len; i++)
			same &= (unsigned char)text[i] == (unsigned char)(i * 31 + 42);
		ck_assert_msg(same, "the backup was written through");
	}
	/* Not an image of the source: unrelated root names stay. */
	assert_file_holds(dst, "unrelated", "not ours");
	ck_assert_int_eq(unlink(unrelated), 0);
	assert_trees_equal(src, dst);
}
END_TEST

/* Overwrite: two target names linked together become two files. */
START_TEST(test_overwrite_splits_linked_names)
{
	write_file(dst, "empty", 50, 5);
	mkdir_in(dst, "sub");
	link_in(dst, "empty", "sub/vm.conf");
	write_file(dst, "sub/stale", 5, 5);
	start(&(MfsMigOptions){.overwrite = true});
	wait_for(MFS_MIG_SWITCHED);
	ck_assert(!exists(dst, "sub/stale"));
	assert_trees_equal(src, dst);
	assert_same_inode(dst, "empty", "sub/vm.conf", false);
}
END_TEST

/* Overwrite onto a full copy of a source with hard links (failed with EEXIST). */
START_TEST(test_overwrite_a_copy_with_hard_links)
{
	g_autofree char *cmd = g_strdup_printf("cp -a '%s/.' '%s/'", src, dst);
	g_autofree char *disk = g_build_filename(src, "disk.img", NULL);
	int fd;

	ck_assert_int_eq(system(cmd), 0);
	/* The copy is now stale (written in place: the link must stay). */
	fd = open(disk, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, "changed", 7, 5 * CHUNK), 7);
	close(fd);
	start(&(MfsMigOptions){.overwrite = true});
	wait_for(MFS_MIG_SWITCHED);
	assert_trees_equal(src, dst);
	assert_same_inode(dst, "disk.img", "sub/alias.img", true);
}
END_TEST

/* A -> B switched, names deleted on B, then B -> A (overwrite): none reappears. */
START_TEST(test_migrate_back_drops_names_deleted_meanwhile)
{
	MfsEntry e;

	start(NULL);
	wait_for(MFS_MIG_SWITCHED);
	ck_assert_int_eq(mfs_unlink(fs, mfs_root(fs), "empty"), 0);
	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "sub", &e), 0);
	ck_assert_int_eq(mfs_unlink(fs, e.inode, "vm.conf"), 0);
	mfs_forget(fs, e.inode, 1);
	ck_assert(exists(src, "empty"));
	start_to(src, (MfsMigOptions){.overwrite = true});
	wait_for(MFS_MIG_SWITCHED);
	ck_assert(!exists(src, "empty"));
	ck_assert(!exists(src, "sub/vm.conf"));
	assert_trees_equal(dst, src);
}
END_TEST

/* Stress: threads own stripes of a file and write them while it migrates. */
#define STRIPES 4
#define STRIPE  (16 * CHUNK)

typedef struct {
	MfsFile *file;
	unsigned char model[STRIPE];
	int id;
	guint32 seed;
	volatile gint *stop;
} StripeJob;

static gpointer stripe_writer(gpointer data)
{
	StripeJob *job = data;
	GRand *rand = g_rand_new_with_seed(job->seed);
	unsigned char buf[2 * CHUNK];

	while (!g_atomic_int_get(job->stop)) {
		size_t len = g_rand_int_range(rand, 1, sizeof(buf));
		off_t off = g_rand_int_range(rand, 0, STRIPE - len + 1);

		for (size_t i = 0; i < len; i++)
			buf[i] = (unsigned char)g_rand_int(rand);
		ck_assert_int_eq(
		    mfs_file_write(fs, job->file, buf, len, (off_t)job->id * STRIPE + off), len);
		memcpy(job->model + off, buf, len);
	}
	g_rand_free(rand);
	return NULL;
}

START_TEST(test_stress_writers_across_the_switch)
{
	const char *env = getenv("MFS_SEED");
	guint32 seed = (env ? (guint32)atoi(env) : (guint32)time(NULL)) + (guint32)_i * 7919u;
	g_autofree char *dst_disk = g_build_filename(dst, "disk.img", NULL);
	g_autofree char *content = NULL;
	StripeJob jobs[STRIPES];
	GThread *threads[STRIPES];
	volatile gint stop = 0;
	MfsEntry e;
	gsize len;

	printf("stress seed %u\n", seed);
	write_file(src, "disk.img", STRIPES * STRIPE, 0);
	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "disk.img", &e), 0);
	for (int t = 0; t < STRIPES; t++) {
		jobs[t] = (StripeJob){.id = t, .seed = seed + t, .stop = &stop};
		ck_assert_int_eq(mfs_open(fs, e.inode, O_RDWR, &jobs[t].file), 0);
		for (size_t i = 0; i < STRIPE; i++)
			jobs[t].model[i] = (unsigned char)((t * STRIPE + i) * 31);
		threads[t] = g_thread_new("stripe", stripe_writer, &jobs[t]);
	}
	start(NULL);
	wait_for(MFS_MIG_SWITCHED);
	g_usleep(20000); /* some writes after the switch too */
	g_atomic_int_set(&stop, 1);
	for (int t = 0; t < STRIPES; t++)
		g_thread_join(threads[t]);
	ck_assert(g_file_get_contents(dst_disk, &content, &len, NULL));
	ck_assert_uint_eq(len, STRIPES * STRIPE);
	for (int t = 0; t < STRIPES; t++) {
		ck_assert_mem_eq(content + t * STRIPE, jobs[t].model, STRIPE);
		mfs_release(fs, jobs[t].file);
	}
	mfs_forget(fs, e.inode, 1);
}
END_TEST

static Suite *migration_suite(void)
{
	Suite *s = suite_create("migration");
	TCase *tc = tcase_create("job");
	TCase *stress = tcase_create("stress");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_tree_is_copied_and_switched);
	tcase_add_test(tc, test_a_pause_lends_no_speed);
	tcase_add_test(tc, test_switch_repoints_open_handles);
	tcase_add_test(tc, test_changes_during_copy_are_mirrored);
	tcase_add_test(tc, test_times_of_every_object);
	tcase_add_test(tc, test_times_follow_mirrored_changes);
	tcase_add_loop_test(tc, test_copier_rests_for_a_busy_guest, 0, 5);
	tcase_add_loop_test(tc, test_chunk_grows_only_while_the_guest_is_idle, 0, 3);
	tcase_add_test(tc, test_reused_inode_numbers);
	tcase_add_test(tc, test_cancel_cleans_the_target);
	tcase_add_test(tc, test_a_cancel_under_way_refuses_the_rest);
	tcase_add_test(tc, test_control_refuses_what_makes_no_sense);
	tcase_add_test(tc, test_bad_targets_change_nothing);
	tcase_add_test(tc, test_delete_source);
	tcase_add_test(tc, test_restart_reuses_own_partial_target);
	tcase_add_test(tc, test_reuse_drops_names_the_source_lost);
	tcase_add_test(tc, test_reuse_keeps_the_operators_names);
	tcase_add_test(tc, test_reuse_of_an_older_journal_keeps_root_names);
	tcase_add_test(tc, test_reuse_fixes_wrong_links);
	tcase_add_test(tc, test_reuse_replaces_wrong_types);
	tcase_add_test(tc, test_overwrite_spares_a_linked_backup);
	tcase_add_test(tc, test_overwrite_splits_linked_names);
	tcase_add_test(tc, test_overwrite_a_copy_with_hard_links);
	tcase_add_test(tc, test_migrate_back_drops_names_deleted_meanwhile);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(stress, setup, teardown);
	tcase_set_timeout(stress, 60);
	tcase_add_loop_test(stress, test_stress_writers_across_the_switch, 0, 10);
	suite_add_tcase(s, stress);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(migration_suite());
	int failed;

	/* Quiet: the engine logs every state change. */
	g_log_set_writer_func(g_log_writer_default, NULL, NULL);
	g_setenv("G_MESSAGES_DEBUG", "", TRUE);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
