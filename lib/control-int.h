/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What control.c and control-status.c share; not for the daemon. */
#ifndef MFS_CONTROL_INT_H
#define MFS_CONTROL_INT_H

#include "mfs.h"

#include <json-glib/json-glib.h>

/* A name, or any text that may hold one: its bytes escaped (mfs_escape_name()). */
void control_add_name(JsonBuilder *b, const char *name);
/* A job's number, or null for none (0). */
void control_add_job_id(JsonBuilder *b, unsigned id);
/*
 * The status's members: the mount (what it serves, the placements, the
 * transport), the job @job names (NULL: the one running, or the newest),
 * and every kept job in "jobs".  -ESRCH, and nothing added, when @job
 * names none.
 */
int control_add_status_members(JsonBuilder *b, Mfs *fs, const char *mountpoint, const char *job);

#endif
