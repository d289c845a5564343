/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The migration journal: see journal.c. */
#ifndef MFS_JOURNAL_H
#define MFS_JOURNAL_H

#include <stdbool.h>

/* Write the journal in @dir_fd, synced when @durable.  Returns 0 or -errno. */
int journal_write(int dir_fd, const char *state, const char *source, const char *target,
                  bool durable);
/* Read it; the strings are the caller's.  -ENOENT when there is none. */
int journal_read(int dir_fd, char **state, char **source, char **target);
/* The target a switched source moved to, or NULL. */
char *journal_switched_target(int dir_fd);
int journal_remove(int dir_fd);

#endif
