/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Checkpoints and resuming from them (issue 22): the intent log, the
 * record, and what a restarted migration trusts of a partial copy: its
 * checkpoints after a crash (with the changes in flight copied again),
 * only unchanged files after a reboot, nothing of a replaced source file,
 * nothing when the mount already serves.
 */
#define _GNU_SOURCE
#include "checkpoint.h"
#include "intent-log.h"
#include "journal.h"
#include "migration-fixture.h"
#include "mirror-file.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- the intent log */

typedef struct {
	unsigned n;
	uint32_t id[8];
	off_t start[8], end[8];
} Seen;

static void seen_add(uint32_t id, off_t start, off_t end, void *opaque)
{
	Seen *s = opaque;

	ck_assert_uint_lt(s->n, 8);
	s->id[s->n] = id;
	s->start[s->n] = start;
	s->end[s->n] = end;
	s->n++;
}

static int dir_fd(const char *dir)
{
	int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	return fd;
}

START_TEST(test_intent_log_names_what_was_in_flight)
{
	int dfd = dir_fd(dst);
	IntentLog *log = intent_log_create(dfd, 77);
	Seen seen = {0};
	int a, b, c;

	ck_assert_ptr_nonnull(log);
	a = intent_log_begin(log, 3, 4096, 8192);
	b = intent_log_begin(log, 5, 0, INT64_MAX);
	c = intent_log_begin(log, 3, 1 << 20, (1 << 20) + 512);
	ck_assert(a >= 0 && b >= 0 && c >= 0 && a != b && b != c);
	intent_log_end(log, a);
	/* "Killed" now: c and b were in flight. */
	ck_assert_int_eq(intent_log_read(dfd, 77, seen_add, &seen), 0);
	ck_assert_uint_eq(seen.n, 2);
	for (unsigned i = 0; i < seen.n; i++) {
		if (seen.id[i] == 5) {
			ck_assert_int_eq(seen.start[i], 0);
			ck_assert_int_eq(seen.end[i], INT64_MAX);
		} else {
			ck_assert_uint_eq(seen.id[i], 3);
			ck_assert_int_eq(seen.start[i], 1 << 20);
			ck_assert_int_eq(seen.end[i], (1 << 20) + 512);
		}
	}
	/* Another generation's log says nothing of this one. */
	ck_assert_int_eq(intent_log_read(dfd, 78, seen_add, &seen), -ESTALE);
	intent_log_free(log);
	intent_log_remove(dfd);
	ck_assert_int_eq(intent_log_read(dfd, 77, seen_add, &seen), -ENOENT);
	close(dfd);
}
END_TEST

START_TEST(test_a_full_intent_log_says_nothing)
{
	int dfd = dir_fd(dst);
	IntentLog *log = intent_log_create(dfd, 1);
	Seen seen = {0};
	int slot;

	ck_assert_ptr_nonnull(log);
	do
		slot = intent_log_begin(log, 0, 0, 1);
	while (slot >= 0);
	/* A change went unrecorded: nothing the log says may be trusted. */
	ck_assert_int_eq(intent_log_read(dfd, 1, seen_add, &seen), -ESTALE);
	ck_assert_uint_eq(seen.n, 0);
	intent_log_free(log);
	close(dfd);
}
END_TEST

/*
 * The target fills up while the log is in use: its stores must never
 * need a block (a hole in a shared mapping is a SIGBUS once the file
 * system is full, and the daemon dies under every guest).  On a tmpfs of
 * 256 KiB, filled after the log is made, every slot is taken, so every
 * page of the mapping is written.  Needs root (the mount): skipped else.
 */
START_TEST(test_an_intent_log_on_a_full_disk_never_faults)
{
	char dir[] = "/tmp/mfs-intent-full.XXXXXX";
	static const char block[4096];
	IntentLog *log;
	int dfd, fd, slot;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	if (geteuid() != 0 || mount("mfs-intent", dir, "tmpfs", 0, "size=256k") < 0) {
		rmdir(dir);
		return; /* not root: nothing to say */
	}
	dfd = dir_fd(dir);
	log = intent_log_create(dfd, 9);
	ck_assert_ptr_nonnull(log);
	fd = openat(dfd, "filler", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	while (write(fd, block, sizeof(block)) == (ssize_t)sizeof(block))
		;
	ck_assert_int_eq(errno, ENOSPC);
	close(fd);
	do
		slot = intent_log_begin(log, 1, 0, 1);
	while (slot >= 0);
	intent_log_free(log);
	close(dfd);
	ck_assert_int_eq(umount(dir), 0);
	rmdir(dir);
}
END_TEST

START_TEST(test_checkpoint_record_round_trip)
{
	int dfd = dir_fd(dst);
	g_auto(Checkpoints) c = {0}, back = {0};
	CheckpointFile f = {.id = 7, .cursor = 1ULL << 40, .src_ino = 12345, .changed = true};

	checkpoints_init(&c);
	c.source = g_strdup("/some/src\nwith a newline");
	c.boot = g_strdup(checkpoints_boot_id());
	c.gen = 99;
	f.path = g_strdup("dir/\xff odd=name");
	g_array_append_val(c.files, f);
	ck_assert_int_eq(checkpoints_write(dfd, &c, true), 0);
	ck_assert_int_eq(checkpoints_read(dfd, &back), 0);
	ck_assert_str_eq(back.source, c.source);
	ck_assert_str_eq(back.boot, checkpoints_boot_id());
	ck_assert_uint_eq(back.gen, 99);
	ck_assert_uint_eq(back.files->len, 1);
	ck_assert_str_eq(g_array_index(back.files, CheckpointFile, 0).path, "dir/\xff odd=name");
	ck_assert_uint_eq(g_array_index(back.files, CheckpointFile, 0).cursor, 1ULL << 40);
	ck_assert_uint_eq(g_array_index(back.files, CheckpointFile, 0).src_ino, 12345);
	ck_assert(g_array_index(back.files, CheckpointFile, 0).changed);
	ck_assert(journal_is_reserved_name(MFS_CHECKPOINT_NAME));
	ck_assert(journal_is_reserved_name(MFS_INTENT_LOG_NAME ".tmp"));
	ck_assert(!journal_is_reserved_name(".mirrorfs-journal.other"));
	checkpoints_remove(dfd);
	checkpoints_clear(&back);
	ck_assert_int_eq(checkpoints_read(dfd, &back), -ENOENT);
	close(dfd);
}
END_TEST

/* A mirrored write is in the log from before either side changes until both have it. */
typedef struct {
	int dfd;
	uint64_t gen;
	unsigned seen_admitted;
} WriteWatch;

static void watch_write(MirrorFile *mf, MirrorHookPoint point, off_t off, off_t len, void *opaque)
{
	WriteWatch *w = opaque;
	Seen seen = {0};

	(void)mf;
	if (point != MIRROR_HOOK_WRITE_ADMITTED)
		return;
	ck_assert_int_eq(intent_log_read(w->dfd, w->gen, seen_add, &seen), 0);
	ck_assert_uint_eq(seen.n, 1);
	ck_assert_uint_eq(seen.id[0], 4);
	ck_assert_int_eq(seen.start[0], off);
	ck_assert_int_eq(seen.end[0], off + len);
	w->seen_admitted++;
}

START_TEST(test_mirrored_writes_are_in_the_log_while_in_flight)
{
	WriteWatch w = {.dfd = dir_fd(dst), .gen = 5};
	g_autofree char *sp = g_build_filename(src, "disk.img", NULL);
	g_autofree char *dp = g_build_filename(dst, "disk.img", NULL);
	int s = open(sp, O_RDWR), d = open(dp, O_RDWR | O_CREAT, 0600);
	int guest = open(sp, O_RDWR);
	IntentLog *log = intent_log_create(w.dfd, w.gen);
	MirrorFile *mf;
	Seen seen = {0};
	char buf[100] = {1};

	ck_assert(s >= 0 && d >= 0 && guest >= 0 && log);
	mf = mirror_file_new(s, d, CHUNK, true);
	mirror_file_set_intent_log(mf, log, 4);
	mirror_file_set_hook(mf, watch_write, &w);
	mirror_file_resume_at(mf, 10 * CHUNK, false);
	/* Below the cursor: mirrored, logged while in flight. */
	ck_assert_int_eq(mirror_file_write(mf, guest, buf, sizeof(buf), 3 * CHUNK), sizeof(buf));
	ck_assert_uint_eq(w.seen_admitted, 1);
	ck_assert_int_eq(intent_log_read(w.dfd, w.gen, seen_add, &seen), 0);
	ck_assert_uint_eq(seen.n, 0);
	/* Above it: the source's alone, nothing to log (the copy will get there). */
	mirror_file_set_hook(mf, NULL, NULL);
	ck_assert_int_eq(mirror_file_write(mf, guest, buf, sizeof(buf), 20 * CHUNK), sizeof(buf));
	mirror_file_free(mf);
	intent_log_free(log);
	close(guest);
	close(w.dfd);
}
END_TEST

/* --- resuming a migration */

#define DISK_SIZE (40 * CHUNK + 123)
#define CURSOR    (20 * CHUNK)

/*
 * What a daemon killed half-way leaves in dst: the copying journal, a
 * target disk.img equal to the source below CURSOR but for a stale block
 * at @stale (if >= 0), garbage above, and a checkpoint record for it.
 * With @intent_at >= 0, the log of the record's generation names a write
 * at that block as in flight, and that block is stale too.
 */
static void plant_crash(const char *boot, bool changed, off_t stale, off_t intent_at, ino_t ino)
{
	g_autofree char *jpath = g_build_filename(dst, MFS_JOURNAL_NAME, NULL);
	g_autofree char *real_src = realpath(src, NULL);
	g_autofree char *jtext =
	    g_strdup_printf("[migration]\nstate=copying\nsource=%s\ntarget=%s\n", real_src, dst);
	g_autofree char *sp = g_build_filename(src, "disk.img", NULL);
	g_autofree char *dp = g_build_filename(dst, "disk.img", NULL);
	g_autofree char *data = NULL;
	g_auto(Checkpoints) c = {0};
	CheckpointFile f = {.path = g_strdup("disk.img"), .cursor = CURSOR, .changed = changed};
	struct stat st;
	gsize len;
	int dfd = dir_fd(dst);

	ck_assert(g_file_set_contents(jpath, jtext, -1, NULL));
	ck_assert(g_file_get_contents(sp, &data, &len, NULL));
	ck_assert_uint_eq(len, DISK_SIZE);
	memset(data + CURSOR, 0xee, len - CURSOR);
	if (stale >= 0)
		memset(data + stale, 0xaa, CHUNK);
	if (intent_at >= 0)
		memset(data + intent_at, 0xbb, CHUNK);
	ck_assert(g_file_set_contents(dp, data, len, NULL));
	ck_assert_int_eq(stat(sp, &st), 0);
	f.src_ino = ino ? ino : st.st_ino;
	checkpoints_init(&c);
	c.source = g_strdup(real_src);
	c.boot = g_strdup(boot);
	c.gen = 42;
	g_array_append_val(c.files, f);
	ck_assert_int_eq(checkpoints_write(dfd, &c, false), 0);
	if (intent_at >= 0) {
		IntentLog *log = intent_log_create(dfd, 42);

		ck_assert_ptr_nonnull(log);
		ck_assert_int_ge(intent_log_begin(log, 0, intent_at, intent_at + CHUNK), 0);
		intent_log_free(log); /* never ended: the daemon died with it in flight */
	}
	close(dfd);
}

static void start_resuming(bool resume)
{
	start(&(MfsMigOptions){.resume = resume, .manual_switch = true});
	wait_for(MFS_MIG_MIRRORED);
}

/* A manual-switch job waits for its switch: cancelled, the fixture can go. */
static void end_job(void)
{
	ck_assert_int_eq(mfs_migration_cancel(fs, NULL), 0);
	wait_for(MFS_MIG_CANCELLED);
}

static uint64_t bytes_resumed(void)
{
	MfsMigStatus st;
	uint64_t n;

	mfs_migration_status(fs, NULL, &st);
	n = st.bytes_resumed;
	mfs_migration_status_clear(&st);
	return n;
}

/* Whether dst's disk.img holds the stale block planted at @off. */
static bool block_is(off_t off, unsigned char byte)
{
	g_autofree char *dp = g_build_filename(dst, "disk.img", NULL);
	g_autofree char *data = NULL;
	gsize len;

	ck_assert(g_file_get_contents(dp, &data, &len, NULL));
	ck_assert_uint_gt(len, (gsize)off);
	return (unsigned char)data[off] == byte && (unsigned char)data[off + CHUNK - 1] == byte;
}

START_TEST(test_a_crash_resumes_from_the_checkpoint)
{
	/* Stale at block 2 (no intent names it), and at block 7 (one does). */
	plant_crash(checkpoints_boot_id(), true, 2 * CHUNK, 7 * CHUNK, 0);
	start_resuming(true);
	ck_assert_uint_eq(bytes_resumed(), CURSOR);
	/* Below the checkpoint the target was trusted: block 2 was not copied again... */
	ck_assert(block_is(2 * CHUNK, 0xaa));
	/* ...but the write in flight was, and so was everything above. */
	ck_assert(!block_is(7 * CHUNK, 0xbb));
	ck_assert(!block_is(30 * CHUNK, 0xee));
	/* Only the planted block differs: fix it, and the trees are equal. */
	{
		g_autofree char *sp = g_build_filename(src, "disk.img", NULL);
		g_autofree char *dp = g_build_filename(dst, "disk.img", NULL);
		g_autofree char *a = NULL, *b = NULL;
		gsize la, lb;

		ck_assert(g_file_get_contents(sp, &a, &la, NULL));
		ck_assert(g_file_get_contents(dp, &b, &lb, NULL));
		ck_assert_uint_eq(la, lb);
		ck_assert(memcmp(a, b, 2 * CHUNK) == 0);
		ck_assert(memcmp(a + 3 * CHUNK, b + 3 * CHUNK, la - 3 * CHUNK) == 0);
	}
	end_job();
}
END_TEST

START_TEST(test_a_reboot_trusts_only_unchanged_files)
{
	/* Changed, and the page cache that held the mirrored writes is gone. */
	plant_crash("another-boot", true, 2 * CHUNK, -1, 0);
	start_resuming(true);
	ck_assert_uint_eq(bytes_resumed(), 0);
	ck_assert(!block_is(2 * CHUNK, 0xaa));
	assert_trees_equal(src, dst);
	end_job();
}
END_TEST

START_TEST(test_a_reboot_keeps_an_unchanged_file_checkpoint)
{
	plant_crash("another-boot", false, 2 * CHUNK, -1, 0);
	start_resuming(true);
	ck_assert_uint_eq(bytes_resumed(), CURSOR);
	ck_assert(block_is(2 * CHUNK, 0xaa));
	end_job();
}
END_TEST

START_TEST(test_a_lost_intent_log_trusts_only_unchanged_files)
{
	int dfd = dir_fd(dst);

	plant_crash(checkpoints_boot_id(), true, 2 * CHUNK, 7 * CHUNK, 0);
	intent_log_remove(dfd);
	close(dfd);
	start_resuming(true);
	ck_assert_uint_eq(bytes_resumed(), 0);
	assert_trees_equal(src, dst);
	end_job();
}
END_TEST

START_TEST(test_a_replaced_source_file_is_copied_whole)
{
	plant_crash(checkpoints_boot_id(), false, 2 * CHUNK, -1, 1);
	start_resuming(true);
	ck_assert_uint_eq(bytes_resumed(), 0);
	assert_trees_equal(src, dst);
	end_job();
}
END_TEST

START_TEST(test_a_start_while_serving_copies_whole)
{
	plant_crash(checkpoints_boot_id(), false, 2 * CHUNK, -1, 0);
	start_resuming(false);
	ck_assert_uint_eq(bytes_resumed(), 0);
	assert_trees_equal(src, dst);
	end_job();
}
END_TEST

START_TEST(test_a_truncated_target_lowers_the_cursor)
{
	g_autofree char *dp = g_build_filename(dst, "disk.img", NULL);

	plant_crash(checkpoints_boot_id(), false, -1, -1, 0);
	/* The target ends below the checkpoint: a truncate reached it since. */
	ck_assert_int_eq(truncate(dp, 5 * CHUNK), 0);
	start_resuming(true);
	ck_assert_uint_eq(bytes_resumed(), 5 * CHUNK);
	assert_trees_equal(src, dst);
	end_job();
}
END_TEST

/* --- recording */

static bool record_of(const char *path, CheckpointFile *out)
{
	g_auto(Checkpoints) c = {0};
	int dfd = dir_fd(dst);
	bool found = false;

	if (checkpoints_read(dfd, &c) == 0)
		for (guint i = 0; i < c.files->len; i++) {
			CheckpointFile *f = &g_array_index(c.files, CheckpointFile, i);

			if (strcmp(f->path, path) == 0) {
				*out = *f;
				out->path = NULL;
				found = true;
			}
		}
	close(dfd);
	return found;
}

START_TEST(test_checkpoints_follow_the_copy_and_the_first_change)
{
	MfsMigOptions opts = {.manual_switch = true, .checkpoint_bytes = MFS_MIN_CHECKPOINT};
	CheckpointFile f;
	MfsEntry e;
	MfsFile *h;

	write_file(src, "big.img", 3 * MFS_MIN_CHECKPOINT + 5, 3);
	start(&opts);
	wait_for(MFS_MIG_MIRRORED);
	/* Recorded as it went: the big file past its first interval, unchanged. */
	ck_assert(record_of("big.img", &f));
	ck_assert_uint_ge(f.cursor, MFS_MIN_CHECKPOINT);
	ck_assert(!f.changed);
	/* A first change to it is recorded, durably, before it is made. */
	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), "big.img", &e), 0);
	ck_assert_int_eq(mfs_open(fs, e.inode, O_RDWR, &h), 0);
	ck_assert_int_eq(mfs_file_write(fs, h, "x", 1, 0), 1);
	ck_assert(record_of("big.img", &f));
	ck_assert(f.changed);
	mfs_release(fs, h);
	mfs_forget(fs, e.inode, 1);
	/* The switch takes the records away with the copying journal. */
	ck_assert_int_eq(mfs_migration_switch(fs, NULL), 0);
	wait_for(MFS_MIG_SWITCHED);
	ck_assert(!exists(dst, MFS_CHECKPOINT_NAME));
	ck_assert(!exists(dst, MFS_INTENT_LOG_NAME));
}
END_TEST

START_TEST(test_cancel_removes_the_records)
{
	start(&(MfsMigOptions){.manual_switch = true});
	wait_for(MFS_MIG_MIRRORED);
	ck_assert(exists(dst, MFS_INTENT_LOG_NAME));
	ck_assert_int_eq(mfs_migration_cancel(fs, NULL), 0);
	wait_for(MFS_MIG_CANCELLED);
	ck_assert(!exists(dst, MFS_CHECKPOINT_NAME));
	ck_assert(!exists(dst, MFS_INTENT_LOG_NAME));
}
END_TEST

/* --- what a checkpoint flushes */

/*
 * Counts the durable records, and holds the copier thread at @at (the
 * first time) until released.  pthread's, not GLib's: ThreadSanitizer
 * sees these.
 */
typedef struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const char *at;
	unsigned flushes;
	bool arrived, go;
} FlushWatch;

#define FLUSH_WATCH(point)                                                                         \
	{                                                                                          \
		PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, point, 0, false, false        \
	}

static void watch_flushes(Mfs *hfs, const char *point, void *opaque)
{
	FlushWatch *w = opaque;

	(void)hfs;
	pthread_mutex_lock(&w->lock);
	if (strcmp(point, "checkpoint-flush") == 0)
		w->flushes++;
	if (strcmp(point, w->at) == 0 && !w->arrived) {
		w->arrived = true;
		pthread_cond_broadcast(&w->cond);
		while (!w->go)
			pthread_cond_wait(&w->cond, &w->lock);
	}
	pthread_mutex_unlock(&w->lock);
}

static unsigned flushes_when_held(FlushWatch *w)
{
	unsigned n;

	pthread_mutex_lock(&w->lock);
	while (!w->arrived)
		pthread_cond_wait(&w->cond, &w->lock);
	n = w->flushes;
	pthread_mutex_unlock(&w->lock);
	return n;
}

static unsigned flushes_now(FlushWatch *w)
{
	unsigned n;

	pthread_mutex_lock(&w->lock);
	n = w->flushes;
	pthread_mutex_unlock(&w->lock);
	return n;
}

static void release(FlushWatch *w)
{
	pthread_mutex_lock(&w->lock);
	w->go = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* One byte written through the mount at @off of @name. */
static void guest_write(const char *name, off_t off)
{
	MfsEntry e;
	MfsFile *h;

	ck_assert_int_eq(mfs_lookup(fs, mfs_root(fs), name, &e), 0);
	ck_assert_int_eq(mfs_open(fs, e.inode, O_RDWR, &h), 0);
	ck_assert_int_eq(mfs_file_write(fs, h, "x", 1, off), 1);
	mfs_release(fs, h);
	mfs_forget(fs, e.inode, 1);
}

/* A source of one file, big.img, of four checkpoint intervals. */
static void only_a_big_file(void)
{
	const char *names[] = {"disk.img", "sub/alias.img", "empty", "sub/vm.conf"};

	for (unsigned i = 0; i < G_N_ELEMENTS(names); i++) {
		g_autofree char *p = g_build_filename(src, names[i], NULL);

		ck_assert_int_eq(unlink(p), 0);
	}
	write_file(src, "big.img", 4 * MFS_MIN_CHECKPOINT, 3);
}

/*
 * A job over only_a_big_file(), a checkpoint every interval, held at its
 * first checkpoint: returns the records flushed by then.
 */
static unsigned start_held_at_a_checkpoint(FlushWatch *w)
{
	only_a_big_file();
	start(&(MfsMigOptions){.manual_switch = true,
	                       .checkpoint_bytes = MFS_MIN_CHECKPOINT,
	                       .hook = watch_flushes,
	                       .hook_opaque = w});
	return flushes_when_held(w);
}

/*
 * A busy guest's file is changed: a reboot trusts nothing of it, so its
 * checkpoints need no flush (which stalls every write queued on the
 * target's disk).  The first change flushes, once; the three intervals
 * copied after it and the mirrored state's record do not.
 */
START_TEST(test_a_changed_file_costs_no_checkpoint_flush)
{
	FlushWatch w = FLUSH_WATCH("checkpoint");
	CheckpointFile f;
	unsigned before;

	/* The first interval, of a file no one changed: flushed, a reboot keeps it. */
	before = start_held_at_a_checkpoint(&w);
	ck_assert_uint_eq(before, 1);
	ck_assert(record_of("big.img", &f));
	ck_assert(!f.changed);
	/* Trusted by that record: its first change is recorded durably first. */
	guest_write("big.img", 0);
	ck_assert_uint_eq(flushes_now(&w), before + 1);
	ck_assert(record_of("big.img", &f));
	ck_assert(f.changed);
	release(&w);
	wait_for(MFS_MIG_MIRRORED);
	ck_assert_uint_eq(flushes_now(&w), before + 1);
	/* Still recorded, for a crash: the page cache keeps what the cursor says. */
	ck_assert(record_of("big.img", &f));
	ck_assert(f.changed);
	ck_assert_uint_ge(f.cursor, 4 * MFS_MIN_CHECKPOINT);
	end_job();
}
END_TEST

/*
 * A mirrored rename moves the names the records go by: the next
 * checkpoint is flushed, though the file is changed, and only that one.
 */
START_TEST(test_a_rename_flushes_the_next_checkpoint)
{
	FlushWatch w = FLUSH_WATCH("checkpoint");
	CheckpointFile f;
	unsigned before;

	before = start_held_at_a_checkpoint(&w);
	guest_write("big.img", 0);
	ck_assert_uint_eq(flushes_now(&w), before + 1);
	ck_assert_int_eq(mfs_rename(fs, mfs_root(fs), "big.img", mfs_root(fs), "moved.img", 0), 0);
	ck_assert_uint_eq(flushes_now(&w), before + 1);
	release(&w);
	wait_for(MFS_MIG_MIRRORED);
	ck_assert_uint_eq(flushes_now(&w), before + 2);
	ck_assert(record_of("moved.img", &f));
	ck_assert(!record_of("big.img", &f));
	end_job();
}
END_TEST

/*
 * A start over an earlier run's record: what that record trusts is not
 * this run's to know file by file (here a target truncated since: this
 * run trusts nothing of it, the old record still its cursor).  The first
 * change, before this run flushed any record, is recorded durably.
 */
START_TEST(test_a_start_over_an_earlier_record_flushes_the_first_change)
{
	g_autofree char *dp = g_build_filename(dst, "disk.img", NULL);
	FlushWatch w = FLUSH_WATCH("chunk");
	CheckpointFile f;

	plant_crash(checkpoints_boot_id(), false, -1, -1, 0);
	ck_assert_int_eq(truncate(dp, 0), 0);
	start(&(MfsMigOptions){
	    .resume = true, .manual_switch = true, .hook = watch_flushes, .hook_opaque = &w});
	ck_assert_uint_eq(flushes_when_held(&w), 0);
	guest_write("disk.img", 0);
	ck_assert_uint_eq(flushes_now(&w), 1);
	ck_assert(record_of("disk.img", &f));
	ck_assert(f.changed);
	release(&w);
	wait_for(MFS_MIG_MIRRORED);
	end_job();
}
END_TEST

/* --- the job's record in the source */

static bool source_journal(Journal *j)
{
	int fd = dir_fd(src);
	bool ok = journal_read(fd, j) == 0;

	close(fd);
	return ok;
}

START_TEST(test_a_stopped_daemon_resumes_its_job)
{
	g_autofree char *real_dst = realpath(dst, NULL);
	g_autofree char *error = NULL;
	g_auto(Journal) j = {0};
	MfsMigStatus st;

	write_file(src, "big.img", 3 * MFS_MIN_CHECKPOINT + 5, 3);
	start(&(MfsMigOptions){.manual_switch = true, .speed_bps = 3 << 20, .guest_share = 30});
	/* Recorded in the source, with its options. */
	ck_assert(source_journal(&j));
	ck_assert_str_eq(j.state, "migrating");
	ck_assert_str_eq(j.target, real_dst);
	ck_assert(g_strv_contains((const char *const *)j.job, "switch=manual"));
	ck_assert(g_strv_contains((const char *const *)j.job, "speed=3145728"));
	journal_clear(&j);
	/* Some of it copied, then the daemon stops (an unmount). */
	while (mfs_migration_wait(fs, NULL, MFS_MIG_MIRRORED, 50) == MFS_MIG_COPYING) {
		mfs_migration_status(fs, NULL, &st);
		if (st.bytes_copied >= (1 << 20)) {
			mfs_migration_status_clear(&st);
			break;
		}
		mfs_migration_status_clear(&st);
	}
	/* The operator's last limits are the record's. */
	ck_assert_int_eq(mfs_migration_set_speed(fs, NULL, 5 << 20), 0);
	ck_assert_int_eq(mfs_migration_set_guest_share(fs, NULL, 40), 0);
	mfs_migration_shutdown(fs);
	ck_assert_int_eq(mfs_migration_wait(fs, NULL, MFS_MIG_STOPPED, 0), MFS_MIG_STOPPED);
	/* The copy and the record stay: not a cancel. */
	ck_assert(exists(dst, "big.img"));
	ck_assert(exists(dst, MFS_CHECKPOINT_NAME));
	ck_assert(source_journal(&j));
	ck_assert_str_eq(j.state, "migrating");
	journal_clear(&j);

	/* The next daemon: another target on its command line is refused... */
	mfs_free(fs);
	ck_assert_int_eq(mfs_new(src, &fs), 0);
	ck_assert_int_eq(mfs_migration_start_recorded(fs, top, &error), -EBUSY);
	ck_assert_ptr_nonnull(strstr(error, "records a migration to"));
	g_clear_pointer(&error, g_free);
	/* ...the same one is the command line's own start... */
	ck_assert_int_eq(mfs_migration_start_recorded(fs, dst, &error), 0);
	/* ...and none resumes the recorded one, with its options, from its checkpoints. */
	ck_assert_int_eq(mfs_migration_start_recorded(fs, NULL, &error), 1);
	mfs_migration_launch(fs);
	mfs_migration_status(fs, NULL, &st);
	ck_assert_uint_eq(st.speed_bps, 5 << 20);
	ck_assert_uint_eq(st.guest_share, 40);
	/* A clean stop flushed both sides: everything copied is trusted. */
	ck_assert_uint_ge(st.bytes_resumed, 1 << 20);
	mfs_migration_status_clear(&st);
	ck_assert_int_eq(mfs_migration_set_speed(fs, NULL, 0), 0);
	wait_for(MFS_MIG_MIRRORED);
	ck_assert_int_eq(mfs_migration_switch(fs, NULL), 0);
	wait_for(MFS_MIG_SWITCHED);
	assert_trees_equal(src, dst);
	ck_assert(source_journal(&j));
	ck_assert_str_eq(j.state, "switched");
}
END_TEST

START_TEST(test_a_cancel_forgets_the_job)
{
	g_autofree char *error = NULL;
	g_auto(Journal) j = {0};

	start(&(MfsMigOptions){.manual_switch = true});
	wait_for(MFS_MIG_MIRRORED);
	ck_assert_int_eq(mfs_migration_cancel(fs, NULL), 0);
	wait_for(MFS_MIG_CANCELLED);
	ck_assert(!source_journal(&j));
	ck_assert_int_eq(mfs_migration_start_recorded(fs, NULL, &error), 0);
}
END_TEST

START_TEST(test_a_job_that_cannot_resume_can_be_forgotten)
{
	g_autofree char *error = NULL, *target = NULL;
	g_autofree char *gone = g_build_filename(top, "gone", NULL);
	g_auto(Journal) j = {0};
	int fd = dir_fd(src);
	char *job[] = {"speed=0", NULL};

	ck_assert_int_eq(
	    journal_write(
	        fd, &(Journal){.state = "migrating", .source = src, .target = gone, .job = job},
	        false),
	    0);
	close(fd);
	/* None started, and the error names the job's target, for cancel --job. */
	ck_assert_int_eq(mfs_migration_start_recorded(fs, NULL, &error), 0);
	ck_assert_ptr_nonnull(error);
	ck_assert_ptr_nonnull(strstr(error, gone));
	ck_assert(source_journal(&j));
	journal_clear(&j);
	ck_assert_int_eq(mfs_migration_forget_recorded(fs, NULL, &target), 0);
	ck_assert_str_eq(target, gone);
	ck_assert(!source_journal(&j));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("resume");
	TCase *tc = tcase_create("resume");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_intent_log_names_what_was_in_flight);
	tcase_add_test(tc, test_a_full_intent_log_says_nothing);
	tcase_add_test(tc, test_an_intent_log_on_a_full_disk_never_faults);
	tcase_add_test(tc, test_checkpoint_record_round_trip);
	tcase_add_test(tc, test_mirrored_writes_are_in_the_log_while_in_flight);
	tcase_add_test(tc, test_a_crash_resumes_from_the_checkpoint);
	tcase_add_test(tc, test_a_reboot_trusts_only_unchanged_files);
	tcase_add_test(tc, test_a_reboot_keeps_an_unchanged_file_checkpoint);
	tcase_add_test(tc, test_a_lost_intent_log_trusts_only_unchanged_files);
	tcase_add_test(tc, test_a_replaced_source_file_is_copied_whole);
	tcase_add_test(tc, test_a_start_while_serving_copies_whole);
	tcase_add_test(tc, test_a_truncated_target_lowers_the_cursor);
	tcase_add_test(tc, test_checkpoints_follow_the_copy_and_the_first_change);
	tcase_add_test(tc, test_cancel_removes_the_records);
	tcase_add_test(tc, test_a_changed_file_costs_no_checkpoint_flush);
	tcase_add_test(tc, test_a_rename_flushes_the_next_checkpoint);
	tcase_add_test(tc, test_a_start_over_an_earlier_record_flushes_the_first_change);
	tcase_add_test(tc, test_a_stopped_daemon_resumes_its_job);
	tcase_add_test(tc, test_a_cancel_forgets_the_job);
	tcase_add_test(tc, test_a_job_that_cannot_resume_can_be_forgotten);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
