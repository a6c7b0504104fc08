/* SPDX-License-Identifier: MIT */
/*
 * The sparse plugin when its file fails: EIO injected on data reads, data
 * writes, map writes, size changes, punches and fdatasync (through the
 * test engine, vpio_test_sys.h), and a real ENOSPC when the image grows on
 * a small tmpfs mounted for the test.  Every time: the request that met
 * the fault fails with that error and only it, the disk goes on serving,
 * what was written before reads back, and the image passes
 * `vproxy-img check` afterwards.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vpio_test_sys.h"
#include "plugin_test_util.h"

/* The plugin itself, compiled in, so the test engine reaches it. */
#include "../../plugins/sparse/sparse.c"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define CS (64 * KiB)

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

/* vproxy-img check FILE: its exit status (0 clean, 1 corrupt). */
static int img_check(const char *file)
{
	char cmd[512];
	int st;

	snprintf(cmd, sizeof(cmd), "timeout 30 %s/plugins/sparse/vproxy-img check '%s'",
	         VP_TEST_BIN_DIR, file);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void *open_image(const char *file, uint64_t size)
{
	struct vproxy_disk_info info;
	void *disk = NULL;
	char why[300];

	ck_assert_msg(sparse_create(file, size, CS, true, why, sizeof(why)) == 0, "%s",
	              why);
	ck_assert_msg(open_disk(file, NULL, NULL, 0, &info, &disk) == 0, "%s", err);
	return disk;
}

static uint64_t data_offset(void *disk)
{
	return ((struct sparse_disk *)disk)->img.h.data_offset;
}

static void setup(void)
{
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	vp_plugin_set_event_base(base);
	plugin = VPROXY_PLUGIN_INIT_FN(vp_plugin_host());
	ck_assert_ptr_nonnull(plugin);
	snprintf(path, sizeof(path), "%s/disk.img", dir);
	tsys_install();
}

/* dir itself is main()'s: removed there even when a test failed. */
static void faults_teardown(void)
{
	tsys_uninstall();
	vp_plugin_set_event_base(NULL);
	event_base_free(base);
}

START_TEST(eio_on_reads_fails_only_those_reads)
{
	uint8_t buf[8192];
	void *disk = open_image(path, 16 * MiB);
	uint64_t d0 = data_offset(disk);

	ck_assert_int_eq(write_pattern_status(disk, 0, 8192, 1), 0);
	ck_assert_int_eq(write_pattern_status(disk, 4 * CS, 8192, 2), 0);
	/* Cluster 0 (virtual 0) is the first allocated. */
	tsys_fail_next(TSYS_READ, d0, d0 + CS, EIO, 1);
	ck_assert_int_eq(run(disk, VPROXY_REQ_READ, 0, 0, 8192, buf), -EIO);
	check_data(disk, 4 * CS, 8192, 2);
	check_data(disk, 0, 8192, 1); /* the fault was one read */
	ck_assert_uint_eq(tsys_faults, 1);
	vp_plugin_close(plugin, disk);
	ck_assert_int_eq(img_check(path), 0);
}
END_TEST

START_TEST(eio_on_a_new_clusters_data_leaves_the_map_alone)
{
	uint8_t buf[4096];
	void *disk = open_image(path, 16 * MiB);
	uint64_t d0 = data_offset(disk);

	ck_assert_int_eq(write_pattern_status(disk, 0, 4096, 1), 0);
	/* The next cluster handed out is index 1. */
	tsys_fail_next(TSYS_WRITE, d0 + CS, d0 + 2 * CS, EIO, 1);
	ck_assert_int_eq(write_pattern_status(disk, 3 * CS, 4096, 2), -EIO);
	/* Nothing points at the cluster the failed write had. */
	ck_assert_int_eq(run(disk, VPROXY_REQ_READ, 0, 3 * CS, 4096, buf), 0);
	ck_assert_uint_eq(count_nonzero(buf, sizeof(buf)), 0);
	/* The disk goes on: the same write again, others, a flush. */
	ck_assert_int_eq(write_pattern_status(disk, 3 * CS, 4096, 3), 0);
	ck_assert_int_eq(write_pattern_status(disk, 5 * CS, 4096, 4), 0);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	check_data(disk, 0, 4096, 1);
	check_data(disk, 3 * CS, 4096, 3);
	check_data(disk, 5 * CS, 4096, 4);
	vp_plugin_close(plugin, disk);
	ck_assert_int_eq(img_check(path), 0);
}
END_TEST

START_TEST(eio_on_a_map_write_keeps_the_image_consistent)
{
	void *disk = open_image(path, 16 * MiB);
	uint64_t d0 = data_offset(disk);

	ck_assert_int_eq(write_pattern_status(disk, 0, 4096, 1), 0);
	/* The map: everything before the data area. */
	tsys_fail_next(TSYS_WRITE, 0, d0, EIO, 1);
	ck_assert_int_eq(write_pattern_status(disk, 7 * CS, 4096, 2), -EIO);
	ck_assert_int_eq(write_pattern_status(disk, 7 * CS, 4096, 3), 0);
	ck_assert_int_eq(write_pattern_status(disk, 9 * CS, 4096, 4), 0);
	/* A discard whose map write fails: an error, nothing freed twice. */
	tsys_fail_next(TSYS_WRITE, 0, d0, EIO, 1);
	ck_assert_int_ne(run(disk, VPROXY_REQ_DISCARD, 0, 9 * CS, CS, NULL), 0);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	check_data(disk, 0, 4096, 1);
	check_data(disk, 7 * CS, 4096, 3);
	ck_assert_int_eq(run(disk, VPROXY_REQ_DISCARD, 0, 9 * CS, CS, NULL), 0);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	for (unsigned i = 0; i < 8; i++)
		ck_assert_int_eq(write_pattern_status(disk, (20 + i) * CS, 4096, 10 + i), 0);
	for (unsigned i = 0; i < 8; i++)
		check_data(disk, (20 + i) * CS, 4096, 10 + i);
	vp_plugin_close(plugin, disk);
	ck_assert_int_eq(img_check(path), 0);
}
END_TEST

START_TEST(eio_on_flush_punch_and_growth)
{
	void *disk = open_image(path, 64 * MiB);
	uint64_t d0 = data_offset(disk);

	ck_assert_int_eq(write_pattern_status(disk, 0, 4096, 1), 0);
	/* A punch refused: DISCARD is a hint; the cluster is zeroed again
	 * before it is reused. */
	tsys_fail_next(TSYS_FALLOCATE, d0, d0 + CS, EIO, 1);
	ck_assert_int_eq(run(disk, VPROXY_REQ_DISCARD, 0, 0, CS, NULL), 0);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	/* Growing the file fails (a full file system): that write only. */
	tsys_fail_next(TSYS_TRUNCATE, 0, UINT64_MAX, ENOSPC, 1);
	for (unsigned i = 0, nospc = 0; i < 40; i++) {
		int st = write_pattern_status(disk, (uint64_t)i * CS, 4096, 20 + i);

		ck_assert_msg(st == 0 || (st == -ENOSPC && ++nospc == 1), "write %u: %s",
		              i, strerror(-st));
		if (st == 0)
			check_data(disk, (uint64_t)i * CS, 4096, 20 + i);
	}
	ck_assert_uint_eq(tsys_faults, 2);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	vp_plugin_close(plugin, disk);
	ck_assert_int_eq(img_check(path), 0);
}
END_TEST

/* After a failed fdatasync the kernel may have dropped the pages it could
 * not write, so no later FLUSH may succeed (the guest would believe lost
 * writes durable) and freed clusters are not reused; reads and writes go
 * on, and the image opened again flushes again and checks clean. */
START_TEST(failed_flush_is_sticky_until_reopened)
{
	struct vproxy_disk_info info;
	void *disk = open_image(path, 64 * MiB);
	uint64_t allocated;

	for (unsigned i = 0; i < 4; i++)
		ck_assert_int_eq(write_pattern_status(disk, (uint64_t)i * CS, 4096, 1 + i), 0);
	tsys_fail_next(TSYS_SYNC, 0, 0, EIO, 1);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), -EIO);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), -EIO);
	ck_assert_uint_eq(tsys_faults, 1);
	/* A discarded cluster stays allocated: no flush can make its free
	 * durable, so it must not be handed out again. */
	allocated = ((struct sparse_disk *)disk)->allocated;
	ck_assert_int_eq(run(disk, VPROXY_REQ_DISCARD, 0, 0, CS, NULL), 0);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), -EIO);
	for (unsigned i = 4; i < 40; i++)
		ck_assert_int_eq(write_pattern_status(disk, (uint64_t)i * CS, 4096, 1 + i), 0);
	ck_assert_uint_eq(((struct sparse_disk *)disk)->allocated, allocated + 36);
	for (unsigned i = 1; i < 40; i++)
		check_data(disk, (uint64_t)i * CS, 4096, 1 + i);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), -EIO);
	vp_plugin_close(plugin, disk);
	ck_assert_int_eq(img_check(path), 0);
	ck_assert_msg(open_disk(path, NULL, NULL, 0, &info, &disk) == 0, "%s", err);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	for (unsigned i = 1; i < 40; i++)
		check_data(disk, (uint64_t)i * CS, 4096, 1 + i);
	vp_plugin_close(plugin, disk);
}
END_TEST

/* The file grows ahead of use and an fdatasync makes the size durable
 * before a map entry points there.  When that fdatasync fails, the write
 * waiting on it fails; the next one must start a sync of its own rather
 * than wait for one that already failed. */
START_TEST(failed_growth_sync_does_not_stall_later_writes)
{
	void *disk = open_image(path, 64 * MiB);

	/* The first write grows the file by 16 clusters (and syncs). */
	for (unsigned i = 0; i < 16; i++)
		ck_assert_int_eq(write_pattern_status(disk, (uint64_t)i * CS, 4096, 40 + i), 0);
	tsys_fail_next(TSYS_SYNC, 0, 0, EIO, 1);
	ck_assert_int_eq(write_pattern_status(disk, 16 * CS, 4096, 56), -EIO);
	ck_assert_int_eq(write_pattern_status(disk, 17 * CS, 4096, 57), 0);
	ck_assert_int_eq(write_pattern_status(disk, 16 * CS, 4096, 58), 0);
	check_data(disk, 16 * CS, 4096, 58);
	check_data(disk, 17 * CS, 4096, 57);
	check_data(disk, 3 * CS, 4096, 43);
	/* A failed fdatasync fails every later FLUSH (see above). */
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), -EIO);
	vp_plugin_close(plugin, disk);
	ck_assert_int_eq(img_check(path), 0);
}
END_TEST

/* ---- a real full file system ---- */

/* Unchecked fixtures (in the parent): the mount goes even if a test dies. */
static void tmpfs_setup(void)
{
	tmpfs_mount("enospc", "size=3m");
}

static void tmpfs_teardown(void)
{
	tmpfs_unmount();
}

START_TEST(enospc_when_growing_on_a_full_file_system)
{
	char file[128];
	void *disk;
	unsigned ok = 0, full = 0, i;
	int st;

	if (!tmpfs_mounted) {
		fprintf(stderr, "enospc test skipped: %s\n", tmpfs_err);
		return;
	}
	tsys_uninstall(); /* the real engines, on a real full disk */
	snprintf(file, sizeof(file), "%s/disk.img", tmpfs_dir);
	disk = open_image(file, 64 * MiB);
	/* 3 MiB hold the map and about 45 whole clusters: write until full. */
	for (i = 0; i < 200 && full < 3; i++) {
		st = write_pattern_status(disk, (uint64_t)i * CS, CS, 100 + i);
		ck_assert_msg(st == 0 || st == -ENOSPC, "write %u: %s", i, strerror(-st));
		if (st == 0)
			ok++;
		else
			full++;
	}
	ck_assert_uint_gt(ok, 4);
	ck_assert_uint_eq(full, 3);
	/* Still serving: what fitted reads back, FLUSH works. */
	for (unsigned j = 0; j < i; j++) {
		uint8_t buf[8192];

		ck_assert_int_eq(
		        run(disk, VPROXY_REQ_READ, 0, (uint64_t)j * CS, 8192, buf), 0);
	}
	check_data(disk, 0, 8192, 100);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	/* Freeing space lets writes succeed again. */
	ck_assert_int_eq(run(disk, VPROXY_REQ_DISCARD, 0, 0, 16 * CS, NULL), 0);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	ck_assert_int_eq(run(disk, VPROXY_REQ_FLUSH, 0, 0, 0, NULL), 0);
	ck_assert_int_eq(write_pattern_status(disk, 63 * CS, 8192, 7), 0);
	check_data(disk, 63 * CS, 8192, 7);
	vp_plugin_close(plugin, disk);
	ck_assert_int_eq(img_check(file), 0);
	unlink(file);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sparse_faults");
	TCase *tc = tcase_create("core");
	TCase *full = tcase_create("full");
	SRunner *sr;
	char cmd[128];
	int failed;

	snprintf(dir, sizeof(dir), "/tmp/vproxy-test-sparse-faults.XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}

	tcase_add_checked_fixture(tc, setup, faults_teardown);
	tcase_add_test(tc, eio_on_reads_fails_only_those_reads);
	tcase_add_test(tc, eio_on_a_new_clusters_data_leaves_the_map_alone);
	tcase_add_test(tc, eio_on_a_map_write_keeps_the_image_consistent);
	tcase_add_test(tc, eio_on_flush_punch_and_growth);
	tcase_add_test(tc, failed_growth_sync_does_not_stall_later_writes);
	tcase_add_test(tc, failed_flush_is_sticky_until_reopened);
	suite_add_tcase(s, tc);
	tcase_add_unchecked_fixture(full, tmpfs_setup, tmpfs_teardown);
	tcase_add_checked_fixture(full, setup, faults_teardown);
	tcase_add_test(full, enospc_when_growing_on_a_full_file_system);
	suite_add_tcase(s, full);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", dir);
	if (system(cmd) != 0)
		failed++;
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
