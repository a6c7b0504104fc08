/* SPDX-License-Identifier: MIT */
/*
 * The proxy stub (proxy-stub/stub.c) through a fake in-process platform:
 * an in-memory xenstore with transactions and watches, a fake clock, and a
 * fake backend that consumes the ring.  In the deterministic mode the
 * backend runs whenever the stub sleeps (or, with be_inline, whenever it
 * is notified); in the threaded mode it runs on its own thread with real
 * event signalling.  Covers the handshake and its failures, register
 * reads, posted writes and their order, ring-full handling, local
 * InterruptStatus/ACK, interrupts, timeouts and a backend that goes away.
 * The "vblk" case drives guest/vblk.c against a small fake virtio-blk
 * device (registers, split virtqueues, a RAM disk) behind the same fake
 * backend: negotiation, data, segmentation, queue-full, interrupt and
 * notification suppression, and the hostile modes.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <xen/io/xenbus.h>

#include "stub.h"
#include "vblk.h"

#define FE_DOM 7
#define BE_DOM 0
#define MAX_NODES 96
#define MAX_WATCHES 8
#define MAX_ALLOCS 256
#define MAX_TX_WRITES 16
#define LOG_MAX 4096
#define FE_DIR "/local/domain/7/device/vproxy/0"
#define BE_DIR "/local/domain/0/backend/vproxy/7/0"
#define MS 1000000ull

struct node {
	bool used;
	char path[128];
	char val[128];
};

struct vps_watch {
	bool used;
	bool fired;
	char path[128];
};

struct alloc {
	void *mem;
	size_t bytes;
	uint64_t addr;
};

struct logged {
	uint8_t op;
	uint8_t size;
	uint32_t off;
	uint64_t val;
};

struct fake;

/* A device model behind the fake backend (registers and more). */
struct fake_dev_ops {
	uint8_t (*read)(struct fake *f, uint32_t off, unsigned size, uint64_t *val);
	uint8_t (*write)(struct fake *f, uint32_t off, unsigned size, uint64_t val);
};

struct fake {
	struct vps_platform plat;
	uint64_t now;

	struct node nodes[MAX_NODES];
	struct vps_watch watches[MAX_WATCHES];
	uint32_t next_tx;
	uint32_t open_tx;
	struct node tx_writes[MAX_TX_WRITES];
	unsigned ntx_writes;
	unsigned fail_commits; /* commits to refuse with -EAGAIN */

	struct alloc allocs[MAX_ALLOCS];
	unsigned nallocs, frees;
	unsigned next_page;

	int port;
	bool port_open;
	unsigned ports_closed;

	/* the backend */
	bool be_connected;
	bool be_inline;               /* run on every notify, not only on sleeps */
	bool be_silent;               /* consume nothing */
	bool be_bad_id;               /* answer with a wrong id */
	bool be_auto_connect;         /* answer Initialised with Connected */
	bool be_auto_close;           /* answer Closing with Closed */
	const char *be_connect_error; /* answer Initialised with this error */
	bool be_failed;               /* never leave Closed (storage did not open) */
	char fe_states[32];           /* every frontend state written, in order */
	uint32_t refuse_off;          /* answer BAD_ACCESS for this offset (0: none) */
	uint32_t irq_on_write_off;    /* a write here raises irq bit 0 */
	void *be_page;
	struct vproxy_back_ring be_ring;
	unsigned be_kicks; /* notifications the stub sent */
	unsigned fe_kicks; /* notifications the backend sent */
	bool fe_event;     /* pending event for the stub */
	unsigned max_outstanding;
	uint64_t regs[0x400];
	struct logged log[LOG_MAX];
	unsigned nlog;
	const struct fake_dev_ops *dev;
	void *dev_state;

	/* scripted events: on the n-th sleep, call hook */
	unsigned sleeps;
	unsigned hook_at;
	void (*hook)(struct fake *f);

	/* threaded mode */
	bool threaded;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool be_event;
	bool stop;
	pthread_t thread;
};

static struct fake F;

/* --- in-memory xenstore --- */

static struct node *node_find(struct fake *f, const char *path)
{
	for (int i = 0; i < MAX_NODES; i++)
		if (f->nodes[i].used && strcmp(f->nodes[i].path, path) == 0)
			return &f->nodes[i];
	return NULL;
}

static const char *xs_get(struct fake *f, const char *path)
{
	struct node *n = node_find(f, path);

	return n ? n->val : NULL;
}

static void be_on_fe_write(struct fake *f, const char *path, const char *val);

static void fire_watches(struct fake *f, const char *path)
{
	for (int i = 0; i < MAX_WATCHES; i++) {
		struct vps_watch *w = &f->watches[i];
		size_t l = strlen(w->path);

		if (w->used && strncmp(path, w->path, l) == 0 &&
		    (path[l] == '\0' || path[l] == '/'))
			w->fired = true;
	}
}

static void xs_put(struct fake *f, const char *path, const char *val)
{
	struct node *n = node_find(f, path);

	for (int i = 0; !n && i < MAX_NODES; i++) {
		if (!f->nodes[i].used) {
			n = &f->nodes[i];
			n->used = true;
			snprintf(n->path, sizeof(n->path), "%s", path);
		}
	}
	ck_assert_ptr_nonnull(n);
	snprintf(n->val, sizeof(n->val), "%s", val);
	fire_watches(f, path);
	be_on_fe_write(f, path, val);
}

static void xs_del_tree(struct fake *f, const char *dir)
{
	size_t l = strlen(dir);

	for (int i = 0; i < MAX_NODES; i++) {
		struct node *n = &f->nodes[i];

		if (n->used && strncmp(n->path, dir, l) == 0 &&
		    (n->path[l] == '\0' || n->path[l] == '/'))
			n->used = false;
	}
	fire_watches(f, dir);
}

static int fk_xs_read(void *ctx, uint32_t tx, const char *path, char *buf, size_t len)
{
	struct fake *f = ctx;
	const char *v = xs_get(f, path);

	if (tx)
		ck_assert_uint_eq(tx, f->open_tx);
	if (!v)
		return -ENOENT;
	snprintf(buf, len, "%s", v);
	return (int)strlen(v);
}

static int fk_xs_write(void *ctx, uint32_t tx, const char *path, const char *value)
{
	struct fake *f = ctx;

	if (tx == 0) {
		xs_put(f, path, value);
		return 0;
	}
	ck_assert_uint_eq(tx, f->open_tx);
	ck_assert_uint_lt(f->ntx_writes, MAX_TX_WRITES);
	snprintf(f->tx_writes[f->ntx_writes].path, sizeof(f->tx_writes[0].path), "%s",
	         path);
	snprintf(f->tx_writes[f->ntx_writes].val, sizeof(f->tx_writes[0].val), "%s",
	         value);
	f->ntx_writes++;
	return 0;
}

static int fk_xs_list(void *ctx, const char *path, char *buf, size_t len)
{
	struct fake *f = ctx;
	size_t l = strlen(path), used = 0;
	int count = 0;
	bool any = false;

	for (int i = 0; i < MAX_NODES; i++) {
		struct node *n = &f->nodes[i];
		char child[64];
		const char *rest, *slash;
		bool dup = false;

		if (!n->used || strncmp(n->path, path, l) != 0 || n->path[l] != '/')
			continue;
		any = true;
		rest = n->path + l + 1;
		slash = strchr(rest, '/');
		snprintf(child, sizeof(child), "%.*s",
		         (int)(slash ? (size_t)(slash - rest) : strlen(rest)), rest);
		for (const char *s = buf; s < buf + used; s += strlen(s) + 1)
			if (strcmp(s, child) == 0)
				dup = true;
		if (dup)
			continue;
		if (used + strlen(child) + 1 > len)
			return -ENOSPC;
		memcpy(buf + used, child, strlen(child) + 1);
		used += strlen(child) + 1;
		count++;
	}
	return any ? count : -ENOENT;
}

static int fk_xs_tx_begin(void *ctx, uint32_t *tx)
{
	struct fake *f = ctx;

	ck_assert_uint_eq(f->open_tx, 0);
	f->open_tx = ++f->next_tx;
	f->ntx_writes = 0;
	*tx = f->open_tx;
	return 0;
}

static int fk_xs_tx_end(void *ctx, uint32_t tx, int abort_tx)
{
	struct fake *f = ctx;
	unsigned n = f->ntx_writes;

	ck_assert_uint_eq(tx, f->open_tx);
	f->open_tx = 0;
	f->ntx_writes = 0;
	if (abort_tx)
		return 0;
	if (f->fail_commits) {
		f->fail_commits--;
		return -EAGAIN;
	}
	for (unsigned i = 0; i < n; i++)
		xs_put(f, f->tx_writes[i].path, f->tx_writes[i].val);
	return 0;
}

static int fk_xs_watch(void *ctx, const char *path, struct vps_watch **out)
{
	struct fake *f = ctx;

	for (int i = 0; i < MAX_WATCHES; i++) {
		if (!f->watches[i].used) {
			f->watches[i] = (struct vps_watch){.used = true, .fired = true};
			snprintf(f->watches[i].path, sizeof(f->watches[i].path), "%s",
			         path);
			*out = &f->watches[i];
			return 0;
		}
	}
	return -ENOSPC;
}

static void fk_xs_unwatch(void *ctx, struct vps_watch *w)
{
	(void)ctx;
	ck_assert(w->used);
	w->used = false;
}

static unsigned watches_in_use(struct fake *f)
{
	unsigned n = 0;

	for (int i = 0; i < MAX_WATCHES; i++)
		n += f->watches[i].used;
	return n;
}

/* --- memory --- */

static void *fk_dma_alloc(void *ctx, uint16_t be, size_t bytes, uint64_t *dev_addr)
{
	struct fake *f = ctx;
	size_t pages = (bytes + 4095) / 4096;
	struct alloc *a;

	ck_assert_uint_eq(be, BE_DOM);
	if (f->nallocs == MAX_ALLOCS)
		return NULL;
	a = &f->allocs[f->nallocs++];
	a->mem = aligned_alloc(4096, pages * 4096);
	ck_assert_ptr_nonnull(a->mem);
	memset(a->mem, 0, pages * 4096);
	a->bytes = bytes;
	/* Device addresses as the platform would form them; never 0. */
	if (f->plat.addr_mode == VPS_ADDR_GRANT)
		a->addr = VPROXY_GRANT_ADDR(8 + f->next_page, 0);
	else
		a->addr = (uint64_t)(16 + f->next_page) << 12;
	f->next_page += (unsigned)pages + 1; /* a hole between allocations */
	*dev_addr = a->addr;
	return a->mem;
}

static void fk_dma_free(void *ctx, void *mem, size_t bytes)
{
	struct fake *f = ctx;

	for (unsigned i = 0; i < f->nallocs; i++) {
		if (f->allocs[i].mem == mem) {
			ck_assert_uint_eq(f->allocs[i].bytes, bytes);
			free(mem);
			f->allocs[i].mem = NULL;
			f->frees++;
			return;
		}
	}
	ck_abort_msg("dma_free of unknown memory");
}

/* Host pointer for a device address range inside one allocation. */
static void *fk_translate(struct fake *f, uint64_t addr, size_t len)
{
	for (unsigned i = 0; i < f->nallocs; i++) {
		struct alloc *a = &f->allocs[i];

		if (a->mem && addr >= a->addr && len <= a->bytes &&
		    addr - a->addr <= a->bytes - len)
			return (uint8_t *)a->mem + (addr - a->addr);
	}
	return NULL;
}

/* --- the fake backend --- */

static uint8_t regs_read(struct fake *f, uint32_t off, unsigned size, uint64_t *val)
{
	(void)size;
	*val = f->regs[off / 4];
	return VPROXY_ST_OK;
}

static uint8_t regs_write(struct fake *f, uint32_t off, unsigned size, uint64_t val)
{
	(void)size;
	f->regs[off / 4] = val;
	return VPROXY_ST_OK;
}

static const struct fake_dev_ops regs_ops = {regs_read, regs_write};

/* The backend notifies the stub's event channel. */
static void be_kick_fe(struct fake *f)
{
	if (f->threaded)
		pthread_mutex_lock(&f->lock);
	f->fe_kicks++;
	f->fe_event = true;
	if (f->threaded) {
		pthread_cond_broadcast(&f->cond);
		pthread_mutex_unlock(&f->lock);
	}
}

static void be_raise(struct fake *f, uint32_t bits)
{
	struct vproxy_page_hdr *hdr = f->be_page;

	__atomic_fetch_or(&hdr->irq_status, bits, __ATOMIC_ACQ_REL);
	be_kick_fe(f);
}

static void be_close(struct fake *f, const char *error)
{
	f->be_connected = false;
	if (error)
		xs_put(f, BE_DIR "/error", error);
	xs_put(f, BE_DIR "/state", "5");
}

/* Answer everything on the ring; returns whether the stub must be told. */
static bool be_run(struct fake *f)
{
	struct vproxy_back_ring *r = &f->be_ring;
	bool kick = false;
	int more, notify;

	if (!f->be_connected || f->be_silent)
		return false;
	do {
		RING_IDX prod = __atomic_load_n(&r->sring->req_prod, __ATOMIC_ACQUIRE);

		if (RING_REQUEST_PROD_OVERFLOW(r, prod)) {
			be_close(f, "request ring overflow");
			return false;
		}
		if (prod - r->rsp_prod_pvt > f->max_outstanding)
			f->max_outstanding = prod - r->rsp_prod_pvt;
		while (r->req_cons != prod) {
			struct vproxy_mmio_req req;
			struct vproxy_mmio_rsp *rsp;
			uint64_t val = 0;
			uint8_t st;

			RING_COPY_REQUEST(r, r->req_cons, &req);
			r->req_cons++;
			if (f->nlog < LOG_MAX)
				f->log[f->nlog++] = (struct logged){
				        req.op, req.size, req.offset, req.value};
			if (f->refuse_off && req.offset == f->refuse_off)
				st = VPROXY_ST_BAD_ACCESS;
			else if (req.op == VPROXY_OP_READ)
				st = f->dev->read(f, req.offset, req.size, &val);
			else if (req.op == VPROXY_OP_WRITE)
				st = f->dev->write(f, req.offset, req.size, req.value);
			else
				st = VPROXY_ST_BAD_OP;
			if (req.op == VPROXY_OP_WRITE && f->irq_on_write_off &&
			    req.offset == f->irq_on_write_off)
				be_raise(f, 1);
			rsp = RING_GET_RESPONSE(r, r->rsp_prod_pvt);
			rsp->id = f->be_bad_id ? (uint16_t)(req.id + 1) : req.id;
			rsp->status = st;
			rsp->reserved0 = 0;
			rsp->reserved1 = 0;
			rsp->value = val;
			r->rsp_prod_pvt++;
			if (!f->be_connected)
				return false;
		}
		RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(r, notify);
		if (notify)
			kick = true;
		RING_FINAL_CHECK_FOR_REQUESTS(r, more);
	} while (more);
	if (kick)
		be_kick_fe(f);
	return kick;
}

/* The backend's reaction to the frontend's xenstore writes. */
static void be_on_fe_write(struct fake *f, const char *path, const char *val)
{
	const char *be_state;

	if (strcmp(path, FE_DIR "/state") != 0)
		return;
	if (strlen(f->fe_states) + 1 < sizeof(f->fe_states))
		strcat(f->fe_states, val);
	be_state = xs_get(f, BE_DIR "/state");
	if (strcmp(val, "1") == 0 && be_state && strcmp(be_state, "6") == 0 &&
	    !f->be_failed) {
		/* a frontend starting over: offer the device again */
		struct node *n = node_find(f, BE_DIR "/error");

		if (n)
			n->used = false;
		xs_put(f, BE_DIR "/state", "2");
	} else if (strcmp(val, "3") == 0 && f->be_connect_error) {
		be_close(f, f->be_connect_error);
	} else if (strcmp(val, "3") == 0 && f->be_auto_connect) {
		const char *ref = xs_get(f, FE_DIR "/ring-ref");
		const char *mode = xs_get(f, FE_DIR "/addr-mode");
		struct vproxy_page_hdr *hdr;
		uint64_t addr;

		ck_assert_ptr_nonnull(ref);
		ck_assert_ptr_nonnull(mode);
		ck_assert_str_eq(xs_get(f, FE_DIR "/protocol-version"), "1");
		ck_assert_int_eq(atoi(xs_get(f, FE_DIR "/event-channel")), f->port);
		addr = strtoull(ref, NULL, 10) << 12;
		if (strcmp(mode, "grant") == 0)
			addr |= VPROXY_GRANT_ADDR_FLAG;
		else
			ck_assert_str_eq(mode, "gfn");
		ck_assert_int_eq(strcmp(mode, "grant") == 0,
		                 f->plat.addr_mode == VPS_ADDR_GRANT);
		f->be_page = fk_translate(f, addr, 4096);
		ck_assert_ptr_nonnull(f->be_page);
		hdr = f->be_page;
		ck_assert_uint_eq(hdr->magic, VPROXY_PAGE_MAGIC);
		ck_assert_uint_eq(hdr->version, VPROXY_PROTO_VERSION);
		ck_assert_uint_eq(hdr->irq_status, 0);
		BACK_RING_INIT(&f->be_ring, vproxy_page_sring(f->be_page),
		               VPROXY_RING_BYTES);
		ck_assert_uint_eq(RING_SIZE(&f->be_ring), VPS_RING_ENTRIES);
		f->be_connected = true;
		xs_put(f, BE_DIR "/state", "4");
	} else if (strcmp(val, "5") == 0 && f->be_auto_close) {
		f->be_connected = false;
		xs_put(f, BE_DIR "/state", "6");
	}
}

/* --- event channels, sleeping, time --- */

static int fk_evtchn_alloc(void *ctx, uint16_t be)
{
	struct fake *f = ctx;

	ck_assert_uint_eq(be, BE_DOM);
	ck_assert(!f->port_open);
	f->port_open = true;
	f->port = 5;
	return f->port;
}

static int fk_evtchn_notify(void *ctx, int port)
{
	struct fake *f = ctx;

	ck_assert_int_eq(port, f->port);
	ck_assert(f->port_open);
	if (f->threaded) {
		pthread_mutex_lock(&f->lock);
		f->be_kicks++;
		f->be_event = true;
		pthread_cond_broadcast(&f->cond);
		pthread_mutex_unlock(&f->lock);
		return 0;
	}
	f->be_kicks++;
	if (f->be_inline)
		be_run(f);
	return 0;
}

static void fk_evtchn_close(void *ctx, int port)
{
	struct fake *f = ctx;

	ck_assert_int_eq(port, f->port);
	f->port_open = false;
	f->ports_closed++;
}

static int threaded_wait(struct fake *f, int port, struct vps_watch *w,
                         uint64_t timeout_ns)
{
	struct timespec ts;
	int mask = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(timeout_ns / 1000000000u);
	ts.tv_nsec += (long)(timeout_ns % 1000000000u);
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&f->lock);
	while (!(port >= 0 && f->fe_event) && !(w && w->fired)) {
		if (pthread_cond_timedwait(&f->cond, &f->lock, &ts) != 0)
			break;
	}
	if (port >= 0 && f->fe_event) {
		f->fe_event = false;
		mask |= VPS_WAKE_EVTCHN;
	}
	if (w && w->fired) {
		w->fired = false;
		mask |= VPS_WAKE_WATCH;
	}
	pthread_mutex_unlock(&f->lock);
	return mask;
}

static int fk_wait(void *ctx, int port, struct vps_watch *w, uint64_t timeout_ns)
{
	struct fake *f = ctx;
	int mask = 0;

	if (f->threaded && f->be_connected)
		return threaded_wait(f, port, w, timeout_ns);
	f->sleeps++;
	if (f->hook && f->sleeps == f->hook_at)
		f->hook(f);
	be_run(f);
	if (port >= 0 && f->fe_event) {
		f->fe_event = false;
		mask |= VPS_WAKE_EVTCHN;
	}
	if (w && w->fired) {
		w->fired = false;
		mask |= VPS_WAKE_WATCH;
	}
	if (!mask)
		f->now += timeout_ns; /* slept the whole timeout */
	return mask;
}

static uint64_t fk_now(void *ctx)
{
	struct fake *f = ctx;

	if (f->threaded) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	}
	return f->now;
}

static void fk_log(void *ctx, enum vps_log_level level, const char *msg)
{
	(void)ctx;
	if (level <= VPS_LOG_WARN && getenv("TEST_STUB_VERBOSE"))
		fprintf(stderr, "stub: %s\n", msg);
}

static void fake_init(struct fake *f, enum vps_addr_mode mode)
{
	memset(f, 0, sizeof(*f));
	f->plat = (struct vps_platform){
	        .ctx = f,
	        .domid = FE_DOM,
	        .addr_mode = mode,
	        .dma_alloc = fk_dma_alloc,
	        .dma_free = fk_dma_free,
	        .evtchn_alloc = fk_evtchn_alloc,
	        .evtchn_notify = fk_evtchn_notify,
	        .evtchn_close = fk_evtchn_close,
	        .wait = fk_wait,
	        .xs_read = fk_xs_read,
	        .xs_write = fk_xs_write,
	        .xs_list = fk_xs_list,
	        .xs_tx_begin = fk_xs_tx_begin,
	        .xs_tx_end = fk_xs_tx_end,
	        .xs_watch = fk_xs_watch,
	        .xs_unwatch = fk_xs_unwatch,
	        .now_ns = fk_now,
	        .log = fk_log,
	};
	f->now = 1000 * MS;
	f->be_auto_connect = true;
	f->be_auto_close = true;
	f->dev = &regs_ops;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
}

/* The toolstack's and server's provisioning, up to backend InitWait. */
static void provision(struct fake *f, const char *be_state)
{
	xs_put(f, BE_DIR "/frontend", FE_DIR);
	xs_put(f, BE_DIR "/frontend-id", "7");
	xs_put(f, BE_DIR "/type", "blk");
	xs_put(f, BE_DIR "/state", be_state);
	xs_put(f, FE_DIR "/backend", BE_DIR);
	xs_put(f, FE_DIR "/backend-id", "0");
	xs_put(f, FE_DIR "/state", "1");
}

static struct vps_frontend dev;
static struct vps_opts opts;

static void setup(void)
{
	fake_init(&F, VPS_ADDR_GFN);
	vps_opts_default(&opts);
}

static void teardown(void)
{
	pthread_mutex_destroy(&F.lock);
	pthread_cond_destroy(&F.cond);
	for (unsigned i = 0; i < F.nallocs; i++)
		free(F.allocs[i].mem);
}

static void attach_ok(void)
{
	provision(&F, "2");
	ck_assert_int_eq(vps_attach(&dev, &F.plat, 0, &opts), 0);
	ck_assert(F.be_connected);
}

/* Nothing of the device is left: page freed, port closed, no watches. */
static void assert_released(void)
{
	ck_assert_uint_eq(F.frees, F.nallocs);
	ck_assert(!F.port_open);
	ck_assert_uint_eq(watches_in_use(&F), 0);
}

/* --- handshake --- */

START_TEST(attach_publishes_and_connects)
{
	struct vproxy_page_hdr *hdr;

	attach_ok();
	ck_assert_str_eq(xs_get(&F, FE_DIR "/state"), "4");
	ck_assert_str_eq(xs_get(&F, FE_DIR "/addr-mode"), "gfn");
	ck_assert_str_eq(xs_get(&F, FE_DIR "/event-channel"), "5");
	/* gfn mode: ring-ref is the page's gfn */
	ck_assert_uint_eq(strtoull(xs_get(&F, FE_DIR "/ring-ref"), NULL, 10) << 12,
	                  F.allocs[0].addr);
	hdr = F.be_page;
	ck_assert_uint_eq(hdr->magic, VPROXY_PAGE_MAGIC);
	ck_assert_uint_eq(vps_backend_id(&dev), BE_DOM);
	ck_assert(!vps_is_gone(&dev));
	ck_assert_str_eq(vps_error(&dev), "");
	/* only the backend watch is kept */
	ck_assert_uint_eq(watches_in_use(&F), 1);

	ck_assert_int_eq(vps_detach(&dev), 0);
	ck_assert_str_eq(xs_get(&F, FE_DIR "/state"), "6");
	ck_assert_str_eq(xs_get(&F, BE_DIR "/state"), "6");
	assert_released();
	ck_assert_uint_eq(F.ports_closed, 1);
}
END_TEST

START_TEST(attach_grant_mode)
{
	uint64_t ref;

	fake_init(&F, VPS_ADDR_GRANT);
	attach_ok();
	ck_assert_str_eq(xs_get(&F, FE_DIR "/addr-mode"), "grant");
	/* grant mode: ring-ref is the grant ref */
	ref = strtoull(xs_get(&F, FE_DIR "/ring-ref"), NULL, 10);
	ck_assert_uint_eq(VPROXY_GRANT_ADDR(ref, 0), F.allocs[0].addr);
	ck_assert_int_eq(vps_detach(&dev), 0);
	assert_released();
}
END_TEST

static void hook_provision(struct fake *f)
{
	provision(f, "2");
}

static void hook_initwait(struct fake *f)
{
	xs_put(f, BE_DIR "/state", "2");
}

START_TEST(attach_waits_for_device)
{
	/* The device appears on the 2nd sleep (the 1st returns the watch's
	 * initial event); another device must not confuse the stub. */
	F.hook = hook_provision;
	F.hook_at = 2;
	xs_put(&F, "/local/domain/7/device/vproxy/1/backend", "x");
	ck_assert_int_eq(vps_attach(&dev, &F.plat, 0, &opts), 0);
	ck_assert_uint_ge(F.sleeps, 2);
	ck_assert_str_eq(xs_get(&F, FE_DIR "/state"), "4");
	ck_assert_int_eq(vps_detach(&dev), 0);
	assert_released();
}
END_TEST

START_TEST(attach_waits_for_initwait)
{
	provision(&F, "1");
	F.hook = hook_initwait;
	F.hook_at = 2;
	ck_assert_int_eq(vps_attach(&dev, &F.plat, 0, &opts), 0);
	/* nothing was published before InitWait */
	ck_assert_ptr_nonnull(xs_get(&F, FE_DIR "/ring-ref"));
	ck_assert_uint_eq(F.nallocs, 1);
	ck_assert_int_eq(vps_detach(&dev), 0);
	assert_released();
}
END_TEST

START_TEST(attach_times_out_in_initialising)
{
	provision(&F, "1");
	ck_assert_int_eq(vps_attach(&dev, &F.plat, 0, &opts), -ETIMEDOUT);
	ck_assert_ptr_nonnull(strstr(vps_error(&dev), "backend state 2"));
	ck_assert_ptr_null(xs_get(&F, FE_DIR "/ring-ref"));
	ck_assert_uint_eq(F.nallocs, 0);
	assert_released();
}
END_TEST

START_TEST(attach_times_out_without_device)
{
	opts.attach_timeout_ns = 3000 * MS;
	ck_assert_int_eq(vps_attach(&dev, &F.plat, 0, &opts), -ETIMEDOUT);
	ck_assert_ptr_nonnull(strstr(vps_error(&dev), FE_DIR));
	/* the clock moved by the timeout, not more than one extra sleep */
	ck_assert_uint_ge(F.now, 1000 * MS + 3000 * MS);
	ck_assert_uint_le(F.now, 1000 * MS + 3000 * MS * 2);
	assert_released();
	ck_assert_uint_eq(F.nallocs, 0);
}
END_TEST

START_TEST(attach_fails_with_backend_error)
{
	F.be_connect_error = "22 cannot open /img/disk0.raw";
	provision(&F, "2");
	ck_assert_int_eq(vps_attach(&dev, &F.plat, 0, &opts), -ENODEV);
	ck_assert_str_eq(vps_error(&dev), "22 cannot open /img/disk0.raw");
	/* the frontend still closed properly */
	ck_assert_str_eq(xs_get(&F, FE_DIR "/state"), "6");
	assert_released();
}
END_TEST

START_TEST(attach_fails_when_backend_closing)
{
	provision(&F, "5");
	ck_assert_int_eq(vps_attach(&dev, &F.plat, 0, &opts), -ENODEV);
	ck_assert_uint_eq(F.nallocs, 0);
	assert_released();
}
END_TEST

START_TEST(attach_checks_backend_id)
{
	provision(&F, "2");
	opts.expect_backend = 3;
	ck_assert_int_eq(vps_attach(&dev, &F.plat, 0, &opts), -EINVAL);
	ck_assert_ptr_nonnull(strstr(vps_error(&dev), "expected 3"));
	assert_released();
}
END_TEST

START_TEST(attach_retries_conflicting_transaction)
{
	F.fail_commits = 2;
	attach_ok();
	ck_assert_uint_eq(F.fail_commits, 0);
	ck_assert_str_eq(xs_get(&F, FE_DIR "/state"), "4");
	ck_assert_int_eq(vps_detach(&dev), 0);
}
END_TEST

START_TEST(attach_again_after_detach)
{
	attach_ok();
	ck_assert_int_eq(vps_detach(&dev), 0);
	ck_assert_str_eq(xs_get(&F, BE_DIR "/state"), "6");
	/* a new session: Initialising, and the backend offers the device */
	ck_assert_int_eq(vps_attach(&dev, &F.plat, 0, &opts), 0);
	/* provisioning's 1, a session, and the next session's 1 3 4 */
	ck_assert_str_eq(F.fe_states, "13456134");
	ck_assert_int_eq(vps_detach(&dev), 0);
	assert_released();
}
END_TEST

START_TEST(attach_resets_a_stale_connection)
{
	/* an earlier frontend died while connected */
	provision(&F, "4");
	xs_put(&F, FE_DIR "/state", "4");
	F.fe_states[0] = '\0';
	ck_assert_int_eq(vps_attach(&dev, &F.plat, 0, &opts), 0);
	/* Closing, (backend Closed), Initialising, Initialised, Connected */
	ck_assert_str_eq(F.fe_states, "5134");
	ck_assert_int_eq(vps_detach(&dev), 0);
}
END_TEST

START_TEST(attach_fails_on_failed_storage)
{
	F.be_failed = true;
	provision(&F, "6");
	xs_put(&F, BE_DIR "/error", "12 cannot map 64T");
	ck_assert_int_eq(vps_attach(&dev, &F.plat, 0, &opts), -ENODEV);
	ck_assert_str_eq(vps_error(&dev), "12 cannot map 64T");
	/* the frontend was already Initialising: no grace, no waiting */
	ck_assert_uint_eq(F.now, 1000 * MS);
	ck_assert_uint_eq(F.nallocs, 0);
	assert_released();
}
END_TEST

START_TEST(attach_fails_on_failed_storage_after_grace)
{
	F.be_failed = true;
	provision(&F, "6");
	xs_put(&F, FE_DIR "/state", "6");
	xs_put(&F, BE_DIR "/error", "12 cannot map 64T");
	ck_assert_int_eq(vps_attach(&dev, &F.plat, 0, &opts), -ENODEV);
	ck_assert_str_eq(vps_error(&dev), "12 cannot map 64T");
	ck_assert_uint_ge(F.now, 1000 * MS + 2000 * MS);
	ck_assert_uint_lt(F.now, 1000 * MS + opts.attach_timeout_ns);
	assert_released();
}
END_TEST

START_TEST(attach_ignores_stale_error_when_starting_over)
{
	provision(&F, "6");
	xs_put(&F, FE_DIR "/state", "6");
	xs_put(&F, BE_DIR "/error", "an old session's error");
	ck_assert_int_eq(vps_attach(&dev, &F.plat, 0, &opts), 0);
	ck_assert_str_eq(vps_error(&dev), "");
	ck_assert_int_eq(vps_detach(&dev), 0);
}
END_TEST

/* A backend that never closes may still write the shared page: the
 * stub lets go of everything else but leaves the page allocated. */
START_TEST(detach_times_out_but_cleans_up)
{
	opts.close_timeout_ns = 2000 * MS;
	attach_ok();
	F.be_auto_close = false;
	ck_assert_int_eq(vps_detach(&dev), -ETIMEDOUT);
	ck_assert_str_eq(xs_get(&F, FE_DIR "/state"), "6");
	ck_assert_uint_eq(F.nallocs - F.frees, 1);
	ck_assert(!F.port_open);
	ck_assert_uint_eq(watches_in_use(&F), 0);
	/* detaching twice is harmless */
	ck_assert_int_eq(vps_detach(&dev), 0);
}
END_TEST

START_TEST(detach_after_device_removed)
{
	attach_ok();
	xs_del_tree(&F, FE_DIR);
	xs_del_tree(&F, BE_DIR);
	ck_assert_int_eq(vps_detach(&dev), 0);
	/* the stub must not recreate the removed frontend directory */
	ck_assert_ptr_null(xs_get(&F, FE_DIR "/state"));
	assert_released();
}
END_TEST

START_TEST(list_devices)
{
	unsigned ids[4];

	ck_assert_int_eq(vps_list(&F.plat, ids, 4), 0);
	xs_put(&F, "/local/domain/7/device/vproxy/0/state", "1");
	xs_put(&F, "/local/domain/7/device/vproxy/3/state", "1");
	xs_put(&F, "/local/domain/7/device/vproxy/junk/state", "1");
	xs_put(&F, "/local/domain/8/device/vproxy/5/state", "1");
	ck_assert_int_eq(vps_list(&F.plat, ids, 4), 2);
	ck_assert((ids[0] == 0 && ids[1] == 3) || (ids[0] == 3 && ids[1] == 0));
	ck_assert_int_eq(vps_list(&F.plat, ids, 1), 2);
}
END_TEST

/* --- register traffic --- */

START_TEST(read_returns_register_value)
{
	uint64_t v, t0;

	attach_ok();
	t0 = F.now;
	F.regs[0x70 / 4] = 0x0f;
	ck_assert_int_eq(vps_read(&dev, 0x70, 4, &v), 0);
	ck_assert_uint_eq(v, 0x0f);
	/* sizes mask the answer */
	F.regs[0x100 / 4] = 0x1122334455667788ull;
	ck_assert_int_eq(vps_read(&dev, 0x100, 1, &v), 0);
	ck_assert_uint_eq(v, 0x88);
	ck_assert_int_eq(vps_read(&dev, 0x100, 8, &v), 0);
	ck_assert_uint_eq(v, 0x1122334455667788ull);
	ck_assert_uint_eq(F.nlog, 3);
	ck_assert_uint_eq(F.log[1].size, 1);
	/* every answer woke the stub: no sleep ran into its timeout */
	ck_assert_uint_eq(F.now, t0);
	ck_assert_uint_eq(F.log[0].op, VPROXY_OP_READ);
	vps_detach(&dev);
}
END_TEST

START_TEST(bad_accesses_rejected_locally)
{
	uint64_t v;

	attach_ok();
	ck_assert_int_eq(vps_read(&dev, 0x70, 3, &v), -EINVAL);
	ck_assert_int_eq(vps_read(&dev, 0xffe, 4, &v), -EINVAL);
	ck_assert_uint_eq(v, 0xffffffffu);
	ck_assert_int_eq(vps_write(&dev, 0x1000, 1, 0), -EINVAL);
	ck_assert_uint_eq(F.nlog, 0);
	vps_detach(&dev);
	/* a detached device answers nothing */
	ck_assert_int_eq(vps_read(&dev, 0x70, 4, &v), -ENODEV);
	ck_assert_int_eq(vps_write(&dev, 0x70, 4, 1), -ENODEV);
}
END_TEST

START_TEST(posted_writes_do_not_wait_and_stay_ordered)
{
	struct vps_stats st;
	uint64_t v;

	attach_ok();
	for (unsigned i = 0; i < 40; i++)
		ck_assert_int_eq(vps_write(&dev, 0x100 + 4 * (i % 8), 4, i), 0);
	vps_get_stats(&dev, &st);
	ck_assert_uint_eq(st.sleeps, 0);
	ck_assert_uint_eq(st.writes, 40);
	ck_assert_uint_eq(F.nlog, 0); /* the backend has not run yet */
	ck_assert_int_eq(vps_read(&dev, 0x100 + 4 * 7, 4, &v), 0);
	ck_assert_uint_eq(v, 39);
	ck_assert_uint_eq(F.nlog, 41);
	for (unsigned i = 0; i < 40; i++) {
		ck_assert_uint_eq(F.log[i].op, VPROXY_OP_WRITE);
		ck_assert_uint_eq(F.log[i].val, i);
	}
	ck_assert_uint_eq(F.log[40].op, VPROXY_OP_READ);
	vps_detach(&dev);
}
END_TEST

START_TEST(notifications_suppressed)
{
	struct vps_stats st;
	uint64_t v;
	unsigned fe_before;

	attach_ok();
	/* The backend has not looked at the ring: only the first request of
	 * a batch notifies it. */
	for (unsigned i = 0; i < 20; i++)
		vps_write(&dev, 0x30, 4, i);
	vps_get_stats(&dev, &st);
	ck_assert_uint_eq(st.notifies, 1);
	ck_assert_uint_eq(F.be_kicks, 1);
	/* The read makes the backend run and re-arm req_event; the answer
	 * to the read (not to the 20 writes) is the one that notifies. */
	fe_before = F.fe_kicks;
	ck_assert_int_eq(vps_read(&dev, 0x30, 4, &v), 0);
	ck_assert_uint_eq(v, 19);
	ck_assert_uint_eq(F.fe_kicks, fe_before + 1);
	vps_write(&dev, 0x30, 4, 1);
	vps_get_stats(&dev, &st);
	ck_assert_uint_eq(st.notifies, 2);
	/* posted writes' answers do not wake the stub */
	fe_before = F.fe_kicks;
	be_run(&F);
	ck_assert_uint_eq(F.fe_kicks, fe_before);
	vps_detach(&dev);
}
END_TEST

START_TEST(inline_backend_answers_without_sleeping)
{
	struct vps_stats st;
	uint64_t v;

	attach_ok();
	F.be_inline = true;
	for (unsigned i = 0; i < 300; i++) {
		ck_assert_int_eq(vps_write(&dev, 0x40, 4, i), 0);
		ck_assert_int_eq(vps_read(&dev, 0x40, 4, &v), 0);
		ck_assert_uint_eq(v, i);
	}
	vps_get_stats(&dev, &st);
	ck_assert_uint_eq(st.sleeps, 0);
	ck_assert_uint_eq(st.ring_full, 0);
	vps_detach(&dev);
}
END_TEST

START_TEST(ring_full_waits_for_slots)
{
	struct vps_stats st;
	unsigned n = VPS_RING_ENTRIES * 3 + 5;
	uint64_t v;

	attach_ok();
	for (unsigned i = 0; i < n; i++)
		ck_assert_int_eq(vps_write(&dev, 0x44, 4, i), 0);
	vps_get_stats(&dev, &st);
	ck_assert_uint_eq(st.ring_full, 3);
	ck_assert_uint_eq(F.now, 1000 * MS); /* woken by answers, not timeouts */
	ck_assert_uint_le(F.max_outstanding, VPS_RING_ENTRIES);
	ck_assert_int_eq(vps_read(&dev, 0x44, 4, &v), 0);
	ck_assert_uint_eq(v, n - 1);
	for (unsigned i = 0; i < n; i++)
		ck_assert_uint_eq(F.log[i].val, i);
	vps_detach(&dev);
}
END_TEST

START_TEST(ring_full_times_out_on_silent_backend)
{
	attach_ok();
	F.be_silent = true;
	for (unsigned i = 0; i < VPS_RING_ENTRIES; i++)
		ck_assert_int_eq(vps_write(&dev, 0x44, 4, i), 0);
	ck_assert_int_eq(vps_write(&dev, 0x44, 4, 0), -ETIMEDOUT);
	ck_assert_uint_eq(F.nlog, 0);
	/* the backend wakes up: the writes go through in order */
	F.be_silent = false;
	ck_assert_int_eq(vps_write(&dev, 0x44, 4, 999), 0);
	ck_assert_uint_eq(F.log[0].val, 0);
	vps_detach(&dev);
}
END_TEST

START_TEST(read_times_out_then_recovers)
{
	struct vps_stats st;
	uint64_t v = 0;

	attach_ok();
	F.be_silent = true;
	F.regs[0x70 / 4] = 0xf;
	ck_assert_int_eq(vps_read(&dev, 0x70, 4, &v), -ETIMEDOUT);
	ck_assert_uint_eq(v, 0xffffffffu);
	ck_assert_int_eq(vps_read(&dev, 0x70, 2, &v), -ETIMEDOUT);
	ck_assert_uint_eq(v, 0xffff);
	vps_get_stats(&dev, &st);
	ck_assert_uint_eq(st.read_timeouts, 2);
	/* The late answers are skipped; the next read gets its own. */
	F.be_silent = false;
	F.regs[0x70 / 4] = 0x7;
	ck_assert_int_eq(vps_read(&dev, 0x70, 4, &v), 0);
	ck_assert_uint_eq(v, 0x7);
	ck_assert(!vps_is_gone(&dev));
	vps_detach(&dev);
}
END_TEST

START_TEST(refused_accesses_reported)
{
	struct vps_stats st;
	uint64_t v;

	attach_ok();
	F.refuse_off = 0x28;
	ck_assert_int_eq(vps_read(&dev, 0x28, 4, &v), -EIO);
	ck_assert_uint_eq(v, 0xffffffffu);
	ck_assert_int_eq(vps_write(&dev, 0x28, 4, 1), 0); /* posted */
	ck_assert_int_eq(vps_write(&dev, 0x28, 4, 2), 0);
	ck_assert_int_eq(vps_read(&dev, 0x70, 4, &v), 0);
	vps_get_stats(&dev, &st);
	ck_assert_uint_eq(st.write_errors, 2);
	vps_detach(&dev);
}
END_TEST

START_TEST(interrupt_status_and_ack_are_local)
{
	struct vproxy_page_hdr *hdr;
	struct vps_stats st;
	unsigned kicks;
	uint64_t v;

	attach_ok();
	hdr = F.be_page;
	kicks = F.be_kicks;
	ck_assert_int_eq(vps_read(&dev, VPS_REG_INTERRUPT_STATUS, 4, &v), 0);
	ck_assert_uint_eq(v, 0);
	__atomic_fetch_or(&hdr->irq_status, 3u, __ATOMIC_SEQ_CST);
	ck_assert_int_eq(vps_read(&dev, VPS_REG_INTERRUPT_STATUS, 4, &v), 0);
	ck_assert_uint_eq(v, 3);
	ck_assert_int_eq(vps_write(&dev, VPS_REG_INTERRUPT_ACK, 4, 1), 0);
	ck_assert_uint_eq(hdr->irq_status, 2);
	ck_assert_int_eq(vps_write(&dev, VPS_REG_INTERRUPT_ACK, 4, 2), 0);
	ck_assert_uint_eq(hdr->irq_status, 0);
	/* no ring traffic at all */
	ck_assert_uint_eq(F.nlog, 0);
	ck_assert_uint_eq(F.be_kicks, kicks);
	vps_get_stats(&dev, &st);
	ck_assert_uint_eq(st.local_reads, 2);
	ck_assert_uint_eq(st.local_acks, 2);
	vps_detach(&dev);
}
END_TEST

static unsigned irq_calls;
static uint64_t irq_seen;

static void test_irq(void *arg)
{
	struct vps_frontend *d = arg;
	uint64_t v;

	irq_calls++;
	ck_assert_int_eq(vps_read(d, VPS_REG_INTERRUPT_STATUS, 4, &v), 0);
	irq_seen |= v;
	ck_assert_int_eq(vps_write(d, VPS_REG_INTERRUPT_ACK, 4, v), 0);
}

START_TEST(interrupt_handler_called)
{
	irq_calls = 0;
	irq_seen = 0;
	attach_ok();
	vps_set_irq_handler(&dev, test_irq, &dev);
	ck_assert_int_eq(vps_wait(&dev, 100 * MS), 0);
	ck_assert_uint_eq(irq_calls, 0);
	ck_assert_int_eq(vps_poll(&dev), 0);

	F.irq_on_write_off = 0x50;
	ck_assert_int_eq(vps_write(&dev, 0x50, 4, 0), 0);
	/* the backend runs while the stub sleeps and raises the interrupt */
	ck_assert_int_eq(vps_wait(&dev, 100 * MS), 1);
	ck_assert_uint_eq(irq_calls, 1);
	ck_assert_uint_eq(irq_seen, 1);
	ck_assert_int_eq(vps_poll(&dev), 0);

	/* an interrupt whose event was consumed by a read is not lost */
	ck_assert_int_eq(vps_write(&dev, 0x50, 4, 0), 0);
	{
		uint64_t v;

		ck_assert_int_eq(vps_read(&dev, 0x70, 4, &v), 0);
	}
	ck_assert_int_eq(vps_wait(&dev, 100 * MS), 1);
	ck_assert_uint_eq(irq_calls, 2);
	vps_detach(&dev);
}
END_TEST

START_TEST(wait_zero_timeout_polls)
{
	attach_ok();
	ck_assert_int_eq(vps_wait(&dev, 0), 0);
	ck_assert_uint_eq(F.now, 1000 * MS);
	vps_detach(&dev);
}
END_TEST

static void hook_backend_closes(struct fake *f)
{
	be_close(f, "ring malformed");
}

START_TEST(backend_closing_reported)
{
	uint64_t v;

	attach_ok();
	F.hook = hook_backend_closes;
	F.hook_at = F.sleeps + 1;
	ck_assert_int_eq(vps_wait(&dev, 1000 * MS), -ENODEV);
	ck_assert(vps_is_gone(&dev));
	ck_assert_str_eq(vps_error(&dev), "ring malformed");
	ck_assert_int_eq(vps_read(&dev, 0x70, 4, &v), -ENODEV);
	ck_assert_int_eq(vps_write(&dev, 0x70, 4, 0), -ENODEV);
	ck_assert_int_eq(vps_poll(&dev), -ENODEV);
	/* detach still runs the close handshake */
	ck_assert_int_eq(vps_detach(&dev), 0);
	ck_assert_str_eq(xs_get(&F, FE_DIR "/state"), "6");
	assert_released();
}
END_TEST

START_TEST(backend_closing_interrupts_a_read)
{
	uint64_t v;

	attach_ok();
	F.be_silent = true;
	F.hook = hook_backend_closes;
	F.hook_at = F.sleeps + 1;
	ck_assert_int_eq(vps_read(&dev, 0x70, 4, &v), -ENODEV);
	ck_assert_str_eq(vps_error(&dev), "ring malformed");
	vps_detach(&dev);
}
END_TEST

static void hook_backend_removed(struct fake *f)
{
	xs_del_tree(f, BE_DIR);
}

START_TEST(backend_removed_reported)
{
	attach_ok();
	F.hook = hook_backend_removed;
	F.hook_at = F.sleeps + 1;
	ck_assert_int_eq(vps_wait(&dev, 1000 * MS), -ENODEV);
	ck_assert_str_eq(vps_error(&dev), "backend removed");
	ck_assert_int_eq(vps_detach(&dev), 0);
	assert_released();
}
END_TEST

START_TEST(out_of_order_answer_is_protocol_error)
{
	uint64_t v;

	attach_ok();
	F.be_bad_id = true;
	ck_assert_int_eq(vps_read(&dev, 0x70, 4, &v), -ENODEV);
	ck_assert(vps_is_gone(&dev));
	ck_assert_ptr_nonnull(strstr(vps_error(&dev), "protocol error"));
	vps_detach(&dev);
	assert_released();
}
END_TEST

START_TEST(excess_answers_are_protocol_error)
{
	uint64_t v;

	attach_ok();
	ck_assert_int_eq(vps_read(&dev, 0x70, 4, &v), 0);
	/* the backend publishes answers to requests never made */
	F.be_ring.sring->rsp_prod += 5;
	ck_assert_int_eq(vps_poll(&dev), -ENODEV);
	ck_assert_ptr_nonnull(strstr(vps_error(&dev), "rsp_prod"));
	vps_detach(&dev);
}
END_TEST

START_TEST(overflow_ring_makes_backend_close)
{
	attach_ok();
	vps_debug_overflow_ring(&dev);
	ck_assert_int_eq(vps_write(&dev, 0x70, 4, 0), -EPIPE);
	ck_assert_int_eq(vps_wait(&dev, 1000 * MS), -ENODEV);
	ck_assert_str_eq(vps_error(&dev), "request ring overflow");
	ck_assert_int_eq(vps_detach(&dev), 0);
	assert_released();
}
END_TEST

/* --- threaded backend: real concurrency --- */

static void *be_thread(void *arg)
{
	struct fake *f = arg;

	pthread_mutex_lock(&f->lock);
	while (!f->stop) {
		while (!f->be_event && !f->stop)
			pthread_cond_wait(&f->cond, &f->lock);
		f->be_event = false;
		pthread_mutex_unlock(&f->lock);
		be_run(f);
		pthread_mutex_lock(&f->lock);
	}
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

START_TEST(threaded_backend_stress)
{
	unsigned seed = 12345;
	uint64_t shadow[8] = {0}, v;

	/* Half of the run sleeps for every answer, half spins first. */
	attach_ok();
	/* from here the backend only runs on its thread */
	F.threaded = true;
	ck_assert_int_eq(pthread_create(&F.thread, NULL, be_thread, &F), 0);
	for (unsigned i = 0; i < 100000; i++) {
		if (i == 50000)
			vps_set_spin_ns(&dev, 200000);
		unsigned reg = (seed = seed * 1103515245u + 12345u) >> 16 & 7;

		if ((seed >> 8) & 1) {
			shadow[reg] = (uint64_t)i * 2654435761u;
			ck_assert_int_eq(vps_write(&dev, 0x100 + 8 * reg, 8, shadow[reg]),
			                 0);
		} else {
			ck_assert_int_eq(vps_read(&dev, 0x100 + 8 * reg, 8, &v), 0);
			ck_assert_uint_eq(v, shadow[reg]);
		}
	}
	pthread_mutex_lock(&F.lock);
	F.stop = true;
	pthread_cond_broadcast(&F.cond);
	pthread_mutex_unlock(&F.lock);
	pthread_join(F.thread, NULL);
	ck_assert_uint_le(F.max_outstanding, VPS_RING_ENTRIES);
	F.threaded = false;
	F.be_connected = false;
	xs_put(&F, BE_DIR "/state", "6");
	ck_assert_int_eq(vps_detach(&dev), 0);
}
END_TEST

/* --- a fake virtio-blk device behind the fake backend, for vblk.c --- */

#define FB_SECTORS 2048u /* 1 MiB disk */
#define FB_QUEUES 4u

struct fb_queue {
	uint32_t num, ready;
	uint64_t desc, avail, used;
	uint16_t last_avail, used_idx;
};

struct fblk {
	uint64_t features; /* offered */
	uint64_t driver_features;
	uint32_t dfsel, gfsel, qsel, status;
	uint32_t qnum_max;
	bool reject_features; /* refuse FEATURES_OK */
	uint32_t magic;
	bool stale_avail_event; /* claim to be polling: no kicks wanted */
	bool bogus_used_id;     /* complete with an id never made available */
	struct virtio_blk_config cfg;
	struct fb_queue q[FB_QUEUES];
	uint8_t disk[FB_SECTORS * 512];
	unsigned irqs, notifies, flushes, requests;
	unsigned max_data_descs;
	uint32_t max_data_len;
	bool saw_indirect, saw_direct;
	char broken_why[64];
};

static struct fblk *FB;

static void fb_broken(struct fake *f, const char *why)
{
	if (FB->status & VIRTIO_CONFIG_S_NEEDS_RESET)
		return;
	snprintf(FB->broken_why, sizeof(FB->broken_why), "%s", why);
	FB->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	FB->irqs++;
	be_raise(f, VIRTIO_MMIO_INT_CONFIG);
}

/* Collect the chain at head (following an indirect table if any); -1 on
 * a loop, an index out of range or an address outside guest memory. */
static int fb_chain(struct fake *f, struct fb_queue *q, uint16_t head,
                    struct vring_desc *out, unsigned max, unsigned *n)
{
	struct vring_desc *tbl = fk_translate(f, q->desc, 16u * q->num), d;
	unsigned count = q->num, idx = head;

	if (!tbl || head >= q->num)
		return -1;
	d = tbl[head];
	if (d.flags & VRING_DESC_F_INDIRECT) {
		FB->saw_indirect = true;
		count = d.len / 16;
		tbl = fk_translate(f, d.addr, d.len);
		if (!tbl || count == 0)
			return -1;
		idx = 0;
	} else {
		FB->saw_direct = true;
	}
	for (*n = 0;; (*n)++) {
		if (*n >= max || *n >= count)
			return -1; /* longer than the table: a loop */
		out[*n] = tbl[idx];
		if (!(tbl[idx].flags & VRING_DESC_F_NEXT))
			break;
		idx = tbl[idx].next;
		if (idx >= count)
			return -1;
	}
	(*n)++;
	return 0;
}

/* Execute one request; the bytes written into the driver's buffers, or
 * -1 when the request is malformed. */
static int fb_execute(struct fake *f, struct vring_desc *d, unsigned n)
{
	struct virtio_blk_outhdr *hdr;
	uint8_t *status;
	uint64_t pos;
	int written = 1;

	if (n < 2 || d[0].len < sizeof(*hdr) || !(d[n - 1].flags & VRING_DESC_F_WRITE))
		return -1;
	hdr = fk_translate(f, d[0].addr, sizeof(*hdr));
	status = fk_translate(f, d[n - 1].addr, 1);
	if (!hdr || !status)
		return -1;
	for (unsigned i = 1; i + 1 < n; i++) {
		if (!fk_translate(f, d[i].addr, d[i].len))
			return -1;
		if (d[i].len > FB->max_data_len)
			FB->max_data_len = d[i].len;
	}
	if (n - 2 > FB->max_data_descs)
		FB->max_data_descs = n - 2;
	FB->requests++;
	*status = VIRTIO_BLK_S_OK;
	pos = hdr->sector * 512;
	switch (hdr->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		for (unsigned i = 1; i + 1 < n; i++) {
			uint8_t *buf = fk_translate(f, d[i].addr, d[i].len);

			if (pos + d[i].len > sizeof(FB->disk)) {
				*status = VIRTIO_BLK_S_IOERR;
				break;
			}
			if (hdr->type == VIRTIO_BLK_T_IN) {
				memcpy(buf, FB->disk + pos, d[i].len);
				written += (int)d[i].len;
			} else {
				memcpy(FB->disk + pos, buf, d[i].len);
			}
			pos += d[i].len;
		}
		break;
	case VIRTIO_BLK_T_FLUSH: FB->flushes++; break;
	case VIRTIO_BLK_T_GET_ID: {
		char *id = fk_translate(f, d[1].addr, d[1].len);

		memset(id, 0, d[1].len);
		memcpy(id, "fakeblk-7", d[1].len < 9 ? d[1].len : 9);
		written += (int)d[1].len;
		break;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES: {
		struct virtio_blk_discard_write_zeroes *r =
		        fk_translate(f, d[1].addr, sizeof(*r));

		if (!r || r->sector + r->num_sectors > FB_SECTORS)
			*status = VIRTIO_BLK_S_IOERR;
		else
			memset(FB->disk + r->sector * 512, 0,
			       (size_t)r->num_sectors * 512);
		break;
	}
	default: *status = VIRTIO_BLK_S_UNSUPP; break;
	}
	return written;
}

static void fb_process(struct fake *f, unsigned qi)
{
	struct fb_queue *q = &FB->q[qi];
	struct vring_avail *avail;
	struct vring_used *used;
	bool event_idx = FB->driver_features & (1ull << VIRTIO_RING_F_EVENT_IDX);
	uint16_t old_used = q->used_idx;

	if (!q->ready || (FB->status & VIRTIO_CONFIG_S_NEEDS_RESET))
		return;
	avail = fk_translate(f, q->avail, 6 + 2u * q->num);
	used = fk_translate(f, q->used, 6 + 8u * q->num);
	ck_assert_ptr_nonnull(avail);
	ck_assert_ptr_nonnull(used);
	for (;;) {
		uint16_t aidx = __atomic_load_n(&avail->idx, __ATOMIC_ACQUIRE), head;
		struct vring_desc chain[300];
		unsigned n;
		int written;

		if (aidx == q->last_avail)
			break;
		if ((uint16_t)(aidx - q->last_avail) > q->num) {
			fb_broken(f, "avail idx jumped");
			return;
		}
		head = avail->ring[q->last_avail % q->num];
		q->last_avail++;
		if (fb_chain(f, q, head, chain, 300, &n) < 0) {
			fb_broken(f, "bad descriptor chain");
			return;
		}
		written = fb_execute(f, chain, n);
		if (written < 0) {
			fb_broken(f, "bad request");
			return;
		}
		used->ring[q->used_idx % q->num].id =
		        FB->bogus_used_id ? q->num + 3u : head;
		used->ring[q->used_idx % q->num].len = (uint32_t)written;
		q->used_idx++;
		__atomic_store_n(&used->idx, q->used_idx, __ATOMIC_RELEASE);
	}
	/* where the driver should next notify us */
	{
		uint16_t ev = FB->stale_avail_event ? (uint16_t)(q->last_avail - 0x100)
		                                    : q->last_avail;

		memcpy((uint8_t *)used + 4 + 8u * q->num, &ev, sizeof(ev));
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (q->used_idx == old_used)
		return;
	if (event_idx ? vring_need_event(avail->ring[q->num], q->used_idx, old_used)
	              : !(avail->flags & VRING_AVAIL_F_NO_INTERRUPT)) {
		FB->irqs++;
		be_raise(f, VIRTIO_MMIO_INT_VRING);
	}
}

static void fb_reset(void)
{
	FB->status = 0;
	FB->driver_features = 0;
	memset(FB->q, 0, sizeof(FB->q));
}

static uint8_t fb_read(struct fake *f, uint32_t off, unsigned size, uint64_t *val)
{
	struct fb_queue *q = &FB->q[FB->qsel < FB_QUEUES ? FB->qsel : 0];

	(void)f;
	*val = 0;
	if (off >= VIRTIO_MMIO_CONFIG) {
		uint32_t o = off - VIRTIO_MMIO_CONFIG;

		if (o + size > sizeof(FB->cfg))
			return VPROXY_ST_BAD_ACCESS;
		memcpy(val, (uint8_t *)&FB->cfg + o, size);
		return VPROXY_ST_OK;
	}
	if (size != 4)
		return VPROXY_ST_BAD_ACCESS;
	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE: *val = FB->magic; break;
	case VIRTIO_MMIO_VERSION: *val = 2; break;
	case VIRTIO_MMIO_DEVICE_ID: *val = VIRTIO_ID_BLOCK; break;
	case VIRTIO_MMIO_VENDOR_ID: *val = 0x1af4; break;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		*val = (uint32_t)(FB->features >> (FB->dfsel ? 32 : 0));
		break;
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		*val = FB->qsel < FB->cfg.num_queues ? FB->qnum_max : 0;
		break;
	case VIRTIO_MMIO_QUEUE_READY: *val = q->ready; break;
	case VIRTIO_MMIO_STATUS: *val = FB->status; break;
	case VIRTIO_MMIO_CONFIG_GENERATION: *val = 0; break;
	default: return VPROXY_ST_BAD_ACCESS;
	}
	return VPROXY_ST_OK;
}

static uint8_t fb_write(struct fake *f, uint32_t off, unsigned size, uint64_t val)
{
	struct fb_queue *q = &FB->q[FB->qsel < FB_QUEUES ? FB->qsel : 0];
	uint32_t v = (uint32_t)val;

	if (size != 4)
		return VPROXY_ST_BAD_ACCESS;
	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL: FB->dfsel = v; break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL: FB->gfsel = v; break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (FB->gfsel)
			FB->driver_features =
			        (FB->driver_features & 0xffffffffull) | (uint64_t)v << 32;
		else
			FB->driver_features = (FB->driver_features & ~0xffffffffull) | v;
		break;
	case VIRTIO_MMIO_QUEUE_SEL: FB->qsel = v; break;
	case VIRTIO_MMIO_QUEUE_NUM: q->num = v; break;
	case VIRTIO_MMIO_QUEUE_READY: q->ready = v; break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW: q->desc = (q->desc & ~0xffffffffull) | v; break;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		q->desc = (q->desc & 0xffffffffull) | (uint64_t)v << 32;
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
		q->avail = (q->avail & ~0xffffffffull) | v;
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		q->avail = (q->avail & 0xffffffffull) | (uint64_t)v << 32;
		break;
	case VIRTIO_MMIO_QUEUE_USED_LOW: q->used = (q->used & ~0xffffffffull) | v; break;
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		q->used = (q->used & 0xffffffffull) | (uint64_t)v << 32;
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		FB->notifies++;
		if (v < FB_QUEUES)
			fb_process(f, v);
		break;
	case VIRTIO_MMIO_STATUS:
		if (v == 0) {
			fb_reset();
			break;
		}
		if ((v & VIRTIO_CONFIG_S_FEATURES_OK) &&
		    !(FB->status & VIRTIO_CONFIG_S_FEATURES_OK) &&
		    (FB->reject_features || (FB->driver_features & ~FB->features)))
			v &= ~(uint32_t)VIRTIO_CONFIG_S_FEATURES_OK;
		FB->status = v | (FB->status & VIRTIO_CONFIG_S_NEEDS_RESET);
		break;
	default: return VPROXY_ST_BAD_ACCESS;
	}
	return VPROXY_ST_OK;
}

static const struct fake_dev_ops fblk_ops = {fb_read, fb_write};

#define FB_ALL_FEATURES                                                                  \
	((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_BLK_F_SIZE_MAX) |                \
	 (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |              \
	 (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_MQ) |                      \
	 (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES) |          \
	 (1ull << VIRTIO_RING_F_EVENT_IDX) | (1ull << VIRTIO_RING_F_INDIRECT_DESC))

static struct vblk_driver *blk;
static struct vblk_opts bopts;

static void vblk_setup(void)
{
	setup();
	FB = calloc(1, sizeof(*FB));
	ck_assert_ptr_nonnull(FB);
	FB->magic = 0x74726976;
	FB->features = FB_ALL_FEATURES;
	FB->qnum_max = 64;
	FB->cfg.capacity = FB_SECTORS;
	FB->cfg.size_max = 65536;
	FB->cfg.seg_max = 32;
	FB->cfg.blk_size = 512;
	FB->cfg.num_queues = 2;
	FB->cfg.max_discard_sectors = FB_SECTORS;
	FB->cfg.max_discard_seg = 1;
	FB->cfg.discard_sector_alignment = 1;
	FB->cfg.max_write_zeroes_sectors = FB_SECTORS;
	FB->cfg.max_write_zeroes_seg = 1;
	F.dev = &fblk_ops;
	F.be_inline = true;
	vblk_opts_default(&bopts);
	blk = NULL;
}

static void vblk_teardown(void)
{
	free(FB);
	teardown();
}

static void open_ok(void)
{
	char why[200] = "";

	attach_ok();
	ck_assert_msg(vblk_open(&dev, &bopts, &blk, why, sizeof(why)) == 0, "%s", why);
}

static void close_all(void)
{
	vblk_close(blk);
	blk = NULL;
	ck_assert_uint_eq(FB->status, 0); /* reset on close */
	ck_assert_int_eq(vps_detach(&dev), 0);
	assert_released();
}

/* Submit and wait for one request; its status. */
static uint8_t do_req(struct vblk_queue *q, struct vblk_req *r)
{
	struct vblk_completion c;
	int n;

	ck_assert_int_eq(vblk_submit(q, r), 0);
	ck_assert_int_eq(vblk_kick(q), 0);
	for (int i = 0; i < 10; i++) {
		n = vblk_reap(q, &c, 1);
		ck_assert_int_ge(n, 0);
		if (n == 1) {
			ck_assert_uint_eq(c.tag, r->tag);
			return c.status;
		}
		ck_assert_int_ge(vblk_wait(blk, 100 * MS), 0);
	}
	ck_abort_msg("request never completed");
	return 0xff;
}

START_TEST(vblk_open_negotiates)
{
	const struct vblk_info *in;

	bopts.num_queues = 4;
	open_ok();
	in = vblk_info(blk);
	ck_assert_uint_eq(FB->status, VIRTIO_CONFIG_S_ACKNOWLEDGE |
	                                      VIRTIO_CONFIG_S_DRIVER |
	                                      VIRTIO_CONFIG_S_FEATURES_OK |
	                                      VIRTIO_CONFIG_S_DRIVER_OK);
	ck_assert_uint_eq(FB->driver_features, FB_ALL_FEATURES);
	ck_assert_uint_eq(in->features, FB_ALL_FEATURES);
	ck_assert_uint_eq(in->capacity, FB_SECTORS);
	ck_assert_uint_eq(in->num_queues, 2); /* capped at the device's */
	ck_assert_uint_eq(in->queue_size, 64);
	ck_assert(in->event_idx && in->indirect && in->flush && in->discard &&
	          in->write_zeroes);
	ck_assert(!in->read_only);
	ck_assert_uint_eq(in->seg_max, 32);
	ck_assert_uint_eq(in->max_inflight, 64);
	ck_assert(FB->q[0].ready && FB->q[1].ready && !FB->q[2].ready);
	ck_assert_uint_eq(FB->q[0].num, 64);
	/* the queues live in memory the platform handed out */
	ck_assert_ptr_nonnull(fk_translate(&F, FB->q[1].desc, 16 * 64));
	ck_assert_ptr_nonnull(fk_translate(&F, FB->q[1].used, 6 + 8 * 64));
	close_all();
}
END_TEST

START_TEST(vblk_refuses_masked_features)
{
	const struct vblk_info *in;

	bopts.refuse_features = (1ull << VIRTIO_RING_F_EVENT_IDX) |
	                        (1ull << VIRTIO_RING_F_INDIRECT_DESC) |
	                        (1ull << VIRTIO_BLK_F_MQ);
	bopts.num_queues = 2;
	open_ok();
	in = vblk_info(blk);
	ck_assert(!in->event_idx && !in->indirect);
	ck_assert_uint_eq(in->num_queues, 1);
	ck_assert_uint_eq(FB->driver_features, FB_ALL_FEATURES & ~bopts.refuse_features);
	close_all();
}
END_TEST

START_TEST(vblk_open_failures)
{
	char why[200];

	/* not virtio */
	FB->magic = 0x12345678;
	attach_ok();
	ck_assert_int_eq(vblk_open(&dev, &bopts, &blk, why, sizeof(why)), -ENODEV);
	ck_assert_ptr_nonnull(strstr(why, "magic"));
	/* no VERSION_1 */
	FB->magic = 0x74726976;
	FB->features &= ~(1ull << VIRTIO_F_VERSION_1);
	ck_assert_int_eq(vblk_open(&dev, &bopts, &blk, why, sizeof(why)), -ENODEV);
	ck_assert_ptr_nonnull(strstr(why, "VERSION_1"));
	ck_assert_uint_eq(FB->status, 0); /* FAILED, then reset */
	/* FEATURES_OK refused */
	FB->features = FB_ALL_FEATURES;
	FB->reject_features = true;
	ck_assert_int_eq(vblk_open(&dev, &bopts, &blk, why, sizeof(why)), -ENOTSUP);
	ck_assert_ptr_nonnull(strstr(why, "refused"));
	/* refusing VERSION_1 by option */
	FB->reject_features = false;
	bopts.refuse_features = 1ull << VIRTIO_F_VERSION_1;
	ck_assert_int_eq(vblk_open(&dev, &bopts, &blk, why, sizeof(why)), -ENODEV);
	/* no queue */
	bopts.refuse_features = 0;
	FB->qnum_max = 0;
	ck_assert_int_eq(vblk_open(&dev, &bopts, &blk, why, sizeof(why)), -ENODEV);
	ck_assert_ptr_nonnull(strstr(why, "queue 0"));
	/* every failure gave its queue memory back: only the ring page left */
	ck_assert_uint_eq(F.nallocs - F.frees, 1);
	ck_assert_int_eq(vps_detach(&dev), 0);
	assert_released();
}
END_TEST

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
}

/* Many requests in flight on every queue, data checked both ways. */
static void round_trip(size_t bs, unsigned depth)
{
	unsigned nq = vblk_info(blk)->num_queues, done = 0;
	struct vblk_buf *bufs = calloc(depth, sizeof(*bufs));
	uint8_t *expect = malloc(bs);

	ck_assert_ptr_nonnull(bufs);
	for (unsigned i = 0; i < depth; i++) {
		struct vblk_req r = {.type = VBLK_T_WRITE,
		                     .sector = i * bs / 512,
		                     .len = bs,
		                     .tag = 1000 + i};

		ck_assert_int_eq(vblk_buf_alloc(blk, bs, &bufs[i]), 0);
		fill(bufs[i].ptr, bs, i);
		r.buf = &bufs[i];
		ck_assert_int_eq(vblk_submit(vblk_queue(blk, i % nq), &r), 0);
	}
	for (unsigned q = 0; q < nq; q++)
		ck_assert_int_eq(vblk_kick(vblk_queue(blk, q)), 0);
	for (int spins = 0; done < depth && spins < 100; spins++) {
		for (unsigned q = 0; q < nq; q++) {
			struct vblk_completion c[16];
			int n = vblk_reap(vblk_queue(blk, q), c, 16);

			ck_assert_int_ge(n, 0);
			for (int k = 0; k < n; k++) {
				ck_assert_uint_eq(c[k].status, VBLK_S_OK);
				ck_assert_uint_ge(c[k].tag, 1000);
				ck_assert_uint_lt(c[k].tag, 1000 + depth);
			}
			done += (unsigned)n;
		}
		if (done < depth)
			ck_assert_int_ge(vblk_wait(blk, 100 * MS), 0);
	}
	ck_assert_uint_eq(done, depth);
	for (unsigned i = 0; i < depth; i++) {
		fill(expect, bs, i);
		ck_assert_mem_eq(FB->disk + i * bs, expect, bs);
		memset(bufs[i].ptr, 0, bs);
		struct vblk_req r = {.type = VBLK_T_READ,
		                     .sector = i * bs / 512,
		                     .buf = &bufs[i],
		                     .len = bs,
		                     .tag = i};
		ck_assert_uint_eq(do_req(vblk_queue(blk, i % nq), &r), VBLK_S_OK);
		ck_assert_mem_eq(bufs[i].ptr, expect, bs);
	}
	for (unsigned q = 0; q < nq; q++)
		ck_assert_uint_eq(vblk_inflight(vblk_queue(blk, q)), 0);
	for (unsigned i = 0; i < depth; i++)
		vblk_buf_free(blk, &bufs[i]);
	free(bufs);
	free(expect);
}

START_TEST(vblk_data_round_trip_indirect)
{
	bopts.num_queues = 2;
	open_ok();
	round_trip(4096, 64);
	ck_assert(FB->saw_indirect);
	close_all();
}
END_TEST

START_TEST(vblk_data_round_trip_direct)
{
	bopts.refuse_features = 1ull << VIRTIO_RING_F_INDIRECT_DESC;
	open_ok();
	/* a 1 MiB request in 64 KiB segments takes 18 descriptors */
	ck_assert_uint_eq(vblk_info(blk)->max_inflight, 64 / 18);
	round_trip(4096, 21);
	ck_assert(FB->saw_direct && !FB->saw_indirect);
	close_all();
}
END_TEST

START_TEST(vblk_splits_at_size_max)
{
	const struct vblk_info *in;

	FB->cfg.size_max = 4096;
	FB->cfg.seg_max = 8;
	open_ok();
	in = vblk_info(blk);
	ck_assert_uint_eq(in->max_io_bytes, 8 * 4096);
	round_trip(8 * 4096, 4);
	ck_assert_uint_eq(FB->max_data_len, 4096);
	ck_assert_uint_eq(FB->max_data_descs, 8);
	{
		struct vblk_buf b;
		struct vblk_req r = {.type = VBLK_T_READ, .len = 9 * 4096, .buf = &b};

		ck_assert_int_eq(vblk_buf_alloc(blk, 9 * 4096, &b), 0);
		ck_assert_int_eq(vblk_submit(vblk_queue(blk, 0), &r), -EINVAL);
		vblk_buf_free(blk, &b);
	}
	close_all();
}
END_TEST

START_TEST(vblk_queue_full_is_eagain)
{
	struct vblk_buf b;
	struct vblk_completion c[4];
	struct vblk_req r = {.type = VBLK_T_READ, .len = 512, .buf = &b};
	struct vblk_queue *q;

	bopts.refuse_features = 1ull << VIRTIO_RING_F_INDIRECT_DESC;
	bopts.queue_size = 8;
	open_ok();
	q = vblk_queue(blk, 0);
	ck_assert_int_eq(vblk_buf_alloc(blk, 4096, &b), 0);
	/* 3 descriptors each: two fit in 8 */
	ck_assert_int_eq(vblk_submit(q, &r), 0);
	ck_assert_int_eq(vblk_submit(q, &r), 0);
	ck_assert_int_eq(vblk_submit(q, &r), -EAGAIN);
	ck_assert_uint_eq(vblk_inflight(q), 2);
	ck_assert_int_eq(vblk_kick(q), 0);
	ck_assert_int_eq(vblk_reap(q, c, 4), 2);
	/* the descriptors came back */
	for (int round = 0; round < 10; round++) {
		ck_assert_int_eq(vblk_submit(q, &r), 0);
		ck_assert_int_eq(vblk_submit(q, &r), 0);
		ck_assert_int_eq(vblk_kick(q), 0);
		ck_assert_int_eq(vblk_reap(q, c, 4), 2);
	}
	vblk_buf_free(blk, &b);
	close_all();
}
END_TEST

START_TEST(vblk_other_requests)
{
	struct vblk_buf b;
	struct vblk_queue *q;
	uint8_t zeros[4096] = {0};

	open_ok();
	q = vblk_queue(blk, 0);
	ck_assert_int_eq(vblk_buf_alloc(blk, 8192, &b), 0);
	{
		struct vblk_req r = {
		        .type = VBLK_T_GET_ID, .buf = &b, .len = 20, .tag = 1};

		ck_assert_uint_eq(do_req(q, &r), VBLK_S_OK);
		ck_assert_str_eq((char *)b.ptr, "fakeblk-7");
	}
	{
		struct vblk_req r = {.type = VBLK_T_FLUSH, .tag = 2};

		ck_assert_uint_eq(do_req(q, &r), VBLK_S_OK);
		ck_assert_uint_eq(FB->flushes, 1);
	}
	memset(FB->disk, 0xaa, sizeof(FB->disk));
	{
		struct vblk_req r = {.type = VBLK_T_WRITE_ZEROES,
		                     .sector = 8,
		                     .num_sectors = 8,
		                     .flags = VBLK_WZ_UNMAP,
		                     .tag = 3};

		ck_assert_uint_eq(do_req(q, &r), VBLK_S_OK);
		ck_assert_mem_eq(FB->disk + 4096, zeros, 4096);
		ck_assert_uint_eq(FB->disk[4095], 0xaa);
		ck_assert_uint_eq(FB->disk[8192], 0xaa);
	}
	{
		struct vblk_req r = {
		        .type = VBLK_T_DISCARD, .sector = 0, .num_sectors = 8, .tag = 4};

		ck_assert_uint_eq(do_req(q, &r), VBLK_S_OK);
		ck_assert_mem_eq(FB->disk, zeros, 4096);
		r.flags = VBLK_WZ_UNMAP; /* only for WRITE_ZEROES */
		ck_assert_int_eq(vblk_submit(q, &r), -EINVAL);
	}
	{
		/* beyond the disk: the device's error comes back */
		struct vblk_req r = {.type = VBLK_T_READ,
		                     .sector = FB_SECTORS,
		                     .buf = &b,
		                     .len = 4096,
		                     .tag = 5};

		ck_assert_uint_eq(do_req(q, &r), VBLK_S_IOERR);
	}
	{
		struct vblk_req bad[] = {
		        {.type = VBLK_T_READ, .buf = &b, .len = 100},
		        {.type = VBLK_T_READ, .buf = &b, .off = 4096, .len = 8192},
		        {.type = VBLK_T_READ, .buf = NULL, .len = 512},
		        {.type = VBLK_T_GET_ID, .buf = &b, .len = 21},
		        {.type = VBLK_T_DISCARD, .num_sectors = 0},
		        {.type = 77},
		};

		for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			ck_assert_int_eq(vblk_submit(q, &bad[i]), -EINVAL);
		ck_assert_uint_eq(vblk_inflight(q), 0);
	}
	vblk_buf_free(blk, &b);
	close_all();
}
END_TEST

START_TEST(vblk_missing_features_refused)
{
	struct vblk_buf b;
	struct vblk_queue *q;

	FB->features &= ~((1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_DISCARD) |
	                  (1ull << VIRTIO_BLK_F_WRITE_ZEROES));
	FB->features |= 1ull << VIRTIO_BLK_F_RO;
	open_ok();
	q = vblk_queue(blk, 0);
	ck_assert(vblk_info(blk)->read_only);
	ck_assert_int_eq(vblk_buf_alloc(blk, 4096, &b), 0);
	{
		struct vblk_req fl = {.type = VBLK_T_FLUSH};
		struct vblk_req dc = {.type = VBLK_T_DISCARD, .num_sectors = 8};
		struct vblk_req wz = {.type = VBLK_T_WRITE_ZEROES, .num_sectors = 8};
		struct vblk_req wr = {.type = VBLK_T_WRITE, .buf = &b, .len = 4096};
		struct vblk_req rd = {.type = VBLK_T_READ, .buf = &b, .len = 4096};

		ck_assert_int_eq(vblk_submit(q, &fl), -EOPNOTSUPP);
		ck_assert_int_eq(vblk_submit(q, &dc), -EOPNOTSUPP);
		ck_assert_int_eq(vblk_submit(q, &wz), -EOPNOTSUPP);
		ck_assert_int_eq(vblk_submit(q, &wr), -EROFS);
		ck_assert_uint_eq(do_req(q, &rd), VBLK_S_OK);
	}
	vblk_buf_free(blk, &b);
	close_all();
}
END_TEST

/* Ten requests completed while the driver does not wait: with EVENT_IDX
 * one interrupt (used_event starts at 0), without it none (NO_INTERRUPT
 * while not waiting). */
static void interrupts_only_when_waiting(bool event_idx)
{
	struct vblk_buf b;
	struct vblk_completion c[16];
	struct vblk_stats st;
	struct vblk_queue *q;
	unsigned expect_irqs = event_idx ? 1 : 0;

	if (!event_idx)
		bopts.refuse_features = 1ull << VIRTIO_RING_F_EVENT_IDX;
	open_ok();
	q = vblk_queue(blk, 0);
	ck_assert_int_eq(vblk_buf_alloc(blk, 4096, &b), 0);
	for (int i = 0; i < 10; i++) {
		struct vblk_req r = {
		        .type = VBLK_T_READ, .buf = &b, .len = 4096, .tag = (uint64_t)i};

		ck_assert_int_eq(vblk_submit(q, &r), 0);
		ck_assert_int_eq(vblk_kick(q), 0);
	}
	ck_assert_uint_eq(FB->irqs, expect_irqs);
	/* completions are there: wait returns at once, without sleeping */
	ck_assert_int_eq(vblk_wait(blk, 1000 * MS), 1);
	ck_assert_int_eq(vblk_reap(q, c, 16), 10);
	/* now wait for real: the next completion interrupts */
	{
		struct vblk_req r = {
		        .type = VBLK_T_READ, .buf = &b, .len = 4096, .tag = 99};

		F.be_inline = false; /* the device runs while the driver sleeps */
		ck_assert_int_eq(vblk_submit(q, &r), 0);
		int n = 0;

		ck_assert_int_eq(vblk_kick(q), 0);
		/* (a wake-up for the earlier, unacknowledged interrupt may come
		 * first) */
		for (int i = 0; i < 3 && n == 0; i++) {
			ck_assert_int_eq(vblk_wait(blk, 1000 * MS), 1);
			n = vblk_reap(q, c, 16);
		}
		ck_assert_int_eq(n, 1);
		ck_assert_uint_eq(c[0].tag, 99);
		ck_assert_uint_eq(FB->irqs, expect_irqs + 1);
		F.be_inline = true;
	}
	/* not waiting any more: completions interrupt no one */
	for (int i = 0; i < 5; i++) {
		struct vblk_req r = {
		        .type = VBLK_T_READ, .buf = &b, .len = 4096, .tag = 200};

		ck_assert_int_eq(vblk_submit(q, &r), 0);
		ck_assert_int_eq(vblk_kick(q), 0);
	}
	ck_assert_uint_eq(FB->irqs, expect_irqs + 1);
	ck_assert_int_eq(vblk_reap(q, c, 16), 5);
	vblk_get_stats(blk, &st);
	ck_assert_uint_eq(st.irqs, expect_irqs + 1);
	vblk_buf_free(blk, &b);
	close_all();
}

START_TEST(vblk_event_idx_interrupts)
{
	interrupts_only_when_waiting(true);
}
END_TEST

START_TEST(vblk_no_interrupt_flag)
{
	interrupts_only_when_waiting(false);
}
END_TEST

START_TEST(vblk_wait_times_out)
{
	open_ok();
	ck_assert_int_eq(vblk_wait(blk, 50 * MS), 0);
	close_all();
}
END_TEST

START_TEST(vblk_kicks_suppressed_when_device_polls)
{
	struct vblk_buf b;
	struct vblk_completion c[16];
	struct vblk_stats st;
	struct vblk_queue *q;

	open_ok();
	q = vblk_queue(blk, 0);
	ck_assert_int_eq(vblk_buf_alloc(blk, 4096, &b), 0);
	FB->stale_avail_event = true;
	{
		struct vblk_req r = {.type = VBLK_T_READ, .buf = &b, .len = 4096};

		/* the first kick goes out; after it the device says "don't" */
		ck_assert_int_eq(vblk_submit(q, &r), 0);
		ck_assert_int_eq(vblk_kick(q), 0);
		for (int i = 0; i < 5; i++) {
			ck_assert_int_eq(vblk_submit(q, &r), 0);
			ck_assert_int_eq(vblk_kick(q), 0);
		}
	}
	vblk_get_stats(blk, &st);
	ck_assert_uint_eq(st.kicks, 1);
	ck_assert_uint_eq(st.kicks_saved, 5);
	/* a polling device picks them up anyway */
	fb_process(&F, 0);
	ck_assert_int_eq(vblk_reap(q, c, 16), 6);
	vblk_buf_free(blk, &b);
	close_all();
}
END_TEST

static void expect_broken(enum vblk_corrupt kind, const char *why)
{
	open_ok();
	ck_assert_int_eq(vblk_debug_corrupt(blk, kind), 0);
	ck_assert_int_eq(vblk_wait(blk, 1000 * MS), -EIO);
	ck_assert_int_eq(vblk_health(blk), VBLK_NEEDS_RESET);
	ck_assert_str_eq(FB->broken_why, why);
	{
		struct vblk_req r = {.type = VBLK_T_FLUSH};

		ck_assert_int_eq(vblk_submit(vblk_queue(blk, 0), &r), -EIO);
	}
	close_all();
}

START_TEST(vblk_hostile_desc_loop)
{
	expect_broken(VBLK_CORRUPT_DESC_LOOP, "bad descriptor chain");
}
END_TEST

START_TEST(vblk_hostile_desc_loop_direct)
{
	bopts.refuse_features = 1ull << VIRTIO_RING_F_INDIRECT_DESC;
	expect_broken(VBLK_CORRUPT_DESC_LOOP, "bad descriptor chain");
}
END_TEST

START_TEST(vblk_hostile_bad_addr)
{
	expect_broken(VBLK_CORRUPT_BAD_ADDR, "bad request");
}
END_TEST

START_TEST(vblk_hostile_bad_addr_grant)
{
	fake_init(&F, VPS_ADDR_GRANT);
	F.dev = &fblk_ops;
	F.be_inline = true;
	expect_broken(VBLK_CORRUPT_BAD_ADDR, "bad request");
}
END_TEST

START_TEST(vblk_hostile_avail_jump)
{
	expect_broken(VBLK_CORRUPT_AVAIL_JUMP, "avail idx jumped");
}
END_TEST

START_TEST(vblk_hostile_ring_overflow)
{
	open_ok();
	ck_assert_int_eq(vblk_debug_corrupt(blk, VBLK_CORRUPT_RING_OVERFLOW), 0);
	ck_assert_int_eq(vblk_wait(blk, 1000 * MS), -ENODEV);
	ck_assert_int_eq(vblk_health(blk), VBLK_GONE);
	ck_assert_str_eq(vblk_error(blk), "request ring overflow");
	vblk_close(blk);
	ck_assert_int_eq(vps_detach(&dev), 0);
	assert_released();
}
END_TEST

START_TEST(vblk_bogus_used_id_fails)
{
	struct vblk_buf b;
	struct vblk_completion c[4];
	struct vblk_req r = {.type = VBLK_T_READ, .buf = &b, .len = 512};

	open_ok();
	ck_assert_int_eq(vblk_buf_alloc(blk, 4096, &b), 0);
	FB->bogus_used_id = true;
	ck_assert_int_eq(vblk_submit(vblk_queue(blk, 0), &r), 0);
	ck_assert_int_eq(vblk_kick(vblk_queue(blk, 0)), 0);
	ck_assert_int_eq(vblk_reap(vblk_queue(blk, 0), c, 4), -EPROTO);
	ck_assert_int_eq(vblk_health(blk), VBLK_FAILED);
	ck_assert_ptr_nonnull(strstr(vblk_error(blk), "not in flight"));
	vblk_buf_free(blk, &b);
	close_all();
}
END_TEST

START_TEST(vblk_backend_gone)
{
	open_ok();
	F.be_inline = false;
	F.hook = hook_backend_closes;
	F.hook_at = F.sleeps + 1;
	ck_assert_int_eq(vblk_wait(blk, 1000 * MS), -ENODEV);
	ck_assert_int_eq(vblk_health(blk), VBLK_GONE);
	ck_assert_str_eq(vblk_error(blk), "ring malformed");
	vblk_close(blk);
	ck_assert_int_eq(vps_detach(&dev), 0);
	assert_released();
}
END_TEST

START_TEST(vblk_stop_resets_before_buffers_go)
{
	struct vblk_buf b;
	struct vblk_req r = {.type = VBLK_T_READ, .len = 4096, .buf = &b};

	open_ok();
	ck_assert_int_eq(vblk_buf_alloc(blk, 4096, &b), 0);
	F.be_inline = false; /* in flight until the device runs */
	ck_assert_int_eq(vblk_submit(vblk_queue(blk, 0), &r), 0);
	ck_assert_int_eq(vblk_kick(vblk_queue(blk, 0)), 0);
	F.be_inline = true;
	vblk_stop(blk);
	ck_assert_uint_eq(FB->status, 0);
	ck_assert(!FB->q[0].ready);
	ck_assert_int_eq(vblk_submit(vblk_queue(blk, 0), &r), -ESHUTDOWN);
	ck_assert_int_eq(vblk_wait(blk, 0), -ESHUTDOWN);
	vblk_stop(blk);
	vblk_buf_free(blk, &b);
	close_all();
}
END_TEST

START_TEST(vblk_corrupt_names)
{
	enum vblk_corrupt k;

	ck_assert_int_eq(vblk_corrupt_parse("desc-loop", &k), 0);
	ck_assert_int_eq(k, VBLK_CORRUPT_DESC_LOOP);
	ck_assert_int_eq(vblk_corrupt_parse("ring-overflow", &k), 0);
	ck_assert_int_eq(k, VBLK_CORRUPT_RING_OVERFLOW);
	ck_assert_int_eq(vblk_corrupt_parse("avail-jump", &k), 0);
	ck_assert_int_eq(vblk_corrupt_parse("bad-addr", &k), 0);
	ck_assert_int_eq(vblk_corrupt_parse("nope", &k), -EINVAL);
}
END_TEST

static Suite *stub_suite(void)
{
	Suite *s = suite_create("stub");
	TCase *tc = tcase_create("handshake");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, attach_publishes_and_connects);
	tcase_add_test(tc, attach_grant_mode);
	tcase_add_test(tc, attach_waits_for_device);
	tcase_add_test(tc, attach_waits_for_initwait);
	tcase_add_test(tc, attach_times_out_in_initialising);
	tcase_add_test(tc, attach_times_out_without_device);
	tcase_add_test(tc, attach_fails_with_backend_error);
	tcase_add_test(tc, attach_fails_when_backend_closing);
	tcase_add_test(tc, attach_checks_backend_id);
	tcase_add_test(tc, attach_retries_conflicting_transaction);
	tcase_add_test(tc, attach_again_after_detach);
	tcase_add_test(tc, attach_resets_a_stale_connection);
	tcase_add_test(tc, attach_fails_on_failed_storage);
	tcase_add_test(tc, attach_fails_on_failed_storage_after_grace);
	tcase_add_test(tc, attach_ignores_stale_error_when_starting_over);
	tcase_add_test(tc, detach_times_out_but_cleans_up);
	tcase_add_test(tc, detach_after_device_removed);
	tcase_add_test(tc, list_devices);
	suite_add_tcase(s, tc);

	tc = tcase_create("registers");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, read_returns_register_value);
	tcase_add_test(tc, bad_accesses_rejected_locally);
	tcase_add_test(tc, posted_writes_do_not_wait_and_stay_ordered);
	tcase_add_test(tc, notifications_suppressed);
	tcase_add_test(tc, inline_backend_answers_without_sleeping);
	tcase_add_test(tc, ring_full_waits_for_slots);
	tcase_add_test(tc, ring_full_times_out_on_silent_backend);
	tcase_add_test(tc, read_times_out_then_recovers);
	tcase_add_test(tc, refused_accesses_reported);
	tcase_add_test(tc, interrupt_status_and_ack_are_local);
	tcase_add_test(tc, interrupt_handler_called);
	tcase_add_test(tc, wait_zero_timeout_polls);
	tcase_add_test(tc, backend_closing_reported);
	tcase_add_test(tc, backend_closing_interrupts_a_read);
	tcase_add_test(tc, backend_removed_reported);
	tcase_add_test(tc, out_of_order_answer_is_protocol_error);
	tcase_add_test(tc, excess_answers_are_protocol_error);
	tcase_add_test(tc, overflow_ring_makes_backend_close);
	tcase_add_test(tc, threaded_backend_stress);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("vblk");
	tcase_add_checked_fixture(tc, vblk_setup, vblk_teardown);
	tcase_add_test(tc, vblk_open_negotiates);
	tcase_add_test(tc, vblk_refuses_masked_features);
	tcase_add_test(tc, vblk_open_failures);
	tcase_add_test(tc, vblk_data_round_trip_indirect);
	tcase_add_test(tc, vblk_data_round_trip_direct);
	tcase_add_test(tc, vblk_splits_at_size_max);
	tcase_add_test(tc, vblk_queue_full_is_eagain);
	tcase_add_test(tc, vblk_other_requests);
	tcase_add_test(tc, vblk_missing_features_refused);
	tcase_add_test(tc, vblk_event_idx_interrupts);
	tcase_add_test(tc, vblk_no_interrupt_flag);
	tcase_add_test(tc, vblk_wait_times_out);
	tcase_add_test(tc, vblk_kicks_suppressed_when_device_polls);
	tcase_add_test(tc, vblk_hostile_desc_loop);
	tcase_add_test(tc, vblk_hostile_desc_loop_direct);
	tcase_add_test(tc, vblk_hostile_bad_addr);
	tcase_add_test(tc, vblk_hostile_bad_addr_grant);
	tcase_add_test(tc, vblk_hostile_avail_jump);
	tcase_add_test(tc, vblk_hostile_ring_overflow);
	tcase_add_test(tc, vblk_bogus_used_id_fails);
	tcase_add_test(tc, vblk_backend_gone);
	tcase_add_test(tc, vblk_stop_resets_before_buffers_go);
	tcase_add_test(tc, vblk_corrupt_names);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(stub_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
