/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The migration journal: see journal.c. */
#ifndef MFS_JOURNAL_H
#define MFS_JOURNAL_H

#include <glib.h>
#include <stdbool.h>

/*
 * The journal that makes a switch durable.  mfs_new() reads it: a source
 * whose journal says it was switched is served from its target instead
 * (*@redirected names it), never stale.
 */
#define MFS_JOURNAL_NAME ".mirrorfs-journal"
/* In a target while copying: its checkpoints (checkpoint.c), its intent log (intent-log.c). */
#define MFS_CHECKPOINT_NAME MFS_JOURNAL_NAME ".checkpoints"
#define MFS_INTENT_LOG_NAME MFS_JOURNAL_NAME ".intents"
/*
 * In a source: the entries of its root that per-VM jobs moved (a job
 * started with "only"), each now served from its own directory.
 */
#define MFS_PLACEMENTS_NAME MFS_JOURNAL_NAME ".placements"
/*
 * In a source: the record of a per-VM job under way (Journal "migrating"),
 * one for each, named after its target (journal_job_record_name()).  A
 * job of the whole tree keeps its record in the journal itself.
 */
#define MFS_JOB_RECORD_PREFIX MFS_JOURNAL_NAME ".job-"
/* Each of those names is written under this suffix first, then renamed. */
#define MFS_JOURNAL_TMP_SUFFIX ".tmp"

typedef struct {
	/*
	 * "copying" (in a target), "switched" (in a source), or "migrating"
	 * (in a source: a migration runs, or ran when the daemon stopped, and
	 * a restarted daemon resumes it).
	 */
	char *state;
	char *source;
	char *target;
	/*
	 * "copying" into a directory whose journal said "switched" to this
	 * copy's source: the old home of a migration back.  If the copy is
	 * abandoned, that record is written back, not simply removed.
	 */
	bool home;
	/* "migrating": the start options, "name=value" (mig-options.h's names); NULL-ended. */
	char **job;
	/*
	 * "copying": the names the target's root held before the first run
	 * that are not the source's (the operator's): a restart, which
	 * removes the other names the source lacks, leaves them.  NULL in a
	 * journal older than this list: then a restart removes none.
	 */
	char **keep;
} Journal;

/*
 * Write the journal in @dir_fd: a new file under a reserved temporary
 * name, synced when @durable, then renamed over the old one.  Returns 0
 * once the new journal is in place, or -errno with the old one intact.
 * Making the rename itself durable is journal_sync_dir()'s job.
 */
int journal_write(int dir_fd, const Journal *j, bool durable);
/* The same, under @name (a job's record). */
int journal_write_named(int dir_fd, const char *name, const Journal *j, bool durable);
/*
 * Replace @name in @dir_fd with @len bytes of @data, as journal_write()
 * does (a new file under @name's temporary name, synced when @durable,
 * renamed over it).
 */
int journal_replace_file(int dir_fd, const char *name, const void *data, size_t len, bool durable);
/*
 * All of @name in @dir_fd (not followed if a symlink), NUL-terminated,
 * its length in *@len; NULL with -errno in *@err, -EFBIG past @max bytes.
 */
char *journal_read_file(int dir_fd, const char *name, size_t max, size_t *len, int *err);
/* Flush @dir_fd itself: the journal's name, after journal_write(). */
int journal_sync_dir(int dir_fd);
/* Read it into @out (journal_clear() it).  -ENOENT when there is none. */
int journal_read(int dir_fd, Journal *out);
int journal_read_named(int dir_fd, const char *name, Journal *out);
void journal_clear(Journal *j);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Journal, journal_clear)
/* The target a switched source moved to, or NULL. */
char *journal_switched_target(int dir_fd);
int journal_remove(int dir_fd);
int journal_remove_named(int dir_fd, const char *name);
/* The name of the record of a per-VM job into @target (g_free()), and whether @name is one. */
char *journal_job_record_name(const char *target);
bool journal_is_job_record_name(const char *name);
/*
 * The placements record: which entries of the root live in which
 * directory.  Two NULL-ended lists of one length, @names and @dirs.
 * Read: -ENOENT when there is none.  Written as the journal is, durably
 * (the caller flushes the directory: journal_sync_dir()).
 */
int placements_read(int dir_fd, char ***names, char ***dirs);
int placements_write(int dir_fd, char *const *names, char *const *dirs);
/* Whether @name, at the root of a tree, is one of the journal's own names (all above). */
bool journal_is_reserved_name(const char *name);

#endif
