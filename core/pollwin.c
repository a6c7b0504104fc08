/* SPDX-License-Identifier: MIT */
/*
 * The poll window (pollwin.h): grow while the gaps between events are
 * short enough to catch by spinning, shrink when they are not.
 */
#include "pollwin.h"

void vp_pollwin_fixed(struct vp_pollwin *w, uint64_t ns)
{
	*w = (struct vp_pollwin){.ns = ns, .max_ns = ns, .adaptive = false};
}

void vp_pollwin_adaptive(struct vp_pollwin *w, uint64_t max_ns)
{
	*w = (struct vp_pollwin){.ns = 0, .max_ns = max_ns, .adaptive = true};
}

void vp_pollwin_woke(struct vp_pollwin *w, uint64_t gap_ns)
{
	if (!w->adaptive || !w->max_ns)
		return;
	if (gap_ns <= w->max_ns) {
		/* A window of gap_ns would have served this without a sleep. */
		uint64_t ns = w->ns ? w->ns * 2 : POLLWIN_START_NS;

		if (ns > w->max_ns)
			ns = w->max_ns;
		w->misses = 0;
		if (ns != w->ns) {
			w->ns = ns;
			w->grows++;
		}
		return;
	}
	/* No window within the cap would have: spinning was wasted, if it
	 * happens twice in a row. */
	if (++w->misses < 2)
		return;
	if (w->ns) {
		w->ns /= 2;
		if (w->ns < POLLWIN_START_NS)
			w->ns = 0;
		w->shrinks++;
	}
}
