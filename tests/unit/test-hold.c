/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * on_target_error=stop (issue 22): a target that refuses writes pauses the
 * job instead of ending it.  The failure is real: the target file made
 * immutable (FS_IMMUTABLE_FL), which fails every write to it, through
 * descriptors opened before too, with EPERM.  The guest's writes succeed
 * all along; the file copies again only from where the target may be
 * wrong; a resume after the fix carries on to the switch, and the target
 * then holds every write.
 */
#define _GNU_SOURCE
#include "checkpoint.h"
#include "migration-fixture.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Whether the target's file system takes the immutable flag at all. */
static bool flags_work(void)
{
	bool ok;

	write_file(dst, "probe", 1, 1);
	ok = set_target_immutable("probe", true);
	if (ok)
		ck_assert(set_target_immutable("probe", false));
	ck_assert(exists(dst, "probe"));
	{
		g_autofree char *path = g_build_filename(dst, "probe", NULL);

		ck_assert_int_eq(unlink(path), 0);
	}
	if (!ok)
		fprintf(stderr, "test-hold: the target cannot be made immutable here: skipped\n");
	return ok;
}

static void status(MfsMigStatus *st)
{
	mfs_migration_status(fs, NULL, st);
}

static off_t cursor_of(const MfsMigStatus *st, const char *path)
{
	for (unsigned i = 0; i < st->n_files; i++)
		if (strcmp(st->files[i].path, path) == 0)
			return st->files[i].cp_offset;
	ck_abort_msg("%s is not in the status", path);
	return -1;
}

/* Wait until the job is paused on a target error. */
static void wait_held(void)
{
	for (int i = 0; i < 3000; i++) {
		MfsMigStatus st;
		bool held;

		status(&st);
		held = st.held;
		mfs_migration_status_clear(&st);
		if (held)
			return;
		g_usleep(10 * 1000);
	}
	ck_abort_msg("the job was not held");
}

/* The checkpoint record's cursor of @path, or 0 when it has none. */
static uint64_t recorded_cursor(const char *path)
{
	g_auto(Checkpoints) c = {0};
	int dfd = open(dst, O_PATH | O_DIRECTORY | O_CLOEXEC);
	uint64_t cursor = 0;

	if (checkpoints_read(dfd, &c) == 0)
		for (guint i = 0; i < c.files->len; i++)
			if (strcmp(g_array_index(c.files, CheckpointFile, i).path, path) == 0)
				cursor = g_array_index(c.files, CheckpointFile, i).cursor;
	close(dfd);
	return cursor;
}

static MfsFile *open_disk(MfsEntry *e)
{
	MfsFile *h;

	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "disk.img", e), 0);
	ck_assert_int_eq(mfs_open(fs, e->inode, O_RDWR, &h), 0);
	return h;
}

/* Switch the mirrored job, let the guest's file go, and compare both sides. */
static void switch_and_compare(MfsFile *h, MfsEntry *e)
{
	ck_assert_int_eq(mfs_migration_switch(fs, NULL), 0);
	wait_for(MFS_MIG_SWITCHED);
	mfs_release(fs, h);
	mfs_forget(fs, e->inode, 1);
	assert_trees_equal(src, dst);
}

/* A mirrored write the target refuses: the guest goes on, the job waits, nothing is lost. */
START_TEST(test_a_refused_mirrored_write_holds_the_job)
{
	char block[CHUNK];
	MfsMigStatus st;
	MfsEntry e;
	MfsFile *h;
	uint64_t copied;

	if (!flags_work())
		return;
	start(&(MfsMigOptions){.manual_switch = true, .stop_on_target_error = true});
	wait_for(MFS_MIG_MIRRORED);
	ck_assert(set_target_immutable("disk.img", true));
	h = open_disk(&e);
	memset(block, 'a', sizeof(block));
	/* The guest's write succeeds: on the source. */
	ck_assert_int_eq(mfs_file_write(fs, h, block, sizeof(block), 5 * CHUNK), CHUNK);
	status(&st);
	ck_assert(st.held);
	ck_assert(st.paused);
	ck_assert_int_eq(st.state, MFS_MIG_COPYING);
	ck_assert_ptr_nonnull(strstr(st.error, "disk.img"));
	ck_assert_ptr_nonnull(strstr(st.error, g_strerror(EPERM)));
	/* Copied again from the write, not from 0. */
	ck_assert_int_eq(cursor_of(&st, "disk.img"), 5 * CHUNK);
	copied = st.bytes_copied;
	mfs_migration_status_clear(&st);
	/* A crash now would not trust the target above the write. */
	ck_assert_uint_le(recorded_cursor("disk.img"), 5 * CHUNK);
	/* Above the cursor now: the source only, and no error. */
	memset(block, 'b', sizeof(block));
	ck_assert_int_eq(mfs_file_write(fs, h, block, sizeof(block), 20 * CHUNK), CHUNK);
	/* A switch is refused while it waits; the fix, then a resume, carry on. */
	ck_assert_int_eq(mfs_migration_switch(fs, NULL), -EBUSY);
	ck_assert(set_target_immutable("disk.img", false));
	ck_assert_int_eq(mfs_migration_resume(fs, NULL), 0);
	wait_for(MFS_MIG_MIRRORED);
	status(&st);
	ck_assert(!st.held);
	ck_assert_ptr_null(st.error);
	/* The rest of the file from the write on, and nothing before it. */
	ck_assert_uint_le(st.bytes_copied - copied, 40 * CHUNK + 123 - 5 * CHUNK);
	mfs_migration_status_clear(&st);
	switch_and_compare(h, &e);
}
END_TEST

/* The copier's own write refused: it waits at its chunk, then copies it. */
static void refuse_after_two_chunks(Mfs *hfs, const char *point, void *opaque)
{
	int *chunks = opaque;

	(void)hfs;
	if (strcmp(point, "chunk") == 0 && ++*chunks == 2)
		ck_assert(set_target_immutable("disk.img", true));
}

START_TEST(test_a_refused_copy_holds_the_job)
{
	MfsMigStatus st;
	int chunks = 0;
	off_t cursor;

	if (!flags_work())
		return;
	start(&(MfsMigOptions){
	    .stop_on_target_error = true, .hook = refuse_after_two_chunks, .hook_opaque = &chunks});
	wait_held();
	status(&st);
	ck_assert(st.held);
	cursor = cursor_of(&st, "disk.img");
	ck_assert_int_lt(cursor, 40 * CHUNK);
	ck_assert_int_gt(cursor, 0);
	ck_assert_ptr_nonnull(strstr(st.error, "disk.img"));
	mfs_migration_status_clear(&st);
	/* Resumed while still refused: held again, where it was. */
	ck_assert_int_eq(mfs_migration_resume(fs, NULL), 0);
	wait_held();
	status(&st);
	ck_assert_int_eq(cursor_of(&st, "disk.img"), cursor);
	mfs_migration_status_clear(&st);
	ck_assert(set_target_immutable("disk.img", false));
	ck_assert_int_eq(mfs_migration_resume(fs, NULL), 0);
	wait_for(MFS_MIG_SWITCHED);
	assert_trees_equal(src, dst);
}
END_TEST

/*
 * A hold and its resume, both while the copier thread has not yet looked
 * again since it found everything mirrored: it must copy again, not take
 * the job's COPYING for a stop (which cancelled the job: seen once in 20
 * runs of the test above under load).  The hook holds the copier thread
 * at "mirrored" while this one writes, is held, fixes and resumes.
 */
/* pthread's, not GLib's: ThreadSanitizer sees these (GLib's futexes it does not). */
typedef struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool arrived, go;
} Barrier;

static void hold_at_mirrored(Mfs *hfs, const char *point, void *opaque)
{
	Barrier *b = opaque;

	(void)hfs;
	if (strcmp(point, "mirrored") != 0)
		return;
	pthread_mutex_lock(&b->lock);
	if (!b->arrived) {
		b->arrived = true;
		pthread_cond_broadcast(&b->cond);
		while (!b->go)
			pthread_cond_wait(&b->cond, &b->lock);
	}
	pthread_mutex_unlock(&b->lock);
}

START_TEST(test_a_hold_and_resume_before_the_copier_looks)
{
	Barrier b = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false};
	char block[CHUNK];
	MfsEntry e;
	MfsFile *h;

	if (!flags_work())
		return;
	start(&(MfsMigOptions){.manual_switch = true,
	                       .stop_on_target_error = true,
	                       .hook = hold_at_mirrored,
	                       .hook_opaque = &b});
	pthread_mutex_lock(&b.lock);
	while (!b.arrived)
		pthread_cond_wait(&b.cond, &b.lock);
	pthread_mutex_unlock(&b.lock);
	ck_assert(set_target_immutable("disk.img", true));
	h = open_disk(&e);
	memset(block, 'c', sizeof(block));
	ck_assert_int_eq(mfs_file_write(fs, h, block, sizeof(block), 3 * CHUNK), CHUNK);
	wait_held();
	ck_assert(set_target_immutable("disk.img", false));
	ck_assert_int_eq(mfs_migration_resume(fs, NULL), 0);
	pthread_mutex_lock(&b.lock);
	b.go = true;
	pthread_cond_broadcast(&b.cond);
	pthread_mutex_unlock(&b.lock);
	wait_for(MFS_MIG_MIRRORED);
	switch_and_compare(h, &e);
}
END_TEST

/* abort stays the default: the same refusal ends the job. */
START_TEST(test_abort_is_the_default)
{
	char block[CHUNK] = {0};
	MfsEntry e;
	MfsFile *h;

	if (!flags_work())
		return;
	start(&(MfsMigOptions){.manual_switch = true});
	wait_for(MFS_MIG_MIRRORED);
	ck_assert(set_target_immutable("disk.img", true));
	h = open_disk(&e);
	ck_assert_int_eq(mfs_file_write(fs, h, block, sizeof(block), 0), CHUNK);
	ck_assert(set_target_immutable("disk.img", false));
	wait_for(MFS_MIG_FAILED);
	mfs_release(fs, h);
	mfs_forget(fs, e.inode, 1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("hold");
	TCase *tc = tcase_create("hold");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_a_refused_mirrored_write_holds_the_job);
	tcase_add_test(tc, test_a_refused_copy_holds_the_job);
	tcase_add_test(tc, test_abort_is_the_default);
	tcase_add_test(tc, test_a_hold_and_resume_before_the_copier_looks);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
