/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A migration's status (mfs_migration_status()): its figures, read under
 * the job's lock, and what is kept of them once its files are let go.
 */
#define _GNU_SOURCE
#include "migration-int.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

void mig_final_status_free(Migration *mig)
{
	for (unsigned i = 0; i < mig->n_final; i++)
		g_free(mig->final[i].path);
	g_clear_pointer(&mig->final, g_free);
	mig->n_final = 0;
}

/* The copier's rate over the last samples, and the time left; under lock. */
static void rate_locked(Migration *mig, MfsMigStatus *out)
{
	unsigned newest = (mig->rate_n - 1) % RATE_SAMPLES;
	unsigned oldest = mig->rate_n >= RATE_SAMPLES ? mig->rate_n % RATE_SAMPLES : 0;
	gint64 dt = mig->rate_t[newest] - mig->rate_t[oldest];

	if (mig->rate_n < 2 || !mig_state_live(mig->state))
		return;
	/* A copier that has not moved for a while (paused, limited) has no rate. */
	if (g_get_monotonic_time() - mig->rate_t[newest] > 2 * G_USEC_PER_SEC)
		dt = 0;
	if (dt > 0)
		out->rate_bps =
		    (mig->rate_b[newest] - mig->rate_b[oldest]) * G_USEC_PER_SEC / (uint64_t)dt;
	if (out->rate_bps)
		out->eta_s = (double)(out->bytes_total > out->bytes_copied
		                          ? out->bytes_total - out->bytes_copied
		                          : 0) /
		             (double)out->rate_bps;
}

/*
 * The files' figures are read under the job's lock; their paths, one
 * readlink each, after it, from descriptors duplicated under it (the
 * MirrorFiles may be freed meanwhile, the duplicates stay).  That is one
 * descriptor per file for the length of a status: the daemon raised its
 * limit to the hard one at start (fuse/main.c).
 */
static void status_of(Migration *mig, MfsMigStatus *out)
{
	g_autofree int *fds = NULL;
	MigTotals t = {0};

	memset(out, 0, sizeof(*out));
	out->eta_s = -1;
	out->id = mig->id;
	mfs_mutex_lock(&mig->lock);
	out->state = mig_state_public(mig->state, mig->before);
	/* A paused job being cancelled still shows paused, as its state shows copying. */
	out->paused = mig->state == MIG_PAUSED ||
	              (mig_state_stopping(mig->state) && mig->before == MIG_PAUSED);
	out->source = g_strdup(mig->source);
	out->target = g_strdup(mig->target);
	out->only = mig->only ? g_strdupv(mig->only) : NULL;
	out->bytes_total = mig->bytes_total;
	out->stun_ns = mig->stun_ns;
	out->speed_bps = mig->speed_bps;
	out->guest_share = mig->guest_share;
	out->rested_ns = mig->rested_us * 1000;
	out->error = g_strdup(mig->error ? mig->error : out->paused ? mig->held : NULL);
	out->held = out->paused && mig->held;
	out->verify = mig->verify;
	out->verify_bytes = mig->verify_bytes;
	out->mismatches = mig->mismatches;
	out->mismatch = g_strdup(mig->mismatch);
	if (mig->files->len) {
		out->n_files = mig->files->len;
		out->files = g_new0(MfsMigFileStatus, out->n_files);
		fds = g_new(int, out->n_files);
		for (guint i = 0; i < mig->files->len; i++) {
			MigObject *obj = g_ptr_array_index(mig->files, i);
			MirrorFileStats st;

			mirror_file_stats(obj->mf, &st);
			fds[i] = fcntl(mirror_file_target_fd(obj->mf), F_DUPFD_CLOEXEC, 0);
			out->files[i].size = st.size;
			out->files[i].cp_offset = st.cp_offset;
			out->files[i].mirrored = st.mirrored;
			t.bytes_copied += st.bytes_copied;
			t.bytes_cloned += st.bytes_cloned;
			t.bytes_resumed += st.bytes_resumed;
			t.mirrored_writes += st.mirrored_writes;
			t.waited_writes += st.waited_writes;
			t.max_wait_ns = MAX(t.max_wait_ns, st.max_wait_ns);
		}
	} else {
		out->n_files = mig->n_final;
		out->files = g_new0(MfsMigFileStatus, MAX(mig->n_final, 1));
		for (unsigned i = 0; i < mig->n_final; i++) {
			out->files[i] = mig->final[i];
			out->files[i].path = g_strdup(mig->final[i].path);
		}
		t = mig->final_totals;
	}
	out->bytes_copied = t.bytes_copied;
	out->bytes_cloned = t.bytes_cloned;
	out->bytes_resumed = t.bytes_resumed;
	out->mirrored_writes = t.mirrored_writes;
	out->waited_writes = t.waited_writes;
	out->max_wait_ns = t.max_wait_ns;
	rate_locked(mig, out);
	mfs_mutex_unlock(&mig->lock);
	for (unsigned i = 0; fds && i < out->n_files; i++) {
		out->files[i].path = fds[i] >= 0 ? mig_target_relpath(mig, fds[i]) : g_strdup("?");
		if (fds[i] >= 0)
			close(fds[i]);
	}
}

int mfs_migration_status(Mfs *fs, const char *job, MfsMigStatus *out)
{
	Migration *mig;
	int ret = mig_select(fs, job, &mig);

	if (!mig) {
		memset(out, 0, sizeof(*out));
		out->eta_s = -1;
		out->state = MFS_MIG_IDLE;
		out->source = mfs_served_dir(fs);
		return ret;
	}
	status_of(mig, out);
	return 0;
}

unsigned mfs_migration_job_ids(Mfs *fs, unsigned **ids)
{
	g_autoptr(GPtrArray) jobs = mfs_jobs(fs);

	*ids = g_new(unsigned, jobs->len + 1);
	for (guint i = 0; i < jobs->len; i++)
		(*ids)[i] = ((Migration *)g_ptr_array_index(jobs, i))->id;
	return jobs->len;
}

void mig_keep_final_status(Migration *mig)
{
	MfsMigStatus st = {0};

	status_of(mig, &st);
	mfs_mutex_lock(&mig->lock);
	mig_final_status_free(mig);
	mig->final = g_steal_pointer(&st.files);
	mig->n_final = st.n_files;
	mig->final_totals = (MigTotals){
	    .bytes_copied = st.bytes_copied,
	    .bytes_cloned = st.bytes_cloned,
	    .bytes_resumed = st.bytes_resumed,
	    .mirrored_writes = st.mirrored_writes,
	    .waited_writes = st.waited_writes,
	    .max_wait_ns = st.max_wait_ns,
	};
	st.n_files = 0;
	mfs_mutex_unlock(&mig->lock);
	mfs_migration_status_clear(&st);
}

void mfs_migration_status_clear(MfsMigStatus *st)
{
	for (unsigned i = 0; i < st->n_files; i++)
		g_free(st->files[i].path);
	g_free(st->files);
	g_free(st->source);
	g_free(st->target);
	g_strfreev(st->only);
	g_free(st->error);
	g_free(st->mismatch);
	memset(st, 0, sizeof(*st));
}
