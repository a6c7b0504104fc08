/* SPDX-License-Identifier: MIT */
/*
 * The raw plugin when its file fails: EIO injected on reads, writes,
 * fdatasync and write-zeroes through the test engine (vpio_test_sys.h),
 * and a real ENOSPC writing into the holes of a sparse raw file on a
 * small tmpfs mounted for the test.  The request that met the fault
 * fails with that error, and only it; the disk goes on serving.
 */
#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vpio_test_sys.h"
#include "plugin_test_util.h"

/* The plugin itself, compiled in, so the test engine reaches it. */
#include "../../plugins/raw/raw.c"

#define KiB 1024ull
#define MiB (1024ull * KiB)

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
		t->iov[0].iov_base = buf;
		t->iov[0].iov_len = (size_t)len;
		t->req.iov = t->iov;
		t->req.iovcnt = 1;
	}
	ck_assert_int_eq(plugin->submit(disk, &t->req), 0);
}

static void *open_file(const char *file, uint64_t size)
{
	struct vproxy_disk_info info;
	void *disk = NULL;
	int fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0644);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
	ck_assert_msg(open_disk(file, NULL, NULL, 0, &info, &disk) == 0, "%s", err);
	return disk;
}

static void setup(void)
{
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	vp_plugin_set_event_base(base);
	plugin = VPROXY_PLUGIN_INIT_FN(vp_plugin_host());
	ck_assert_ptr_nonnull(plugin);
	snprintf(path, sizeof(path), "%s/disk.raw", dir);
	tsys_install();
}

/* dir itself is main()'s: removed there even when a test failed. */
static void faults_teardown(void)
{
	tsys_uninstall();
	vp_plugin_set_event_base(NULL);
	event_base_free(base);
}

START_TEST(eio_fails_only_the_request_that_met_it)
{
	uint8_t buf[8192];
	struct vproxy_disk_info info;
	void *disk = open_file(path, 8 * MiB);

	ck_assert_int_eq(write_pattern_status(disk, 0, 8192, 1), 0);
	ck_assert_int_eq(write_pattern_status(disk, 1 * MiB, 8192, 2), 0);
	tsys_fail_next(TSYS_READ, 0, 4096, EIO, 1);
	ck_assert_int_eq(run(disk, VPROXY_REQ_READ, 0, 0, 8192, buf), -EIO);
	check_data(disk, 1 * MiB, 8192, 2);
	check_data(disk, 0, 8192, 1);
	tsys_fail_next(TSYS_WRITE, 2 * MiB, 3 * MiB, EIO, 1);
	ck_assert_int_eq(write_pattern_status(disk, 2 * MiB, 8192, 3), -EIO);
	ck_assert_int_eq(write_pattern_status(disk, 2 * MiB, 8192, 4), 0);
	check_data(disk, 2 * MiB, 8192, 4);
	/* fdatasync: the kernel may have dropped what it could not write, so
	 * every later FLUSH fails too, while reads and writes go on. */
	tsys_fail_next(TSYS_SYNC, 0, 0, EIO, 1);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), -EIO);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), -EIO);
	ck_assert_int_eq(write_pattern_status(disk, 3 * MiB, 8192, 5), 0);
	check_data(disk, 3 * MiB, 8192, 5);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), -EIO);
	/* WRITE_ZEROES without unmap: every way of zeroing fails once. */
	tsys_fail_next(TSYS_FALLOCATE, 0, 8192, EIO, 1);
	ck_assert_int_eq(run(disk, VPROXY_REQ_WRITE_ZEROES, 0, 0, 8192, NULL), -EIO);
	check_data(disk, 1 * MiB, 8192, 2);
	ck_assert_int_eq(run(disk, VPROXY_REQ_WRITE_ZEROES, 0, 0, 8192, NULL), 0);
	ck_assert_int_eq(run(disk, VPROXY_REQ_READ, 0, 0, 8192, buf), 0);
	ck_assert_uint_eq(count_nonzero(buf, sizeof(buf)), 0);
	ck_assert_uint_eq(tsys_faults, 4);
	vp_plugin_close(plugin, disk);
	/* Opened again, the disk flushes again. */
	ck_assert_msg(open_disk(path, NULL, NULL, 0, &info, &disk) == 0, "%s", err);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	check_data(disk, 3 * MiB, 8192, 5);
	vp_plugin_close(plugin, disk);
}
END_TEST

/* ---- a real full file system ---- */

/* Unchecked fixtures (in the parent): the mount goes even if a test dies. */
static void tmpfs_setup(void)
{
	tmpfs_mount("raw-enospc", "size=1m");
}

static void tmpfs_teardown(void)
{
	tmpfs_unmount();
}

START_TEST(enospc_in_a_sparse_raw_file)
{
	char file[128];
	unsigned ok = 0, full = 0, i;
	void *disk;

	if (!tmpfs_mounted) {
		fprintf(stderr, "enospc test skipped: %s\n", tmpfs_err);
		return;
	}
	tsys_uninstall(); /* the real engines, on a real full disk */
	snprintf(file, sizeof(file), "%s/disk.raw", tmpfs_dir);
	disk = open_file(file, 16 * MiB); /* on 1 MiB: a hole, mostly */
	for (i = 0; i < 64 && full < 2; i++) {
		int st = write_pattern_status(disk, (uint64_t)i * 64 * KiB, 64 * KiB, 50 + i);

		ck_assert_msg(st == 0 || st == -ENOSPC, "write %u: %s", i, strerror(-st));
		if (st == 0)
			ok++;
		else
			full++;
	}
	ck_assert_uint_gt(ok, 4);
	ck_assert_uint_eq(full, 2);
	check_data(disk, 0, 64 * KiB, 50);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	/* Space given back, writes succeed again. */
	ck_assert_int_eq(run(disk, VPROXY_REQ_DISCARD, 0, 0, 4 * 64 * KiB, NULL), 0);
	ck_assert_int_eq(write_pattern_status(disk, 15 * MiB, 64 * KiB, 9), 0);
	check_data(disk, 15 * MiB, 64 * KiB, 9);
	vp_plugin_close(plugin, disk);
	unlink(file);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("raw_faults");
	TCase *tc = tcase_create("core");
	TCase *fullfs = tcase_create("full");
	SRunner *sr;
	char cmd[128];
	int failed;

	snprintf(dir, sizeof(dir), "/tmp/vproxy-test-raw-faults.XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}
	tcase_add_checked_fixture(tc, setup, faults_teardown);
	tcase_add_test(tc, eio_fails_only_the_request_that_met_it);
	suite_add_tcase(s, tc);
	tcase_add_unchecked_fixture(fullfs, tmpfs_setup, tmpfs_teardown);
	tcase_add_checked_fixture(fullfs, setup, faults_teardown);
	tcase_add_test(fullfs, enospc_in_a_sparse_raw_file);
	suite_add_tcase(s, fullfs);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", dir);
	if (system(cmd) != 0)
		failed++;
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
