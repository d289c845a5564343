/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests of lib/mig-names.c: the names of the states, one list. */
#include "mig-names.h"

#include <check.h>
#include <errno.h>
#include <glib.h>
#include <string.h>

/* What a status has always said, in this order (mirrorfs-status(1)); new ones at the end. */
static const char *const reported[] = {"idle",      "copying",     "paused", "mirrored",
                                       "switching", "switched",    "failed", "cancelled",
                                       "stopped",   "error-paused"};

START_TEST(test_the_list)
{
	unsigned i;

	for (i = 0; mfs_mig_status_name_at(i); i++) {
		ck_assert_uint_lt(i, G_N_ELEMENTS(reported));
		ck_assert_str_eq(mfs_mig_status_name_at(i), reported[i]);
	}
	ck_assert_uint_eq(i, G_N_ELEMENTS(reported));
}
END_TEST

START_TEST(test_there_and_back)
{
	for (unsigned i = 0; mfs_mig_status_name_at(i); i++) {
		const char *name = mfs_mig_status_name_at(i);
		MfsMigState state;
		bool paused;

		ck_assert_int_eq(mfs_mig_state_from_name(name, &state, &paused), 0);
		ck_assert_str_eq(mfs_mig_status_name(state, paused, !strcmp(name, "error-paused")),
		                 name);
		ck_assert(paused == (!strcmp(name, "paused") || !strcmp(name, "error-paused")));
		if (!paused)
			ck_assert_str_eq(mfs_mig_state_name(state), name);
	}
	ck_assert_str_eq(mfs_mig_status_name(MFS_MIG_COPYING, true, false), "paused");
	ck_assert_str_eq(mfs_mig_status_name(MFS_MIG_COPYING, true, true), "error-paused");
	ck_assert_str_eq(mfs_mig_state_name(MFS_MIG_COPYING), "copying");
	ck_assert_str_eq(mfs_mig_state_name((MfsMigState)99), "unknown");
	ck_assert_int_eq(mfs_mig_state_from_name("Switched", NULL, NULL), -EINVAL);
	ck_assert_int_eq(mfs_mig_state_from_name("", NULL, NULL), -EINVAL);
	ck_assert_int_eq(mfs_mig_state_from_name("unknown", NULL, NULL), -EINVAL);
}
END_TEST

START_TEST(test_kinds_of_state)
{
	static const struct {
		MfsMigState state;
		bool running, terminal, mirrored;
		int step;
	} cases[] = {
	    {MFS_MIG_IDLE, false, false, false, 0},      {MFS_MIG_COPYING, true, false, false, 1},
	    {MFS_MIG_MIRRORED, true, false, true, 2},    {MFS_MIG_SWITCHING, true, false, true, 3},
	    {MFS_MIG_SWITCHED, false, true, true, 4},    {MFS_MIG_FAILED, false, true, false, -1},
	    {MFS_MIG_CANCELLED, false, true, false, -1}, {MFS_MIG_STOPPED, false, true, false, -1},
	};

	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		MfsMigState s = cases[i].state;

		ck_assert_msg(mfs_mig_state_running(s) == cases[i].running, "%s",
		              mfs_mig_state_name(s));
		ck_assert_msg(mfs_mig_state_terminal(s) == cases[i].terminal, "%s",
		              mfs_mig_state_name(s));
		ck_assert_msg(mfs_mig_state_mirrored(s) == cases[i].mirrored, "%s",
		              mfs_mig_state_name(s));
		ck_assert_int_eq(mfs_mig_state_step(s), cases[i].step);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mig-names");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_the_list);
	tcase_add_test(tc, test_there_and_back);
	tcase_add_test(tc, test_kinds_of_state);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
