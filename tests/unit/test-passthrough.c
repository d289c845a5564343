/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the passthrough engine (lib/mfs*.c) on a scratch
 * directory, without FUSE.
 */
#define _GNU_SOURCE
#include "mfs-int.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *scratch;
static Mfs *fs;

static void setup(void)
{
	GError *err = NULL;

	/* Under the build tree, not /tmp: O_DIRECT needs a real file system. */
	scratch = g_dir_make_tmp("mfs-unit-XXXXXX", &err);
	ck_assert_msg(scratch, "%s", err ? err->message : "");
	ck_assert_int_eq(mfs_new(scratch, &fs), 0);
}

static void teardown(void)
{
	g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", scratch);

	mfs_free(fs);
	ck_assert_int_eq(system(cmd), 0);
	g_free(scratch);
}

static MfsFile *create_file(const char *name, int flags, MfsEntry *e)
{
	MfsCred cred = {getuid(), getgid()};
	MfsFile *f = NULL;

	ck_assert_int_eq(mfs_create(fs, mfs_root(fs), name, 0644, flags, &cred, e, &f), 0);
	return f;
}

START_TEST(test_new_rejects_missing_and_files)
{
	g_autofree char *file = g_build_filename(scratch, "plain", NULL);
	Mfs *other = NULL;

	ck_assert_int_eq(mfs_new("/nonexistent/mirrorfs", &other), -ENOENT);
	ck_assert(g_file_set_contents(file, "x", 1, NULL));
	ck_assert_int_eq(mfs_new(file, &other), -ENOTDIR);
}
END_TEST

START_TEST(test_lookup_counts_and_forget)
{
	MfsEntry a, b;
	MfsFile *f = create_file("img", O_RDWR, &a);
	unsigned base;

	mfs_release(fs, f);
	base = mfs_inode_count(fs);
	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "img", &b), 0);
	ck_assert_ptr_eq(a.inode, b.inode);
	ck_assert_uint_eq(mfs_inode_count(fs), base);
	ck_assert_uint_eq(a.inode->nlookup, 2);
	mfs_forget(fs, b.inode, 1);
	ck_assert_uint_eq(mfs_inode_count(fs), base);
	mfs_forget(fs, a.inode, 1);
	ck_assert_uint_eq(mfs_inode_count(fs), base - 1);
	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "missing", &b), -ENOENT);
}
END_TEST

START_TEST(test_hard_link_shares_inode)
{
	MfsEntry a, l, again;

	mfs_release(fs, create_file("img", O_RDWR, &a));
	ck_assert_int_eq(mfs_link(fs, a.inode, mfs_root(fs), "alias", &l), 0);
	ck_assert_ptr_eq(a.inode, l.inode);
	ck_assert_uint_eq(l.st.st_nlink, 2);
	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "alias", &again), 0);
	ck_assert_ptr_eq(again.inode, a.inode);
	mfs_forget(fs, a.inode, 3);
}
END_TEST

START_TEST(test_write_read_roundtrip)
{
	const char msg[] = "mirrorfs";
	const void *data;
	MfsEntry e;
	MfsFile *f = create_file("img", O_RDWR, &e);
	struct stat st;

	ck_assert_int_eq(mfs_file_write(fs, f, msg, sizeof(msg), 4096), sizeof(msg));
	ck_assert_int_eq(mfs_file_read(f, 100, 4096, &data), sizeof(msg));
	ck_assert_mem_eq(data, msg, sizeof(msg));
	ck_assert_int_eq(mfs_file_read(f, 100, 8192, &data), 0);
	ck_assert_int_eq(mfs_getattr(fs, e.inode, f, &st), 0);
	ck_assert_int_eq(st.st_size, 4096 + sizeof(msg));
	mfs_release(fs, f);
	mfs_forget(fs, e.inode, 1);
}
END_TEST

START_TEST(test_direct_io_unaligned_buffer)
{
	g_autofree char *raw = g_malloc(2 * 4096 + 1);
	char *unaligned = raw + 1; /* as in a FUSE request: data after a header */
	const void *data;
	MfsEntry e;
	MfsFile *f = create_file("direct", O_RDWR | O_DIRECT, &e);

	ck_assert(mfs_file_is_direct(f));
	memset(unaligned, 0xab, 2 * 4096);
	ck_assert_int_eq(mfs_file_write(fs, f, unaligned, 2 * 4096, 0), 2 * 4096);
	ck_assert_int_eq(mfs_file_read(f, 4096, 4096, &data), 4096);
	ck_assert_uint_eq((uintptr_t)data % MFS_DIRECT_ALIGN, 0);
	ck_assert_uint_eq(((const unsigned char *)data)[4095], 0xab);
	/* A misaligned offset fails as it would natively. */
	ck_assert_int_eq(mfs_file_write(fs, f, unaligned, 4096, 1), -EINVAL);
	mfs_release(fs, f);
	mfs_forget(fs, e.inode, 1);
}
END_TEST

/* Open @name of the scratch directory with @flags: is it offered as direct I/O? */
static bool direct_io_of(const char *name, int flags)
{
	MfsEntry e;
	MfsFile *f = NULL;
	bool direct_io;

	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), name, &e), 0);
	ck_assert_int_eq(mfs_open(fs, e.inode, flags, &f), 0);
	direct_io = mfs_file_direct_io(f);
	mfs_release(fs, f);
	mfs_forget(fs, e.inode, 1);
	return direct_io;
}

START_TEST(test_direct_io_offered_unless_setid)
{
	g_autofree char *path = g_build_filename(scratch, "img", NULL);
	MfsEntry e;

	mfs_release(fs, create_file("img", O_RDWR, &e));
	mfs_forget(fs, e.inode, 1);
	ck_assert(direct_io_of("img", O_RDWR | O_DIRECT));
	ck_assert(!direct_io_of("img", O_RDWR));
	/* Our writes keep these bits: the kernel's cached path drops them. */
	ck_assert_int_eq(chmod(path, 04644), 0);
	ck_assert(!direct_io_of("img", O_RDWR | O_DIRECT));
	ck_assert_int_eq(chmod(path, 02644), 0);
	ck_assert(!direct_io_of("img", O_RDWR | O_DIRECT));
	ck_assert_int_eq(chmod(path, 0644), 0);
	ck_assert(direct_io_of("img", O_RDWR | O_DIRECT));
}
END_TEST

START_TEST(test_append_flag_uses_kernel_offset)
{
	const void *data;
	MfsEntry e;
	MfsFile *f = create_file("log", O_RDWR | O_APPEND, &e);

	/* The kernel picks the offset of an appending write; we honour it. */
	ck_assert_int_eq(mfs_file_write(fs, f, "abcd", 4, 0), 4);
	ck_assert_int_eq(mfs_file_write(fs, f, "XY", 2, 1), 2);
	ck_assert_int_eq(mfs_file_read(f, 10, 0, &data), 4);
	ck_assert_mem_eq(data, "aXYd", 4);
	mfs_release(fs, f);
	mfs_forget(fs, e.inode, 1);
}
END_TEST

START_TEST(test_sparse_punch_and_seek)
{
	char block[4096];
	MfsEntry e;
	MfsFile *f = create_file("sparse", O_RDWR, &e);
	struct stat st;

	memset(block, 1, sizeof(block));
	ck_assert_int_eq(mfs_file_write(fs, f, block, sizeof(block), 1 << 20), sizeof(block));
	ck_assert_int_eq(mfs_file_lseek(fs, f, 0, SEEK_DATA), 1 << 20);
	ck_assert_int_eq(mfs_file_lseek(fs, f, 1 << 20, SEEK_HOLE), (1 << 20) + 4096);
	ck_assert_int_eq(
	    mfs_file_fallocate(fs, f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1 << 20, 4096),
	    0);
	ck_assert_int_eq(mfs_file_lseek(fs, f, 0, SEEK_DATA), -ENXIO);
	ck_assert_int_eq(mfs_getattr(fs, e.inode, f, &st), 0);
	ck_assert_int_eq(st.st_size, (1 << 20) + 4096);
	ck_assert_int_eq(st.st_blocks, 0);
	mfs_release(fs, f);
	mfs_forget(fs, e.inode, 1);
}
END_TEST

START_TEST(test_setattr)
{
	struct stat attr = {.st_mode = 0600, .st_size = 12345};
	MfsEntry e;
	struct stat st;

	mfs_release(fs, create_file("img", O_RDWR, &e));
	attr.st_mtim.tv_sec = 1000000000;
	ck_assert_int_eq(
	    mfs_setattr(fs, e.inode, NULL, &attr, MFS_SET_MODE | MFS_SET_SIZE | MFS_SET_MTIME, &st),
	    0);
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	ck_assert_int_eq(st.st_size, 12345);
	ck_assert_int_eq(st.st_mtim.tv_sec, 1000000000);
	mfs_forget(fs, e.inode, 1);
}
END_TEST

START_TEST(test_namespace_ops)
{
	MfsCred cred = {getuid(), getgid()};
	MfsEntry d, s, fifo, file;
	char buf[64];

	ck_assert_int_eq(mfs_mkdir(fs, mfs_root(fs), "dir", 0755, &cred, &d), 0);
	ck_assert(S_ISDIR(d.st.st_mode));
	ck_assert_int_eq(mfs_mkdir(fs, mfs_root(fs), "dir", 0755, &cred, &s), -EEXIST);
	ck_assert_int_eq(mfs_symlink(fs, "../target", d.inode, "link", &cred, &s), 0);
	ck_assert_int_eq(mfs_readlink(fs, s.inode, buf, sizeof(buf)), 9);
	ck_assert_str_eq(buf, "../target");
	ck_assert_int_eq(mfs_readlink(fs, s.inode, buf, 4), -ENAMETOOLONG);
	ck_assert_int_eq(mfs_mknod(fs, d.inode, "fifo", S_IFIFO | 0600, 0, &cred, &fifo), 0);
	ck_assert(S_ISFIFO(fifo.st.st_mode));
	mfs_release(fs, create_file("a", O_RDWR, &file));
	ck_assert_int_eq(mfs_rename(fs, mfs_root(fs), "a", d.inode, "fifo", RENAME_NOREPLACE),
	                 -EEXIST);
	ck_assert_int_eq(mfs_rename(fs, mfs_root(fs), "a", d.inode, "b", 0), 0);
	ck_assert_int_eq(mfs_rmdir(fs, mfs_root(fs), "dir"), -ENOTEMPTY);
	ck_assert_int_eq(mfs_unlink(fs, d.inode, "b"), 0);
	ck_assert_int_eq(mfs_unlink(fs, d.inode, "fifo"), 0);
	ck_assert_int_eq(mfs_unlink(fs, d.inode, "link"), 0);
	ck_assert_int_eq(mfs_rmdir(fs, mfs_root(fs), "dir"), 0);
	mfs_forget(fs, d.inode, 1);
	mfs_forget(fs, s.inode, 1);
	mfs_forget(fs, fifo.inode, 1);
	mfs_forget(fs, file.inode, 1);
}
END_TEST

START_TEST(test_xattrs)
{
	MfsEntry e;
	char buf[64];
	int n;

	mfs_release(fs, create_file("img", O_RDWR, &e));
	n = mfs_setxattr(fs, e.inode, "user.mirrorfs", "v1", 2, 0);
	if (n == -ENOTSUP || n == -EOPNOTSUPP) {
		mfs_forget(fs, e.inode, 1);
		return; /* scratch file system without user xattrs */
	}
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(mfs_getxattr(fs, e.inode, "user.mirrorfs", NULL, 0), 2);
	ck_assert_int_eq(mfs_getxattr(fs, e.inode, "user.mirrorfs", buf, sizeof(buf)), 2);
	ck_assert_mem_eq(buf, "v1", 2);
	n = mfs_listxattr(fs, e.inode, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	ck_assert(memmem(buf, n, "user.mirrorfs", 14) != NULL);
	ck_assert_int_eq(mfs_removexattr(fs, e.inode, "user.mirrorfs"), 0);
	ck_assert_int_eq(mfs_getxattr(fs, e.inode, "user.mirrorfs", buf, sizeof(buf)), -ENODATA);
	mfs_forget(fs, e.inode, 1);
}
END_TEST

START_TEST(test_readdir_all_and_resume)
{
	GHashTable *seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	const char *name, *first = NULL;
	unsigned char type;
	MfsDir *dir;
	off_t off = 0, next;
	ino_t ino;
	int ret;

	for (int i = 0; i < 300; i++) {
		g_autofree char *n = g_strdup_printf("f%03d", i);
		MfsEntry e;

		mfs_release(fs, create_file(n, O_RDWR, &e));
		mfs_forget(fs, e.inode, 1);
	}
	ck_assert_int_eq(mfs_opendir(fs, mfs_root(fs), &dir), 0);
	/* Asking again for the same offset returns the same (pending) entry. */
	ck_assert_int_eq(mfs_readdir(dir, 0, &first, &ino, &type, &next), 1);
	first = g_strdup(first);
	ck_assert_int_eq(mfs_readdir(dir, 0, &name, &ino, &type, &next), 1);
	ck_assert_str_eq(name, first);
	while ((ret = mfs_readdir(dir, off, &name, &ino, &type, &off)) == 1)
		g_hash_table_add(seen, g_strdup(name));
	ck_assert_int_eq(ret, 0);
	ck_assert_uint_eq(g_hash_table_size(seen), 302); /* with . and .. */
	ck_assert(g_hash_table_contains(seen, "f299"));
	/* A rewind starts over. */
	ck_assert_int_eq(mfs_readdir(dir, 0, &name, &ino, &type, &next), 1);
	ck_assert_str_eq(name, first);
	mfs_releasedir(fs, dir);
	g_free((char *)first);
	g_hash_table_destroy(seen);
}
END_TEST

START_TEST(test_access)
{
	struct stat attr = {.st_mode = 0640};
	MfsCred owner = {4242, 4242}, member = {5000, 777}, other = {5000, 5000}, root = {0, 0};
	gid_t groups[] = {100, 4242};
	MfsEntry e;
	struct stat st;

	mfs_release(fs, create_file("img", O_RDWR, &e));
	ck_assert_int_eq(mfs_setattr(fs, e.inode, NULL, &attr, MFS_SET_MODE, &st), 0);
	if (geteuid() == 0) {
		attr.st_uid = 4242;
		attr.st_gid = 4242;
		ck_assert_int_eq(
		    mfs_setattr(fs, e.inode, NULL, &attr, MFS_SET_UID | MFS_SET_GID, &st), 0);
		ck_assert_int_eq(mfs_access(fs, e.inode, R_OK | W_OK, &owner, NULL, 0), 0);
		ck_assert_int_eq(mfs_access(fs, e.inode, X_OK, &owner, NULL, 0), -EACCES);
		ck_assert_int_eq(mfs_access(fs, e.inode, R_OK, &member, groups, 2), 0);
		ck_assert_int_eq(mfs_access(fs, e.inode, W_OK, &member, groups, 2), -EACCES);
		ck_assert_int_eq(mfs_access(fs, e.inode, R_OK, &other, NULL, 0), -EACCES);
	}
	ck_assert_int_eq(mfs_access(fs, e.inode, F_OK, &other, NULL, 0), 0);
	ck_assert_int_eq(mfs_access(fs, e.inode, R_OK | W_OK, &root, NULL, 0), 0);
	ck_assert_int_eq(mfs_access(fs, e.inode, X_OK, &root, NULL, 0), -EACCES);
	mfs_forget(fs, e.inode, 1);
}
END_TEST

static Suite *passthrough_suite(void)
{
	Suite *s = suite_create("passthrough");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_new_rejects_missing_and_files);
	tcase_add_test(tc, test_lookup_counts_and_forget);
	tcase_add_test(tc, test_hard_link_shares_inode);
	tcase_add_test(tc, test_write_read_roundtrip);
	tcase_add_test(tc, test_direct_io_unaligned_buffer);
	tcase_add_test(tc, test_direct_io_offered_unless_setid);
	tcase_add_test(tc, test_append_flag_uses_kernel_offset);
	tcase_add_test(tc, test_sparse_punch_and_seek);
	tcase_add_test(tc, test_setattr);
	tcase_add_test(tc, test_namespace_ops);
	tcase_add_test(tc, test_xattrs);
	tcase_add_test(tc, test_readdir_all_and_resume);
	tcase_add_test(tc, test_access);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(passthrough_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
