/* SPDX-License-Identifier: MIT */
/*
 * Allocation failures in the raw plugin and its vpio engine
 * (plugin_alloc.h): the source is compiled in, so every allocation of
 * open, I/O and close fails in turn, with the io_uring engine and with
 * worker threads, and with O_DIRECT where the file system allows it.
 */
#include <fcntl.h>
#include <unistd.h>

#define PLUGIN_ALLOC_NAME "raw"

#include "../../plugins/raw/raw.c"
#include "plugin_alloc.h"

static char dir[64], file[128];
static const char *engine, *direct;

static struct vproxy_params *alloc_params(unsigned run)
{
	struct vproxy_params *p = vp_params_new();
	int fd;

	(void)run;
	fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 4 * PA_MiB), 0);
	close(fd);
	if (p && (vp_params_set(p, "file", file, 1) < 0 ||
	          vp_params_set(p, "engine", engine, 2) < 0 ||
	          (direct && vp_params_set(p, "direct", direct, 3) < 0))) {
		vp_params_free(p);
		return NULL;
	}
	return p;
}

static void alloc_after_close(unsigned run)
{
	(void)run;
}

static void setup(void)
{
	plugin_alloc_setup();
	snprintf(dir, sizeof(dir), "/tmp/vproxy-test-raw-alloc.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(file, sizeof(file), "%s/disk.img", dir);
}

static void teardown(void)
{
	unlink(file);
	rmdir(dir);
	plugin_alloc_teardown();
}

static void walk(const char *e, const char *d, const char *what)
{
	engine = e;
	direct = d;
	plugin_alloc_walk(VPROXY_PLUGIN_INIT_FN(vp_plugin_host()), what);
}

START_TEST(io_uring)
{
	walk("io_uring", NULL, "raw_alloc io_uring");
}
END_TEST

START_TEST(threads)
{
	walk("threads", NULL, "raw_alloc threads");
}
END_TEST

START_TEST(threads_direct)
{
	/* O_DIRECT's open and I/O paths; the test's buffers happen to be
	 * aligned, so the bounce buffer (posix_memalign) is not reached. */
	walk("threads", "on", "raw_alloc threads direct=on");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("raw_alloc");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, io_uring);
	tcase_add_test(tc, threads);
	tcase_add_test(tc, threads_direct);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
