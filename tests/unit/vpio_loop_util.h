/* SPDX-License-Identifier: MIT */
/*
 * For the vpio engine's tests (unit.vpio_kick, unit.vpio_uring): a done()
 * callback that counts and running the plugin host's event base until
 * enough completions arrived.  Include once, in the test's own file.
 */
#ifndef VP_TEST_VPIO_LOOP_UTIL_H
#define VP_TEST_VPIO_LOOP_UTIL_H

#include <event2/event.h>
#include <stdint.h>
#include <time.h>

#include "vpio.h"

static unsigned done_calls;
static int last_res;

static void op_done(struct vpio_op *op, int res)
{
	(void)op;
	done_calls++;
	last_res = res;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Run the loop until want completions arrived or ms passed. */
static void run_until(struct event_base *base, unsigned want, unsigned ms)
{
	uint64_t end = now_ms() + ms;

	while (done_calls < want && now_ms() < end) {
		struct timespec ts = {0, 200 * 1000};

		event_base_loop(base, EVLOOP_NONBLOCK);
		nanosleep(&ts, NULL);
	}
}


#endif
