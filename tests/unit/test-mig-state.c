/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of lib/mig-state.c: every (state, request) pair of the
 * migration job's state machine, one test each, against the behaviour the
 * control protocol documents (doc/mirrorfsctl.1.rst); and the states the
 * status reports.
 */
#include "mig-state.h"

#include <check.h>
#include <glib.h>
#include <errno.h>
#include <string.h>

/*
 * What each request gets in each state: the state it leads to, or the
 * error.  Written out by name, as an operator reads it; MIRRORED's switch
 * depends on the switch mode and is tested apart.
 */
static const char *const expected[MIG_N_STATES][MIG_N_REQUESTS] = {
    /*                 pause        resume     speed        guest_share  switch     cancel */
    [MIG_COPYING] = {"paused", "EINVAL", "copying", "copying", "EBUSY", "stopping"},
    [MIG_PAUSED] = {"EALREADY", "copying", "paused", "paused", "EBUSY", "stopping"},
    [MIG_MIRRORED] = {"EINVAL", "EINVAL", "mirrored", "mirrored", NULL, "stopping"},
    [MIG_SWITCHING] = {"EINVAL", "EINVAL", "switching", "switching", "EINVAL", "EINVAL"},
    [MIG_COMMITTED] = {"EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL"},
    [MIG_SWITCHED] = {"EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL"},
    [MIG_STOPPING] = {"ECANCELED", "ECANCELED", "ECANCELED", "ECANCELED", "ECANCELED", "stopping"},
    [MIG_UNDOING] = {"ECANCELED", "ECANCELED", "ECANCELED", "ECANCELED", "ECANCELED", "undoing"},
    [MIG_CANCELLED] = {"EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EALREADY"},
    [MIG_STOPPED] = {"EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL"},
    [MIG_FAILED] = {"EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL"},
};

static const char *outcome(int ret, MigState next)
{
	switch (ret) {
	case 0:
		return mig_state_name(next);
	case -EINVAL:
		return "EINVAL";
	case -EBUSY:
		return "EBUSY";
	case -EALREADY:
		return "EALREADY";
	case -ECANCELED:
		return "ECANCELED";
	default:
		return "other";
	}
}

/* _i: state * MIG_N_REQUESTS + request. */
START_TEST(test_request_in_state)
{
	MigState s = (MigState)(_i / MIG_N_REQUESTS);
	MigRequest r = (MigRequest)(_i % MIG_N_REQUESTS);

	for (int manual = 0; manual <= 1; manual++) {
		const char *want = expected[s][r];
		MigState next = MIG_N_STATES;
		int ret = mig_request_decide(s, r, manual, &next);

		if (!want) /* a switch when mirrored */
			want = manual ? "switching" : "EALREADY";
		ck_assert_msg(strcmp(outcome(ret, next), want) == 0,
		              "%s in %s (switch=%s): got %s, want %s", mig_request_name(r),
		              mig_state_name(s), manual ? "manual" : "auto", outcome(ret, next),
		              want);
		/* A refusal changes nothing. */
		if (ret < 0)
			ck_assert_int_eq(next, MIG_N_STATES);
	}
}
END_TEST

START_TEST(test_out_of_range)
{
	MigState next = MIG_N_STATES;

	ck_assert_int_eq(mig_request_decide(MIG_N_STATES, MIG_REQ_PAUSE, false, &next), -EINVAL);
	ck_assert_int_eq(mig_request_decide(MIG_COPYING, MIG_N_REQUESTS, false, &next), -EINVAL);
	ck_assert_int_eq(next, MIG_N_STATES);
	ck_assert_str_eq(mig_state_name(MIG_N_STATES), "unknown");
}
END_TEST

/* The status shows where a stopping job came from until it has ended. */
START_TEST(test_public_states)
{
	ck_assert_int_eq(mig_state_public(MIG_COPYING, 0), MFS_MIG_COPYING);
	ck_assert_int_eq(mig_state_public(MIG_PAUSED, 0), MFS_MIG_COPYING);
	ck_assert_int_eq(mig_state_public(MIG_MIRRORED, 0), MFS_MIG_MIRRORED);
	ck_assert_int_eq(mig_state_public(MIG_SWITCHING, 0), MFS_MIG_SWITCHING);
	ck_assert_int_eq(mig_state_public(MIG_COMMITTED, 0), MFS_MIG_SWITCHING);
	ck_assert_int_eq(mig_state_public(MIG_SWITCHED, 0), MFS_MIG_SWITCHED);
	ck_assert_int_eq(mig_state_public(MIG_STOPPING, MIG_MIRRORED), MFS_MIG_MIRRORED);
	ck_assert_int_eq(mig_state_public(MIG_STOPPING, MIG_PAUSED), MFS_MIG_COPYING);
	ck_assert_int_eq(mig_state_public(MIG_UNDOING, MIG_SWITCHING), MFS_MIG_SWITCHING);
	ck_assert_int_eq(mig_state_public(MIG_CANCELLED, MIG_COPYING), MFS_MIG_CANCELLED);
	ck_assert_int_eq(mig_state_public(MIG_FAILED, MIG_COPYING), MFS_MIG_FAILED);
}
END_TEST

/*
 * Mirrors stay on while a stopping job has not detached them; namespace
 * changes stop being mirrored as soon as it stops; only STOPPING and
 * UNDOING are stopping (a failure then does not change the outcome).
 */
START_TEST(test_predicates)
{
	static const struct {
		MigState s;
		bool live, mirrors, changes, stopping;
	} cases[] = {
	    {MIG_COPYING, true, true, true, false},      {MIG_PAUSED, true, true, true, false},
	    {MIG_MIRRORED, true, true, true, false},     {MIG_SWITCHING, true, true, true, false},
	    {MIG_COMMITTED, true, false, false, false},  {MIG_SWITCHED, false, false, false, false},
	    {MIG_STOPPING, true, true, false, true},     {MIG_UNDOING, true, false, false, true},
	    {MIG_CANCELLED, false, false, false, false}, {MIG_FAILED, false, false, false, false},
	    {MIG_STOPPED, false, false, false, false},
	};

	ck_assert_uint_eq(G_N_ELEMENTS(cases), MIG_N_STATES);
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		MigState s = cases[i].s;

		ck_assert_msg(mig_state_live(s) == cases[i].live, "live %s", mig_state_name(s));
		ck_assert_msg(mig_state_mirrors(s) == cases[i].mirrors, "mirrors %s",
		              mig_state_name(s));
		ck_assert_msg(mig_state_mirrors_changes(s) == cases[i].changes, "changes %s",
		              mig_state_name(s));
		ck_assert_msg(mig_state_stopping(s) == cases[i].stopping, "stopping %s",
		              mig_state_name(s));
	}
}
END_TEST

static Suite *mig_state_suite(void)
{
	Suite *s = suite_create("mig-state");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(tc, test_request_in_state, 0, MIG_N_STATES * MIG_N_REQUESTS);
	tcase_add_test(tc, test_out_of_range);
	tcase_add_test(tc, test_public_states);
	tcase_add_test(tc, test_predicates);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(mig_state_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
