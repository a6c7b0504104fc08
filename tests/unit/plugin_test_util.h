/* SPDX-License-Identifier: MIT */
/* Fixture shared by the raw and sparse plugin tests: the plugin loaded
 * from the build tree through the plugin host, completions in a libevent
 * loop, and a scratch directory per test.  Each test file defines its own
 * start() (how a request's buffer is split into iovecs). */
#ifndef VP_PLUGIN_TEST_UTIL_H
#define VP_PLUGIN_TEST_UTIL_H

#include <check.h>
#include <event2/event.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/mount.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "plugin_host.h"

struct treq {
	struct vp_req_owner owner; /* first, as plugin_host.h requires */
	struct vproxy_req req;
	struct iovec iov[4];
	int calls;
	int status;
};

static const struct vproxy_plugin *plugin;
static struct event_base *base;
static char err[512];
static char dir[64];
static char path[128];

static void treq_complete(struct vproxy_req *req, int status)
{
	struct treq *t = req->host_priv;

	t->calls++;
	t->status = status;
}

/* Load plugin name; path becomes <a new /tmp/vproxy-test-<name>.XXXXXX>/file. */
static __attribute__((unused)) void plugin_test_setup(const char *name, const char *file)
{
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	vp_plugin_set_event_base(base);
	plugin = vp_plugin_load(VP_TEST_PLUGIN_DIR, name, err, sizeof(err));
	ck_assert_msg(plugin != NULL, "%s", err);
	snprintf(dir, sizeof(dir), "/tmp/vproxy-test-%s.XXXXXX", name);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/%s", dir, file);
}

static __attribute__((unused)) void teardown(void)
{
	char cmd[128];

	vp_plugin_unload_all();
	vp_plugin_set_event_base(NULL);
	event_base_free(base);
	snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* vp_plugin_open() with the given parameters (NULL: not set); err holds the
 * plugin's message. */
static int open_disk(const char *file, const char *direct, const char *engine, int ro,
                     struct vproxy_disk_info *info, void **disk)
{
	struct vproxy_params *p = vp_params_new();
	int rc;

	ck_assert_ptr_nonnull(p);
	if (file)
		ck_assert_int_eq(vp_params_set(p, "file", file, 1), 0);
	if (direct)
		ck_assert_int_eq(vp_params_set(p, "direct", direct, 2), 0);
	if (engine)
		ck_assert_int_eq(vp_params_set(p, "engine", engine, 3), 0);
	err[0] = '\0';
	rc = vp_plugin_open(plugin, 1, 0, "test", p, ro, info, disk, err, sizeof(err));
	vp_params_free(p);
	return rc;
}

/* Run the loop until every request in ts has completed (10 s at most). */
static void wait_all(struct treq **ts, unsigned n)
{
	time_t deadline = time(NULL) + 10;

	for (;;) {
		unsigned done = 0;
		struct timeval tv = {0, 20000};

		for (unsigned i = 0; i < n; i++)
			done += ts[i]->calls;
		if (done == n)
			break;
		ck_assert_msg(time(NULL) < deadline, "requests did not complete");
		event_base_loopexit(base, &tv);
		event_base_loop(base, EVLOOP_ONCE);
	}
	for (unsigned i = 0; i < n; i++)
		ck_assert_int_eq(ts[i]->calls, 1);
}

/* Defined by each test file. */
static void start(void *disk, struct treq *t, uint32_t op, uint32_t flags,
                  uint64_t offset, uint64_t len, void *buf);

/* One request, waited for; its status. */
static int run(void *disk, uint32_t op, uint32_t flags, uint64_t offset, uint64_t len,
               void *buf)
{
	struct treq t, *tp = &t;

	start(disk, &t, op, flags, offset, len, buf);
	wait_all(&tp, 1);
	return t.status;
}

/* The bytes of pattern seed: different per seed and per 512-byte block. */
static __attribute__((unused)) void fill(uint8_t *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seed * 31 + i * 7 + (i >> 9) + 1);
}

/* Write pattern seed at off; the request's status. */
static __attribute__((unused)) int write_pattern_status(void *disk, uint64_t off, size_t len,
                                                        unsigned seed)
{
	uint8_t *buf = malloc(len);
	int st;

	fill(buf, len, seed);
	st = run(disk, VPROXY_REQ_WRITE, 0, off, len, buf);
	free(buf);
	return st;
}

static __attribute__((unused)) void write_pattern(void *disk, uint64_t off, size_t len,
                                                  unsigned seed)
{
	ck_assert_int_eq(write_pattern_status(disk, off, len, seed), 0);
}

/* Read [off, off+len) and compare it with pattern seed. */
static __attribute__((unused)) void check_data(void *disk, uint64_t off, size_t len,
                                               unsigned seed)
{
	uint8_t *want = malloc(len), *got = malloc(len);

	fill(want, len, seed);
	memset(got, 0xee, len);
	ck_assert_int_eq(run(disk, VPROXY_REQ_READ, 0, off, len, got), 0);
	ck_assert_msg(memcmp(want, got, len) == 0, "data at %llu differs",
	              (unsigned long long)off);
	free(want);
	free(got);
}

/* A size-limited tmpfs (mount option size, e.g. "size=1m") for ENOSPC
 * tests, at tmpfs_dir.  Without it (not root, no tmpfs) tmpfs_mounted
 * stays false and tmpfs_err says why. */
static char tmpfs_dir[64];
static bool tmpfs_mounted;
static char tmpfs_err[200];

static __attribute__((unused)) void tmpfs_mount(const char *tag, const char *size)
{
	snprintf(tmpfs_dir, sizeof(tmpfs_dir), "/tmp/vproxy-test-%s.XXXXXX", tag);
	if (!mkdtemp(tmpfs_dir)) {
		snprintf(tmpfs_err, sizeof(tmpfs_err), "mkdtemp: %s", strerror(errno));
		tmpfs_dir[0] = '\0';
		return;
	}
	if (mount("tmpfs", tmpfs_dir, "tmpfs", 0, size) < 0) {
		snprintf(tmpfs_err, sizeof(tmpfs_err), "mount -t tmpfs: %s",
		         strerror(errno));
		return;
	}
	tmpfs_mounted = true;
}

static __attribute__((unused)) void tmpfs_unmount(void)
{
	if (tmpfs_mounted && umount2(tmpfs_dir, MNT_DETACH) < 0)
		fprintf(stderr, "umount %s: %s\n", tmpfs_dir, strerror(errno));
	tmpfs_mounted = false;
	if (tmpfs_dir[0])
		rmdir(tmpfs_dir);
}

static __attribute__((unused)) size_t count_nonzero(const uint8_t *p, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++)
		n += p[i] != 0;
	return n;
}

#endif
