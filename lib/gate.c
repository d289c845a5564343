/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The stun gate.  enter() increments `inside` and then checks `closed`;
 * close() sets `closed` and then waits for `inside` to reach zero.  Both
 * sides use sequentially consistent atomics, so at least one of them sees
 * the other: either the entering operation backs out and waits, or the
 * closer waits for it to leave.  The mutex and condition are used only
 * when the gate is closed or closing.
 */
#include "gate.h"

void gate_init(MfsGate *gate)
{
	gate->inside = 0;
	gate->closed = 0;
	mfs_mutex_init(&gate->lock);
	mfs_cond_init(&gate->cond);
}

void gate_clear(MfsGate *gate)
{
	mfs_mutex_clear(&gate->lock);
	mfs_cond_clear(&gate->cond);
}

void gate_leave(MfsGate *gate)
{
	if (g_atomic_int_dec_and_test(&gate->inside) && g_atomic_int_get(&gate->closed)) {
		mfs_mutex_lock(&gate->lock);
		mfs_cond_broadcast(&gate->cond);
		mfs_mutex_unlock(&gate->lock);
	}
}

void gate_enter(MfsGate *gate)
{
	for (;;) {
		g_atomic_int_inc(&gate->inside);
		if (!g_atomic_int_get(&gate->closed))
			return;
		gate_leave(gate);
		mfs_mutex_lock(&gate->lock);
		while (g_atomic_int_get(&gate->closed))
			mfs_cond_wait(&gate->cond, &gate->lock);
		mfs_mutex_unlock(&gate->lock);
	}
}

void gate_close(MfsGate *gate)
{
	mfs_mutex_lock(&gate->lock);
	g_atomic_int_set(&gate->closed, 1);
	while (g_atomic_int_get(&gate->inside) > 0)
		mfs_cond_wait(&gate->cond, &gate->lock);
	mfs_mutex_unlock(&gate->lock);
}

void gate_open(MfsGate *gate)
{
	mfs_mutex_lock(&gate->lock);
	g_atomic_int_set(&gate->closed, 0);
	mfs_cond_broadcast(&gate->cond);
	mfs_mutex_unlock(&gate->lock);
}
