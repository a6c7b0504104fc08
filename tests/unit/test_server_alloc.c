/* SPDX-License-Identifier: MIT */
/*
 * Allocation failures through a whole vproxyd server (alloc_fail.h): the
 * config parsed and its plugin (mem.so) loaded through the plugin host,
 * the server created, a guest domain introduced and its two devices
 * provisioned from the xenstore watches, each frontend connecting for real
 * (a shared page in guest RAM, the register ring, the event channel), a
 * virtio-blk driver (tests/fuzz/fuzz_guest.c) setting each device up and
 * writing, reading back and flushing, one frontend closing, the domain
 * going away with a read in flight, and the server shutting down.  The
 * 1st, 2nd, ... allocation of all that fails in turn, until a run no
 * longer reaches the failing call.  Each run:
 *
 *   - no crash (ASan/UBSan), and LeakSanitizer finds no leak right after
 *     it (so a leak names its run);
 *   - every guest mapping and event channel port is released (fake_hv);
 *   - no backend node is left in xenstore after shutdown;
 *   - every request the driver made available is answered unless the
 *     device says NEEDS_RESET, and whatever went wrong (config or server
 *     refused, a device not provisioned or not connected, a request
 *     failed) was said: an error string or a logged warning or error;
 *   - the server stays usable: with allocations back, the domain comes
 *     back and a device connects and serves verified I/O.
 *
 * The server runs over the fuzzers' in-memory xenstore (tests/fuzz/
 * fake_xs.c, linked in place of libxenstore) and guard page hypervisor
 * (fake_hv.c, handed out as the "sim" layer), compiled in with their own
 * allocations unwrapped: they stand for xenstored and Xen, not for
 * vproxyd.  Not reached (--wrap rewrites only what is linked statically):
 * allocations inside libevent, libxenstore, inih, libc, and in the mem
 * plugin itself, which is dlopen'ed here (test_mem_alloc covers it).
 */
#include <check.h>
#include <event2/event.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vproxy/proto.h>
#include <xen/io/xenbus.h>

#include "alloc_fail.h"
#include "config.h"
#include "fake_hv.h"
#include "fake_xs.h"
#include "fuzz_disk.h"
#include "fuzz_guest.h"
#include "hv.h"
#include "log.h"
#include "loop.h"
#include "plugin_host.h"
#include "server.h"

#define RAM_PAGES 1024u /* 4 MiB: whole 2 MiB chunks for the gfn cache */
#define HEAP_END (240u * 4096) /* the driver's buffers stay below */
#define BE_ROOT "/local/domain/0/backend/vproxy"
#define DOM 5u
#define MAX_RUNS 5000u
#define MAX_OUTSTANDING 256u
#define SENTINEL 0xeeu /* fuzz_guest fills writable buffers with it */

static struct vp_hv *hv;
static struct event_base *base; /* the server's loop */

/* ---- the hypervisor layer the server opens as "sim" ---- */

struct vp_hv *vp_hv_sim_open(const char *run_dir)
{
	(void)run_dir;
	return hv;
}

int vp_hv_sim_set_self_domid(struct vp_hv *h, uint16_t domid)
{
	(void)h;
	(void)domid;
	return 0;
}

/* ---- what the server said ---- */

/* The first thing that went against the rules in this run: asserted once
 * the run is over and allocations are disarmed (Check allocates). */
static char problem[512];
/* Warnings and errors the server logged, and whether the run fell short
 * of the healthy outcome somewhere. */
static unsigned logged;
static bool degraded;
static char last_log[512];

static void note_problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void note_problem(const char *fmt, ...)
{
	va_list ap;

	if (problem[0])
		return;
	va_start(ap, fmt);
	vsnprintf(problem, sizeof(problem), fmt, ap);
	va_end(ap);
}

static void note_log(enum vproxy_log_level level, const char *msg)
{
	if (level > VPROXY_LOG_WARN)
		return;
	logged++;
	snprintf(last_log, sizeof(last_log), "%s", msg);
}

/* The test is linked with --wrap=vp_log,--wrap=vp_log_dev: every message
 * the server logs passes here before it is printed. */
void __real_vp_log(enum vproxy_log_level level, const char *fmt, ...);
void __real_vp_log_dev(struct vp_ratelimit *rl, enum vproxy_log_level level,
                       unsigned dom, unsigned dev, const char *fmt, ...);
void __wrap_vp_log(enum vproxy_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
void __wrap_vp_log_dev(struct vp_ratelimit *rl, enum vproxy_log_level level,
                       unsigned dom, unsigned dev, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

void __wrap_vp_log(enum vproxy_log_level level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	note_log(level, msg);
	__real_vp_log(level, "%s", msg);
}

void __wrap_vp_log_dev(struct vp_ratelimit *rl, enum vproxy_log_level level,
                       unsigned dom, unsigned dev, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	note_log(level, msg);
	__real_vp_log_dev(rl, level, dom, dev, "%s", msg);
}

/* ---- storage: the checking RAM disk (device "a") ---- */

static const char *const no_keys[] = {NULL};

static int disk_open(struct vproxy_disk_host *dh, const struct vproxy_params *params,
                     int read_only, struct vproxy_disk_info *info, void **disk, char *err,
                     size_t errlen)
{
	(void)dh;
	(void)params;
	(void)err;
	(void)errlen;
	*info = (struct vproxy_disk_info){
	        .capacity = 256 * 512,
	        .logical_block = 512,
	        .physical_block = 512,
	        .flags = VPROXY_DISK_FLUSH | (read_only ? VPROXY_DISK_READONLY : 0)};
	*disk = fuzz_disk_open(info);
	return 0;
}

static int disk_submit(void *disk, struct vproxy_req *req)
{
	return fuzz_disk_plugin.submit(disk, req);
}

static void disk_cancel(void *disk, struct vproxy_req *req)
{
	fuzz_disk_plugin.cancel(disk, req);
}

static void disk_close(void *disk)
{
	(void)disk;
}

static const struct vproxy_plugin checking_disk = {
        .abi_version = VPROXY_PLUGIN_ABI_VERSION,
        .size = sizeof(struct vproxy_plugin),
        .name = "checking",
        .description = "checking RAM disk (tests/fuzz/fuzz_disk.c)",
        .param_keys = no_keys,
        .open = disk_open,
        .submit = disk_submit,
        .cancel = disk_cancel,
        .close = disk_close,
};

/* Device "m" comes from the config (mem.so, guest by name); device "a"
 * is declared here (the checking disk, guest by domid). */
static const char config_text[] =
        "[vproxyd]\n"
        "hypervisor = sim\n"
        "run-dir = /nonexistent\n"
        "backend-domid = 0\n"
        "plugin-dir = " VP_TEST_PLUGIN_DIR "\n"
        "[device m]\n"
        "guest = five\n"
        "id = 1\n"
        "plugin = mem\n"
        "queues = 2\n"
        "queue-size = 64\n"
        "serial = alloc-m\n"
        "size = 1M\n";

enum { DEV_A, DEV_M, NDEVS };

/* Device id, shared page (gfn and grant ref), address mode. */
static const struct {
	unsigned devid, gfn;
	bool grant;
} devs[NDEVS] = {[DEV_A] = {0, 250, false}, [DEV_M] = {1, 251, true}};

/* ---- the guest's stub: register accesses over the ring ---- */

struct stub {
	struct event_base *base;
	struct vproxy_front_ring front;
	uint16_t next_id;
	uint16_t ids[MAX_OUTSTANDING];
	unsigned head, count;
	uint64_t last_value;
};

static void run_loop(struct event_base *base)
{
	for (int i = 0; i < 16; i++)
		if (event_base_loop(base, EVLOOP_NONBLOCK) != 0)
			break;
}

static void take_responses(struct stub *s)
{
	RING_IDX rp = __atomic_load_n(&s->front.sring->rsp_prod, __ATOMIC_ACQUIRE);

	if (rp - s->front.rsp_cons > s->count) {
		note_problem("more register responses than requests");
		s->front.rsp_cons = rp;
		return;
	}
	while (s->front.rsp_cons != rp) {
		const struct vproxy_mmio_rsp *r =
		        RING_GET_RESPONSE(&s->front, s->front.rsp_cons);

		s->front.rsp_cons++;
		if (r->id != s->ids[s->head])
			note_problem("register response out of order");
		s->last_value = r->value;
		s->head = (s->head + 1) % MAX_OUTSTANDING;
		s->count--;
	}
}

/* The guest notifies: its port is not known to it, so kick the few the
 * fake hypervisor hands out (a kick of a port without a device is
 * ignored), then let the server run. */
static void kick(struct stub *s)
{
	for (int port = 1; port <= 3; port++)
		fake_hv_kick(hv, port);
	run_loop(s->base);
	take_responses(s);
}

static void reg(void *opaque, uint32_t offset, unsigned size, bool write, uint64_t *value)
{
	struct stub *s = opaque;
	struct vproxy_mmio_req *r;
	int notify;

	if (RING_FULL(&s->front) || s->count == MAX_OUTSTANDING) {
		kick(s);
		if (RING_FULL(&s->front) || s->count == MAX_OUTSTANDING) {
			/* The backend stopped serving: reads see 0. */
			if (!write)
				*value = 0;
			return;
		}
	}
	r = RING_GET_REQUEST(&s->front, s->front.req_prod_pvt);
	r->op = write ? VPROXY_OP_WRITE : VPROXY_OP_READ;
	r->size = (uint8_t)size;
	r->id = s->next_id;
	r->offset = offset;
	r->value = write ? *value : 0;
	s->front.req_prod_pvt++;
	s->ids[(s->head + s->count) % MAX_OUTSTANDING] = s->next_id++;
	s->count++;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&s->front, notify);
	(void)notify;
	s->last_value = 0;
	kick(s);
	if (!write)
		*value = s->last_value;
}

/* ---- the toolstack and the frontend, through xenstore ---- */

static void fe_path(char *buf, size_t len, unsigned d, const char *key)
{
	snprintf(buf, len, "/local/domain/%u/device/vproxy/%u/%s", DOM, devs[d].devid, key);
}

static void be_path(char *buf, size_t len, unsigned d, const char *key)
{
	snprintf(buf, len, BE_ROOT "/%u/%u/%s", DOM, devs[d].devid, key);
}

/* Backend state of device d, 0 when its node is absent. */
static int be_state(unsigned d)
{
	char path[160];
	const char *v;

	be_path(path, sizeof(path), d, "state");
	v = fake_xs_get(path);
	return v ? atoi(v) : 0;
}

static void fe_set(unsigned d, const char *key, const char *value)
{
	char path[160];

	fe_path(path, sizeof(path), d, key);
	fake_xs_set(path, value);
}

/* The frontend shares its page, as the stub does, and says Initialised. */
static void fe_connect(unsigned d, struct stub *s, struct event_base *base)
{
	uint8_t *page = fake_hv_ram(hv) + (size_t)devs[d].gfn * 4096;
	struct vproxy_page_hdr *hdr = (struct vproxy_page_hdr *)(void *)page;
	char val[24];

	memset(page, 0, 4096);
	hdr->magic = VPROXY_PAGE_MAGIC;
	hdr->version = VPROXY_PROTO_VERSION;
	SHARED_RING_INIT(vproxy_page_sring(page));
	memset(s, 0, sizeof(*s));
	s->base = base;
	FRONT_RING_INIT(&s->front, vproxy_page_sring(page), VPROXY_RING_BYTES);
	fake_hv_grant(hv, devs[d].gfn, devs[d].gfn, true);
	snprintf(val, sizeof(val), "%u", devs[d].gfn);
	fe_set(d, "ring-ref", val);
	fe_set(d, "event-channel", "9");
	fe_set(d, "addr-mode", devs[d].grant ? "grant" : "gfn");
	fe_set(d, "protocol-version", "1");
	if (devs[d].grant)
		fe_set(d, "feature-persistent", "1");
	fe_set(d, "state", "3");
	run_loop(base);
}

/* ---- the guest's driver ---- */

/* One request built by fuzz_guest (its input format, fg_request()): on
 * queue 0, type types[ti], one readable and one writable piece, notify.
 * Returns the guest RAM offset of its writable part (data, then status). */
static uint64_t request(struct fg *g, uint8_t ti, uint64_t sector, uint16_t out_data,
                        uint16_t in_len)
{
	uint8_t b[32];
	size_t k = 0;
	uint64_t out_at = g->heap;
	struct fz in;

	b[k++] = 0;  /* queue */
	b[k++] = ti; /* IN, OUT, FLUSH */
	b[k++] = 0;  /* ioprio */
	for (int i = 0; i < 8; i++)
		b[k++] = (uint8_t)(sector >> (8 * i));
	b[k++] = (uint8_t)out_data;
	b[k++] = (uint8_t)(out_data >> 8);
	b[k++] = 0; /* header not cut */
	b[k++] = (uint8_t)in_len;
	b[k++] = (uint8_t)(in_len >> 8);
	b[k++] = 0; /* readable part in one piece */
	b[k++] = 0; /* writable part in one piece */
	b[k++] = 2; /* direct descriptors, notify */
	in = (struct fz){b, k};
	fg_request(g, &in);
	/* fg_request() takes the header and data, then the writable part,
	 * each 16-byte aligned. */
	return (out_at + 16u + out_data + 15u) & ~15ull;
}

static uint8_t status_at(struct fg *g, uint64_t in_at, uint16_t in_len)
{
	return g->ram[in_at + in_len - 1];
}

/* What a request came back with: VIRTIO_BLK_S_OK, another status, or
 * SENTINEL when unanswered. */
static uint8_t finish(struct fg *g, uint64_t in_at, uint16_t in_len, const char *what,
                      unsigned d)
{
	uint8_t st = status_at(g, in_at, in_len);

	fg_harvest(g);
	if (st == SENTINEL && !(fg_read(g, VIRTIO_MMIO_STATUS) &
	                        VIRTIO_CONFIG_S_NEEDS_RESET))
		note_problem("device %u: %s never answered, device not NEEDS_RESET", d,
		             what);
	if (st != VIRTIO_BLK_S_OK)
		degraded = true;
	return st;
}

static bool data_ok(struct fg *g, uint64_t in_at, uint64_t sector, unsigned len)
{
	for (unsigned i = 0; i < len; i++)
		if (g->ram[in_at + i] != (uint8_t)(i * 7 + sector))
			return false;
	return true;
}

/* Set the device up; false (degraded) unless it reads back DRIVER_OK
 * without NEEDS_RESET. */
static bool driver_up(struct fg *g, unsigned nq)
{
	uint32_t st;

	fg_setup(g, ~0ull, nq, 16);
	st = fg_read(g, VIRTIO_MMIO_STATUS);
	if (st != (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
	           VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK)) {
		degraded = true;
		return false;
	}
	return true;
}

/* Write 4 KiB at sector, read it back, flush; with deferred, the checking
 * disk holds each request until complete_all says. */
static void write_read_flush(struct fg *g, unsigned d, uint64_t sector, bool deferred)
{
	uint64_t w, r, f;
	uint8_t ws, rs;

	w = request(g, 1, sector, 4096, 1);
	if (deferred)
		fuzz_disk_complete(~0u, 0, 0);
	run_loop(base);
	ws = finish(g, w, 1, "write", d);
	r = request(g, 0, sector, 0, 4096 + 1);
	if (deferred)
		fuzz_disk_complete(~0u, 0, 0);
	run_loop(base);
	rs = finish(g, r, 4096 + 1, "read", d);
	if (ws == VIRTIO_BLK_S_OK && rs == VIRTIO_BLK_S_OK && !data_ok(g, r, sector, 4096))
		note_problem("device %u: read did not return what was written", d);
	f = request(g, 2, 0, 0, 1);
	if (deferred)
		fuzz_disk_complete(~0u, 0, 0);
	run_loop(base);
	finish(g, f, 1, "flush", d);
}

/* ---- one run ---- */

/* Backend nodes of our devices left in xenstore: each is a problem. */
static void check_left(const char *path, const char *value, void *arg)
{
	(void)value;
	(void)arg;
	if (strncmp(path, BE_ROOT "/", sizeof(BE_ROOT)) == 0 &&
	    strchr(path + sizeof(BE_ROOT), '/'))
		note_problem("%s left in xenstore", path);
}

/* Device m in grant mode with persistent grants (the mem plugin, inline
 * completions): connect, I/O, then the frontend closes. */
/* Make xenstore reads fail once device m is connected (see phase_m). */
static bool xenstore_hiccup;

static void phase_m(void)
{
	struct stub s;
	struct fg g;

	if (be_state(DEV_M) != XenbusStateInitWait) {
		degraded = true;
		return;
	}
	fe_connect(DEV_M, &s, base);
	if (be_state(DEV_M) != XenbusStateConnected) {
		degraded = true;
	} else {
		if (xenstore_hiccup) {
			/* xenstore reads fail for a while (a lost connection,
			 * no memory) as a frontend watch fires: the device is
			 * not taken for gone. */
			fake_xs_fail_reads(2, EIO);
			fe_set(DEV_M, "hiccup", "1");
			run_loop(base);
			fake_xs_fail_reads(0, 0);
			if (be_state(DEV_M) != XenbusStateConnected)
				note_problem("device m: backend state %d after xenstore "
				             "reads failed",
				             be_state(DEV_M));
		}
		fg_init(&g, hv, true, reg, &s);
		g.ram_bytes = HEAP_END;
		if (driver_up(&g, 2))
			write_read_flush(&g, DEV_M, 8, false);
	}
	fe_set(DEV_M, "state", "5");
	run_loop(base);
	fe_set(DEV_M, "state", "6");
	run_loop(base);
	if (be_state(DEV_M) != XenbusStateClosed)
		note_problem("device m: backend state %d after the frontend closed",
		             be_state(DEV_M));
	/* Device a has not connected yet: nothing may stay mapped. */
	if (fake_hv_live_mappings(hv))
		note_problem("%u guest mapping(s) held after device m closed",
		             fake_hv_live_mappings(hv));
}

/* Device a in gfn mode with the chunk cache (the checking disk, held
 * completions): connect, I/O, then a read in flight when the domain
 * goes away. */
static void phase_a(void)
{
	struct fuzz_disk_mode mode = {.deferred = true};
	struct stub s;
	struct fg g;

	if (be_state(DEV_A) != XenbusStateInitWait) {
		degraded = true;
	} else {
		fe_connect(DEV_A, &s, base);
		if (be_state(DEV_A) != XenbusStateConnected) {
			degraded = true;
		} else {
			fg_init(&g, hv, false, reg, &s);
			g.ram_bytes = HEAP_END;
			fuzz_disk_set_mode(&mode);
			if (driver_up(&g, 1)) {
				/* The write's buffer straddles the 2 MiB chunk
				 * boundary: mapped apart from the cache. */
				g.ram_bytes = (uint64_t)RAM_PAGES * 4096;
				g.heap = (2u << 20) - 2048;
				write_read_flush(&g, DEV_A, 16, true);
				/* Left in flight. */
				request(&g, 0, 16, 0, 512 + 1);
				run_loop(base);
			}
		}
	}
	/* The guest dies: the toolstack removes its nodes, the domain is
	 * released; the device waits for the read the disk holds. */
	fake_xs_remove("/local/domain/5/device");
	fake_xs_domain(DOM, false);
	run_loop(base);
	fuzz_disk_complete(~0u, 0, 0);
	run_loop(base);
	if (be_state(DEV_A) || be_state(DEV_M))
		note_problem("devices of the released domain still have nodes");
	if (fake_hv_live_mappings(hv))
		note_problem("%u guest mapping(s) held after the domain went away",
		             fake_hv_live_mappings(hv));
}

/* With allocations back: the domain returns, device m connects again
 * and serves verified I/O.  Left connected for the shutdown. */
static void still_usable(void)
{
	bool was_degraded = degraded;
	struct stub s;
	struct fg g;

	fake_xs_domain(DOM, true);
	run_loop(base);
	if (be_state(DEV_M) != XenbusStateInitWait ||
	    be_state(DEV_A) != XenbusStateInitWait) {
		note_problem("domain back: devices in states %d and %d, not InitWait",
		             be_state(DEV_A), be_state(DEV_M));
		return;
	}
	fe_connect(DEV_M, &s, base);
	if (be_state(DEV_M) != XenbusStateConnected) {
		note_problem("domain back: device m did not connect");
		return;
	}
	fg_init(&g, hv, true, reg, &s);
	g.ram_bytes = HEAP_END;
	if (!driver_up(&g, 1)) {
		note_problem("domain back: device m not DRIVER_OK");
		return;
	}
	degraded = false;
	write_read_flush(&g, DEV_M, 24, false);
	if (degraded)
		note_problem("domain back: I/O on device m failed");
	degraded = was_degraded;
}

/* Run the whole life once, failing allocation n (0: none).  Returns
 * whether the failing allocation was reached. */
static bool run_once(unsigned n)
{
	struct vp_server_opts opts = {.hypervisor = "sim",
	                              .run_dir = "/nonexistent",
	                              .backend_domid = 0,
	                              .gmem_cache_bytes = 2u << 20,
	                              .shutdown_grace_ms = 60000};
	struct vp_devdecl decls[NDEVS];
	struct vp_config *cfg = NULL;
	struct vp_server *srv = NULL;
	char err[512] = "";
	bool reached;
	int rc;

	problem[0] = last_log[0] = '\0';
	logged = 0;
	degraded = false;
	fake_hv_reset(hv);
	fake_xs_reset();
	fake_xs_set("/local/domain/0/name", "Domain-0");
	fake_xs_set("/local/domain/5/name", "five");
	alloc_run_start(n);

	alloc_arm(true);
	rc = vp_config_load_string("alloc.ini", config_text, &cfg, err, sizeof(err));
	if (rc == 0)
		rc = vp_config_check_plugins(cfg, err, sizeof(err));
	alloc_arm(false);
	if (rc) {
		degraded = true;
		goto out;
	}
	decls[DEV_A] = (struct vp_devdecl){.label = "a",
	                                   .guest = "5",
	                                   .guest_domid = DOM,
	                                   .devid = devs[DEV_A].devid,
	                                   .plugin = &checking_disk,
	                                   .queues = 1,
	                                   .queue_size = 16};
	decls[DEV_M] = (struct vp_devdecl){
	        .label = cfg->devices[0].label,
	        .guest = cfg->devices[0].guest,
	        .guest_domid = cfg->devices[0].guest_domid,
	        .devid = cfg->devices[0].id,
	        .plugin = cfg->devices[0].plugin,
	        .params = cfg->devices[0].params,
	        .queues = cfg->devices[0].queues,
	        .queue_size = cfg->devices[0].queue_size,
	        .serial = cfg->devices[0].serial,
	};
	opts.decls = decls;
	opts.ndecls = NDEVS;

	alloc_arm(true);
	srv = vp_server_new(&opts, err, sizeof(err));
	if (!srv) {
		alloc_arm(false);
		degraded = true;
		goto out;
	}
	base = vp_loop_base(vp_server_loop(srv));
	fake_xs_domain(DOM, true);
	run_loop(base);
	phase_m();
	phase_a();
	alloc_arm(false);

	still_usable();

	/* Shutdown: the backend says Closing, the frontend of device m
	 * closes (without that, the grace time would have to pass). */
	alloc_arm(true);
	vp_server_stop(srv);
	run_loop(base);
	fe_set(DEV_M, "state", "6");
	for (int i = 0; i < 64 && !event_base_got_exit(base); i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	if (!event_base_got_exit(base))
		note_problem("the server did not finish shutting down");
out:
	alloc_arm(true);
	vp_server_free(srv);
	vp_config_free(cfg);
	vp_plugin_unload_all();
	alloc_arm(false);
	base = NULL;
	reached = alloc_failed;

	fake_xs_each(check_left, NULL);
	fake_hv_check_released(hv); /* aborts, listing what is held */
	fake_xs_reset();
	if (alloc_leaked())
		note_problem("LeakSanitizer found a leak (report above)");
	if (getenv("VP_ALLOC_FAIL_TRACE"))
		fprintf(stderr, "run %u: %s, %u warning(s) or error(s) logged%s%s\n", n,
		        degraded ? "degraded" : "healthy", logged, err[0] ? ", error: " : "",
		        err);
	if (degraded && !err[0] && !logged)
		note_problem("something failed and nothing said so");
	ck_assert_msg(!problem[0], "allocation %u of the run failed: %s (last logged: %s)",
	              n, problem, last_log[0] ? last_log : "nothing");
	return reached;
}

static void setup(void)
{
	if (!hv)
		hv = fake_hv_new(RAM_PAGES);
	vp_log_set_level(VPROXY_LOG_ERROR);
}

/* The healthy run first: everything must work with no failure. */
START_TEST(healthy_life)
{
	run_once(0);
	ck_assert_msg(!degraded, "the run without failures fell short (last logged: %s)",
	              last_log);
	ck_assert_msg(logged == 0, "logged: %s", last_log);
	ck_assert_uint_gt(alloc_calls, 20);
	fprintf(stderr, "server_alloc: %u allocations in a healthy run\n", alloc_calls);
}
END_TEST

/* A failed xenstore read is not a frontend that went away: the device
 * stays, logs the failure, and serves I/O once reads work again. */
START_TEST(xenstore_read_failure_is_not_removal)
{
	xenstore_hiccup = true;
	run_once(0);
	xenstore_hiccup = false;
	ck_assert_msg(!degraded, "the run fell short (last logged: %s)", last_log);
	ck_assert_msg(strstr(last_log, "cannot read the frontend"), "last logged: %s",
	              last_log);
}
END_TEST

START_TEST(allocation_failures)
{
	unsigned n, degraded_runs = 0;

	for (n = 1; n < MAX_RUNS; n++) {
		bool reached = run_once(n);

		degraded_runs += degraded;
		if (!reached)
			break;
	}
	ck_assert_uint_lt(n, MAX_RUNS);
	ck_assert_uint_gt(n, 20);
	/* Most failures must show: the test would pass vacuously if none
	 * changed anything. */
	ck_assert_uint_gt(degraded_runs, (n - 1) / 4);
	fprintf(stderr,
	        "server_alloc: %u allocations failed in turn, %u of them visibly "
	        "(an error or a failed device or request), the rest absorbed\n",
	        n - 1, degraded_runs);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("server_alloc");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, healthy_life);
	tcase_add_test(tc, xenstore_read_failure_is_not_removal);
	tcase_add_test(tc, allocation_failures);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
