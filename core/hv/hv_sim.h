/* SPDX-License-Identifier: MIT */
/*
 * The sim hypervisor layer's shared state: the handle, each guest
 * domain's record and the port table.  Three files work on it: hv_sim.c
 * (the ops table, the port table and the event channels), hv_sim_wire.c
 * (the connection to each guest and the conversation over it) and
 * hv_sim_mem.c (guest memory).  Internal to the layer: its users see
 * hv.h (vp_hv_sim_open) only.
 */
#ifndef VP_HV_SIM_H
#define VP_HV_SIM_H

#include "hv.h"

#include <vproxy/simwire.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <xen/xen.h>
#include <xen/grant_table.h>

#define SIM_TIMEOUT_MS VP_SIMWIRE_REPLY_TIMEOUT_MS
#define SIM_EVENT_BATCH 32
/* epoll_wait rounds per pending() call and messages read per socket
 * wake-up: a guest flooding us with notices cannot keep one call busy. */
#define SIM_PENDING_ROUNDS 4
#define SIM_NOTICES_PER_WAKE 64
#define SIM_MAX_PORTS 65536u
/* Requests sent to one guest and not yet answered. */
#define SIM_MAX_INFLIGHT 64u
/* epoll data: a kick eventfd's is its port (< 2^32); these are not. */
#define SIM_SOCK_TAG (1ull << 40) /* | domid: a guest socket */
#define SIM_TIMER_TAG (1ull << 41)
#define SIM_MAX_FDS 2

enum sim_dom_state {
	SIM_DOM_HELLO,   /* connected, HELLO sent, its reply not in yet */
	SIM_DOM_LIVE,    /* memory mapped */
	SIM_DOM_DEAD,    /* connection gone; memory stays mapped until forgotten */
	SIM_DOM_REFUSED, /* handshake failed; nothing mapped */
};

/* A request sent and not yet answered. */
struct sim_req {
	uint16_t type;        /* VP_SIMWIRE_HELLO or VP_SIMWIRE_BIND */
	uint32_t remote_port; /* BIND: the guest's port */
	int port;             /* BIND: our local port, -1 once unbound */
	uint64_t deadline;    /* now_ms() clock */
};

struct sim_dom {
	struct sim_dom *next;
	uint16_t domid;
	enum sim_dom_state state;
	int refuse_err;      /* REFUSED: positive errno returned to every caller */
	uint64_t refused_at; /* REFUSED: when, now_ms() clock */
	bool waited;         /* domain_ready() said -EINPROGRESS: call back */
	int sock;
	int ram_fd;
	uint8_t *ram;
	size_t ram_bytes;
	uint64_t ram_pages;
	const struct grant_entry_v1 *gnt;
	size_t gnt_bytes;
	uint32_t gnt_entries;
	/* Pointers into ram handed out and not yet unmapped: a forgotten
	 * domain keeps its RAM mapping until they are all returned. */
	unsigned direct_maps;
	/* Requests in the order sent: the guest answers in that order. */
	struct sim_req req[SIM_MAX_INFLIGHT];
	unsigned req_head, req_count;
};

enum sim_port_state {
	SIM_PORT_FREE,
	SIM_PORT_BINDING,   /* BIND sent, no reply yet: no descriptors */
	SIM_PORT_BOUND,
	SIM_PORT_DEAD,      /* guest closed it, refused it or went away */
	SIM_PORT_FORGOTTEN, /* its domain was forgotten; every call -ENOENT */
};

struct sim_port {
	enum sim_port_state state;
	uint16_t dom;
	uint32_t remote_port;
	bool notify_pending; /* BINDING: notified before the reply came */
	int kick_fd;         /* guest -> us, an eventfd; in the epoll set while BOUND */
	int irq_fd;          /* us -> guest, an AF_UNIX SOCK_DGRAM socket */
};

/* A page-by-page mapping (gfns not consecutive). */
struct sim_mapping {
	struct sim_mapping *next;
	void *addr;
	unsigned n;
};

struct sim_hv {
	struct vp_hv hv;
	char *run_dir;
	uint16_t self_domid;
	int epfd;
	int timer_fd;            /* request deadlines; in the epoll set */
	uint64_t timer_at;       /* when it fires (now_ms() clock), 0: disarmed */
	bool contacted;          /* some guest was sent our domid */
	struct sim_dom *doms;    /* every domain we have contacted */
	struct sim_dom *retired; /* forgotten, direct pointers still out */
	struct sim_port *ports;  /* index is the local port; 0 is never used */
	unsigned nports;
	struct sim_mapping *maps;
	struct epoll_event ev[SIM_EVENT_BATCH];
	int ev_count, ev_next; /* events fetched and not yet looked at */
};

/* The sim handle behind hv (which must be one). */
static inline struct sim_hv *vp_sim_of(struct vp_hv *hv)
{
	return (struct sim_hv *)hv;
}

/* Close a port's descriptors (a bound port's kick eventfd leaves the
 * epoll set) and drop a notify held for it; its state is the caller's. */
void vp_sim_port_close_fds(struct sim_hv *s, struct sim_port *p);
/* Raise an interrupt on a bound port, never waiting.  0 or -errno. */
int vp_sim_irq_send(struct sim_port *p);

#endif
