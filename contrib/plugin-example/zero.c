/* SPDX-License-Identifier: MIT */
/*
 * An example third-party vproxy plugin, built outside the source tree
 * against the installed header:
 *
 *   cc $(pkg-config --cflags vproxy-plugin) -O2 -fPIC -shared \
 *      -o zero.so zero.c
 *   cp zero.so "$(pkg-config --variable=plugindir vproxy-plugin)"
 *
 * "zero" serves a read-only disk of zeros of a configured size: reads fill
 * the guest's buffers with zeros, everything else is refused.  Useful as a
 * template, and to measure the server's own cost without storage behind it.
 *
 *   [device scratch]
 *   guest = web1
 *   id = 1
 *   plugin = zero
 *   size = 1G
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vproxy/plugin.h>

struct zero_disk {
	uint64_t size;
};

/* Saved from vproxy_plugin_init(): the only way to reach the server. */
static const struct vproxy_host *host;

static const char *const zero_keys[] = {"size", NULL};

static int zero_open(const struct vproxy_params *params, int read_only,
		     struct vproxy_disk_info *info, void **disk, char *err, size_t errlen)
{
	const char *size_text = host->param(params, "size");
	struct zero_disk *z;
	uint64_t size;

	(void)read_only; /* always read-only */
	if (!size_text) {
		snprintf(err, errlen, "size: required (e.g. size = 1G)");
		return -EINVAL;
	}
	if (host->parse_size(size_text, &size) || size == 0 || size % 512) {
		snprintf(err, errlen, "size: '%s' is not a positive multiple of 512",
			 size_text);
		return -EINVAL;
	}
	z = calloc(1, sizeof(*z));
	if (!z) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	z->size = size;
	memset(info, 0, sizeof(*info));
	info->capacity = size;
	info->logical_block = 512;
	info->physical_block = 512;
	info->flags = VPROXY_DISK_READONLY;
	*disk = z;
	return 0;
}

static int zero_submit(void *disk, struct vproxy_req *req)
{
	struct zero_disk *z = disk;
	int status = 0;

	if (req->op != VPROXY_REQ_READ) {
		status = -EROFS;
	} else if (req->offset > z->size || req->len > z->size - req->offset) {
		status = -EINVAL;
	} else {
		for (unsigned i = 0; i < req->iovcnt; i++)
			memset(req->iov[i].iov_base, 0, req->iov[i].iov_len);
	}
	/* Completing inline, from inside submit(), is allowed. */
	host->complete(req, status);
	return 0;
}

static void zero_close(void *disk)
{
	free(disk);
}

static const struct vproxy_plugin zero_plugin = {
	.abi_version = VPROXY_PLUGIN_ABI_VERSION,
	.size = sizeof(struct vproxy_plugin),
	.name = "zero",
	.description = "read-only disk of zeros (example plugin)",
	.param_keys = zero_keys,
	.open = zero_open,
	.submit = zero_submit,
	.close = zero_close,
};

__attribute__((visibility("default"))) const struct vproxy_plugin *
vproxy_plugin_init(const struct vproxy_host *h)
{
	if (h->abi_version != VPROXY_PLUGIN_ABI_VERSION)
		return NULL;
	host = h;
	return &zero_plugin;
}
