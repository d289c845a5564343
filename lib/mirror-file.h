/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Per-file I/O mirroring: the copy cursor, the chunk in flight and the
 * guest writes in flight of one file being migrated.  See mirror-file.c
 * for the ordering rules.
 */
#ifndef MIRROR_FILE_H
#define MIRROR_FILE_H

#include "copy-queue.h"
#include "intent-log.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct MirrorFile MirrorFile;

/* Points where a test may stop a thread to force an interleaving. */
typedef enum {
	MIRROR_HOOK_CHUNK_NEXT,     /* copier: about to claim its next chunk, nothing claimed */
	MIRROR_HOOK_CHUNK_CLAIMED,  /* copier: chunk marked in flight, not yet drained */
	MIRROR_HOOK_CHUNK_READ,     /* copier: chunk read from the source, not yet written */
	MIRROR_HOOK_WRITE_ADMITTED, /* writer: range admitted, nothing written yet */
	MIRROR_HOOK_WRITE_WAITING,  /* writer: about to wait for a conflicting range */
} MirrorHookPoint;

/* @on_source: the copier could not read the source (else: the target failed). */
typedef void (*MirrorErrorFn)(MirrorFile *mf, int err, bool on_source, void *opaque);
typedef void (*MirrorHook)(MirrorFile *mf, MirrorHookPoint point, off_t off, off_t len,
                           void *opaque);
/* The file's first mirrored change is about to be made (see mirror_file_set_change_handler()). */
typedef void (*MirrorChangeFn)(MirrorFile *mf, void *opaque);
typedef bool (*MirrorHoldFn)(MirrorFile *mf, int err, off_t from, void *opaque);

typedef struct {
	off_t size;            /* of the source, as last seen */
	off_t cp_offset;       /* every byte below is on the target */
	uint64_t bytes_copied; /* data the copier moved (holes not counted) */
	uint64_t bytes_cloned; /* of which cloned, sharing the source's blocks */
	uint64_t bytes_resumed; /* not copied: below the checkpoint the copy resumed at */
	uint64_t mirrored_writes;
	uint64_t waited_writes; /* writes that waited on the chunk in flight */
	uint64_t max_wait_ns;
	uint64_t guest_ops; /* guest writes, fallocates and truncates admitted */
	bool mirrored;      /* copy done: every change goes to both sides */
	int error;          /* first target error (-errno), 0 if none */
} MirrorFileStats;

/*
 * Start mirroring a file.  @src_fd is read by the copier; @dst_fd is the
 * target, written by the copier and by mirrored operations.  Both are
 * owned by the MirrorFile from now on.  @dst_fresh says the target was
 * created empty, so holes need not be punched into it.
 */
MirrorFile *mirror_file_new(int src_fd, int dst_fd, size_t chunk_size, bool dst_fresh);
void mirror_file_free(MirrorFile *mf);
/* For a file created empty on both sides, before anyone can write it. */
void mirror_file_mark_mirrored(MirrorFile *mf);
/*
 * Let the chunk grow up to @max_chunk while the guest leaves the file
 * alone (see mirror-file.c).  By default, or with a @max_chunk no larger
 * than chunk_size (0), the next chunk is chunk_size.
 */
void mirror_file_set_max_chunk(MirrorFile *mf, size_t max_chunk);
/* Clone data extents where the file system can (the default), or copy them. */
void mirror_file_set_clone(MirrorFile *mf, bool clone);
void mirror_file_set_hook(MirrorFile *mf, MirrorHook hook, void *opaque);
/*
 * Called once, on the first failure (the target's, or the source's in a
 * copier's read): without the MirrorFile's lock, by the thread that met
 * it, a guest's inside the gate or the copier's.
 */
void mirror_file_set_error_handler(MirrorFile *mf, MirrorErrorFn fn, void *opaque);
/*
 * Asked first when writing the target fails (a mirrored write or
 * fallocate, a guest's fsync, the copier's chunk), with the errno and the
 * offset from which the target may now be wrong: returning true, the
 * owner holds the file instead of failing it, and has brought its cursor
 * down there (mirror_file_lower_cursor()); the guest's operation
 * succeeds on the source, and the file goes on mirroring.  Without the
 * MirrorFile's lock, by the thread that met the failure.
 */
void mirror_file_set_hold_handler(MirrorFile *mf, MirrorHoldFn fn, void *opaque);
/*
 * Copy again from @from: the cursor comes down there, never up, and the
 * copier's chunk in flight above it does not lift it back.  The target
 * above may hold old bytes: holes are punched there as the copy goes.
 */
void mirror_file_lower_cursor(MirrorFile *mf, off_t from);
/*
 * Writing the target failed from @from on (here or in the owner's own
 * flush): true when the owner holds the file (the hold handler), false
 * when the file failed (the error handler, once).
 */
bool mirror_file_target_failed(MirrorFile *mf, int err, off_t from);

/*
 * Record every mirrored change in @log as file @id while it is in flight
 * (intent-log.c), so that a restart knows which ranges may differ.
 */
void mirror_file_set_intent_log(MirrorFile *mf, IntentLog *log, uint32_t id);
/*
 * Call @fn once, before the first change that reaches both sides is made
 * to either; that change, and any other, waits until @fn returns.
 */
void mirror_file_set_change_handler(MirrorFile *mf, MirrorChangeFn fn, void *opaque);
/*
 * Before use: the target already holds the source's bytes below @cursor
 * (a checkpoint of an earlier run), but for the ranges given to
 * mirror_file_recopy(), which the copier copies again first.  A range
 * that reaches the cursor brings the cursor down to its start instead.
 * @changed: a mirrored change reached the file in that run already (the
 * change handler is not called again).
 */
void mirror_file_resume_at(MirrorFile *mf, off_t cursor, bool changed);
void mirror_file_recopy(MirrorFile *mf, off_t start, off_t end);
/*
 * What a checkpoint may record now: every byte below the returned cursor
 * is on the target, the ranges still to copy again excepted
 * (MIRROR_CHECKPOINT_ALL: the whole file, mirrored).  @changed says
 * whether a mirrored change has reached the file.
 */
#define MIRROR_CHECKPOINT_ALL INT64_MAX
off_t mirror_file_checkpoint(MirrorFile *mf, bool *changed);

/*
 * Guest operations.  Each applies the operation to @src_fd (the guest's
 * own descriptor of the source) and, where the rules say so, to the
 * target; they return what the source returned.  A target failure does
 * not fail the guest: it is recorded (see stats.error), mirroring stops
 * for this file, and the migration is expected to abort.  May block on
 * the chunk in flight and on overlapping writes.
 */
ssize_t mirror_file_write(MirrorFile *mf, int src_fd, const void *buf, size_t len, off_t off);
int mirror_file_fallocate(MirrorFile *mf, int src_fd, int mode, off_t off, off_t len);
int mirror_file_truncate(MirrorFile *mf, int src_fd, off_t size);
int mirror_file_fsync(MirrorFile *mf, int src_fd, bool datasync);

/*
 * Copier: copy the next chunk, keeping up to @depth chunks in flight on
 * @q (at most one without a queue: copied by the calling thread), and
 * retire the oldest.  Returns 1 when there is more to copy, 0 when the
 * file is mirrored, -errno when the copy failed (the error is recorded
 * as for a target failure).  @copied gets the data bytes read and
 * written of the chunk retired; cloned ones cost the disk next to
 * nothing and only show in the stats.  The chunks still in flight keep
 * the guest's writes out of their ranges until they are retired: before
 * the copier rests, pauses or leaves the file, mirror_file_copy_drain().
 */
int mirror_file_copy_next(MirrorFile *mf, CopyQueue *q, unsigned depth, uint64_t *copied);
/* Retire every chunk in flight (adding to @copied): 0, or -errno as above. */
int mirror_file_copy_drain(MirrorFile *mf, CopyQueue *q, uint64_t *copied);

/*
 * With no change in flight and none to come (the mirrors detached, the
 * guest gone): flush both sides, which then hold the same bytes below
 * the cursor, durably; the file counts as unchanged again
 * (mirror_file_checkpoint()).  0, or the first failure's -errno.
 */
int mirror_file_settle(MirrorFile *mf);
/*
 * Compare [@pos, @pos + @len) of both sides, by the chunk protocol: the
 * guest's changes there wait for it, so a mirrored file's two sides hold
 * the same bytes unless the copy went wrong.  Returns the bytes compared,
 * 0 at the source's end (where the sizes are compared too), -EAGAIN when
 * the file grew meanwhile (compare on from @pos), or -errno; *@mismatch:
 * the first offset that differs, or -1.  @a and @b hold @len bytes each.
 */
int64_t mirror_file_verify(MirrorFile *mf, off_t pos, size_t len, void *a, void *b,
                           off_t *mismatch);
/* Start writing the target's dirty pages back, without waiting. */
void mirror_file_start_writeback(MirrorFile *mf);
/* Flush the target, and only that: -errno, nothing else done about a failure. */
int mirror_file_sync_target(MirrorFile *mf);
/* Flush the target (ahead of the switch).  */
int mirror_file_flush_target(MirrorFile *mf);
int mirror_file_target_fd(MirrorFile *mf);
/* Give the target the source's access and modification times (best effort). */
void mirror_file_copy_times(MirrorFile *mf);
void mirror_file_stats(MirrorFile *mf, MirrorFileStats *out);
/* Stop mirroring after a failure or cancel: from now on source only. */
void mirror_file_detach(MirrorFile *mf);

#endif /* MIRROR_FILE_H */
