/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Live migration of the whole source tree, or of some of its entries, to
 * a target directory, by I/O mirroring, ending in a quiesce-and-switch.
 * The public half of lib/migration.c; the daemon, the control server and
 * the tests use it.
 *
 * Jobs.  Several per-VM jobs (MfsMigOptions.only) may run on one tree at
 * once, each on its own entries and into its own target; a job of the
 * whole tree runs alone.  Each job has an id, from 1, rising over the
 * process.  The requests below take @job, which job they are for: NULL
 * for the one there is (the one running, else the last started), or a
 * job's id ("2") or target directory.  They return -ENOENT when no job
 * has been started, -ESRCH when @job names none, -ENOTUNIQ when @job is
 * NULL and several run.
 */
#ifndef MFS_MIGRATION_H
#define MFS_MIGRATION_H

#include "mfs.h"

typedef enum {
	MFS_MIG_IDLE,
	MFS_MIG_COPYING,
	MFS_MIG_MIRRORED,
	MFS_MIG_SWITCHING,
	MFS_MIG_SWITCHED,
	MFS_MIG_FAILED,
	MFS_MIG_CANCELLED,
	MFS_MIG_STOPPED, /* with the daemon: its next start resumes it */
} MfsMigState;

/*
 * What a migration did, as it did it, for those who follow it instead of
 * asking for its status (mirrorfs-status --follow): every state it enters
 * (by its status name: "paused", "error-paused" too), and every file whose
 * copy is done.
 */
typedef enum {
	MFS_MIG_EVENT_STATE,
	MFS_MIG_EVENT_FILE,
	MFS_MIG_EVENT_VERIFY, /* the verify pass ended: state "passed" or "failed" */
} MfsMigEventKind;

typedef struct {
	uint64_t seq;    /* from 1, rising over every migration of the process */
	unsigned job;    /* the job's id */
	int64_t time_us; /* wall clock */
	MfsMigEventKind kind;
	char *state;    /* STATE: the state entered */
	char *error;    /* STATE failed, error-paused: why; VERIFY failed: the first difference */
	double stun_ms; /* STATE switched: the stun; else -1 */
	char *path;     /* FILE: the file now mirrored, relative to the target */
} MfsMigEvent;

/* How many events a migration keeps for its followers: the newest. */
#define MFS_MIG_EVENTS_KEPT 1024

/*
 * Every kept job's events after @after (seq), oldest first, into
 * *@out (mfs_migration_events_free()); their number.  *@last: the newest
 * seq of any migration so far, from which to follow (0 when none).
 */
unsigned mfs_migration_events(Mfs *fs, uint64_t after, MfsMigEvent **out, uint64_t *last);
void mfs_migration_events_free(MfsMigEvent *events, unsigned n);
/*
 * Call @fn(@opaque) as each event is queued, from the job's threads (it
 * must only wake its own thread); NULL: stop.  Once this returns with
 * NULL, @fn is not running.
 */
void mfs_migration_set_event_notify(Mfs *fs, void (*fn)(void *opaque), void *opaque);

/* "idle", "copying", ...: lib/mig-names.c, with the rest of the names. */
const char *mfs_mig_state_name(MfsMigState state);

#define MFS_DEFAULT_CHUNK (1u << 20)
/*
 * Data copied between two checkpoints (mig-resume.c): at most this much
 * is copied again after a restart.  Each costs a flush of the target.
 */
#define MFS_DEFAULT_CHECKPOINT (256u << 20)
#define MFS_MIN_CHECKPOINT     (1u << 20)
/* How large a chunk grows while the guest leaves its file alone. */
#define MFS_MAX_GROWN_CHUNK (16u << 20)

/*
 * The share of its own rate, in percent, that a busy guest keeps while
 * the copier copies (pacer.c).
 */
#define MFS_DEFAULT_GUEST_SHARE 50
#define MFS_MAX_GUEST_SHARE     90

/*
 * Test hook: called by the migration thread at named points, and at
 * "checkpoint-flush" by whichever thread writes that durable record (a
 * guest's write, for a file's first change).
 */
typedef void (*MfsMigHook)(Mfs *fs, const char *point, void *opaque);

typedef struct {
	const char *target;
	/*
	 * A per-VM job: the entries of the root to move (a VM's image, its
	 * directory), NULL-ended; the rest stays.  NULL: the whole tree.
	 * After the switch each is served from the target under its name,
	 * the rest from where it was (mfs_placements()).  The caller's.
	 */
	char **only;
	uint64_t chunk_size;  /* bytes, a power of two from 4 KiB to 64 MiB; 0: default */
	uint64_t speed_bps;   /* copier limit in bytes/s; 0: unlimited */
	unsigned guest_share; /* percent of the time a busy guest keeps to itself */
	bool manual_switch;   /* stay mirrored until mfs_migration_switch() */
	/*
	 * on_target_error=stop: a failure to write the target pauses the job
	 * (mfs_migration_resume() carries on) instead of ending it.
	 */
	bool stop_on_target_error;
	bool delete_source;   /* remove the source files after the switch */
	bool overwrite;       /* allow names that already exist in the target */
	bool no_clone;        /* copy every byte, even where blocks could be shared */
	/*
	 * Once mirrored, before the switch, compare both sides of every file
	 * (paced as the copier is); a difference refuses the switch.
	 */
	bool verify;
	/*
	 * The copier starts paused (mfs_migration_resume() starts it): a
	 * pause the job's record kept, so that a restart keeps it too.
	 */
	bool paused;
	bool defer_thread;    /* start copying at mfs_migration_launch() */
	/*
	 * Trust the checkpoints of an earlier run found in the target: only
	 * for a start made before the mount serves (mig-resume.c says why).
	 */
	bool resume;
	uint64_t checkpoint_bytes; /* data copied between two checkpoints; 0: the default */
	MfsMigHook hook;      /* tests only */
	void *hook_opaque;
} MfsMigOptions;

typedef struct {
	char *path; /* relative to the root of the tree */
	uint64_t size;
	uint64_t cp_offset;
	bool mirrored;
} MfsMigFileStatus;

typedef enum {
	MFS_MIG_VERIFY_NONE,    /* not asked for */
	MFS_MIG_VERIFY_PENDING, /* not yet mirrored */
	MFS_MIG_VERIFY_RUNNING,
	MFS_MIG_VERIFY_PASSED,
	MFS_MIG_VERIFY_FAILED, /* a difference: no switch */
} MfsMigVerify;

typedef struct {
	unsigned id; /* 0 when no job has been started */
	MfsMigState state;
	bool paused;
	bool held; /* paused by a target error (on_target_error=stop): error says which */
	char *source, *target;
	char **only;          /* a per-VM job's entries, NULL-ended; NULL: the whole tree */
	uint64_t bytes_total; /* data (not holes) to copy, as counted at the start */
	uint64_t bytes_copied;
	uint64_t bytes_cloned; /* of bytes_copied, shared with the source (reflinks) */
	uint64_t bytes_resumed; /* not copied again: below the checkpoints a restart resumed at */
	MfsMigVerify verify;    /* MFS_MIG_VERIFY_NONE unless started with verify */
	uint64_t verify_bytes;  /* compared so far */
	unsigned mismatches;    /* chunks that differ */
	char *mismatch;         /* the first: "FILE at offset N", or NULL */
	uint64_t rate_bps;     /* over the last few seconds */
	double eta_s;          /* < 0 when unknown */
	uint64_t mirrored_writes;
	uint64_t waited_writes;
	uint64_t max_wait_ns;
	uint64_t stun_ns; /* of the switch, once switched */
	uint64_t speed_bps;
	unsigned guest_share; /* percent */
	uint64_t rested_ns;   /* the copier's rests for the guest, in all */
	char *error;          /* when failed, or why a target error paused it (held) */
	MfsMigFileStatus *files;
	unsigned n_files;
} MfsMigStatus;

/*
 * Start migrating to @opts->target.  Checks the target first (not the
 * source, not inside it nor containing it, a writable directory, free of
 * the source's names unless overwrite, with room for the source's data)
 * and changes nothing when a check fails: then *@error says why.
 */
int mfs_migration_start(Mfs *fs, const MfsMigOptions *opts, char **error);
/*
 * Start the migrations the served tree records as under way (each a start
 * that ended with the daemon, not in a switch, a cancel or a failure),
 * with their recorded options, resuming from their checkpoints, as
 * defer_thread: before the mount serves.  Returns how many started (0
 * when none is recorded; the one @target, a target= given on the command
 * line, names is left to it); *@error then says, one line each, which
 * could not start and why (NULL when all did).  -EBUSY with *@error, and
 * nothing started, when a migration of the whole tree to another target
 * than @target is recorded.
 */
int mfs_migration_start_recorded(Mfs *fs, const char *target, char **error);
/*
 * Forget a recorded job that is not running, the one @job (its target)
 * names, or any (*@target: its target); -ENOENT when none.
 */
int mfs_migration_forget_recorded(Mfs *fs, const char *job, char **target);
int mfs_migration_pause(Mfs *fs, const char *job);
int mfs_migration_resume(Mfs *fs, const char *job);
int mfs_migration_set_speed(Mfs *fs, const char *job, uint64_t speed_bps);
/* -ERANGE over MFS_MAX_GUEST_SHARE. */
int mfs_migration_set_guest_share(Mfs *fs, const char *job, unsigned percent);
/* Complete a manual-switch migration that is mirrored. */
int mfs_migration_switch(Mfs *fs, const char *job);
/* Stop, remove what was written to the target, carry on on the source. */
int mfs_migration_cancel(Mfs *fs, const char *job);
/*
 * Start the copiers of the migrations started with defer_thread: a daemon
 * checks and prepares before it forks, and copies after.
 */
void mfs_migration_launch(Mfs *fs);
/* After a fork: the target's claim is the calling process's (mfs_claim() renews the tree's). */
void mfs_migration_renew_claim(Mfs *fs);
/*
 * At shutdown: stop every job that still runs, keeping its copy and its
 * record in the source for the next start (mfs_migration_start_recorded());
 * let a switch finish; and wait.
 */
void mfs_migration_shutdown(Mfs *fs);
/*
 * Block until the job reaches @until or leaves the copying/mirrored/
 * switching states; MFS_MIG_IDLE when @job names none.
 */
MfsMigState mfs_migration_wait(Mfs *fs, const char *job, MfsMigState until, int timeout_ms);
/*
 * @job's status; with @job NULL and several running, the newest's.  A
 * job that names none: -ESRCH, and *@out is the idle status.
 */
int mfs_migration_status(Mfs *fs, const char *job, MfsMigStatus *out);
void mfs_migration_status_clear(MfsMigStatus *st);
/*
 * The ids of the jobs kept (running, or ended since the last start),
 * oldest first, in *@ids (free()); how many.
 */
unsigned mfs_migration_job_ids(Mfs *fs, unsigned **ids);

#endif
