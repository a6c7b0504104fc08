/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the xenstore lifecycle (core/xsbus.c) inside a whole vproxyd
 * server (core/server.c, core/loop.c), with the in-memory xenstore of
 * fake_xs.c in place of libxenstore and the guard page hypervisor of
 * fake_hv.c in place of the sim layer (this harness defines vp_hv_sim_open, so hv_sim*.c are not
 * linked).  The input plays the toolstack and the guests: domains come
 * and go, frontends write any value to ring-ref, event-channel, addr-mode,
 * protocol-version, feature-persistent and state in any order, remove
 * their nodes or the backend's, connect for real (a shared page in guest
 * RAM) and put register accesses on the ring, and the server may be shut
 * down at any point.  Beyond ASan/UBSan: every backend state written is a
 * xenbus state, every guest mapping and port is released after shutdown,
 * and no device node is left behind.
 *
 * Input: initial domains u8 (bits 0-3 a domain each, bit 4 poll-us on),
 * then operations (op u8 + arguments) to the end.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vproxy/proto.h>

#include "fake_hv.h"
#include "fake_xs.h"
#include "fuzz_disk.h"
#include "fuzz_input.h"
#include "hv.h"
#include "log.h"
#include "loop.h"
#include "server.h"

#define RAM_PAGES 256u
#define BE_ROOT "/local/domain/0/backend/vproxy"
#define NDEVS 4u

static struct vp_hv *hv;

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

/* ---- storage: the checking RAM disk, and one that never opens ---- */

static const char *const no_keys[] = {NULL};

static int good_open(struct vproxy_disk_host *dh, const struct vproxy_params *params,
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

static int bad_open(struct vproxy_disk_host *dh, const struct vproxy_params *params,
                    int read_only, struct vproxy_disk_info *info, void **disk, char *err,
                    size_t errlen)
{
	(void)dh;
	(void)params;
	(void)read_only;
	(void)info;
	(void)disk;
	snprintf(err, errlen, "no such disk");
	return -ENOENT;
}

static int fuzz_submit(void *disk, struct vproxy_req *req)
{
	return fuzz_disk_plugin.submit(disk, req);
}

static void no_close(void *disk)
{
	(void)disk;
}

static const struct vproxy_plugin good_plugin = {
        .abi_version = VPROXY_PLUGIN_ABI_VERSION,
        .size = sizeof(struct vproxy_plugin),
        .name = "fuzz",
        .description = "fuzzing RAM disk",
        .param_keys = no_keys,
        .open = good_open,
        .submit = fuzz_submit,
        .close = no_close,
};

static const struct vproxy_plugin bad_plugin = {
        .abi_version = VPROXY_PLUGIN_ABI_VERSION,
        .size = sizeof(struct vproxy_plugin),
        .name = "broken",
        .description = "a disk that never opens",
        .param_keys = no_keys,
        .open = bad_open,
        .submit = fuzz_submit,
        .close = no_close,
};

static const struct vp_devdecl decls[] = {
        {.label = "a",
         .guest = "5",
         .guest_domid = 5,
         .devid = 0,
         .plugin = &good_plugin,
         .queues = 1,
         .queue_size = 16},
        {.label = "b",
         .guest = "5",
         .guest_domid = 5,
         .devid = 1,
         .plugin = &good_plugin,
         .read_only = true,
         .queues = 2,
         .queue_size = 8,
         .serial = "serial-b"},
        {.label = "c",
         .guest = "web",
         .guest_domid = -1,
         .devid = 0,
         .plugin = &good_plugin,
         .queues = 1,
         .queue_size = 4},
        {.label = "d",
         .guest = "7",
         .guest_domid = 7,
         .devid = 3,
         .plugin = &bad_plugin,
         .queues = 1,
         .queue_size = 16},
        {.label = "e",
         .guest = "5",
         .guest_domid = 5,
         .devid = 0,
         .plugin = &good_plugin,
         .queues = 1,
         .queue_size = 16}, /* the same device twice: ignored */
};

/* The devices the frontends below talk to: domain, device id, page. */
static const struct {
	unsigned dom, devid, gfn;
} devs[NDEVS] = {{5, 0, 200}, {5, 1, 201}, {6, 0, 202}, {7, 3, 203}};

static const unsigned doms[] = {5, 6, 7, 8};

static const char *const keys[] = {"state",     "ring-ref",         "event-channel",
                                   "addr-mode", "protocol-version", "feature-persistent",
                                   "backend",   "unknown-key"};

static const char *const values[] = {
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "0",
        "7",
        "-1",
        "0x3",
        " 1",
        "010",
        "1 ",
        "4294967296",
        "18446744073709551615",
        "18446744073709551616",
        "gfn",
        "grant",
        "",
        "x",
        "200",
        "201",
        "202",
        "203",
        "255",
        "256",
};

static void fe_path(char *buf, size_t len, unsigned d, const char *key)
{
	snprintf(buf, len, "/local/domain/%u/device/vproxy/%u%s%s", devs[d].dom,
	         devs[d].devid, key ? "/" : "", key ? key : "");
}

/* Every backend state the server writes is a xenbus state. */
static void check_node(const char *path, const char *value, void *arg)
{
	const char *tail = strrchr(path, '/');
	bool *left = arg;

	if (strncmp(path, BE_ROOT "/", sizeof(BE_ROOT)) != 0)
		return;
	if (left && strchr(path + sizeof(BE_ROOT), '/')) {
		fprintf(stderr, "fuzz_xsbus: %s left after shutdown\n", path);
		abort();
	}
	if (tail && strcmp(tail, "/state") == 0 &&
	    (strlen(value) != 1 || value[0] < '1' || value[0] > '6')) {
		fprintf(stderr, "fuzz_xsbus: backend %s = \"%s\"\n", path, value);
		abort();
	}
}

static void run_loop(struct event_base *base)
{
	for (int i = 0; i < 16; i++)
		if (event_base_loop(base, EVLOOP_NONBLOCK) != 0)
			break;
	fake_xs_each(check_node, NULL);
}

/* The frontend shares its page and connects, as the stub does. */
static void fe_connect(struct fz *in)
{
	unsigned d = fz_u8(in) % NDEVS;
	uint8_t how = fz_u8(in);
	uint8_t *page = fake_hv_ram(hv) + (size_t)devs[d].gfn * 4096;
	struct vproxy_page_hdr *hdr = (struct vproxy_page_hdr *)(void *)page;
	char path[160], val[24];

	memset(page, 0, 4096);
	hdr->magic = VPROXY_PAGE_MAGIC;
	hdr->version = VPROXY_PROTO_VERSION;
	SHARED_RING_INIT(vproxy_page_sring(page));
	fake_hv_grant(hv, devs[d].gfn, devs[d].gfn, true);
	snprintf(val, sizeof(val), "%u", devs[d].gfn);
	fe_path(path, sizeof(path), d, "ring-ref");
	fake_xs_set(path, val);
	fe_path(path, sizeof(path), d, "event-channel");
	fake_xs_set(path, "9");
	fe_path(path, sizeof(path), d, "addr-mode");
	fake_xs_set(path, how & 1 ? "grant" : "gfn");
	fe_path(path, sizeof(path), d, "protocol-version");
	fake_xs_set(path, "1");
	if (how & 2) {
		fe_path(path, sizeof(path), d, "feature-persistent");
		fake_xs_set(path, "1");
	}
	fe_path(path, sizeof(path), d, "state");
	fake_xs_set(path, how & 4 ? "4" : "3");
}

/* The stub puts register accesses on a device's ring and kicks. */
static void fe_registers(struct fz *in)
{
	unsigned d = fz_u8(in) % NDEVS, n = fz_u8(in) % 16;
	uint8_t *page = fake_hv_ram(hv) + (size_t)devs[d].gfn * 4096;
	struct vproxy_sring *sring = vproxy_page_sring(page);
	struct vproxy_front_ring front;

	/* Continue where the ring is: the backend keeps its own indices. */
	front.sring = sring;
	front.nr_ents = __RING_SIZE(sring, VPROXY_RING_BYTES);
	front.req_prod_pvt = sring->req_prod;
	front.rsp_cons = sring->rsp_prod;
	for (unsigned i = 0; i < n && !RING_FULL(&front); i++) {
		struct vproxy_mmio_req *r = RING_GET_REQUEST(&front, front.req_prod_pvt);

		r->op = fz_u8(in) % 3;
		r->size = 4;
		r->id = (uint16_t)i;
		r->offset = fz_u16(in) & 0x1fc;
		r->value = fz_u32(in);
		front.req_prod_pvt++;
	}
	__atomic_store_n(&sring->req_prod, front.req_prod_pvt, __ATOMIC_RELEASE);
	fake_hv_kick(hv, 1 + fz_u8(in) % 8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz in = {data, size};
	struct vp_server_opts opts = {.hypervisor = "sim",
	                              .run_dir = "/nonexistent",
	                              .backend_domid = 0,
	                              .gmem_cache_bytes = 2u << 20,
	                              .shutdown_grace_ms = 0,
	                              .decls = decls,
	                              .ndecls = sizeof(decls) / sizeof(decls[0])};
	struct vp_server *srv;
	struct event_base *base;
	char err[256], path[160];
	bool stop = false, left = true;
	uint8_t initial;

	if (!hv) {
		hv = fake_hv_new(RAM_PAGES);
		vp_log_set_level(VPROXY_LOG_ERROR);
	}
	fake_hv_reset(hv);
	fake_xs_reset();
	fake_xs_set("/local/domain/0/name", "Domain-0");
	fake_xs_set("/local/domain/5/name", "five");
	fake_xs_set("/local/domain/6/name", "web");
	fake_xs_set("/local/domain/7/name", "seven");
	fake_xs_set("/local/domain/8/name", "eight");
	initial = fz_u8(&in);
	/* Bit 4: poll-us set, so kicks put devices in polled mode. */
	opts.poll_us = initial & 0x10 ? 50 : 0;
	for (unsigned i = 0; i < 4; i++)
		if (initial & (1u << i))
			fake_xs_domain(doms[i], true);

	srv = vp_server_new(&opts, err, sizeof(err));
	if (!srv) {
		fprintf(stderr, "fuzz_xsbus: %s\n", err);
		abort();
	}
	base = vp_loop_base(vp_server_loop(srv));
	run_loop(base);

	while (fz_more(&in) && !stop) {
		uint8_t op = fz_u8(&in);

		switch (op % 10) {
		case 0: fake_xs_domain(doms[fz_u8(&in) % 4], true); break;
		case 1: fake_xs_domain(doms[fz_u8(&in) % 4], false); break;
		case 2: {
			unsigned d = fz_u8(&in) % NDEVS;
			uint8_t k = fz_u8(&in), v = fz_u8(&in);
			char raw[25];

			fe_path(path, sizeof(path), d, keys[k % 8]);
			if (v < 0x80) {
				fake_xs_set(
				        path,
				        values[v % (sizeof(values) / sizeof(values[0]))]);
			} else {
				size_t len = v % 25;

				fz_bytes(&in, raw, len);
				raw[len] = '\0';
				fake_xs_set(path, raw);
			}
			break;
		}
		case 3: {
			char st[4];

			fe_path(path, sizeof(path), fz_u8(&in) % NDEVS, "state");
			snprintf(st, sizeof(st), "%u", fz_u8(&in) % 8);
			fake_xs_set(path, st);
			break;
		}
		case 4: {
			uint8_t w = fz_u8(&in);

			fe_path(path, sizeof(path), w % NDEVS,
			        w & 0x80 ? keys[(w >> 2) % 8] : NULL);
			fake_xs_remove(path);
			break;
		}
		case 5:
			snprintf(path, sizeof(path), BE_ROOT "/%u/%u",
			         devs[fz_u8(&in) % NDEVS].dom, devs[0].devid);
			fake_xs_remove(path);
			break;
		case 6: fe_connect(&in); break;
		case 7: fe_registers(&in); break;
		case 8: break;
		case 9: stop = true; break;
		}
		run_loop(base);
	}

	vp_server_stop(srv);
	for (int i = 0; i < 64 && !event_base_got_exit(base); i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	if (!event_base_got_exit(base)) {
		fprintf(stderr, "fuzz_xsbus: the server did not finish shutting down\n");
		abort();
	}
	vp_server_free(srv);
	fake_xs_each(check_node, &left);
	fake_hv_check_released(hv);
	/* Free the store now: memory held across inputs looks like a leak. */
	fake_xs_reset();
	return 0;
}
