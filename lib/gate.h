/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The stun gate.  Every operation that changes or resolves the backing
 * store passes through it; closing it stops new ones and waits for those
 * inside to leave.  Entering costs two atomic operations on the common
 * path and takes no lock.
 */
#ifndef MFS_GATE_H
#define MFS_GATE_H

#include "lock.h"

#include <glib.h>

typedef struct {
	gint inside; /* operations between enter and leave */
	gint closed;
	MfsMutex lock; /* slow path only */
	MfsCond cond;
} MfsGate;

void gate_init(MfsGate *gate);
void gate_clear(MfsGate *gate);
/* May block while the gate is closed.  Not reentrant: enter once per operation. */
void gate_enter(MfsGate *gate);
void gate_leave(MfsGate *gate);
/* Stop new entries and wait until nobody is inside.  One closer at a time. */
void gate_close(MfsGate *gate);
void gate_open(MfsGate *gate);

#endif
