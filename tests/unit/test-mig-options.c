/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests of lib/mig-options.c: the start options' rules, written once. */
#include "mig-options.h"

#include <check.h>
#include <errno.h>
#include <glib.h>
#include <string.h>

static bool same_options(const MfsMigOptions *a, const MfsMigOptions *b)
{
	return a->target == b->target && a->chunk_size == b->chunk_size &&
	       a->speed_bps == b->speed_bps && a->guest_share == b->guest_share &&
	       a->manual_switch == b->manual_switch && a->delete_source == b->delete_source &&
	       a->overwrite == b->overwrite && a->no_clone == b->no_clone;
}

/* Parse @text as @name into fresh options: the result, and *@opts. */
static int parse(const char *name, const char *text, MfsMigOptions *opts, char **error)
{
	mfs_mig_options_init(opts);
	*error = NULL;
	return mfs_mig_option_parse(opts, name, text, error);
}

static void assert_refused(const char *name, const char *text, int err, const char *why)
{
	g_autofree char *error = NULL;
	MfsMigOptions opts, fresh;

	mfs_mig_options_init(&fresh);
	ck_assert_msg(parse(name, text, &opts, &error) == err, "%s=%s", name, text);
	ck_assert_msg(error && strcmp(error, why) == 0, "%s=%s: '%s', wanted '%s'", name, text,
	              error, why);
	/* A refused value changes nothing. */
	ck_assert(same_options(&opts, &fresh));
}

START_TEST(test_defaults)
{
	MfsMigOptions opts;
	uint64_t chunk = 0;
	g_autofree char *error = NULL;

	mfs_mig_options_init(&opts);
	ck_assert_uint_eq(opts.guest_share, MFS_DEFAULT_GUEST_SHARE);
	ck_assert_uint_eq(opts.speed_bps, 0);
	ck_assert_uint_eq(opts.chunk_size, 0);
	ck_assert(!opts.manual_switch && !opts.delete_source && !opts.overwrite && !opts.no_clone);
	ck_assert_int_eq(mfs_mig_options_check(&opts, &chunk, &error), -EINVAL);
	ck_assert_str_eq(error, "no target directory given");
	g_clear_pointer(&error, g_free);
	opts.target = "/t";
	ck_assert_int_eq(mfs_mig_options_check(&opts, &chunk, &error), 0);
	ck_assert_uint_eq(chunk, MFS_DEFAULT_CHUNK);
}
END_TEST

START_TEST(test_chunk)
{
	static const char *good[] = {"4K", "4096", "8K", "1M", "64M", "64MiB"};
	MfsMigOptions opts;

	for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
		g_autofree char *error = NULL;
		uint64_t want;

		ck_assert_msg(parse("chunk", good[i], &opts, &error) == 0, "chunk=%s: %s", good[i],
		              error);
		ck_assert_int_eq(mfs_parse_size(good[i], &want), 0);
		ck_assert_uint_eq(opts.chunk_size, want);
	}
	assert_refused("chunk", "0", -ERANGE, "not a power of two from 4K to 64M");
	assert_refused("chunk", "2K", -ERANGE, "not a power of two from 4K to 64M");
	assert_refused("chunk", "5000", -EINVAL, "not a power of two from 4K to 64M");
	assert_refused("chunk", "128M", -ERANGE, "not a power of two from 4K to 64M");
	assert_refused("chunk", "abc", -EINVAL, "not a power of two from 4K to 64M");
	assert_refused("chunk", "", -EINVAL, "not a power of two from 4K to 64M");
	assert_refused("chunk", "99999999T", -ERANGE, "not a power of two from 4K to 64M");
}
END_TEST

START_TEST(test_speed)
{
	g_autofree char *error = NULL;
	MfsMigOptions opts;

	ck_assert_int_eq(parse("speed", "0", &opts, &error), 0);
	ck_assert_uint_eq(opts.speed_bps, 0);
	ck_assert_int_eq(parse("speed", "50M", &opts, &error), 0);
	ck_assert_uint_eq(opts.speed_bps, 50u << 20);
	assert_refused("speed", "abc", -EINVAL, "not a size in bytes/s, e.g. 50M (0 = unlimited)");
	assert_refused("speed", "-5M", -EINVAL, "not a size in bytes/s, e.g. 50M (0 = unlimited)");
	assert_refused("speed", "99999999T", -ERANGE, "out of range (0 to 2^63 - 1 bytes)");
}
END_TEST

START_TEST(test_guest_share)
{
	g_autofree char *error = NULL;
	MfsMigOptions opts;

	ck_assert_int_eq(parse("guest_share", "0", &opts, &error), 0);
	ck_assert_uint_eq(opts.guest_share, 0);
	ck_assert_int_eq(parse("guest_share", "90%", &opts, &error), 0);
	ck_assert_uint_eq(opts.guest_share, MFS_MAX_GUEST_SHARE);
	assert_refused("guest_share", "91", -EINVAL, "not a percentage from 0 to 90");
	assert_refused("guest_share", "half", -EINVAL, "not a percentage from 0 to 90");
	assert_refused("guest_share", "-1", -EINVAL, "not a percentage from 0 to 90");
}
END_TEST

START_TEST(test_switch)
{
	g_autofree char *error = NULL;
	MfsMigOptions opts;

	ck_assert_int_eq(parse("switch", "manual", &opts, &error), 0);
	ck_assert(opts.manual_switch);
	ck_assert_int_eq(mfs_mig_option_parse(&opts, "switch", "auto", &error), 0);
	ck_assert(!opts.manual_switch);
	assert_refused("switch", "Manual", -EINVAL, "not auto or manual");
	assert_refused("switch", "", -EINVAL, "not auto or manual");
}
END_TEST

START_TEST(test_numbers)
{
	MfsMigOptions opts;

	mfs_mig_options_init(&opts);
	{
		g_autofree char *error = NULL;

		ck_assert_int_eq(mfs_mig_option_set_number(&opts, "chunk", 1 << 20, &error), 0);
		ck_assert_uint_eq(opts.chunk_size, 1 << 20);
		ck_assert_int_eq(mfs_mig_option_set_number(&opts, "speed", INT64_MAX, &error), 0);
		ck_assert_uint_eq(opts.speed_bps, MFS_MAX_SIZE);
		ck_assert_int_eq(mfs_mig_option_set_number(&opts, "guest_share", 90, &error), 0);
		ck_assert_uint_eq(opts.guest_share, 90);
	}
	{
		static const struct {
			const char *name;
			int64_t value;
			int err;
		} bad[] = {
		    {"chunk", 0, -ERANGE},        {"chunk", 5120, -EINVAL},
		    {"chunk", -4096, -ERANGE},    {"speed", -1, -ERANGE},
		    {"guest_share", 91, -EINVAL}, {"guest_share", -1, -EINVAL},
		    {"switch", 1, -EINVAL},       {"nosuch", 1, -EINVAL},
		};

		for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
			g_autofree char *error = NULL;
			MfsMigOptions before = opts;

			ck_assert_msg(mfs_mig_option_set_number(&opts, bad[i].name, bad[i].value,
			                                        &error) == bad[i].err,
			              "%s %" G_GINT64_FORMAT, bad[i].name, bad[i].value);
			ck_assert(error);
			ck_assert(same_options(&opts, &before));
		}
	}
}
END_TEST

START_TEST(test_check_the_whole)
{
	MfsMigOptions opts;
	uint64_t chunk;

	mfs_mig_options_init(&opts);
	opts.target = "/t";
	{
		g_autofree char *error = NULL;

		opts.chunk_size = 3000;
		ck_assert_int_eq(mfs_mig_options_check(&opts, &chunk, &error), -EINVAL);
		ck_assert_str_eq(error, "chunk size 3000: not a power of two from 4K to 64M");
		opts.chunk_size = 0;
	}
	{
		g_autofree char *error = NULL;

		opts.guest_share = 95;
		ck_assert_int_eq(mfs_mig_options_check(&opts, &chunk, &error), -EINVAL);
		ck_assert_str_eq(error, "guest share 95%: not a percentage from 0 to 90");
		opts.guest_share = 50;
	}
	{
		g_autofree char *error = NULL;

		opts.speed_bps = MFS_MAX_SIZE + 1;
		ck_assert_int_eq(mfs_mig_options_check(&opts, &chunk, &error), -ERANGE);
		ck_assert(strstr(error, "out of range"));
	}
}
END_TEST

START_TEST(test_specs)
{
	ck_assert_int_eq(mfs_mig_option_spec("chunk")->kind, MFS_MIG_OPT_SIZE);
	ck_assert_int_eq(mfs_mig_option_spec("speed")->kind, MFS_MIG_OPT_SIZE);
	ck_assert_int_eq(mfs_mig_option_spec("guest_share")->kind, MFS_MIG_OPT_PERCENT);
	ck_assert_int_eq(mfs_mig_option_spec("switch")->kind, MFS_MIG_OPT_WORD);
	ck_assert_str_eq(mfs_mig_option_spec("guest_share")->rule, "a percentage from 0 to 90");
	ck_assert_ptr_null(mfs_mig_option_spec("overwrite"));
	ck_assert_ptr_null(mfs_mig_option_spec("guest-share"));
}
END_TEST

/* A per-VM job's entries survive the job's record whatever bytes name them. */
START_TEST(test_only_in_the_record)
{
	char *names[] = {"vm1.qcow2", "a b=c;d", "caf\xc3\xa9", "\xff\x01raw", "x\\y", NULL};
	g_auto(GStrv) job = NULL;
	g_autofree char *error = NULL;
	MfsMigOptions opts, back;

	mfs_mig_options_init(&opts);
	opts.target = "/t";
	opts.only = names;
	job = mfs_mig_options_to_job(&opts);
	mfs_mig_options_init(&back);
	back.target = "/t";
	ck_assert_int_eq(mfs_mig_options_from_job(&back, job, &error), 0);
	ck_assert_ptr_nonnull(back.only);
	ck_assert_uint_eq(g_strv_length(back.only), 5);
	for (int i = 0; names[i]; i++)
		ck_assert_str_eq(back.only[i], names[i]);
	g_strfreev(back.only);
	/* No "only": the whole tree. */
	opts.only = NULL;
	g_strfreev(job);
	job = mfs_mig_options_to_job(&opts);
	mfs_mig_options_init(&back);
	ck_assert_int_eq(mfs_mig_options_from_job(&back, job, &error), 0);
	ck_assert_ptr_null(back.only);
}
END_TEST

/* Each flag the record keeps comes back, alone: none is lost, none sets another. */
START_TEST(test_flags_in_the_record)
{
	MfsMigOptions opts;
	bool *flags[] = {&opts.delete_source, &opts.overwrite, &opts.no_clone, &opts.verify,
	                 &opts.paused};

	for (size_t i = 0; i < G_N_ELEMENTS(flags); i++) {
		g_auto(GStrv) job = NULL;
		g_autofree char *error = NULL;
		MfsMigOptions back;
		bool *back_flags[] = {&back.delete_source, &back.overwrite, &back.no_clone,
		                      &back.verify, &back.paused};

		mfs_mig_options_init(&opts);
		opts.target = "/t";
		*flags[i] = true;
		job = mfs_mig_options_to_job(&opts);
		mfs_mig_options_init(&back);
		back.target = "/t";
		ck_assert_int_eq(mfs_mig_options_from_job(&back, job, &error), 0);
		for (size_t k = 0; k < G_N_ELEMENTS(back_flags); k++)
			ck_assert_msg(*back_flags[k] == (k == i),
			              "flag %zu set, flag %zu came back %d", i, k, *back_flags[k]);
	}
}
END_TEST

START_TEST(test_only_names)
{
	const char *good[][2] = {{"vm1.qcow2", "vm1.qcow2"},
	                         {"vm1/", "vm1"},
	                         {"vm1//", "vm1"},
	                         {"...", "..."},
	                         {" x", " x"}};
	const char *bad[] = {"",
	                     "/",
	                     "a/b",
	                     "/vm1",
	                     ".",
	                     "..",
	                     "./",
	                     ".mirrorfs-journal",
	                     ".mirrorfs-journal.placements"};

	for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
		g_autofree char *name = NULL, *error = NULL;

		ck_assert_msg(mfs_mig_only_name(good[i][0], &name, &error) == 0, "'%s': %s",
		              good[i][0], error);
		ck_assert_str_eq(name, good[i][1]);
	}
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		g_autofree char *name = NULL, *error = NULL;

		ck_assert_msg(mfs_mig_only_name(bad[i], &name, &error) == -EINVAL, "'%s' taken",
		              bad[i]);
		ck_assert_ptr_nonnull(
		    strstr(error, "is not an entry of the mount's top directory"));
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mig-options");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_chunk);
	tcase_add_test(tc, test_speed);
	tcase_add_test(tc, test_guest_share);
	tcase_add_test(tc, test_switch);
	tcase_add_test(tc, test_numbers);
	tcase_add_test(tc, test_check_the_whole);
	tcase_add_test(tc, test_specs);
	tcase_add_test(tc, test_only_in_the_record);
	tcase_add_test(tc, test_flags_in_the_record);
	tcase_add_test(tc, test_only_names);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
