/* SPDX-License-Identifier: MIT */
/* The mem plugin, loaded from the build tree through the plugin host:
 * data round trips, zeroing, bounds, read-only, parameter errors. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugin_host.h"

/* A submitted request with its completion record; host_priv points here. */
struct treq {
	struct vp_req_owner owner; /* first, as plugin_host.h requires */
	struct vproxy_req req;
	int calls;
	int status;
};

static const struct vproxy_plugin *plugin;
static char err[256];

static void treq_complete(struct vproxy_req *req, int status)
{
	struct treq *t = req->host_priv;

	ck_assert_ptr_eq(req, &t->req);
	t->calls++;
	t->status = status;
}

static void load_plugin(void)
{
	plugin = vp_plugin_load(VP_TEST_PLUGIN_DIR, "mem", err, sizeof(err));
	ck_assert_msg(plugin != NULL, "%s", err);
}

static void unload_plugin(void)
{
	vp_plugin_unload_all();
	plugin = NULL;
}

/* Open a mem disk with the given size (and block-size unless NULL). */
static int open_disk(const char *size, const char *bs, int read_only,
		     struct vproxy_disk_info *info, void **disk)
{
	struct vproxy_params *p = vp_params_new();
	int rc;

	ck_assert_ptr_nonnull(p);
	if (size)
		ck_assert_int_eq(vp_params_set(p, "size", size, 1), 0);
	if (bs)
		ck_assert_int_eq(vp_params_set(p, "block-size", bs, 2), 0);
	err[0] = '\0';
	rc = vp_plugin_open(plugin, 1, 0, "test", p, read_only, info, disk, err,
	                    sizeof(err));
	vp_params_free(p);
	return rc;
}

/* Submit one request, expect an inline completion; returns its status. */
static int run(void *disk, uint32_t op, uint32_t flags, uint64_t offset, uint64_t len,
	       const struct iovec *iov, unsigned iovcnt)
{
	struct treq t = {
		.owner = {.complete = treq_complete},
		.req = {.op = op, .flags = flags, .offset = offset, .len = len,
			.iov = iov, .iovcnt = iovcnt},
	};

	t.req.host_priv = &t;
	ck_assert_int_eq(plugin->submit(disk, &t.req), 0);
	ck_assert_int_eq(t.calls, 1);
	return t.status;
}

static int rw(void *disk, uint32_t op, uint64_t offset, void *buf, size_t len)
{
	struct iovec v = {.iov_base = buf, .iov_len = len};

	return run(disk, op, 0, offset, len, &v, 1);
}

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seed + i * 7 + (i >> 9));
}

static void *open_1m(void)
{
	struct vproxy_disk_info info;
	void *disk = NULL;

	ck_assert_msg(open_disk("1M", NULL, 0, &info, &disk) == 0, "%s", err);
	return disk;
}

START_TEST(open_reports_info)
{
	struct vproxy_disk_info info;
	void *disk = NULL;

	ck_assert_msg(open_disk("64M", NULL, 0, &info, &disk) == 0, "%s", err);
	ck_assert_ptr_nonnull(disk);
	ck_assert_uint_eq(info.capacity, 64ull << 20);
	ck_assert_uint_eq(info.logical_block, 512);
	ck_assert_uint_eq(info.physical_block, 512);
	ck_assert_uint_eq(info.flags, VPROXY_DISK_FLUSH | VPROXY_DISK_DISCARD |
					      VPROXY_DISK_WRITE_ZEROES);
	vp_plugin_close(plugin, disk);

	ck_assert_msg(open_disk("1M", "4096", 1, &info, &disk) == 0, "%s", err);
	ck_assert_uint_eq(info.logical_block, 4096);
	ck_assert_uint_eq(info.physical_block, 4096);
	ck_assert_uint_ne(info.flags & VPROXY_DISK_READONLY, 0);
	vp_plugin_close(plugin, disk);
}
END_TEST

START_TEST(write_read_round_trip)
{
	void *disk = open_1m();
	size_t len = 3 * 4096 + 1024;
	uint8_t *out = malloc(len), *in = malloc(len);
	struct iovec v[4];

	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(in);
	/* untouched space reads as zeroes */
	memset(in, 0xAA, len);
	ck_assert_int_eq(rw(disk, VPROXY_REQ_READ, 0, in, len), 0);
	for (size_t i = 0; i < len; i++)
		ck_assert_uint_eq(in[i], 0);

	/* written through several iovecs, read back through one */
	fill(out, len, 1);
	v[0] = (struct iovec){out, 512};
	v[1] = (struct iovec){out + 512, 0};
	v[2] = (struct iovec){out + 512, 4096 + 100};
	v[3] = (struct iovec){out + 4608 + 100, len - 4608 - 100};
	ck_assert_int_eq(run(disk, VPROXY_REQ_WRITE, 0, 2048, len, v, 4), 0);
	memset(in, 0, len);
	ck_assert_int_eq(rw(disk, VPROXY_REQ_READ, 2048, in, len), 0);
	ck_assert_int_eq(memcmp(in, out, len), 0);

	/* and the other way round */
	memset(in, 0, len);
	v[0] = (struct iovec){in, 1000};
	v[1] = (struct iovec){in + 1000, len - 1000};
	ck_assert_int_eq(run(disk, VPROXY_REQ_READ, 0, 2048, len, v, 2), 0);
	ck_assert_int_eq(memcmp(in, out, len), 0);

	/* the last sector is reachable */
	ck_assert_int_eq(rw(disk, VPROXY_REQ_WRITE, (1u << 20) - 512, out, 512), 0);
	ck_assert_int_eq(rw(disk, VPROXY_REQ_READ, (1u << 20) - 512, in, 512), 0);
	ck_assert_int_eq(memcmp(in, out, 512), 0);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL, 0), 0);
	free(out);
	free(in);
	vp_plugin_close(plugin, disk);
}
END_TEST

/* Write a pattern over the first 5 pages, zero [off, off+len) with op,
 * check the range reads as zeroes and everything else kept its data. */
static void check_zeroing(uint32_t op, uint32_t flags, uint64_t off, uint64_t len)
{
	void *disk = open_1m();
	size_t span = 5 * 4096;
	uint8_t *pat = malloc(span), *in = malloc(span);

	ck_assert_ptr_nonnull(pat);
	ck_assert_ptr_nonnull(in);
	fill(pat, span, 9);
	for (size_t i = 0; i < span; i++)
		pat[i] |= 1; /* no zero bytes in the pattern */
	ck_assert_int_eq(rw(disk, VPROXY_REQ_WRITE, 0, pat, span), 0);
	ck_assert_int_eq(run(disk, op, flags, off, len, NULL, 0), 0);
	ck_assert_int_eq(rw(disk, VPROXY_REQ_READ, 0, in, span), 0);
	for (size_t i = 0; i < span; i++) {
		if (i >= off && i < off + len)
			ck_assert_msg(in[i] == 0, "byte %zu not zeroed", i);
		else
			ck_assert_msg(in[i] == pat[i], "byte %zu changed", i);
	}
	/* zeroed space can be written again */
	ck_assert_int_eq(rw(disk, VPROXY_REQ_WRITE, 0, pat, span), 0);
	ck_assert_int_eq(rw(disk, VPROXY_REQ_READ, 0, in, span), 0);
	ck_assert_int_eq(memcmp(in, pat, span), 0);
	free(pat);
	free(in);
	vp_plugin_close(plugin, disk);
}

static const struct {
	uint64_t off, len;
} zero_ranges[] = {
	{512, 1024},          /* inside one page */
	{0, 4096},            /* exactly one page */
	{4096, 3 * 4096},     /* whole pages */
	{1536, 2 * 4096 + 512}, /* partial head, whole page, partial tail */
	{3584, 1024},         /* across a page boundary, no whole page */
	{0, 5 * 4096},        /* everything written */
	{4096 * 4 + 512, 0},  /* nothing */
};

START_TEST(discard_zeroes)
{
	check_zeroing(VPROXY_REQ_DISCARD, 0, zero_ranges[_i].off, zero_ranges[_i].len);
}
END_TEST

START_TEST(write_zeroes_zeroes)
{
	check_zeroing(VPROXY_REQ_WRITE_ZEROES, 0, zero_ranges[_i].off,
		      zero_ranges[_i].len);
}
END_TEST

START_TEST(write_zeroes_unmap_zeroes)
{
	check_zeroing(VPROXY_REQ_WRITE_ZEROES, VPROXY_REQ_F_UNMAP, zero_ranges[_i].off,
		      zero_ranges[_i].len);
}
END_TEST

START_TEST(bounds)
{
	void *disk = open_1m();
	uint64_t cap = 1u << 20;
	uint8_t buf[1024] = {0};
	struct iovec v = {buf, sizeof(buf)};

	ck_assert_int_eq(rw(disk, VPROXY_REQ_READ, cap - 512, buf, 1024), -EINVAL);
	ck_assert_int_eq(rw(disk, VPROXY_REQ_WRITE, cap - 512, buf, 1024), -EINVAL);
	ck_assert_int_eq(rw(disk, VPROXY_REQ_READ, cap, buf, 512), -EINVAL);
	ck_assert_int_eq(rw(disk, VPROXY_REQ_READ, UINT64_MAX - 511, buf, 1024), -EINVAL);
	ck_assert_int_eq(run(disk, VPROXY_REQ_DISCARD, 0, cap - 512, 1024, NULL, 0),
			 -EINVAL);
	ck_assert_int_eq(run(disk, VPROXY_REQ_WRITE_ZEROES, 0, 512, UINT64_MAX, NULL, 0),
			 -EINVAL);
	ck_assert_int_eq(run(disk, VPROXY_REQ_DISCARD, 0, UINT64_MAX, 2, NULL, 0),
			 -EINVAL);
	/* len must be what the iovecs hold */
	ck_assert_int_eq(run(disk, VPROXY_REQ_READ, 0, 0, 512, &v, 1), -EINVAL);
	ck_assert_int_eq(run(disk, VPROXY_REQ_WRITE, 0, 0, 2048, &v, 1), -EINVAL);
	ck_assert_int_eq(run(disk, VPROXY_REQ_READ, 0, 0, 512, NULL, 1), -EINVAL);
	/* iovec lengths that wrap around must not pass as a small sum */
	{
		struct iovec wrap[2] = {{buf, SIZE_MAX}, {buf, 513}};

		ck_assert_int_eq(run(disk, VPROXY_REQ_READ, 0, 0, 512, wrap, 2), -EINVAL);
	}
	/* right up to the end is fine */
	ck_assert_int_eq(rw(disk, VPROXY_REQ_READ, cap - 1024, buf, 1024), 0);
	ck_assert_int_eq(run(disk, VPROXY_REQ_DISCARD, 0, 0, cap, NULL, 0), 0);
	/* unknown operations are refused, still through complete() */
	ck_assert_int_eq(run(disk, 99, 0, 0, 512, &v, 1), -EOPNOTSUPP);
	vp_plugin_close(plugin, disk);
}
END_TEST

START_TEST(read_only_refuses_changes)
{
	struct vproxy_disk_info info;
	void *disk = NULL;
	uint8_t buf[512];

	ck_assert_msg(open_disk("1M", NULL, 1, &info, &disk) == 0, "%s", err);
	ck_assert_int_eq(rw(disk, VPROXY_REQ_WRITE, 0, buf, sizeof(buf)), -EROFS);
	ck_assert_int_eq(run(disk, VPROXY_REQ_DISCARD, 0, 0, 512, NULL, 0), -EROFS);
	ck_assert_int_eq(run(disk, VPROXY_REQ_WRITE_ZEROES, 0, 0, 512, NULL, 0), -EROFS);
	ck_assert_int_eq(rw(disk, VPROXY_REQ_READ, 0, buf, sizeof(buf)), 0);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL, 0), 0);
	vp_plugin_close(plugin, disk);
}
END_TEST

START_TEST(large_sparse_disk)
{
	struct vproxy_disk_info info;
	void *disk = NULL;
	uint8_t out[512], in[512];
	uint64_t last = (64ull << 30) - 512;

	/* 64 GiB of address space; only the pages written get memory */
	ck_assert_msg(open_disk("64G", NULL, 0, &info, &disk) == 0, "%s", err);
	fill(out, sizeof(out), 3);
	ck_assert_int_eq(rw(disk, VPROXY_REQ_WRITE, last, out, sizeof(out)), 0);
	ck_assert_int_eq(rw(disk, VPROXY_REQ_READ, last, in, sizeof(in)), 0);
	ck_assert_int_eq(memcmp(in, out, sizeof(in)), 0);
	ck_assert_int_eq(run(disk, VPROXY_REQ_DISCARD, 0, 0, info.capacity, NULL, 0), 0);
	ck_assert_int_eq(rw(disk, VPROXY_REQ_READ, last, in, sizeof(in)), 0);
	for (size_t i = 0; i < sizeof(in); i++)
		ck_assert_uint_eq(in[i], 0);
	vp_plugin_close(plugin, disk);
}
END_TEST

static const struct {
	const char *size;
	const char *bs;
	const char *err;
} bad_params[] = {
	{NULL, NULL, "size: required (e.g. size = 64M)"},
	{"lots", NULL, "size: \"lots\" is not a size (digits with optional K, M, G or T)"},
	{"-1M", NULL, "size: \"-1M\" is not a size (digits with optional K, M, G or T)"},
	{"", NULL, "size: \"\" is not a size (digits with optional K, M, G or T)"},
	{"1000", NULL, "size: 1000 must be a positive multiple of 512 bytes"},
	{"0", NULL, "size: 0 must be a positive multiple of 512 bytes"},
	{"1536", "4096", "size: 1536 must be a positive multiple of 4096 bytes"},
	{"1M", "1024", "block-size: \"1024\" is not allowed (512 or 4096)"},
	{"1M", "2K", "block-size: \"2K\" is not allowed (512 or 4096)"},
	{"1M", "big", "block-size: \"big\" is not allowed (512 or 4096)"},
};

START_TEST(params_errors)
{
	struct vproxy_disk_info info;
	void *disk = NULL;

	ck_assert_int_eq(open_disk(bad_params[_i].size, bad_params[_i].bs, 0, &info, &disk),
			 -EINVAL);
	ck_assert_ptr_null(disk);
	ck_assert_str_eq(err, bad_params[_i].err);
}
END_TEST

START_TEST(size_suffixes_accepted)
{
	struct vproxy_disk_info info;
	void *disk = NULL;

	ck_assert_msg(open_disk("4096", "4K", 0, &info, &disk) == 0, "%s", err);
	ck_assert_uint_eq(info.capacity, 4096);
	ck_assert_uint_eq(info.logical_block, 4096);
	vp_plugin_close(plugin, disk);
	ck_assert_msg(open_disk("2MiB", NULL, 0, &info, &disk) == 0, "%s", err);
	ck_assert_uint_eq(info.capacity, 2u << 20);
	vp_plugin_close(plugin, disk);
}
END_TEST

START_TEST(plugin_table)
{
	ck_assert_str_eq(plugin->name, "mem");
	ck_assert_str_eq(plugin->param_keys[0], "size");
	ck_assert_str_eq(plugin->param_keys[1], "block-size");
	ck_assert_ptr_null(plugin->param_keys[2]);
}
END_TEST

static Suite *mem_suite(void)
{
	Suite *s = suite_create("mem");
	TCase *tc = tcase_create("mem");
	int nz = (int)(sizeof(zero_ranges) / sizeof(zero_ranges[0]));

	tcase_add_checked_fixture(tc, load_plugin, unload_plugin);
	tcase_add_test(tc, plugin_table);
	tcase_add_test(tc, open_reports_info);
	tcase_add_test(tc, write_read_round_trip);
	tcase_add_loop_test(tc, discard_zeroes, 0, nz);
	tcase_add_loop_test(tc, write_zeroes_zeroes, 0, nz);
	tcase_add_loop_test(tc, write_zeroes_unmap_zeroes, 0, nz);
	tcase_add_test(tc, bounds);
	tcase_add_test(tc, read_only_refuses_changes);
	tcase_add_test(tc, large_sparse_disk);
	tcase_add_loop_test(tc, params_errors, 0,
			    (int)(sizeof(bad_params) / sizeof(bad_params[0])));
	tcase_add_test(tc, size_suffixes_accepted);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(mem_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
