/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A migration's events (migration.h): a bounded queue in the job, filled
 * where the job enters a state or finishes a file, read by its followers
 * (the control server) after the last seq they saw.  Each new event wakes
 * them (mfs_job_notify()): they need not poll.
 */
#include "migration-int.h"

/* Across every migration of the process: a follower goes on from one to the next. */
static uint64_t last_seq; /* atomic; written under the job's lock */

static void event_free(gpointer data)
{
	MfsMigEvent *ev = data;

	g_free(ev->state);
	g_free(ev->error);
	g_free(ev->path);
	g_free(ev);
}

void mig_event(Migration *mig, MfsMigEventKind kind, const char *state, const char *error,
               double stun_ms, const char *path)
{
	MfsMigEvent *ev = g_new0(MfsMigEvent, 1);

	ev->kind = kind;
	ev->job = mig->id;
	ev->time_us = g_get_real_time();
	ev->state = g_strdup(state);
	ev->error = g_strdup(error);
	ev->stun_ms = stun_ms;
	ev->path = g_strdup(path);
	mfs_mutex_lock(&mig->lock);
	ev->seq = __atomic_add_fetch(&last_seq, 1, __ATOMIC_SEQ_CST);
	g_queue_push_tail(&mig->events, ev);
	while (g_queue_get_length(&mig->events) > MFS_MIG_EVENTS_KEPT)
		event_free(g_queue_pop_head(&mig->events));
	mfs_mutex_unlock(&mig->lock);
	mfs_job_notify(mig->fs);
}

void mig_state_event(Migration *mig, MigState s)
{
	g_autofree char *error = NULL;
	double stun_ms = -1;

	mfs_mutex_lock(&mig->lock);
	if (s == MIG_FAILED)
		error = g_strdup(mig->error);
	if (s == MIG_SWITCHED)
		stun_ms = mig->stun_ns / 1e6;
	mfs_mutex_unlock(&mig->lock);
	mig_event(mig, MFS_MIG_EVENT_STATE, mfs_mig_state_name(mig_state_public(s, MIG_COPYING)),
	          error, stun_ms, NULL);
}

void mig_events_clear(Migration *mig)
{
	g_queue_clear_full(&mig->events, event_free);
}

static gint by_seq(gconstpointer a, gconstpointer b)
{
	uint64_t x = ((const MfsMigEvent *)a)->seq, y = ((const MfsMigEvent *)b)->seq;

	return x < y ? -1 : x > y;
}

unsigned mfs_migration_events(Mfs *fs, uint64_t after, MfsMigEvent **out, uint64_t *last)
{
	g_autoptr(GPtrArray) jobs = mfs_jobs(fs);
	GArray *copy = g_array_new(FALSE, FALSE, sizeof(MfsMigEvent));
	unsigned n;

	*last = __atomic_load_n(&last_seq, __ATOMIC_SEQ_CST);
	for (guint i = 0; i < jobs->len; i++) {
		Migration *mig = g_ptr_array_index(jobs, i);

		mfs_mutex_lock(&mig->lock);
		for (GList *l = mig->events.head; l; l = l->next) {
			MfsMigEvent ev = *(MfsMigEvent *)l->data;

			if (ev.seq <= after)
				continue;
			ev.state = g_strdup(ev.state);
			ev.error = g_strdup(ev.error);
			ev.path = g_strdup(ev.path);
			g_array_append_val(copy, ev);
		}
		mfs_mutex_unlock(&mig->lock);
	}
	/* Each job's are in order; the jobs' interleave. */
	g_array_sort(copy, by_seq);
	n = copy->len;
	*out = (MfsMigEvent *)g_array_free(copy, n == 0);
	return n;
}

void mfs_migration_set_event_notify(Mfs *fs, void (*fn)(void *opaque), void *opaque)
{
	mfs_set_job_notify(fs, fn, opaque);
}

void mfs_migration_events_free(MfsMigEvent *events, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		g_free(events[i].state);
		g_free(events[i].error);
		g_free(events[i].path);
	}
	g_free(events);
}
