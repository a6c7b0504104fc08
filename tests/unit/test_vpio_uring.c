/* SPDX-License-Identifier: MIT */
/*
 * The io_uring engine's feature probing and its fallbacks: the setup
 * flags it asks for (COOP_TASKRUN, SUBMIT_ALL) are taken where the kernel
 * has them and dropped one by one where it refuses them, and a registered
 * file (IOSQE_FIXED_FILE) is used where registration works; in every
 * case reads and writes, on the registered file and on another one, give
 * the same bytes.  engine = sqpoll gets a submission thread or a clear
 * error.  vpio_set_uring_refused() plays the older kernel.
 */
#include <check.h>
#include <event2/event.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
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

#define BS 4096u

/* Is the running kernel at least want_major.want_minor? */
static bool kernel_at_least(unsigned want_major, unsigned want_minor)
{
	struct utsname u;
	unsigned major = 0, minor = 0;

	if (uname(&u) < 0 || sscanf(u.release, "%u.%u", &major, &minor) != 2)
		return false;
	return major > want_major || (major == want_major && minor >= want_minor);
}


/* One operation through eng, run to completion; its result. */
static int io(struct event_base *base, struct vpio_engine *eng, enum vpio_kind kind,
              int fd, uint64_t off, void *buf)
{
	struct iovec iov = {buf, BS};
	struct vpio_op op = {.kind = kind,
	                     .fd = fd,
	                     .offset = off,
	                     .len = BS,
	                     .iov = &iov,
	                     .iovcnt = 1,
	                     .done = op_done};
	unsigned want = done_calls + 1;

	vpio_submit(eng, &op);
	vpio_kick(eng);
	run_until(base, want, 5000);
	ck_assert_uint_eq(done_calls, want);
	return last_res;
}

/* Write a pattern to both files through eng and read it back. */
static void round_trip(struct event_base *base, struct vpio_engine *eng, int fd_a,
                       int fd_b)
{
	static uint8_t out[BS], in[BS];
	int fds[2] = {fd_a, fd_b};

	for (unsigned k = 0; k < 2; k++) {
		for (unsigned i = 0; i < BS; i++)
			out[i] = (uint8_t)(i * 13 + k + 1);
		memset(in, 0, sizeof(in));
		ck_assert_int_eq(io(base, eng, VPIO_WRITEV, fds[k], BS, out), 0);
		ck_assert_int_eq(io(base, eng, VPIO_READV, fds[k], BS, in), 0);
		ck_assert_int_eq(memcmp(in, out, BS), 0);
		/* The bytes are in the file itself, not only in the engine. */
		ck_assert_int_eq(pread(fds[k], in, BS, BS), (ssize_t)BS);
		ck_assert_int_eq(memcmp(in, out, BS), 0);
	}
}

/* What every test runs on: the plugin host's event base and two files
 * of four blocks. */
struct rig {
	struct event_base *base;
	int fd_a, fd_b;
};

static void rig_open(struct rig *b)
{
	b->base = event_base_new();
	ck_assert_ptr_nonnull(b->base);
	b->fd_a = memfd_create("vpio-uring-a", MFD_CLOEXEC);
	b->fd_b = memfd_create("vpio-uring-b", MFD_CLOEXEC);
	ck_assert_int_ge(b->fd_a, 0);
	ck_assert_int_ge(b->fd_b, 0);
	ck_assert_int_eq(ftruncate(b->fd_a, 4 * BS), 0);
	ck_assert_int_eq(ftruncate(b->fd_b, 4 * BS), 0);
	vp_plugin_set_event_base(b->base);
}

static void rig_close(struct rig *b)
{
	vp_plugin_set_event_base(NULL);
	event_base_free(b->base);
	close(b->fd_a);
	close(b->fd_b);
}

/* Create an engine with what refused plays refused, check its setup
 * flags against want (flags the kernel must have taken) and not (flags
 * it must not have), register a file, and do I/O. */
static void check_engine(unsigned refused, unsigned want, unsigned not,
                         bool want_registered)
{
	struct rig b;
	struct vpio_engine *eng;
	char err[256];

	rig_open(&b);
	vpio_set_uring_refused(refused);
	if (vpio_engine_create(vp_plugin_host(), NULL, VPIO_ENGINE_IO_URING, 0, "test",
	                       &eng, err, sizeof(err)) < 0) {
		/* Only a kernel without io_uring gets here, whatever the
		 * flags: the fallbacks end at none. */
		fprintf(stderr, "skipped: %s\n", err);
		goto out;
	}
	ck_assert_str_eq(vpio_engine_name(eng), "io_uring");
	ck_assert_uint_eq(vpio_engine_setup_flags(eng) & want, want);
	ck_assert_uint_eq(vpio_engine_setup_flags(eng) & not, 0);
	ck_assert(vpio_register_fd(eng, b.fd_a) == want_registered);
	/* One file per engine. */
	ck_assert(!vpio_register_fd(eng, b.fd_b));
	round_trip(b.base, eng, b.fd_a, b.fd_b);
	vpio_drain(eng);
	vpio_engine_destroy(eng);
out:
	vpio_set_uring_refused(0);
	rig_close(&b);
}

START_TEST(best_flags_where_the_kernel_has_them)
{
	unsigned want = 0;

	if (kernel_at_least(5, 18))
		want |= IORING_SETUP_SUBMIT_ALL;
	if (kernel_at_least(5, 19))
		want |= IORING_SETUP_COOP_TASKRUN;
	check_engine(0, want, 0, true);
}
END_TEST

START_TEST(without_coop_taskrun)
{
	check_engine(IORING_SETUP_COOP_TASKRUN,
	             kernel_at_least(5, 18) ? IORING_SETUP_SUBMIT_ALL : 0,
	             IORING_SETUP_COOP_TASKRUN, true);
}
END_TEST

START_TEST(without_any_flag)
{
	check_engine(IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL, 0,
	             IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL, true);
}
END_TEST

START_TEST(without_registered_files)
{
	check_engine(VPIO_REFUSE_FILES, 0, 0, false);
}
END_TEST

/* engine = sqpoll: a submission thread where the kernel gives one (the
 * same bytes), and a clear refusal where it does not. */
START_TEST(sqpoll_engine)
{
	struct rig b;
	struct vpio_engine *eng;
	char err[256];
	int r;

	rig_open(&b);
	r = vpio_engine_create(vp_plugin_host(), NULL, VPIO_ENGINE_SQPOLL, 0, "test", &eng,
	                       err, sizeof(err));
	if (r == 0) {
		ck_assert_str_eq(vpio_engine_name(eng), "sqpoll");
		ck_assert(vpio_engine_setup_flags(eng) & IORING_SETUP_SQPOLL);
		ck_assert(!(vpio_engine_setup_flags(eng) & IORING_SETUP_COOP_TASKRUN));
		ck_assert(vpio_register_fd(eng, b.fd_a));
		round_trip(b.base, eng, b.fd_a, b.fd_b);
		/* Past the thread's idle time it sleeps; a submit wakes it. */
		usleep(80 * 1000);
		round_trip(b.base, eng, b.fd_a, b.fd_b);
		vpio_drain(eng);
		vpio_engine_destroy(eng);
	} else {
		ck_assert_msg(strstr(err, "engine=sqpoll") != NULL, "%s", err);
		fprintf(stderr, "sqpoll not available here: %s\n", err);
	}
	/* Refused (an older or stricter kernel): an error, no fallback. */
	vpio_set_uring_refused(IORING_SETUP_SQPOLL);
	r = vpio_engine_create(vp_plugin_host(), NULL, VPIO_ENGINE_SQPOLL, 0, "test", &eng,
	                       err, sizeof(err));
	vpio_set_uring_refused(0);
	ck_assert_int_lt(r, 0);
	ck_assert_msg(strstr(err, "engine=sqpoll: the kernel refused") != NULL, "%s", err);
	rig_close(&b);
}
END_TEST

/* The threads engine has no ring: no flags, nothing registered, and the
 * same bytes. */
START_TEST(threads_engine_has_none)
{
	struct rig b;
	struct vpio_engine *eng;
	char err[256];

	rig_open(&b);
	ck_assert_int_eq(vpio_engine_create(vp_plugin_host(), NULL, VPIO_ENGINE_THREADS, 0,
	                                    "test", &eng, err, sizeof(err)),
	                 0);
	ck_assert_uint_eq(vpio_engine_setup_flags(eng), 0);
	ck_assert(!vpio_register_fd(eng, b.fd_a));
	round_trip(b.base, eng, b.fd_a, b.fd_b);
	vpio_drain(eng);
	vpio_engine_destroy(eng);
	rig_close(&b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("vpio_uring");
	TCase *tc = tcase_create("vpio_uring");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, best_flags_where_the_kernel_has_them);
	tcase_add_test(tc, without_coop_taskrun);
	tcase_add_test(tc, without_any_flag);
	tcase_add_test(tc, without_registered_files);
	tcase_add_test(tc, sqpoll_engine);
	tcase_add_test(tc, threads_engine_has_none);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
