/* SPDX-License-Identifier: MIT */
/*
 * Allocation failures in the sparse plugin, its vpio engine and the format
 * code (plugin_alloc.h): the source is compiled in, so every allocation
 * of open, I/O (cluster allocation, map pages, discard, write zeroes,
 * flush) and close fails in turn.  After each run the image must pass
 * `vproxy-img check`.
 */
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#define PLUGIN_ALLOC_NAME "sparse"

#include "../../plugins/sparse/sparse.c"
#include "plugin_alloc.h"

static char dir[64], file[128];
static const char *engine;

static struct vproxy_params *alloc_params(unsigned run)
{
	struct vproxy_params *p = vp_params_new();
	char why[300];

	(void)run;
	unlink(file);
	ck_assert_msg(sparse_create(file, 4 * PA_MiB, 65536, true, why, sizeof(why)) == 0,
	              "%s", why);
	if (p && (vp_params_set(p, "file", file, 1) < 0 ||
	          vp_params_set(p, "engine", engine, 2) < 0)) {
		vp_params_free(p);
		return NULL;
	}
	return p;
}

/* Whatever failed, the image on disk is consistent. */
static void alloc_after_close(unsigned run)
{
	char cmd[512];
	int st;

	snprintf(cmd, sizeof(cmd),
	         "timeout 30 %s/plugins/sparse/vproxy-img check '%s' >/dev/null",
	         VP_TEST_BIN_DIR, file);
	st = system(cmd);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	              "allocation %u: the image does not check clean", run);
}

static void setup(void)
{
	plugin_alloc_setup();
	snprintf(dir, sizeof(dir), "/tmp/vproxy-test-sparse-alloc.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(file, sizeof(file), "%s/disk.img", dir);
}

static void teardown(void)
{
	unlink(file);
	rmdir(dir);
	plugin_alloc_teardown();
}

START_TEST(io_uring)
{
	engine = "io_uring";
	plugin_alloc_walk(VPROXY_PLUGIN_INIT_FN(vp_plugin_host()), "sparse_alloc io_uring");
}
END_TEST

START_TEST(threads)
{
	engine = "threads";
	plugin_alloc_walk(VPROXY_PLUGIN_INIT_FN(vp_plugin_host()), "sparse_alloc threads");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sparse_alloc");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, io_uring);
	tcase_add_test(tc, threads);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
