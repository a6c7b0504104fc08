/* SPDX-License-Identifier: MIT */
/*
 * The stub's platform on the sim host: a first-fit page allocator over the
 * simguest's RAM (granting what it hands out in grant mode), the
 * simguest's event channels, and libxenstore with one connection per watch
 * so that device threads never see each other's watch events.
 */
#include "platform_sim.h"

#include "simguest.h"
#include "xs_linux.h"
#include <vproxy/proto.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAGE_SHIFT 12
#define PAGE_SIZE (1u << PAGE_SHIFT)
/* Ports below this have their irq fd cached; others are looked up. */
#define PORT_CACHE 4097

struct vps_sim {
	struct vps_xs xs; /* first: the xenstore operations take ctx as it */
	struct vps_platform plat;
	struct simguest *sg;
	uint8_t *ram;
	size_t pages;
	enum vps_log_level level;
	char prog[32];

	pthread_mutex_t lock; /* guards everything below */
	/* run[g] = pages in the allocation starting at gfn g, 0 elsewhere;
	 * used[g] marks every allocated page. */
	uint32_t *run;
	uint8_t *used;
	int32_t *gref; /* grant mode: first ref of the allocation at g */
	size_t hint;   /* where the next search starts */
	size_t free_pages;
	int port_fd[PORT_CACHE];
};

static void *sim_dma_alloc(void *ctx, uint16_t be, size_t bytes, uint64_t *dev_addr)
{
	struct vps_sim *s = ctx;
	size_t n = (bytes + PAGE_SIZE - 1) / PAGE_SIZE, start = 0, runlen = 0;
	bool found = false;
	void *mem;
	int ref = -1;

	if (n == 0 || n > UINT32_MAX)
		return NULL;
	pthread_mutex_lock(&s->lock);
	/* Two passes: from the hint to the end, then from frame 1. */
	for (int pass = 0; pass < 2 && !found; pass++) {
		size_t from = pass == 0 ? s->hint : 1,
		       to = pass == 0 ? s->pages : s->hint + n;

		if (to > s->pages)
			to = s->pages;
		runlen = 0;
		for (size_t g = from; g < to; g++) {
			if (s->used[g]) {
				runlen = 0;
				continue;
			}
			if (++runlen == n) {
				start = g + 1 - n;
				found = true;
				break;
			}
		}
	}
	if (!found) {
		pthread_mutex_unlock(&s->lock);
		errno = ENOMEM;
		return NULL;
	}
	if (s->plat.addr_mode == VPS_ADDR_GRANT) {
		ref = simguest_grant(s->sg, be, start, (unsigned)n, 0);
		if (ref < 0) {
			pthread_mutex_unlock(&s->lock);
			errno = -ref;
			return NULL;
		}
		*dev_addr = VPROXY_GRANT_ADDR((uint64_t)ref, 0);
	} else {
		*dev_addr = (uint64_t)start << PAGE_SHIFT;
	}
	memset(s->used + start, 1, n);
	s->run[start] = (uint32_t)n;
	s->gref[start] = ref;
	s->hint = start + n < s->pages ? start + n : 1;
	s->free_pages -= n;
	mem = s->ram + (start << PAGE_SHIFT);
	pthread_mutex_unlock(&s->lock);
	memset(mem, 0, n << PAGE_SHIFT);
	return mem;
}

static void sim_dma_free(void *ctx, void *mem, size_t bytes)
{
	struct vps_sim *s = ctx;
	size_t g, n;

	if (!mem)
		return;
	g = (size_t)((uint8_t *)mem - s->ram) >> PAGE_SHIFT;
	pthread_mutex_lock(&s->lock);
	n = g < s->pages ? s->run[g] : 0;
	if (n == 0 || n != (bytes + PAGE_SIZE - 1) / PAGE_SIZE) {
		pthread_mutex_unlock(&s->lock);
		fprintf(stderr,
		        "%s: dma_free of %p (%zu bytes) does not match an allocation\n",
		        s->prog, mem, bytes);
		abort();
	}
	if (s->gref[g] >= 0)
		simguest_ungrant(s->sg, s->gref[g], (unsigned)n);
	memset(s->used + g, 0, n);
	s->run[g] = 0;
	s->gref[g] = -1;
	s->free_pages += n;
	pthread_mutex_unlock(&s->lock);
}

static int sim_evtchn_alloc(void *ctx, uint16_t be)
{
	struct vps_sim *s = ctx;
	int port = simguest_evtchn_alloc(s->sg, be);
	int fd;

	if (port < 0 || port >= PORT_CACHE)
		return port;
	fd = simguest_evtchn_fd(s->sg, port);
	pthread_mutex_lock(&s->lock);
	s->port_fd[port] = fd;
	pthread_mutex_unlock(&s->lock);
	return port;
}

static int sim_evtchn_notify(void *ctx, int port)
{
	struct vps_sim *s = ctx;

	return simguest_evtchn_notify(s->sg, port);
}

static void sim_evtchn_close(void *ctx, int port)
{
	struct vps_sim *s = ctx;

	if (port >= 0 && port < PORT_CACHE) {
		pthread_mutex_lock(&s->lock);
		s->port_fd[port] = -1;
		pthread_mutex_unlock(&s->lock);
	}
	simguest_evtchn_close(s->sg, port);
}

static int port_fd(struct vps_sim *s, int port)
{
	int fd;

	if (port < 0 || port >= PORT_CACHE)
		return simguest_evtchn_fd(s->sg, port);
	/* Only the port's own thread changes its slot; no lock needed to
	 * read a value that thread wrote itself. */
	fd = __atomic_load_n(&s->port_fd[port], __ATOMIC_RELAXED);
	return fd >= 0 ? fd : simguest_evtchn_fd(s->sg, port);
}

static int sim_wait(void *ctx, int port, struct vps_watch *w, uint64_t timeout_ns)
{
	struct vps_sim *s = ctx;
	int fd = port >= 0 ? port_fd(s, port) : -1;
	int mask = vps_linux_poll(fd, w, timeout_ns);

	if (mask < 0)
		return mask;
	if (mask & VPS_WAKE_EVTCHN) {
		int r = simguest_evtchn_clear(fd);

		if (r < 0)
			return r;
	}
	if (mask & VPS_WAKE_WATCH)
		vps_watch_drain(w);
	return mask;
}

static void sim_log(void *ctx, enum vps_log_level level, const char *msg)
{
	struct vps_sim *s = ctx;

	vps_linux_log(s->prog, s->level, level, msg);
}

struct vps_sim *vps_sim_create(struct simguest *sg, enum vps_addr_mode mode,
                               const char *prog)
{
	struct vps_sim *s;
	size_t ram_len;
	int err;

	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	s->sg = sg;
	s->ram = simguest_ram(sg, &ram_len);
	s->pages = ram_len >> PAGE_SHIFT;
	s->level = VPS_LOG_WARN;
	snprintf(s->prog, sizeof(s->prog), "%s", prog ? prog : "vproxy-stub");
	for (int i = 0; i < PORT_CACHE; i++)
		s->port_fd[i] = -1;
	s->run = calloc(s->pages, sizeof(*s->run));
	s->used = calloc(s->pages, 1);
	s->gref = malloc(s->pages * sizeof(*s->gref));
	if (!s->run || !s->used || !s->gref || s->pages < 2) {
		err = s->pages < 2 ? EINVAL : ENOMEM;
		goto fail;
	}
	for (size_t g = 0; g < s->pages; g++)
		s->gref[g] = -1;
	s->used[0] = 1; /* device address 0 looks like "unset" */
	s->hint = 1;
	s->free_pages = s->pages - 1;
	err = -vps_xs_open(&s->xs);
	if (err)
		goto fail;
	s->plat = (struct vps_platform){
	        .ctx = s,
	        .domid = simguest_domid(sg),
	        .addr_mode = mode,
	        .dma_alloc = sim_dma_alloc,
	        .dma_free = sim_dma_free,
	        .evtchn_alloc = sim_evtchn_alloc,
	        .evtchn_notify = sim_evtchn_notify,
	        .evtchn_close = sim_evtchn_close,
	        .wait = sim_wait,
	        .now_ns = vps_linux_now_ns,
	        .log = sim_log,
	};
	vps_xs_fill_ops(&s->plat);
	return s;
fail:
	free(s->run);
	free(s->used);
	free(s->gref);
	pthread_mutex_destroy(&s->lock);
	free(s);
	errno = err;
	return NULL;
}

const struct vps_platform *vps_sim_platform(struct vps_sim *s)
{
	return &s->plat;
}

void vps_sim_set_log_level(struct vps_sim *s, enum vps_log_level level)
{
	s->level = level;
}

void vps_sim_destroy(struct vps_sim *s)
{
	if (!s)
		return;
	vps_xs_close(&s->xs);
	free(s->run);
	free(s->used);
	free(s->gref);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
