/*
 * Stub platform over a vhost-user-blk backend (see vhost_platform.h).
 * Frontend side of the vhost-user protocol (QEMU docs/interop/vhost-user):
 * only what a virtio-blk driver needs -- features, owner, protocol
 * features (REPLY_ACK, MQ, CONFIG), one memory region, vring setup and
 * teardown, config space.
 */
#include "vhost_platform.h"

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
};

/* ---- vhost-user messages ---- */

static int vhu_send(struct vhu_platform *v, uint32_t req, uint32_t flags,
                    const void *payload, uint32_t size, const int *fds, unsigned nfds)
{
	struct vhu_hdr h = {
	        .request = req, .flags = VHU_HDR_VERSION | flags, .size = size};
	struct iovec iov[2] = {{.iov_base = &h, .iov_len = sizeof(h)},
	                       {.iov_base = (void *)payload, .iov_len = size}};
	union {
		char buf[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = size ? 2 : 1};
	ssize_t n;

	if (nfds) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	do
		n = sendmsg(v->sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == sizeof(h) + size ? 0 : -EIO;
}

/* Read exactly len bytes, waiting at most VHU_REPLY_TIMEOUT_MS in all. */
static int vhu_read_full(struct vhu_platform *v, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		struct pollfd pfd = {.fd = v->sock, .events = POLLIN};
		ssize_t n;
		int r = poll(&pfd, 1, VHU_REPLY_TIMEOUT_MS);

		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		n = recv(v->sock, p, len, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Wait for the reply to req; its payload (at most len bytes) into out.
 * Returns the payload size or -errno. */
static int vhu_reply(struct vhu_platform *v, uint32_t req, void *out, size_t len)
{
	struct vhu_hdr h;
	uint8_t junk[64];
	int r;

	r = vhu_read_full(v, &h, sizeof(h));
	if (r < 0)
		return r;
	if (h.request != req || !(h.flags & VHU_FLAG_REPLY) || h.size > 4096) {
		snprintf(v->err, sizeof(v->err),
		         "vhost-user: bad reply (request %u flags %#x size %u) to %u",
		         h.request, h.flags, h.size, req);
		return -EPROTO;
	}
	if (h.size <= len)
		return vhu_read_full(v, out, h.size) < 0 ? -EIO : (int)h.size;
	/* Longer than we want: keep the start, drop the rest. */
	r = vhu_read_full(v, out, len);
	for (uint32_t left = h.size - (uint32_t)len; r == 0 && left;) {
		uint32_t n = left < sizeof(junk) ? left : (uint32_t)sizeof(junk);

		r = vhu_read_full(v, junk, n);
		left -= n;
	}
	return r < 0 ? r : (int)len;
}

static int vhu_get_u64(struct vhu_platform *v, uint32_t req, uint64_t *out)
{
	int r = vhu_send(v, req, 0, NULL, 0, NULL, 0);

	if (r == 0)
		r = vhu_reply(v, req, out, sizeof(*out));
	if (r >= 0 && r != (int)sizeof(*out))
		r = -EPROTO;
	return r < 0 ? r : 0;
}

/* A message without an answer of its own; with REPLY_ACK we ask for one,
 * so every setup step is known to be done before the next. */
static int vhu_set(struct vhu_platform *v, uint32_t req, const void *payload,
                   uint32_t size, const int *fds, unsigned nfds)
{
	bool ack = v->proto & (1ull << VHU_PF_REPLY_ACK);
	uint64_t status = 0;
	int r;

	r = vhu_send(v, req, ack ? VHU_FLAG_NEED_REPLY : 0, payload, size, fds, nfds);
	if (r < 0 || !ack)
		return r;
	r = vhu_reply(v, req, &status, sizeof(status));
	if (r < 0)
		return r;
	return status ? -EIO : 0;
}

static int vhu_set_u64(struct vhu_platform *v, uint32_t req, uint64_t val)
{
	return vhu_set(v, req, &val, sizeof(val), NULL, 0);
}

static int vhu_set_state(struct vhu_platform *v, uint32_t req, uint32_t index,
                         uint32_t num)
{
	struct vhu_vring_state s = {.index = index, .num = num};

	return vhu_set(v, req, &s, sizeof(s), NULL, 0);
}

/* ---- the virtio-mmio register model ---- */

static void queue_close_fds(struct vhu_queue *q)
{
	if (q->kick_fd >= 0)
		close(q->kick_fd);
	if (q->call_fd >= 0)
		close(q->call_fd);
	q->kick_fd = q->call_fd = -1;
}

/* Hand queue i to the backend: size, addresses, start index, eventfds. */
static int queue_start(struct vhu_platform *v, unsigned i)
{
	struct vhu_queue *q = &v->q[i];
	size_t ram_bytes = v->pages << PAGE_SHIFT;
	struct vhu_vring_addr a = {.index = i};
	int r;

	if (!q->num || q->num > VHU_QUEUE_NUM_MAX || q->desc >= ram_bytes ||
	    q->avail >= ram_bytes || q->used >= ram_bytes)
		return -EINVAL;
	q->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	q->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (q->kick_fd < 0 || q->call_fd < 0) {
		queue_close_fds(q);
		return -errno;
	}
	a.desc = (uint64_t)(uintptr_t)(v->ram + q->desc);
	a.avail = (uint64_t)(uintptr_t)(v->ram + q->avail);
	a.used = (uint64_t)(uintptr_t)(v->ram + q->used);
	if ((r = vhu_set_state(v, VHU_SET_VRING_NUM, i, q->num)) < 0 ||
	    (r = vhu_set(v, VHU_SET_VRING_ADDR, &a, sizeof(a), NULL, 0)) < 0 ||
	    (r = vhu_set_state(v, VHU_SET_VRING_BASE, i, 0)) < 0 ||
	    (r = vhu_set(v, VHU_SET_VRING_CALL, &(uint64_t){i}, 8, &q->call_fd, 1)) < 0 ||
	    (r = vhu_set(v, VHU_SET_VRING_KICK, &(uint64_t){i}, 8, &q->kick_fd, 1)) < 0)
		goto fail;
	if (v->has_proto) {
		r = vhu_set_state(v, VHU_SET_VRING_ENABLE, i, 1);
		if (r < 0)
			goto fail;
	}
	q->ready = true;
	return 0;
fail:
	snprintf(v->err, sizeof(v->err), "vhost-user: cannot start queue %u: %s", i,
	         strerror(-r));
	queue_close_fds(q);
	return r;
}

/* Device reset: the backend stops each started ring (GET_VRING_BASE). */
static void device_reset(struct vhu_platform *v)
{
	for (unsigned i = 0; i < VHU_MAX_QUEUES; i++) {
		struct vhu_queue *q = &v->q[i];

		if (q->ready) {
			struct vhu_vring_state s = {.index = i};

			if (vhu_send(v, VHU_GET_VRING_BASE, 0, &s, sizeof(s), NULL, 0) ==
			    0)
				vhu_reply(v, VHU_GET_VRING_BASE, &s, sizeof(s));
		}
		queue_close_fds(q);
		*q = (struct vhu_queue){.kick_fd = -1, .call_fd = -1};
	}
	v->status = 0;
	v->drv_features = 0;
	v->dev_sel = v->drv_sel = v->queue_sel = 0;
}

static struct vhu_queue *sel_queue(struct vhu_platform *v)
{
	return v->queue_sel < v->max_queues ? &v->q[v->queue_sel] : NULL;
}

static uint8_t mmio_read(struct vhu_platform *v, uint32_t off, unsigned size,
                         uint64_t *val)
{
	struct vhu_queue *q = sel_queue(v);

	*val = 0;
	if (off >= VIRTIO_MMIO_CONFIG) {
		off -= VIRTIO_MMIO_CONFIG;
		if (off + size > sizeof(v->config))
			return VPROXY_ST_BAD_ACCESS;
		memcpy(val, v->config + off, size); /* little-endian host */
		return VPROXY_ST_OK;
	}
	if (size != 4)
		return VPROXY_ST_BAD_ACCESS;
	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE: *val = 0x74726976u; break;
	case VIRTIO_MMIO_VERSION: *val = 2; break;
	case VIRTIO_MMIO_DEVICE_ID: *val = VIRTIO_ID_BLOCK; break;
	case VIRTIO_MMIO_VENDOR_ID: *val = VHU_VENDOR_ID; break;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		*val = v->dev_sel < 2 ? (uint32_t)(v->dev_features >> (32 * v->dev_sel))
		                      : 0;
		break;
	case VIRTIO_MMIO_QUEUE_NUM_MAX: *val = q ? VHU_QUEUE_NUM_MAX : 0; break;
	case VIRTIO_MMIO_QUEUE_READY: *val = q && q->ready; break;
	case VIRTIO_MMIO_STATUS: *val = v->status; break;
	case VIRTIO_MMIO_CONFIG_GENERATION: *val = 0; break;
	default: return VPROXY_ST_BAD_ACCESS;
	}
	return VPROXY_ST_OK;
}

static void set_half(uint64_t *field, bool high, uint32_t v)
{
	*field = high ? (*field & 0xffffffffull) | (uint64_t)v << 32
	              : (*field & ~0xffffffffull) | v;
}

static uint8_t mmio_write(struct vhu_platform *v, uint32_t off, unsigned size,
                          uint64_t val)
{
	struct vhu_queue *q = sel_queue(v);
	uint32_t w = (uint32_t)val;
	uint64_t one = 1;

	if (size != 4)
		return VPROXY_ST_BAD_ACCESS;
	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL: v->dev_sel = w; break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL: v->drv_sel = w; break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (v->drv_sel < 2)
			set_half(&v->drv_features, v->drv_sel == 1, w);
		break;
	case VIRTIO_MMIO_QUEUE_SEL: v->queue_sel = w; break;
	case VIRTIO_MMIO_QUEUE_NUM:
		if (!q || q->ready)
			return VPROXY_ST_BAD_ACCESS;
		q->num = w;
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
	case VIRTIO_MMIO_QUEUE_USED_LOW:
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		if (!q || q->ready)
			return VPROXY_ST_BAD_ACCESS;
		set_half(off < VIRTIO_MMIO_QUEUE_AVAIL_LOW  ? &q->desc
		         : off < VIRTIO_MMIO_QUEUE_USED_LOW ? &q->avail
		                                            : &q->used,
		         off & 4, w);
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (!q)
			return VPROXY_ST_BAD_ACCESS;
		if (w == 1 && !q->ready && queue_start(v, v->queue_sel) < 0)
			return VPROXY_ST_BAD_ACCESS;
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		if (w >= v->max_queues || !v->q[w].ready)
			return VPROXY_ST_BAD_ACCESS;
		if (write(v->q[w].kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			return VPROXY_ST_BAD_ACCESS;
		break;
	case VIRTIO_MMIO_STATUS:
		if (w == 0) {
			device_reset(v);
			break;
		}
		if ((w & VIRTIO_CONFIG_S_FEATURES_OK) &&
		    !(v->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
			uint64_t f = v->drv_features & v->dev_features;

			if (v->has_proto)
				f |= 1ull << VHU_F_PROTOCOL_FEATURES;
			if (vhu_set_u64(v, VHU_SET_FEATURES, f) < 0)
				w &= ~(uint32_t)VIRTIO_CONFIG_S_FEATURES_OK;
		}
		v->status = w;
		break;
	default: return VPROXY_ST_BAD_ACCESS;
	}
	return VPROXY_ST_OK;
}

/* Answer everything the stub queued, in order, then re-arm req_event so
 * its next push notifies us again. */
static void serve_ring(struct vhu_platform *v)
{
	int more;

	if (!v->page)
		return;
	do {
		RING_IDX rp = v->ring.sring->req_prod;

		xen_rmb();
		if (RING_REQUEST_PROD_OVERFLOW(&v->ring, rp))
			return;
		while (v->ring.req_cons != rp) {
			struct vproxy_mmio_req req;
			struct vproxy_mmio_rsp *rsp;
			uint64_t val = 0;
			uint8_t st;

			RING_COPY_REQUEST(&v->ring, v->ring.req_cons, &req);
			v->ring.req_cons++;
			if (req.op == VPROXY_OP_READ)
				st = mmio_read(v, req.offset, req.size, &val);
			else if (req.op == VPROXY_OP_WRITE)
				st = mmio_write(v, req.offset, req.size, req.value);
			else
				st = VPROXY_ST_BAD_OP;
			rsp = RING_GET_RESPONSE(&v->ring, v->ring.rsp_prod_pvt);
			*rsp = (struct vproxy_mmio_rsp){
			        .id = req.id, .status = st, .value = val};
			v->ring.rsp_prod_pvt++;
		}
		RING_PUSH_RESPONSES(&v->ring);
		RING_FINAL_CHECK_FOR_REQUESTS(&v->ring, more);
	} while (more);
}

/* ---- the in-process xenstore ---- */

static struct xs_node *xs_find(struct vhu_platform *v, const char *path)
{
	for (unsigned i = 0; i < XS_NODES; i++)
		if (v->nodes[i].used && strcmp(v->nodes[i].path, path) == 0)
			return &v->nodes[i];
	return NULL;
}

static void xs_fire(struct vhu_platform *v, const char *path)
{
	for (unsigned i = 0; i < XS_WATCHES; i++) {
		struct vps_watch *w = &v->watches[i];
		size_t n = strlen(w->path);

		if (w->used && strncmp(path, w->path, n) == 0 &&
		    (path[n] == '\0' || path[n] == '/'))
			w->pending = true;
	}
}

static int xs_set(struct vhu_platform *v, const char *path, const char *value)
{
	struct xs_node *n = xs_find(v, path);

	if (strlen(path) >= sizeof(n->path) || strlen(value) >= sizeof(n->value))
		return -ENAMETOOLONG;
	for (unsigned i = 0; !n && i < XS_NODES; i++)
		if (!v->nodes[i].used)
			n = &v->nodes[i];
	if (!n)
		return -ENOSPC;
	n->used = true;
	snprintf(n->path, sizeof(n->path), "%s", path);
	snprintf(n->value, sizeof(n->value), "%s", value);
	xs_fire(v, path);
	return 0;
}

static void be_state(struct vhu_platform *v, int state)
{
	char path[96], val[8];

	snprintf(path, sizeof(path), "%s/state", v->be_path);
	snprintf(val, sizeof(val), "%d", state);
	xs_set(v, path, val);
}

/* Give up on the connection the way vproxyd does: error node, Closing. */
static void be_error(struct vhu_platform *v, const char *why)
{
	char path[96];

	snprintf(path, sizeof(path), "%s/error", v->be_path);
	xs_set(v, path, why);
	be_state(v, XenbusStateClosing);
}

static long fe_uint(struct vhu_platform *v, const char *leaf)
{
	char path[96];
	struct xs_node *n;
	char *end;
	long r;

	snprintf(path, sizeof(path), "%s/%s", v->fe_path, leaf);
	n = xs_find(v, path);
	if (!n)
		return -1;
	r = strtol(n->value, &end, 10);
	return *end || r < 0 ? -1 : r;
}

/* The backend half of the handshake (docs/PROTOCOL.md section 1). */
static void fe_state_changed(struct vhu_platform *v, long state)
{
	long gfn;

	switch (state) {
	case XenbusStateInitialising: be_state(v, XenbusStateInitWait); break;
	case XenbusStateInitialised:
		gfn = fe_uint(v, "ring-ref");
		if (gfn <= 0 || (size_t)gfn >= v->pages) {
			be_error(v, "bad ring-ref");
			break;
		}
		v->page = v->ram + ((size_t)gfn << PAGE_SHIFT);
		if (((struct vproxy_page_hdr *)v->page)->magic != VPROXY_PAGE_MAGIC) {
			v->page = NULL;
			be_error(v, "bad shared page magic");
			break;
		}
		BACK_RING_INIT(&v->ring, vproxy_page_sring(v->page), VPROXY_RING_BYTES);
		be_state(v, XenbusStateConnected);
		break;
	case XenbusStateClosing:
	case XenbusStateClosed:
		device_reset(v);
		v->page = NULL;
		be_state(v, XenbusStateClosed);
		break;
	default: break;
	}
}

static int p_xs_read(void *ctx, uint32_t tx, const char *path, char *buf, size_t len)
{
	struct xs_node *n = xs_find(ctx, path);

	(void)tx;
	if (!n)
		return -ENOENT;
	if (len)
		snprintf(buf, len, "%s", n->value);
	return (int)strlen(n->value);
}

static int p_xs_write(void *ctx, uint32_t tx, const char *path, const char *value)
{
	struct vhu_platform *v = ctx;
	char state_path[96];
	int r;

	(void)tx;
	r = xs_set(v, path, value);
	snprintf(state_path, sizeof(state_path), "%s/state", v->fe_path);
	if (r == 0 && strcmp(path, state_path) == 0)
		fe_state_changed(v, strtol(value, NULL, 10));
	return r;
}

static int p_xs_list(void *ctx, const char *path, char *buf, size_t len)
{
	struct vhu_platform *v = ctx;
	char dir[64];

	snprintf(dir, sizeof(dir), "/local/domain/%u/device/" VPROXY_XS_TYPE,
	         v->plat.domid);
	if (strcmp(path, dir) != 0)
		return -ENOENT;
	if (len < 2)
		return -ENOSPC;
	memcpy(buf, "0", 2);
	return 1;
}

static int p_xs_tx_begin(void *ctx, uint32_t *tx)
{
	(void)ctx;
	*tx = 1; /* one thread, no one else writes: never a conflict */
	return 0;
}

static int p_xs_tx_end(void *ctx, uint32_t tx, int abort_tx)
{
	(void)ctx;
	(void)tx;
	(void)abort_tx;
	return 0;
}

static int p_xs_watch(void *ctx, const char *path, struct vps_watch **out)
{
	struct vhu_platform *v = ctx;

	for (unsigned i = 0; i < XS_WATCHES; i++) {
		struct vps_watch *w = &v->watches[i];

		if (w->used)
			continue;
		if (strlen(path) >= sizeof(w->path))
			return -ENAMETOOLONG;
		w->used = true;
		w->pending = true; /* fires once right away, as xenstore does */
		snprintf(w->path, sizeof(w->path), "%s", path);
		*out = w;
		return 0;
	}
	return -ENOSPC;
}

static void p_xs_unwatch(void *ctx, struct vps_watch *w)
{
	(void)ctx;
	if (w)
		w->used = false;
}

/* ---- event channel ---- */

static int p_evtchn_alloc(void *ctx, uint16_t be)
{
	(void)ctx;
	(void)be;
	return 1;
}

static int p_evtchn_notify(void *ctx, int port)
{
	(void)port;
	serve_ring(ctx);
	return 0;
}

static void p_evtchn_close(void *ctx, int port)
{
	(void)ctx;
	(void)port;
}

/* Sleep on the call eventfds; a call becomes the used-buffer bit of the
 * page's interrupt status, as vproxyd would set it. */
static int p_wait(void *ctx, int port, struct vps_watch *w, uint64_t timeout_ns)
{
	struct vhu_platform *v = ctx;
	struct pollfd fds[VHU_MAX_QUEUES];
	struct timespec ts = {.tv_sec = (time_t)(timeout_ns / 1000000000u),
	                      .tv_nsec = (long)(timeout_ns % 1000000000u)};
	nfds_t n = 0;
	int r, mask = 0;

	if (w && w->pending) {
		w->pending = false;
		return VPS_WAKE_WATCH;
	}
	if (port >= 0 && v->page)
		for (unsigned i = 0; i < v->max_queues; i++)
			if (v->q[i].ready)
				fds[n++] = (struct pollfd){.fd = v->q[i].call_fd,
				                           .events = POLLIN};
	r = ppoll(fds, n, &ts, NULL);
	if (r < 0)
		return errno == EINTR ? 0 : -errno;
	for (nfds_t i = 0; i < n; i++) {
		uint64_t cnt;

		if (!(fds[i].revents & POLLIN))
			continue;
		if (read(fds[i].fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
			return -errno;
		mask = VPS_WAKE_EVTCHN;
	}
	if (mask)
		__atomic_fetch_or(&((struct vproxy_page_hdr *)v->page)->irq_status, 1u,
		                  __ATOMIC_SEQ_CST);
	return mask;
}

/* ---- memory ---- */

static void *p_dma_alloc(void *ctx, uint16_t be, size_t bytes, uint64_t *dev_addr)
{
	struct vhu_platform *v = ctx;
	size_t n = (bytes + PAGE_SIZE - 1) >> PAGE_SHIFT, run = 0, start = 0;
	bool found = false;

	(void)be;
	if (!n)
		return NULL;
	pthread_mutex_lock(&v->lock);
	for (int pass = 0; pass < 2 && !found; pass++) {
		size_t from = pass ? 1 : v->hint, to = pass ? v->hint + n : v->pages;

		if (to > v->pages)
			to = v->pages;
		run = 0;
		for (size_t g = from; g < to && !found; g++) {
			run = v->busy[g] ? 0 : run + 1;
			if (run == n) {
				start = g + 1 - n;
				found = true;
			}
		}
	}
	if (!found) {
		pthread_mutex_unlock(&v->lock);
		errno = ENOMEM;
		return NULL;
	}
	memset(v->busy + start, 1, n);
	v->run[start] = (uint32_t)n;
	v->free_pages -= n;
	v->hint = start + n < v->pages ? start + n : 1;
	pthread_mutex_unlock(&v->lock);
	memset(v->ram + (start << PAGE_SHIFT), 0, n << PAGE_SHIFT);
	*dev_addr = (uint64_t)start << PAGE_SHIFT;
	return v->ram + (start << PAGE_SHIFT);
}

static void p_dma_free(void *ctx, void *mem, size_t bytes)
{
	struct vhu_platform *v = ctx;
	size_t g, n;

	if (!mem)
		return;
	g = (size_t)((uint8_t *)mem - v->ram) >> PAGE_SHIFT;
	pthread_mutex_lock(&v->lock);
	n = g < v->pages ? v->run[g] : 0;
	if (!n || n != (bytes + PAGE_SIZE - 1) >> PAGE_SHIFT) {
		pthread_mutex_unlock(&v->lock);
		fprintf(stderr,
		        "vhost platform: dma_free(%p, %zu) matches no allocation\n", mem,
		        bytes);
		abort();
	}
	memset(v->busy + g, 0, n);
	v->run[g] = 0;
	v->free_pages += n;
	pthread_mutex_unlock(&v->lock);
}

static uint64_t p_now_ns(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void p_log(void *ctx, enum vps_log_level level, const char *msg)
{
	(void)ctx;
	if (level <= VPS_LOG_WARN)
		fprintf(stderr, "vhost-guest[%d]: %s\n", (int)getpid(), msg);
}

/* ---- setup ---- */

static int vhu_connect(struct vhu_platform *v, const char *path, uint64_t timeout_ns)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	uint64_t deadline = p_now_ns(NULL) + timeout_ns;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	for (;;) {
		int r;

		v->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (v->sock < 0)
			return -errno;
		if (connect(v->sock, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return 0;
		r = -errno;
		close(v->sock);
		v->sock = -1;
		if ((r != -ENOENT && r != -ECONNREFUSED) || p_now_ns(NULL) >= deadline)
			return r;
		usleep(10000);
	}
}

static int vhu_negotiate(struct vhu_platform *v)
{
	struct vhu_mem mem = {.nregions = 1};
	struct vhu_config cfg = {.size = VHU_CONFIG_LEN};
	uint64_t f, pf = 0, nq = 1;
	int r;

	if ((r = vhu_get_u64(v, VHU_GET_FEATURES, &f)) < 0)
		return r;
	v->has_proto = f & (1ull << VHU_F_PROTOCOL_FEATURES);
	v->dev_features =
	        f & ~(1ull << VHU_F_PROTOCOL_FEATURES) & ~(1ull << VHU_F_LOG_ALL);
	if ((r = vhu_send(v, VHU_SET_OWNER, 0, NULL, 0, NULL, 0)) < 0)
		return r;
	if (v->has_proto) {
		if ((r = vhu_get_u64(v, VHU_GET_PROTOCOL_FEATURES, &pf)) < 0)
			return r;
		pf &= (1ull << VHU_PF_MQ) | (1ull << VHU_PF_REPLY_ACK) |
		      (1ull << VHU_PF_CONFIG);
		/* Not yet acked: this message itself never gets a reply. */
		if ((r = vhu_send(v, VHU_SET_PROTOCOL_FEATURES, 0, &pf, sizeof(pf), NULL,
		                  0)) < 0)
			return r;
		v->proto = pf;
	}
	if (!(v->proto & (1ull << VHU_PF_CONFIG))) {
		snprintf(v->err, sizeof(v->err),
		         "vhost-user: backend cannot report its config");
		return -ENOTSUP;
	}
	if ((v->proto & (1ull << VHU_PF_MQ)) &&
	    (r = vhu_get_u64(v, VHU_GET_QUEUE_NUM, &nq)) < 0)
		return r;
	v->max_queues = nq < 1 ? 1 : nq > VHU_MAX_QUEUES ? VHU_MAX_QUEUES : (unsigned)nq;
	mem.region[0] = (struct vhu_mem_region){.guest_phys_addr = 0,
	                                        .memory_size = v->pages << PAGE_SHIFT,
	                                        .userspace_addr = (uintptr_t)v->ram,
	                                        .mmap_offset = 0};
	r = vhu_set(v, VHU_SET_MEM_TABLE, &mem, sizeof(mem), &v->ram_fd, 1);
	if (r < 0)
		return r;
	r = vhu_send(v, VHU_GET_CONFIG, 0, &cfg, sizeof(cfg), NULL, 0);
	if (r == 0)
		r = vhu_reply(v, VHU_GET_CONFIG, &cfg, sizeof(cfg));
	if (r >= 0 && r != (int)sizeof(cfg)) {
		snprintf(v->err, sizeof(v->err), "vhost-user: config reply of %d bytes",
		         r);
		return -EPROTO;
	}
	if (r < 0)
		return r;
	memcpy(v->config, cfg.payload, sizeof(v->config));
	return 0;
}

struct vhu_platform *vhu_create(const char *path, uint16_t domid, size_t ram_bytes,
                                uint64_t timeout_ns, char *err, size_t errlen)
{
	struct vhu_platform *v = calloc(1, sizeof(*v));
	char p[96];
	int r;

	if (!v) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&v->lock, NULL);
	v->sock = v->ram_fd = -1;
	v->ram = MAP_FAILED;
	for (unsigned i = 0; i < VHU_MAX_QUEUES; i++)
		v->q[i].kick_fd = v->q[i].call_fd = -1;
	v->pages = (ram_bytes + PAGE_SIZE - 1) >> PAGE_SHIFT;
	v->busy = calloc(v->pages, 1);
	v->run = calloc(v->pages, sizeof(*v->run));
	v->ram_fd = memfd_create("vhu-guest-ram", MFD_CLOEXEC);
	if (!v->busy || !v->run || v->pages < 2 || v->ram_fd < 0 ||
	    ftruncate(v->ram_fd, (off_t)(v->pages << PAGE_SHIFT)) < 0) {
		snprintf(err, errlen, "cannot allocate %zu bytes of guest RAM",
		         ram_bytes);
		goto fail;
	}
	v->ram = mmap(NULL, v->pages << PAGE_SHIFT, PROT_READ | PROT_WRITE, MAP_SHARED,
	              v->ram_fd, 0);
	if (v->ram == MAP_FAILED) {
		snprintf(err, errlen, "cannot map guest RAM: %s", strerror(errno));
		goto fail;
	}
	v->busy[0] = 1; /* address 0 reads as "unset" */
	v->hint = 1;
	v->free_pages = v->pages - 1;
	r = vhu_connect(v, path, timeout_ns);
	if (r < 0) {
		snprintf(err, errlen, "cannot connect to %s: %s", path, strerror(-r));
		goto fail;
	}
	r = vhu_negotiate(v);
	if (r < 0) {
		snprintf(err, errlen, "%s", v->err[0] ? v->err : strerror(-r));
		goto fail;
	}
	v->plat = (struct vps_platform){
	        .ctx = v,
	        .domid = domid,
	        .addr_mode = VPS_ADDR_GFN,
	        .dma_alloc = p_dma_alloc,
	        .dma_free = p_dma_free,
	        .evtchn_alloc = p_evtchn_alloc,
	        .evtchn_notify = p_evtchn_notify,
	        .evtchn_close = p_evtchn_close,
	        .wait = p_wait,
	        .xs_read = p_xs_read,
	        .xs_write = p_xs_write,
	        .xs_list = p_xs_list,
	        .xs_tx_begin = p_xs_tx_begin,
	        .xs_tx_end = p_xs_tx_end,
	        .xs_watch = p_xs_watch,
	        .xs_unwatch = p_xs_unwatch,
	        .now_ns = p_now_ns,
	        .log = p_log,
	};
	snprintf(v->fe_path, sizeof(v->fe_path),
	         "/local/domain/%u/device/" VPROXY_XS_TYPE "/0", domid);
	snprintf(v->be_path, sizeof(v->be_path),
	         "/local/domain/0/backend/" VPROXY_XS_TYPE "/%u/0", domid);
	snprintf(p, sizeof(p), "%s/backend", v->fe_path);
	xs_set(v, p, v->be_path);
	snprintf(p, sizeof(p), "%s/backend-id", v->fe_path);
	xs_set(v, p, "0");
	snprintf(p, sizeof(p), "%s/state", v->fe_path);
	xs_set(v, p, "1");
	be_state(v, XenbusStateInitWait);
	return v;
fail:
	vhu_destroy(v);
	return NULL;
}

const struct vps_platform *vhu_platform(struct vhu_platform *v)
{
	return &v->plat;
}

size_t vhu_free_bytes(struct vhu_platform *v)
{
	size_t n;

	pthread_mutex_lock(&v->lock);
	n = v->free_pages << PAGE_SHIFT;
	pthread_mutex_unlock(&v->lock);
	return n;
}

void vhu_destroy(struct vhu_platform *v)
{
	if (!v)
		return;
	for (unsigned i = 0; i < VHU_MAX_QUEUES; i++)
		queue_close_fds(&v->q[i]);
	if (v->sock >= 0)
		close(v->sock);
	if (v->ram != MAP_FAILED)
		munmap(v->ram, v->pages << PAGE_SHIFT);
	if (v->ram_fd >= 0)
		close(v->ram_fd);
	free(v->busy);
	free(v->run);
	pthread_mutex_destroy(&v->lock);
	free(v);
}
