/* SPDX-License-Identifier: MIT */
/*
 * An in-harness storage plugin for fuzzing the block device: a RAM disk
 * that checks every request the device hands it against what the device
 * promised (in range, lengths adding up, only advertised operations, no
 * writes to a read-only disk, each request in flight once) and aborts on
 * a violation.  It completes inline, later (fuzz_disk_complete), or fails,
 * as the harness sets it.
 */
#ifndef VP_FUZZ_DISK_H
#define VP_FUZZ_DISK_H

#include <stdbool.h>
#include <stdint.h>
#include <vproxy/plugin.h>

#define FUZZ_DISK_MAX_BYTES (1u << 20)

struct fuzz_disk_mode {
	bool deferred;  /* hold requests until fuzz_disk_complete() */
	int submit_ret; /* non-zero: submit() refuses with it */
	int status;     /* completion status (0 or a negative errno) */
	unsigned poll_ready; /* held requests each poll() completes */
};

/* The plugin table (submit, cancel, poll and poll_end; the harness
 * opens the disk itself).  poll_end() without a poll() before it aborts.  cancel() marks a held request: fuzz_disk_complete() then ends
 * it with -ECANCELED, untouched, as the plugin ABI allows. */
extern const struct vproxy_plugin fuzz_disk_plugin;
/* The same as a first-version plugin: no cancel(), no polling. */
extern const struct vproxy_plugin fuzz_disk_plugin_v1;

/* Start a new disk of info->capacity bytes (<= FUZZ_DISK_MAX_BYTES);
 * aborts if a request of the previous one is still pending.  Returns the
 * disk handle for vp_blk_create(). */
void *fuzz_disk_open(const struct vproxy_disk_info *info);
/* How the next requests are served. */
void fuzz_disk_set_mode(const struct fuzz_disk_mode *mode);
/* Complete up to n held requests, the one at index pick (mod pending)
 * first; returns how many were completed. */
unsigned fuzz_disk_complete(unsigned n, unsigned pick, int status);
/* Check that every write carries the data fuzz_guest.c put in its
 * buffers (byte i of a write at sector s is (uint8_t)(i * 7 + s)): a
 * mapping of the wrong guest page shows.  Off (NULL) by default, and
 * off once *tainted is true: the guest did something that legitimately
 * changes that data.  Read at each request, since a request can taint
 * the guest and be served before the harness looks again. */
void fuzz_disk_expect_pattern(const bool *tainted);
/* Between a poll() and its poll_end()? */
bool fuzz_disk_polling(void);
/* Requests held. */
unsigned fuzz_disk_pending(void);

#endif
