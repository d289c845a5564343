/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Moving a running QEMU's disk files from one directory to another name for them, over QMP. */
#ifndef MIRRORFS_QEMU_DISKS_H
#define MIRRORFS_QEMU_DISKS_H

#include "qmp.h"

#include <stdbool.h>

/* The oldest QEMU whose blockdev-reopen can replace a node's file child. */
#define QEMU_DISKS_MIN_MAJOR 6
#define QEMU_DISKS_MIN_MINOR 1

/*
 * Reopen every file node of the QEMU at @q whose file lies under one of
 * the paths @from (a directory, or a file itself) onto the same relative
 * name under the path of @to at the same index (both NULL-ended): a new file node
 * each (same read-only and cache modes), one blockdev-reopen of the format
 * nodes above them (a single transaction: all of them or none), then the
 * replaced nodes that the monitor still holds are deleted.  @dry_run says
 * what would be done and changes nothing.
 *
 * Appends a line per file to @report and the reopen's duration (the pause
 * the guest's I/O saw) to *@pause_ms.  Returns the number of files moved
 * (0: none under @from), or -errno with *@error set and QEMU as it was.
 */
int qemu_disks_move(Qmp *q, char *const *from, char *const *to, bool dry_run, GString *report,
                    double *pause_ms, char **error);

#endif
