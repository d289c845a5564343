/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The intent log of mirrored changes in flight: see intent-log.c. */
#ifndef MFS_INTENT_LOG_H
#define MFS_INTENT_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct IntentLog IntentLog;

/* Called by intent_log_read() for each change that was in flight. */
typedef void (*IntentFn)(uint32_t id, off_t start, off_t end, void *opaque);

/*
 * Make a new, empty log of generation @gen in @dir_fd, replacing any
 * there (under MFS_INTENT_LOG_NAME, journal.h).  NULL (errno set) when the file
 * system cannot map it: then there is no log, and a restart trusts no
 * checkpoint of a file the guest changed.
 */
IntentLog *intent_log_create(int dir_fd, uint64_t gen);
void intent_log_free(IntentLog *log);
/* Remove the log from @dir_fd (the job ended). */
void intent_log_remove(int dir_fd);

/*
 * Record that a change of [@start, @end) of file @id is about to reach
 * the source and the target.  Returns the slot to pass to
 * intent_log_end() once both sides hold it, or -1 when the log is full
 * (the log then says so: a restart trusts none of it).  Lock-free.
 */
int intent_log_begin(IntentLog *log, uint32_t id, off_t start, off_t end);
void intent_log_end(IntentLog *log, int slot);

/*
 * Read the log of generation @gen in @dir_fd, calling @fn for each change
 * in flight when its writer died.  Returns 0; -ESTALE when the log is
 * not of @gen or overflowed, -ENOENT when there is none, or -errno: then
 * nothing it says can be relied on.
 */
int intent_log_read(int dir_fd, uint64_t gen, IntentFn fn, void *opaque);

#endif
