/* SPDX-License-Identifier: MIT */
/*
 * The control file shared by vproxy-bench and its guest processes: a file
 * in the run's work directory, mapped MAP_SHARED by both.  The driver
 * creates it; each guest writes only its own slot.  All fields are
 * accessed with atomic loads and stores; times are CLOCK_MONOTONIC
 * nanoseconds, which all processes of a host share.
 */
#ifndef BENCH_CTL_H
#define BENCH_CTL_H

#include <stdint.h>

#define BENCH_CTL_MAGIC 0x4c544342u /* "BCTL" */
#define BENCH_CTL_VERSION 1u

enum bench_guest_state {
	BG_STARTING = 0, /* process started, attaching */
	BG_ATTACHED,     /* device open; preparing (prefill) */
	BG_READY,        /* waiting for go_ns */
	BG_RUNNING,      /* workload running */
	BG_DONE,         /* result file written, detaching or gone */
	BG_FAILED,       /* gave up; reason in its log */
};

struct bench_ctl_hdr {
	uint32_t magic;   /* driver: BENCH_CTL_MAGIC */
	uint32_t version; /* driver: BENCH_CTL_VERSION */
	uint32_t nguests; /* driver: slots that follow */
	uint32_t pad;
	uint64_t go_ns; /* driver: 0 until every guest is READY; then the
	                 * time the workload starts (ramp first) */
	uint64_t abort; /* driver: nonzero tells guests to stop at once */
	uint8_t reserved[32];
};

/* One guest's slot, 64 bytes so guests never share a cache line. */
struct bench_ctl_guest {
	uint64_t state;       /* guest: enum bench_guest_state */
	uint64_t attached_ns; /* guest: when its device was usable */
	uint64_t ios;         /* guest: I/Os completed so far (progress) */
	uint64_t bytes;       /* guest: bytes moved so far */
	uint64_t pad[4];
};

_Static_assert(sizeof(struct bench_ctl_hdr) == 64, "ctl header size");
_Static_assert(sizeof(struct bench_ctl_guest) == 64, "ctl slot size");

/* Bytes of a control file for n guests. */
static inline uint64_t bench_ctl_bytes(uint32_t n)
{
	return sizeof(struct bench_ctl_hdr) +
	       (uint64_t)n * sizeof(struct bench_ctl_guest);
}

#endif
