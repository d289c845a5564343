/* SPDX-License-Identifier: GPL-2.0-or-later */
/* mirrorfsctl adopt and release: a running QEMU's disks onto the mount, and off it. */
#ifndef MIRRORFS_ADOPT_H
#define MIRRORFS_ADOPT_H

#include <stdbool.h>

/*
 * adopt (@release false): reopen every disk file of each QEMU at
 * @qmp_paths that lies in the mount's source directory onto the same name
 * through the mount, before a migration starts.  release: once the
 * migration has switched, reopen every disk file QEMU reaches through the
 * mount onto the target's real path, so that the mount can go.
 *
 * Prints what it did (or, @dry_run, would do) and returns an exit status:
 * 0 done, 1 failed (saying why; what QEMU refused is left as it was).
 */
int adopt_run(const char *prog, const char *socket_path, char **qmp_paths, bool release,
              bool dry_run);

#endif
