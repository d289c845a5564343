/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The copier's pacing (pacer.h).
 *
 * The copier and the guest share a disk that knows no priority: every
 * copier request in flight holds up the guest's behind it.  What the
 * guest loses is measured, not assumed: the copier counts the guest's
 * operations while it copies and while it rests, and their ratio is
 * what copying at that depth leaves the guest (the mirrored writes'
 * double cost is in both, so it cancels out: resting cannot remove it).
 *
 * The guest must keep @share of its rate alone over every cycle of a
 * burst (copying for C) and a rest (R): (R + ratio * C) / (R + C) >=
 * share, so R = C * (share - ratio) / (1 - share) when copying leaves it
 * less than its share, and no rest at all when it does not.  A burst is
 * PACER_BURST_US, so a cycle is a small part of a second and the share
 * holds in every second, not only on average.
 *
 * The depth is the one that copies fastest once its rests are paid:
 * bw(d) * C / (C + R(d)).  More chunks in flight fill the disk, and take
 * more of the guest's turns; which wins depends on the disk, the guest
 * and the chunk, so the pacer tries the depths next to the best one now
 * and then and keeps what it measured (a moving average, as the guest's
 * load moves too).  An idle guest loses nothing: only the bandwidth
 * counts then.  The guest's rate alone is measured again at least once a
 * second of copying, by a rest of PROBE_US if none was owed.
 */
#include "pacer.h"

#include <glib.h>

#define PROBE_EVERY_US (1000 * 1000)
#define PROBE_US       (15 * 1000)
/* Below this many operations a second, a guest is idle: nothing to leave it. */
#define IDLE_RATE 50.0
/* Every EXPLORE_EVERY bursts, a depth next to the best is tried. */
#define EXPLORE_EVERY 4
#define EWMA_NEW      0.3

static double ewma(double old, double sample, bool seen)
{
	return seen ? old + EWMA_NEW * (sample - old) : sample;
}

void pacer_init(Pacer *p, unsigned max_depth)
{
	*p = (Pacer){.rest_rate = -1, .max_depth = CLAMP(max_depth, 1, COPY_QUEUE_MAX)};
	/* Start in the middle: one chunk at a time is what the disk does worst. */
	p->depth = MIN(2u, p->max_depth);
}

/* The fraction of the time a depth may copy: the rest is the guest's. */
static double duty(const Pacer *p, double ratio, double s)
{
	if (s <= 0 || p->rest_rate < IDLE_RATE || ratio >= s)
		return 1.0;
	return (1 - s) / (1 - ratio);
}

static unsigned best_depth(const Pacer *p, double s)
{
	unsigned best = p->depth;
	double best_e = -1;

	for (unsigned d = 1; d <= p->max_depth; d++) {
		double e;

		if (!p->seen[d])
			continue;
		e = p->bw[d] * duty(p, p->ratio[d], s);
		if (e > best_e) {
			best_e = e;
			best = d;
		}
	}
	return best;
}

int64_t pacer_burst_end(Pacer *p, uint64_t bytes, int64_t us, uint64_t guest_ops, unsigned share)
{
	double s = MIN(share, 99u) / 100.0;
	unsigned d = p->depth, best;
	int64_t rest = 0;

	if (us <= 0)
		return 0;
	p->bw[d] = ewma(p->bw[d], (double)bytes * 1e6 / (double)us, p->seen[d]);
	if (p->rest_rate >= IDLE_RATE) {
		double ratio = MIN(1.0, (double)guest_ops * 1e6 / (double)us / p->rest_rate);

		p->ratio[d] = ewma(p->ratio[d], ratio, p->ratio_seen[d]);
		p->ratio_seen[d] = true;
	} else if (!p->ratio_seen[d]) {
		p->ratio[d] = 1.0; /* idle as far as is known */
	}
	p->seen[d] = true;
	p->since_rest_us += us;

	if (s > 0 && p->rest_rate >= IDLE_RATE && p->ratio[d] < s)
		rest = (int64_t)((double)us * (s - p->ratio[d]) / (1 - s));
	/*
	 * While the guest is busy, look at it alone at once, then once a
	 * second.  One that did nothing while the copier copied is idle.
	 */
	if (s > 0 && guest_ops && (p->rest_rate < 0 || p->since_rest_us >= PROBE_EVERY_US))
		rest = MAX(rest, PROBE_US);
	if (rest)
		p->since_rest_us = 0;

	best = best_depth(p, s);
	if (++p->bursts % EXPLORE_EVERY == 0) {
		/* Up first, while the disk may take more; down on the turn after. */
		unsigned up = MIN(best + 1, p->max_depth), down = MAX(best, 2u) - 1;

		best = (p->bursts / EXPLORE_EVERY) % 2 ? up : down;
	}
	p->depth = best;
	return rest;
}

void pacer_rest_end(Pacer *p, int64_t us, uint64_t guest_ops)
{
	double rate;

	if (us < 1000)
		return; /* too short to say anything */
	rate = (double)guest_ops * 1e6 / (double)us;
	p->rest_rate = p->rest_rate < 0 ? rate : ewma(p->rest_rate, rate, true);
}
