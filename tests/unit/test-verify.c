/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The verify pass (start --verify, issue 22): once mirrored, both sides
 * of every file are compared before the switch; a difference is reported
 * by file and offset and refuses the switch, automatic or asked for; a
 * switch asked for while it runs waits for it.
 */
#define _GNU_SOURCE
#include "migration-fixture.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static MfsMigVerify verify_state(MfsMigStatus *out)
{
	mfs_migration_status(fs, NULL, out);
	return out->verify;
}

/* Wait until the verify pass has ended: passed or failed. */
static MfsMigVerify wait_verified(void)
{
	for (int i = 0; i < 3000; i++) {
		MfsMigStatus st;
		MfsMigVerify v = verify_state(&st);

		mfs_migration_status_clear(&st);
		if (v == MFS_MIG_VERIFY_PASSED || v == MFS_MIG_VERIFY_FAILED)
			return v;
		g_usleep(10 * 1000);
	}
	ck_abort_msg("the verify pass did not end");
	return MFS_MIG_VERIFY_NONE;
}

/* At "mirrored", before the pass: the target changes behind the mirror's back. */
static void corrupt_the_target(Mfs *hfs, const char *point, void *opaque)
{
	g_autofree char *path = g_build_filename(dst, "disk.img", NULL);
	int fd;

	(void)hfs, (void)opaque;
	if (strcmp(point, "mirrored") != 0)
		return;
	fd = open(path, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, "X", 1, 3 * CHUNK + 5), 1);
	close(fd);
}

/* A switch asked for during the pass waits for it. */
static void switch_during_the_pass(Mfs *hfs, const char *point, void *opaque)
{
	int *seen = opaque;

	if (strcmp(point, "verify-chunk") == 0 && (*seen)++ == 0)
		ck_assert_int_eq(mfs_migration_switch(hfs, NULL), -EINPROGRESS);
}

START_TEST(test_a_clean_copy_verifies_and_switches)
{
	MfsMigStatus st;
	int seen = 0;

	start(&(MfsMigOptions){.manual_switch = true,
	                       .verify = true,
	                       .hook = switch_during_the_pass,
	                       .hook_opaque = &seen});
	ck_assert_int_eq(verify_state(&st), MFS_MIG_VERIFY_PENDING);
	mfs_migration_status_clear(&st);
	ck_assert_int_eq(wait_verified(), MFS_MIG_VERIFY_PASSED);
	ck_assert_int_gt(seen, 0);
	verify_state(&st);
	ck_assert_uint_ge(st.verify_bytes, 40 * CHUNK);
	ck_assert_uint_eq(st.mismatches, 0);
	ck_assert_ptr_null(st.mismatch);
	mfs_migration_status_clear(&st);
	ck_assert_int_eq(mfs_migration_switch(fs, NULL), 0);
	wait_for(MFS_MIG_SWITCHED);
	assert_trees_equal(src, dst);
}
END_TEST

START_TEST(test_a_difference_refuses_the_switch)
{
	MfsMigStatus st;

	/* switch=auto: it would switch by itself. */
	start(&(MfsMigOptions){.verify = true, .hook = corrupt_the_target});
	ck_assert_int_eq(wait_verified(), MFS_MIG_VERIFY_FAILED);
	verify_state(&st);
	ck_assert_uint_eq(st.mismatches, 1);
	ck_assert_str_eq(st.mismatch, "disk.img at offset 12293");
	ck_assert_int_eq(st.state, MFS_MIG_MIRRORED);
	mfs_migration_status_clear(&st);
	/* Not by itself, nor when asked: only a cancel ends it. */
	ck_assert_int_eq(mfs_migration_wait(fs, NULL, MFS_MIG_SWITCHED, 300), MFS_MIG_MIRRORED);
	ck_assert_int_eq(mfs_migration_switch(fs, NULL), -EBADMSG);
	ck_assert_int_eq(mfs_migration_cancel(fs, NULL), 0);
	wait_for(MFS_MIG_CANCELLED);
	ck_assert(!journal_says_switched(src));
}
END_TEST

/* Without verify, nothing is compared and the status says none was asked for. */
START_TEST(test_no_verify_by_default)
{
	MfsMigStatus st;

	start(NULL);
	wait_for(MFS_MIG_SWITCHED);
	ck_assert_int_eq(verify_state(&st), MFS_MIG_VERIFY_NONE);
	ck_assert_uint_eq(st.verify_bytes, 0);
	mfs_migration_status_clear(&st);
}
END_TEST

/*
 * During the pass, a guest's write the target refuses (on_target_error=
 * stop): the job goes back to copying, held; resumed after the fix, it
 * copies again, verifies again from the start, and switches.
 */
static void refuse_a_write_during_the_pass(Mfs *hfs, const char *point, void *opaque)
{
	int *seen = opaque;
	char block[CHUNK];
	MfsEntry e;
	MfsFile *h;

	if (strcmp(point, "verify-chunk") != 0 || (*seen)++ != 0)
		return;
	if (!set_target_immutable("disk.img", true))
		return;
	memset(block, 'v', sizeof(block));
	ck_assert_int_eq(mfs_lookup(hfs, mfs_root(hfs), "disk.img", &e), 0);
	ck_assert_int_eq(mfs_open(hfs, e.inode, O_RDWR, &h), 0);
	ck_assert_int_eq(mfs_file_write(hfs, h, block, sizeof(block), 2 * CHUNK), CHUNK);
	mfs_release(hfs, h);
	mfs_forget(hfs, e.inode, 1);
}

START_TEST(test_a_held_error_during_the_pass_verifies_again)
{
	MfsMigStatus st;
	int seen = 0;

	start(&(MfsMigOptions){.verify = true,
	                       .stop_on_target_error = true,
	                       .hook = refuse_a_write_during_the_pass,
	                       .hook_opaque = &seen});
	for (int i = 0; i < 3000; i++) {
		bool held;

		mfs_migration_status(fs, NULL, &st);
		held = st.held;
		mfs_migration_status_clear(&st);
		if (held || mfs_migration_wait(fs, NULL, MFS_MIG_SWITCHED, 0) == MFS_MIG_SWITCHED)
			break;
		g_usleep(10 * 1000);
	}
	mfs_migration_status(fs, NULL, &st);
	if (!st.held) {
		mfs_migration_status_clear(&st);
		fprintf(stderr, "test-verify: the target cannot be made immutable here: skipped\n");
		return;
	}
	mfs_migration_status_clear(&st);
	ck_assert(set_target_immutable("disk.img", false));
	ck_assert_int_eq(mfs_migration_resume(fs, NULL), 0);
	wait_for(MFS_MIG_SWITCHED);
	mfs_migration_status(fs, NULL, &st);
	ck_assert_int_eq(st.verify, MFS_MIG_VERIFY_PASSED);
	mfs_migration_status_clear(&st);
	assert_trees_equal(src, dst);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("verify");
	TCase *tc = tcase_create("verify");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_a_clean_copy_verifies_and_switches);
	tcase_add_test(tc, test_a_difference_refuses_the_switch);
	tcase_add_test(tc, test_no_verify_by_default);
	tcase_add_test(tc, test_a_held_error_during_the_pass_verifies_again);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
