/* SPDX-License-Identifier: MIT */
/*
 * The log rate limiter (core/log.c) that docs/PROTOCOL.md promises for
 * messages a guest can provoke: at most 10 lines per device per second,
 * then one "N similar messages suppressed" line when the window ends.
 * Time is the test's own clock (vp_log_set_clock); stderr goes to a file
 * the test reads back.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define SEC 1000000000ull

static uint64_t fake_now;
static FILE *out; /* what stderr became */
static long read_pos;

static uint64_t fake_clock(void)
{
	return fake_now;
}

static void setup(void)
{
	fflush(stderr);
	out = tmpfile();
	ck_assert_ptr_nonnull(out);
	ck_assert_int_ge(dup2(fileno(out), STDERR_FILENO), 0);
	read_pos = 0;
	fake_now = 5 * SEC;
	vp_log_set_clock(fake_clock);
	vp_log_set_level(VPROXY_LOG_INFO);
}

static void teardown(void)
{
	vp_log_set_clock(NULL);
	fclose(out);
}

/* Lines written since the last call; the last one into last (if any). */
static unsigned new_lines(char *last, size_t lastlen)
{
	char line[1200];
	unsigned n = 0;

	fflush(stderr);
	ck_assert_int_eq(fseek(out, read_pos, SEEK_SET), 0);
	while (fgets(line, sizeof(line), out)) {
		n++;
		if (last)
			snprintf(last, lastlen, "%s", line);
	}
	read_pos = ftell(out);
	return n;
}

START_TEST(ten_lines_a_second_then_a_summary)
{
	struct vp_ratelimit rl = {0};
	char last[1200];

	for (unsigned i = 0; i < 25; i++)
		vp_log_dev(&rl, VPROXY_LOG_WARN, 5, 2, "bad thing %u", i);
	ck_assert_uint_eq(new_lines(last, sizeof(last)), 10);
	ck_assert_msg(strstr(last, ": warn: dom 5 dev 2: bad thing 9\n"), "%s", last);
	ck_assert_uint_eq(rl.suppressed, 15);
	/* Still inside the window (0.999 s later): dropped. */
	fake_now += SEC - 1;
	vp_log_dev(&rl, VPROXY_LOG_WARN, 5, 2, "bad thing late");
	ck_assert_uint_eq(new_lines(NULL, 0), 0);
	/* The window ends: the count of what was dropped, then the line. */
	fake_now += 1;
	vp_log_dev(&rl, VPROXY_LOG_WARN, 5, 2, "bad thing again");
	ck_assert_uint_eq(new_lines(last, sizeof(last)), 2);
	ck_assert_msg(strstr(last, "dom 5 dev 2: bad thing again\n"), "%s", last);
	fseek(out, 0, SEEK_SET);
	{
		char buf[4096];
		size_t n = fread(buf, 1, sizeof(buf) - 1, out);

		buf[n] = '\0';
		ck_assert_msg(
		        strstr(buf, "dom 5 dev 2: 16 similar messages suppressed\n"),
		        "%s", buf);
	}
	/* A quiet window ends without a summary: nothing was dropped. */
	fake_now += 3 * SEC;
	vp_log_dev(&rl, VPROXY_LOG_WARN, 5, 2, "calm");
	ck_assert_uint_eq(new_lines(last, sizeof(last)), 1);
	ck_assert_msg(strstr(last, "dom 5 dev 2: calm\n"), "%s", last);
}
END_TEST

START_TEST(per_device_and_unlimited)
{
	struct vp_ratelimit a = {0}, b = {0};

	for (unsigned i = 0; i < 30; i++)
		vp_log_dev(&a, VPROXY_LOG_WARN, 5, 0, "noisy %u", i);
	ck_assert_uint_eq(new_lines(NULL, 0), 10);
	/* Another device's limiter is its own. */
	for (unsigned i = 0; i < 10; i++)
		vp_log_dev(&b, VPROXY_LOG_WARN, 6, 0, "quiet %u", i);
	ck_assert_uint_eq(new_lines(NULL, 0), 10);
	/* No limiter: never dropped. */
	for (unsigned i = 0; i < 30; i++)
		vp_log_dev(NULL, VPROXY_LOG_ERROR, 7, 1, "server's own %u", i);
	ck_assert_uint_eq(new_lines(NULL, 0), 30);
}
END_TEST

START_TEST(filtered_lines_do_not_count)
{
	struct vp_ratelimit rl = {0};

	/* Debug lines below the level neither print nor use up the budget. */
	for (unsigned i = 0; i < 50; i++)
		vp_log_dev(&rl, VPROXY_LOG_DEBUG, 5, 0, "chatter %u", i);
	ck_assert_uint_eq(new_lines(NULL, 0), 0);
	ck_assert_uint_eq(rl.printed, 0);
	ck_assert_uint_eq(rl.suppressed, 0);
	for (unsigned i = 0; i < 10; i++)
		vp_log_dev(&rl, VPROXY_LOG_INFO, 5, 0, "news %u", i);
	ck_assert_uint_eq(new_lines(NULL, 0), 10);
}
END_TEST

START_TEST(clock_going_far)
{
	struct vp_ratelimit rl = {0};

	/* A limiter first used at time 0 (its zeroed window) and then much
	 * later: each window is measured from its own start. */
	fake_now = 0;
	for (unsigned i = 0; i < 12; i++)
		vp_log_dev(&rl, VPROXY_LOG_WARN, 1, 0, "early %u", i);
	ck_assert_uint_eq(new_lines(NULL, 0), 10);
	fake_now = 1000 * SEC;
	for (unsigned i = 0; i < 12; i++)
		vp_log_dev(&rl, VPROXY_LOG_WARN, 1, 0, "later %u", i);
	/* summary + 10 */
	ck_assert_uint_eq(new_lines(NULL, 0), 11);
	ck_assert_uint_eq(rl.window_start_ns, 1000 * SEC);
}
END_TEST

static Suite *log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("ratelimit");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, ten_lines_a_second_then_a_summary);
	tcase_add_test(tc, per_device_and_unlimited);
	tcase_add_test(tc, filtered_lines_do_not_count);
	tcase_add_test(tc, clock_going_far);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(log_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
