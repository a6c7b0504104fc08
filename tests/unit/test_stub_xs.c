/* SPDX-License-Identifier: MIT */
/*
 * The Linux stub platforms' xenstore half (proxy-stub/linux/xs_linux.c):
 * one connection carries every watch of a platform, and each watch's
 * events reach its own waiter only.  Against a real xenstored the test
 * starts and stops by PID: a wait on one watch is not ended by another
 * watch's event (which it hands over to that watch on the way), a waiter
 * on another thread gets its event, and events still queued for a
 * removed watch are dropped.
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#define XS_DAEMON_PROG "test_stub_xs"
#include "xs_daemon.h"
#include "xs_linux.h"

#define MS 1000000ull

static struct vps_xs x;
static struct vps_platform plat;

static uint64_t now_ns(void)
{
	return vps_linux_now_ns(NULL);
}

static void put(const char *path, const char *value)
{
	ck_assert_int_eq(plat.xs_write(plat.ctx, 0, path, value), 0);
}

/* Wait for w alone; true if it fired (its event is consumed). */
static bool fired(struct vps_watch *w, uint64_t timeout_ns)
{
	int r = vps_linux_poll(-1, w, timeout_ns);

	ck_assert_int_ge(r, 0);
	if (r & VPS_WAKE_WATCH) {
		vps_watch_drain(w);
		return true;
	}
	return false;
}

static void setup(void)
{
	ck_assert_int_eq(vps_xs_open(&x), 0);
	memset(&plat, 0, sizeof(plat));
	vps_xs_fill_ops(&plat);
	plat.ctx = &x;
}

static void teardown(void)
{
	vps_xs_close(&x);
}

/* Watch dir a and dir b (their node v set to "0" first) and take the
 * event each watch fires when it is set. */
static void watch_two(const char *a, const char *b, struct vps_watch **wa,
                      struct vps_watch **wb)
{
	char pa[64], pb[64];

	snprintf(pa, sizeof(pa), "%s/v", a);
	snprintf(pb, sizeof(pb), "%s/v", b);
	put(pa, "0");
	put(pb, "0");
	ck_assert_int_eq(plat.xs_watch(plat.ctx, a, wa), 0);
	ck_assert_int_eq(plat.xs_watch(plat.ctx, b, wb), 0);
	ck_assert(fired(*wa, 2000 * MS));
	ck_assert(fired(*wb, 2000 * MS));
}

START_TEST(each_watch_gets_its_own_events)
{
	struct vps_watch *wa, *wb;
	uint64_t t0;

	/* Each watch fires once when it is set, then not again. */
	watch_two("/test/a", "/test/b", &wa, &wb);
	ck_assert(!fired(wa, 20 * MS));
	ck_assert(!fired(wb, 20 * MS));

	/* b changes: a wait on a runs to its timeout, not woken by b's
	 * event, and hands that event to b on the way. */
	put("/test/b/v", "1");
	t0 = now_ns();
	ck_assert(!fired(wa, 200 * MS));
	ck_assert_uint_ge(now_ns() - t0, 190 * MS);
	t0 = now_ns();
	ck_assert(fired(wb, 2000 * MS));
	ck_assert_uint_lt(now_ns() - t0, 100 * MS);
	ck_assert(!fired(wb, 20 * MS));

	/* a changes: its waiter returns at once. */
	put("/test/a/v", "1");
	ck_assert(fired(wa, 2000 * MS));
	ck_assert(!fired(wb, 20 * MS));
	plat.xs_unwatch(plat.ctx, wa);
	plat.xs_unwatch(plat.ctx, wb);
}
END_TEST

struct waiter {
	struct vps_watch *w;
	bool got;
	uint64_t waited_ns;
};

static void *wait_thread(void *arg)
{
	struct waiter *wt = arg;
	uint64_t t0 = now_ns();

	wt->got = fired(wt->w, 5000 * MS);
	wt->waited_ns = now_ns() - t0;
	return NULL;
}

/* Two device threads on one platform: the main thread reads the queue
 * for its own watch while the other thread waits for its event. */
START_TEST(a_waiter_on_another_thread_gets_its_event)
{
	struct vps_watch *wa, *wb;
	struct waiter wt = {0};
	pthread_t th;

	watch_two("/test/c", "/test/d", &wa, &wb);
	wt.w = wb;
	ck_assert_int_eq(pthread_create(&th, NULL, wait_thread, &wt), 0);
	usleep(50 * 1000);
	/* Both change; this thread waits on c and may take d's event from
	 * the queue first: d's waiter must still get it. */
	put("/test/d/v", "1");
	put("/test/c/v", "1");
	ck_assert(fired(wa, 2000 * MS));
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	ck_assert(wt.got);
	ck_assert_uint_lt(wt.waited_ns, 4000 * MS);
	plat.xs_unwatch(plat.ctx, wa);
	plat.xs_unwatch(plat.ctx, wb);
}
END_TEST

/* Events still queued for a watch that is removed go nowhere. */
START_TEST(removed_watch_events_are_dropped)
{
	struct vps_watch *wa, *wb;

	watch_two("/test/e", "/test/f", &wa, &wb);
	put("/test/f/v", "1");
	put("/test/f/v", "2");
	usleep(50 * 1000); /* queued, not read yet */
	plat.xs_unwatch(plat.ctx, wb);
	ck_assert(!fired(wa, 100 * MS));
	put("/test/e/v", "1");
	ck_assert(fired(wa, 2000 * MS));
	plat.xs_unwatch(plat.ctx, wa);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stub_xs");
	TCase *tc = tcase_create("stub_xs");
	SRunner *sr;
	int failed, st;

	st = xs_daemon_start_or_skip();
	if (st)
		return st;
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, each_watch_gets_its_own_events);
	tcase_add_test(tc, a_waiter_on_another_thread_gets_its_event);
	tcase_add_test(tc, removed_watch_events_are_dropped);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	stop_xenstored();
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
