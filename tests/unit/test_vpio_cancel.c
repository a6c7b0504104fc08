/* SPDX-License-Identifier: MIT */
/*
 * vpio_cancel(): operations still queued for the workers are dropped with
 * -ECANCELED and never reach the file; operations a worker already runs
 * finish with their real result; done() runs exactly once for each.  The
 * file's reads are held at a gate so the test decides what is running.
 */
#include <check.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "vpio.h"
#include "plugin_host.h"

#define NOPS 32u
#define BS 4096u

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static unsigned reads_started;

static ssize_t gated_preadv(int fd, const struct iovec *iov, int cnt, off_t off)
{
	pthread_mutex_lock(&gate_lock);
	reads_started++;
	while (!gate_open)
		pthread_cond_wait(&gate_cond, &gate_lock);
	pthread_mutex_unlock(&gate_lock);
	return preadv(fd, iov, cnt, off);
}

static const struct vpio_sys gated_sys = {
        .preadv = gated_preadv,
        .pwritev = pwritev,
        .fdatasync = fdatasync,
        .fallocate = fallocate,
        .ftruncate = ftruncate,
};

static int results[NOPS];
static unsigned done_calls[NOPS];

static void op_done(struct vpio_op *op, int res)
{
	unsigned i = (unsigned)(uintptr_t)op->arg;

	done_calls[i]++;
	results[i] = res;
}

static unsigned started(void)
{
	unsigned n;

	pthread_mutex_lock(&gate_lock);
	n = reads_started;
	pthread_mutex_unlock(&gate_lock);
	return n;
}

START_TEST(cancel_drops_queued_ops)
{
	static uint8_t bufs[NOPS][BS];
	struct event_base *base = event_base_new();
	struct vpio_op ops[NOPS];
	struct iovec iov[NOPS];
	struct vpio_engine *eng;
	unsigned running, ok = 0, cancelled = 0, last = 0, stable = 0;
	char err[256];
	int fd = memfd_create("vpio-cancel", MFD_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, NOPS * BS), 0);
	vp_plugin_set_event_base(base);
	vpio_set_sys(&gated_sys);
	ck_assert_int_eq(vpio_engine_create(vp_plugin_host(), NULL, VPIO_ENGINE_THREADS, 0,
	                                    "test", &eng, err, sizeof(err)),
	                 0);
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
		ops[i].arg = (void *)(uintptr_t)i;
		vpio_submit(eng, &ops[i]);
	}
	/* Every worker takes one read and waits at the gate (bounded wait). */
	for (int t = 0; t < 500 && stable < 10; t++) {
		struct timespec ts = {0, 10 * 1000 * 1000};

		nanosleep(&ts, NULL);
		stable = started() == last && last ? stable + 1 : 0;
		last = started();
	}
	running = started();
	ck_assert_uint_gt(running, 0);
	ck_assert_uint_lt(running, NOPS);
	for (unsigned i = 0; i < NOPS; i++)
		vpio_cancel(eng, &ops[i]);
	pthread_mutex_lock(&gate_lock);
	gate_open = true;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
	vpio_drain(eng);
	for (unsigned i = 0; i < NOPS; i++) {
		ck_assert_uint_eq(done_calls[i], 1);
		if (results[i] == 0)
			ok++;
		else if (results[i] == -ECANCELED)
			cancelled++;
	}
	ck_assert_uint_eq(ok, running);
	ck_assert_uint_eq(cancelled, NOPS - running);
	/* The dropped ones never reached the file. */
	ck_assert_uint_eq(started(), running);
	vpio_engine_destroy(eng);
	vpio_set_sys(NULL);
	vp_plugin_set_event_base(NULL);
	event_base_free(base);
	close(fd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("vpio_cancel");
	TCase *tc = tcase_create("vpio_cancel");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, cancel_drops_queued_ops);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
