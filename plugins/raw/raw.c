/* SPDX-License-Identifier: MIT */
/* The "raw" plugin: a regular file or a block device, byte for byte.
 *
 * Reads and writes go straight from the guest's mapped buffers to the
 * file through the vpio engine (io_uring, or worker threads where io_uring
 * is unavailable).  FLUSH is fdatasync, and once one fdatasync has failed
 * every later FLUSH fails too (see raw_op_done); DISCARD punches a hole in a file
 * and is BLKDISCARD on a device; WRITE_ZEROES punches (unmap allowed) or
 * zeroes the range in place, falling back to writing zeros. */
#define VPROXY_PLUGIN_ABI 2
#include "vpio.h"
#include "vpio_file.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vproxy/plugin.h>

#define SECTOR 512u
/* O_DIRECT on a file: the device under it may have 4 KiB sectors. */
#define FILE_DIRECT_ALIGN 4096u

struct raw_disk {
	int fd;
	bool read_only;
	bool bdev;
	bool flush_failed; /* an fdatasync failed: no FLUSH succeeds again */
	uint64_t size;
	struct vpio_engine *eng;
	const struct vproxy_disk_host *dh; /* the host's, for log lines */
	struct raw_op *free_ops; /* recycled per-request state */
	char label[160];
};

/* Per-request state, reached from req->plugin_priv. */
struct raw_op {
	struct vpio_op vpio;
	struct vproxy_req *req;
	struct raw_disk *disk;
	struct raw_op *next_free;
};

static const struct vproxy_host *host;

static const char *const raw_param_keys[] = {"file", "direct", "engine", NULL};

/* A crashed vproxyd's lock lingers while the kernel tears down its
 * io_uring. */
#define LOCK_WAIT_MS 1000u

/* Size and block sizes of an open block device. */
static int raw_bdev_geometry(int fd, const char *path, struct vproxy_disk_info *info,
                             char *err, size_t errlen)
{
	uint64_t bytes;
	int lbs = 0;
	unsigned pbs = 0;

	if (ioctl(fd, BLKGETSIZE64, &bytes) < 0 || ioctl(fd, BLKSSZGET, &lbs) < 0) {
		snprintf(err, errlen, "file: %s: cannot read the device size: %s", path,
		         strerror(errno));
		return -errno;
	}
	if (ioctl(fd, BLKPBSZGET, &pbs) < 0)
		pbs = (unsigned)lbs;
	if (lbs < (int)SECTOR || (lbs & (lbs - 1)))
		lbs = SECTOR;
	if (pbs < (unsigned)lbs || (pbs & (pbs - 1)))
		pbs = (unsigned)lbs;
	info->capacity = bytes / (unsigned)lbs * (unsigned)lbs;
	info->logical_block = (uint32_t)lbs;
	info->physical_block = pbs;
	return 0;
}

static int raw_open(struct vproxy_disk_host *dh, const struct vproxy_params *params,
                    int read_only, struct vproxy_disk_info *info, void **out, char *err,
                    size_t errlen)
{
	const char *path = host->param(params, "file");
	enum vpio_engine_choice choice;
	struct raw_disk *d = NULL;
	struct stat st;
	bool direct, ro = read_only != 0;
	uint32_t align = 0;
	int r;

	if (!path || !*path) {
		snprintf(err, errlen, "file: required (a regular file or block device)");
		return -EINVAL;
	}
	r = vpio_parse_params(host, params, &direct, &choice, err, errlen);
	if (r < 0)
		return r;
	if (stat(path, &st) < 0) {
		r = -errno;
		snprintf(err, errlen, "file: %s: %s", path, strerror(errno));
		return r;
	}
	if (S_ISDIR(st.st_mode)) {
		snprintf(err, errlen,
		         "file: %s is a directory, not a regular file or block device",
		         path);
		return -EISDIR;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		snprintf(err, errlen, "file: %s is not a regular file or block device",
		         path);
		return -EINVAL;
	}

	d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	d->fd = -1;
	d->dh = dh;
	snprintf(d->label, sizeof(d->label), "raw %s", path);
	r = vpio_open_file(host, dh, path, direct, &ro, err, errlen);
	if (r < 0)
		goto fail;
	d->fd = r;
	/* Two writers of one disk corrupt it; readers may share. */
	r = vpio_lock_file(d->fd, !ro, LOCK_WAIT_MS);
	if (r < 0) {
		snprintf(err, errlen,
		         "file: %s is in use by another device or process (%s)", path,
		         r == -EWOULDBLOCK ? "locked" : strerror(-r));
		goto fail;
	}
	memset(info, 0, sizeof(*info));
	if (fstat(d->fd, &st) < 0) {
		r = -errno;
		snprintf(err, errlen, "file: %s: %s", path, strerror(errno));
		goto fail;
	}
	if (S_ISBLK(st.st_mode)) {
		d->bdev = true;
		r = raw_bdev_geometry(d->fd, path, info, err, errlen);
		if (r < 0)
			goto fail;
		align = direct ? info->logical_block : 0;
	} else {
		if (st.st_size % SECTOR)
			host->disk_log(d->dh, VPROXY_LOG_WARN,
			               "%s: size %lld is not a multiple of 512; the last "
			               "%lld bytes are not served",
			               path, (long long)st.st_size,
			               (long long)(st.st_size % SECTOR));
		info->logical_block = direct ? FILE_DIRECT_ALIGN : SECTOR;
		info->physical_block =
		        st.st_blksize >= (blksize_t)info->logical_block &&
		                        !(st.st_blksize & (st.st_blksize - 1))
		                ? (uint32_t)st.st_blksize
		                : info->logical_block;
		info->capacity =
		        (uint64_t)st.st_size / info->logical_block * info->logical_block;
		align = direct ? FILE_DIRECT_ALIGN : 0;
	}
	if (info->capacity == 0) {
		r = -EINVAL;
		snprintf(err, errlen,
		         "file: %s is empty; give it a size first (truncate -s 1G %s)",
		         path, path);
		goto fail;
	}
	d->size = info->capacity;
	d->read_only = ro;
	r = vpio_engine_create(host, dh, choice, align, d->label, &d->eng, err, errlen);
	if (r < 0)
		goto fail;
	vpio_register_fd(d->eng, d->fd); /* a lookup less per request, if taken */
	info->flags = VPROXY_DISK_FLUSH | VPROXY_DISK_DISCARD | VPROXY_DISK_WRITE_ZEROES;
	if (ro)
		info->flags |= VPROXY_DISK_READONLY;
	host->disk_log(d->dh, VPROXY_LOG_INFO,
	               "%s: %llu bytes, %u/%u-byte blocks%s%s, %s engine", path,
	               (unsigned long long)d->size, info->logical_block,
	               info->physical_block, ro ? ", read-only" : "",
	               direct ? ", O_DIRECT" : "", vpio_engine_name(d->eng));
	*out = d;
	return 0;
fail:
	if (d->fd >= 0)
		close(d->fd);
	free(d);
	return r;
}

static void raw_op_done(struct vpio_op *vpio, int res)
{
	struct raw_op *op = vpio->arg;
	struct raw_disk *d = op->disk;
	struct vproxy_req *req = op->req;

	/* A discard is a hint: a file system without holes may ignore it. */
	if (vpio->kind == VPIO_PUNCH && res == -EOPNOTSUPP)
		res = 0;
	/* After a failed fdatasync the kernel may have dropped the dirty
	 * pages it could not write (marking them clean), so a later
	 * fdatasync that succeeds says nothing about the writes before the
	 * failure.  As QEMU does, every later FLUSH fails until the disk is
	 * opened again: the guest never believes lost data is durable. */
	if (vpio->kind == VPIO_FDATASYNC && res < 0 && res != -ECANCELED &&
	    !d->flush_failed) {
		d->flush_failed = true;
		host->disk_log(
		        d->dh, VPROXY_LOG_ERROR,
		        "%s: fdatasync failed: %s; writes before it may be lost, so "
		        "every later flush fails until the disk is opened again",
		        d->label, strerror(-res));
	}
	if (vpio->kind == VPIO_FDATASYNC && res == 0 && d->flush_failed)
		res = -EIO;
	op->next_free = d->free_ops;
	d->free_ops = op;
	host->complete(req, res);
}

static int raw_submit(void *disk, struct vproxy_req *req)
{
	struct raw_disk *d = disk;
	struct raw_op *op;
	int r = vpio_check_req(req, d->size, d->read_only);

	if (r < 0)
		return r;
	/* Nothing to do: complete inline, as the ABI allows. */
	if (req->op == VPROXY_REQ_FLUSH && d->flush_failed && !d->read_only) {
		host->complete(req, -EIO);
		return 0;
	}
	if ((req->op == VPROXY_REQ_FLUSH && d->read_only) ||
	    (req->op != VPROXY_REQ_FLUSH && req->len == 0)) {
		host->complete(req, 0);
		return 0;
	}
	op = d->free_ops;
	if (op)
		d->free_ops = op->next_free;
	else if (!(op = malloc(sizeof(*op))))
		return -ENOMEM;
	memset(&op->vpio, 0, sizeof(op->vpio));
	op->req = req;
	op->disk = d;
	req->plugin_priv = op;
	op->vpio.fd = d->fd;
	op->vpio.offset = req->offset;
	op->vpio.len = req->len;
	op->vpio.done = raw_op_done;
	op->vpio.arg = op;
	switch (req->op) {
	case VPROXY_REQ_READ:
	case VPROXY_REQ_WRITE:
		op->vpio.kind = req->op == VPROXY_REQ_READ ? VPIO_READV : VPIO_WRITEV;
		op->vpio.iov = req->iov;
		op->vpio.iovcnt = req->iovcnt;
		break;
	case VPROXY_REQ_FLUSH: op->vpio.kind = VPIO_FDATASYNC; break;
	case VPROXY_REQ_DISCARD:
		op->vpio.kind = d->bdev ? VPIO_DISCARD : VPIO_PUNCH;
		break;
	default:
		op->vpio.kind = VPIO_ZERO;
		op->vpio.zero_mode = (req->flags & VPROXY_REQ_F_UNMAP) ? VPIO_ZERO_PUNCH
		                                                       : VPIO_ZERO_ALLOC;
		break;
	}
	vpio_submit(d->eng, &op->vpio);
	return 0;
}

static void raw_cancel(void *disk, struct vproxy_req *req)
{
	struct raw_disk *d = disk;
	struct raw_op *op = req->plugin_priv;

	vpio_cancel(d->eng, &op->vpio);
}

/* The host's end of a batch: one io_uring_submit() for all of it. */
static void raw_kick(void *disk)
{
	struct raw_disk *d = disk;

	vpio_kick(d->eng);
}

/* The host's loop spins: run what completed without the eventfd. */
static int raw_poll(void *disk)
{
	struct raw_disk *d = disk;

	return vpio_poll(d->eng);
}

static void raw_poll_end(void *disk)
{
	struct raw_disk *d = disk;

	vpio_poll_end(d->eng);
}

static void raw_close(void *disk)
{
	struct raw_disk *d = disk;

	if (!d)
		return;
	vpio_drain(d->eng);
	vpio_engine_destroy(d->eng);
	while (d->free_ops) {
		struct raw_op *op = d->free_ops;

		d->free_ops = op->next_free;
		free(op);
	}
	close(d->fd);
	free(d);
}

VPROXY_PLUGIN_DEFINE(
        host, .name = "raw",
        .description = "a regular file or block device, byte for byte (io_uring)",
        .param_keys = raw_param_keys, .open = raw_open, .submit = raw_submit,
        .close = raw_close, .cancel = raw_cancel, .kick = raw_kick, .poll = raw_poll,
        .poll_end = raw_poll_end,
        /* open() waits for the file's lock; close() drains and syncs. */
        .flags = VPROXY_PLUGIN_F_OFF_LOOP);
