/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The copier's pacing: how many chunks it keeps in flight, and how long
 * it rests, so that a busy guest keeps its share of its own I/O rate.
 * Pure arithmetic on what the copier measures (pacer.c says how); no
 * clock, no lock, no I/O: the copier feeds it and obeys it.
 */
#ifndef MFS_PACER_H
#define MFS_PACER_H

#include "copy-queue.h"

#include <stdbool.h>
#include <stdint.h>

/* A burst of copying lasts about this long before the pacer is asked again. */
#define PACER_BURST_US (40 * 1000)

typedef struct {
	double rest_rate; /* the guest's operations/s while the copier rests, <0: not known */
	double ratio[COPY_QUEUE_MAX + 1];    /* its rate copying at each depth, over rest_rate */
	double bw[COPY_QUEUE_MAX + 1];       /* the copier's bytes/s at each depth */
	bool seen[COPY_QUEUE_MAX + 1];       /* a burst was measured at that depth */
	bool ratio_seen[COPY_QUEUE_MAX + 1]; /* one with the guest's rate alone known */
	unsigned depth, max_depth;
	unsigned bursts;
	int64_t since_rest_us; /* copying since the guest's rate alone was last seen */
} Pacer;

void pacer_init(Pacer *p, unsigned max_depth);
/*
 * A burst ended: @bytes copied in @us at p->depth while the guest made
 * @guest_ops operations.  @share: the percentage of its rate alone the
 * guest must keep (0: copy flat out).  Returns the rest to take now, in
 * µs; p->depth is the depth of the next burst.
 */
int64_t pacer_burst_end(Pacer *p, uint64_t bytes, int64_t us, uint64_t guest_ops, unsigned share);
/* A rest of @us ended, the guest having made @guest_ops operations in it. */
void pacer_rest_end(Pacer *p, int64_t us, uint64_t guest_ops);

#endif /* MFS_PACER_H */
