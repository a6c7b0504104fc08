/* SPDX-License-Identifier: MIT */
/* Unit tests of the bench's server counters (srvstat.c): parsing /proc
 * status text, summing per-thread snapshots, and counting this process's
 * own wake-ups and (where perf may count them) system calls. */
#include "srvstat.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char status_text[] = "Name:\tvproxyd\n"
                                  "State:\tS (sleeping)\n"
                                  "Tgid:\t4242\n"
                                  "VmHWM:\t  263296 kB\n"
                                  "Cpus_allowed_list:\t0-1\n"
                                  "nonvoluntary_ctxt_switches:\t77\n"
                                  "voluntary_ctxt_switches:\t123456789012\n";

START_TEST(test_status_field)
{
	uint64_t v = 0;

	ck_assert(srv_status_field(status_text, "voluntary_ctxt_switches", &v));
	ck_assert_uint_eq(v, 123456789012ull);
	/* the key only at the start of a line, and whole */
	ck_assert(srv_status_field(status_text, "nonvoluntary_ctxt_switches", &v));
	ck_assert_uint_eq(v, 77);
	ck_assert(srv_status_field(status_text, "VmHWM", &v));
	ck_assert_uint_eq(v, 263296);
	ck_assert(srv_status_field(status_text, "Tgid", &v));
	ck_assert_uint_eq(v, 4242);
	ck_assert(!srv_status_field(status_text, "ctxt_switches", &v));
	ck_assert(!srv_status_field(status_text, "Vm", &v));
	ck_assert(!srv_status_field(status_text, "Name", &v)); /* not a number */
	ck_assert(!srv_status_field(status_text, "State", &v));
	ck_assert(!srv_status_field("", "voluntary_ctxt_switches", &v));
	ck_assert(!srv_status_field("voluntary_ctxt_switches:\t12x\n",
	                            "voluntary_ctxt_switches", &v));
	/* the last line without its newline */
	ck_assert(srv_status_field("a:\t1\nvoluntary_ctxt_switches: 9",
	                           "voluntary_ctxt_switches", &v));
	ck_assert_uint_eq(v, 9);
}
END_TEST

START_TEST(test_snap_delta)
{
	struct srv_tid_count av[] = {{10, 100}, {11, 50}, {12, 7}, {13, 40}};
	/* 10 did 5; 11 did nothing; 12 ended (lost); 14 and 15 were born
	 * (all theirs); 13's count went down (a reused tid): 0 */
	struct srv_tid_count bv[] = {{11, 50}, {14, 3}, {10, 105}, {13, 2}, {15, 1}};
	struct srv_snap a = {av, 4}, b = {bv, 5}, none = {NULL, 0};

	ck_assert_uint_eq(srv_snap_delta(&a, &b), 5 + 0 + 3 + 0 + 1);
	ck_assert_uint_eq(srv_snap_delta(&a, &a), 0);
	ck_assert_uint_eq(srv_snap_delta(&none, &b), 50 + 3 + 105 + 2 + 1);
	ck_assert_uint_eq(srv_snap_delta(&b, &none), 0);
}
END_TEST

START_TEST(test_parse_id)
{
	ck_assert_int_eq(srv_parse_id("443\n"), 443);
	ck_assert_int_eq(srv_parse_id("0"), 0);
	ck_assert_int_eq(srv_parse_id(""), -EINVAL);
	ck_assert_int_eq(srv_parse_id("-1\n"), -EINVAL);
	ck_assert_int_eq(srv_parse_id("12 13\n"), -EINVAL);
	ck_assert_int_eq(srv_parse_id("99999999999999999999\n"), -EINVAL);
}
END_TEST

/* Sleeps 20 times, says so on done[1], then stays alive until go[0]. */
static int done[2], go[2];

static void *sleeper(void *arg)
{
	char c = 0;

	(void)arg;
	for (int i = 0; i < 20; i++)
		usleep(1000);
	ck_assert_int_eq(write(done[1], &c, 1), 1);
	ck_assert_int_eq(read(go[0], &c, 1), 1);
	return NULL;
}

START_TEST(test_own_wakeups)
{
	struct srv_snap a, b;
	pthread_t th;
	char c = 0;

	ck_assert_int_eq(pipe(done), 0);
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(srv_snap_take(&a, getpid()), 0);
	ck_assert_uint_ge(a.n, 1);
	/* a thread born after the first snapshot that sleeps 20 times and
	 * is still there at the second: all its sleeps count */
	ck_assert_int_eq(pthread_create(&th, NULL, sleeper, NULL), 0);
	ck_assert_int_eq(read(done[0], &c, 1), 1);
	ck_assert_int_eq(srv_snap_take(&b, getpid()), 0);
	ck_assert_uint_ge(b.n, 2);
	ck_assert_uint_ge(srv_snap_delta(&a, &b), 20);
	ck_assert_int_eq(write(go[1], &c, 1), 1);
	pthread_join(th, NULL);
	srv_snap_free(&a);
	srv_snap_free(&b);
	ck_assert_ptr_null(b.v);
	ck_assert_int_lt(srv_snap_take(&a, 0x7ffffff0), 0);
	ck_assert_uint_eq(a.n, 0);
}
END_TEST

START_TEST(test_own_syscalls)
{
	struct srv_sys s;
	char why[256] = "";
	uint64_t before, after;
	int r = srv_sys_open(&s, getpid(), why, sizeof(why));

	if (r < 0) {
		/* Not available here: it must say why and hold nothing. */
		fprintf(stderr, "system calls not countable here: %s\n", why);
		ck_assert(why[0] != '\0');
		ck_assert_uint_eq(s.n, 0);
		ck_assert_int_lt(srv_sys_read(&s, &before), 0);
		return;
	}
	ck_assert_uint_ge(s.n, 1);
	ck_assert_int_eq(srv_sys_read(&s, &before), 0);
	for (int i = 0; i < 1000; i++)
		syscall(SYS_getppid);
	ck_assert_int_eq(srv_sys_read(&s, &after), 0);
	/* the 1000 calls, the read() that ended the first reading; a few
	 * more from a sanitizer at most */
	ck_assert_uint_ge(after - before, 1000);
	ck_assert_uint_lt(after - before, 1100);
	srv_sys_close(&s);
	ck_assert_uint_eq(s.n, 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("bench_srvstat");
	TCase *tc = tcase_create("srvstat");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_status_field);
	tcase_add_test(tc, test_snap_delta);
	tcase_add_test(tc, test_parse_id);
	tcase_add_test(tc, test_own_wakeups);
	tcase_add_test(tc, test_own_syscalls);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
