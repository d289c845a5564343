/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The migration job's state machine: see mig-state.h. */
#include "mig-state.h"

#include <errno.h>
#include <glib.h>

const char *mig_state_name(MigState s)
{
	static const char *names[] = {
	    [MIG_COPYING] = "copying",     [MIG_PAUSED] = "paused",
	    [MIG_MIRRORED] = "mirrored",   [MIG_SWITCHING] = "switching",
	    [MIG_COMMITTED] = "committed", [MIG_SWITCHED] = "switched",
	    [MIG_STOPPING] = "stopping",   [MIG_UNDOING] = "undoing",
	    [MIG_CANCELLED] = "cancelled", [MIG_FAILED] = "failed",
	    [MIG_STOPPED] = "stopped",
	};

	return (unsigned)s < G_N_ELEMENTS(names) ? names[s] : "unknown";
}

const char *mig_request_name(MigRequest r)
{
	static const char *names[] = {
	    [MIG_REQ_PAUSE] = "pause",   [MIG_REQ_RESUME] = "resume",
	    [MIG_REQ_SPEED] = "speed",   [MIG_REQ_GUEST_SHARE] = "guest_share",
	    [MIG_REQ_SWITCH] = "switch", [MIG_REQ_CANCEL] = "cancel",
	};

	return (unsigned)r < G_N_ELEMENTS(names) ? names[r] : "unknown";
}

/* One cell: an error, or (0) the state to go to; KEEP stays. */
#define KEEP MIG_N_STATES
typedef struct {
	int err;
	MigState next;
} Cell;
/* clang-format off */
#define GO(s) {0, s}
#define STAY  {0, KEEP}
#define NO(e) {-(e), KEEP}

/*
 * Rows: states; columns: requests.  A switch in MIRRORED is allowed only
 * with switch=manual (mig_request_decide()).
 */
static const Cell table[MIG_N_STATES][MIG_N_REQUESTS] = {
    /*                pause            resume           speed        guest_share  switch              cancel */
    [MIG_COPYING]   = {GO(MIG_PAUSED), NO(EINVAL),      STAY,        STAY,        NO(EBUSY),          GO(MIG_STOPPING)},
    [MIG_PAUSED]    = {NO(EALREADY),   GO(MIG_COPYING), STAY,        STAY,        NO(EBUSY),          GO(MIG_STOPPING)},
    [MIG_MIRRORED]  = {NO(EINVAL),     NO(EINVAL),      STAY,        STAY,        GO(MIG_SWITCHING),  GO(MIG_STOPPING)},
    [MIG_SWITCHING] = {NO(EINVAL),     NO(EINVAL),      STAY,        STAY,        NO(EINVAL),         NO(EINVAL)},
    [MIG_COMMITTED] = {NO(EINVAL),     NO(EINVAL),      NO(EINVAL),  NO(EINVAL),  NO(EINVAL),         NO(EINVAL)},
    [MIG_SWITCHED]  = {NO(EINVAL),     NO(EINVAL),      NO(EINVAL),  NO(EINVAL),  NO(EINVAL),         NO(EINVAL)},
    /* Stopping already: the cancel asked for is under way, or a failure ends the job. */
    [MIG_STOPPING]  = {NO(ECANCELED),  NO(ECANCELED),   NO(ECANCELED), NO(ECANCELED), NO(ECANCELED),  STAY},
    [MIG_UNDOING]   = {NO(ECANCELED),  NO(ECANCELED),   NO(ECANCELED), NO(ECANCELED), NO(ECANCELED),  STAY},
    [MIG_CANCELLED] = {NO(EINVAL),     NO(EINVAL),      NO(EINVAL),  NO(EINVAL),  NO(EINVAL),         NO(EALREADY)},
    [MIG_FAILED]    = {NO(EINVAL),     NO(EINVAL),      NO(EINVAL),  NO(EINVAL),  NO(EINVAL),         NO(EINVAL)},
    [MIG_STOPPED]   = {NO(EINVAL),     NO(EINVAL),      NO(EINVAL),  NO(EINVAL),  NO(EINVAL),         NO(EINVAL)},
};
/* clang-format on */

int mig_request_decide(MigState s, MigRequest r, bool manual_switch, MigState *next)
{
	Cell c;

	if ((unsigned)s >= MIG_N_STATES || (unsigned)r >= MIG_N_REQUESTS)
		return -EINVAL;
	c = table[s][r];
	if (c.err == 0 && s == MIG_MIRRORED && r == MIG_REQ_SWITCH && !manual_switch)
		return -EALREADY;
	if (c.err == 0)
		*next = c.next == KEEP ? s : c.next;
	return c.err;
}

bool mig_state_live(MigState s)
{
	return s != MIG_SWITCHED && s != MIG_CANCELLED && s != MIG_FAILED && s != MIG_STOPPED;
}

bool mig_state_mirrors(MigState s)
{
	return s == MIG_COPYING || s == MIG_PAUSED || s == MIG_MIRRORED || s == MIG_SWITCHING ||
	       s == MIG_STOPPING;
}

bool mig_state_mirrors_changes(MigState s)
{
	return s == MIG_COPYING || s == MIG_PAUSED || s == MIG_MIRRORED || s == MIG_SWITCHING;
}

bool mig_state_stopping(MigState s)
{
	return s == MIG_STOPPING || s == MIG_UNDOING;
}

MfsMigState mig_state_public(MigState s, MigState before)
{
	switch (s) {
	case MIG_COPYING:
	case MIG_PAUSED:
		return MFS_MIG_COPYING;
	case MIG_MIRRORED:
		return MFS_MIG_MIRRORED;
	case MIG_SWITCHING:
	case MIG_COMMITTED:
		return MFS_MIG_SWITCHING;
	case MIG_SWITCHED:
		return MFS_MIG_SWITCHED;
	case MIG_STOPPING:
	case MIG_UNDOING:
		return before == MIG_STOPPING || before == MIG_UNDOING
		           ? MFS_MIG_COPYING
		           : mig_state_public(before, MIG_COPYING);
	case MIG_CANCELLED:
		return MFS_MIG_CANCELLED;
	case MIG_STOPPED:
		return MFS_MIG_STOPPED;
	case MIG_FAILED:
	default:
		return MFS_MIG_FAILED;
	}
}
