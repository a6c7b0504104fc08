/* SPDX-License-Identifier: MIT */
/*
 * The poll window controller (core/pollwin.c): an adaptive window grows
 * from 0 by doubling while the gaps between events fit under the cap,
 * never passes the cap, shrinks by halving (to 0) from the second gap in
 * a row that does not fit (a hit in between starts the count again), and
 * stays at 0 for an idle server; a fixed window never moves.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "pollwin.h"

#define US 1000u

START_TEST(adaptive_starts_closed)
{
	struct vp_pollwin w;

	vp_pollwin_adaptive(&w, 64 * US);
	ck_assert(vp_pollwin_enabled(&w));
	ck_assert_uint_eq(w.ns, 0);
}
END_TEST

START_TEST(grows_by_doubling_to_the_cap)
{
	struct vp_pollwin w;
	const uint64_t want[] = {4 * US, 8 * US, 16 * US, 32 * US, 50 * US, 50 * US};

	vp_pollwin_adaptive(&w, 50 * US);
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		vp_pollwin_woke(&w, 20 * US);
		ck_assert_uint_eq(w.ns, want[i]);
	}
	/* Only real changes count: the last call found it at the cap. */
	ck_assert_uint_eq(w.grows, 5);
	ck_assert_uint_eq(w.shrinks, 0);
}
END_TEST

START_TEST(gap_at_the_cap_grows_beyond_it_shrinks)
{
	struct vp_pollwin w;

	vp_pollwin_adaptive(&w, 50 * US);
	vp_pollwin_woke(&w, 50 * US);
	ck_assert_uint_eq(w.ns, 4 * US);
	vp_pollwin_woke(&w, 50 * US + 1);
	ck_assert_uint_eq(w.ns, 4 * US); /* one long gap: not yet */
	vp_pollwin_woke(&w, 50 * US + 1);
	ck_assert_uint_eq(w.ns, 0);
	ck_assert_uint_eq(w.shrinks, 1);
}
END_TEST

START_TEST(shrinks_by_halving_to_zero)
{
	struct vp_pollwin w;
	const uint64_t want[] = {64 * US, 32 * US, 16 * US, 8 * US, 4 * US, 0, 0};

	vp_pollwin_adaptive(&w, 64 * US);
	for (int i = 0; i < 5; i++)
		vp_pollwin_woke(&w, 1 * US);
	ck_assert_uint_eq(w.ns, 64 * US);
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		vp_pollwin_woke(&w, 1000 * US);
		ck_assert_uint_eq(w.ns, want[i]);
	}
	/* Halving 4 us gives 2 us, below the start: closed. */
	ck_assert_uint_eq(w.shrinks, 5);
}
END_TEST

START_TEST(idle_stays_closed)
{
	struct vp_pollwin w;

	vp_pollwin_adaptive(&w, 64 * US);
	for (int i = 0; i < 1000; i++)
		vp_pollwin_woke(&w, 1000000 * US);
	ck_assert_uint_eq(w.ns, 0);
	ck_assert_uint_eq(w.grows, 0);
	ck_assert_uint_eq(w.shrinks, 0);
}
END_TEST

START_TEST(small_cap_is_reached_at_once)
{
	struct vp_pollwin w;

	/* A cap below the start value: the first growth is the cap. */
	vp_pollwin_adaptive(&w, 1 * US);
	vp_pollwin_woke(&w, 1 * US);
	ck_assert_uint_eq(w.ns, 1 * US);
	vp_pollwin_woke(&w, 2 * US);
	vp_pollwin_woke(&w, 2 * US);
	ck_assert_uint_eq(w.ns, 0);
}
END_TEST

START_TEST(mixed_gaps_follow_the_load)
{
	struct vp_pollwin w;

	/* Busy (20 us gaps), then a burst of long gaps, then busy again. */
	vp_pollwin_adaptive(&w, 100 * US);
	for (int i = 0; i < 10; i++)
		vp_pollwin_woke(&w, 20 * US);
	ck_assert_uint_eq(w.ns, 100 * US);
	vp_pollwin_woke(&w, 5000 * US);
	vp_pollwin_woke(&w, 5000 * US);
	ck_assert_uint_eq(w.ns, 50 * US);
	vp_pollwin_woke(&w, 20 * US);
	ck_assert_uint_eq(w.ns, 100 * US);
}
END_TEST

START_TEST(hits_between_long_gaps_keep_the_window)
{
	struct vp_pollwin w;

	/* Queue depth 1: the spell catches the disk's completion (a hit),
	 * then the guest's next request comes after a long gap, in turn. */
	vp_pollwin_adaptive(&w, 50 * US);
	for (int i = 0; i < 6; i++)
		vp_pollwin_woke(&w, 30 * US);
	ck_assert_uint_eq(w.ns, 50 * US);
	for (int i = 0; i < 100; i++) {
		vp_pollwin_hit(&w);
		vp_pollwin_woke(&w, 80 * US);
	}
	ck_assert_uint_eq(w.ns, 50 * US);
	ck_assert_uint_eq(w.shrinks, 0);
	/* Without the hits the long gaps close it. */
	for (int i = 0; i < 6; i++)
		vp_pollwin_woke(&w, 80 * US);
	ck_assert_uint_eq(w.ns, 0);
}
END_TEST

START_TEST(fixed_never_moves)
{
	struct vp_pollwin w;

	vp_pollwin_fixed(&w, 50 * US);
	ck_assert(vp_pollwin_enabled(&w));
	vp_pollwin_woke(&w, 1 * US);
	ck_assert_uint_eq(w.ns, 50 * US);
	vp_pollwin_woke(&w, 1000000 * US);
	ck_assert_uint_eq(w.ns, 50 * US);
	ck_assert_uint_eq(w.grows + w.shrinks, 0);
}
END_TEST

START_TEST(off_never_spins)
{
	struct vp_pollwin fixed, adaptive;

	vp_pollwin_fixed(&fixed, 0);
	vp_pollwin_adaptive(&adaptive, 0);
	ck_assert(!vp_pollwin_enabled(&fixed));
	ck_assert(!vp_pollwin_enabled(&adaptive));
	vp_pollwin_woke(&fixed, 0);
	vp_pollwin_woke(&adaptive, 0);
	ck_assert_uint_eq(fixed.ns, 0);
	ck_assert_uint_eq(adaptive.ns, 0);
}
END_TEST

static Suite *pollwin_suite(void)
{
	Suite *s = suite_create("pollwin");
	TCase *tc = tcase_create("pollwin");

	tcase_add_test(tc, adaptive_starts_closed);
	tcase_add_test(tc, grows_by_doubling_to_the_cap);
	tcase_add_test(tc, gap_at_the_cap_grows_beyond_it_shrinks);
	tcase_add_test(tc, shrinks_by_halving_to_zero);
	tcase_add_test(tc, idle_stays_closed);
	tcase_add_test(tc, small_cap_is_reached_at_once);
	tcase_add_test(tc, mixed_gaps_follow_the_load);
	tcase_add_test(tc, hits_between_long_gaps_keep_the_window);
	tcase_add_test(tc, fixed_never_moves);
	tcase_add_test(tc, off_never_spins);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(pollwin_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
