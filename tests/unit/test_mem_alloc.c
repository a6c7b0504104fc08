/* SPDX-License-Identifier: MIT */
/*
 * Allocation failures in the mem plugin (plugin_alloc.h): its source is
 * compiled in, so every allocation of its open, I/O and close paths
 * fails in turn.
 */
#define PLUGIN_ALLOC_NAME "mem"

#include "../../plugins/mem/mem.c"
#include "plugin_alloc.h"

static struct vproxy_params *alloc_params(unsigned run)
{
	struct vproxy_params *p = vp_params_new();

	(void)run;
	if (p && vp_params_set(p, "size", "4M", 1) < 0) {
		vp_params_free(p);
		return NULL;
	}
	return p;
}

static void alloc_after_close(unsigned run)
{
	(void)run;
}

START_TEST(allocation_failures)
{
	plugin_alloc_walk(VPROXY_PLUGIN_INIT_FN(vp_plugin_host()), "mem_alloc");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mem_alloc");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, plugin_alloc_setup, plugin_alloc_teardown);
	tcase_add_test(tc, allocation_failures);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
