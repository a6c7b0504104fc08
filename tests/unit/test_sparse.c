/* SPDX-License-Identifier: MIT */
/* The sparse plugin, loaded from the build tree through the plugin host
 * with completions running in a libevent loop: allocation on first write,
 * zeros for unallocated clusters, map updates, discard / write-zeroes
 * freeing clusters and reusing them after a flush, the last cluster of an
 * odd-sized disk, images over 2 TiB, a 1 PiB image walked by what is
 * allocated (open, check, map), an image cut short from outside while
 * open, persistence, read-only, concurrent writes into one new cluster,
 * and the errors of bad input. */
#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "plugin_test_util.h"

/* The format code, to look at images from the outside. */
#include "../../plugins/sparse/sparse_format.c"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define TiB (1024ull * GiB)

static void setup(void)
{
	plugin_test_setup("sparse", "disk.img");
}

static void make_image(uint64_t size, uint64_t cs)
{
	char why[300];

	ck_assert_msg(sparse_create(path, size, cs, true, why, sizeof(why)) == 0, "%s",
	              why);
}

static void *open_ok(int ro)
{
	struct vproxy_disk_info info;
	void *disk = NULL;

	ck_assert_msg(open_disk(path, NULL, NULL, ro, &info, &disk) == 0, "%s", err);
	return disk;
}

static void start(void *disk, struct treq *t, uint32_t op, uint32_t flags,
                  uint64_t offset, uint64_t len, void *buf)
{
	memset(t, 0, sizeof(*t));
	t->owner.complete = treq_complete;
	t->req.op = op;
	t->req.flags = flags;
	t->req.offset = offset;
	t->req.len = len;
	t->req.host_priv = t;
	if (buf) {
		/* Two iovecs split off-centre, to exercise slicing. */
		size_t a = len > 1536 ? 1536 : (size_t)len;

		t->iov[0].iov_base = buf;
		t->iov[0].iov_len = a;
		t->iov[1].iov_base = (char *)buf + a;
		t->iov[1].iov_len = (size_t)len - a;
		t->req.iov = t->iov;
		t->req.iovcnt = len > a ? 2 : 1;
	}
	ck_assert_int_eq(plugin->submit(disk, &t->req), 0);
}

static void check_zero(void *disk, uint64_t off, size_t len)
{
	uint8_t *got = malloc(len);

	memset(got, 0xee, len);
	ck_assert_int_eq(run(disk, VPROXY_REQ_READ, 0, off, len, got), 0);
	/* One assertion, not one per byte: Check records every one. */
	ck_assert_msg(count_nonzero(got, len) == 0, "%zu non-zero bytes at %llu",
	              count_nonzero(got, len), (unsigned long long)off);
	free(got);
}

/* The image seen from outside: map entry of virtual cluster vc. */
static uint64_t entry_of(uint64_t vc)
{
	struct sparse_image img;
	char why[300];
	int fd = open(path, O_RDONLY);
	uint64_t e;

	ck_assert_int_ge(fd, 0);
	ck_assert_msg(sparse_open(&img, fd, why, sizeof(why)) == 0, "%s", why);
	ck_assert_int_eq(sparse_map_read(&img, vc, 1, &e), 0);
	sparse_close(&img);
	close(fd);
	return e;
}

/* Scan the image from outside: it must be clean; returns allocated. */
static uint64_t scan_clean(void)
{
	struct sparse_image img;
	struct sparse_scan s;
	char why[300];
	int fd = open(path, O_RDONLY);
	uint64_t n;

	ck_assert_int_ge(fd, 0);
	ck_assert_msg(sparse_open(&img, fd, why, sizeof(why)) == 0, "%s", why);
	ck_assert_msg(sparse_scan(&img, &s) == 0, "%s", s.report);
	n = s.allocated;
	sparse_scan_free(&s);
	sparse_close(&img);
	close(fd);
	return n;
}

static uint64_t file_size(void)
{
	struct stat st;

	ck_assert_int_eq(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

static uint64_t file_blocks(void)
{
	struct stat st;

	ck_assert_int_eq(stat(path, &st), 0);
	return (uint64_t)st.st_blocks;
}

START_TEST(open_reports_info)
{
	struct vproxy_disk_info info;
	void *disk = NULL;

	make_image(64 * MiB, 64 * KiB);
	ck_assert_msg(open_disk(path, NULL, NULL, 0, &info, &disk) == 0, "%s", err);
	ck_assert_uint_eq(info.capacity, 64 * MiB);
	ck_assert_uint_eq(info.logical_block, 512);
	ck_assert_uint_eq(info.discard_granularity, 64 * KiB);
	ck_assert_uint_eq(info.flags, VPROXY_DISK_FLUSH | VPROXY_DISK_DISCARD |
	                                      VPROXY_DISK_WRITE_ZEROES);
	ck_assert_uint_gt(info.max_discard_sectors, 0);
	vp_plugin_close(plugin, disk);
}
END_TEST

START_TEST(unallocated_reads_zero_without_allocating)
{
	uint64_t size0;
	void *disk;

	make_image(16 * MiB, 64 * KiB);
	size0 = file_size();
	disk = open_ok(0);
	check_zero(disk, 0, 128 * KiB);
	check_zero(disk, 16 * MiB - 4096, 4096);
	vp_plugin_close(plugin, disk);
	ck_assert_uint_eq(file_size(), size0);
	ck_assert_uint_eq(scan_clean(), 0);
}
END_TEST

START_TEST(write_allocates_and_updates_map)
{
	void *disk;
	uint64_t e;

	make_image(16 * MiB, 64 * KiB);
	disk = open_ok(0);
	ck_assert_uint_eq(entry_of(1), 0);
	write_pattern(disk, 64 * KiB + 4096, 8192, 1);
	/* The map entry is in the file once the write is acknowledged. */
	e = entry_of(1);
	ck_assert_uint_ne(e, 0);
	ck_assert_uint_eq(e % (64 * KiB), 0);
	check_data(disk, 64 * KiB + 4096, 8192, 1);
	/* The rest of the new cluster reads as zeros. */
	check_zero(disk, 64 * KiB, 4096);
	check_zero(disk, 64 * KiB + 12288, 64 * KiB - 12288);
	/* An overwrite stays in place. */
	write_pattern(disk, 64 * KiB, 4096, 2);
	ck_assert_uint_eq(entry_of(1), e);
	check_data(disk, 64 * KiB, 4096, 2);
	vp_plugin_close(plugin, disk);
	ck_assert_uint_eq(scan_clean(), 1);
}
END_TEST

START_TEST(write_across_clusters)
{
	void *disk;

	make_image(16 * MiB, 4 * KiB);
	disk = open_ok(0);
	/* 5 clusters, unaligned at both ends, partly allocated before. */
	write_pattern(disk, 8192, 4096, 3);
	write_pattern(disk, 4096 + 512, 5 * 4096, 4);
	check_data(disk, 4096 + 512, 5 * 4096, 4);
	check_zero(disk, 4096, 512);
	ck_assert_uint_eq(scan_clean(), 6);
	/* A read across allocated and unallocated clusters. */
	{
		uint8_t *buf = malloc(8 * 4096), *want = malloc(5 * 4096);

		ck_assert_int_eq(run(disk, VPROXY_REQ_READ, 0, 0, 8 * 4096, buf), 0);
		fill(want, 5 * 4096, 4);
		ck_assert_uint_eq(count_nonzero(buf, 4096 + 512), 0);
		ck_assert_int_eq(memcmp(buf + 4096 + 512, want, 5 * 4096), 0);
		ck_assert_uint_eq(count_nonzero(buf + 6 * 4096 + 512, 2 * 4096 - 512), 0);
		free(buf);
		free(want);
	}
	vp_plugin_close(plugin, disk);
}
END_TEST

START_TEST(data_persists_across_reopen)
{
	void *disk;

	make_image(32 * MiB, 64 * KiB);
	disk = open_ok(0);
	write_pattern(disk, 0, 64 * KiB, 5);
	write_pattern(disk, 20 * MiB + 512, 3000 / 512 * 512, 6);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	vp_plugin_close(plugin, disk);
	disk = open_ok(1);
	check_data(disk, 0, 64 * KiB, 5);
	check_data(disk, 20 * MiB + 512, 3000 / 512 * 512, 6);
	vp_plugin_close(plugin, disk);
}
END_TEST

START_TEST(discard_frees_whole_clusters)
{
	void *disk;
	uint64_t blocks;

	make_image(16 * MiB, 64 * KiB);
	disk = open_ok(0);
	write_pattern(disk, 0, 3 * 64 * KiB, 7);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	blocks = file_blocks();
	ck_assert_int_eq(run(disk, VPROXY_REQ_DISCARD, 0, 64 * KiB, 64 * KiB, NULL), 0);
	ck_assert_uint_eq(entry_of(1), 0);
	check_zero(disk, 64 * KiB, 64 * KiB);
	check_data(disk, 0, 64 * KiB, 7);
	/* The host file gave the space back. */
	ck_assert_uint_le(file_blocks(), blocks - 64 * KiB / 512);
	/* A partial discard keeps the cluster. */
	ck_assert_int_eq(run(disk, VPROXY_REQ_DISCARD, 0, 2 * 64 * KiB, 4096, NULL), 0);
	ck_assert_uint_ne(entry_of(2), 0);
	vp_plugin_close(plugin, disk);
	ck_assert_uint_eq(scan_clean(), 2);
}
END_TEST

START_TEST(write_zeroes_with_and_without_unmap)
{
	void *disk;
	uint64_t e0, e2;

	make_image(16 * MiB, 64 * KiB);
	disk = open_ok(0);
	write_pattern(disk, 0, 4 * 64 * KiB, 8);
	e0 = entry_of(0);
	e2 = entry_of(2);
	/* Without unmap: zeros, the clusters stay allocated. */
	ck_assert_int_eq(run(disk, VPROXY_REQ_WRITE_ZEROES, 0, 0, 64 * KiB, NULL), 0);
	ck_assert_uint_eq(entry_of(0), e0);
	check_zero(disk, 0, 64 * KiB);
	/* With unmap: whole clusters are freed, the edges zeroed. */
	ck_assert_int_eq(run(disk, VPROXY_REQ_WRITE_ZEROES, VPROXY_REQ_F_UNMAP,
	                     64 * KiB + 4096, 2 * 64 * KiB, NULL),
	                 0);
	ck_assert_uint_ne(entry_of(1), 0);
	ck_assert_uint_eq(entry_of(2), 0);
	ck_assert_uint_ne(entry_of(3), 0);
	check_zero(disk, 64 * KiB + 4096, 2 * 64 * KiB);
	/* What was outside the range is untouched. */
	{
		uint8_t *want = malloc(4 * 64 * KiB), *got = malloc(64 * KiB);

		fill(want, 4 * 64 * KiB, 8);
		ck_assert_int_eq(
		        run(disk, VPROXY_REQ_READ, 0, 3 * 64 * KiB, 64 * KiB, got), 0);
		ck_assert_int_eq(
		        memcmp(got + 4096, want + 3 * 64 * KiB + 4096, 64 * KiB - 4096),
		        0);
		ck_assert_int_eq(run(disk, VPROXY_REQ_READ, 0, 64 * KiB, 4096, got), 0);
		ck_assert_int_eq(memcmp(got, want + 64 * KiB, 4096), 0);
		free(want);
		free(got);
	}
	ck_assert_uint_ne(e2, 0);
	vp_plugin_close(plugin, disk);
	ck_assert_uint_eq(scan_clean(), 3);
}
END_TEST

START_TEST(freed_cluster_reused_after_flush)
{
	void *disk;
	uint64_t e1, size;

	make_image(16 * MiB, 64 * KiB);
	disk = open_ok(0);
	write_pattern(disk, 0, 2 * 64 * KiB, 9);
	e1 = entry_of(1);
	ck_assert_int_eq(run(disk, VPROXY_REQ_DISCARD, 0, 64 * KiB, 64 * KiB, NULL), 0);
	/* Not before a flush made the free durable... */
	write_pattern(disk, 5 * 64 * KiB, 4096, 10);
	ck_assert_uint_ne(entry_of(5), e1);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	size = file_size();
	/* ...then yes, and it reads as zeros where not written. */
	write_pattern(disk, 7 * 64 * KiB + 8192, 4096, 11);
	ck_assert_uint_eq(entry_of(7), e1);
	ck_assert_uint_eq(file_size(), size);
	check_zero(disk, 7 * 64 * KiB, 8192);
	check_zero(disk, 7 * 64 * KiB + 12288, 64 * KiB - 12288);
	check_data(disk, 7 * 64 * KiB + 8192, 4096, 11);
	vp_plugin_close(plugin, disk);
	ck_assert_uint_eq(scan_clean(), 3);
}
END_TEST

START_TEST(last_cluster_of_odd_sized_disk)
{
	const uint64_t size = 1 * MiB + 512;
	struct vproxy_disk_info info;
	void *disk = NULL;

	make_image(size, 64 * KiB);
	ck_assert_msg(open_disk(path, NULL, NULL, 0, &info, &disk) == 0, "%s", err);
	ck_assert_uint_eq(info.capacity, size);
	write_pattern(disk, size - 512, 512, 12);
	check_data(disk, size - 512, 512, 12);
	ck_assert_uint_ne(entry_of(16), 0);
	/* Past the end: refused. */
	{
		struct treq t;
		uint8_t buf[1024];

		memset(&t, 0, sizeof(t));
		t.owner.complete = treq_complete;
		t.req.op = VPROXY_REQ_READ;
		t.req.offset = size - 512;
		t.req.len = 1024;
		t.iov[0].iov_base = buf;
		t.iov[0].iov_len = sizeof(buf);
		t.req.iov = t.iov;
		t.req.iovcnt = 1;
		t.req.host_priv = &t;
		ck_assert_int_eq(plugin->submit(disk, &t.req), -EINVAL);
	}
	/* Discarding what is left of the last cluster frees it. */
	ck_assert_int_eq(run(disk, VPROXY_REQ_DISCARD, 0, 1 * MiB, 512, NULL), 0);
	ck_assert_uint_eq(entry_of(16), 0);
	check_zero(disk, size - 512, 512);
	vp_plugin_close(plugin, disk);
	ck_assert_uint_eq(scan_clean(), 0);
}
END_TEST

START_TEST(image_over_2tib)
{
	const uint64_t size = 3 * TiB;
	struct vproxy_disk_info info;
	void *disk = NULL;
	uint64_t last = size / (64 * KiB) - 1;

	make_image(size, 64 * KiB);
	ck_assert_msg(open_disk(path, NULL, NULL, 0, &info, &disk) == 0, "%s", err);
	ck_assert_uint_eq(info.capacity, size);
	write_pattern(disk, size - 4096, 4096, 13);
	write_pattern(disk, 2 * TiB + 64 * KiB, 4096, 14);
	check_data(disk, size - 4096, 4096, 13);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	vp_plugin_close(plugin, disk);
	ck_assert_uint_ne(entry_of(last), 0);
	ck_assert_uint_ne(entry_of(2 * TiB / (64 * KiB) + 1), 0);
	/* Sparse on the host too: a few MiB, not terabytes. */
	ck_assert_uint_lt(file_blocks() * 512, 16 * MiB);
	disk = open_ok(1);
	check_data(disk, size - 4096, 4096, 13);
	check_data(disk, 2 * TiB + 64 * KiB, 4096, 14);
	check_zero(disk, size - 8192, 4096);
	vp_plugin_close(plugin, disk);
	ck_assert_uint_eq(scan_clean(), 2);
}
END_TEST

/* Run "vproxy-img ARGS" (30 s at most); its stdout in out, exit status
 * returned, seconds taken in *secs. */
static int img_tool(const char *args, char *out, size_t outlen, double *secs)
{
	char cmd[512];
	struct timespec t0, t1;
	size_t n = 0;
	FILE *f;
	int st;

	snprintf(cmd, sizeof(cmd), "timeout 30 %s/plugins/sparse/vproxy-img %s",
	         VP_TEST_BIN_DIR, args);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	while (n + 1 < outlen && fgets(out + n, (int)(outlen - n), f))
		n += strlen(out + n);
	out[n] = '\0';
	st = pclose(f);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	*secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A 1 PiB image has 2^34 map entries (a 128 GiB map, nearly all hole):
 * opening, checking and mapping it must look only at the allocated parts
 * of the map, as an untrusted image could otherwise make them spin. */
START_TEST(petabyte_image_is_walked_by_allocation)
{
	const uint64_t size = 1024 * TiB;
	char args[256], out[4096];
	double secs;
	void *disk;

	make_image(size, 64 * KiB);
	disk = open_ok(0);
	write_pattern(disk, 0, 4096, 21);
	write_pattern(disk, 64 * KiB, 4096, 22); /* merges with the first */
	write_pattern(disk, size / 2, 4096, 23);
	write_pattern(disk, size - 4096, 4096, 24);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	check_data(disk, size / 2, 4096, 23);
	vp_plugin_close(plugin, disk);

	snprintf(args, sizeof(args), "map '%s'", path);
	ck_assert_int_eq(img_tool(args, out, sizeof(out), &secs), 0);
	ck_assert_msg(secs < 10, "map took %.1f s", secs);
	/* A header line and three extents. */
	ck_assert_msg(strstr(out, "0x2000000000000 ") != NULL, "%s", out);
	ck_assert_msg(strstr(out, "0x20000 ") != NULL, "%s", out); /* 2 clusters */
	ck_assert_msg(strstr(out, "0x3ffffffff0000 ") != NULL, "%s", out);
	{
		int lines = 0;

		for (const char *c = out; *c; c++)
			lines += *c == '\n';
		ck_assert_msg(lines == 4, "%s", out);
	}
	snprintf(args, sizeof(args), "check '%s'", path);
	ck_assert_int_eq(img_tool(args, out, sizeof(out), &secs), 0);
	ck_assert_msg(secs < 10, "check took %.1f s", secs);
	ck_assert_uint_eq(scan_clean(), 4);
}
END_TEST

/* Submit one request and wait: its status, or submit's error. */
static int try_run(void *disk, uint32_t op, uint64_t offset, uint64_t len, void *buf)
{
	struct treq t, *tp = &t;
	int rc;

	memset(&t, 0, sizeof(t));
	t.owner.complete = treq_complete;
	t.req.op = op;
	t.req.offset = offset;
	t.req.len = len;
	t.req.host_priv = &t;
	t.iov[0].iov_base = buf;
	t.iov[0].iov_len = (size_t)len;
	t.req.iov = buf ? t.iov : NULL;
	t.req.iovcnt = buf ? 1 : 0;
	rc = plugin->submit(disk, &t.req);
	if (rc < 0)
		return rc;
	wait_all(&tp, 1);
	return t.status;
}

/* An operator cuts a served image short (truncate, a copy over it):
 * with the map mmapped this raised SIGBUS and killed the server for every
 * guest.  Now the disk fails its requests with an error, and only it. */
START_TEST(image_cut_from_outside_fails_only_that_disk)
{
	uint8_t buf[4096];
	void *disk;

	/* The data cut off: the map still in the cache. */
	make_image(64 * MiB, 4 * KiB);
	disk = open_ok(0);
	for (unsigned i = 0; i < 8; i++)
		write_pattern(disk, i * 64 * KiB, 4096, 30 + i);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	/* Clusters were handed out in order: keep the first four. */
	ck_assert_int_eq(truncate(path, (off_t)(entry_of(0) + 4 * 4 * KiB)), 0);
	check_data(disk, 0, 4096, 30); /* still in the file */
	ck_assert_int_eq(try_run(disk, VPROXY_REQ_READ, 7 * 64 * KiB, 4096, buf), -EIO);
	/* Once cut, the disk fails everything rather than write into it. */
	ck_assert_int_eq(try_run(disk, VPROXY_REQ_READ, 0, 4096, buf), -EIO);
	ck_assert_int_eq(try_run(disk, VPROXY_REQ_WRITE, 0, 4096, buf), -EIO);
	ck_assert_int_eq(try_run(disk, VPROXY_REQ_FLUSH, 0, 0, NULL), -EIO);
	vp_plugin_close(plugin, disk);

	/* The map cut off, in parts never read yet: pread, not SIGBUS. */
	make_image(64 * MiB, 4 * KiB);
	disk = open_ok(0);
	write_pattern(disk, 0, 4096, 40);
	ck_assert_int_eq(truncate(path, 4096), 0);
	ck_assert_int_eq(try_run(disk, VPROXY_REQ_READ, 32 * MiB, 4096, buf), -EIO);
	ck_assert_int_eq(try_run(disk, VPROXY_REQ_WRITE, 48 * MiB, 4096, buf), -EIO);
	vp_plugin_close(plugin, disk);
}
END_TEST

START_TEST(read_only_refuses_writes)
{
	struct vproxy_disk_info info;
	void *disk = NULL;
	struct treq t;
	uint8_t buf[4096] = {0};

	make_image(16 * MiB, 64 * KiB);
	ck_assert_msg(open_disk(path, NULL, NULL, 1, &info, &disk) == 0, "%s", err);
	ck_assert_uint_ne(info.flags & VPROXY_DISK_READONLY, 0);
	memset(&t, 0, sizeof(t));
	t.owner.complete = treq_complete;
	t.req.op = VPROXY_REQ_WRITE;
	t.req.len = sizeof(buf);
	t.iov[0].iov_base = buf;
	t.iov[0].iov_len = sizeof(buf);
	t.req.iov = t.iov;
	t.req.iovcnt = 1;
	t.req.host_priv = &t;
	ck_assert_int_eq(plugin->submit(disk, &t.req), -EROFS);
	t.req.op = VPROXY_REQ_DISCARD;
	t.req.iov = NULL;
	t.req.iovcnt = 0;
	ck_assert_int_eq(plugin->submit(disk, &t.req), -EROFS);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	check_zero(disk, 0, 4096);
	vp_plugin_close(plugin, disk);
}
END_TEST

START_TEST(concurrent_writes_into_one_new_cluster)
{
	enum { N = 16 };
	struct treq t[N], *tp[N];
	uint8_t *bufs[N];
	void *disk;

	make_image(16 * MiB, 64 * KiB);
	disk = open_ok(0);
	for (unsigned i = 0; i < N; i++) {
		bufs[i] = malloc(4096);
		fill(bufs[i], 4096, 100 + i);
		start(disk, &t[i], VPROXY_REQ_WRITE, 0, 3 * 64 * KiB + i * 4096, 4096,
		      bufs[i]);
		tp[i] = &t[i];
	}
	wait_all(tp, N);
	for (unsigned i = 0; i < N; i++) {
		ck_assert_int_eq(t[i].status, 0);
		check_data(disk, 3 * 64 * KiB + i * 4096, 4096, 100 + i);
		free(bufs[i]);
	}
	vp_plugin_close(plugin, disk);
	/* One cluster, referenced once. */
	ck_assert_uint_eq(scan_clean(), 1);
}
END_TEST

START_TEST(mixed_concurrent_load_stays_consistent)
{
	enum { N = 64, SPAN = 40 };
	struct treq t[N], *tp[N];
	uint8_t *bufs[N];
	void *disk;
	unsigned seed = 1;

	make_image(4 * MiB, 4 * KiB);
	disk = open_ok(0);
	for (unsigned round = 0; round < 20; round++) {
		for (unsigned i = 0; i < N; i++) {
			uint64_t block;
			unsigned r;

			seed = seed * 1103515245u + 12345u;
			r = (seed >> 16) % 10;
			block = (seed >> 8) % SPAN;
			bufs[i] = malloc(8192);
			fill(bufs[i], 8192, i);
			tp[i] = &t[i];
			if (r < 4)
				start(disk, &t[i], VPROXY_REQ_WRITE, 0, block * 4096,
				      8192, bufs[i]);
			else if (r < 7)
				start(disk, &t[i], VPROXY_REQ_READ, 0, block * 4096, 8192,
				      bufs[i]);
			else if (r < 8)
				start(disk, &t[i], VPROXY_REQ_DISCARD, 0, block * 4096,
				      8192, NULL);
			else if (r < 9)
				start(disk, &t[i], VPROXY_REQ_WRITE_ZEROES,
				      VPROXY_REQ_F_UNMAP, block * 4096, 8192, NULL);
			else
				start(disk, &t[i], VPROXY_REQ_FLUSH, 0, 0, 0, NULL);
		}
		wait_all(tp, N);
		for (unsigned i = 0; i < N; i++) {
			ck_assert_int_eq(t[i].status, 0);
			free(bufs[i]);
		}
	}
	vp_plugin_close(plugin, disk);
	scan_clean();
}
END_TEST

START_TEST(threads_engine_round_trip)
{
	struct vproxy_disk_info info;
	void *disk = NULL;

	make_image(16 * MiB, 64 * KiB);
	ck_assert_msg(open_disk(path, NULL, "threads", 0, &info, &disk) == 0, "%s", err);
	write_pattern(disk, 3 * 64 * KiB + 512, 70000 / 512 * 512, 15);
	check_data(disk, 3 * 64 * KiB + 512, 70000 / 512 * 512, 15);
	ck_assert_int_eq(run(disk, VPROXY_REQ_DISCARD, 0, 0, 16 * MiB, NULL), 0);
	check_zero(disk, 3 * 64 * KiB, 2 * 64 * KiB);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	vp_plugin_close(plugin, disk);
	ck_assert_uint_eq(scan_clean(), 0);
}
END_TEST

START_TEST(direct_io_round_trip)
{
	struct vproxy_disk_info info;
	void *disk = NULL;
	uint8_t *buf = malloc(8192 + 512);

	make_image(16 * MiB, 64 * KiB);
	if (open_disk(path, "on", NULL, 0, &info, &disk) != 0) {
		/* /tmp on tmpfs: the refusal must say so. */
		ck_assert_msg(strstr(err, "O_DIRECT") != NULL, "%s", err);
		free(buf);
		return;
	}
	ck_assert_uint_eq(info.logical_block, 4096);
	write_pattern(disk, 0, 8192, 16);
	check_data(disk, 0, 8192, 16);
	/* An unaligned buffer goes through a bounce buffer. */
	fill(buf + 512, 8192, 17);
	ck_assert_int_eq(run(disk, VPROXY_REQ_WRITE, 0, 64 * KiB, 8192, buf + 512), 0);
	check_data(disk, 64 * KiB, 8192, 17);
	vp_plugin_close(plugin, disk);
	free(buf);
}
END_TEST

START_TEST(leak_reclaimed_at_open)
{
	void *disk;
	struct sparse_image img;
	char why[300];
	int fd;
	uint64_t end;

	make_image(16 * MiB, 64 * KiB);
	disk = open_ok(0);
	write_pattern(disk, 0, 4096, 18);
	vp_plugin_close(plugin, disk);
	/* What a crash between data write and map write leaves: data in a
	 * cluster nothing points at. */
	fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(sparse_open(&img, fd, why, sizeof(why)), 0);
	end = sparse_index_offset(&img, 4);
	{
		uint8_t junk[4096];

		memset(junk, 0x5a, sizeof(junk));
		ck_assert_int_eq(pwrite(fd, junk, sizeof(junk), (off_t)end),
		                 (ssize_t)sizeof(junk));
	}
	sparse_close(&img);
	close(fd);
	disk = open_ok(0);
	/* Reclaimed: the file ends after the one used cluster again. */
	ck_assert_uint_lt(file_size(), end);
	write_pattern(disk, 9 * 64 * KiB, 4096, 19);
	check_zero(disk, 9 * 64 * KiB + 4096, 64 * KiB - 4096);
	check_data(disk, 0, 4096, 18);
	vp_plugin_close(plugin, disk);
	ck_assert_uint_eq(scan_clean(), 2);
}
END_TEST

/* ---- bad input ---- */

static void expect_open_error(const char *file, const char *needle)
{
	struct vproxy_disk_info info;
	void *disk = NULL;
	int rc = open_disk(file, NULL, NULL, 0, &info, &disk);

	ck_assert_int_lt(rc, 0);
	ck_assert_msg(strstr(err, needle) != NULL, "error \"%s\" lacks \"%s\"", err,
	              needle);
}

START_TEST(bad_input_is_refused_clearly)
{
	char other[160];
	struct vproxy_disk_info info;
	void *disk = NULL;
	int fd;

	expect_open_error(NULL, "file: required");
	snprintf(other, sizeof(other), "%s/missing.img", dir);
	expect_open_error(other, "No such file");
	expect_open_error(dir, "is a directory");

	/* A foreign file. */
	snprintf(other, sizeof(other), "%s/foreign.img", dir);
	fd = open(other, O_RDWR | O_CREAT, 0644);
	ck_assert_int_eq(write(fd, "QFI\xfb this is not ours, padding padding", 38), 38);
	close(fd);
	expect_open_error(other, "not a vproxy sparse image");

	/* Truncated: the header survives, the map does not. */
	make_image(64 * MiB, 4 * KiB);
	ck_assert_int_eq(truncate(path, 8192), 0);
	expect_open_error(path, "truncated");

	/* A corrupt header. */
	make_image(64 * MiB, 64 * KiB);
	fd = open(path, O_RDWR);
	ck_assert_int_eq(pwrite(fd, "\x07", 1, 20), 1);
	close(fd);
	expect_open_error(path, "corrupt header");

	/* A map entry pointing past the end of the file. */
	make_image(64 * MiB, 64 * KiB);
	{
		uint64_t e = htole64(1ull << 40);

		fd = open(path, O_RDWR);
		ck_assert_int_eq(pwrite(fd, &e, 8, SPARSE_HEADER_AREA + 8), 8);
		close(fd);
	}
	expect_open_error(path, "image is corrupt");

	/* Parameters. */
	make_image(64 * MiB, 64 * KiB);
	ck_assert_int_eq(open_disk(path, "maybe", NULL, 0, &info, &disk), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "direct"));
	ck_assert_int_eq(open_disk(path, NULL, "aio", 0, &info, &disk), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "engine"));

	/* Two writers of one image. */
	disk = open_ok(0);
	expect_open_error(path, "in use");
	vp_plugin_close(plugin, disk);
}
END_TEST

static Suite *sparse_suite(void)
{
	Suite *s = suite_create("sparse");
	TCase *tc = tcase_create("plugin");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, open_reports_info);
	tcase_add_test(tc, unallocated_reads_zero_without_allocating);
	tcase_add_test(tc, write_allocates_and_updates_map);
	tcase_add_test(tc, write_across_clusters);
	tcase_add_test(tc, data_persists_across_reopen);
	tcase_add_test(tc, discard_frees_whole_clusters);
	tcase_add_test(tc, write_zeroes_with_and_without_unmap);
	tcase_add_test(tc, freed_cluster_reused_after_flush);
	tcase_add_test(tc, last_cluster_of_odd_sized_disk);
	tcase_add_test(tc, image_over_2tib);
	tcase_add_test(tc, petabyte_image_is_walked_by_allocation);
	tcase_add_test(tc, image_cut_from_outside_fails_only_that_disk);
	tcase_add_test(tc, read_only_refuses_writes);
	tcase_add_test(tc, concurrent_writes_into_one_new_cluster);
	tcase_add_test(tc, mixed_concurrent_load_stays_consistent);
	tcase_add_test(tc, threads_engine_round_trip);
	tcase_add_test(tc, direct_io_round_trip);
	tcase_add_test(tc, leak_reclaimed_at_open);
	tcase_add_test(tc, bad_input_is_refused_clearly);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(sparse_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
