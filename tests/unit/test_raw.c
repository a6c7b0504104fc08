/* SPDX-License-Identifier: MIT */
/* The raw plugin, loaded from the build tree through the plugin host with
 * completions in a libevent loop: vectored round trips, flush, discard
 * punching holes, write-zeroes with and without unmap, read-only, direct
 * I/O (and its refusal on tmpfs), the threads engine, the automatic
 * fallback when io_uring is forbidden, files over 2 TiB, and bad input. */
#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "plugin_test_util.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define TiB (1024ull * 1024ull * MiB)

static void setup(void)
{
	plugin_test_setup("raw", "disk.raw");
}

static void make_file(const char *p, uint64_t size)
{
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static void *open_ok(const char *engine, int ro)
{
	struct vproxy_disk_info info;
	void *disk = NULL;

	ck_assert_msg(open_disk(path, NULL, engine, ro, &info, &disk) == 0, "%s", err);
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
		/* Three iovecs of odd sizes: vectored all the way down. */
		size_t a = len / 3 / 512 * 512, b = len / 3;

		t->iov[0] = (struct iovec){buf, a};
		t->iov[1] = (struct iovec){(char *)buf + a, b};
		t->iov[2] = (struct iovec){(char *)buf + a + b, (size_t)len - a - b};
		t->req.iov = t->iov;
		t->req.iovcnt = 3;
	}
	ck_assert_int_eq(plugin->submit(disk, &t->req), 0);
}

static void check_zero(void *disk, uint64_t off, size_t len)
{
	uint8_t *got = malloc(len);

	memset(got, 0xee, len);
	ck_assert_int_eq(run(disk, VPROXY_REQ_READ, 0, off, len, got), 0);
	ck_assert_msg(count_nonzero(got, len) == 0, "non-zero bytes at %llu",
	              (unsigned long long)off);
	free(got);
}

/* The file itself, read directly. */
static void check_file(uint64_t off, size_t len, unsigned seed)
{
	uint8_t *want = malloc(len), *got = malloc(len);
	int fd = open(path, O_RDONLY);

	fill(want, len, seed);
	ck_assert_int_eq(pread(fd, got, len, (off_t)off), (ssize_t)len);
	ck_assert_int_eq(memcmp(want, got, len), 0);
	close(fd);
	free(want);
	free(got);
}

static uint64_t file_blocks(void)
{
	struct stat st;

	ck_assert_int_eq(stat(path, &st), 0);
	return (uint64_t)st.st_blocks;
}

START_TEST(open_reports_geometry)
{
	struct vproxy_disk_info info;
	void *disk = NULL;

	make_file(path, 64 * MiB + 700);
	ck_assert_msg(open_disk(path, NULL, NULL, 0, &info, &disk) == 0, "%s", err);
	/* The odd tail is not served. */
	ck_assert_uint_eq(info.capacity, 64 * MiB + 512);
	ck_assert_uint_eq(info.logical_block, 512);
	ck_assert_uint_ge(info.physical_block, 512);
	ck_assert_uint_eq(info.flags, VPROXY_DISK_FLUSH | VPROXY_DISK_DISCARD |
	                                      VPROXY_DISK_WRITE_ZEROES);
	vp_plugin_close(plugin, disk);
}
END_TEST

START_TEST(vectored_round_trip)
{
	void *disk;

	make_file(path, 16 * MiB);
	disk = open_ok(NULL, 0);
	write_pattern(disk, 4096, 128 * KiB, 1);
	write_pattern(disk, 16 * MiB - 1536, 1536, 2);
	check_data(disk, 4096, 128 * KiB, 1);
	check_data(disk, 16 * MiB - 1536, 1536, 2);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	check_file(4096, 128 * KiB, 1);
	/* Many at once. */
	{
		enum { N = 48 };
		struct treq t[N], *tp[N];
		uint8_t *bufs[N];

		for (unsigned i = 0; i < N; i++) {
			bufs[i] = malloc(8192);
			fill(bufs[i], 8192, 20 + i);
			start(disk, &t[i], VPROXY_REQ_WRITE, 0, 1 * MiB + i * 8192, 8192,
			      bufs[i]);
			tp[i] = &t[i];
		}
		wait_all(tp, N);
		for (unsigned i = 0; i < N; i++) {
			ck_assert_int_eq(t[i].status, 0);
			check_data(disk, 1 * MiB + i * 8192, 8192, 20 + i);
			free(bufs[i]);
		}
	}
	vp_plugin_close(plugin, disk);
}
END_TEST

START_TEST(discard_and_write_zeroes)
{
	void *disk;
	uint64_t blocks;

	make_file(path, 16 * MiB);
	disk = open_ok(NULL, 0);
	write_pattern(disk, 0, 4 * MiB, 3);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	blocks = file_blocks();
	/* Discard punches a hole: the file shrinks. */
	ck_assert_int_eq(run(disk, VPROXY_REQ_DISCARD, 0, 0, 1 * MiB, NULL), 0);
	ck_assert_uint_le(file_blocks(), blocks - 1 * MiB / 512);
	/* Write-zeroes without unmap keeps the blocks. */
	blocks = file_blocks();
	ck_assert_int_eq(run(disk, VPROXY_REQ_WRITE_ZEROES, 0, 1 * MiB, 1 * MiB, NULL),
	                 0);
	check_zero(disk, 1 * MiB, 1 * MiB);
	ck_assert_uint_ge(file_blocks(), blocks);
	/* With unmap they go. */
	ck_assert_int_eq(run(disk, VPROXY_REQ_WRITE_ZEROES, VPROXY_REQ_F_UNMAP,
	                     2 * MiB + 512, 1 * MiB, NULL),
	                 0);
	check_zero(disk, 2 * MiB + 512, 1 * MiB);
	ck_assert_uint_lt(file_blocks(), blocks);
	/* Neighbours intact. */
	{
		uint8_t *want = malloc(4 * MiB), *got = malloc(512);

		fill(want, 4 * MiB, 3);
		ck_assert_int_eq(run(disk, VPROXY_REQ_READ, 0, 2 * MiB, 512, got), 0);
		ck_assert_int_eq(memcmp(got, want + 2 * MiB, 512), 0);
		ck_assert_int_eq(run(disk, VPROXY_REQ_READ, 0, 3 * MiB + 512, 512, got),
		                 0);
		ck_assert_int_eq(memcmp(got, want + 3 * MiB + 512, 512), 0);
		free(want);
		free(got);
	}
	vp_plugin_close(plugin, disk);
}
END_TEST

START_TEST(read_only_refuses_writes)
{
	struct vproxy_disk_info info;
	void *disk = NULL;
	struct treq t;
	uint8_t buf[512];

	make_file(path, 1 * MiB);
	ck_assert_msg(open_disk(path, NULL, NULL, 1, &info, &disk) == 0, "%s", err);
	ck_assert_uint_ne(info.flags & VPROXY_DISK_READONLY, 0);
	memset(&t, 0, sizeof(t));
	t.owner.complete = treq_complete;
	t.req.host_priv = &t;
	t.req.op = VPROXY_REQ_WRITE;
	t.req.len = sizeof(buf);
	t.iov[0] = (struct iovec){buf, sizeof(buf)};
	t.req.iov = t.iov;
	t.req.iovcnt = 1;
	ck_assert_int_eq(plugin->submit(disk, &t.req), -EROFS);
	t.req.op = VPROXY_REQ_WRITE_ZEROES;
	ck_assert_int_eq(plugin->submit(disk, &t.req), -EROFS);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	check_zero(disk, 0, 4096);
	/* Beyond the end. */
	t.req.op = VPROXY_REQ_READ;
	t.req.offset = 1 * MiB;
	ck_assert_int_eq(plugin->submit(disk, &t.req), -EINVAL);
	vp_plugin_close(plugin, disk);
}
END_TEST

START_TEST(direct_io)
{
	struct vproxy_disk_info info;
	void *disk = NULL;
	uint8_t *buf = aligned_alloc(4096, 16384);
	const char *sysfs_file = "/sys/kernel/uevent_seqnum";

	make_file(path, 8 * MiB);
	ck_assert_msg(open_disk(path, "on", NULL, 0, &info, &disk) == 0, "%s", err);
	ck_assert_uint_eq(info.logical_block, 4096);
	write_pattern(disk, 8192, 8192, 4); /* malloc'd: maybe unaligned */
	fill(buf + 512, 8192, 5);           /* certainly unaligned: bounced */
	ck_assert_int_eq(run(disk, VPROXY_REQ_WRITE, 0, 64 * KiB, 8192, buf + 512), 0);
	check_data(disk, 8192, 8192, 4);
	check_data(disk, 64 * KiB, 8192, 5);
	check_file(64 * KiB, 8192, 5);
	vp_plugin_close(plugin, disk);
	free(buf);
	/* sysfs has no O_DIRECT (nor has tmpfs before Linux 6.6): a clear
	 * refusal. */
	ck_assert_int_lt(open_disk(sysfs_file, "on", NULL, 1, &info, &disk), 0);
	ck_assert_msg(strstr(err, "direct=on") && strstr(err, "O_DIRECT"), "%s", err);
}
END_TEST

START_TEST(threads_engine)
{
	void *disk;

	make_file(path, 16 * MiB);
	disk = open_ok("threads", 0);
	write_pattern(disk, 512, 300 * KiB, 6);
	check_data(disk, 512, 300 * KiB, 6);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	ck_assert_int_eq(
	        run(disk, VPROXY_REQ_WRITE_ZEROES, VPROXY_REQ_F_UNMAP, 512, 4096, NULL),
	        0);
	check_zero(disk, 512, 4096);
	ck_assert_int_eq(run(disk, VPROXY_REQ_DISCARD, 0, 1 * MiB, 1 * MiB, NULL), 0);
	vp_plugin_close(plugin, disk);
}
END_TEST

/* Forbid io_uring_setup in this (forked) test process, as restrictive
 * container seccomp profiles do. */
static void forbid_io_uring(void)
{
	struct sock_filter f[] = {
	        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
	        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
	        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};

	ck_assert_int_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
	ck_assert_int_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
}

START_TEST(falls_back_without_io_uring)
{
	struct vproxy_disk_info info;
	void *disk = NULL;
	char log[128], text[4096] = "";
	int fd, saved;
	ssize_t n;

	make_file(path, 4 * MiB);
	forbid_io_uring();
	/* Insisting on io_uring fails clearly. */
	ck_assert_int_lt(open_disk(path, NULL, "io_uring", 0, &info, &disk), 0);
	ck_assert_msg(strstr(err, "io_uring is not available"), "%s", err);
	/* auto falls back to threads and says so. */
	snprintf(log, sizeof(log), "%s/log", dir);
	fd = open(log, O_RDWR | O_CREAT | O_TRUNC, 0644);
	saved = dup(2);
	dup2(fd, 2);
	ck_assert_int_eq(open_disk(path, NULL, NULL, 0, &info, &disk), 0);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, text, sizeof(text) - 1, 0);
	close(fd);
	ck_assert_int_gt(n, 0);
	ck_assert_msg(strstr(text, "io_uring is not available") &&
	                      strstr(text, "threads engine"),
	              "%s", text);
	write_pattern(disk, 0, 64 * KiB, 7);
	check_data(disk, 0, 64 * KiB, 7);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	vp_plugin_close(plugin, disk);
}
END_TEST

START_TEST(file_over_2tib)
{
	void *disk;
	struct vproxy_disk_info info;

	make_file(path, 3 * TiB);
	ck_assert_msg(open_disk(path, NULL, NULL, 0, &info, &disk) == 0, "%s", err);
	ck_assert_uint_eq(info.capacity, 3 * TiB);
	write_pattern(disk, 3 * TiB - 8192, 8192, 8);
	write_pattern(disk, 2 * TiB + 512, 4096, 9);
	check_data(disk, 3 * TiB - 8192, 8192, 8);
	check_data(disk, 2 * TiB + 512, 4096, 9);
	check_zero(disk, 2 * TiB + 8192, 4096);
	vp_plugin_close(plugin, disk);
	check_file(3 * TiB - 8192, 8192, 8);
}
END_TEST

START_TEST(bad_input_is_refused_clearly)
{
	struct vproxy_disk_info info;
	void *disk = NULL;
	char other[160];

	ck_assert_int_eq(open_disk(NULL, NULL, NULL, 0, &info, &disk), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "file: required"));
	snprintf(other, sizeof(other), "%s/missing.raw", dir);
	ck_assert_int_eq(open_disk(other, NULL, NULL, 0, &info, &disk), -ENOENT);
	ck_assert_msg(strstr(err, "No such file"), "%s", err);
	ck_assert_int_eq(open_disk(dir, NULL, NULL, 0, &info, &disk), -EISDIR);
	ck_assert_msg(strstr(err, "is a directory"), "%s", err);
	ck_assert_int_lt(open_disk("/dev/null", NULL, NULL, 0, &info, &disk), 0);
	ck_assert_msg(strstr(err, "not a regular file or block device"), "%s", err);
	make_file(path, 0);
	ck_assert_int_lt(open_disk(path, NULL, NULL, 0, &info, &disk), 0);
	ck_assert_msg(strstr(err, "is empty"), "%s", err);
	make_file(path, 1 * MiB);
	ck_assert_int_eq(open_disk(path, "sometimes", NULL, 0, &info, &disk), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "direct"));
	ck_assert_int_eq(open_disk(path, NULL, "posix-aio", 0, &info, &disk), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "engine"));
	/* One writer at a time; a second one is told why. */
	disk = open_ok(NULL, 0);
	{
		void *again = NULL;

		ck_assert_int_lt(open_disk(path, NULL, NULL, 0, &info, &again), 0);
		ck_assert_msg(strstr(err, "in use"), "%s", err);
	}
	vp_plugin_close(plugin, disk);
}
END_TEST

static Suite *raw_suite(void)
{
	Suite *s = suite_create("raw");
	TCase *tc = tcase_create("plugin");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, open_reports_geometry);
	tcase_add_test(tc, vectored_round_trip);
	tcase_add_test(tc, discard_and_write_zeroes);
	tcase_add_test(tc, read_only_refuses_writes);
	tcase_add_test(tc, direct_io);
	tcase_add_test(tc, threads_engine);
	tcase_add_test(tc, file_over_2tib);
	tcase_add_test(tc, bad_input_is_refused_clearly);
	/* Last: without fork mode its seccomp filter would stay. */
	tcase_add_test(tc, falls_back_without_io_uring);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(raw_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
