/* SPDX-License-Identifier: MIT */
/*
 * A hypervisor layer for fuzzing (struct vp_hv_ops): one guest whose RAM is
 * a memfd, mapped for the backend page by page between PROT_NONE guard
 * pages, read-only unless the backend asked for write access and (grant
 * mode) the guest granted write.  So a read or write outside what the
 * guest offered faults at once instead of landing in some other buffer.
 * Every mapping is recorded; fake_hv_check_released() aborts if any is
 * left, and an unmap of something never mapped (or with the wrong page
 * count) aborts too.
 */
#ifndef VP_FUZZ_FAKE_HV_H
#define VP_FUZZ_FAKE_HV_H

#include <stdbool.h>
#include <stdint.h>

#include "hv.h"

#define FAKE_HV_MAX_GRANTS 256u

/* The layer with pages of guest RAM (zeroed, all present, no grants).
 * One per process; never freed. */
struct vp_hv *fake_hv_new(unsigned pages);
/* The guest's own read-write view of its RAM (pages * 4096 bytes). */
uint8_t *fake_hv_ram(struct vp_hv *hv);
/* Pages of guest RAM. */
unsigned fake_hv_pages(struct vp_hv *hv);
/* Between inputs: RAM zeroed, every page present, grant table empty,
 * counters cleared.  Aborts if a mapping or a bound port is left. */
void fake_hv_reset(struct vp_hv *hv);
/* Make gfn absent (a hole the hypervisor refuses to map). */
void fake_hv_set_hole(struct vp_hv *hv, uint64_t gfn);
/* Grant ref (< FAKE_HV_MAX_GRANTS) to the backend: page gfn, writable or
 * read-only. */
void fake_hv_grant(struct vp_hv *hv, uint32_t ref, uint64_t gfn, bool writable);
/* Abort with a list of the mappings and ports still held. */
void fake_hv_check_released(struct vp_hv *hv);
/* Mappings currently held. */
unsigned fake_hv_live_mappings(struct vp_hv *hv);
/* While on, every mapping (those held and those made) is read-only: the
 * backend must not write guest memory (after a reset, say). */
void fake_hv_freeze(struct vp_hv *hv, bool on);
/* The guest notifies local port: the event channel fd becomes readable
 * and pending() returns the port. */
void fake_hv_kick(struct vp_hv *hv, int port);
/* Event channel notifications the backend sent since the last reset. */
unsigned fake_hv_notifies(struct vp_hv *hv);

#endif
