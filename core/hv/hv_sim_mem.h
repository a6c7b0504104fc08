/* SPDX-License-Identifier: MIT */
/*
 * Guest memory in the sim layer: guest frames and grant refs mapped for
 * the hv ops map_gfns and map_grants (a pointer into the guest's RAM
 * mapping, or a page-by-page mapping), unmapped, and each domain's RAM
 * and grant table mappings undone.  The RAM and grant table memfds come
 * with the HELLO reply (hv_sim_wire.c), which maps them whole.
 */
#ifndef VP_HV_SIM_MEM_H
#define VP_HV_SIM_MEM_H

#include "hv_sim.h"

#include <stdbool.h>
#include <stdint.h>

/* Undo d's grant table mapping and close its RAM memfd; unmap its RAM
 * too unless keep_ram (direct pointers into it are still out). */
void vp_sim_dom_unmap(struct sim_dom *d, bool keep_ram);
/* hv->ops->map_gfns; the caller unmaps with vp_sim_unmap. */
void *vp_sim_map_gfns(struct vp_hv *hv, uint16_t dom, const uint64_t *gfns, unsigned n,
		      int writable);
/* hv->ops->map_grants; the caller unmaps with vp_sim_unmap. */
void *vp_sim_map_grants(struct vp_hv *hv, uint16_t dom, const uint32_t *refs,
			unsigned n, int writable);
/* hv->ops->unmap_gfns and unmap_grants.  0 or -EINVAL. */
int vp_sim_unmap(struct vp_hv *hv, void *addr, unsigned n);

#endif
