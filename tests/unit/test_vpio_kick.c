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
 * during or after a spell, and nothing runs twice; a signal whose
 * completions vpio_poll() reaped is taken with them (no empty wake-up).
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

/* An io_uring engine on the plugin host's event base, and a memfd of
 * nblocks blocks to read. */
struct fixture {
	struct event_base *base;
	struct vpio_engine *eng;
	int fd;
};

/* False (and the test skipped) where io_uring is missing: the thread
 * engine has no batching or polling to test. */
static bool fixture_open(struct fixture *f, unsigned nblocks)
{
	char err[256];

	f->base = event_base_new();
	f->fd = memfd_create("vpio-kick", MFD_CLOEXEC);
	ck_assert_ptr_nonnull(f->base);
	ck_assert_int_ge(f->fd, 0);
	ck_assert_int_eq(ftruncate(f->fd, (off_t)nblocks * BS), 0);
	vp_plugin_set_event_base(f->base);
	if (vpio_engine_create(vp_plugin_host(), NULL, VPIO_ENGINE_IO_URING, 0, "test",
	                       &f->eng, err, sizeof(err)) < 0) {
		fprintf(stderr, "skipped: %s\n", err);
		f->eng = NULL;
		return false;
	}
	return true;
}

static void fixture_close(struct fixture *f)
{
	if (f->eng)
		vpio_engine_destroy(f->eng);
	vp_plugin_set_event_base(NULL);
	event_base_free(f->base);
	close(f->fd);
}

START_TEST(kick_ends_the_batch)
{
	static uint8_t bufs[NOPS][BS];
	struct vpio_op ops[NOPS];
	struct iovec iov[NOPS];
	struct fixture f;

	if (!fixture_open(&f, NOPS))
		goto out;
	for (unsigned i = 0; i < NOPS; i++)
		read_op(&ops[i], &iov[i], bufs[i], f.fd, i);
	/* Before any kick: submitted at once. */
	vpio_submit(f.eng, &ops[0]);
	run_until(f.base, 1, 5000);
	ck_assert_uint_eq(done_calls, 1);
	ck_assert_int_eq(last_res, 0);
	/* The host kicks (nothing queued yet), so it will kick again. */
	vpio_kick(f.eng);
	for (unsigned i = 1; i < NOPS; i++)
		vpio_submit(f.eng, &ops[i]);
	/* Held back: the kernel has not seen them, so nothing completes. */
	ck_assert_uint_eq(vpio_engine_unsubmitted(f.eng), NOPS - 1);
	run_until(f.base, 2, 100);
	ck_assert_uint_eq(done_calls, 1);
	vpio_kick(f.eng);
	run_until(f.base, NOPS, 5000);
	ck_assert_uint_eq(done_calls, NOPS);
	ck_assert_int_eq(last_res, 0);
	vpio_drain(f.eng);
out:
	fixture_close(&f);
}
END_TEST

/* Between kicks a long batch still reaches the kernel VPIO_SUBMIT_CHUNK
 * requests at a time; only the rest waits for the kick. */
START_TEST(long_batch_goes_in_chunks)
{
	enum { N = 2 * VPIO_SUBMIT_CHUNK + 3 };
	static uint8_t bufs[N][BS];
	struct vpio_op ops[N];
	struct iovec iov[N];
	struct fixture f;

	if (!fixture_open(&f, N))
		goto out;
	vpio_kick(f.eng); /* a host that ends its batches */
	for (unsigned i = 0; i < N; i++) {
		read_op(&ops[i], &iov[i], bufs[i], f.fd, i);
		vpio_submit(f.eng, &ops[i]);
	}
	/* Two chunks went in, the last three wait for the kick. */
	ck_assert_uint_eq(vpio_engine_unsubmitted(f.eng), N - 2 * VPIO_SUBMIT_CHUNK);
	vpio_kick(f.eng);
	ck_assert_uint_eq(vpio_engine_unsubmitted(f.eng), 0);
	run_until(f.base, N, 5000);
	ck_assert_uint_eq(done_calls, N);
	ck_assert_int_eq(last_res, 0);
	vpio_drain(f.eng);
out:
	fixture_close(&f);
}
END_TEST

START_TEST(poll_runs_completions_without_the_loop)
{
	static uint8_t bufs[4][BS];
	struct vpio_op ops[4];
	struct iovec iov[4];
	struct fixture f;
	uint64_t end;
	int got = 0;

	done_calls = 0;
	if (!fixture_open(&f, 4))
		goto out;
	for (unsigned i = 0; i < 4; i++)
		read_op(&ops[i], &iov[i], bufs[i], f.fd, i);
	/* Nothing in flight: nothing to run. */
	ck_assert_int_eq(vpio_poll(f.eng), 0);
	vpio_kick(f.eng);
	vpio_submit(f.eng, &ops[0]);
	vpio_kick(f.eng);
	/* The loop's fd watch never runs here: polling alone reaps it. */
	end = now_ms() + 5000;
	while (!got && now_ms() < end)
		got = vpio_poll(f.eng);
	ck_assert_int_eq(got, 1);
	ck_assert_uint_eq(done_calls, 1);
	ck_assert_int_eq(last_res, 0);
	ck_assert_int_eq(vpio_poll(f.eng), 0);
	/* The eventfd it signalled on the way finds nothing left to run. */
	run_until(f.base, 2, 50);
	ck_assert_uint_eq(done_calls, 1);

	/* Completed while polled but not polled again: after
	 * vpio_poll_end() the eventfd still brings it. */
	vpio_submit(f.eng, &ops[1]);
	vpio_kick(f.eng);
	vpio_poll_end(f.eng);
	run_until(f.base, 2, 5000);
	ck_assert_uint_eq(done_calls, 2);
	/* After the spell the eventfd wakes the loop again. */
	vpio_submit(f.eng, &ops[2]);
	vpio_kick(f.eng);
	run_until(f.base, 3, 5000);
	ck_assert_uint_eq(done_calls, 3);
	/* A second spell, ended by vpio_drain() on a close path. */
	ck_assert_int_eq(vpio_poll(f.eng), 0);
	vpio_submit(f.eng, &ops[3]);
	vpio_kick(f.eng);
	vpio_drain(f.eng);
	ck_assert_uint_eq(done_calls, 4);
	ck_assert_int_eq(last_res, 0);
out:
	fixture_close(&f);
}
END_TEST

/* A completion the kernel posted inside the submit (a read of cached
 * pages: memfd reads run inline where shmem takes IOCB_NOWAIT) is there at
 * the first look; vpio_poll() takes the eventfd's signal with it, so the
 * loop does not wake for nothing afterwards. */
START_TEST(poll_takes_the_signal_of_what_it_reaps)
{
	static uint8_t buf[BS];
	struct vpio_op op;
	struct iovec iov;
	struct fixture f;
	uint64_t woke;

	done_calls = 0;
	if (!fixture_open(&f, 1))
		goto out;
	read_op(&op, &iov, buf, f.fd, 0);
	vpio_kick(f.eng);
	woke = vpio_engine_wakeups(f.eng);
	vpio_submit(f.eng, &op);
	vpio_kick(f.eng);
	if (vpio_poll(f.eng) == 1) {
		ck_assert_uint_eq(done_calls, 1);
		run_until(f.base, 2, 100);
		ck_assert_uint_eq(vpio_engine_wakeups(f.eng), woke);
	} else {
		/* Went to a kernel worker: the eventfd brings it. */
		fprintf(stderr, "read not run inline by this kernel: not checked\n");
		run_until(f.base, 1, 5000);
		ck_assert_uint_eq(vpio_engine_wakeups(f.eng), woke + 1);
	}
	ck_assert_uint_eq(done_calls, 1);
	ck_assert_int_eq(last_res, 0);
	vpio_drain(f.eng);
out:
	fixture_close(&f);
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
	tcase_add_test(tc, poll_takes_the_signal_of_what_it_reaps);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
