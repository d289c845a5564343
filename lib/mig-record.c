/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The job's record in the source: written at its start, updated as the
 * operator changes it (speed, guest share, a pause), removed when it ends
 * short of a switch; found again by a daemon that stopped or died with the
 * job unfinished, which starts it again at its next start with the same
 * options (mfs_migration_start_recorded()), from the checkpoints of its
 * copy (mig-resume.c).
 */
#define _GNU_SOURCE
#include "mig-options.h"
#include "migration-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * The job's record lives in the source's root: a job of the whole tree's
 * in the journal's place (nothing else is there while it runs: a
 * "switched" record would have the daemon serve its target instead), a
 * per-VM job's in a file of its own (Migration.record), so that several
 * run at once.  Not flushed, for the reason the target's copying journal
 * is not (journal.c): a job started less than a writeback period before a
 * power failure may be forgotten; its copy is then reused by the next
 * start.
 */
/* Remove the record @name in @root_fd of a job to @target ("migrating"); -ENOENT when none. */
static int forget_job(int root_fd, const char *name, const char *target)
{
	g_auto(Journal) j = {0};

	if (journal_read_named(root_fd, name, &j) < 0 || strcmp(j.state, "migrating") != 0 ||
	    (target && strcmp(j.target, target) != 0))
		return -ENOENT;
	return journal_remove_named(root_fd, name);
}

/* Under job_lock; @update: only over the job's own record, silently. */
static void job_record_locked(Migration *mig, bool update)
{
	g_auto(Journal) old = {0};
	bool ours;
	int root, ret;

	/* First: once the switch has written its record, the root may be swapped. */
	if (mig->job_forgotten)
		return;
	root = mfs_root_fd(mig->fs);
	ret = journal_read_named(root, mig->record, &old);
	ours = ret == 0 && strcmp(old.state, "migrating") == 0;
	if (update && !ours)
		return;
	if (ret == 0 && !ours)
		ret = -EEXIST;
	else
		ret = journal_write_named(root, mig->record,
		                          &(Journal){.state = "migrating",
		                                     .source = mig->source,
		                                     .target = mig->target,
		                                     .job = mig->job},
		                          false);
	if (ret < 0)
		g_warning(
		    "migration %s -> %s: cannot record the job in the source (%s): a restarted "
		    "daemon will not resume it by itself",
		    mig->source, mig->target, g_strerror(-ret));
	/* An older daemon kept a per-VM job's record in the journal: it moved. */
	else if (!update && strcmp(mig->record, MFS_JOURNAL_NAME) != 0)
		forget_job(root, MFS_JOURNAL_NAME, mig->target);
}

void mig_job_record(Migration *mig)
{
	mfs_mutex_lock(&mig->job_lock);
	job_record_locked(mig, false);
	mfs_mutex_unlock(&mig->job_lock);
}

void mig_job_set(Migration *mig, const char *name, uint64_t value)
{
	size_t len = strlen(name);

	mfs_mutex_lock(&mig->job_lock);
	for (char **o = mig->job; o && *o; o++)
		if (strncmp(*o, name, len) == 0 && (*o)[len] == '=') {
			g_free(*o);
			*o = g_strdup_printf("%s=%" G_GUINT64_FORMAT, name, value);
		}
	job_record_locked(mig, true);
	mfs_mutex_unlock(&mig->job_lock);
}

void mig_job_record_pause(Migration *mig)
{
	g_autofree char *why = NULL;
	MfsMigOptions opts;
	bool paused;

	mfs_mutex_lock(&mig->job_lock);
	/*
	 * The state now, not the request's: of a pause and a resume made at
	 * once, the record written last says what the job was left in.  A
	 * pause on a target error (held) is not the operator's: a restart
	 * tries the target again.
	 */
	mfs_mutex_lock(&mig->lock);
	paused = mig->state == MIG_PAUSED && !mig->held;
	mfs_mutex_unlock(&mig->lock);
	/* The record's options read back by the rule that wrote them, the pause set, written again. */
	mfs_mig_options_init(&opts);
	opts.target = mig->target;
	if (mfs_mig_options_from_job(&opts, mig->job, &why) == 0) {
		opts.paused = paused;
		g_strfreev(mig->job);
		mig->job = mfs_mig_options_to_job(&opts);
		g_strfreev(opts.only);
		job_record_locked(mig, true);
	} else {
		g_warning("migration %s -> %s: cannot record the %s: %s", mig->source, mig->target,
		          paused ? "pause" : "resume", why);
	}
	mfs_mutex_unlock(&mig->job_lock);
}

void mig_job_forget(Migration *mig)
{
	mfs_mutex_lock(&mig->job_lock);
	mig->job_forgotten = true;
	forget_job(mfs_root_fd(mig->fs), mig->record, mig->target);
	mfs_mutex_unlock(&mig->job_lock);
}

/* A job recorded in the source: its record's name, and the record. */
typedef struct {
	char *name;
	Journal j;
} Recorded;

static void recorded_clear(gpointer p)
{
	Recorded *r = p;

	g_free(r->name);
	journal_clear(&r->j);
}

/* Every job recorded as under way in the source's root @root_fd, the journal's first. */
static GArray *recorded_jobs(int root_fd)
{
	GArray *out = g_array_new(FALSE, TRUE, sizeof(Recorded));
	int fd = openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dp = fd >= 0 ? fdopendir(fd) : NULL;
	g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
	struct dirent *de;

	g_array_set_clear_func(out, recorded_clear);
	g_ptr_array_add(names, g_strdup(MFS_JOURNAL_NAME));
	while (dp && (de = readdir(dp)))
		if (journal_is_job_record_name(de->d_name))
			g_ptr_array_add(names, g_strdup(de->d_name));
	if (dp)
		closedir(dp);
	else if (fd >= 0)
		close(fd);
	for (guint i = 0; i < names->len; i++) {
		Recorded r = {0};
		bool seen = false;

		if (journal_read_named(root_fd, g_ptr_array_index(names, i), &r.j) < 0)
			continue;
		/* A job's record and the journal an older daemon kept it in, both: the first. */
		for (guint k = 0; k < out->len && r.j.target; k++)
			seen |= !strcmp(g_array_index(out, Recorded, k).j.target, r.j.target);
		if (strcmp(r.j.state, "migrating") != 0 || seen) {
			journal_clear(&r.j);
			continue;
		}
		r.name = g_strdup(g_ptr_array_index(names, i));
		g_array_append_val(out, r);
	}
	return out;
}

/* Is one of @jobs (kept) running into @target? */
static bool target_running(GPtrArray *jobs, const char *target)
{
	for (guint i = 0; i < jobs->len; i++) {
		Migration *mig = g_ptr_array_index(jobs, i);

		if (strcmp(mig->target, target) == 0 && mig_state_live(mig_state(mig)))
			return true;
	}
	return false;
}

bool mig_recorded_paused(Mfs *fs, const char *target)
{
	g_autoptr(GArray) recorded = recorded_jobs(mfs_root_fd(fs));
	g_autofree char *real = realpath(target, NULL);

	for (guint i = 0; real && i < recorded->len; i++) {
		Recorded *r = &g_array_index(recorded, Recorded, i);
		g_autofree char *why = NULL;
		MfsMigOptions opts;

		if (strcmp(r->j.target, real) != 0)
			continue;
		mfs_mig_options_init(&opts);
		if (mfs_mig_options_from_job(&opts, r->j.job, &why) < 0)
			return false;
		g_strfreev(opts.only);
		return opts.paused;
	}
	return false;
}

int mfs_migration_forget_recorded(Mfs *fs, const char *job, char **target)
{
	g_autoptr(GArray) recorded = recorded_jobs(mfs_root_fd(fs));
	g_autoptr(GPtrArray) jobs = mfs_jobs(fs);
	g_autofree char *real = job && g_path_is_absolute(job) ? realpath(job, NULL) : NULL;
	int ret = -ENOENT;

	for (guint i = 0; i < recorded->len; i++) {
		Recorded *r = &g_array_index(recorded, Recorded, i);

		/* A running job's record is its own: a cancel removes it. */
		if (target_running(jobs, r->j.target))
			continue;
		if (job && strcmp(job, r->j.target) != 0 &&
		    !(real && strcmp(real, r->j.target) == 0))
			continue;
		*target = g_strdup(r->j.target);
		return forget_job(mfs_root_fd(fs), r->name, r->j.target);
	}
	return ret;
}

int mig_check_beside_records(Mfs *fs, Migration *mig, const char *target, char **error)
{
	g_autoptr(GArray) recorded = recorded_jobs(mfs_root_fd(fs));
	g_autoptr(GPtrArray) jobs = mfs_jobs_frozen(fs);
	g_autofree char *real = realpath(target, NULL);

	for (guint i = 0; i < recorded->len; i++) {
		Recorded *r = &g_array_index(recorded, Recorded, i);
		g_autofree char *why = NULL, *what = NULL;
		g_auto(GStrv) only = NULL;
		const char *shared = NULL;
		MfsMigOptions opts;

		if ((real && strcmp(real, r->j.target) == 0) || target_running(jobs, r->j.target))
			continue;
		mfs_mig_options_init(&opts);
		if (mfs_mig_options_from_job(&opts, r->j.job, &why) < 0)
			continue; /* it cannot resume whatever is started */
		only = opts.only;
		for (char **n = mig->only; n && only && *n && !shared; n++)
			if (g_strv_contains((const char *const *)only, *n))
				shared = *n;
		if (!shared && mig->only && only)
			continue;
		if (shared)
			what = g_strdup_printf("'%s' is recorded as moving to '%s', by a migration "
			                       "that did not resume",
			                       shared, r->j.target);
		else
			what = g_strdup_printf(
			    "the source records a migration %s to '%s' that did "
			    "not resume",
			    only ? "of some of its entries" : "of the whole tree", r->j.target);
		*error =
		    g_strdup_printf("%s (the daemon said why at its start): make it resume, or "
		                    "forget it first (mirrorfsctl MOUNTPOINT cancel --job %s)",
		                    what, r->j.target);
		return -EBUSY;
	}
	return 0;
}

/*
 * A per-VM job whose switch placed every one of its entries, and that
 * ended with the daemon before it removed its record @name: it is done.
 */
static bool mig_recorded_switched(Mfs *fs, const MfsMigOptions *opts, const char *name)
{
	if (!opts->only || !mfs_placed_in(fs, opts->only, opts->target))
		return false;
	g_message("the per-VM job to '%s' had switched when the daemon stopped: its record goes",
	          opts->target);
	journal_remove_named(mfs_root_fd(fs), name);
	{
		int fd = open(opts->target, O_PATH | O_DIRECTORY | O_CLOEXEC);

		if (fd >= 0) {
			mfs_placement_home_settle(fs, opts->target, fd);
			close(fd);
		}
	}
	return true;
}

/*
 * Start one recorded job: 1, or 0 when it is done already or left to the
 * command line's @target, or -errno (*@error).
 */
static int start_recorded(Mfs *fs, const Recorded *r, const char *target, char **error)
{
	g_autofree char *source = mfs_served_dir(fs);
	g_autofree char *why = NULL;
	MfsMigOptions opts;
	int ret;

	mfs_mig_options_init(&opts);
	opts.target = r->j.target;
	ret = mfs_mig_options_from_job(&opts, r->j.job, &why);
	if (ret < 0) {
		*error = g_strdup_printf("%s/%s records a migration to '%s' with an option that is "
		                         "not one: %s",
		                         source, r->name, r->j.target, why);
		return ret;
	}
	/* Done already, whatever the command line says now. */
	if (mig_recorded_switched(fs, &opts, r->name)) {
		g_strfreev(opts.only);
		return 0;
	}
	if (target) {
		g_autofree char *real = realpath(target, NULL);

		if (real && strcmp(real, r->j.target) == 0) {
			g_strfreev(opts.only);
			return 0; /* the same job, given again: its options are the ones given */
		}
		/* A per-VM job runs beside the one given, if that one may (checked at its start).
		 */
		if (!opts.only) {
			*error = g_strdup_printf(
			    "%s/%s records a migration to '%s' under way: mount without target= to "
			    "resume it, or cancel it first (mount, then mirrorfsctl MOUNTPOINT "
			    "cancel)",
			    source, r->name, r->j.target);
			return -EBUSY;
		}
	}
	opts.defer_thread = true;
	opts.resume = true;
	ret = mig_start(fs, &opts, true, &why);
	g_strfreev(opts.only);
	if (ret < 0) {
		/* Named, for cancel --job; only a whole tree's record above stops the mount. */
		*error = g_strdup_printf("the migration to '%s' (%s/%s): %s", r->j.target, source,
		                         r->name, why);
		return ret == -EBUSY ? -EEXIST : ret;
	}
	return 1;
}

int mfs_migration_start_recorded(Mfs *fs, const char *target, char **error)
{
	g_autoptr(GArray) recorded = recorded_jobs(mfs_root_fd(fs));
	int started = 0;

	*error = NULL;
	for (guint i = 0; i < recorded->len; i++) {
		g_autofree char *why = NULL;
		int ret = start_recorded(fs, &g_array_index(recorded, Recorded, i), target, &why);

		if (ret == -EBUSY) {
			g_free(*error);
			*error = g_steal_pointer(&why);
			return ret;
		}
		if (ret > 0)
			started++;
		/* The others still start: each failure is said, one a line. */
		if (ret < 0) {
			g_autofree char *before = *error;

			*error =
			    before ? g_strdup_printf("%s\n%s", before, why) : g_steal_pointer(&why);
		}
	}
	return started;
}
