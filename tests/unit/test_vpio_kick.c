/* SPDX-License-Identifier: MIT */
/*
 * vpio_kick(), the end of a batch: until a host has called it once, every
 * io_uring submission goes to the kernel at once (a host that never kicks
 * loses nothing); from then on, what vpio_submit() queues reaches the
 * kernel only at the next kick, all of it with one system call.
 */
#include <check.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "plugin_host.h"
#include "vpio.h"

#define NOPS 8u
#define BS 4096u

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
		struct timespec ts = {0, 1000 * 1000};

		event_base_loop(base, EVLOOP_NONBLOCK);
		nanosleep(&ts, NULL);
	}
}

START_TEST(kick_ends_the_batch)
{
	static uint8_t bufs[NOPS][BS];
	struct event_base *base = event_base_new();
	struct vpio_op ops[NOPS];
	struct iovec iov[NOPS];
	struct vpio_engine *eng;
	char err[256];
	int fd = memfd_create("vpio-kick", MFD_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, NOPS * BS), 0);
	vp_plugin_set_event_base(base);
	if (vpio_engine_create(vp_plugin_host(), NULL, VPIO_ENGINE_IO_URING, 0, "test",
	                       &eng, err, sizeof(err)) < 0) {
		/* No io_uring here (a kernel or sandbox without it): the
		 * thread engine has no batching to test. */
		fprintf(stderr, "skipped: %s\n", err);
		goto out;
	}
	for (unsigned i = 0; i < NOPS; i++) {
		memset(&ops[i], 0, sizeof(ops[i]));
		iov[i] = (struct iovec){bufs[i], BS};
		ops[i].kind = VPIO_READV;
		ops[i].fd = fd;
		ops[i].offset = (uint64_t)i * BS;
		ops[i].len = BS;
		ops[i].iov = &iov[i];
		ops[i].iovcnt = 1;
		ops[i].done = op_done;
	}
	/* Before any kick: submitted at once. */
	vpio_submit(eng, &ops[0]);
	run_until(base, 1, 5000);
	ck_assert_uint_eq(done_calls, 1);
	ck_assert_int_eq(last_res, 0);
	/* The host kicks (nothing queued yet), so it will kick again. */
	vpio_kick(eng);
	for (unsigned i = 1; i < NOPS; i++)
		vpio_submit(eng, &ops[i]);
	/* Held back: the kernel has not seen them, so nothing completes. */
	run_until(base, 2, 100);
	ck_assert_uint_eq(done_calls, 1);
	vpio_kick(eng);
	run_until(base, NOPS, 5000);
	ck_assert_uint_eq(done_calls, NOPS);
	ck_assert_int_eq(last_res, 0);
	vpio_drain(eng);
	vpio_engine_destroy(eng);
out:
	vp_plugin_set_event_base(NULL);
	event_base_free(base);
	close(fd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("vpio_kick");
	TCase *tc = tcase_create("vpio_kick");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, kick_ends_the_batch);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
