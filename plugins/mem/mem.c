/* SPDX-License-Identifier: MIT */
/* The "mem" plugin: a RAM disk.  Space is reserved lazily
 * (MAP_NORESERVE), so a large disk costs only the pages ever written, and
 * DISCARD/WRITE_ZEROES hand whole pages back to the kernel.  Every request
 * completes inline in submit(). */
#define VPROXY_PLUGIN_ABI 2
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <vproxy/plugin.h>

#define SECTOR 512u

struct mem_disk {
	uint8_t *base;
	uint64_t size;
	size_t page;
	bool read_only;
};

static const struct vproxy_host *host;

static const char *const mem_param_keys[] = {"size", "block-size", NULL};

static int mem_open(struct vproxy_disk_host *dh, const struct vproxy_params *params,
		    int read_only, struct vproxy_disk_info *info, void **disk, char *err,
		    size_t errlen)
{
	const char *size_text = host->param(params, "size");
	const char *bs_text = host->param(params, "block-size");
	uint64_t size, bs = SECTOR;
	struct mem_disk *d;
	void *base;

	(void)dh; /* a RAM disk has nothing to log */
	if (!size_text) {
		snprintf(err, errlen, "size: required (e.g. size = 64M)");
		return -EINVAL;
	}
	if (host->parse_size(size_text, &size) < 0) {
		snprintf(err, errlen,
			 "size: \"%s\" is not a size (digits with optional K, M, G or T)",
			 size_text);
		return -EINVAL;
	}
	if (bs_text && (host->parse_size(bs_text, &bs) < 0 || (bs != 512 && bs != 4096))) {
		snprintf(err, errlen, "block-size: \"%s\" is not allowed (512 or 4096)",
			 bs_text);
		return -EINVAL;
	}
	if (size == 0 || size % bs != 0) {
		snprintf(err, errlen, "size: %s must be a positive multiple of %u bytes",
			 size_text, (unsigned)bs);
		return -EINVAL;
	}
	if (size > SIZE_MAX) {
		snprintf(err, errlen, "size: %s does not fit in the address space",
			 size_text);
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED) {
		int rc = -errno;

		snprintf(err, errlen, "cannot map %s of memory: %s", size_text,
			 strerror(-rc));
		free(d);
		return rc;
	}
	d->base = base;
	d->size = size;
	d->page = (size_t)sysconf(_SC_PAGESIZE);
	d->read_only = read_only != 0;

	memset(info, 0, sizeof(*info));
	info->capacity = size;
	info->logical_block = (uint32_t)bs;
	info->physical_block = (uint32_t)bs;
	info->flags = VPROXY_DISK_FLUSH | VPROXY_DISK_DISCARD | VPROXY_DISK_WRITE_ZEROES;
	if (d->read_only)
		info->flags |= VPROXY_DISK_READONLY;
	*disk = d;
	return 0;
}

/* Zero [off, off+len): whole pages go back to the kernel (reading them
 * again yields zeroes), partial pages at the edges are cleared by hand. */
static void mem_zero(struct mem_disk *d, uint64_t off, uint64_t len)
{
	uint64_t first = (off + d->page - 1) / d->page * d->page;
	uint64_t last = (off + len) / d->page * d->page;

	if (first >= last) {
		memset(d->base + off, 0, (size_t)len);
		return;
	}
	memset(d->base + off, 0, (size_t)(first - off));
	if (madvise(d->base + first, (size_t)(last - first), MADV_DONTNEED) < 0)
		memset(d->base + first, 0, (size_t)(last - first));
	memset(d->base + last, 0, (size_t)(off + len - last));
}

/* READ (to_disk false) or WRITE: copy between the disk and the iovecs. */
static void mem_copy(struct mem_disk *d, const struct vproxy_req *req, bool to_disk)
{
	uint8_t *p = d->base + req->offset;

	for (unsigned i = 0; i < req->iovcnt; i++) {
		const struct iovec *v = &req->iov[i];

		if (v->iov_len == 0)
			continue;
		if (to_disk)
			memcpy(p, v->iov_base, v->iov_len);
		else
			memcpy(v->iov_base, p, v->iov_len);
		p += v->iov_len;
	}
}

/* The host checks requests before they get here; check again so the
 * plugin never touches memory outside its disk whoever calls it. */
static int mem_check(const struct mem_disk *d, const struct vproxy_req *req)
{
	if (req->offset > d->size || req->len > d->size - req->offset)
		return -EINVAL;
	if (req->op == VPROXY_REQ_READ || req->op == VPROXY_REQ_WRITE) {
		uint64_t sum = 0;

		if (req->iovcnt && !req->iov)
			return -EINVAL;
		for (unsigned i = 0; i < req->iovcnt; i++) {
			if (__builtin_add_overflow(sum, (uint64_t)req->iov[i].iov_len, &sum))
				return -EINVAL;
		}
		if (sum != req->len)
			return -EINVAL;
	}
	if (d->read_only && req->op != VPROXY_REQ_READ && req->op != VPROXY_REQ_FLUSH)
		return -EROFS;
	return 0;
}

static int mem_submit(void *disk, struct vproxy_req *req)
{
	struct mem_disk *d = disk;
	int status;

	switch (req->op) {
	case VPROXY_REQ_READ:
	case VPROXY_REQ_WRITE:
	case VPROXY_REQ_FLUSH:
	case VPROXY_REQ_DISCARD:
	case VPROXY_REQ_WRITE_ZEROES:
		status = mem_check(d, req);
		break;
	default:
		status = -EOPNOTSUPP;
		break;
	}
	if (status == 0) {
		if (req->op == VPROXY_REQ_READ || req->op == VPROXY_REQ_WRITE)
			mem_copy(d, req, req->op == VPROXY_REQ_WRITE);
		else if (req->op != VPROXY_REQ_FLUSH && req->len)
			mem_zero(d, req->offset, req->len);
	}
	host->complete(req, status);
	return 0;
}

static void mem_close(void *disk)
{
	struct mem_disk *d = disk;

	if (!d)
		return;
	munmap(d->base, (size_t)d->size);
	free(d);
}

VPROXY_PLUGIN_DEFINE(host, .name = "mem",
		     .description = "RAM disk; contents are lost when vproxyd exits",
		     .param_keys = mem_param_keys, .open = mem_open, .submit = mem_submit,
		     .close = mem_close);
