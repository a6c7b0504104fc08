/* SPDX-License-Identifier: MIT */
/*
 * A small virtio-blk driver (virtio-mmio v2, split virtqueues) on top of
 * the proxy stub: "the guest" for tests and the bench.  Requests are
 * asynchronous: submit with a caller tag on a chosen queue, kick, wait,
 * reap completions.  Data lives in DMA buffers the caller allocates from
 * the library (vblk_buf_alloc), so nothing is copied.
 *
 * One device is driven by one thread.  No allocation on the data path:
 * queues, descriptor tables and per-request headers are set up by
 * vblk_open().
 */
#ifndef VBLK_H
#define VBLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vps_frontend;
struct vblk_driver;
struct vblk_queue;

/* Request types (the virtio-blk VIRTIO_BLK_T_* values). */
#define VBLK_T_READ 0
#define VBLK_T_WRITE 1
#define VBLK_T_FLUSH 4
#define VBLK_T_GET_ID 8
#define VBLK_T_DISCARD 11
#define VBLK_T_WRITE_ZEROES 13

/* Completion status (VIRTIO_BLK_S_*), plus one of ours. */
#define VBLK_S_OK 0
#define VBLK_S_IOERR 1
#define VBLK_S_UNSUPP 2
#define VBLK_S_NOT_WRITTEN 0xff /* the device never wrote the status byte */

/* WRITE_ZEROES flag: the device may deallocate the range. */
#define VBLK_WZ_UNMAP 0x1u

/* Entries per virtqueue: the largest a split ring has (virtio 1.2, 2.7),
 * and what the driver asks for when the caller does not say. */
#define VBLK_QUEUE_SIZE_MAX 32768u
#define VBLK_QUEUE_SIZE_DEFAULT 256u

struct vblk_opts {
	unsigned num_queues;      /* wanted (default 1); capped at the
	                           * device's num_queues (1 without MQ) */
	unsigned queue_size;      /* entries per queue (default
	                           * min(QueueNumMax, 256)); power of two */
	uint64_t refuse_features; /* feature bits (1ull << VIRTIO_*_F_*) not
	                           * accepted even when offered */
	size_t max_io_bytes;      /* largest READ/WRITE (default 1 MiB) */
	uint64_t timeout_ns;      /* device reset wait (default 5 s) */
};

/* What was negotiated and read from config space. */
struct vblk_info {
	uint64_t device_features; /* offered */
	uint64_t features;        /* accepted */
	uint64_t capacity;        /* 512-byte sectors */
	uint32_t blk_size;        /* 512 unless BLK_SIZE */
	uint32_t size_max;        /* 0 unless SIZE_MAX */
	uint32_t seg_max;         /* 0 unless SEG_MAX */
	uint16_t dev_num_queues;  /* 1 unless MQ */
	uint32_t max_discard_sectors, max_discard_seg, discard_sector_alignment;
	uint32_t max_write_zeroes_sectors, max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	bool read_only, flush, discard, write_zeroes, event_idx, indirect;
	unsigned num_queues;   /* queues in use */
	unsigned queue_size;   /* entries per queue */
	size_t max_io_bytes;   /* largest READ/WRITE accepted */
	unsigned max_inflight; /* per queue, for READ/WRITE of max size */
};

/* A DMA buffer: ptr for the CPU, addr for the device. */
struct vblk_buf {
	void *ptr;
	uint64_t addr;
	size_t len;
};

/* One request.  buf/off/len: the data of READ, WRITE and GET_ID (len a
 * multiple of 512 for READ/WRITE, <= 20 for GET_ID).  num_sectors/flags:
 * the range of DISCARD and WRITE_ZEROES, starting at sector. */
struct vblk_req {
	uint32_t type; /* VBLK_T_* */
	uint64_t sector;
	const struct vblk_buf *buf;
	size_t off, len;
	uint32_t num_sectors;
	uint32_t flags; /* VBLK_WZ_UNMAP for WRITE_ZEROES */
	uint64_t tag;   /* returned in the completion */
};

struct vblk_completion {
	uint64_t tag;
	uint8_t status; /* VBLK_S_* */
	uint32_t len;   /* bytes the device says it wrote */
};

enum vblk_health {
	VBLK_OK = 0,
	VBLK_NEEDS_RESET, /* device status has NEEDS_RESET */
	VBLK_GONE,        /* the backend closed the connection */
	VBLK_FAILED,      /* the device broke the virtqueue protocol or
	                   * stopped answering */
};

/* Hostile mode for tests. */
enum vblk_corrupt {
	VBLK_CORRUPT_DESC_LOOP,     /* a descriptor chain that loops */
	VBLK_CORRUPT_BAD_ADDR,      /* a READ into memory outside the guest */
	VBLK_CORRUPT_AVAIL_JUMP,    /* avail idx far beyond the queue size */
	VBLK_CORRUPT_RING_OVERFLOW, /* stub request ring req_prod overflow */
};

struct vblk_stats {
	uint64_t submitted, completed;
	uint64_t kicks;       /* QueueNotify writes */
	uint64_t kicks_saved; /* notifications suppressed by the device */
	uint64_t waits, irqs;
	/* The last reset: Status reads that were not yet 0, how long until
	 * it read 0, and resets that gave up waiting (timeout_ns). */
	uint64_t reset_polls, reset_wait_ns, reset_timeouts;
};

/* Fill o with the defaults. */
void vblk_opts_default(struct vblk_opts *o);

/* Probe (MagicValue, Version 2, DeviceID 2), reset, negotiate features,
 * read config, set up queues, DRIVER_OK.  vps must be attached and stay
 * so until vblk_close().  opts NULL = defaults.  *out is owned by the
 * caller (vblk_close).  0, -ENODEV (not a virtio-blk v2 device, no
 * VERSION_1, backend gone), -ENOTSUP (FEATURES_OK refused), -ENOMEM, or a
 * stub error; then why (if not NULL) holds the reason. */
int vblk_open(struct vps_frontend *vps, const struct vblk_opts *opts, struct vblk_driver **out,
              char *why, size_t why_len);

/* Reset the device (unless its backend is gone) so it lets go of queues
 * and buffers; afterwards requests fail with -ESHUTDOWN and only
 * vblk_buf_free() and vblk_close() are useful.  Idempotent. */
void vblk_stop(struct vblk_driver *d);

/* False when the last reset gave up waiting for Status 0: the device may
 * still use the queues and buffers, so they must not be reused. */
bool vblk_may_free(const struct vblk_driver *d);

/* vblk_stop(), then free everything, including the queues' memory (left
 * allocated when !vblk_may_free()).  Free buffers after vblk_stop() and
 * before this, if vblk_may_free(). */
void vblk_close(struct vblk_driver *d);

/* Negotiated features and limits; owned by d. */
const struct vblk_info *vblk_info(const struct vblk_driver *d);

/* Queue i (< info.num_queues); owned by d. */
struct vblk_queue *vblk_queue(struct vblk_driver *d, unsigned i);

/* Allocate a zeroed DMA buffer of len bytes the device can reach.
 * 0 or -ENOMEM. */
int vblk_buf_alloc(struct vblk_driver *d, size_t len, struct vblk_buf *buf);
/* Free a buffer from vblk_buf_alloc() (no request may still use it). */
void vblk_buf_free(struct vblk_driver *d, struct vblk_buf *buf);

/* Put a request on q (not yet notified: see vblk_kick).  0, -EAGAIN (no
 * room on the queue: reap first), -EINVAL (bad request), -EOPNOTSUPP
 * (feature not negotiated), -EROFS, or the device's health error. */
int vblk_submit(struct vblk_queue *q, const struct vblk_req *r);

/* Tell the device about submitted requests, unless it asked not to be
 * notified (EVENT_IDX / NO_NOTIFY).  0 or a stub error. */
int vblk_kick(struct vblk_queue *q);

/* Take up to max completions from q.  Count, or the health error when
 * the device broke the protocol. */
int vblk_reap(struct vblk_queue *q, struct vblk_completion *out, unsigned max);

/* Requests submitted on q and not yet reaped. */
unsigned vblk_inflight(const struct vblk_queue *q);

/* Sleep until some queue has completions, asking the device for an
 * interrupt only now (EVENT_IDX used_event / NO_INTERRUPT), or timeout.
 * 1 (something to reap or an interrupt arrived), 0 (timeout), -EIO
 * (NEEDS_RESET), -ENODEV (backend gone), or another error. */
int vblk_wait(struct vblk_driver *d, uint64_t timeout_ns);

/* Read the device status now; 0, or -EIO if it has NEEDS_RESET. */
int vblk_check(struct vblk_driver *d);

/* VBLK_OK or why the device is unusable (see vblk_error()). */
enum vblk_health vblk_health(const struct vblk_driver *d);

/* Text for the current health ("" when OK); owned by d. */
const char *vblk_error(const struct vblk_driver *d);

/* Copy the counters. */
void vblk_get_stats(const struct vblk_driver *d, struct vblk_stats *st);

/* Break the protocol on purpose (queue 0 / the stub ring) and notify the
 * device.  After anything but BAD_ADDR the device takes no more requests.
 * 0, -EBUSY (queue 0 too full to build the bad chain), or a stub error. */
int vblk_debug_corrupt(struct vblk_driver *d, enum vblk_corrupt kind);

/* Parse "desc-loop|bad-addr|avail-jump|ring-overflow". 0 or -EINVAL. */
int vblk_corrupt_parse(const char *name, enum vblk_corrupt *out);

#endif
