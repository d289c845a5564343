/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The migration job's internals, shared by its files and by the unit
 * tests; lib/migration.h is its public half.  The job is in parts:
 *
 *   migration.c     the job: its state (mig-state.c), thread, requests, status
 *   mig-check.c     the checks of the options and the target before a start
 *   mig-tree.c      the target tree: the walk that makes it, metadata, removal
 *   mig-namespace.c the object table, and the namespace changes replayed on
 *                   the target (the tree's observer, mfs-job.h)
 *   mig-copier.c    the copier: chunk after chunk, paced for the guest
 *   mig-switch.c    the switch: flush, stun, journal, repoint, resume
 *   mig-resume.c    the copy's checkpoints, and resuming from them after a restart
 *   mig-record.c    the job's record in the source, and the jobs it starts again
 *
 * They reach the served tree only through mfs-job.h.  Locks: lock.h.
 */
#ifndef MFS_MIGRATION_INT_H
#define MFS_MIGRATION_INT_H

#include "intent-log.h"
#include "journal.h"
#include "lock.h"
#include "mfs-job.h"
#include "mig-state.h"
#include "migration.h"
#include "mirror-file.h"
#include "util.h"

#include <glib.h>

/* A source object and its counterpart on the target. */
typedef struct {
	MfsInodeKey key; /* the source's */
	mode_t type;
	int tfd;        /* O_PATH on the target object; -1 for regular files */
	MirrorFile *mf; /* regular files */
	uint32_t id;    /* regular files: the index in Migration.files, the intent log's id */
	/*
	 * Regular files, protected by Migration.ckpt_lock: the cursor that
	 * the last durable record lets a reboot trust (0 if changed or absent).
	 */
	uint64_t trusted;
} MigObject;

/* What the mirrors counted, summed over the files. */
typedef struct {
	uint64_t bytes_copied;
	uint64_t bytes_cloned;
	uint64_t bytes_resumed;
	uint64_t mirrored_writes;
	uint64_t waited_writes;
	uint64_t max_wait_ns;
} MigTotals;

#define RATE_SAMPLES 16

typedef struct Migration Migration;

struct Migration {
	Mfs *fs;
	unsigned id;  /* from 1, rising over the process */
	char *source; /* canonical paths */
	char *target;
	char **only;     /* a per-VM job's entries of the root (NULL-ended), or NULL: all */
	int dst_root_fd; /* O_PATH */
	int old_root_fd; /* the source's root, from the swap until mig_delete_source() */
	int lock_fd;     /* claims the target (claim.c) until the switch hands it to the Mfs */
	uint64_t chunk_size;
	bool manual_switch, delete_source;
	bool no_clone;
	bool target_home; /* the target is the old home of our source: see Journal.home */
	char **target_keep; /* the operator's names in the target's root: see Journal.keep */
	bool keep_source; /* the switch's record may not be durable: never delete the source */
	bool walking;     /* the start's walk runs: a refused owner or xattr refuses the start */
	char *walk_error; /* why the walk refused, naming the file; the starting thread's */
	uint64_t checkpoint_bytes; /* copied between two checkpoints */
	GHashTable *resume; /* target path -> MigResume: what a start may trust; the start's */
	uint64_t ckpt_gen;  /* the intent log's generation */
	guint n_walked;     /* files[0 .. n_walked - 1] came from the walk: checkpointed */
	IntentLog *intents; /* NULL when the target cannot hold one */
	MfsMutex ckpt_lock; /* one checkpoint written at a time */
	/*
	 * Protected by ckpt_lock: a durable record may be on the target that
	 * the files' trusted cursors do not describe (an earlier run's, or
	 * one whose write or removal failed): the next record is flushed.
	 */
	bool ckpt_inherited;
	bool ckpt_failed;      /* protected by ckpt_lock: said once */
	gint ckpt_names_moved; /* atomic: a mirrored rename or unlink since the last flush */
	MfsMutex job_lock;     /* the source's record of the job: one writer at a time (lock.h) */
	char **job; /* protected by job_lock: the options, as the source's record keeps them */
	char *record;       /* the name of that record in the source's root (journal.h) */
	bool job_forgotten; /* protected by job_lock: the record is gone for good */
	bool keep_copy; /* protected by lock: the daemon stops: keep the copy, its records, the job
	                 */
	GThread *thread;
	MfsMigHook hook;
	void *hook_opaque;

	MfsMutex lock;
	MfsCond cond;         /* state or settings changed */
	MigState state;       /* protected by lock */
	MigState before;      /* what STOPPING came from, for the status; protected by lock */
	uint64_t speed_bps;   /* protected by lock */
	unsigned guest_share; /* percent; protected by lock */
	uint64_t rested_us;   /* the copier's rests for the guest; protected by lock */
	unsigned
	    meta_lost;    /* owners, xattrs the target refused after the start; protected by lock */
	char *error;      /* why it failed; protected by lock */
	bool stop_on_target_error; /* on_target_error=stop: mig_hold() pauses the job */
	char *held;        /* why a target error paused it, until resumed; protected by lock */
	uint64_t held_gen; /* counts those pauses; protected by lock */
	MfsMigVerify verify;   /* protected by lock */
	uint64_t verify_bytes; /* protected by lock */
	unsigned mismatches;   /* protected by lock */
	char *mismatch;        /* the first; protected by lock */
	GQueue events;     /* MfsMigEvent, the newest MFS_MIG_EVENTS_KEPT; protected by lock */
	uint64_t stun_ns; /* protected by lock */
	uint64_t bytes_total;    /* protected by lock */
	GHashTable *objects;     /* MfsInodeKey -> MigObject; protected by lock */
	GPtrArray *files;        /* MigObject of regular files, in copy order; protected by lock */
	GHashTable *root_names;  /* names made at the target's root; protected by lock */
	MfsMigFileStatus *final; /* per-file status kept after the end; protected by lock */
	unsigned n_final;        /* protected by lock */
	MigTotals final_totals;  /* protected by lock */
	gint64 rate_t[RATE_SAMPLES];   /* protected by lock */
	uint64_t rate_b[RATE_SAMPLES]; /* protected by lock */
	unsigned rate_n;               /* protected by lock */
};

/* migration.c */
void mig_hook(Migration *mig, const char *point);
/*
 * mig-jobs.c: the job @job names (migration.h) among the tree's kept jobs:
 * 0, or -ENOENT (none kept), -ESRCH (@job names none), -ENOTUNIQ (@job
 * NULL, several live: *@out is then the newest of them).
 */
int mig_select(Mfs *fs, const char *job, Migration **out);
/* The next job's number (mig-jobs.c). */
unsigned mig_next_job_id(void);
/* The kept jobs that go at a start, frozen: the oldest ended beyond those kept. */
GPtrArray *mig_jobs_to_drop(Mfs *fs);
/*
 * mfs_migration_start(); @from_record: the start resumes a job the source
 * records (mfs_migration_start_recorded()), which the other records do not
 * stop.
 */
int mig_start(Mfs *fs, const MfsMigOptions *opts, bool from_record, char **error);
/* Record a failure (the first one is kept); the job stops when it may (mig-state.h). */
void mig_fail(Migration *mig, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
MigState mig_state(Migration *mig);
/* Go from @from to @to, announcing it; false (and nothing changes) when not in @from. */
/* mig-status.c: the per-file figures kept once the MirrorFiles go, and freed. */
void mig_keep_final_status(Migration *mig);
void mig_final_status_free(Migration *mig);

/* mig-events.c: queue an event (no lock held), and tell the followers. */
void mig_event(Migration *mig, MfsMigEventKind kind, const char *state, const char *error,
               double stun_ms, const char *path);
/* The event of entering @s (its status name; failed: the error, switched: the stun). */
void mig_state_event(Migration *mig, MigState s);
void mig_events_clear(Migration *mig);

/* Under lock: go to @to, waking whoever waits for a change. */
void mig_enter_locked(Migration *mig, MigState to);
bool mig_set_state(Migration *mig, MigState from, MigState to);
/* Sum the mirrors' counts; under lock. */
void mig_totals_locked(Migration *mig, MigTotals *t);
void mig_drop_objects(Migration *mig);
/* The source's journal names the target: SWITCHING (or a failure since) to COMMITTED. */
void mig_commit(Migration *mig);

/* mig-check.c */
/*
 * Whether @mig (its source and only set) may run beside the jobs running
 * into @target: a job of the whole tree runs alone, entries and targets
 * are never shared, nor more than MFS_MAX_JOBS run.  Frozen.
 */
int mig_check_beside_jobs(Mfs *fs, Migration *mig, const char *target, char **error);
/*
 * Whether @mig may start beside the jobs the source records that do not
 * run (they did not resume): none shares an entry with it, nor is of the
 * whole tree while it is per-VM or the reverse; a record into @target is
 * its own, given again.  Frozen (mig-record.c).
 */
int mig_check_beside_records(Mfs *fs, Migration *mig, const char *target, char **error);
int mig_check_target(Mfs *fs, Migration *mig, const MfsMigOptions *opts, bool *fresh, char **error);
void mig_target_journal_undo(Migration *mig);

/* mig-writers.c: -EBUSY and a message if a process writes beneath the mount. */
int mig_check_writers(const char *source, int root_fd, char **only, char **error);
/*
 * A per-VM job's selection (Migration.only, NULL: the whole tree): does
 * it hold @rel, a path relative to the root ("vm1/disk.qcow2")?
 */
bool mig_only_holds(char **only, const char *rel);
/* The selection's rules at a start: each entry there, none already moved.  Frozen. */
int mig_check_only(Mfs *fs, Migration *mig, char **error);

/* mig-tree.c */
int mig_walk_tree(Migration *mig, int src_root, bool fresh, bool prune_root, char **error);
int mig_remove_tree_at(int dir_fd, const char *name);
int mig_copy_metadata(Migration *mig, int src_fd, int dst_fd, const struct stat *st);
int mig_copy_times(Migration *mig, int dst_fd, mode_t type, const struct stat *st);
bool mig_metadata_refused(int err);
int mig_metadata_lost(Migration *mig, int dst_fd, const char *what, int err);
int mig_open_path(int dir_fd, const char *name);
/*
 * After a link(2) on the target: is @name in @dir_fd the @object linked
 * (0), or a file of its own (-EOPNOTSUPP: sshfs gives each name its own
 * inode, and caches each apart, so a write through one name leaves the
 * other's size stale)?
 */
int mig_check_link(int dir_fd, const char *name, const struct stat *object);
#define MIG_LINK_LOST "a hard link (the target makes each name a file of its own)"
/* Path of a target object relative to the target root, from its descriptor. */
char *mig_target_relpath(Migration *mig, int fd);

/* mig-namespace.c */
extern const MfsObserver mig_observer;
MigObject *mig_object_add(Migration *mig, const struct stat *st, int tfd, MirrorFile *mf);
MigObject *mig_object_find(Migration *mig, const MfsInodeKey *key);
void mig_object_free(gpointer obj);
int mig_object_fd(MigObject *obj);
bool mig_source_object_gone(MfsInode *inode);
/* Point (or un-point) every inode the kernel knows at its mirror.  Stunned. */
void mig_attach_mirrors_stunned(Mfs *fs, Migration *mig, bool attach);

/* mig-resume.c */
/* Read the target's checkpoints of an earlier run: what mig_resume_file() may trust. */
void mig_resume_read(Migration *mig);
/*
 * A reused target file @dst_fd of @mf: start its copy where the checkpoints
 * allow.  Returns the cursor a reboot may trust of it (MigObject.trusted).
 */
uint64_t mig_resume_file(Migration *mig, MirrorFile *mf, int dst_fd, const struct stat *st);
/* After the walk: the first record, the intent log, the files' hooks. */
void mig_checkpoints_begin(Migration *mig);
/*
 * Record every walked file's cursor; durably (after flushing the unchanged
 * files' targets) only if a reboot would then trust something else.
 */
void mig_checkpoint(Migration *mig);
/* A mirrored rename or unlink moved names the records go by: the next checkpoint is durable. */
void mig_checkpoint_names_moved(Migration *mig);
/*
 * Under ckpt_lock, after a held error lowered a cursor: the record written
 * again (durably when @durable), or removed if it cannot be.
 */
void mig_checkpoint_lowered_locked(Migration *mig, bool durable);
/* The copy is over (switched or abandoned): its records go. */
void mig_checkpoints_remove(Migration *mig);
/*
 * The daemon stops with the job unfinished, the mirrors detached: flush
 * both sides of every file and record them all, durably, as unchanged.
 */
void mig_checkpoint_final(Migration *mig);
/* mig-record.c */
/* Record the job in the source, where a restarted daemon finds it (Journal "migrating"). */
void mig_job_record(Migration *mig);
/* An option changed (speed, guest_share): the record keeps the new value. */
void mig_job_set(Migration *mig, const char *name, uint64_t value);
/* Paused or resumed by the operator: the record says which, so that a restart keeps it. */
void mig_job_record_pause(Migration *mig);
/* The job ended short of a switch (cancelled, failed): its record goes, for good. */
void mig_job_forget(Migration *mig);
/* Does the source record a job into @target, paused when the daemon stopped? */
bool mig_recorded_paused(Mfs *fs, const char *target);

/*
 * mig-copier.c: copy every file, pass after pass until one finds every
 * cursor at the end; false when the job stops first.  *@held_gen: the
 * count of held target errors at that last look (mig_hold()).
 */
bool mig_copier_run(Migration *mig, uint64_t *held_gen);
/*
 * The verify pass (start --verify), once MIRRORED: compare both sides of
 * every file, paced as the copier is.  1: all the same; 0: differences
 * (recorded, the switch refused); -1: the job left MIRRORED meanwhile (a
 * cancel, a held target error).
 */
int mig_verify_run(Migration *mig);
/*
 * A file's target failed from @from on (a MirrorHoldFn): with
 * on_target_error=stop, while the job copies or mirrors, its cursor comes
 * down there and the job pauses saying why: true.  Else false: it fails.
 */
bool mig_hold(Migration *mig, MirrorFile *mf, int err, off_t from);
/* Bring @mf's cursor down to @from as a held error does (under the job's lock). */
void mig_lower_cursor(Migration *mig, MirrorFile *mf, off_t from);

/* mig-switch.c */
int mig_switch(Migration *mig);
void mig_delete_source(Migration *mig);

#endif /* MFS_MIGRATION_INT_H */
