/* SPDX-License-Identifier: MIT */
/* HDR-style latency histogram; see hist.h for the bucket layout.  One
 * histogram for every program that reports latency: the bench, its guest
 * and vproxy-guest. */
#include "hist.h"

#include <inttypes.h>
#include <string.h>

void hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min_ns = UINT64_MAX;
}

unsigned hist_bucket(uint64_t ns)
{
	unsigned e;

	if (ns < HIST_LINEAR)
		return (unsigned)ns;
	e = 63u - (unsigned)__builtin_clzll(ns); /* >= HIST_SUB_BITS + 1 */
	if (e - (HIST_SUB_BITS + 1) >= HIST_OCTAVES)
		return HIST_BUCKETS - 1;
	return HIST_LINEAR + (e - (HIST_SUB_BITS + 1)) * HIST_SUB +
	       (unsigned)((ns >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1));
}

uint64_t hist_bucket_max(unsigned b)
{
	unsigned e, m;

	if (b < HIST_LINEAR)
		return b;
	if (b >= HIST_BUCKETS)
		b = HIST_BUCKETS - 1;
	e = (b - HIST_LINEAR) / HIST_SUB + HIST_SUB_BITS + 1;
	m = (b - HIST_LINEAR) % HIST_SUB;
	/* bucket covers [(SUB + m) << (e - SUB_BITS), (SUB + m + 1) << ...) */
	return (((uint64_t)(HIST_SUB + m + 1)) << (e - HIST_SUB_BITS)) - 1;
}

void hist_add(struct hist *h, uint64_t ns)
{
	h->b[hist_bucket(ns)]++;
	h->count++;
	h->sum_ns += ns;
	if (ns < h->min_ns)
		h->min_ns = ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	if (!src->count)
		return;
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
	dst->count += src->count;
	dst->sum_ns += src->sum_ns;
	if (src->min_ns < dst->min_ns)
		dst->min_ns = src->min_ns;
	if (src->max_ns > dst->max_ns)
		dst->max_ns = src->max_ns;
}

uint64_t hist_percentile(const struct hist *h, double p)
{
	uint64_t want, seen = 0;

	if (!h->count)
		return 0;
	if (p <= 0)
		return h->min_ns;
	/* The sample of rank ceil(p * count), counting from 1. */
	want = (uint64_t)(p * (double)h->count + 0.999999);
	if (want < 1)
		want = 1;
	if (want > h->count)
		want = h->count;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= want) {
			uint64_t v = hist_bucket_max(i);

			return v > h->max_ns ? h->max_ns : v < h->min_ns ? h->min_ns : v;
		}
	}
	return h->max_ns;
}

double hist_mean(const struct hist *h)
{
	return h->count ? (double)h->sum_ns / (double)h->count : 0;
}

void hist_write(const struct hist *h, const char *tag, FILE *f)
{
	fprintf(f, "%s n %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", tag,
	        h->count, h->sum_ns, h->count ? h->min_ns : 0, h->max_ns);
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		if (h->b[i])
			fprintf(f, "%s b %u %" PRIu64 "\n", tag, i, h->b[i]);
}

int hist_parse_line(struct hist *h, const char *tag, const char *line)
{
	size_t tl = strlen(tag);
	uint64_t a, b, c, d;
	unsigned idx;

	if (strncmp(line, tag, tl) != 0 || line[tl] != ' ')
		return 0;
	line += tl + 1;
	if (sscanf(line, "n %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64, &a, &b, &c,
	           &d) == 4) {
		h->count = a;
		h->sum_ns = b;
		h->min_ns = a ? c : UINT64_MAX;
		h->max_ns = d;
		return 1;
	}
	if (sscanf(line, "b %u %" SCNu64, &idx, &a) == 2 && idx < HIST_BUCKETS) {
		h->b[idx] = a;
		return 1;
	}
	return -1;
}
