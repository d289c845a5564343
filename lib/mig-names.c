/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The names of a migration's states (mig-names.h): the one list, and
 * mfs_mig_state_name() of migration.h.  Pure: it touches nothing.
 */
#include "mig-names.h"

#include <errno.h>
#include <glib.h>
#include <string.h>

/* The list, in its order (mig-names.h). */
static const struct {
	const char *name;
	MfsMigState state;
	bool paused;
	bool held; /* paused by a target error */
	int step;  /* on the way to a switch; -1 off it */
} states[] = {
    {"idle", MFS_MIG_IDLE, false, false, 0},
    {"copying", MFS_MIG_COPYING, false, false, 1},
    {"paused", MFS_MIG_COPYING, true, false, 1},
    {"mirrored", MFS_MIG_MIRRORED, false, false, 2},
    {"switching", MFS_MIG_SWITCHING, false, false, 3},
    {"switched", MFS_MIG_SWITCHED, false, false, 4},
    {"failed", MFS_MIG_FAILED, false, false, -1},
    {"cancelled", MFS_MIG_CANCELLED, false, false, -1},
    {"stopped", MFS_MIG_STOPPED, false, false, -1},
    {"error-paused", MFS_MIG_COPYING, true, true, 1},
};

static int find(MfsMigState state, bool paused, bool held)
{
	for (int i = 0; i < (int)G_N_ELEMENTS(states); i++)
		if (states[i].state == state && states[i].paused == paused &&
		    states[i].held == held)
			return i;
	return -1;
}

const char *mfs_mig_status_name_at(unsigned i)
{
	return i < G_N_ELEMENTS(states) ? states[i].name : NULL;
}

const char *mfs_mig_state_name(MfsMigState state)
{
	int i = find(state, false, false);

	return i < 0 ? "unknown" : states[i].name;
}

const char *mfs_mig_status_name(MfsMigState state, bool paused, bool held)
{
	int i = find(state, paused, held);

	return i < 0 ? mfs_mig_state_name(state) : states[i].name;
}

int mfs_mig_state_from_name(const char *name, MfsMigState *state, bool *paused)
{
	for (size_t i = 0; i < G_N_ELEMENTS(states); i++) {
		if (strcmp(states[i].name, name) != 0)
			continue;
		if (state)
			*state = states[i].state;
		if (paused)
			*paused = states[i].paused;
		return 0;
	}
	return -EINVAL;
}

bool mfs_mig_state_running(MfsMigState state)
{
	return state == MFS_MIG_COPYING || state == MFS_MIG_MIRRORED || state == MFS_MIG_SWITCHING;
}

bool mfs_mig_state_terminal(MfsMigState state)
{
	return state == MFS_MIG_SWITCHED || state == MFS_MIG_FAILED || state == MFS_MIG_CANCELLED ||
	       state == MFS_MIG_STOPPED;
}

bool mfs_mig_state_mirrored(MfsMigState state)
{
	return mfs_mig_state_step(state) >= mfs_mig_state_step(MFS_MIG_MIRRORED);
}

int mfs_mig_state_step(MfsMigState state)
{
	int i = find(state, false, false);

	return i < 0 ? -1 : states[i].step;
}
