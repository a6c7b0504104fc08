/* SPDX-License-Identifier: MIT */
/*
 * What the four files of the vhost-user stub platform share (internal to
 * bench/): the vhost-user message layout, the platform object and the
 * calls between the parts.
 *   vhost_user.c      the front-end side of the vhost-user protocol
 *   vhost_mmio.c      the virtio-mmio register model behind the register ring
 *   vhost_xs.c        the in-process xenstore the stub core talks to
 *   vhost_platform.c  event channels, guest memory, setup (vhost_platform.h)
 */
#ifndef VP_BENCH_VHOST_INTERNAL_H
#define VP_BENCH_VHOST_INTERNAL_H

#include "vhost_platform.h"

#include <vproxy/proto.h>

#include <vproxy/proto.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <xen/io/xenbus.h>

#define PAGE_SHIFT 12
#define PAGE_SIZE (1u << PAGE_SHIFT)
#define VHU_MAX_QUEUES 16u
#define VHU_QUEUE_NUM_MAX 1024u
#define VHU_REPLY_TIMEOUT_MS 5000
#define VHU_VENDOR_ID 0x554d4551u /* "QEMU", the backend's vendor */
/* Config space we fetch: struct virtio_blk_config up to and including
 * write_zeroes_may_unmap and its padding, which every backend knows. */
#define VHU_CONFIG_LEN (offsetof(struct virtio_blk_config, write_zeroes_may_unmap) + 4)

/* Messages (front-end -> back-end), vhost-user spec numbering. */
enum {
	VHU_GET_FEATURES = 1,
	VHU_SET_FEATURES = 2,
	VHU_SET_OWNER = 3,
	VHU_SET_MEM_TABLE = 5,
	VHU_SET_VRING_NUM = 8,
	VHU_SET_VRING_ADDR = 9,
	VHU_SET_VRING_BASE = 10,
	VHU_GET_VRING_BASE = 11,
	VHU_SET_VRING_KICK = 12,
	VHU_SET_VRING_CALL = 13,
	VHU_GET_PROTOCOL_FEATURES = 15,
	VHU_SET_PROTOCOL_FEATURES = 16,
	VHU_GET_QUEUE_NUM = 17,
	VHU_SET_VRING_ENABLE = 18,
	VHU_GET_CONFIG = 24,
};

#define VHU_HDR_VERSION 0x1u
#define VHU_FLAG_REPLY 0x4u
#define VHU_FLAG_NEED_REPLY 0x8u
#define VHU_F_PROTOCOL_FEATURES 30
#define VHU_F_LOG_ALL 26
#define VHU_PF_MQ 0
#define VHU_PF_REPLY_ACK 3
#define VHU_PF_CONFIG 9

struct vhu_hdr {
	uint32_t request;
	uint32_t flags;
	uint32_t size; /* payload bytes that follow */
};

struct vhu_vring_state {
	uint32_t index;
	uint32_t num;
};

struct vhu_vring_addr {
	uint32_t index;
	uint32_t flags;
	uint64_t desc; /* front-end virtual addresses */
	uint64_t used;
	uint64_t avail;
	uint64_t log;
};

struct vhu_mem_region {
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;
	uint64_t mmap_offset;
};

struct vhu_mem {
	uint32_t nregions;
	uint32_t padding;
	struct vhu_mem_region region[1];
};

struct vhu_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t payload[VHU_CONFIG_LEN];
};

/* The in-process xenstore: a handful of nodes and watches. */
#define XS_NODES 24
#define XS_WATCHES 4

struct xs_node {
	bool used;
	char path[112];
	char value[48];
};

struct vps_watch {
	bool used;
	bool pending;
	char path[112];
};

struct vhu_queue {
	uint32_t num;
	uint64_t desc, avail, used; /* guest-physical */
	bool ready;
	int kick_fd; /* we write: the backend's kick */
	int call_fd; /* the backend writes: our interrupt */
};

struct vhu_platform {
	struct vps_platform plat;
	char err[200];

	int sock;
	uint64_t dev_features; /* offered to the driver */
	uint64_t proto;        /* negotiated protocol features */
	bool has_proto;        /* VHOST_USER_F_PROTOCOL_FEATURES offered */
	unsigned max_queues;
	uint8_t config[VHU_CONFIG_LEN];

	/* guest RAM and its page allocator */
	pthread_mutex_t lock;
	int ram_fd;
	uint8_t *ram;
	size_t pages, free_pages, hint;
	uint8_t *busy; /* per page */
	uint32_t *run; /* pages of the allocation starting here */

	struct xs_node nodes[XS_NODES];
	struct vps_watch watches[XS_WATCHES];
	char fe_path[64], be_path[64];

	/* the register-access ring's backend and the virtio-mmio model */
	void *page;
	struct vproxy_back_ring ring;
	uint32_t status;
	uint32_t dev_sel, drv_sel, queue_sel;
	uint64_t drv_features;
	struct vhu_queue q[VHU_MAX_QUEUES];
	uint64_t kick_writes; /* eventfd writes to the kick fds (QueueNotify) */
};

/* vhost_user.c: messages to the backend; 0 or -errno. */
int vhu_send(struct vhu_platform *v, uint32_t req, uint32_t flags, const void *payload,
             uint32_t size, const int *fds, unsigned nfds);
int vhu_reply(struct vhu_platform *v, uint32_t req, void *out, size_t len);
int vhu_get_u64(struct vhu_platform *v, uint32_t req, uint64_t *out);
int vhu_set(struct vhu_platform *v, uint32_t req, const void *payload, uint32_t size,
            const int *fds, unsigned nfds);
int vhu_set_u64(struct vhu_platform *v, uint32_t req, uint64_t val);
int vhu_set_state(struct vhu_platform *v, uint32_t req, uint32_t index, uint32_t num);

/* vhost_mmio.c: the register model. */
void vhu_queue_close_fds(struct vhu_queue *q);
void vhu_device_reset(struct vhu_platform *v);
/* Serve every register access on the ring. */
void vhu_serve_ring(struct vhu_platform *v);

/* vhost_xs.c: the in-process xenstore and the backend's xenbus side. */
int vhu_xs_set(struct vhu_platform *v, const char *path, const char *value);
void vhu_be_state(struct vhu_platform *v, int state);
/* The platform's xenstore calls (struct vps_platform). */
int vhu_xs_read(void *ctx, uint32_t tx, const char *path, char *buf, size_t len);
int vhu_xs_write(void *ctx, uint32_t tx, const char *path, const char *value);
int vhu_xs_list(void *ctx, const char *path, char *buf, size_t len);
int vhu_xs_tx_begin(void *ctx, uint32_t *tx);
int vhu_xs_tx_end(void *ctx, uint32_t tx, int abort_tx);
int vhu_xs_watch(void *ctx, const char *path, struct vps_watch **out);
void vhu_xs_unwatch(void *ctx, struct vps_watch *w);

#endif
