/* SPDX-License-Identifier: MIT */
/*
 * Sim rendezvous wire format: how a backend's "sim" hypervisor layer
 * (core/hv/hv_sim_wire.c) and a simulated guest (proxy-stub/linux/simguest.c)
 * hand each other guest memory and event channels.
 *
 * Transport: a unix SOCK_SEQPACKET socket at <run_dir>/dom<domid>.sock;
 * the guest listens, each backend domain connects once.  Every message is
 * one record of a fixed size: backend -> guest records are
 * VP_SIMWIRE_B2G_SIZE bytes, guest -> backend records VP_SIMWIRE_G2B_SIZE
 * bytes; a record of any other size is a protocol error and ends the
 * connection.  All integers are little-endian.  File descriptors travel as
 * SCM_RIGHTS ancillary data attached to the reply that names them, and
 * only to a reply whose status is 0.
 *
 * Conversation:
 *   backend: HELLO           guest: HELLO_REPLY (+ RAM memfd, grant memfd)
 *   backend: BIND port       guest: BIND_REPLY  (+ kick eventfd, irq socket)
 *   backend: UNBIND port     (no reply)
 *   guest:   PORT_CLOSED port, unsolicited, whenever the guest closes a
 *            port this connection has bound; it may come at any time,
 *            between replies.
 *
 * Asynchronous rules (version 2).  The backend never waits for the guest:
 *  - it may send a request before the previous one is answered (it sends
 *    HELLO at once and BINDs as devices connect); the guest answers the
 *    requests of a connection one by one, in the order it received them,
 *    and a reply names the port of its request;
 *  - it reads replies only when the socket is readable, a whole record at
 *    a time (SOCK_SEQPACKET: half a record cannot exist), and sends with
 *    MSG_DONTWAIT: a guest that stops reading its socket until the
 *    backend's send buffer is full loses the connection;
 *  - deadlines: each request must be answered within
 *    VP_SIMWIRE_REPLY_TIMEOUT_MS of being sent.  A guest that leaves HELLO
 *    unanswered (or answers it wrongly) is refused; one that leaves a BIND
 *    unanswered, answers out of order or sends a malformed record loses its
 *    connection: every port bound on it goes dead.  A BIND the guest
 *    refuses (status < 0, no descriptors) makes only that port dead.
 *  - until its BIND_REPLY is in, the backend's port is "binding": the
 *    backend remembers a notify made meanwhile and delivers it when the
 *    reply arrives.
 *
 * Event channels.  Each bound port has two descriptors, both created by
 * the guest, and each used so that nothing the guest does to them (it
 * shares their open file descriptions: O_NONBLOCK, socket options, filling
 * or draining them) can make the backend block:
 *  - the kick eventfd: the guest writes 8-byte counts to kick the
 *    backend; the backend reads it only with preadv2(RWF_NOWAIT), which
 *    fails with EAGAIN on a zero counter whatever O_NONBLOCK says;
 *  - the irq socket: the guest keeps one end of an AF_UNIX SOCK_DGRAM
 *    socketpair and sends the other; the backend sends an 8-byte
 *    datagram (a little-endian 1; the guest must not rely on the value)
 *    with MSG_DONTWAIT per interrupt, and sends none while the previous
 *    one is still unread (an event channel's pending bit: interrupts
 *    coalesce).  EAGAIN means an event is already pending.  The guest
 *    reads datagrams until EAGAIN to acknowledge.
 * (eventfd writes ignore RWF_NOWAIT and an eventfd cannot be reopened
 * with a private file description, so an eventfd cannot carry
 * interrupts safely; a socket send's MSG_DONTWAIT is per call.)
 *
 * Recovery.  A refused guest is contacted again when a device next asks
 * for it at least VP_SIMWIRE_RETRY_MS after the refusal: to recover, the
 * guest fixes itself (listens again, answers in time), then restarts its
 * device's xenbus handshake (frontend state Closed, Initialising, then
 * Initialised), which makes the backend ask again.  A connection lost
 * after HELLO is remembered until the backend forgets the domain, once
 * none of the domain's devices holds a connection (the guest closes every
 * device, or the domain is destroyed); the next device to connect then
 * contacts the guest afresh.
 *
 * Trust: the guest is untrusted.  The backend checks every field, every
 * descriptor's type and every memfd's seals and size.
 */
#ifndef VPROXY_SIMWIRE_H
#define VPROXY_SIMWIRE_H

#include <stdint.h>

#define VP_SIMWIRE_MAGIC 0x57535056u /* "VPSW" read as little-endian bytes */
#define VP_SIMWIRE_VERSION 2u

#define VP_SIMWIRE_PAGE_SIZE 4096u
/* Largest guest RAM a backend accepts (64 GiB). */
#define VP_SIMWIRE_MAX_RAM_BYTES (1ull << 36)
/* Largest grant table a backend accepts, in entries. */
#define VP_SIMWIRE_MAX_GRANT_ENTRIES (1u << 20)

/* How long a guest has to answer each request. */
#define VP_SIMWIRE_REPLY_TIMEOUT_MS 2000u
/* A refused guest is contacted again only this long after the refusal. */
#define VP_SIMWIRE_RETRY_MS 1000u
/* Size of an interrupt datagram on the irq socket. */
#define VP_SIMWIRE_IRQ_SIZE 8u

#define VP_SIMWIRE_B2G_SIZE 16u
#define VP_SIMWIRE_G2B_SIZE 32u

enum vp_simwire_type {
	/* backend -> guest */
	VP_SIMWIRE_HELLO = 0x01,
	VP_SIMWIRE_BIND = 0x02,
	VP_SIMWIRE_UNBIND = 0x03,
	/* guest -> backend */
	VP_SIMWIRE_HELLO_REPLY = 0x81,
	VP_SIMWIRE_BIND_REPLY = 0x82,
	VP_SIMWIRE_PORT_CLOSED = 0x90,
};

/* Starts every message. */
struct vp_simwire_hdr {
	uint32_t magic;   /* sender: VP_SIMWIRE_MAGIC */
	uint16_t type;    /* sender: enum vp_simwire_type */
	uint16_t version; /* sender: VP_SIMWIRE_VERSION */
};

/* backend -> guest: first message on a connection. */
struct vp_simwire_hello {
	struct vp_simwire_hdr hdr; /* type VP_SIMWIRE_HELLO */
	uint16_t backend_domid;    /* backend: the domain it is; ports and grants
				    * for that domain become usable */
	uint16_t pad0;             /* backend: 0 */
	uint32_t pad1;             /* backend: 0 */
};

/* guest -> backend: answer to HELLO.  With status 0 it carries two fds:
 * [0] the RAM memfd (ram_bytes long, sealed F_SEAL_SHRINK|F_SEAL_GROW|
 * F_SEAL_SEAL) and [1] the grant table memfd (vp_simwire_grant_table_bytes
 * (grant_entries) long, same seals) of struct grant_entry_v1. */
struct vp_simwire_hello_reply {
	struct vp_simwire_hdr hdr; /* type VP_SIMWIRE_HELLO_REPLY */
	int32_t status;            /* guest: 0, or -EPROTONOSUPPORT (version),
				    * -EALREADY (second HELLO) */
	uint32_t page_size;        /* guest: VP_SIMWIRE_PAGE_SIZE */
	uint64_t ram_bytes;        /* guest: RAM size, a multiple of page_size */
	uint32_t grant_entries;    /* guest: entries in the grant table */
	uint16_t guest_domid;      /* guest: its own domid */
	uint16_t pad;              /* guest: 0 */
};

/* backend -> guest: bind an event channel port the guest allocated for
 * this backend's domain. */
struct vp_simwire_bind {
	struct vp_simwire_hdr hdr; /* type VP_SIMWIRE_BIND */
	uint32_t port;             /* backend: the guest's port */
	uint32_t pad;              /* backend: 0 */
};

/* guest -> backend: answer to BIND.  With status 0 it carries two fds:
 * [0] the kick eventfd (guest writes, backend reads with RWF_NOWAIT) and
 * [1] the irq socket: one end of an AF_UNIX SOCK_DGRAM socketpair whose
 * other end the guest keeps (backend sends, guest reads). */
struct vp_simwire_bind_reply {
	struct vp_simwire_hdr hdr; /* type VP_SIMWIRE_BIND_REPLY */
	int32_t status;            /* guest: 0, -EPERM (no HELLO yet, or port
				    * allocated for another domain), -ENOENT (no
				    * such port), -EBUSY (bound elsewhere) */
	uint32_t port;             /* guest: the port of the request */
	uint8_t pad[16];           /* guest: 0 */
};

/* backend -> guest: the backend closed its end of port; the guest may
 * let the same backend domain bind it again.  No reply. */
struct vp_simwire_unbind {
	struct vp_simwire_hdr hdr; /* type VP_SIMWIRE_UNBIND */
	uint32_t port;             /* backend: the guest's port */
	uint32_t pad;              /* backend: 0 */
};

/* guest -> backend, unsolicited: the guest closed port, which this
 * connection had bound; the backend's local port is dead from now on. */
struct vp_simwire_port_closed {
	struct vp_simwire_hdr hdr; /* type VP_SIMWIRE_PORT_CLOSED */
	uint32_t port;             /* guest: the closed port */
	uint8_t pad[20];           /* guest: 0 */
};

/* Any backend -> guest message, for receiving. */
union vp_simwire_b2g {
	struct vp_simwire_hdr hdr;
	struct vp_simwire_hello hello;
	struct vp_simwire_bind bind;
	struct vp_simwire_unbind unbind;
	uint8_t bytes[VP_SIMWIRE_B2G_SIZE];
};

/* Any guest -> backend message, for receiving. */
union vp_simwire_g2b {
	struct vp_simwire_hdr hdr;
	struct vp_simwire_hello_reply hello_reply;
	struct vp_simwire_bind_reply bind_reply;
	struct vp_simwire_port_closed port_closed;
	uint8_t bytes[VP_SIMWIRE_G2B_SIZE];
};

_Static_assert(sizeof(struct vp_simwire_hello) == VP_SIMWIRE_B2G_SIZE, "hello size");
_Static_assert(sizeof(struct vp_simwire_bind) == VP_SIMWIRE_B2G_SIZE, "bind size");
_Static_assert(sizeof(struct vp_simwire_unbind) == VP_SIMWIRE_B2G_SIZE, "unbind size");
_Static_assert(sizeof(union vp_simwire_b2g) == VP_SIMWIRE_B2G_SIZE, "b2g size");
_Static_assert(sizeof(struct vp_simwire_hello_reply) == VP_SIMWIRE_G2B_SIZE,
	       "hello reply size");
_Static_assert(sizeof(struct vp_simwire_bind_reply) == VP_SIMWIRE_G2B_SIZE,
	       "bind reply size");
_Static_assert(sizeof(struct vp_simwire_port_closed) == VP_SIMWIRE_G2B_SIZE,
	       "port closed size");
_Static_assert(sizeof(union vp_simwire_g2b) == VP_SIMWIRE_G2B_SIZE, "g2b size");

/* Size of the grant table memfd for entries grant entries: 8 bytes each,
 * rounded up to whole pages, at least one page. */
static inline uint64_t vp_simwire_grant_table_bytes(uint32_t entries)
{
	uint64_t bytes = (uint64_t)entries * 8u;

	if (bytes == 0)
		bytes = 1;
	return (bytes + VP_SIMWIRE_PAGE_SIZE - 1) / VP_SIMWIRE_PAGE_SIZE *
	       VP_SIMWIRE_PAGE_SIZE;
}

#endif
