/* SPDX-License-Identifier: MIT */
/*
 * Stub platform over a vhost-user-blk backend (see vhost_platform.h):
 * event channels, guest memory and its page allocator, setup and the
 * platform table.  vhost_internal.h names the other parts.
 */
#include "vhost_internal.h"

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
	vhu_serve_ring(ctx);
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
	        .xs_read = vhu_xs_read,
	        .xs_write = vhu_xs_write,
	        .xs_list = vhu_xs_list,
	        .xs_tx_begin = vhu_xs_tx_begin,
	        .xs_tx_end = vhu_xs_tx_end,
	        .xs_watch = vhu_xs_watch,
	        .xs_unwatch = vhu_xs_unwatch,
	        .now_ns = p_now_ns,
	        .log = p_log,
	};
	snprintf(v->fe_path, sizeof(v->fe_path),
	         "/local/domain/%u/device/" VPROXY_XS_TYPE "/0", domid);
	snprintf(v->be_path, sizeof(v->be_path),
	         "/local/domain/0/backend/" VPROXY_XS_TYPE "/%u/0", domid);
	snprintf(p, sizeof(p), "%s/backend", v->fe_path);
	vhu_xs_set(v, p, v->be_path);
	snprintf(p, sizeof(p), "%s/backend-id", v->fe_path);
	vhu_xs_set(v, p, "0");
	snprintf(p, sizeof(p), "%s/state", v->fe_path);
	vhu_xs_set(v, p, "1");
	vhu_be_state(v, XenbusStateInitWait);
	return v;
fail:
	vhu_destroy(v);
	return NULL;
}

const struct vps_platform *vhu_platform(struct vhu_platform *v)
{
	return &v->plat;
}

uint64_t vhu_kick_writes(const struct vhu_platform *v)
{
	return v->kick_writes;
}

void vhu_destroy(struct vhu_platform *v)
{
	if (!v)
		return;
	for (unsigned i = 0; i < VHU_MAX_QUEUES; i++)
		vhu_queue_close_fds(&v->q[i]);
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
