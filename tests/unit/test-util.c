/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests of lib/util.c: size parsing, path containment, per-thread buffers, credentials. */
#include "mfs-int.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

START_TEST(test_parse_size_units)
{
	static const struct {
		const char *text;
		uint64_t bytes;
	} cases[] = {
	    {"0", 0},           {"1", 1},          {"4096", 4096},
	    {"64K", 64 << 10},  {"64k", 64 << 10}, {"64KiB", 64 << 10},
	    {"64KB", 64 << 10}, {"1M", 1 << 20},   {"2G", 2ULL << 30},
	    {"3T", 3ULL << 40},
	};

	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		uint64_t v = 12345;

		ck_assert_msg(mfs_parse_size(cases[i].text, &v) == 0, "%s", cases[i].text);
		ck_assert_uint_eq(v, cases[i].bytes);
	}
}
END_TEST

START_TEST(test_parse_size_rejects)
{
	static const char *bad[] = {
	    "", "-1", " 1", "+1", "1X", "1MM", "1 M", "K", "1.5M", "0x10", "99999999999999999999",
	};
	uint64_t v;

	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
		ck_assert_msg(mfs_parse_size(bad[i], &v) < 0, "'%s' accepted", bad[i]);
	ck_assert_int_eq(mfs_parse_size("17179869184T", &v), -ERANGE);
	ck_assert_int_eq(mfs_parse_size(NULL, &v), -EINVAL);
}
END_TEST

START_TEST(test_parse_percent)
{
	static const char *bad[] = {"",  "-1", " 5",  "+5",   "5 ", "5%%",
	                            "%", "91", "1.5", "0x10", "x"};
	unsigned v = 7;

	ck_assert_int_eq(mfs_parse_percent("0", 90, &v), 0);
	ck_assert_uint_eq(v, 0);
	ck_assert_int_eq(mfs_parse_percent("50%", 90, &v), 0);
	ck_assert_uint_eq(v, 50);
	ck_assert_int_eq(mfs_parse_percent("90", 90, &v), 0);
	ck_assert_uint_eq(v, 90);
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		v = 7;
		ck_assert_msg(mfs_parse_percent(bad[i], 90, &v) == -EINVAL, "'%s' accepted",
		              bad[i]);
		ck_assert_uint_eq(v, 7);
	}
	ck_assert_int_eq(mfs_parse_percent(NULL, 90, &v), -EINVAL);
}
END_TEST

START_TEST(test_path_within)
{
	static const struct {
		const char *inner, *outer, *rest; /* rest NULL: not within */
	} cases[] = {
	    {"/a/b/c", "/a", "b/c"}, {"/a", "/a", ""},
	    {"/a/b", "/a/b", ""},    {"/ab", "/a", NULL},
	    {"/a", "/a/b", NULL},    {"/b/a", "/a", NULL},
	    {"/", "/", ""},          {"/x/y", "/", "x/y"},
	    {"/", "/a", NULL},       {"/a/bc/d", "/a/b", NULL},
	};

	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		const char *rest = mfs_path_within(cases[i].inner, cases[i].outer);

		if (!cases[i].rest)
			ck_assert_msg(!rest, "'%s' within '%s'", cases[i].inner, cases[i].outer);
		else
			ck_assert_msg(rest && !strcmp(rest, cases[i].rest),
			              "'%s' within '%s': '%s', not '%s'", cases[i].inner,
			              cases[i].outer, rest ? rest : "(null)", cases[i].rest);
	}
}
END_TEST

START_TEST(test_thread_buffer_aligned_and_grows)
{
	char *a = mfs_thread_buffer(100);
	char *b;

	ck_assert_ptr_nonnull(a);
	ck_assert_uint_eq((uintptr_t)a % MFS_DIRECT_ALIGN, 0);
	/* A smaller request reuses the buffer; a larger one may move it. */
	ck_assert_ptr_eq(mfs_thread_buffer(10), a);
	b = mfs_thread_buffer(3 << 20);
	ck_assert_ptr_nonnull(b);
	ck_assert_uint_eq((uintptr_t)b % MFS_DIRECT_ALIGN, 0);
	b[(3 << 20) - 1] = 1; /* ASan would catch an undersized buffer */
}
END_TEST

static gpointer other_thread_buffer(gpointer data)
{
	return mfs_thread_buffer(64);
}

START_TEST(test_thread_buffer_per_thread)
{
	void *mine = mfs_thread_buffer(64);
	GThread *t = g_thread_new("buffer", other_thread_buffer, NULL);
	void *theirs = g_thread_join(t);

	/* The other thread's buffer was freed at its exit; it was not ours. */
	ck_assert_ptr_ne(mine, theirs);
}
END_TEST

/*
 * A thread that dropped CAP_FSETID for a request (fuse/transport.c) and
 * then takes a caller's credentials to create a file gets it back from
 * the kernel when its fsuid returns to 0 (capabilities(7)): the leave
 * drops it again.  Root only (Check forks each test: nothing leaks).
 */
START_TEST(test_cred_window_keeps_fsetid_dropped)
{
	MfsCred nobody = {.uid = 65534, .gid = 65534};
	MfsCredSaved saved;

	if (geteuid() != 0 || mfs_cap_fsetid() != 1)
		return;
	ck_assert_int_eq(mfs_cap_fsetid_set(false), 0);
	ck_assert_int_eq(mfs_cap_fsetid(), 0);
	mfs_cred_enter(&nobody, &saved);
	mfs_cred_leave(&saved);
	ck_assert_int_eq(mfs_cap_fsetid(), 0);
	/* And one that kept it keeps it. */
	ck_assert_int_eq(mfs_cap_fsetid_set(true), 0);
	mfs_cred_enter(&nobody, &saved);
	mfs_cred_leave(&saved);
	ck_assert_int_eq(mfs_cap_fsetid(), 1);
}
END_TEST

static Suite *util_suite(void)
{
	Suite *s = suite_create("util");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_parse_size_units);
	tcase_add_test(tc, test_parse_size_rejects);
	tcase_add_test(tc, test_parse_percent);
	tcase_add_test(tc, test_path_within);
	tcase_add_test(tc, test_thread_buffer_aligned_and_grows);
	tcase_add_test(tc, test_thread_buffer_per_thread);
	tcase_add_test(tc, test_cred_window_keeps_fsetid_dropped);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(util_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
