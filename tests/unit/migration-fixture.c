/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The migration unit tests' shared fixture: see migration-fixture.h. */
#define _GNU_SOURCE
#include "migration-fixture.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <sys/stat.h>

char *top, *src, *dst;
Mfs *fs;
MfsCred cred;

void write_file(const char *dir, const char *name, size_t size, unsigned seed)
{
	g_autofree char *path = g_build_filename(dir, name, NULL);
	g_autofree unsigned char *buf = g_malloc(size ? size : 1);

	for (size_t i = 0; i < size; i++)
		buf[i] = (unsigned char)(i * 31 + seed);
	ck_assert(g_file_set_contents(path, (char *)buf, size, NULL));
}

void setup(void)
{
	g_autofree char *sub = NULL, *path = NULL;

	top = g_dir_make_tmp("mfs-mig-XXXXXX", NULL);
	ck_assert_ptr_nonnull(top);
	src = g_build_filename(top, "src", NULL);
	dst = g_build_filename(top, "dst", NULL);
	ck_assert_int_eq(mkdir(src, 0755), 0);
	ck_assert_int_eq(mkdir(dst, 0755), 0);
	sub = g_build_filename(src, "sub", NULL);
	ck_assert_int_eq(mkdir(sub, 0750), 0);
	write_file(src, "disk.img", 40 * CHUNK + 123, 1);
	write_file(src, "empty", 0, 0);
	write_file(sub, "vm.conf", 300, 2);
	path = g_build_filename(src, "disk.img", NULL);
	{
		g_autofree char *alias = g_build_filename(sub, "alias.img", NULL);
		g_autofree char *sym = g_build_filename(src, "link", NULL);
		g_autofree char *fifo = g_build_filename(sub, "fifo", NULL);

		ck_assert_int_eq(link(path, alias), 0);
		ck_assert_int_eq(symlink("sub/vm.conf", sym), 0);
		ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	}
	ck_assert_int_eq(mfs_new(src, &fs), 0);
	cred = (MfsCred){getuid(), getgid()};
}

void teardown(void)
{
	g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", top);

	mfs_free(fs);
	fs = NULL;
	ck_assert_int_eq(system(cmd), 0);
	g_free(top);
	g_free(src);
	g_free(dst);
}

void start(const MfsMigOptions *extra)
{
	MfsMigOptions opts = extra ? *extra : (MfsMigOptions){0};
	g_autofree char *error = NULL;

	opts.target = dst;
	if (!opts.chunk_size)
		opts.chunk_size = CHUNK;
	ck_assert_msg(mfs_migration_start(fs, &opts, &error) == 0, "%s", error);
}

void wait_for(MfsMigState want)
{
	MfsMigState got = mfs_migration_wait(fs, NULL, want, 30000);

	ck_assert_msg(got == want, "state %s, wanted %s", mfs_mig_state_name(got),
	              mfs_mig_state_name(want));
}

/* Compare two trees: names, types, modes, contents, link targets, xattrs. */
void assert_trees_equal(const char *a, const char *b)
{
	g_autoptr(GDir) da = g_dir_open(a, 0, NULL);
	const char *name;
	unsigned na = 0, nb = 0;

	ck_assert_ptr_nonnull(da);
	while ((name = g_dir_read_name(da))) {
		g_autofree char *pa = g_build_filename(a, name, NULL);
		g_autofree char *pb = g_build_filename(b, name, NULL);
		struct stat sa, sb;

		if (journal_is_reserved_name(name))
			continue;
		na++;
		ck_assert_int_eq(lstat(pa, &sa), 0);
		ck_assert_msg(lstat(pb, &sb) == 0, "%s missing", pb);
		ck_assert_uint_eq(sa.st_mode, sb.st_mode);
		if (S_ISDIR(sa.st_mode)) {
			assert_trees_equal(pa, pb);
		} else if (S_ISREG(sa.st_mode)) {
			g_autofree char *ca = NULL, *cb = NULL;
			gsize la, lb;

			ck_assert(g_file_get_contents(pa, &ca, &la, NULL));
			ck_assert(g_file_get_contents(pb, &cb, &lb, NULL));
			ck_assert_msg(la == lb && memcmp(ca, cb, la) == 0, "%s differs", pb);
			ck_assert_uint_eq(sa.st_nlink, sb.st_nlink);
		} else if (S_ISLNK(sa.st_mode)) {
			g_autofree char *ta = g_file_read_link(pa, NULL);
			g_autofree char *tb = g_file_read_link(pb, NULL);

			ck_assert_str_eq(ta, tb);
		}
	}
	{
		g_autoptr(GDir) db = g_dir_open(b, 0, NULL);

		while ((name = g_dir_read_name(db)))
			nb += !journal_is_reserved_name(name);
	}
	ck_assert_uint_eq(na, nb);
}

bool journal_says_switched(const char *dir)
{
	g_autofree char *path = g_build_filename(dir, MFS_JOURNAL_NAME, NULL);
	g_autofree char *text = NULL;

	return g_file_get_contents(path, &text, NULL, NULL) && strstr(text, "state=switched");
}

bool exists(const char *dir, const char *name)
{
	g_autofree char *path = g_build_filename(dir, name, NULL);
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Make dst/@name (im)mutable, which fails every write to it; false where the file system cannot. */
bool set_target_immutable(const char *name, bool on)
{
	g_autofree char *path = g_build_filename(dst, name, NULL);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int flags = 0;
	bool ok;

	ck_assert_int_ge(fd, 0);
	ok = ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
	flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
	ok = ok && ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
	close(fd);
	return ok;
}
