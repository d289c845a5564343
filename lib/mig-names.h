/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The names of a migration's states, as its status reports them: one
 * ordered list for the daemon (mfs_mig_state_name(), control.c) and for
 * its clients (tools/mirrorfs-status.c), which parse them back.  Pure: no
 * I/O, no lock, nothing but the list.
 *
 * A status reports a copying migration whose copier is paused as
 * "paused" (MfsMigStatus.paused), or "error-paused" when a target error
 * paused it (MfsMigStatus.held): names, not states of their own.
 */
#ifndef MFS_MIG_NAMES_H
#define MFS_MIG_NAMES_H

#include "migration.h"

#include <stdbool.h>

/*
 * Every name a status may report, one by one from @i = 0 (NULL past the
 * last), in the order of a migration that goes well and then its other
 * ends: idle, copying, paused, mirrored, switching, switched, failed,
 * cancelled, stopped; then error-paused, the newest.
 */
const char *mfs_mig_status_name_at(unsigned i);

/* The name a status reports: mfs_mig_state_name()'s, "paused" or "error-paused". */
const char *mfs_mig_status_name(MfsMigState state, bool paused, bool held);
/*
 * Back from a name a status reports: 0 with *@state and *@paused (either
 * may be NULL), or -EINVAL for a name that is none of the list's (they
 * are lower case).
 */
int mfs_mig_state_from_name(const char *name, MfsMigState *state, bool *paused);

/* The migration goes on by itself: copying (paused too), mirrored, switching. */
bool mfs_mig_state_running(MfsMigState state);
/* It has ended: switched, failed or cancelled.  (Idle has not begun.) */
bool mfs_mig_state_terminal(MfsMigState state);
/* Everything is on the target: mirrored, switching or switched. */
bool mfs_mig_state_mirrored(MfsMigState state);
/*
 * How far along the way of a migration that goes well: idle 0, copying
 * (and paused) 1, mirrored 2, switching 3, switched 4; -1 for failed and
 * cancelled, which are off it.
 */
int mfs_mig_state_step(MfsMigState state);

#endif /* MFS_MIG_NAMES_H */
