/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Placements (lib/mfs-place.c): entries of the root that a per-VM job
 * moved are served from their new home, by every operation that names
 * them, in listings, and after a restart; the rest stays on the source.
 */
#define _GNU_SOURCE
#include "mfs-int.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *scratch, *src, *dst;
static Mfs *fs;

static void put(const char *dir, const char *name, const char *text)
{
	g_autofree char *path = g_build_filename(dir, name, NULL);

	ck_assert(g_file_set_contents(path, text, -1, NULL));
}

static char *get(const char *dir, const char *name)
{
	g_autofree char *path = g_build_filename(dir, name, NULL);
	char *text = NULL;

	if (!g_file_get_contents(path, &text, NULL, NULL))
		return NULL;
	return text;
}

static bool exists(const char *dir, const char *name)
{
	g_autofree char *path = g_build_filename(dir, name, NULL);
	struct stat st;

	return lstat(path, &st) == 0;
}

/* vm1.raw and vm1/ moved to dst (the job's copy there), vm2.raw stays. */
static void setup(void)
{
	GError *err = NULL;
	g_autofree char *sub_src = NULL, *sub_dst = NULL;

	scratch = g_dir_make_tmp("mfs-unit-XXXXXX", &err);
	ck_assert_msg(scratch, "%s", err ? err->message : "");
	src = g_build_filename(scratch, "src", NULL);
	dst = g_build_filename(scratch, "dst", NULL);
	sub_src = g_build_filename(src, "vm1", NULL);
	sub_dst = g_build_filename(dst, "vm1", NULL);
	ck_assert_int_eq(g_mkdir_with_parents(sub_src, 0755), 0);
	ck_assert_int_eq(g_mkdir_with_parents(sub_dst, 0755), 0);
	put(src, "vm1.raw", "stale");
	put(dst, "vm1.raw", "moved");
	put(src, "vm2.raw", "stays");
	put(sub_src, "disk", "stale");
	put(sub_dst, "disk", "moved");
	ck_assert_int_eq(mfs_new(src, &fs), 0);
}

static void teardown(void)
{
	g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", scratch);

	mfs_free(fs);
	fs = NULL;
	ck_assert_int_eq(system(cmd), 0);
	g_free(scratch);
	g_free(src);
	g_free(dst);
}

static void place_vm1(void)
{
	char *names[] = {"vm1.raw", "vm1", NULL};
	int fd = open(dst, O_PATH | O_DIRECTORY | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	mfs_freeze_namespace(fs);
	mfs_stun(fs);
	ck_assert_int_eq(mfs_place_stunned(fs, names, dst, fd), 0);
	mfs_unstun(fs);
	mfs_thaw_namespace(fs);
	close(fd);
}

static char *read_through(const char *name)
{
	MfsEntry e;
	MfsFile *f;
	const void *data;
	ssize_t n;
	char *text;

	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), name, &e), 0);
	ck_assert_int_eq(mfs_open(fs, e.inode, O_RDONLY, &f), 0);
	n = mfs_file_read(f, 64, 0, &data);
	ck_assert_int_ge(n, 0);
	text = g_strndup(data, n);
	mfs_release(fs, f);
	mfs_forget(fs, e.inode, 1);
	return text;
}

static gint compare_names(gconstpointer a, gconstpointer b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of the root, sorted, space-separated, "." and ".." left out. */
static char *list_root(void)
{
	g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
	MfsDir *dir;
	const char *name;
	ino_t ino;
	unsigned char type;
	off_t off = 0, next;

	ck_assert_int_eq(mfs_opendir(fs, mfs_root(fs), &dir), 0);
	while (mfs_readdir(dir, off, &name, &ino, &type, &next) == 1) {
		if (strcmp(name, ".") && strcmp(name, ".."))
			g_ptr_array_add(names,
			                g_strdup_printf("%s%s", name, type == DT_DIR ? "/" : ""));
		off = next;
	}
	mfs_releasedir(fs, dir);
	g_ptr_array_sort(names, compare_names);
	g_ptr_array_add(names, NULL);
	return g_strjoinv(" ", (char **)names->pdata);
}

START_TEST(test_unplaced_tree_is_the_source)
{
	g_autofree char *a = read_through("vm1.raw");
	g_auto(GStrv) placed = mfs_placements(fs, NULL);

	ck_assert_str_eq(a, "stale");
	ck_assert_ptr_null(placed[0]);
}
END_TEST

START_TEST(test_placed_entries_served_from_their_home)
{
	g_autofree char *a = NULL, *b = NULL, *listing = NULL;
	g_auto(GStrv) dirs = NULL;
	g_auto(GStrv) placed = NULL;
	MfsEntry sub, disk;
	MfsFile *f;
	const void *data;

	place_vm1();
	a = read_through("vm1.raw");
	b = read_through("vm2.raw");
	ck_assert_str_eq(a, "moved");
	ck_assert_str_eq(b, "stays");
	/* Below a placed directory, its home's objects. */
	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "vm1", &sub), 0);
	ck_assert_int_eq(mfs_lookup(fs, sub.inode, "disk", &disk), 0);
	ck_assert_int_eq(mfs_open(fs, disk.inode, O_RDONLY, &f), 0);
	ck_assert_int_eq(mfs_file_read(f, 64, 0, &data), 5);
	ck_assert_int_eq(memcmp(data, "moved", 5), 0);
	mfs_release(fs, f);
	mfs_forget(fs, disk.inode, 1);
	mfs_forget(fs, sub.inode, 1);
	/* The record, and the listing: each name once. */
	placed = mfs_placements(fs, &dirs);
	ck_assert_uint_eq(g_strv_length(placed), 2);
	ck_assert_str_eq(dirs[0], dst);
	listing = list_root();
	ck_assert_str_eq(listing, "vm1.raw vm1/ vm2.raw");
}
END_TEST

START_TEST(test_changes_land_where_the_name_lives)
{
	MfsCred cred = {getuid(), getgid()};
	g_autofree char *listing = NULL, *text = NULL;
	MfsEntry e;
	MfsFile *f;

	place_vm1();
	/* unlink of a placed name removes its home's file, not the source's stale one */
	ck_assert_int_eq(mfs_unlink(fs, mfs_root(fs), "vm1.raw"), 0);
	ck_assert(!exists(dst, "vm1.raw"));
	ck_assert(exists(src, "vm1.raw"));
	listing = list_root();
	ck_assert_str_eq(listing, "vm1/ vm2.raw");
	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "vm1.raw", &e), -ENOENT);
	/* and a new file of that name is made there */
	ck_assert_int_eq(mfs_create(fs, mfs_root(fs), "vm1.raw", 0644, O_RDWR, &cred, &e, &f), 0);
	ck_assert_int_eq(mfs_file_write(fs, f, "again", 5, 0), 5);
	mfs_release(fs, f);
	mfs_forget(fs, e.inode, 1);
	text = get(dst, "vm1.raw");
	ck_assert_str_eq(text, "again");
	g_free(text);
	text = get(src, "vm1.raw");
	ck_assert_str_eq(text, "stale");
	/* mkdir and rmdir of a placed name too */
	ck_assert_int_eq(mfs_unlink(fs, mfs_root(fs), "vm1.raw"), 0);
	ck_assert_int_eq(mfs_mkdir(fs, mfs_root(fs), "vm1.raw", 0755, &cred, &e), 0);
	mfs_forget(fs, e.inode, 1);
	ck_assert(exists(dst, "vm1.raw"));
	ck_assert_int_eq(mfs_rmdir(fs, mfs_root(fs), "vm1.raw"), 0);
	ck_assert(!exists(dst, "vm1.raw"));
	/* names that are not placed stay on the source */
	ck_assert_int_eq(mfs_create(fs, mfs_root(fs), "vm3.raw", 0644, O_RDWR, &cred, &e, &f), 0);
	mfs_release(fs, f);
	mfs_forget(fs, e.inode, 1);
	ck_assert(exists(src, "vm3.raw"));
	ck_assert(!exists(dst, "vm3.raw"));
}
END_TEST

START_TEST(test_rename_follows_each_name)
{
	g_autofree char *text = NULL;

	place_vm1();
	/* Out of a placed name: the object leaves its home for the source's. */
	ck_assert_int_eq(mfs_rename(fs, mfs_root(fs), "vm1.raw", mfs_root(fs), "old.raw", 0), 0);
	ck_assert(!exists(dst, "vm1.raw"));
	text = get(src, "old.raw");
	ck_assert_str_eq(text, "moved");
	g_free(text);
	/* Into one: it goes to the name's home. */
	ck_assert_int_eq(mfs_rename(fs, mfs_root(fs), "vm2.raw", mfs_root(fs), "vm1.raw", 0), 0);
	text = get(dst, "vm1.raw");
	ck_assert_str_eq(text, "stays");
	ck_assert(!exists(src, "vm2.raw"));
}
END_TEST

START_TEST(test_restart_serves_the_record)
{
	g_autofree char *a = NULL, *b = NULL, *listing = NULL;
	g_autofree char *record = NULL;

	place_vm1();
	mfs_free(fs);
	ck_assert_int_eq(mfs_new(src, &fs), 0);
	a = read_through("vm1.raw");
	b = read_through("vm2.raw");
	ck_assert_str_eq(a, "moved");
	ck_assert_str_eq(b, "stays");
	listing = list_root();
	ck_assert_str_eq(listing, "vm1.raw vm1/ vm2.raw");
	/* The record is the journal's: hidden, and refused to the guest. */
	record = get(src, MFS_PLACEMENTS_NAME);
	ck_assert_ptr_nonnull(record);
	{
		MfsEntry e;

		ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), MFS_PLACEMENTS_NAME, &e), -ENOENT);
		ck_assert_int_eq(mfs_unlink(fs, mfs_root(fs), MFS_PLACEMENTS_NAME), -EPERM);
	}
}
END_TEST

START_TEST(test_restart_refuses_a_missing_home)
{
	g_autofree char *cmd = NULL;
	char *error = NULL;

	place_vm1();
	mfs_free(fs);
	fs = NULL;
	cmd = g_strdup_printf("rm -rf '%s'", dst);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_int_eq(mfs_new_explained(src, &fs, &error), -ENOENT);
	ck_assert_ptr_null(fs);
	ck_assert_ptr_nonnull(error);
	ck_assert_msg(strstr(error, "moved to") && strstr(error, "which is missing"), "%s", error);
	g_free(error);
}
END_TEST

START_TEST(test_restart_refuses_a_damaged_record)
{
	char *error = NULL;

	put(src, MFS_PLACEMENTS_NAME, "[placements]\nnames=a;b;\ndirs=/x;\n");
	mfs_free(fs);
	fs = NULL;
	ck_assert_int_eq(mfs_new_explained(src, &fs, &error), -EBADMSG);
	ck_assert_ptr_nonnull(error);
	ck_assert_msg(strstr(error, "cannot be read"), "%s", error);
	g_free(error);
}
END_TEST

static Suite *placement_suite(void)
{
	Suite *s = suite_create("placement");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_unplaced_tree_is_the_source);
	tcase_add_test(tc, test_placed_entries_served_from_their_home);
	tcase_add_test(tc, test_changes_land_where_the_name_lives);
	tcase_add_test(tc, test_rename_follows_each_name);
	tcase_add_test(tc, test_restart_serves_the_record);
	tcase_add_test(tc, test_restart_refuses_a_missing_home);
	tcase_add_test(tc, test_restart_refuses_a_damaged_record);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(placement_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
