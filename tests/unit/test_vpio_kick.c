/* SPDX-License-Identifier: MIT */
/*
 * vpio_kick(), the end of a batch: until a host has called it once, every
 * io_uring submission goes to the kernel at once (a host that never kicks
 * loses nothing); from then on, what vpio_submit() queues reaches the
 * kernel at the next kick, or VPIO_SUBMIT_CHUNK requests at a time when
 * a batch is longer.
 *
 * vpio_poll() and vpio_poll_end(), completion polling: vpio_poll() runs
 * an io_uring engine's completions without the loop (a look at its
 * completion ring); the eventfd still signals, so nothing is lost before,
 * during or after a spell, and nothing runs twice.
 */
#include <check.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "plugin_host.h"
#include "vpio.h"
#include "vpio_loop_util.h"

#define NOPS 8u
#define BS 4096u


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

/* Between kicks a long batch still reaches the kernel VPIO_SUBMIT_CHUNK
 * requests at a time; only the rest waits for the kick. */
START_TEST(long_batch_goes_in_chunks)
{
	enum { N = 2 * VPIO_SUBMIT_CHUNK + 3 };
	static uint8_t bufs[N][BS];
	struct event_base *base = event_base_new();
	struct vpio_op ops[N];
	struct iovec iov[N];
	struct vpio_engine *eng;
	char err[256];
	int fd = memfd_create("vpio-chunk", MFD_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, N * BS), 0);
	vp_plugin_set_event_base(base);
	if (vpio_engine_create(vp_plugin_host(), NULL, VPIO_ENGINE_IO_URING, 0, "test",
	                       &eng, err, sizeof(err)) < 0) {
		fprintf(stderr, "skipped: %s\n", err);
		goto out;
	}
	vpio_kick(eng); /* a host that ends its batches */
	for (unsigned i = 0; i < N; i++) {
		memset(&ops[i], 0, sizeof(ops[i]));
		iov[i] = (struct iovec){bufs[i], BS};
		ops[i] = (struct vpio_op){.kind = VPIO_READV, .fd = fd,
		                          .offset = (uint64_t)i * BS, .len = BS,
		                          .iov = &iov[i], .iovcnt = 1, .done = op_done};
		vpio_submit(eng, &ops[i]);
	}
	/* Two chunks went in, the last three wait for the kick. */
	ck_assert_uint_eq(vpio_engine_unsubmitted(eng), N - 2 * VPIO_SUBMIT_CHUNK);
	vpio_kick(eng);
	ck_assert_uint_eq(vpio_engine_unsubmitted(eng), 0);
	run_until(base, N, 5000);
	ck_assert_uint_eq(done_calls, N);
	ck_assert_int_eq(last_res, 0);
	vpio_drain(eng);
	vpio_engine_destroy(eng);
out:
	vp_plugin_set_event_base(NULL);
	event_base_free(base);
	close(fd);
}
END_TEST

static void read_op(struct vpio_op *op, struct iovec *iov, void *buf, int fd, unsigned i)
{
	memset(op, 0, sizeof(*op));
	*iov = (struct iovec){buf, BS};
	op->kind = VPIO_READV;
	op->fd = fd;
	op->offset = (uint64_t)i * BS;
	op->len = BS;
	op->iov = iov;
	op->iovcnt = 1;
	op->done = op_done;
}

START_TEST(poll_runs_completions_without_the_loop)
{
	static uint8_t bufs[4][BS];
	struct event_base *base = event_base_new();
	struct vpio_op ops[4];
	struct iovec iov[4];
	struct vpio_engine *eng;
	char err[256];
	int fd = memfd_create("vpio-poll", MFD_CLOEXEC);
	uint64_t end;
	int got = 0;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 4 * BS), 0);
	vp_plugin_set_event_base(base);
	done_calls = 0;
	if (vpio_engine_create(vp_plugin_host(), NULL, VPIO_ENGINE_IO_URING, 0, "test",
	                       &eng, err, sizeof(err)) < 0) {
		fprintf(stderr, "skipped: %s\n", err);
		goto out;
	}
	for (unsigned i = 0; i < 4; i++)
		read_op(&ops[i], &iov[i], bufs[i], fd, i);
	/* Nothing in flight: nothing to run. */
	ck_assert_int_eq(vpio_poll(eng), 0);
	vpio_kick(eng);
	vpio_submit(eng, &ops[0]);
	vpio_kick(eng);
	/* The loop's fd watch never runs here: polling alone reaps it. */
	end = now_ms() + 5000;
	while (!got && now_ms() < end)
		got = vpio_poll(eng);
	ck_assert_int_eq(got, 1);
	ck_assert_uint_eq(done_calls, 1);
	ck_assert_int_eq(last_res, 0);
	ck_assert_int_eq(vpio_poll(eng), 0);
	/* The eventfd it signalled on the way finds nothing left to run. */
	run_until(base, 2, 50);
	ck_assert_uint_eq(done_calls, 1);

	/* Completed while polled but not polled again: after
	 * vpio_poll_end() the eventfd still brings it. */
	vpio_submit(eng, &ops[1]);
	vpio_kick(eng);
	vpio_poll_end(eng);
	run_until(base, 2, 5000);
	ck_assert_uint_eq(done_calls, 2);
	/* After the spell the eventfd wakes the loop again. */
	vpio_submit(eng, &ops[2]);
	vpio_kick(eng);
	run_until(base, 3, 5000);
	ck_assert_uint_eq(done_calls, 3);
	/* A second spell, ended by vpio_drain() on a close path. */
	ck_assert_int_eq(vpio_poll(eng), 0);
	vpio_submit(eng, &ops[3]);
	vpio_kick(eng);
	vpio_drain(eng);
	ck_assert_uint_eq(done_calls, 4);
	ck_assert_int_eq(last_res, 0);
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
	tcase_add_test(tc, long_batch_goes_in_chunks);
	tcase_add_test(tc, poll_runs_completions_without_the_loop);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
