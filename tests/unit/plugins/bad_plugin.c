/* SPDX-License-Identifier: MIT */
/* Broken plugins for test_plugin: one source, one defect per build, chosen
 * by a BAD_* definition from CMakeLists.txt. */
#include <stddef.h>
#include <vproxy/plugin.h>

static int bad_open(const struct vproxy_params *params, int read_only,
		    struct vproxy_disk_info *info, void **disk, char *err,
		    size_t errlen)
{
	(void)params;
	(void)read_only;
	(void)info;
	(void)disk;
	(void)err;
	(void)errlen;
	return -1;
}

__attribute__((unused)) static int bad_submit(void *disk, struct vproxy_req *req)
{
	(void)disk;
	(void)req;
	return -1;
}

static void bad_close(void *disk)
{
	(void)disk;
}

static const struct vproxy_plugin bad_plugin = {
#ifdef BAD_ABI
	.abi_version = VPROXY_PLUGIN_ABI_VERSION + 1,
#else
	.abi_version = VPROXY_PLUGIN_ABI_VERSION,
#endif
#ifdef BAD_SIZE
	.size = offsetof(struct vproxy_plugin, open),
#elif defined(V1_SIZE)
	/* Built before cancel() was appended: still accepted. */
	.size = VPROXY_PLUGIN_SIZE_V1,
#else
	.size = sizeof(struct vproxy_plugin),
#endif
#ifdef BAD_NAME
	.name = "other",
#else
	.name = PLUGIN_NAME,
#endif
	.open = bad_open,
#ifndef BAD_NO_SUBMIT
	.submit = bad_submit,
#endif
	.close = bad_close,
};

#ifdef BAD_NO_SYMBOL
#define INIT_NAME vproxy_plugin_init_misspelled
#else
#define INIT_NAME vproxy_plugin_init
#endif

__attribute__((visibility("default"))) const struct vproxy_plugin *
INIT_NAME(const struct vproxy_host *host);

__attribute__((visibility("default"))) const struct vproxy_plugin *
INIT_NAME(const struct vproxy_host *host)
{
	(void)host;
#ifdef BAD_NULL
	(void)&bad_plugin; /* present, but not handed out */
	return NULL;
#else
	return &bad_plugin;
#endif
}
