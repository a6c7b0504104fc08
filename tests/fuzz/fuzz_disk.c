/* SPDX-License-Identifier: MIT */
/* The fuzzing RAM disk: serves and checks requests (fuzz_disk.h). */
#include "fuzz_disk.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin_host.h"

#define MAX_PENDING 4096u

static struct {
	struct vproxy_disk_info info;
	struct fuzz_disk_mode mode;
	uint8_t data[FUZZ_DISK_MAX_BYTES];
	struct vproxy_req *pending[MAX_PENDING];
	bool cancelled[MAX_PENDING];
	unsigned npending;
	bool polling; /* poll() called, poll_end() not yet */
	const bool *tainted; /* check the pattern while this is false */
} disk;

static void violation(const struct vproxy_req *req, const char *what)
{
	fprintf(stderr, "fuzz_disk: %s (op %u offset %llu len %llu iovcnt %u)\n", what,
	        req->op, (unsigned long long)req->offset, (unsigned long long)req->len,
	        req->iovcnt);
	abort();
}

static bool in_range(const struct vproxy_req *req)
{
	return req->offset <= disk.info.capacity &&
	       req->len <= disk.info.capacity - req->offset;
}

/* Check req as the device must have built it. */
static void check(const struct vproxy_req *req)
{
	uint64_t sum = 0;

	for (unsigned i = 0; i < disk.npending; i++)
		if (disk.pending[i] == req)
			violation(req, "request submitted while in flight");
	switch (req->op) {
	case VPROXY_REQ_READ:
	case VPROXY_REQ_WRITE:
		if (req->op == VPROXY_REQ_WRITE &&
		    (disk.info.flags & VPROXY_DISK_READONLY))
			violation(req, "write to a read-only disk");
		if (req->iovcnt == 0 || req->len == 0)
			violation(req, "empty read or write");
		for (unsigned i = 0; i < req->iovcnt; i++) {
			if (!req->iov[i].iov_base && req->iov[i].iov_len)
				violation(req, "NULL buffer");
			sum += req->iov[i].iov_len;
		}
		if (sum != req->len)
			violation(req, "buffers do not add up to the length");
		if (req->offset % 512 || req->len % 512)
			violation(req, "not in whole sectors");
		break;
	case VPROXY_REQ_FLUSH:
		if (!(disk.info.flags & VPROXY_DISK_FLUSH))
			violation(req, "flush the disk does not support");
		break;
	case VPROXY_REQ_DISCARD:
	case VPROXY_REQ_WRITE_ZEROES:
		if (disk.info.flags & VPROXY_DISK_READONLY)
			violation(req, "discard or write-zeroes on a read-only disk");
		if (!(disk.info.flags &
		      (req->op == VPROXY_REQ_DISCARD ? VPROXY_DISK_DISCARD
		                                     : VPROXY_DISK_WRITE_ZEROES)))
			violation(req,
			          "discard or write-zeroes the disk does not support");
		if (req->len == 0 || req->offset % 512 || req->len % 512)
			violation(req, "discard or write-zeroes not in whole sectors");
		if (req->flags & ~VPROXY_REQ_F_UNMAP ||
		    (req->flags && req->op != VPROXY_REQ_WRITE_ZEROES))
			violation(req, "unknown request flags");
		break;
	default: violation(req, "unknown op");
	}
	if (!in_range(req))
		violation(req, "beyond the disk's capacity");
}

/* A write's data as fuzz_guest.c built it. */
static void check_pattern(const struct vproxy_req *req)
{
	uint64_t k = 0, sector = req->offset / 512;

	for (unsigned i = 0; i < req->iovcnt; i++) {
		const uint8_t *p = req->iov[i].iov_base;

		for (size_t j = 0; j < req->iov[i].iov_len; j++, k++)
			if (p[j] != (uint8_t)(k * 7 + sector))
				violation(req, "write data is not what the guest wrote");
	}
}

/* Do what req asks, touching every byte of its buffers. */
static void execute(const struct vproxy_req *req)
{
	uint64_t off = req->offset;

	switch (req->op) {
	case VPROXY_REQ_READ:
	case VPROXY_REQ_WRITE:
		if (req->op == VPROXY_REQ_WRITE && disk.tainted && !*disk.tainted)
			check_pattern(req);
		for (unsigned i = 0; i < req->iovcnt; i++) {
			if (req->op == VPROXY_REQ_READ)
				memcpy(req->iov[i].iov_base, disk.data + off,
				       req->iov[i].iov_len);
			else
				memcpy(disk.data + off, req->iov[i].iov_base,
				       req->iov[i].iov_len);
			off += req->iov[i].iov_len;
		}
		break;
	case VPROXY_REQ_DISCARD:
	case VPROXY_REQ_WRITE_ZEROES: memset(disk.data + off, 0, req->len); break;
	default: break;
	}
}

static void finish(struct vproxy_req *req, int status, bool cancelled)
{
	struct vp_req_owner *owner = req->host_priv;

	if (cancelled)
		status = -ECANCELED;
	else if (status == 0)
		execute(req);
	owner->complete(req, status);
}

static int fuzz_submit(void *d, struct vproxy_req *req)
{
	if (d != &disk)
		violation(req, "request for another disk");
	check(req);
	if (disk.mode.submit_ret)
		return disk.mode.submit_ret;
	if (disk.mode.deferred && disk.npending < MAX_PENDING) {
		disk.cancelled[disk.npending] = false;
		disk.pending[disk.npending++] = req;
		return 0;
	}
	finish(req, disk.mode.status, false);
	return 0;
}

/* Mark req to end as cancelled; it completes later, never in here. */
static void fuzz_cancel(void *d, struct vproxy_req *req)
{
	if (d != &disk)
		violation(req, "cancel for another disk");
	for (unsigned i = 0; i < disk.npending; i++) {
		if (disk.pending[i] == req) {
			disk.cancelled[i] = true;
			return;
		}
	}
	violation(req, "cancel of a request not in flight");
}

/* Completion polling: each poll() finishes mode.poll_ready of what is
 * held; poll_end() must follow a poll(), once. */
static int fuzz_poll(void *d)
{
	if (d != &disk) {
		fprintf(stderr, "fuzz_disk: poll() of another disk\n");
		abort();
	}
	disk.polling = true;
	return (int)fuzz_disk_complete(disk.mode.poll_ready, 0, disk.mode.status);
}

static void fuzz_poll_end(void *d)
{
	if (d != &disk || !disk.polling) {
		fprintf(stderr, "fuzz_disk: poll_end() without poll()\n");
		abort();
	}
	disk.polling = false;
}

static const char *const fuzz_keys[] = {NULL};

const struct vproxy_plugin fuzz_disk_plugin = {
        .abi_version = VPROXY_PLUGIN_ABI_VERSION,
        .size = sizeof(struct vproxy_plugin),
        .name = "fuzz",
        .description = "fuzzing RAM disk",
        .param_keys = fuzz_keys,
        .submit = fuzz_submit,
        .cancel = fuzz_cancel,
        .poll = fuzz_poll,
        .poll_end = fuzz_poll_end,
};

const struct vproxy_plugin fuzz_disk_plugin_v1 = {
        .abi_version = VPROXY_PLUGIN_ABI_VERSION,
        .size = VPROXY_PLUGIN_SIZE_V1,
        .name = "fuzz-v1",
        .description = "fuzzing RAM disk without cancel()",
        .param_keys = fuzz_keys,
        .submit = fuzz_submit,
};

void *fuzz_disk_open(const struct vproxy_disk_info *info)
{
	if (disk.npending || disk.polling)
		abort();
	if (info->capacity > FUZZ_DISK_MAX_BYTES)
		abort();
	disk.info = *info;
	disk.mode = (struct fuzz_disk_mode){0};
	disk.tainted = NULL;
	return &disk;
}

void fuzz_disk_expect_pattern(const bool *tainted)
{
	disk.tainted = tainted;
}

void fuzz_disk_set_mode(const struct fuzz_disk_mode *mode)
{
	disk.mode = *mode;
}

unsigned fuzz_disk_complete(unsigned n, unsigned pick, int status)
{
	unsigned done = 0;

	while (done < n && disk.npending) {
		unsigned i = pick % disk.npending;
		struct vproxy_req *req = disk.pending[i];
		bool cancelled = disk.cancelled[i];

		/* Completion may submit more: take it off the list first. */
		disk.npending--;
		disk.pending[i] = disk.pending[disk.npending];
		disk.cancelled[i] = disk.cancelled[disk.npending];
		finish(req, status, cancelled);
		done++;
		pick = 0;
	}
	return done;
}

bool fuzz_disk_polling(void)
{
	return disk.polling;
}

unsigned fuzz_disk_pending(void)
{
	return disk.npending;
}
