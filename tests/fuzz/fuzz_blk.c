/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes virtio-blk request handling (core/virtio/blk.c) through the device model
 * (core/virtio/vdev.c) and the virtqueues, with the checking RAM disk of
 * fuzz_disk.c as the plugin and guest RAM behind the guard page
 * hypervisor.  The input chooses the disk (size, block size, operations it
 * supports, read-only), the device (queues, queue size, features the
 * driver takes, gfn or grant mode) and then a list of operations: requests
 * of every type with their headers and data split across descriptors
 * anywhere (short headers, discard and write-zeroes segments, indirect
 * tables), notifications, plugin completions in any order or failing,
 * resets (also waiting for Status to read 0, see reset_oracle), raw
 * register writes and config reads, and the guest rewriting buffers while
 * requests are in flight.
 *
 * Input: disk u8 flags, capacity u16 (sectors), limits u8, device u8
 * (queues, queue size), features u64 (mask of what the driver takes),
 * serial 20 bytes, then operations (op u8 + arguments) to the end.
 */
#include <linux/virtio_mmio.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blk.h"
#include "fake_hv.h"
#include "fuzz_disk.h"
#include "fuzz_guest.h"
#include "fuzz_input.h"
#include "gmem.h"
#include "log.h"
#include "vdev.h"

#define RAM_PAGES 256u

static struct vp_hv *hv;
static unsigned irqs, broken;
/* Once Status reads 0 after a reset, guest memory is frozen
 * (fake_hv_freeze) and interrupts forbidden until the driver touches the
 * device again (virtio 1.2 section 2.4, issue 11's "reset done as the spec
 * says").  VPROXY_FUZZ_RESET_ORACLE=0 turns this off. */
static bool reset_oracle, frozen;

static void host_irq(void *opaque, uint32_t bits)
{
	(void)opaque;
	(void)bits;
	if (frozen) {
		fprintf(stderr, "fuzz_blk: interrupt after Status read 0\n");
		abort();
	}
	irqs++;
}

static void thaw(void)
{
	if (frozen)
		fake_hv_freeze(hv, false);
	frozen = false;
}

/* The driver resets the device and waits for Status to read 0, letting
 * the plugin finish requests meanwhile. */
static void reset_and_wait(struct fg *g, struct fz *in)
{
	uint8_t pick = fz_u8(in);

	thaw();
	fg_write(g, VIRTIO_MMIO_STATUS, 0);
	for (unsigned k = 0; fg_read(g, VIRTIO_MMIO_STATUS) != 0; k++) {
		if (fuzz_disk_complete(1, pick, 0) == 0 || k > 4096) {
			if (!reset_oracle)
				return;
			fprintf(stderr, "fuzz_blk: Status stays non-zero with "
			                "nothing in flight\n");
			abort();
		}
	}
	if (reset_oracle) {
		fake_hv_freeze(hv, true);
		frozen = true;
	}
}

static void host_broken(void *opaque, const char *why)
{
	(void)opaque;
	(void)why;
	broken++;
}

static void on_done(void *arg)
{
	*(bool *)arg = true;
}

static void reg(void *opaque, uint32_t offset, unsigned size, bool write, uint64_t *value)
{
	struct vp_vdev *d = opaque;

	if (write)
		vp_vdev_mmio_write(d, offset, size, *value);
	else
		vp_vdev_mmio_read(d, offset, size, value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz in = {data, size};
	struct vproxy_disk_info info = {0};
	struct vp_blk_params params = {0};
	struct vp_vdev_host host = {0};
	struct vp_gmem *gm;
	struct vp_vdev *d;
	struct fg g;
	uint8_t dflags, limits, dev;
	uint64_t features;
	bool done = false;
	void *disk;

	if (!hv) {
		const char *o = getenv("VPROXY_FUZZ_RESET_ORACLE");

		hv = fake_hv_new(RAM_PAGES);
		vp_log_set_level(VPROXY_LOG_ERROR);
		reset_oracle = !o || strcmp(o, "0") != 0;
	}
	fake_hv_reset(hv);

	dflags = fz_u8(&in);
	info.capacity = (uint64_t)(fz_u16(&in) % (FUZZ_DISK_MAX_BYTES / 512 + 1)) * 512;
	info.logical_block = dflags & 0x10 ? 4096 : 512;
	info.physical_block = dflags & 0x20 ? 4096 : info.logical_block;
	info.flags = dflags & 0xf;
	limits = fz_u8(&in);
	info.max_discard_sectors = limits & 0xf;
	info.max_write_zeroes_sectors = limits >> 4;
	info.discard_granularity = dflags & 0x40 ? 8192 : 0;
	dev = fz_u8(&in);
	params.num_queues = 1 + (dev & 3);
	params.queue_size_max = 2u << ((dev >> 2) & 7); /* 2..256 */
	params.read_only = dev & 0x20;
	features = fz_u64(&in);
	fz_bytes(&in, params.serial, 20);
	params.serial[20] = '\0';

	fg_init(&g, hv, dev & 0x40, reg, NULL);
	gm = vp_gmem_new(hv, 7, dev & 0x40 ? VP_ADDR_GRANT : VP_ADDR_GFN,
	                 dev & 0x80 ? 2u << 20 : 0);
	if (!gm)
		abort();
	if ((dev & 0xc0) == 0xc0)
		vp_gmem_set_grant_cache(gm, 32);
	host = (struct vp_vdev_host){.dom = 7,
	                             .devid = 0,
	                             .gm = gm,
	                             .raise_irq = host_irq,
	                             .broken = host_broken};
	disk = fuzz_disk_open(&info);
	/* dflags bit 7: a first-version plugin, without cancel(). */
	d = vp_blk_create(&params,
	                  dflags & 0x80 ? &fuzz_disk_plugin_v1 : &fuzz_disk_plugin, disk,
	                  &info, &host);
	if (!d)
		abort();
	g.opaque = d;
	fg_setup(&g, features, params.num_queues, params.queue_size_max);

	fuzz_disk_expect_pattern(&g.tainted);
	while (fz_more(&in)) {
		uint8_t op = fz_u8(&in);


		switch (op % 12) {
		case 0:
		case 1: fg_request(&g, &in); break;
		case 2: fg_write(&g, VIRTIO_MMIO_QUEUE_NOTIFY, fz_u8(&in) % 5); break;
		case 3: {
			unsigned n = fz_u8(&in), pick = fz_u8(&in);

			fuzz_disk_complete(n, pick, fz_u8(&in) & 1 ? -5 : 0);
			break;
		}
		case 4: {
			uint8_t m = fz_u8(&in);
			struct fuzz_disk_mode mode = {.deferred = m & 1,
			                              .submit_ret = m & 2 ? -12 : 0,
			                              .status = m & 4 ? -95 : 0,
			                              .poll_ready = (m >> 3) & 3};

			fuzz_disk_set_mode(&mode);
			break;
		}
		case 5: fg_harvest(&g); break;
		case 6: {
			/* Any register, any value. */
			uint16_t off = fz_u16(&in) & 0xfff;
			uint8_t sz = fz_u8(&in);
			uint64_t v = fz_u64(&in);

			if (sz & 0x80) {
				vp_vdev_mmio_read(d, off, 1u << (sz & 3), &v);
			} else {
				/* The driver touching the device again (setting
				 * it up, even out of order) lifts the freeze. */
				thaw();
				vp_vdev_mmio_write(d, off, 1u << (sz & 3), v);
			}
			break;
		}
		case 7:
			/* Reset and set up again, maybe with other features. */
			thaw();
			fg_setup(&g, fz_u64(&in), params.num_queues,
			         2u << (fz_u8(&in) % 8));
			break;
		case 8: {
			/* The guest scribbles on its buffers. */
			uint32_t at = FG_HEAP_START +
			              fz_u32(&in) % (RAM_PAGES * 4096 - FG_HEAP_START);

			fake_hv_ram(hv)[at] = fz_u8(&in);
			g.tainted = true;
			break;
		}
		case 9: vp_vdev_poll(d); break;
		case 10: reset_and_wait(&g, &in); break;
		case 11: vp_vdev_set_polled(d, fz_u8(&in) & 1); break;
		}
	}
	fg_harvest(&g);
	thaw();
	vp_vdev_destroy(d, on_done, &done);
	if (fuzz_disk_polling()) {
		fprintf(stderr, "fuzz_blk: destroyed in polled mode, poll_end() missing\n");
		abort();
	}
	fuzz_disk_complete(~0u, 0, 0);
	if (!done) {
		fprintf(stderr, "fuzz_blk: device not freed after its last request\n");
		abort();
	}
	vp_gmem_free(gm);
	fake_hv_check_released(hv);
	return 0;
}
