/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The migration job's states, and which control request each allows: the
 * one place that decides.  Pure functions, no locks: migration.c calls
 * them under the job's lock.  doc/design.md draws the diagram.
 *
 *   COPYING <-> PAUSED            (pause, resume)
 *   COPYING -> MIRRORED           (the copier reached the end of every file)
 *   MIRRORED -> SWITCHING         (at once, or on request with switch=manual)
 *   SWITCHING -> COMMITTED        (the source's journal names the target)
 *   COMMITTED -> SWITCHED         (the job let go of the source)
 *   COPYING, PAUSED, MIRRORED, SWITCHING -> STOPPING   (cancel, or a failure)
 *   STOPPING -> UNDOING           (mirrors detached in a stun)
 *   UNDOING -> CANCELLED | FAILED (the target's copy removed)
 *   UNDOING -> STOPPED            (the daemon stops: the copy and the job kept)
 *
 * A failure is never left silently: from STOPPING on, the job only ends,
 * and it ends FAILED when it recorded an error.  After COMMITTED nothing
 * can fail the job: the target is authoritative.
 */
#ifndef MFS_MIG_STATE_H
#define MFS_MIG_STATE_H

#include "migration.h"

#include <stdbool.h>

typedef enum {
	MIG_COPYING,
	MIG_PAUSED,
	MIG_MIRRORED,
	MIG_SWITCHING,
	MIG_COMMITTED,
	MIG_SWITCHED,
	MIG_STOPPING,
	MIG_UNDOING,
	MIG_CANCELLED,
	MIG_FAILED,
	MIG_STOPPED,
	MIG_N_STATES,
} MigState;

typedef enum {
	MIG_REQ_PAUSE,
	MIG_REQ_RESUME,
	MIG_REQ_SPEED,       /* the copier's limit */
	MIG_REQ_GUEST_SHARE, /* the guest's share of the time */
	MIG_REQ_SWITCH,
	MIG_REQ_CANCEL,
	MIG_N_REQUESTS,
} MigRequest;

const char *mig_state_name(MigState s);
const char *mig_request_name(MigRequest r);

/*
 * Whether @s allows @r: 0 and the state to go to in *@next (maybe @s
 * itself), or the -errno the requester gets: -EALREADY (done already, or
 * a switch that is automatic), -EBUSY (a switch before all is copied),
 * -ECANCELED (the job is stopping: cancelled, or failed), -EINVAL (not in
 * this state).  @manual_switch: the job waits for a
 * switch request when mirrored.
 */
int mig_request_decide(MigState s, MigRequest r, bool manual_switch, MigState *next);

/* The job runs: it has not ended (it may be ending). */
bool mig_state_live(MigState s);
/* Mirrors are attached: the guest's writes reach the target too. */
bool mig_state_mirrors(MigState s);
/* Namespace changes are mirrored: the job runs and has not stopped or committed. */
bool mig_state_mirrors_changes(MigState s);
/*
 * STOPPING or UNDOING: a cancel or a failure is under way.  A failure
 * fails the job only while mig_state_mirrors_changes(); one that comes
 * during a cancel, after the commit or once ended is only logged: the
 * job's outcome is decided.
 */
bool mig_state_stopping(MigState s);

/*
 * The state a status reports: STOPPING and UNDOING report @before, the
 * state they came from, until the job has ended.
 */
MfsMigState mig_state_public(MigState s, MigState before);

#endif /* MFS_MIG_STATE_H */
