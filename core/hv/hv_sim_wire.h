/* SPDX-License-Identifier: MIT */
/*
 * The sim layer's wire client: one connection per guest domain (its
 * record is struct sim_dom, hv_sim.h) and the conversation over it
 * (vproxy/simwire.h): HELLO and the guest's memory, BIND and its
 * descriptors, UNBIND, the guest's notices, each request's deadline.
 * Nothing here waits for a guest.
 */
#ifndef VP_HV_SIM_WIRE_H
#define VP_HV_SIM_WIRE_H

#include "hv_sim.h"

#include <stdint.h>

/* Send BIND for the guest's port remote_port; no waiting.  0 or -errno
 * (-EAGAIN: the guest does not read its socket). */
int vp_sim_send_bind(int sock, uint32_t remote_port);
/* Tell the guest we closed our end of remote_port; no reply, no waiting. */
void vp_sim_send_unbind(int sock, uint32_t remote_port);
/* Queue a request just sent to d (BIND: with our local port) and arm its
 * deadline. */
void vp_sim_req_push(struct sim_hv *s, struct sim_dom *d, uint16_t type,
		     uint32_t remote_port, int port);
/* The record of dom if we have one, else NULL; never contacts anyone. */
struct sim_dom *vp_sim_dom_find(struct sim_hv *s, uint16_t dom);
/* The record of dom, contacting the guest on first use (or again after a
 * refusal); NULL + *err when it cannot be reached.  The handle owns it. */
struct sim_dom *vp_sim_dom_get(struct sim_hv *s, uint16_t dom, int *err);
/* 0 when d is connected, -EAGAIN during the handshake, else why not. */
int vp_sim_dom_err(const struct sim_dom *d);
/* The record of a connected domain, or NULL + *err. */
struct sim_dom *vp_sim_dom_live(struct sim_hv *s, uint16_t dom, int *err);
/* Tell the domain callback that d is settled (result), if it waits. */
void vp_sim_dom_settled(struct sim_hv *s, struct sim_dom *d, int result);
/* Close d's socket and drop its requests in flight (binding ports go
 * dead).  Returns how many ports died. */
unsigned vp_sim_dom_hang_up(struct sim_hv *s, struct sim_dom *d);
/* End d's connection (err, why logged): its ports go dead, or it is
 * refused during the handshake. */
void vp_sim_dom_kill(struct sim_hv *s, struct sim_dom *d, int err, const char *why);
/* The socket of dom is readable: take its replies and notices. */
void vp_sim_dom_readable(struct sim_hv *s, uint16_t dom);
/* The request timer fired: end every connection whose oldest request is
 * overdue. */
void vp_sim_timer_expired(struct sim_hv *s);

#endif
