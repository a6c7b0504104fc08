/* SPDX-License-Identifier: MIT */
/* A small RAM disk for test_plugin, built once per ABI: abi1.so (no
 * VPROXY_PLUGIN_ABI: the default, as a plugin written before ABI 2) and
 * abi2.so (ABI2 defined).  Each logs one line when a disk opens, the way
 * its ABI allows, so the test sees what the host adds to it. */
#ifdef ABI2
#define VPROXY_PLUGIN_ABI 2
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <vproxy/plugin.h>

#define DISK_SIZE 65536u

static const struct vproxy_host *host;

static const char *const abi_keys[] = {NULL};

#ifdef ABI2
static int abi_open(struct vproxy_disk_host *dh, const struct vproxy_params *params,
		    int read_only, struct vproxy_disk_info *info, void **disk, char *err,
		    size_t errlen)
#else
static int abi_open(const struct vproxy_params *params, int read_only,
		    struct vproxy_disk_info *info, void **disk, char *err, size_t errlen)
#endif
{
	(void)params;
	(void)read_only;
	(void)err;
	(void)errlen;
	*disk = calloc(1, DISK_SIZE);
	if (!*disk)
		return -ENOMEM;
	memset(info, 0, sizeof(*info));
	info->capacity = DISK_SIZE;
	info->logical_block = 512;
	info->physical_block = 512;
#ifdef ABI2
	host->disk_log(dh, VPROXY_LOG_INFO, "opened %u bytes", DISK_SIZE);
#else
	host->log(VPROXY_LOG_INFO, "opened %u bytes", DISK_SIZE);
#endif
	return 0;
}

static int abi_submit(void *disk, struct vproxy_req *req)
{
	unsigned char *at = (unsigned char *)disk + req->offset;
	int status = 0;

	if (req->offset > DISK_SIZE || req->len > DISK_SIZE - req->offset)
		status = -EINVAL;
	else if (req->op == VPROXY_REQ_READ || req->op == VPROXY_REQ_WRITE)
		for (unsigned i = 0; i < req->iovcnt; at += req->iov[i].iov_len, i++) {
			if (req->op == VPROXY_REQ_READ)
				memcpy(req->iov[i].iov_base, at, req->iov[i].iov_len);
			else
				memcpy(at, req->iov[i].iov_base, req->iov[i].iov_len);
		}
	else if (req->op != VPROXY_REQ_FLUSH)
		status = -EOPNOTSUPP;
	host->complete(req, status);
	return 0;
}

static void abi_close(void *disk)
{
	free(disk);
}

VPROXY_PLUGIN_DEFINE(host, .name = PLUGIN_NAME, .description = "ABI test RAM disk",
		     .param_keys = abi_keys, .open = abi_open, .submit = abi_submit,
		     .close = abi_close);
