/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A copy's checkpoints, kept in its target: see checkpoint.c. */
#ifndef MFS_CHECKPOINT_H
#define MFS_CHECKPOINT_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
	char *path;       /* of the target file, relative to the target's root */
	uint32_t id;      /* the file's id in the intent log */
	uint64_t cursor;  /* the target holds the source's bytes below it */
	uint64_t src_ino; /* the source file's, to know it again */
	/*
	 * A mirrored change reached the file in this migration: its two sides
	 * were written apart, and after a reboot (which loses what neither
	 * had flushed) they may differ anywhere below the cursor.
	 */
	bool changed;
} CheckpointFile;

typedef struct {
	char *source;  /* the migration's source, canonical */
	char *boot;    /* the kernel's boot id when written */
	uint64_t gen;  /* the intent log's generation that goes with it */
	GArray *files; /* CheckpointFile */
} Checkpoints;

void checkpoints_init(Checkpoints *c);
void checkpoints_clear(Checkpoints *c);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Checkpoints, checkpoints_clear)
/* Replace the record in @dir_fd; when @durable, synced with its name. */
int checkpoints_write(int dir_fd, const Checkpoints *c, bool durable);
/* Read it into @out, which must be empty (checkpoints_clear() it after).
 * -ENOENT when there is none. */
int checkpoints_read(int dir_fd, Checkpoints *out);
void checkpoints_remove(int dir_fd);
/* This boot's id (a static string), "" when the kernel gives none. */
const char *checkpoints_boot_id(void);

#endif
