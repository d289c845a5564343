/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The jobs of one tree (migration.h, "Jobs"): their numbers, which one a
 * request names, which ended ones stay for their status, and what is done
 * to all of them at once.  The tree keeps the list (mfs-job.h); the job
 * itself is migration.c's.
 */
#define _GNU_SOURCE
#include "migration-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A job's number: given at a start that succeeds, so that refused ones leave no gap. */
unsigned mig_next_job_id(void)
{
	static guint last_id; /* atomic */

	return (unsigned)g_atomic_int_add(&last_id, 1) + 1;
}

/* Does @job (migration.h) name @mig: its id, or its target, as given or resolved? */
static bool names_job(Migration *mig, const char *job, const char *real)
{
	char *end;
	guint64 id;

	if (g_ascii_isdigit(job[0])) {
		id = g_ascii_strtoull(job, &end, 10);
		if (!*end)
			return id == mig->id;
	}
	return strcmp(job, mig->target) == 0 || (real && strcmp(real, mig->target) == 0);
}

int mig_select(Mfs *fs, const char *job, Migration **out)
{
	g_autoptr(GPtrArray) jobs = mfs_jobs(fs);
	g_autofree char *real = job && g_path_is_absolute(job) ? realpath(job, NULL) : NULL;
	Migration *live = NULL, *last = NULL;
	unsigned n_live = 0;

	*out = NULL;
	for (guint i = 0; i < jobs->len; i++) {
		Migration *mig = g_ptr_array_index(jobs, i);

		if (job && names_job(mig, job, real))
			last = mig; /* the newest of those it names */
		else if (!job && mig_state_live(mig_state(mig)))
			live = mig, n_live++;
		else if (!job)
			last = mig;
	}
	if (job) {
		*out = last;
		return last ? 0 : -ESRCH;
	}
	*out = live ? live : last;
	if (n_live > 1)
		return -ENOTUNIQ;
	return *out ? 0 : -ENOENT;
}

/*
 * Ended jobs are kept for their status, and so that a job's number still
 * names it for whoever waits on it: the newest this many.
 */
#define MIG_ENDED_KEPT 16

/* The kept jobs that go at a start (frozen): the oldest ended beyond MIG_ENDED_KEPT. */
GPtrArray *mig_jobs_to_drop(Mfs *fs)
{
	g_autoptr(GPtrArray) jobs = mfs_jobs_frozen(fs);
	GPtrArray *drop = g_ptr_array_new();
	unsigned ended = 0;

	for (guint i = 0; i < jobs->len; i++)
		ended += !mig_state_live(mig_state(g_ptr_array_index(jobs, i)));
	for (guint i = 0; i < jobs->len && ended > MIG_ENDED_KEPT; i++) {
		Migration *old = g_ptr_array_index(jobs, i);

		if (!mig_state_live(mig_state(old))) {
			g_ptr_array_add(drop, old);
			ended--;
		}
	}
	return drop;
}

void mfs_migration_renew_claim(Mfs *fs)
{
	g_autoptr(GPtrArray) jobs = mfs_jobs(fs);

	for (guint i = 0; i < jobs->len; i++)
		mfs_dir_claim_renew(((Migration *)g_ptr_array_index(jobs, i))->lock_fd);
}
