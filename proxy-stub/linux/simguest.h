/* SPDX-License-Identifier: MIT */
/*
 * The guest's view of the simulated hypervisor (Linux userspace, sim host).
 *
 * A simulated guest is a process that owns:
 *  - its "RAM": a memfd sealed against shrinking (F_SEAL_SHRINK|F_SEAL_SEAL)
 *    so a backend that maps it can never take SIGBUS; guest frame number
 *    (gfn) G is bytes [G*4096, G*4096+4096) of it;
 *  - a grant table: a second sealed memfd of struct grant_entry_v1
 *    (xen/grant_table.h) entries the guest fills to grant frames;
 *  - event channels: each port a kick eventfd (guest -> backend) and an
 *    AF_UNIX datagram socketpair for interrupts (backend -> guest: it
 *    gets one end, the guest reads the other).
 * It listens on <run_dir>/dom<domid>.sock (a unix SOCK_SEQPACKET socket)
 * from a small thread; the backend's "sim" hv layer (core/hv/hv_sim_wire.c)
 * connects and receives the memfds, eventfds and sockets with SCM_RIGHTS.
 * The messages are in include/vproxy/simwire.h.
 */
#ifndef VPROXY_SIMGUEST_H
#define VPROXY_SIMGUEST_H

#include <stddef.h>
#include <stdint.h>

struct simguest;

/* Create a simulated guest with ram_bytes of RAM (rounded up to pages)
 * and max_grants grant entries; start listening on
 * <run_dir>/dom<domid>.sock (replacing a stale socket).  NULL + errno. */
struct simguest *simguest_create(const char *run_dir, uint16_t domid,
				 size_t ram_bytes, unsigned max_grants);
/* Stop the listener, close every port, unmap and free everything. */
void simguest_destroy(struct simguest *sg);
/* Base of guest RAM in this process and its size in bytes. */
void *simguest_ram(struct simguest *sg, size_t *len);
/* The guest's domid. */
uint16_t simguest_domid(const struct simguest *sg);

/* Grant n consecutive frames starting at first_gfn to backend domain be,
 * using n consecutive grant refs.  Returns the first ref (>= 8; refs 0-7
 * are reserved as in Xen) or a negative errno (-ENOSPC when full). */
int simguest_grant(struct simguest *sg, uint16_t be, uint64_t first_gfn,
		   unsigned n, int readonly);
/* Revoke n grants starting at ref. */
void simguest_ungrant(struct simguest *sg, int ref, unsigned n);

/* Allocate an unbound event channel port for backend domain be.
 * Returns the port (>= 1) or a negative errno. */
int simguest_evtchn_alloc(struct simguest *sg, uint16_t be);
/* Kick the backend on port. 0 or -errno. */
int simguest_evtchn_notify(struct simguest *sg, int port);
/* fd that becomes readable when the backend notifies port (the guest's
 * end of the irq socket); simguest_evtchn_clear() acknowledges. */
int simguest_evtchn_fd(struct simguest *sg, int port);
/* Acknowledge interrupts on an fd from simguest_evtchn_fd(): read its
 * datagrams until none is left.  How many were read, or -errno. */
int simguest_evtchn_clear(int fd);
/* Close the port (the backend sees its bound port go dead). */
void simguest_evtchn_close(struct simguest *sg, int port);

#endif
