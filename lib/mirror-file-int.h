/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The MirrorFile's insides, shared by mirror-file.c (the ranges, the guest's
 * operations and the chunk protocol, whose rules it states) and
 * mirror-copy.c (what the copier does with a chunk it holds).
 */
#ifndef MFS_MIRROR_FILE_INT_H
#define MFS_MIRROR_FILE_INT_H

#include "copy-queue.h"
#include "intent-log.h"
#include "lock.h"
#include "mirror-file.h"
#include "util.h"

#include <sys/types.h>

#define MIRROR_OFF_MAX   INT64_MAX
#define ROUND_UP(n, a)   (((n) + (a)-1) / (a) * (a))
#define ROUND_DOWN(n, a) ((n) / (a) * (a))

/* A chunk in the copier's window (mirror-copy.c). */
typedef struct {
	CopyJob base;
	MirrorFile *mf;
	off_t start, end; /* copied: [start, end), end at the source's end or start + chunk */
	off_t claim_end;  /* claimed: [start, claim_end) */
	int ret;          /* when done: 0, or the copy's -errno */
	bool on_source;   /* the error was reading the source */
	uint64_t copied, cloned;
} MirrorCopyJob;

typedef struct Range Range;
struct Range {
	off_t start, end;
	int intent; /* its slot in the intent log, or -1 */
	Range *next;
};

struct MirrorFile {
	int src_fd;        /* immutable; the copier's */
	int dst_fd;        /* immutable */
	size_t chunk_size; /* immutable */
	size_t max_chunk;  /* set before use */
	size_t next_chunk; /* the copier's */
	uint64_t ops_seen; /* the copier's: guest_ops when it claimed its last chunk */
	bool dst_fresh;    /* protected by lock: the target holds nothing above the cursor */
	MirrorHook hook;   /* set before use */
	void *hook_opaque;
	MirrorErrorFn on_error; /* set before use */
	void *error_opaque;
	MirrorHoldFn on_hold; /* set before use, or NULL */
	void *hold_opaque;
	IntentLog *intents;       /* set before use, or NULL */
	uint32_t intent_id;       /* set before use */
	MirrorChangeFn on_change; /* set before use */
	void *change_opaque;
	void *copy_buf;            /* the copier's thread's, aligned */
	size_t copy_buf_size;      /* the copier's */
	int copy_src_direct;       /* the copier's O_DIRECT twins of src_fd, dst_fd, */
	int copy_dst_direct;       /* or -1: not open, or no O_DIRECT there */
	bool copy_src_direct_off;  /* atomic: the twin refused, use src_fd */
	bool copy_dst_direct_off;  /* atomic: the twin refused, use dst_fd */
	bool copy_direct_tried;    /* the copier's: the twins were opened */
	bool copy_clone;           /* atomic: try FICLONERANGE first */
	bool copy_prealloc;        /* atomic: look for preallocated ranges in holes */
	/* The copier's window: chunks in flight, oldest at jobs[job_head]. */
	MirrorCopyJob jobs[COPY_QUEUE_MAX];
	unsigned job_head, job_n;
	bool jobs_broken;        /* a chunk failed, or the cursor came down: none moves it */
	int jobs_err;            /* the first failed chunk's -errno, */
	off_t jobs_err_at;       /* its start, */
	bool jobs_err_on_source; /* and whose it was */

	MfsMutex lock;
	MfsCond cond;                 /* a range was released, or the file detached */
	off_t cp_offset;              /* protected by lock */
	off_t chunk_start, chunk_end; /* protected by lock: the copier's window; equal when none */
	Range *inflight;              /* protected by lock */
	bool detached;                /* protected by lock */
	bool change_telling;          /* protected by lock: on_change is running */
	bool change_told;             /* protected by lock: on_change has run */
	Range *recopy;                /* protected by lock: below the cursor, to copy again first */
	int error;                    /* protected by lock */
	off_t size;                   /* protected by lock */
	uint64_t bytes_copied;        /* protected by lock */
	uint64_t bytes_cloned;        /* protected by lock: part of bytes_copied */
	uint64_t bytes_resumed;       /* protected by lock: below the cursor it resumed at */
	uint64_t guest_ops;           /* protected by lock: operations admitted */
	uint64_t mirrored_writes;     /* protected by lock */
	uint64_t waited_writes;       /* protected by lock */
	uint64_t max_wait_ns;         /* protected by lock */
};

/* mirror-file.c: the chunk protocol (rules 2 and 3) and what both halves use. */
void mirror_run_hook(MirrorFile *mf, MirrorHookPoint point, off_t start, off_t end);
void mirror_fail(MirrorFile *mf, int err, bool on_source);
int mirror_pwrite_all(int fd, const void *buf, size_t len, off_t off);
bool mirror_chunk_claim(MirrorFile *mf, off_t start, off_t end);
/*
 * Grow the window claimed above the cursor up to @end (or shrink it back
 * to @end), draining [@start, @end); false when the cursor is no longer
 * at @cursor, the window's bottom.
 */
bool mirror_chunk_extend(MirrorFile *mf, off_t start, off_t end, off_t cursor);
/* Take the first range to copy again off the list; false when there is none. */
bool mirror_recopy_take(MirrorFile *mf, off_t *start, off_t *end);
void mirror_chunk_release(MirrorFile *mf, off_t new_cp, uint64_t copied, uint64_t cloned);
int mirror_chunk_claim_at_cursor(MirrorFile *mf, size_t chunk, off_t *start);

/* mirror-copy.c: the copier's descriptors and buffer, let go. */
void mirror_copy_resources_free(MirrorFile *mf);

#endif /* MFS_MIRROR_FILE_INT_H */
