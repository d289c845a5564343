/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The intent log: which mirrored changes were half-way when the daemon
 * died.
 *
 * A mirrored write reaches the source, then the target.  Killed between
 * the two, the daemon leaves the two sides different below the copy
 * cursor, and a restart that resumed the copy from a checkpoint would
 * keep the stale target bytes.  So every mirrored change records its
 * range here before it touches either side and clears it when both hold
 * it; a restart copies the ranges it finds again before anything else.
 *
 * The log is a small file in the target's root, mapped shared: a record
 * is two stores to memory, no system call.  It is never synced.  The
 * pages of a shared mapping are the file's page cache, so they outlive
 * the process that wrote them (kill -9, abort, OOM kill): exactly as long
 * as the unsynced mirrored writes it describes, which live in the same
 * page cache.  After a reboot both are gone, and the checkpoints say so
 * (their boot id): the log is then not read at all.
 *
 * A slot is claimed with a compare-and-swap, filled, then published with
 * the file's id; a slot caught half-filled by a kill names no change yet
 * made (the change starts after intent_log_begin() returns).
 *
 * Its blocks are written at creation, never left a hole: a store to a
 * page of a shared mapping whose block the file system must allocate
 * then, and cannot (the target full), is a SIGBUS that kills the daemon
 * under every guest.  On btrfs the file is made no-copy-on-write for the
 * same reason.
 */
#define _GNU_SOURCE
#include "intent-log.h"
#include "journal.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define INTENT_LOG_TMP MFS_INTENT_LOG_NAME MFS_JOURNAL_TMP_SUFFIX
#define INTENT_MAGIC   0x746e65746e69666dULL /* "mfintent" */
#define INTENT_SLOTS   4096u                 /* well over the daemon's threads */
#define SLOT_FREE      0u
#define SLOT_FILLING   UINT64_MAX

typedef struct {
	_Atomic uint64_t word; /* SLOT_FREE, SLOT_FILLING, or the file's id + 1 */
	uint64_t start, end;
} IntentSlot;

typedef struct {
	uint64_t magic;
	uint64_t gen;
	_Atomic uint64_t overflow; /* a change found no slot: the log says nothing */
	uint64_t n_slots;
	IntentSlot slots[];
} IntentHeader;

struct IntentLog {
	IntentHeader *map;
	size_t map_size;
	_Atomic unsigned next; /* where the next search starts */
};

static size_t log_size(void)
{
	return sizeof(IntentHeader) + INTENT_SLOTS * sizeof(IntentSlot);
}

/* Give the empty file at @fd @size bytes of zeros, on disk blocks of its own. */
static int allocate_log(int fd, size_t size)
{
	static const char zeros[4096];
	int flags = 0;

	/* Before any data: btrfs takes the flag on an empty file only. */
	if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
		flags |= FS_NOCOW_FL;
		(void)ioctl(fd, FS_IOC_SETFLAGS, &flags);
	}
	for (size_t off = 0; off < size; off += sizeof(zeros)) {
		size_t len = MIN(sizeof(zeros), size - off);
		ssize_t n = pwrite(fd, zeros, len, (off_t)off);

		if (n < 0)
			return -1;
		if ((size_t)n != len) {
			errno = ENOSPC; /* a short write: the file system is full */
			return -1;
		}
	}
	return 0;
}

void intent_log_remove(int dir_fd)
{
	unlinkat(dir_fd, MFS_INTENT_LOG_NAME, 0);
	unlinkat(dir_fd, INTENT_LOG_TMP, 0);
}

IntentLog *intent_log_create(int dir_fd, uint64_t gen)
{
	size_t size = log_size();
	IntentLog *log;
	void *map;
	int fd, err;

	/* Made anew, never opened through a name someone may have planted. */
	if (unlinkat(dir_fd, INTENT_LOG_TMP, 0) < 0 && errno != ENOENT)
		return NULL;
	fd = openat(dir_fd, INTENT_LOG_TMP, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	            0600);
	if (fd < 0)
		return NULL;
	if (allocate_log(fd, size) < 0)
		goto fail;
	map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		goto fail;
	((IntentHeader *)map)->gen = gen;
	((IntentHeader *)map)->n_slots = INTENT_SLOTS;
	((IntentHeader *)map)->magic = INTENT_MAGIC;
	if (renameat(dir_fd, INTENT_LOG_TMP, dir_fd, MFS_INTENT_LOG_NAME) < 0) {
		munmap(map, size);
		goto fail;
	}
	close(fd);
	log = g_new0(IntentLog, 1);
	log->map = map;
	log->map_size = size;
	return log;
fail:
	err = errno;
	close(fd);
	unlinkat(dir_fd, INTENT_LOG_TMP, 0);
	errno = err;
	return NULL;
}

void intent_log_free(IntentLog *log)
{
	if (!log)
		return;
	munmap(log->map, log->map_size);
	g_free(log);
}

int intent_log_begin(IntentLog *log, uint32_t id, off_t start, off_t end)
{
	unsigned first = atomic_fetch_add_explicit(&log->next, 1, memory_order_relaxed);

	for (unsigned i = 0; i < INTENT_SLOTS; i++) {
		IntentSlot *s = &log->map->slots[(first + i) % INTENT_SLOTS];
		uint64_t expect = SLOT_FREE;

		if (atomic_load_explicit(&s->word, memory_order_relaxed) != SLOT_FREE ||
		    !atomic_compare_exchange_strong(&s->word, &expect, SLOT_FILLING))
			continue;
		s->start = (uint64_t)start;
		s->end = (uint64_t)end;
		atomic_store(&s->word, (uint64_t)id + 1);
		return (int)((first + i) % INTENT_SLOTS);
	}
	atomic_store(&log->map->overflow, 1);
	return -1;
}

void intent_log_end(IntentLog *log, int slot)
{
	if (slot >= 0)
		atomic_store(&log->map->slots[slot].word, SLOT_FREE);
}

int intent_log_read(int dir_fd, uint64_t gen, IntentFn fn, void *opaque)
{
	cleanup_close int fd =
	    openat(dir_fd, MFS_INTENT_LOG_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	size_t size = log_size();
	IntentHeader *h;
	struct stat st;
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || (size_t)st.st_size != size)
		return -ESTALE;
	h = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (h == MAP_FAILED)
		return -errno;
	if (h->magic != INTENT_MAGIC || h->gen != gen || h->n_slots != INTENT_SLOTS ||
	    atomic_load(&h->overflow)) {
		ret = -ESTALE;
		goto out;
	}
	for (unsigned i = 0; i < INTENT_SLOTS; i++) {
		uint64_t word = atomic_load(&h->slots[i].word);

		if (word != SLOT_FREE && word != SLOT_FILLING &&
		    h->slots[i].start < h->slots[i].end)
			fn((uint32_t)(word - 1), (off_t)MIN(h->slots[i].start, (uint64_t)INT64_MAX),
			   (off_t)MIN(h->slots[i].end, (uint64_t)INT64_MAX), opaque);
	}
out:
	munmap(h, size);
	return ret;
}
