/* SPDX-License-Identifier: MIT */
/*
 * A latency histogram in the HDR style: nanosecond values, exact below
 * 256 ns, above that 128 sub-buckets per power of two, so every recorded
 * value is known to within 1/128 (0.8 %) from 256 ns to about 18 minutes.
 * Histograms of several queues or guests merge by adding bucket counts,
 * so percentiles of a run come from every sample, never from averages.
 */
#ifndef VP_HIST_H
#define VP_HIST_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define HIST_SUB_BITS 7u
#define HIST_SUB (1u << HIST_SUB_BITS) /* sub-buckets per octave */
#define HIST_LINEAR (2u * HIST_SUB)    /* exact values below this */
#define HIST_OCTAVES 33u               /* 2^8 ns .. 2^41 ns */
#define HIST_BUCKETS (HIST_LINEAR + HIST_OCTAVES * HIST_SUB)

struct hist {
	uint64_t count;
	uint64_t sum_ns; /* for the exact mean */
	uint64_t min_ns, max_ns;
	uint64_t b[HIST_BUCKETS];
};

/* Empty h. */
void hist_init(struct hist *h);
/* Count one value. */
void hist_add(struct hist *h, uint64_t ns);
/* Add every sample of src to dst. */
void hist_merge(struct hist *dst, const struct hist *src);
/* The value below which a fraction p (0..1) of the samples lie: the upper
 * edge of the bucket holding that sample, never above the largest value
 * seen.  0 for an empty histogram. */
uint64_t hist_percentile(const struct hist *h, double p);
/* Mean in ns (0 when empty). */
double hist_mean(const struct hist *h);
/* Bucket index of a value, and the largest value a bucket holds. */
unsigned hist_bucket(uint64_t ns);
uint64_t hist_bucket_max(unsigned b);
/* Write h as text lines "<tag> n <count> <sum> <min> <max>" and
 * "<tag> b <bucket> <count>" (non-empty buckets only). */
void hist_write(const struct hist *h, const char *tag, FILE *f);
/* Parse one line written by hist_write() for tag into h: 1 if the line
 * was h's, 0 if it belongs to another tag, -1 if malformed. */
int hist_parse_line(struct hist *h, const char *tag, const char *line);

#endif
