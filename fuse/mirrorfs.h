/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The FUSE daemon's own declarations: what main.c and ops.c share. */
#ifndef MIRRORFS_FUSE_H
#define MIRRORFS_FUSE_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "mfs.h"

struct Transport;

typedef struct {
	Mfs *fs;
	struct Transport *transport;
	double timeout; /* seconds the kernel may cache entries and attributes */
	bool noxattr;   /* -o noxattr: answer xattr requests with ENOSYS */
} Daemon;

extern const struct fuse_lowlevel_ops mirrorfs_ops;

/* Serves the session until it ends: 0 or -errno (loop.c). */
int mirrorfs_session_loop(struct Transport *t);

#endif
