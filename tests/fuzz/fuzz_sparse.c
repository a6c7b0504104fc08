/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the sparse image format code (plugins/sparse/sparse_format.c):
 * open (header decode, geometry), scan (every map entry, clusters
 * referenced twice), leak counting and repair, on an image file built from
 * the input (fuzz_sparse.h).  Beyond ASan/UBSan: a clean scan must agree
 * with a plain read of the whole map (it skips the map's holes); a repair
 * must leave an image that opens, scans clean and has no leak left, with
 * the data of every referenced cluster unchanged; and a layout made from
 * the input's size and cluster size must survive encode and decode.
 *
 * Input: flags u8 (bit 0 keep the checksum, bit 1 repair), hole pages
 * u16, then the file.  The last 9 bytes also give a layout to round-trip.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_sparse.h"
#include "sparse_format.h"

#define FLAG_REPAIR 0x02u
#define MAX_CHECKED (1u << 16) /* map entries whose data is compared */

static int fd = -1;

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_sparse: %s\n", what);
	abort();
}

/* Read map entry vc straight from the file (as the format document says:
 * 64-bit little-endian at map_offset + 8 * vc). */
static uint64_t entry_at(const struct sparse_image *img, uint64_t vc)
{
	uint8_t b[8];
	uint64_t e = 0;

	if (pread(fd, b, 8, (off_t)(img->h.map_offset + 8 * vc)) != 8)
		return 0;
	for (int i = 7; i >= 0; i--)
		e = e << 8 | b[i];
	return e;
}

/* A checksum of every referenced cluster's data, map order. */
static uint64_t referenced_data_sum(const struct sparse_image *img)
{
	uint64_t sum = 0,
	         n = img->h.map_entries < MAX_CHECKED ? img->h.map_entries : MAX_CHECKED;
	uint8_t *buf = malloc(img->cluster_size);

	if (!buf)
		fail("out of memory");
	for (uint64_t vc = 0; vc < n; vc++) {
		uint64_t e = entry_at(img, vc);
		ssize_t got;

		if (!e || sparse_entry_problem(img, e, img->file_size))
			continue;
		got = pread(fd, buf, img->cluster_size, (off_t)e);
		for (ssize_t i = 0; i < got; i++)
			sum = sum * 131 + buf[i] + vc;
	}
	free(buf);
	return sum;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* A clean scan, checked against a plain read of the whole map: every
 * non-zero entry valid, none used twice, as many as scan counted (the
 * scan skips the map's holes; this shows if it skips an entry). */
static void check_clean_scan(const struct sparse_image *img, const struct sparse_scan *s)
{
	uint64_t n = img->h.map_entries, count = 0;
	uint64_t *seen;

	if (n > MAX_CHECKED)
		return;
	seen = calloc(n, sizeof(*seen));
	if (!seen)
		fail("out of memory");
	for (uint64_t vc = 0; vc < n; vc++) {
		uint64_t e = entry_at(img, vc);

		if (!e)
			continue;
		if (sparse_entry_problem(img, e, img->file_size))
			fail("scan says clean but an entry is invalid");
		seen[count++] = e;
	}
	qsort(seen, count, sizeof(*seen), cmp_u64);
	for (uint64_t k = 1; k < count; k++)
		if (seen[k] == seen[k - 1])
			fail("scan says clean but a cluster is used twice");
	free(seen);
	if (count != s->allocated)
		fail("scan counted another number of allocated clusters");
}

static void check_layout(const uint8_t *data, size_t size)
{
	struct sparse_header h, back;
	uint8_t enc[SPARSE_HEADER_SIZE];
	uint64_t vsize = 0;
	char why[256];

	if (size < 9)
		return;
	data += size - 9;
	for (int i = 7; i >= 0; i--)
		vsize = vsize << 8 | data[i];
	if (sparse_layout(vsize % (SPARSE_MAX_VIRTUAL + 1024), 1ull << (data[8] % 24), &h,
	                  why, sizeof(why)) < 0)
		return;
	sparse_header_encode(&h, enc);
	if (sparse_header_decode(enc, sizeof(enc), &back, why, sizeof(why)) < 0)
		fail("a layout that sparse_layout accepted does not decode");
	if (memcmp(&h, &back, sizeof(h)) != 0)
		fail("a layout changed through encode and decode");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sparse_image img;
	struct sparse_scan scan;
	uint64_t leaked, tail, freed, before;
	char why[300];
	int flags, r;

	if (fd < 0) {
		fd = memfd_create("fuzz-sparse.img", MFD_CLOEXEC);
		if (fd < 0)
			abort();
	}
	check_layout(data, size);
	flags = fuzz_sparse_build(fd, data, size);
	if (flags < 0)
		fail("cannot write the image");
	if (sparse_open(&img, fd, why, sizeof(why)) < 0)
		return 0;
	r = sparse_scan(&img, &scan);
	if (r != 0) {
		if (r > 0 && scan.problems == 0)
			fail("scan says corrupt but counts no problem");
		if (r > 0)
			sparse_scan_free(&scan);
		sparse_close(&img);
		return 0;
	}
	if (scan.allocated > img.h.map_entries)
		fail("more clusters allocated than map entries");
	check_clean_scan(&img, &scan);
	if (sparse_count_leaks(&img, &scan, &leaked, &tail) < 0 ||
	    !(flags & FLAG_REPAIR) || (!leaked && !tail)) {
		sparse_scan_free(&scan);
		sparse_close(&img);
		return 0;
	}
	before = referenced_data_sum(&img);
	if (sparse_repair(&img, &scan, &freed, why, sizeof(why)) < 0)
		fail(why);
	sparse_scan_free(&scan);
	sparse_close(&img);

	/* The repaired image: opens, scans clean, nothing leaked, same data. */
	if (sparse_open(&img, fd, why, sizeof(why)) < 0)
		fail("the repaired image does not open");
	if (sparse_scan(&img, &scan) != 0)
		fail("the repaired image does not scan clean");
	if (sparse_count_leaks(&img, &scan, &leaked, &tail) < 0 || leaked || tail)
		fail("the repaired image still leaks");
	if (referenced_data_sum(&img) != before)
		fail("repair changed the data of a referenced cluster");
	sparse_scan_free(&scan);
	sparse_close(&img);
	return 0;
}
