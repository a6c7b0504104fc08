/* SPDX-License-Identifier: MIT */
/*
 * The poll window: how long the loop spins after work before it sleeps.
 *
 * Fixed (poll-us = N) it is N.  Adaptive (poll-us = auto, the default), it
 * follows the gaps between events, as QEMU's iothreads (poll-max-ns) and
 * SPDK's reactors do: each time the loop wakes from a sleep, the gap since
 * the last work is compared with the cap (poll-max-us).  A gap within the
 * cap means a longer window would have caught the event without the sleep
 * and the wake-up, so the window grows (doubling from POLLWIN_START_NS); a
 * gap beyond it means spinning would only have burnt CPU, so the window
 * shrinks (halving, and to 0 below POLLWIN_START_NS), but only from the
 * second such gap in a row: a spell that caught work in between (a hit)
 * starts the count again.  A device at queue depth 1 alternates between a
 * short gap (its disk) and a long one (its guest's next request); without
 * the count the window would grow on one and shrink on the other and
 * catch neither.  A busy device never sleeps; an idle server costs
 * nothing.
 *
 * Pure arithmetic on times the caller measures, so it is unit tested
 * without a clock (tests/unit/test_pollwin.c).
 */
#ifndef VP_POLLWIN_H
#define VP_POLLWIN_H

#include <stdbool.h>
#include <stdint.h>

/* The first window an adaptive controller grows to from 0. */
#define POLLWIN_START_NS 4000u

struct vp_pollwin {
	uint64_t ns;     /* the window now */
	uint64_t max_ns; /* fixed: the window; adaptive: its cap */
	bool adaptive;
	unsigned misses;  /* long gaps since the last hit or growth */
	uint64_t grows;   /* times the window grew, for stats */
	uint64_t shrinks; /* times it shrank */
};

/* A fixed window of ns (0: never spin). */
void vp_pollwin_fixed(struct vp_pollwin *w, uint64_t ns);
/* An adaptive window, from 0, capped at max_ns (0: never spin). */
void vp_pollwin_adaptive(struct vp_pollwin *w, uint64_t max_ns);

/* The loop slept and woke for an event gap_ns after its last work (the
 * spell it spun included).  Adjusts an adaptive window. */
void vp_pollwin_woke(struct vp_pollwin *w, uint64_t gap_ns);

/* A spell found work without sleeping first. */
static inline void vp_pollwin_hit(struct vp_pollwin *w)
{
	w->misses = 0;
}

/* Could the window ever be non-zero?  (False: the loop never spins.) */
static inline bool vp_pollwin_enabled(const struct vp_pollwin *w)
{
	return w->max_ns > 0;
}

#endif
