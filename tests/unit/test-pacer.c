/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the copier's pacing (lib/pacer.c), against a model of a
 * disk shared by the copier and a guest: the guest's rate alone, what
 * copying at each depth leaves it, and what each depth copies.  The
 * pacer is driven burst by burst as the copier drives it, in simulated
 * time; every second of it is checked, as the bench checks the real one.
 */
#include "pacer.h"

#include <check.h>
#include <glib.h>

typedef struct {
	double guest_rate;                /* operations/s alone; 0: idle */
	double ratio[COPY_QUEUE_MAX + 1]; /* what copying at a depth leaves the guest */
	double bw[COPY_QUEUE_MAX + 1];    /* bytes/s the copier moves at a depth */
} Disk;

/* A disk that copies faster with more in flight, and leaves the guest less. */
static void disk_init(Disk *disk, double guest_rate)
{
	disk->guest_rate = guest_rate;
	for (unsigned d = 1; d <= COPY_QUEUE_MAX; d++) {
		disk->ratio[d] = 0.8 / d;
		disk->bw[d] = 100e6 * d / (1 + 0.3 * (d - 1));
	}
}

typedef struct {
	double copied;       /* bytes */
	double seconds;      /* simulated */
	double worst_second; /* the guest's fewest operations in any whole second, over its rate
	                        alone */
	double rested;       /* seconds */
	unsigned depth;      /* the last */
} Run;

/* Drive @p on @disk for @seconds of simulated time at @share. */
static Run run_pacer(Pacer *p, const Disk *disk, double seconds, unsigned share)
{
	GArray *ops = g_array_new(FALSE, TRUE, sizeof(double)); /* the guest's, per ms */
	Run r = {0};
	double t = 0;

	while (t < seconds) {
		unsigned d = p->depth;
		double burst = PACER_BURST_US / 1e6, rest;
		double guest = disk->guest_rate * disk->ratio[d] * burst;
		int64_t rest_us;

		for (double x = 0; x < burst; x += 0.001) {
			double copying = disk->guest_rate * disk->ratio[d] / 1000;

			g_array_append_val(ops, copying);
		}
		r.copied += disk->bw[d] * burst;
		rest_us = pacer_burst_end(p, (uint64_t)(disk->bw[d] * burst), PACER_BURST_US,
		                          (uint64_t)guest, share);
		rest = rest_us / 1e6;
		for (double x = 0; x < rest; x += 0.001) {
			double alone = disk->guest_rate / 1000;

			g_array_append_val(ops, alone);
		}
		if (rest_us)
			pacer_rest_end(p, rest_us, (uint64_t)(disk->guest_rate * rest));
		r.rested += rest;
		t += burst + rest;
	}
	r.seconds = t;
	r.depth = p->depth;
	r.worst_second = 1;
	for (guint i = 0; disk->guest_rate > 0 && i + 1000 <= ops->len; i += 100) {
		double sum = 0;

		for (guint j = i; j < i + 1000; j++)
			sum += g_array_index(ops, double, j);
		r.worst_second = MIN(r.worst_second, sum / disk->guest_rate);
	}
	g_array_free(ops, TRUE);
	return r;
}

/*
 * A busy guest keeps its share in every second (after the first, while
 * the pacer learns what each depth costs), and the copier copies close to
 * the best it could under that share: the best depth's bandwidth times
 * the time it may copy.
 */
START_TEST(test_busy_guest_keeps_its_share)
{
	static const unsigned shares[] = {20, 50, 80};
	unsigned share = shares[_i];
	double s = share / 100.0, best = 0;
	Disk disk;
	Pacer p;
	Run r;

	disk_init(&disk, 20000);
	for (unsigned d = 1; d <= 4; d++) {
		double duty = disk.ratio[d] >= s ? 1 : (1 - s) / (1 - disk.ratio[d]);

		best = MAX(best, disk.bw[d] * duty);
	}
	pacer_init(&p, 4);
	run_pacer(&p, &disk, 1, share); /* learning */
	r = run_pacer(&p, &disk, 10, share);
	ck_assert_msg(r.worst_second >= s - 0.03, "share %u: the guest's worst second %.2f", share,
	              r.worst_second);
	ck_assert_msg(r.copied / r.seconds >= 0.85 * best, "share %u: %.0f MB/s, the best %.0f",
	              share, r.copied / r.seconds / 1e6, best / 1e6);
	ck_assert_double_gt(r.rested, 0);
}
END_TEST

/* An idle guest costs nothing: no rest, and the fastest depth. */
START_TEST(test_idle_guest_gets_the_fastest_depth)
{
	Disk disk;
	Pacer p;
	Run r;

	disk_init(&disk, 0);
	pacer_init(&p, 4);
	r = run_pacer(&p, &disk, 5, 50);
	ck_assert_double_eq(r.rested, 0);
	ck_assert_double_ge(r.copied / r.seconds, 0.9 * disk.bw[4]);
}
END_TEST

/* Share 0: flat out, whatever the guest loses. */
START_TEST(test_share_zero_never_rests)
{
	Disk disk;
	Pacer p;
	Run r;

	disk_init(&disk, 20000);
	pacer_init(&p, 4);
	r = run_pacer(&p, &disk, 5, 0);
	ck_assert_double_eq(r.rested, 0);
	ck_assert_double_ge(r.copied / r.seconds, 0.9 * disk.bw[4]);
}
END_TEST

/*
 * A guest the copier does not slow down (its own disk, say) is not owed
 * rests: only a look at it alone once a second, a small part of it.
 */
START_TEST(test_guest_not_slowed_costs_only_probes)
{
	Disk disk;
	Pacer p;
	Run r;

	disk_init(&disk, 20000);
	for (unsigned d = 1; d <= COPY_QUEUE_MAX; d++)
		disk.ratio[d] = 1;
	pacer_init(&p, 4);
	r = run_pacer(&p, &disk, 10, 50);
	ck_assert_double_le(r.rested / r.seconds, 0.03);
	ck_assert_double_ge(r.copied / r.seconds, 0.85 * disk.bw[4]);
}
END_TEST

static Suite *pacer_suite(void)
{
	Suite *s = suite_create("pacer");
	TCase *tc = tcase_create("pacer");

	tcase_add_loop_test(tc, test_busy_guest_keeps_its_share, 0, 3);
	tcase_add_test(tc, test_idle_guest_gets_the_fastest_depth);
	tcase_add_test(tc, test_share_zero_never_rests);
	tcase_add_test(tc, test_guest_not_slowed_costs_only_probes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(pacer_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
