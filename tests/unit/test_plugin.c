/* SPDX-License-Identifier: MIT */
/* Plugin host: loading (and refusing) plugins, the host table, device
 * parameters, size parsing. */
#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugin_host.h"

static char err[512];

/* ---- loading ---- */

START_TEST(load_mem)
{
	const struct vproxy_plugin *p, *again;

	p = vp_plugin_load(VP_TEST_PLUGIN_DIR, "mem", err, sizeof(err));
	ck_assert_msg(p != NULL, "%s", err);
	ck_assert_str_eq(p->name, "mem");
	ck_assert_uint_eq(p->abi_version, VPROXY_PLUGIN_ABI_VERSION);
	ck_assert_uint_ge(p->size, sizeof(struct vproxy_plugin));
	ck_assert_ptr_nonnull(p->open);
	ck_assert_ptr_nonnull(p->description);
	/* cached by name: no second dlopen/init, even from another dir */
	again = vp_plugin_load("/nonexistent", "mem", err, sizeof(err));
	ck_assert_ptr_eq(again, p);
	vp_plugin_unload_all();
	/* after unloading, the cache is empty: /nonexistent fails now */
	ck_assert_ptr_null(vp_plugin_load("/nonexistent", "mem", err, sizeof(err)));
	p = vp_plugin_load(VP_TEST_PLUGIN_DIR, "mem", err, sizeof(err));
	ck_assert_msg(p != NULL, "%s", err);
	vp_plugin_unload_all();
}
END_TEST

START_TEST(load_valid_test_plugin)
{
	const struct vproxy_plugin *p;

	p = vp_plugin_load(VP_TEST_BAD_PLUGIN_DIR, "good", err, sizeof(err));
	ck_assert_msg(p != NULL, "%s", err);
	ck_assert_str_eq(p->name, "good");
	vp_plugin_unload_all();
}
END_TEST

/* A plugin built against the first ABI table (before cancel() was
 * appended) still loads, and the server sees no cancel() in it. */
START_TEST(load_v1_table)
{
	const struct vproxy_plugin *p;

	p = vp_plugin_load(VP_TEST_BAD_PLUGIN_DIR, "v1table", err, sizeof(err));
	ck_assert_msg(p != NULL, "%s", err);
	ck_assert_uint_eq(p->size, VPROXY_PLUGIN_SIZE_V1);
	ck_assert(!VPROXY_PLUGIN_HAS(p, cancel));
	vp_plugin_unload_all();
}
END_TEST

START_TEST(load_missing_file)
{
	ck_assert_ptr_null(vp_plugin_load(VP_TEST_BAD_PLUGIN_DIR, "absent", err,
					  sizeof(err)));
	ck_assert_str_eq(err, "plugin \"absent\": " VP_TEST_BAD_PLUGIN_DIR
			      "/absent.so: No such file or directory");
}
END_TEST

START_TEST(load_not_elf)
{
	ck_assert_ptr_null(vp_plugin_load(VP_TEST_BAD_PLUGIN_DIR, "notelf", err,
					  sizeof(err)));
	ck_assert_msg(strncmp(err, "plugin \"notelf\": dlopen failed: ", 32) == 0, "%s",
		      err);
	ck_assert_msg(strstr(err, "notelf.so") != NULL, "%s", err);
	ck_assert_ptr_null(strchr(err, '\n'));
}
END_TEST

START_TEST(load_no_symbol)
{
	ck_assert_ptr_null(vp_plugin_load(VP_TEST_BAD_PLUGIN_DIR, "nosym", err,
					  sizeof(err)));
	ck_assert_str_eq(err, "plugin \"nosym\": " VP_TEST_BAD_PLUGIN_DIR
			      "/nosym.so does not export vproxy_plugin_init (nor "
			      "vproxy_plugin_init_v2)");
}
END_TEST

START_TEST(load_bad_abi)
{
	char want[128];

	ck_assert_ptr_null(vp_plugin_load(VP_TEST_BAD_PLUGIN_DIR, "badabi", err,
					  sizeof(err)));
	/* An ABI 1 source (it exports vproxy_plugin_init) claiming ABI 2. */
	snprintf(want, sizeof(want),
		 "plugin \"badabi\": built for ABI version 2, but exports "
		 "vproxy_plugin_init (ABI 1)");
	ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(load_small_table)
{
	char want[128];

	ck_assert_ptr_null(vp_plugin_load(VP_TEST_BAD_PLUGIN_DIR, "badsize", err,
					  sizeof(err)));
	snprintf(want, sizeof(want),
		 "plugin \"badsize\": plugin table is %zu bytes, this server needs at least %zu",
		 offsetof(struct vproxy_plugin, open), (size_t)VPROXY_PLUGIN_SIZE_V1);
	ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(load_null_init)
{
	ck_assert_ptr_null(vp_plugin_load(VP_TEST_BAD_PLUGIN_DIR, "nullinit", err,
					  sizeof(err)));
	ck_assert_str_eq(err, "plugin \"nullinit\": vproxy_plugin_init returned NULL");
}
END_TEST

START_TEST(load_missing_op)
{
	ck_assert_ptr_null(vp_plugin_load(VP_TEST_BAD_PLUGIN_DIR, "nosubmit", err,
					  sizeof(err)));
	ck_assert_str_eq(err, "plugin \"nosubmit\": plugin table has no submit()");
}
END_TEST

START_TEST(load_wrong_name)
{
	ck_assert_ptr_null(vp_plugin_load(VP_TEST_BAD_PLUGIN_DIR, "wrongname", err,
					  sizeof(err)));
	ck_assert_str_eq(err, "plugin \"wrongname\": calls itself \"other\"; its file "
			      "must be named other.so");
}
END_TEST

static const char *const bad_names[] = {"../x", "a/b", "", "..", "/etc/passwd", "x..y"};

START_TEST(load_bad_name)
{
	char want[128];

	ck_assert_ptr_null(vp_plugin_load(VP_TEST_PLUGIN_DIR, bad_names[_i], err,
					  sizeof(err)));
	snprintf(want, sizeof(want),
		 "invalid plugin name \"%s\" (must be non-empty, without '/' or \"..\")",
		 bad_names[_i]);
	ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(load_failure_not_cached)
{
	/* a failed load leaves nothing behind: the next try loads afresh */
	ck_assert_ptr_null(vp_plugin_load(VP_TEST_BAD_PLUGIN_DIR, "mem", err,
					  sizeof(err)));
	ck_assert_ptr_nonnull(vp_plugin_load(VP_TEST_PLUGIN_DIR, "mem", err,
					     sizeof(err)));
	vp_plugin_unload_all();
}
END_TEST

START_TEST(load_truncates_message)
{
	char small[24];

	ck_assert_ptr_null(vp_plugin_load(VP_TEST_BAD_PLUGIN_DIR, "absent", small,
					  sizeof(small)));
	ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
}
END_TEST

/* ---- host table ---- */

struct owner {
	struct vp_req_owner base; /* first, as plugin_host.h requires */
	int calls;
	int status;
	struct vproxy_req *req;
};

static void owner_complete(struct vproxy_req *req, int status)
{
	struct owner *o = req->host_priv;

	o->calls++;
	o->status = status;
	o->req = req;
}

START_TEST(host_table_fields)
{
	const struct vproxy_host *h = vp_plugin_host();

	ck_assert_uint_eq(h->abi_version, VPROXY_PLUGIN_ABI_VERSION);
	ck_assert_uint_eq(VPROXY_PLUGIN_ABI_VERSION, 2);
	ck_assert_uint_eq(h->size, sizeof(struct vproxy_host));
	ck_assert(VPROXY_HOST_HAS(h, disk_log));
	ck_assert_ptr_nonnull(h->log);
	ck_assert_ptr_nonnull(h->complete);
	ck_assert_ptr_nonnull(h->param);
	ck_assert_ptr_nonnull(h->parse_size);
	ck_assert_ptr_nonnull(h->fd_watch);
	ck_assert_ptr_nonnull(h->fd_unwatch);
}
END_TEST

START_TEST(host_complete_routes_to_owner)
{
	struct owner o = {.base = {.complete = owner_complete}};
	struct vproxy_req req = {.host_priv = &o};

	vp_plugin_host()->complete(&req, -EIO);
	ck_assert_int_eq(o.calls, 1);
	ck_assert_int_eq(o.status, -EIO);
	ck_assert_ptr_eq(o.req, &req);
}
END_TEST

START_TEST(host_param_and_parse_size)
{
	const struct vproxy_host *h = vp_plugin_host();
	struct vproxy_params *p = vp_params_new();
	uint64_t v;

	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(vp_params_set(p, "size", "2M", 7), 0);
	ck_assert_str_eq(h->param(p, "size"), "2M");
	ck_assert_ptr_null(h->param(p, "other"));
	ck_assert_int_eq(h->parse_size(h->param(p, "size"), &v), 0);
	ck_assert_uint_eq(v, 2u << 20);
	vp_params_free(p);
}
END_TEST

/* Run fn with stderr captured; returns what it printed (static buffer). */
static const char *capture_stderr(void (*fn)(void))
{
	static char out[2048];
	char path[] = "/tmp/vp_test_plugin_XXXXXX";
	int fd = mkstemp(path), saved;
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	unlink(path);
	fflush(stderr);
	saved = dup(2);
	ck_assert_int_ge(saved, 0);
	ck_assert_int_eq(dup2(fd, 2), 2);
	fn();
	fflush(stderr);
	ck_assert_int_eq(dup2(saved, 2), 2);
	close(saved);
	n = pread(fd, out, sizeof(out) - 1, 0);
	ck_assert_int_ge(n, 0);
	out[n] = '\0';
	close(fd);
	return out;
}

static void log_some(void)
{
	const struct vproxy_host *h = vp_plugin_host();

	h->log(VPROXY_LOG_WARN, "disk %d is %s", 3, "slow");
	h->log(VPROXY_LOG_DEBUG, "not shown at the default level");
	/* an unknown level from a newer plugin must not crash the server */
	h->log((enum vproxy_log_level)77, "unknown level");
}

START_TEST(host_log_prints)
{
	const char *out = capture_stderr(log_some);

	ck_assert_msg(strstr(out, ": warn: plugin: disk 3 is slow\n") != NULL, "%s", out);
	ck_assert_ptr_null(strstr(out, "not shown"));
	ck_assert_ptr_null(strstr(out, "unknown level"));
}
END_TEST

/* ---- ABI 1 and ABI 2 side by side ---- */

/* Write a pattern through one disk, read it back; both complete inline. */
static void abi_disk_io(const struct vproxy_plugin *p, void *disk)
{
	struct owner o = {.base = {.complete = owner_complete}};
	unsigned char out[1024], in[1024];
	struct iovec iov = {out, sizeof(out)};
	struct vproxy_req req = {.op = VPROXY_REQ_WRITE, .offset = 4096, .len = sizeof(out),
				 .iov = &iov, .iovcnt = 1, .host_priv = &o};

	for (unsigned i = 0; i < sizeof(out); i++)
		out[i] = (unsigned char)(i * 7 + 1);
	ck_assert_int_eq(p->submit(disk, &req), 0);
	ck_assert_int_eq(o.calls, 1);
	ck_assert_int_eq(o.status, 0);
	iov.iov_base = in;
	req.op = VPROXY_REQ_READ;
	ck_assert_int_eq(p->submit(disk, &req), 0);
	ck_assert_int_eq(o.calls, 2);
	ck_assert_int_eq(o.status, 0);
	ck_assert_mem_eq(in, out, sizeof(out));
}

static void abi_open_both(void)
{
	const struct vproxy_plugin *p1, *p2;
	struct vproxy_disk_info info;
	void *d1, *d2;

	p1 = vp_plugin_load(VP_TEST_BAD_PLUGIN_DIR, "abi1", err, sizeof(err));
	ck_assert_msg(p1 != NULL, "%s", err);
	p2 = vp_plugin_load(VP_TEST_BAD_PLUGIN_DIR, "abi2", err, sizeof(err));
	ck_assert_msg(p2 != NULL, "%s", err);
	ck_assert_uint_eq(p1->abi_version, 1);
	ck_assert_uint_eq(p2->abi_version, 2);
	ck_assert_int_eq(vp_plugin_open(p1, 7, 3, "old", NULL, 0, &info, &d1, err,
					sizeof(err)),
			 0);
	ck_assert_int_eq(vp_plugin_open(p2, 7, 4, "scratch", NULL, 0, &info, &d2, err,
					sizeof(err)),
			 0);
	ck_assert_uint_eq(info.capacity, 65536);
	abi_disk_io(p1, d1);
	abi_disk_io(p2, d2);
	vp_plugin_close(p1, d1);
	vp_plugin_close(p2, d2);
	vp_plugin_unload_all();
}

/* An ABI 1 plugin (built from a source that predates ABI 2) and an ABI 2
 * plugin load into one server and serve I/O; only the ABI 2 plugin's
 * messages name the plugin, guest, device and label. */
START_TEST(abi1_and_abi2_side_by_side)
{
	const char *out = capture_stderr(abi_open_both);

	ck_assert_msg(strstr(out, ": info: plugin: opened 65536 bytes\n") != NULL, "%s",
		      out);
	ck_assert_msg(strstr(out, ": info: dom 7 dev 4: plugin abi2 [device scratch]: "
				  "opened 65536 bytes\n") != NULL,
		      "%s", out);
}
END_TEST

/* An ABI 1 plugin is given the host table as it was in ABI 1. */
START_TEST(abi1_gets_v1_host_table)
{
	ck_assert_uint_eq(VPROXY_HOST_SIZE_V1, offsetof(struct vproxy_host, disk_log));
	ck_assert_uint_lt(VPROXY_HOST_SIZE_V1, sizeof(struct vproxy_host));
	/* abi1.so checks abi_version == 1 and size >= VPROXY_HOST_SIZE_V1 in
	 * VPROXY_PLUGIN_DEFINE: it would have returned NULL otherwise. */
	ck_assert_ptr_nonnull(vp_plugin_load(VP_TEST_BAD_PLUGIN_DIR, "abi1", err,
					     sizeof(err)));
	vp_plugin_unload_all();
}
END_TEST

struct watch_count {
	int calls;
	int fd;
};

static void on_readable(int fd, void *arg)
{
	struct watch_count *w = arg;
	char c;

	w->calls++;
	w->fd = fd;
	ck_assert_int_eq(read(fd, &c, 1), 1);
}

START_TEST(host_fd_watch)
{
	const struct vproxy_host *h = vp_plugin_host();
	struct event_base *base = event_base_new();
	struct watch_count w = {0};
	int pfd[2];
	void *handle;

	ck_assert_ptr_nonnull(base);
	ck_assert_int_eq(pipe2(pfd, O_NONBLOCK), 0);
	vp_plugin_set_event_base(base);
	handle = h->fd_watch(pfd[0], on_readable, &w);
	ck_assert_ptr_nonnull(handle);

	/* nothing to read: the callback does not run */
	ck_assert_int_eq(event_base_loop(base, EVLOOP_NONBLOCK), 0);
	ck_assert_int_eq(w.calls, 0);
	/* persistent: fires once per readiness, again and again */
	for (int i = 1; i <= 3; i++) {
		ck_assert_int_eq(write(pfd[1], "x", 1), 1);
		ck_assert_int_eq(event_base_loop(base, EVLOOP_ONCE), 0);
		ck_assert_int_eq(w.calls, i);
		ck_assert_int_eq(w.fd, pfd[0]);
	}
	h->fd_unwatch(handle);
	ck_assert_int_eq(write(pfd[1], "x", 1), 1);
	/* no events left: the loop returns 1 at once */
	ck_assert_int_eq(event_base_loop(base, EVLOOP_NONBLOCK), 1);
	ck_assert_int_eq(w.calls, 3);

	h->fd_unwatch(NULL);
	vp_plugin_set_event_base(NULL);
	close(pfd[0]);
	close(pfd[1]);
	event_base_free(base);
}
END_TEST

START_TEST(host_fd_watch_without_loop)
{
	struct watch_count w = {0};

	vp_plugin_set_event_base(NULL);
	ck_assert_ptr_null(vp_plugin_host()->fd_watch(0, on_readable, &w));
}
END_TEST

/* ---- parameters ---- */

static const char *const takes_size[] = {"size", "block-size", NULL};
static const struct vproxy_plugin fake_plugin = {.name = "fake",
						 .param_keys = takes_size};
static const struct vproxy_plugin no_params_plugin = {.name = "none"};

START_TEST(params_set_get_replace)
{
	struct vproxy_params *p = vp_params_new();

	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_null(vp_params_get(p, "size"));
	ck_assert_ptr_null(vp_params_get(NULL, "size"));
	ck_assert_int_eq(vp_params_set(p, "size", "1M", 3), 0);
	ck_assert_int_eq(vp_params_set(p, "block-size", "4096", 4), 0);
	ck_assert_int_eq(vp_params_set(p, "size", "2M", 5), 0);
	ck_assert_str_eq(vp_params_get(p, "size"), "2M");
	ck_assert_str_eq(vp_params_get(p, "block-size"), "4096");
	/* many keys: the set grows */
	for (int i = 0; i < 100; i++) {
		char k[16], v[16];

		snprintf(k, sizeof(k), "k%d", i);
		snprintf(v, sizeof(v), "v%d", i);
		ck_assert_int_eq(vp_params_set(p, k, v, 10 + i), 0);
	}
	ck_assert_str_eq(vp_params_get(p, "k0"), "v0");
	ck_assert_str_eq(vp_params_get(p, "k99"), "v99");
	vp_params_free(p);
	vp_params_free(NULL);
}
END_TEST

START_TEST(params_check)
{
	struct vproxy_params *p = vp_params_new();
	const char *bad_key = NULL;
	int bad_line = 0;

	ck_assert_int_eq(vp_params_check(p, &fake_plugin, &bad_key, &bad_line), 0);
	ck_assert_int_eq(vp_params_set(p, "size", "1M", 3), 0);
	ck_assert_int_eq(vp_params_check(p, &fake_plugin, &bad_key, &bad_line), 0);
	ck_assert_int_eq(vp_params_set(p, "colour", "blue", 8), 0);
	ck_assert_int_eq(vp_params_set(p, "flavour", "mint", 9), 0);
	ck_assert_int_eq(vp_params_check(p, &fake_plugin, &bad_key, &bad_line), -EINVAL);
	ck_assert_str_eq(bad_key, "colour");
	ck_assert_int_eq(bad_line, 8);
	/* a plugin without param_keys takes none */
	ck_assert_int_eq(vp_params_check(p, &no_params_plugin, &bad_key, &bad_line),
			 -EINVAL);
	ck_assert_str_eq(bad_key, "size");
	ck_assert_int_eq(bad_line, 3);
	vp_params_free(p);
}
END_TEST

static Suite *plugin_suite(void)
{
	Suite *s = suite_create("plugin");
	TCase *load = tcase_create("load");
	TCase *host = tcase_create("host");
	TCase *params = tcase_create("params");

	tcase_add_test(load, load_mem);
	tcase_add_test(load, load_valid_test_plugin);
	tcase_add_test(load, load_v1_table);
	tcase_add_test(load, load_missing_file);
	tcase_add_test(load, load_not_elf);
	tcase_add_test(load, load_no_symbol);
	tcase_add_test(load, load_bad_abi);
	tcase_add_test(load, load_small_table);
	tcase_add_test(load, load_null_init);
	tcase_add_test(load, load_missing_op);
	tcase_add_test(load, load_wrong_name);
	tcase_add_loop_test(load, load_bad_name, 0,
			    (int)(sizeof(bad_names) / sizeof(bad_names[0])));
	tcase_add_test(load, load_failure_not_cached);
	tcase_add_test(load, load_truncates_message);
	suite_add_tcase(s, load);

	tcase_add_test(host, host_table_fields);
	tcase_add_test(host, host_complete_routes_to_owner);
	tcase_add_test(host, host_param_and_parse_size);
	tcase_add_test(host, host_log_prints);
	tcase_add_test(host, host_fd_watch);
	tcase_add_test(host, abi1_and_abi2_side_by_side);
	tcase_add_test(host, abi1_gets_v1_host_table);
	tcase_add_test(host, host_fd_watch_without_loop);
	suite_add_tcase(s, host);

	tcase_add_test(params, params_set_get_replace);
	tcase_add_test(params, params_check);
	suite_add_tcase(s, params);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(plugin_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
