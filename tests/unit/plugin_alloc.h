/* SPDX-License-Identifier: MIT */
/*
 * The allocation failure walk for a storage plugin compiled into its test
 * (test_mem_alloc.c, test_raw_alloc.c, test_sparse_alloc.c include the
 * plugin's source, so alloc_fail.h's wrappers reach its allocations, which
 * a dlopen'ed plugin would keep from them).  For N = 1, 2, ... until a run
 * no longer reaches the N'th allocation: open a disk, write two places at
 * once, read one back, flush, discard, write zeroes and read them, close.
 * Each run: open fails with a negative errno and a message, or every
 * request completes exactly once, with 0 or a negative errno, and at most
 * one fails (only the request that met the failure); what was written and
 * read back intact matches; the disk closes; LeakSanitizer finds no leak.
 *
 * The including file defines PLUGIN_ALLOC_NAME and
 *   static struct vproxy_params *alloc_params(unsigned run);
 *   static void alloc_after_close(unsigned run);   (checks, disarmed)
 * and calls plugin_alloc_walk(table) from a test.
 */
#ifndef VP_TEST_PLUGIN_ALLOC_H
#define VP_TEST_PLUGIN_ALLOC_H

#include <check.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc_fail.h"
#include "plugin_host.h"

#define PA_MAX_RUNS 5000u
#define PA_MiB (1024u * 1024u)

static struct vproxy_params *alloc_params(unsigned run);
static void alloc_after_close(unsigned run);

struct pa_req {
	struct vp_req_owner owner; /* first, as plugin_host.h requires */
	struct vproxy_req req;
	struct iovec iov;
	int calls;
	int status;
};

static struct event_base *pa_base;
static char pa_problem[512];
static uint8_t pa_buf[4][8192];

static void pa_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void pa_note(const char *fmt, ...)
{
	va_list ap;

	if (pa_problem[0])
		return;
	va_start(ap, fmt);
	vsnprintf(pa_problem, sizeof(pa_problem), fmt, ap);
	va_end(ap);
}

static void pa_complete(struct vproxy_req *req, int status)
{
	struct pa_req *r = req->host_priv;

	r->calls++;
	r->status = status;
}

static void pa_submit(const struct vproxy_plugin *p, void *disk, struct pa_req *r,
                      uint32_t op, uint64_t offset, uint64_t len, void *buf)
{
	int rc;

	memset(r, 0, sizeof(*r));
	r->owner.complete = pa_complete;
	r->req.op = op;
	r->req.offset = offset;
	r->req.len = len;
	r->req.host_priv = r;
	if (buf) {
		r->iov.iov_base = buf;
		r->iov.iov_len = (size_t)len;
		r->req.iov = &r->iov;
		r->req.iovcnt = 1;
	}
	rc = p->submit(disk, &r->req);
	if (rc) {
		/* Refused at once: the host fails the request with rc. */
		if (rc > 0)
			pa_note("submit returned %d, not a negative errno", rc);
		r->calls++;
		r->status = rc;
	}
}

/* Run the loop until the n requests completed (10 s at most); no Check
 * assertion in here, since allocations may be armed. */
static void pa_wait(struct pa_req *rs, unsigned n)
{
	time_t deadline = time(NULL) + 10;

	for (;;) {
		struct timeval tv = {0, 2000};
		unsigned done = 0;

		for (unsigned i = 0; i < n; i++)
			done += rs[i].calls != 0;
		if (done == n)
			break;
		if (time(NULL) >= deadline) {
			pa_note("requests did not complete");
			return;
		}
		event_base_loopexit(pa_base, &tv);
		event_base_loop(pa_base, EVLOOP_ONCE);
	}
	for (unsigned i = 0; i < n; i++) {
		if (rs[i].calls != 1)
			pa_note("request completed %d times", rs[i].calls);
		if (rs[i].status > 0)
			pa_note("request status %d, not 0 or a negative errno",
			        rs[i].status);
	}
}

static void pa_pattern(uint8_t *b, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)(i * 13 + seed);
}

/* One life of a disk, failing allocation n (0: none).  Returns how many
 * requests failed, or -1 if open did. */
static int pa_life(const struct vproxy_plugin *p, unsigned n)
{
	struct vproxy_params *params = alloc_params(n);
	struct vproxy_disk_info info;
	struct pa_req r[8];
	char err[512] = "";
	void *disk = NULL;
	int rc, failed = 0;

	ck_assert_ptr_nonnull(params);
	pa_problem[0] = '\0';
	pa_pattern(pa_buf[0], 8192, 1);
	pa_pattern(pa_buf[1], 4096, 2);
	memset(pa_buf[2], 0, sizeof(pa_buf[2]));
	memset(pa_buf[3], 0xff, sizeof(pa_buf[3]));
	alloc_run_start(n);

	alloc_arm(true);
	rc = vp_plugin_open(p, 1, 0, "test", params, 0, &info, &disk, err, sizeof(err));
	if (rc) {
		alloc_arm(false);
		if (rc > 0 || !err[0])
			pa_note("open failed with %d and message \"%s\"", rc, err);
		failed = -1;
		goto out;
	}
	/* Two writes in flight at once, one past the first megabyte. */
	pa_submit(p, disk, &r[0], VPROXY_REQ_WRITE, 0, 8192, pa_buf[0]);
	pa_submit(p, disk, &r[1], VPROXY_REQ_WRITE, PA_MiB + 4096, 4096, pa_buf[1]);
	pa_wait(r, 2);
	pa_submit(p, disk, &r[2], VPROXY_REQ_READ, 0, 8192, pa_buf[2]);
	pa_wait(&r[2], 1);
	pa_submit(p, disk, &r[3], VPROXY_REQ_FLUSH, 0, 0, NULL);
	pa_wait(&r[3], 1);
	if (info.flags & VPROXY_DISK_DISCARD) {
		pa_submit(p, disk, &r[4], VPROXY_REQ_DISCARD, PA_MiB, 65536, NULL);
		pa_wait(&r[4], 1);
	}
	if (info.flags & VPROXY_DISK_WRITE_ZEROES) {
		pa_submit(p, disk, &r[5], VPROXY_REQ_WRITE_ZEROES, 0, 4096, NULL);
		pa_wait(&r[5], 1);
		pa_submit(p, disk, &r[6], VPROXY_REQ_READ, 0, 4096, pa_buf[3]);
		pa_wait(&r[6], 1);
	}
	vp_plugin_close(p, disk);
	alloc_arm(false);

	for (unsigned i = 0; i < 7; i++) {
		bool issued = i < 4 || (i == 4 && (info.flags & VPROXY_DISK_DISCARD)) ||
		              (i > 4 && (info.flags & VPROXY_DISK_WRITE_ZEROES));

		if (issued && r[i].status)
			failed++;
	}
	if (r[0].status == 0 && r[2].status == 0 && memcmp(pa_buf[0], pa_buf[2], 8192))
		pa_note("the read did not return what was written");
	if ((info.flags & VPROXY_DISK_WRITE_ZEROES) && r[5].status == 0 &&
	    r[6].status == 0) {
		for (unsigned i = 0; i < 4096; i++)
			if (pa_buf[3][i]) {
				pa_note("zeroes did not read back as zeroes");
				break;
			}
	}
	if (failed > 1)
		pa_note("%d requests failed for one failed allocation", failed);
out:
	vp_params_free(params);
	alloc_after_close(n);
	if (alloc_leaked())
		pa_note("LeakSanitizer found a leak (report above)");
	if (getenv("VP_ALLOC_FAIL_TRACE"))
		fprintf(stderr, "run %u: %s%s\n", n,
		        failed < 0 ? "open failed: " : failed ? "a request failed" : "clean",
		        failed < 0 ? err : "");
	ck_assert_msg(!pa_problem[0], "%s, allocation %u failed: %s", PLUGIN_ALLOC_NAME, n,
	              pa_problem);
	return failed;
}

static void plugin_alloc_setup(void)
{
	pa_base = event_base_new();
	ck_assert_ptr_nonnull(pa_base);
	vp_plugin_set_event_base(pa_base);
}

static void plugin_alloc_teardown(void)
{
	vp_plugin_set_event_base(NULL);
	event_base_free(pa_base);
}

/* The walk: a healthy life first, then every allocation failed in turn. */
static void plugin_alloc_walk(const struct vproxy_plugin *p, const char *what)
{
	unsigned n, opens = 0, reqs = 0;

	ck_assert_int_eq(pa_life(p, 0), 0);
	for (n = 1; n < PA_MAX_RUNS; n++) {
		int failed = pa_life(p, n);

		if (!alloc_failed)
			break;
		opens += failed < 0;
		reqs += failed > 0;
	}
	ck_assert_uint_lt(n, PA_MAX_RUNS);
	ck_assert_uint_gt(n, 1);
	fprintf(stderr,
	        "%s: %u allocations failed in turn: %u failed the open, %u a "
	        "request, %u were absorbed\n",
	        what, n - 1, opens, reqs, n - 1 - opens - reqs);
}

#endif
