/* SPDX-License-Identifier: MIT */
/*
 * The xenstore lifecycle (core/xsbus.c) against the real xenstored: the
 * test starts Debian's daemon on a private socket with the hypervisor shim
 * preloaded (as contrib/sim/xenstored-sim.sh does), introduces and
 * releases domains with vproxy-simctl, plays the frontend by writing its
 * nodes, and runs the bus on a loop of its own over the fuzzers' guard
 * page hypervisor (tests/fuzz/fake_hv.c).  Checked: provisioning when a
 * guest is introduced (both nodes, InitWait, or Closed + error when the
 * storage does not open), a bad frontend key (error + Closing), a close
 * and a reconnect, a real connection (Connected, and Closed once the
 * frontend closes, every mapping released), the backend node removed by
 * the toolstack, @releaseDomain, and shutdown: done once the frontends
 * closed, or at once when forced.
 *
 * xenstored is stopped by PID when the tests end, pass or fail, and dies
 * with this process if it is killed (PR_SET_PDEATHSIG).  Without the
 * daemon the test is skipped (77), unless VPROXY_REQUIRE_XENSTORED=1.
 */
#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vproxy/proto.h>
#include <xen/io/xenbus.h>
#include <xenstore.h>

#include "fake_hv.h"
#include "hv.h"
#include "log.h"
#include "loop.h"
#include "plugin_host.h"
#include "xsbus.h"

#define SIM_DIR VP_TEST_BIN_DIR "/contrib/sim"
#define BE_ROOT "/local/domain/0/backend/" VPROXY_XS_TYPE
#define RING_GFN 7u

/* fake_hv.c is compiled for test_server_alloc in this directory, where it
 * calls the real allocator past --wrap; nothing is wrapped here. */
void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);

void *__real_malloc(size_t size)
{
	return malloc(size);
}

void *__real_calloc(size_t n, size_t size)
{
	return calloc(n, size);
}

void *__real_realloc(void *p, size_t size)
{
	return realloc(p, size);
}

#define XS_DAEMON_PROG "test_xsbus"
#include "xs_daemon.h"

static void simctl(const char *args)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), SIM_DIR "/vproxy-simctl %s >/dev/null", args);
	ck_assert_msg(system(cmd) == 0, "vproxy-simctl %s failed", args);
}

/* ---- the bus under test, on its own loop ---- */

static struct vp_hv *hv;
static struct vp_loop *loop;
static struct vp_xsbus *bus;
static struct xs_handle *xs; /* the toolstack's and frontend's */
static const struct vproxy_plugin *mem;
static struct vproxy_params *good, *bad;
static struct vp_devdecl decls[2];
static unsigned dones;

static void bus_done(void *opaque)
{
	ck_assert_ptr_eq(opaque, &dones);
	dones++;
}

static void open_bus(unsigned dom)
{
	struct vp_xsbus_params p = {0};
	char err[256];

	/* Device 0 by domid on a 1 MiB RAM disk; device 1 by name, whose
	 * storage does not open (no size). */
	decls[0] = (struct vp_devdecl){.label = "good",
	                               .guest_domid = (int)dom,
	                               .devid = 0,
	                               .plugin = mem,
	                               .params = good,
	                               .queues = 1,
	                               .queue_size = 16};
	decls[1] = (struct vp_devdecl){.label = "bad",
	                               .guest = "named",
	                               .guest_domid = -1,
	                               .devid = 1,
	                               .plugin = mem,
	                               .params = bad,
	                               .queues = 1,
	                               .queue_size = 16};
	p = (struct vp_xsbus_params){.loop = loop,
	                             .hv = hv,
	                             .hypervisor = "sim",
	                             .backend_domid = -1,
	                             .gmem_cache_bytes = 2u << 20,
	                             .decls = decls,
	                             .ndecls = 2,
	                             .done = bus_done,
	                             .opaque = &dones};
	bus = vp_xsbus_open(&p, err, sizeof(err));
	ck_assert_msg(bus != NULL, "%s", err);
}

static void setup(void)
{
	char err[256];

	vp_log_set_level(VPROXY_LOG_ERROR);
	if (!hv)
		hv = fake_hv_new(64);
	fake_hv_reset(hv);
	loop = vp_loop_new(0, false);
	ck_assert_ptr_nonnull(loop);
	ck_assert_int_eq(vp_loop_set_evtchn(loop, hv), 0);
	vp_plugin_set_event_base(vp_loop_base(loop));
	mem = vp_plugin_load(VP_TEST_PLUGIN_DIR, "mem", err, sizeof(err));
	ck_assert_msg(mem != NULL, "%s", err);
	good = vp_params_new();
	bad = vp_params_new();
	ck_assert(good && bad);
	ck_assert_int_eq(vp_params_set(good, "size", "1M", 1), 0);
	xs = xs_open(0);
	ck_assert_ptr_nonnull(xs);
	dones = 0;
	bus = NULL;
}

static void teardown(void)
{
	vp_xsbus_close(bus);
	xs_close(xs);
	vp_loop_free(loop);
	vp_params_free(good);
	vp_params_free(bad);
	vp_plugin_unload_all();
}

static void fe_write(unsigned dom, unsigned devid, const char *key, const char *val)
{
	char path[128];

	snprintf(path, sizeof(path), "/local/domain/%u/device/%s/%u/%s", dom,
	         VPROXY_XS_TYPE, devid, key);
	ck_assert_msg(xs_write(xs, XBT_NULL, path, val, (unsigned)strlen(val)),
	              "write %s", path);
}

/* dir/key as a string ("" when absent). */
static const char *rd(const char *fmt, unsigned dom, unsigned devid, const char *key)
{
	static char buf[256];
	char path[160];
	unsigned len;
	char *s;

	snprintf(path, sizeof(path), fmt, dom, devid);
	if (key) {
		size_t n = strlen(path);

		snprintf(path + n, sizeof(path) - n, "/%s", key);
	}
	s = xs_read(xs, XBT_NULL, path, &len);
	snprintf(buf, sizeof(buf), "%s", s ? s : "");
	free(s);
	return buf;
}

#define BE "/local/domain/0/backend/" VPROXY_XS_TYPE "/%u/%u"
#define FE "/local/domain/%u/device/" VPROXY_XS_TYPE "/%u"

static bool exists(const char *fmt, unsigned dom, unsigned devid)
{
	char path[160];
	unsigned len;
	char *s;

	snprintf(path, sizeof(path), fmt, dom, devid);
	s = xs_read(xs, XBT_NULL, path, &len);
	free(s);
	return s != NULL;
}

/* Run the loop until be_state of (dom, devid) reads want ("" = node
 * gone), or 5 s pass. */
static bool be_state_is(unsigned dom, unsigned devid, const char *want)
{
	struct timeval tick = {0, 20000};

	for (int i = 0; i < 250; i++) {
		if (strcmp(rd(BE, dom, devid, "state"), want) == 0)
			return true;
		event_base_loopexit(vp_loop_base(loop), &tick);
		event_base_dispatch(vp_loop_base(loop));
	}
	return false;
}

#define WAIT_STATE(dom, devid, want)                                                     \
	ck_assert_msg(be_state_is(dom, devid, want),                                     \
	              "dom %u dev %u: state '%s', want '%s'", dom, devid,                \
	              rd(BE, dom, devid, "state"), want)

/* Run the loop a little (for what should not happen). */
static void settle(void)
{
	struct timeval t = {0, 200000};

	event_base_loopexit(vp_loop_base(loop), &t);
	event_base_dispatch(vp_loop_base(loop));
}

/* The frontend shares a real page in guest RAM and says Initialised. */
static void fe_connect(unsigned dom, unsigned devid)
{
	uint8_t *page = fake_hv_ram(hv) + (size_t)RING_GFN * 4096;
	struct vproxy_page_hdr *hdr = (struct vproxy_page_hdr *)(void *)page;
	char ref[16];

	memset(page, 0, 4096);
	hdr->magic = VPROXY_PAGE_MAGIC;
	hdr->version = VPROXY_PROTO_VERSION;
	SHARED_RING_INIT(vproxy_page_sring(page));
	snprintf(ref, sizeof(ref), "%u", RING_GFN);
	fe_write(dom, devid, "ring-ref", ref);
	fe_write(dom, devid, "event-channel", "9");
	fe_write(dom, devid, "addr-mode", "gfn");
	fe_write(dom, devid, "protocol-version", "1");
	fe_write(dom, devid, "state", "3");
}

START_TEST(provision_close_reconnect_release)
{
	const unsigned dom = 11;

	open_bus(dom);
	settle();
	ck_assert(!exists(BE, dom, 0));
	/* The guest is introduced: both devices provisioned. */
	simctl("create 11 named");
	WAIT_STATE(dom, 0, "2"); /* InitWait */
	ck_assert_str_eq(rd(BE, dom, 0, "frontend"), "/local/domain/11/device/vproxy/0");
	ck_assert_str_eq(rd(BE, dom, 0, "frontend-id"), "11");
	ck_assert_str_eq(rd(BE, dom, 0, "sectors"), "2048");
	ck_assert_str_eq(rd(FE, dom, 0, "backend"),
	                 "/local/domain/0/backend/vproxy/11/0");
	ck_assert_str_eq(rd(FE, dom, 0, "backend-id"), "0");
	ck_assert_str_eq(rd(FE, dom, 0, "state"), "1");
	/* Device 1 (by name) could not open its storage: Closed + why. */
	WAIT_STATE(dom, 1, "6");
	ck_assert_msg(strstr(rd(BE, dom, 1, "error"), "size"), "%s",
	              rd(BE, dom, 1, "error"));

	/* A frontend with an invalid ring-ref: error, Closing. */
	fe_write(dom, 0, "ring-ref", "0x10");
	fe_write(dom, 0, "event-channel", "9");
	fe_write(dom, 0, "state", "3");
	WAIT_STATE(dom, 0, "5");
	ck_assert_str_eq(rd(BE, dom, 0, "error"), "frontend ring-ref invalid");
	/* It closes and starts over: Closed, then InitWait, error gone. */
	fe_write(dom, 0, "state", "6");
	WAIT_STATE(dom, 0, "6");
	fe_write(dom, 0, "state", "1");
	WAIT_STATE(dom, 0, "2");
	ck_assert_str_eq(rd(BE, dom, 0, "error"), "");

	/* A real connection, then the frontend closes: Connected, Closed,
	 * the shared page unmapped and the port unbound. */
	fe_connect(dom, 0);
	WAIT_STATE(dom, 0, "4");
	ck_assert_uint_gt(fake_hv_live_mappings(hv), 0);
	fe_write(dom, 0, "state", "5");
	WAIT_STATE(dom, 0, "6");
	ck_assert_uint_eq(fake_hv_live_mappings(hv), 0);

	/* The guest goes: @releaseDomain removes every device's nodes. */
	simctl("destroy 11");
	WAIT_STATE(dom, 0, "");
	WAIT_STATE(dom, 1, "");
	ck_assert(!exists("/local/domain/0/backend/vproxy/%u", dom, 0));
	ck_assert_uint_eq(dones, 0);
	fake_hv_check_released(hv);
}
END_TEST

START_TEST(backend_node_removed)
{
	const unsigned dom = 12;

	open_bus(dom);
	simctl("create 12 guest12");
	WAIT_STATE(dom, 0, "2");
	fe_connect(dom, 0);
	WAIT_STATE(dom, 0, "4");
	/* The toolstack removes the backend node: the device goes, and its
	 * frontend node with it. */
	ck_assert(xs_rm(xs, XBT_NULL, "/local/domain/0/backend/vproxy/12/0"));
	WAIT_STATE(dom, 0, "");
	settle();
	ck_assert(!exists(FE, dom, 0));
	ck_assert_uint_eq(fake_hv_live_mappings(hv), 0);
	/* Not provisioned again while the domain lives. */
	simctl("create 13 other");
	settle();
	ck_assert(!exists(BE, dom, 0));
	simctl("destroy 13");
	simctl("destroy 12");
	fake_hv_check_released(hv);
}
END_TEST

START_TEST(shutdown_waits_for_frontends)
{
	const unsigned dom = 14;

	open_bus(dom);
	simctl("create 14 guest14");
	WAIT_STATE(dom, 0, "2");
	fe_connect(dom, 0);
	WAIT_STATE(dom, 0, "4");
	/* Closing, and nothing done until the frontend closes. */
	vp_xsbus_begin_shutdown(bus);
	WAIT_STATE(dom, 0, "5");
	settle();
	ck_assert_uint_eq(dones, 0);
	fe_write(dom, 0, "state", "6");
	for (int i = 0; i < 25 && !dones; i++)
		settle();
	ck_assert_uint_eq(dones, 1);
	ck_assert(!exists(BE, dom, 0));
	ck_assert(!exists(FE, dom, 0));
	simctl("destroy 14");
	fake_hv_check_released(hv);
}
END_TEST

START_TEST(shutdown_forced)
{
	const unsigned dom = 15;

	open_bus(dom);
	simctl("create 15 guest15");
	WAIT_STATE(dom, 0, "2");
	fe_connect(dom, 0);
	WAIT_STATE(dom, 0, "4");
	vp_xsbus_begin_shutdown(bus);
	WAIT_STATE(dom, 0, "5");
	/* The frontend never answers: the owner's grace time ran out. */
	settle();
	vp_xsbus_finish(bus);
	ck_assert_uint_eq(dones, 1);
	ck_assert(!exists(BE, dom, 0));
	ck_assert(!exists(FE, dom, 0));
	vp_xsbus_finish(bus); /* once only */
	ck_assert_uint_eq(dones, 1);
	simctl("destroy 15");
	fake_hv_check_released(hv);
}
END_TEST

static Suite *xsbus_suite(void)
{
	Suite *s = suite_create("xsbus");
	TCase *tc = tcase_create("lifecycle");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, provision_close_reconnect_release);
	tcase_add_test(tc, backend_node_removed);
	tcase_add_test(tc, shutdown_waits_for_frontends);
	tcase_add_test(tc, shutdown_forced);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed, st;

	st = xs_daemon_start_or_skip();
	if (st)
		return st;
	sr = srunner_create(xsbus_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	stop_xenstored();
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
