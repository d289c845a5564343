/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of per-file mirroring (lib/mirror-file.c): every row of the
 * write table, the races of the copier with guest writes (forced with the
 * engine's hooks, not hoped for), liveness, growth, holes, truncation,
 * target failure, and a concurrent stress test checked against a model.
 */
#define _GNU_SOURCE
#include "mirror-file.h"
#include "mfs-int.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>

#define CHUNK (64 * 1024)

typedef struct {
	char *dir;
	char *src_path, *dst_path;
	int guest_fd; /* the guest's descriptor of the source */
	int dst_check_fd;
	MirrorFile *mf;
} Fixture;

static Fixture fx;
/* Where fixture_open() makes its directory: NULL for the system's tmp. */
static const char *fx_parent;

static void fixture_open(off_t initial_size, bool fill)
{
	int src_ro, dst;

	fx.dir = fx_parent ? g_mkdtemp(g_build_filename(fx_parent, "mfs-mirror-XXXXXX", NULL))
	                   : g_dir_make_tmp("mfs-mirror-XXXXXX", NULL);
	ck_assert_ptr_nonnull(fx.dir);
	fx.src_path = g_build_filename(fx.dir, "src", NULL);
	fx.dst_path = g_build_filename(fx.dir, "dst", NULL);
	fx.guest_fd = open(fx.src_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fx.guest_fd, 0);
	if (fill) {
		g_autofree unsigned char *buf = g_malloc(initial_size ? initial_size : 1);

		for (off_t i = 0; i < initial_size; i++)
			buf[i] = (unsigned char)(i * 7 + 3);
		ck_assert_int_eq(pwrite(fx.guest_fd, buf, initial_size, 0), initial_size);
	} else {
		ck_assert_int_eq(ftruncate(fx.guest_fd, initial_size), 0);
	}
	src_ro = open(fx.src_path, O_RDONLY);
	dst = open(fx.dst_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	fx.dst_check_fd = open(fx.dst_path, O_RDONLY);
	ck_assert(src_ro >= 0 && dst >= 0 && fx.dst_check_fd >= 0);
	fx.mf = mirror_file_new(src_ro, dst, CHUNK, true);
}

static void fixture_close(void)
{
	g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", fx.dir);

	mirror_file_free(fx.mf);
	close(fx.guest_fd);
	close(fx.dst_check_fd);
	ck_assert_int_eq(system(cmd), 0);
	g_free(fx.dir);
	g_free(fx.src_path);
	g_free(fx.dst_path);
	memset(&fx, 0, sizeof(fx));
}

/* Copy to the end, @depth chunks in flight on @q (NULL: one, by this thread). */
static void copy_all_on(CopyQueue *q, unsigned depth)
{
	uint64_t copied;
	int ret;

	while ((ret = mirror_file_copy_next(fx.mf, q, depth, &copied)) == 1)
		;
	ck_assert_int_eq(ret, 0);
}

static void copy_all(void)
{
	copy_all_on(NULL, 1);
}

static void copy_chunks(int n)
{
	uint64_t copied;

	for (int i = 0; i < n; i++)
		ck_assert_int_eq(mirror_file_copy_next(fx.mf, NULL, 1, &copied), 1);
}

/* Read @len bytes at @off from @fd; bytes past the end read as 0xee. */
static unsigned char *read_at(int fd, off_t off, size_t len)
{
	unsigned char *buf = g_malloc(len);
	ssize_t n = pread(fd, buf, len, off);

	ck_assert_int_ge(n, 0);
	memset(buf + n, 0xee, len - n);
	return buf;
}

static void assert_files_equal(void)
{
	struct stat a, b;

	ck_assert_int_eq(fstat(fx.guest_fd, &a), 0);
	ck_assert_int_eq(fstat(fx.dst_check_fd, &b), 0);
	ck_assert_int_eq(a.st_size, b.st_size);
	if (a.st_size) {
		g_autofree unsigned char *x = read_at(fx.guest_fd, 0, a.st_size);
		g_autofree unsigned char *y = read_at(fx.dst_check_fd, 0, a.st_size);

		ck_assert_mem_eq(x, y, a.st_size);
	}
}

static void guest_write(off_t off, size_t len, unsigned char byte)
{
	g_autofree unsigned char *buf = g_malloc(len);

	memset(buf, byte, len);
	ck_assert_int_eq(mirror_file_write(fx.mf, fx.guest_fd, buf, len, off), len);
}

/* The write table, row by row. */

START_TEST(test_write_below_cursor_goes_to_both)
{
	g_autofree unsigned char *d = NULL;
	MirrorFileStats st;

	fixture_open(4 * CHUNK, true);
	copy_chunks(2);
	guest_write(100, 1000, 0x5a);
	d = read_at(fx.dst_check_fd, 100, 1000);
	ck_assert_uint_eq(d[0], 0x5a);
	ck_assert_uint_eq(d[999], 0x5a);
	mirror_file_stats(fx.mf, &st);
	ck_assert_uint_eq(st.mirrored_writes, 1);
	ck_assert_int_eq(st.cp_offset, 2 * CHUNK);
	copy_all();
	assert_files_equal();
	fixture_close();
}
END_TEST

START_TEST(test_write_above_cursor_goes_to_source_only)
{
	g_autofree unsigned char *d = NULL;
	MirrorFileStats st;

	fixture_open(4 * CHUNK, true);
	copy_chunks(1);
	guest_write(3 * CHUNK, 10, 0x77);
	/* Not copied yet: the target has nothing there. */
	d = read_at(fx.dst_check_fd, 3 * CHUNK, 10);
	ck_assert_uint_ne(d[0], 0x77);
	mirror_file_stats(fx.mf, &st);
	ck_assert_uint_eq(st.mirrored_writes, 0);
	copy_all();
	assert_files_equal();
	fixture_close();
}
END_TEST

START_TEST(test_write_spanning_cursor_is_split)
{
	g_autofree unsigned char *below = NULL, *above = NULL;

	fixture_open(4 * CHUNK, true);
	copy_chunks(1);
	guest_write(CHUNK - 100, 200, 0x33);
	below = read_at(fx.dst_check_fd, CHUNK - 100, 100);
	above = read_at(fx.dst_check_fd, CHUNK, 100);
	ck_assert_uint_eq(below[0], 0x33);
	ck_assert_uint_eq(below[99], 0x33);
	ck_assert_uint_ne(above[0], 0x33); /* the copier carries it later */
	copy_all();
	assert_files_equal();
	fixture_close();
}
END_TEST

START_TEST(test_write_after_mirrored_goes_to_both_and_grows)
{
	MirrorFileStats st;

	fixture_open(CHUNK + 5, true);
	copy_all();
	mirror_file_stats(fx.mf, &st);
	ck_assert(st.mirrored);
	guest_write(10 * CHUNK, 3, 0x11); /* growth past the end */
	assert_files_equal();
	fixture_close();
}
END_TEST

/*
 * Forced interleavings.  A Gate lets a test stop a thread at a hook point
 * and see that it got there.
 */
typedef struct {
	MfsMutex lock;
	MfsCond cond;
	MirrorHookPoint point;
	bool armed;    /* stop the next thread that reaches point */
	bool reached;  /* a thread is stopped there */
	bool open;     /* let it go */
	int waits;     /* writers that reached MIRROR_HOOK_WRITE_WAITING */
	GThread *only; /* stop only this thread (NULL: any) */
	off_t only_off; /* stop only at this offset (-1: any) */
} Gate;

static Gate gate;

static void hook_gate_init(MirrorHookPoint point, GThread *only)
{
	mfs_mutex_init(&gate.lock);
	mfs_cond_init(&gate.cond);
	gate.point = point;
	gate.armed = true;
	gate.reached = gate.open = false;
	gate.waits = 0;
	gate.only = only;
	gate.only_off = -1;
}

static void gate_hook(MirrorFile *mf, MirrorHookPoint point, off_t off, off_t len, void *opaque)
{
	mfs_mutex_lock(&gate.lock);
	if (point == MIRROR_HOOK_WRITE_WAITING) {
		gate.waits++;
		mfs_cond_broadcast(&gate.cond);
	}
	if (point == gate.point && gate.armed && (!gate.only || gate.only == g_thread_self()) &&
	    (gate.only_off < 0 || gate.only_off == off)) {
		gate.armed = false;
		gate.reached = true;
		mfs_cond_broadcast(&gate.cond);
		while (!gate.open)
			mfs_cond_wait(&gate.cond, &gate.lock);
	}
	mfs_mutex_unlock(&gate.lock);
}

static void gate_wait_reached(void)
{
	mfs_mutex_lock(&gate.lock);
	while (!gate.reached)
		mfs_cond_wait(&gate.cond, &gate.lock);
	mfs_mutex_unlock(&gate.lock);
}

static void gate_wait_waits(int n)
{
	mfs_mutex_lock(&gate.lock);
	while (gate.waits < n)
		mfs_cond_wait(&gate.cond, &gate.lock);
	mfs_mutex_unlock(&gate.lock);
}

static void hook_gate_open(void)
{
	mfs_mutex_lock(&gate.lock);
	gate.open = true;
	mfs_cond_broadcast(&gate.cond);
	mfs_mutex_unlock(&gate.lock);
}

static gpointer copier_one_chunk(gpointer data)
{
	uint64_t copied;

	return GINT_TO_POINTER(mirror_file_copy_next(fx.mf, NULL, 1, &copied));
}

/* Two chunks in flight on the queue @data; the oldest retired. */
static gpointer copier_window(gpointer data)
{
	uint64_t copied;

	return GINT_TO_POINTER(mirror_file_copy_next(fx.mf, data, 2, &copied));
}

typedef struct {
	off_t off;
	size_t len;
	unsigned char byte;
} WriteJob;

static gpointer writer_thread(gpointer data)
{
	WriteJob *job = data;

	guest_write(job->off, job->len, job->byte);
	return NULL;
}

START_TEST(test_write_into_chunk_in_flight_waits)
{
	WriteJob job = {CHUNK + 4096, 4096, 0xc4};
	MirrorFileStats st;
	GThread *copier, *writer;
	g_autofree unsigned char *d = NULL;

	fixture_open(4 * CHUNK, true);
	copy_chunks(1);
	/* Stop the copier after it has read chunk 1 from the source. */
	hook_gate_init(MIRROR_HOOK_CHUNK_READ, NULL);
	mirror_file_set_hook(fx.mf, gate_hook, NULL);
	copier = g_thread_new("copier", copier_one_chunk, NULL);
	gate_wait_reached();
	/* A write into that chunk now must wait, or the copier would overwrite it. */
	writer = g_thread_new("writer", writer_thread, &job);
	gate_wait_waits(1);
	hook_gate_open();
	ck_assert_int_eq(GPOINTER_TO_INT(g_thread_join(copier)), 1);
	g_thread_join(writer);
	/* Below the cursor by then: mirrored, so the target has it already. */
	d = read_at(fx.dst_check_fd, job.off, job.len);
	ck_assert_uint_eq(d[0], 0xc4);
	ck_assert_uint_eq(d[job.len - 1], 0xc4);
	mirror_file_stats(fx.mf, &st);
	ck_assert_uint_eq(st.waited_writes, 1);
	ck_assert_uint_eq(st.mirrored_writes, 1);
	mirror_file_set_hook(fx.mf, NULL, NULL);
	copy_all();
	assert_files_equal();
	fixture_close();
}
END_TEST

START_TEST(test_copier_waits_for_write_in_flight)
{
	WriteJob job = {2 * CHUNK + 10, 100, 0x99};
	GThread *copier, *writer;
	gint64 deadline;

	fixture_open(4 * CHUNK, true);
	copy_chunks(2);
	/* The writer decides "source only" for chunk 2, then stops before writing. */
	hook_gate_init(MIRROR_HOOK_WRITE_ADMITTED, NULL);
	mirror_file_set_hook(fx.mf, gate_hook, NULL);
	writer = g_thread_new("writer", writer_thread, &job);
	gate_wait_reached();
	copier = g_thread_new("copier", copier_one_chunk, NULL);
	/*
	 * A copier that read chunk 2 now would miss the write for good.  Give
	 * a wrong one time to do so; a right one is still draining.
	 */
	deadline = g_get_monotonic_time() + 200 * 1000;
	while (g_get_monotonic_time() < deadline)
		g_usleep(10 * 1000);
	hook_gate_open();
	g_thread_join(writer);
	ck_assert_int_eq(GPOINTER_TO_INT(g_thread_join(copier)), 1);
	{
		g_autofree unsigned char *d = read_at(fx.dst_check_fd, job.off, job.len);

		ck_assert_uint_eq(d[0], 0x99);
	}
	mirror_file_set_hook(fx.mf, NULL, NULL);
	copy_all();
	assert_files_equal();
	fixture_close();
}
END_TEST

START_TEST(test_overlapping_writes_are_serialized)
{
	WriteJob a = {100, 8192, 0xaa}, b = {4096, 8192, 0xbb};
	GThread *ta, *tb;

	fixture_open(4 * CHUNK, true);
	copy_all(); /* mirrored: both writes go to both sides */
	/* A is admitted and stopped; B overlaps it and must wait, not race. */
	hook_gate_init(MIRROR_HOOK_WRITE_ADMITTED, NULL);
	mirror_file_set_hook(fx.mf, gate_hook, NULL);
	ta = g_thread_new("a", writer_thread, &a);
	gate_wait_reached();
	tb = g_thread_new("b", writer_thread, &b);
	gate_wait_waits(1);
	hook_gate_open();
	g_thread_join(ta);
	g_thread_join(tb);
	assert_files_equal();
	{
		g_autofree unsigned char *d = read_at(fx.guest_fd, 4096, 1);

		ck_assert_uint_eq(d[0], 0xbb); /* B came second */
	}
	fixture_close();
}
END_TEST

/* Liveness: writes streaming into the copier's chunk cannot starve it. */
typedef struct {
	volatile gint stop;
	gint writes;
} Hammer;

static gpointer hammer_thread(gpointer data)
{
	Hammer *h = data;
	unsigned char buf[512];
	off_t off = 0;

	memset(buf, 0x42, sizeof(buf));
	while (!g_atomic_int_get(&h->stop)) {
		/* Always just above the cursor: the chunk the copier wants next. */
		MirrorFileStats st;

		mirror_file_stats(fx.mf, &st);
		off = st.mirrored ? 0 : st.cp_offset;
		ck_assert_int_eq(mirror_file_write(fx.mf, fx.guest_fd, buf, sizeof(buf), off),
		                 sizeof(buf));
		g_atomic_int_inc(&h->writes);
	}
	return NULL;
}

START_TEST(test_copier_not_starved_by_writes_into_its_chunk)
{
	Hammer h = {0};
	GThread *t[2];
	uint64_t copied;
	int calls = 0, ret;

	fixture_open(64 * CHUNK, true);
	t[0] = g_thread_new("hammer0", hammer_thread, &h);
	t[1] = g_thread_new("hammer1", hammer_thread, &h);
	/* The hammers are at it before the copier starts, however busy the machine. */
	while (g_atomic_int_get(&h.writes) < 10)
		g_usleep(1000);
	while ((ret = mirror_file_copy_next(fx.mf, NULL, 1, &copied)) == 1)
		calls++;
	ck_assert_int_eq(ret, 0);
	/* One call a chunk, and one to finish: no retry, no iteration. */
	ck_assert_int_le(calls, 64 + 1);
	g_atomic_int_set(&h.stop, 1);
	g_thread_join(t[0]);
	g_thread_join(t[1]);
	ck_assert_int_gt(g_atomic_int_get(&h.writes), 0);
	assert_files_equal();
	fixture_close();
}
END_TEST

START_TEST(test_growth_during_copy)
{
	fixture_open(3 * CHUNK, true);
	copy_chunks(1);
	guest_write(20 * CHUNK + 17, 5000, 0x66); /* grows, above the cursor */
	copy_chunks(1);
	guest_write(40 * CHUNK, 1, 0x67);
	copy_all();
	assert_files_equal();
	fixture_close();
}
END_TEST

START_TEST(test_sparse_stays_sparse)
{
	struct stat s, d;

	fixture_open(256 * CHUNK, false); /* 16 MiB of hole */
	ck_assert_int_eq(pwrite(fx.guest_fd, "data", 4, 5 * CHUNK), 4);
	ck_assert_int_eq(pwrite(fx.guest_fd, "tail", 4, 200 * CHUNK), 4);
	ck_assert_int_eq(fsync(fx.guest_fd), 0);
	copy_all();
	assert_files_equal();
	ck_assert_int_eq(fstat(fx.guest_fd, &s), 0);
	ck_assert_int_eq(fstat(fx.dst_check_fd, &d), 0);
	ck_assert_int_le(d.st_blocks, s.st_blocks);
	{
		MirrorFileStats st;

		mirror_file_stats(fx.mf, &st);
		ck_assert_uint_lt(st.bytes_copied, 2 * CHUNK); /* data, not apparent size */
	}
	fixture_close();
}
END_TEST

/*
 * Bytes of [off, off + len) of @fd in extents with all of @flags (0: all
 * allocated bytes; FIEMAP_EXTENT_UNWRITTEN: the preallocated ones), by
 * FIEMAP, or -1.
 */
static off_t mapped_bytes(int fd, off_t off, off_t len, unsigned flags)
{
	union {
		struct fiemap fm;
		char buf[sizeof(struct fiemap) + 64 * sizeof(struct fiemap_extent)];
	} u = {0};
	off_t n = 0;

	u.fm.fm_start = off;
	u.fm.fm_length = len;
	u.fm.fm_flags = FIEMAP_FLAG_SYNC;
	u.fm.fm_extent_count = 64;
	if (ioctl(fd, FS_IOC_FIEMAP, &u.fm) < 0)
		return -1;
	for (unsigned i = 0; i < u.fm.fm_mapped_extents; i++) {
		struct fiemap_extent *e = &u.fm.fm_extents[i];

		if ((e->fe_flags & flags) == flags)
			n += MIN((off_t)(e->fe_logical + e->fe_length), off + len) -
			     MAX((off_t)e->fe_logical, off);
	}
	return n;
}

/*
 * Preallocated ranges (qemu-img's preallocation=falloc) arrive
 * preallocated, not as holes nor as written zeros, and a true hole next
 * to them stays a hole: the target takes the source's blocks, no more,
 * no fewer.  Where the file system has no FIEMAP or no unwritten extents
 * (tmpfs), there is nothing to check.
 */
START_TEST(test_preallocated_stays_preallocated)
{
	struct stat s, d;

	fixture_open(0, false);
	/* [0, 3 CHUNK) preallocated, data in its middle; a hole; preallocated again. */
	if (fallocate(fx.guest_fd, 0, 0, 3 * CHUNK) < 0 ||
	    mapped_bytes(fx.guest_fd, 0, 3 * CHUNK, FIEMAP_EXTENT_UNWRITTEN) != 3 * CHUNK) {
		fixture_close();
		return; /* no unwritten extents here */
	}
	ck_assert_int_eq(fallocate(fx.guest_fd, 0, 40 * CHUNK + 100, 2 * CHUNK), 0);
	ck_assert_int_eq(ftruncate(fx.guest_fd, 50 * CHUNK + 7), 0);
	ck_assert_int_eq(pwrite(fx.guest_fd, "data", 4, CHUNK + 10), 4);
	ck_assert_int_eq(fsync(fx.guest_fd), 0);
	copy_all();
	assert_files_equal();
	ck_assert_int_eq(fstat(fx.guest_fd, &s), 0);
	ck_assert_int_eq(fstat(fx.dst_check_fd, &d), 0);
	/*
	 * The same blocks, give or take the file system's own: extents laid
	 * out chunk by chunk may need an extent tree block the source's did not.
	 */
	ck_assert_int_eq(mapped_bytes(fx.dst_check_fd, 0, d.st_size, 0),
	                 mapped_bytes(fx.guest_fd, 0, s.st_size, 0));
	ck_assert_int_le(labs((long)(d.st_blocks - s.st_blocks)) * 512, 16 * 1024);
	ck_assert_int_eq(mapped_bytes(fx.dst_check_fd, 0, d.st_size, FIEMAP_EXTENT_UNWRITTEN),
	                 mapped_bytes(fx.guest_fd, 0, s.st_size, FIEMAP_EXTENT_UNWRITTEN));
	{
		MirrorFileStats st;

		mirror_file_stats(fx.mf, &st);
		ck_assert_uint_le(st.bytes_copied, 2 * CHUNK); /* not the preallocated zeros */
	}
	fixture_close();
}
END_TEST

START_TEST(test_punch_hole_below_and_above_cursor)
{
	struct stat d;

	fixture_open(8 * CHUNK, true);
	copy_chunks(4);
	ck_assert_int_eq(mirror_file_fallocate(fx.mf, fx.guest_fd,
	                                       FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
	                                       2 * CHUNK),
	                 0);
	ck_assert_int_eq(mirror_file_fallocate(fx.mf, fx.guest_fd,
	                                       FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
	                                       6 * CHUNK, CHUNK),
	                 0);
	ck_assert_int_eq(
	    mirror_file_fallocate(fx.mf, fx.guest_fd, FALLOC_FL_ZERO_RANGE, 3 * CHUNK, 4096), 0);
	copy_all();
	assert_files_equal();
	ck_assert_int_eq(fstat(fx.dst_check_fd, &d), 0);
	/* 8 chunks less the 3 punched: the target did not fill the holes in. */
	ck_assert_int_le(d.st_blocks * 512, 5 * CHUNK + 4096);
	fixture_close();
}
END_TEST

START_TEST(test_truncate_below_and_above_cursor)
{
	MirrorFileStats st;

	fixture_open(8 * CHUNK, true);
	copy_chunks(4);
	/* Above the cursor: the source alone; the copier finds the new end. */
	ck_assert_int_eq(mirror_file_truncate(fx.mf, fx.guest_fd, 6 * CHUNK + 3), 0);
	/* Below it: both sides, and the cursor comes down with the end. */
	ck_assert_int_eq(mirror_file_truncate(fx.mf, fx.guest_fd, 2 * CHUNK + 1), 0);
	mirror_file_stats(fx.mf, &st);
	ck_assert_int_eq(st.cp_offset, 2 * CHUNK + 1);
	/* Growth again, then a write into the grown part. */
	ck_assert_int_eq(mirror_file_truncate(fx.mf, fx.guest_fd, 5 * CHUNK), 0);
	guest_write(4 * CHUNK, 10, 0x21);
	copy_all();
	assert_files_equal();
	/* Mirrored: truncation now follows on both sides at once. */
	ck_assert_int_eq(mirror_file_truncate(fx.mf, fx.guest_fd, 1), 0);
	assert_files_equal();
	fixture_close();
}
END_TEST

/*
 * A truncate below the cursor, admitted after the copier chose its next
 * chunk but before it claimed it, lowers the cursor; writes that land
 * below the old cursor then decide "source only" and must be copied: the
 * copier may not move the cursor past them.
 */
static void truncate_and_write_before_claim(MirrorFile *mf, MirrorHookPoint point, off_t off,
                                            off_t len, void *opaque)
{
	bool *done = opaque;

	if (point != MIRROR_HOOK_CHUNK_NEXT || *done)
		return;
	*done = true;
	ck_assert_int_eq(mirror_file_truncate(mf, fx.guest_fd, CHUNK + 5), 0);
	guest_write(2 * CHUNK, 3 * CHUNK, 0x5a);
}

START_TEST(test_truncate_between_chunk_choice_and_claim)
{
	bool done = false;

	fixture_open(8 * CHUNK, true);
	copy_chunks(4);
	mirror_file_set_hook(fx.mf, truncate_and_write_before_claim, &done);
	copy_all();
	ck_assert(done);
	assert_files_equal();
	fixture_close();
}
END_TEST

/*
 * A truncate below the cursor already in flight when the copier claims
 * its chunk: the copier waits for it in the drain, during which it lowers
 * the cursor; a write then lands below the old cursor, source only.  The
 * copier must start again from the lowered cursor, not from its chunk.
 * (Found in review: the cursor was read at the claim, not after the drain.)
 */
/* inflight_guest_done: the write after the truncate has landed, or waits. */
static gint inflight_admitted, inflight_claimed, inflight_guest_done, inflight_claims,
    inflight_admits;
static GThread *inflight_guest;

static void wait_flag(gint *flag)
{
	gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

	while (!g_atomic_int_get(flag) && g_get_monotonic_time() < deadline)
		g_usleep(100);
	ck_assert_msg(g_atomic_int_get(flag), "a step of the interleaving never came");
}

static gpointer truncate_then_write(gpointer data)
{
	(void)data;
	ck_assert_int_eq(mirror_file_truncate(fx.mf, fx.guest_fd, CHUNK + 5), 0);
	guest_write(2 * CHUNK, CHUNK, 0x5a);
	g_atomic_int_set(&inflight_guest_done, 1);
	return NULL;
}

static void truncate_in_flight_hook(MirrorFile *mf, MirrorHookPoint point, off_t off, off_t len,
                                    void *opaque)
{
	(void)mf, (void)off, (void)len, (void)opaque;
	switch (point) {
	case MIRROR_HOOK_CHUNK_NEXT: /* copier, before its claim: the truncate starts */
		if (!inflight_guest) {
			inflight_guest = g_thread_new("guest", truncate_then_write, NULL);
			wait_flag(&inflight_admitted);
		}
		break;
	case MIRROR_HOOK_WRITE_ADMITTED: /* guest: the truncate, in flight until the claim */
		if (g_atomic_int_add(&inflight_admits, 1) == 0) {
			g_atomic_int_set(&inflight_admitted, 1);
			wait_flag(&inflight_claimed);
		}
		break;
	case MIRROR_HOOK_WRITE_WAITING: /* guest: its write waits for the copier's chunk */
		g_atomic_int_set(&inflight_guest_done, 1);
		break;
	case MIRROR_HOOK_CHUNK_CLAIMED:
		/*
		 * The copier's first claim lets the truncate go; at its next
		 * one the guest's write has landed, or waits for the chunk.
		 */
		if (g_atomic_int_add(&inflight_claims, 1) == 0)
			g_atomic_int_set(&inflight_claimed, 1);
		else
			wait_flag(&inflight_guest_done);
		break;
	default:
		break;
	}
}

START_TEST(test_truncate_in_flight_at_the_claim)
{
	fixture_open(8 * CHUNK, true);
	copy_chunks(4);
	mirror_file_set_hook(fx.mf, truncate_in_flight_hook, NULL);
	copy_all();
	g_thread_join(inflight_guest);
	inflight_guest = NULL;
	assert_files_equal();
	fixture_close();
}
END_TEST

/*
 * A held target failure (on_target_error=stop) lowers the cursor while the
 * copier's chunk is in flight above it: the chunk's release must not lift
 * the cursor back, or what the guest wrote below (on the source only, the
 * target having refused it) would never be copied.  Forced: at CHUNK_READ
 * (chunk claimed and read, not yet written) the source changes below and
 * the cursor comes down there, as mig_hold() brings it.
 */
static void lower_under_the_chunk(MirrorFile *mf, MirrorHookPoint point, off_t off, off_t len,
                                  void *opaque)
{
	unsigned char block[CHUNK];
	bool *done = opaque;

	(void)off, (void)len;
	if (point != MIRROR_HOOK_CHUNK_READ || g_atomic_int_get((gint *)done))
		return;
	g_atomic_int_set((gint *)done, 1);
	memset(block, 0x77, sizeof(block));
	ck_assert_int_eq(pwrite(fx.guest_fd, block, CHUNK, CHUNK), CHUNK);
	mirror_file_lower_cursor(mf, CHUNK);
}

/* _i: one chunk at a time; four in flight, on a queue (a window of chunks above the cursor). */
START_TEST(test_a_lowered_cursor_stays_down_under_the_chunk_in_flight)
{
	CopyQueue *q = _i ? copy_queue_new(4) : NULL;
	gint done = 0;

	fixture_open(12 * CHUNK, true);
	copy_chunks(4);
	mirror_file_set_hook(fx.mf, lower_under_the_chunk, &done);
	copy_all_on(q, _i ? 4 : 1);
	ck_assert(g_atomic_int_get(&done));
	assert_files_equal();
	fixture_close();
	copy_queue_free(q);
}
END_TEST

/*
 * Several chunks in flight: a chunk copied while one below it is still
 * in flight lies above the cursor, and a guest write there must wait
 * until the cursor has passed it, then reach both sides.  Were the
 * chunk let go when it was done, the write would go to the source only,
 * after the copier had read it, and the target would miss it for good.
 * Forced: the chunk at 0 is held after its read (its thread stopped at
 * the hook), the one at CHUNK is copied meanwhile.
 */
START_TEST(test_write_into_a_copied_chunk_above_the_cursor_waits)
{
	WriteJob job = {CHUNK + 4096, 4096, 0xc5};
	CopyQueue *q = copy_queue_new(2);
	g_autofree unsigned char *d = NULL, *want = NULL;
	gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
	GThread *copier, *writer;
	MirrorFileStats st;
	uint64_t copied = 0;

	fixture_open(8 * CHUNK, true);
	hook_gate_init(MIRROR_HOOK_CHUNK_READ, NULL);
	gate.only_off = 0;
	mirror_file_set_hook(fx.mf, gate_hook, NULL);
	copier = g_thread_new("copier", copier_window, q);
	gate_wait_reached();
	/* The chunk at CHUNK reaches the target while the one at 0 is held. */
	want = read_at(fx.guest_fd, CHUNK, CHUNK);
	for (;;) {
		g_free(d);
		d = read_at(fx.dst_check_fd, CHUNK, CHUNK);
		if (!memcmp(d, want, CHUNK))
			break;
		ck_assert_int_lt(g_get_monotonic_time(), deadline);
		g_usleep(1000);
	}
	writer = g_thread_new("writer", writer_thread, &job);
	gate_wait_waits(1);
	hook_gate_open();
	ck_assert_int_eq(GPOINTER_TO_INT(g_thread_join(copier)), 1);
	/* The chunk at 0 retired: the one at CHUNK still holds the write off, until retired too. */
	ck_assert_int_eq(mirror_file_copy_drain(fx.mf, q, &copied), 0);
	g_thread_join(writer);
	g_free(d);
	d = read_at(fx.dst_check_fd, job.off, job.len);
	ck_assert_uint_eq(d[0], 0xc5);
	ck_assert_uint_eq(d[job.len - 1], 0xc5);
	mirror_file_stats(fx.mf, &st);
	ck_assert_uint_eq(st.waited_writes, 1);
	ck_assert_uint_eq(st.mirrored_writes, 1);
	ck_assert_int_eq(st.cp_offset, 2 * CHUNK);
	mirror_file_set_hook(fx.mf, NULL, NULL);
	copy_all_on(q, 2);
	assert_files_equal();
	fixture_close();
	copy_queue_free(q);
}
END_TEST

START_TEST(test_odd_sizes)
{
	static const off_t sizes[] = {0, 1, 4095, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK};

	for (size_t i = 0; i < G_N_ELEMENTS(sizes); i++) {
		fixture_open(sizes[i], true);
		copy_all();
		assert_files_equal();
		fixture_close();
	}
}
END_TEST

/* Pages of @fd's first @len bytes in the page cache. */
static size_t resident_pages(int fd, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), n = (len + page - 1) / page, count = 0;
	g_autofree unsigned char *vec = g_malloc(n);
	void *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);

	ck_assert_ptr_ne(map, MAP_FAILED);
	ck_assert_int_eq(mincore(map, len, vec), 0);
	munmap(map, len);
	for (size_t i = 0; i < n; i++)
		count += vec[i] & 1;
	return count;
}

/*
 * The copier streams through O_DIRECT: a copied image leaves nothing in
 * the page cache but its unaligned last block (written buffered).  The
 * files live in the build directory, on a file system with O_DIRECT
 * and a page cache (not tmpfs, where every page is resident).
 */
START_TEST(test_copy_bypasses_page_cache)
{
	static const off_t sizes[] = {64 * CHUNK, 64 * CHUNK + 100};
	fx_parent = ".";
	for (size_t i = 0; i < G_N_ELEMENTS(sizes); i++) {
		fixture_open(sizes[i], true);
		/* Flush the source's own pages out, so what we see is the copier's. */
		ck_assert_int_eq(fdatasync(fx.guest_fd), 0);
		copy_all();
		ck_assert_uint_le(resident_pages(fx.dst_check_fd, sizes[i]), i);
		assert_files_equal();
		fixture_close();
	}
	fx_parent = NULL;
}
END_TEST

static off_t cursor(void)
{
	MirrorFileStats st;

	mirror_file_stats(fx.mf, &st);
	return st.cp_offset;
}

/* Each chunk copied with no guest operation meanwhile doubles the next. */
START_TEST(test_chunk_grows_while_guest_idle)
{
	static const int grown[] = {1, 2, 4, 8, 8};
	off_t expect = 0;

	fixture_open(64 * CHUNK, true);
	mirror_file_set_max_chunk(fx.mf, 8 * CHUNK);
	for (size_t i = 0; i < G_N_ELEMENTS(grown); i++) {
		copy_chunks(1);
		expect += grown[i] * CHUNK;
		ck_assert_int_eq(cursor(), expect);
	}
	/* A guest write, even one far from the cursor, brings it back. */
	guest_write(60 * CHUNK, 100, 0x5a);
	copy_chunks(1);
	ck_assert_int_eq(cursor(), expect + CHUNK);
	copy_chunks(1);
	ck_assert_int_eq(cursor(), expect + 3 * CHUNK);
	copy_all();
	assert_files_equal();
	fixture_close();
}
END_TEST

/* Without a maximum the chunk keeps its size. */
START_TEST(test_chunk_fixed_by_default)
{
	fixture_open(8 * CHUNK, true);
	for (int i = 1; i <= 4; i++) {
		copy_chunks(1);
		ck_assert_int_eq(cursor(), i * CHUNK);
	}
	fixture_close();
}
END_TEST

static int errors_seen;

static void count_error(MirrorFile *mf, int err, bool on_source, void *opaque)
{
	errors_seen++;
	ck_assert_int_lt(err, 0);
}

START_TEST(test_target_failure_does_not_fail_the_guest)
{
	g_autofree char *dir = g_dir_make_tmp("mfs-mirror-XXXXXX", NULL);
	g_autofree char *src = g_build_filename(dir, "src", NULL);
	g_autofree char *dst = g_build_filename(dir, "dst", NULL);
	g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);
	int guest = open(src, O_RDWR | O_CREAT, 0644);
	int dst_ro;
	MirrorFile *mf;
	MirrorFileStats st;
	uint64_t copied;

	ck_assert_int_eq(ftruncate(guest, 2 * CHUNK), 0);
	ck_assert(g_file_set_contents(dst, "", 0, NULL));
	dst_ro = open(dst, O_RDONLY); /* every target write fails with EBADF */
	mf = mirror_file_new(open(src, O_RDONLY), dst_ro, CHUNK, true);
	errors_seen = 0;
	mirror_file_set_error_handler(mf, count_error, NULL);
	ck_assert_int_eq(mirror_file_copy_next(mf, NULL, 1, &copied),
	                 1); /* a hole: nothing written */
	ck_assert_int_eq(mirror_file_write(mf, guest, "abc", 3, 0), 3);
	ck_assert_int_eq(errors_seen, 1);
	mirror_file_stats(mf, &st);
	ck_assert_int_eq(st.error, -EBADF);
	/* Detached: the guest goes on, the copier stops, nobody is told twice. */
	ck_assert_int_eq(mirror_file_write(mf, guest, "def", 3, 3), 3);
	ck_assert_int_eq(mirror_file_copy_next(mf, NULL, 1, &copied), -EBADF);
	ck_assert_int_eq(errors_seen, 1);
	mirror_file_free(mf);
	close(guest);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/*
 * Stress: threads write random, overlapping data while the copier runs
 * with a small chunk.  Each thread also owns a stripe that only it writes,
 * with a model kept in memory: the stripes must match their models, and
 * at the end the whole target must equal the source.
 */
#define STRESS_SIZE    (2 * 1024 * 1024)
#define STRESS_THREADS 4
#define STRESS_STRIPE  (STRESS_SIZE / STRESS_THREADS)

typedef struct {
	int id;
	guint32 seed;
	volatile gint *stop;
	unsigned char *model; /* this thread's stripe */
} StressJob;

static gpointer stress_thread(gpointer data)
{
	StressJob *job = data;
	GRand *rand = g_rand_new_with_seed(job->seed);
	unsigned char buf[16384];

	while (!g_atomic_int_get(job->stop)) {
		size_t len = g_rand_int_range(rand, 1, sizeof(buf));
		bool shared = g_rand_boolean(rand);
		/* Shared writes overlap each other above the stripes, growing the file. */
		off_t base = shared ? STRESS_SIZE : (off_t)job->id * STRESS_STRIPE;
		off_t span = shared ? 8 * CHUNK : STRESS_STRIPE;
		off_t off;

		if ((off_t)len > span)
			len = span;
		off = base + g_rand_int_range(rand, 0, span - len + 1);
		for (size_t i = 0; i < len; i++)
			buf[i] = (unsigned char)g_rand_int(rand);
		if (shared) {
			/* No model: only source == target can be checked. */
			ck_assert_int_eq(mirror_file_write(fx.mf, fx.guest_fd, buf, len, off), len);
			continue;
		}
		ck_assert_int_eq(mirror_file_write(fx.mf, fx.guest_fd, buf, len, off), len);
		memcpy(job->model + (off - base), buf, len);
	}
	g_rand_free(rand);
	return NULL;
}

START_TEST(test_stress_against_model)
{
	const char *env = getenv("MFS_SEED");
	guint32 seed = (env ? (guint32)atoi(env) : (guint32)time(NULL)) + (guint32)_i * 7919u;
	StressJob jobs[STRESS_THREADS];
	GThread *threads[STRESS_THREADS];
	volatile gint stop = 0;

	/* Runs 2, 3, 6, 7...: a window of four chunks in flight on a queue. */
	CopyQueue *q = _i % 4 >= 2 ? copy_queue_new(4) : NULL;

	printf("stress seed %u (MFS_SEED=%u reruns it)\n", seed, seed - (guint32)_i * 7919u);
	fixture_open(STRESS_SIZE, false);
	/* Every other run lets the chunk grow whenever the writers pause. */
	if (_i % 2)
		mirror_file_set_max_chunk(fx.mf, 8 * CHUNK);
	/* Half the file has data, the rest is hole. */
	for (int t = 0; t < STRESS_THREADS; t++) {
		jobs[t] = (StressJob){t, seed + t, &stop, g_malloc0(STRESS_STRIPE)};
		if (t % 2) {
			memset(jobs[t].model, t, STRESS_STRIPE);
			ck_assert_int_eq(pwrite(fx.guest_fd, jobs[t].model, STRESS_STRIPE,
			                        (off_t)t * STRESS_STRIPE),
			                 STRESS_STRIPE);
		}
	}
	for (int t = 0; t < STRESS_THREADS; t++)
		threads[t] = g_thread_new("stress", stress_thread, &jobs[t]);
	copy_all_on(q, q ? 4 : 1);
	g_atomic_int_set(&stop, 1);
	for (int t = 0; t < STRESS_THREADS; t++)
		g_thread_join(threads[t]);
	assert_files_equal();
	for (int t = 0; t < STRESS_THREADS; t++)
		g_free(jobs[t].model);
	fixture_close();
	copy_queue_free(q);
}
END_TEST

static Suite *mirror_suite(void)
{
	Suite *s = suite_create("mirror-file");
	TCase *table = tcase_create("write-table");
	TCase *races = tcase_create("races");
	TCase *ops = tcase_create("operations");
	TCase *stress = tcase_create("stress");

	tcase_add_test(table, test_write_below_cursor_goes_to_both);
	tcase_add_test(table, test_write_above_cursor_goes_to_source_only);
	tcase_add_test(table, test_write_spanning_cursor_is_split);
	tcase_add_test(table, test_write_after_mirrored_goes_to_both_and_grows);
	suite_add_tcase(s, table);

	tcase_add_test(races, test_write_into_chunk_in_flight_waits);
	tcase_add_test(races, test_copier_waits_for_write_in_flight);
	tcase_add_test(races, test_overlapping_writes_are_serialized);
	tcase_add_test(races, test_copier_not_starved_by_writes_into_its_chunk);
	tcase_add_test(races, test_write_into_a_copied_chunk_above_the_cursor_waits);
	suite_add_tcase(s, races);

	tcase_add_test(ops, test_growth_during_copy);
	tcase_add_test(ops, test_sparse_stays_sparse);
	tcase_add_test(ops, test_preallocated_stays_preallocated);
	tcase_add_test(ops, test_punch_hole_below_and_above_cursor);
	tcase_add_test(ops, test_truncate_below_and_above_cursor);
	tcase_add_test(ops, test_truncate_between_chunk_choice_and_claim);
	tcase_add_test(ops, test_truncate_in_flight_at_the_claim);
	tcase_add_loop_test(ops, test_a_lowered_cursor_stays_down_under_the_chunk_in_flight, 0, 2);
	tcase_add_test(ops, test_odd_sizes);
	tcase_add_test(ops, test_copy_bypasses_page_cache);
	tcase_add_test(ops, test_chunk_grows_while_guest_idle);
	tcase_add_test(ops, test_chunk_fixed_by_default);
	tcase_add_test(ops, test_target_failure_does_not_fail_the_guest);
	suite_add_tcase(s, ops);

	tcase_add_loop_test(stress, test_stress_against_model, 0, 20);
	tcase_set_timeout(stress, 120);
	suite_add_tcase(s, stress);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(mirror_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
