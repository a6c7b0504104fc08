/* SPDX-License-Identifier: MIT */
/* The sparse image format: header, map, scan, check and repair. */
#include "sparse_format.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Header field offsets (docs/SPARSE-FORMAT.md). */
enum {
	OFF_MAGIC = 0,
	OFF_VERSION = 8,
	OFF_HEADER_SIZE = 12,
	OFF_VIRTUAL_SIZE = 16,
	OFF_CLUSTER_BITS = 24,
	OFF_INCOMPAT = 28,
	OFF_MAP_OFFSET = 32,
	OFF_MAP_ENTRIES = 40,
	OFF_DATA_OFFSET = 48,
	OFF_COMPAT = 56,
	OFF_CRC = 124,
};

uint32_t sparse_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
	}
	return ~crc;
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static void say(char *why, size_t whylen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (!why || !whylen)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

static uint64_t round_up(uint64_t v, uint64_t align)
{
	return (v + align - 1) / align * align;
}

/* The geometry rules shared by create and open. */
static int check_geometry(const struct sparse_header *h, char *why, size_t whylen)
{
	uint64_t cs, map_end;

	if (h->cluster_bits < SPARSE_MIN_CLUSTER_BITS ||
	    h->cluster_bits > SPARSE_MAX_CLUSTER_BITS) {
		say(why, whylen, "cluster size 2^%u is not between 4 KiB and 2 MiB",
		    h->cluster_bits);
		return -EINVAL;
	}
	cs = 1ull << h->cluster_bits;
	if (h->virtual_size == 0 || h->virtual_size % 512 ||
	    h->virtual_size > SPARSE_MAX_VIRTUAL) {
		say(why, whylen,
		    "virtual size %llu is not a multiple of 512 between 512 and 64 PiB",
		    (unsigned long long)h->virtual_size);
		return -EINVAL;
	}
	if (h->map_entries != (h->virtual_size + cs - 1) / cs) {
		say(why, whylen, "map has %llu entries; a %llu-byte disk needs %llu",
		    (unsigned long long)h->map_entries,
		    (unsigned long long)h->virtual_size,
		    (unsigned long long)((h->virtual_size + cs - 1) / cs));
		return -EINVAL;
	}
	if (h->map_offset < SPARSE_HEADER_SIZE || h->map_offset % SPARSE_ENTRY_SIZE ||
	    h->map_offset > SPARSE_MAX_VIRTUAL) {
		say(why, whylen, "map offset %llu is not valid",
		    (unsigned long long)h->map_offset);
		return -EINVAL;
	}
	map_end = h->map_offset + h->map_entries * SPARSE_ENTRY_SIZE;
	if (h->data_offset < map_end || h->data_offset % cs ||
	    h->data_offset > SPARSE_MAX_VIRTUAL) {
		say(why, whylen,
		    "data offset %llu overlaps the map or is not cluster-aligned",
		    (unsigned long long)h->data_offset);
		return -EINVAL;
	}
	return 0;
}

int sparse_layout(uint64_t virtual_size, uint64_t cluster_size, struct sparse_header *h,
                  char *why, size_t whylen)
{
	memset(h, 0, sizeof(*h));
	if (cluster_size == 0 || (cluster_size & (cluster_size - 1))) {
		say(why, whylen, "cluster size %llu is not a power of two",
		    (unsigned long long)cluster_size);
		return -EINVAL;
	}
	h->version = SPARSE_VERSION;
	h->virtual_size = virtual_size;
	h->cluster_bits = (uint32_t)__builtin_ctzll(cluster_size);
	if (virtual_size > SPARSE_MAX_VIRTUAL)
		return check_geometry(h, why, whylen);
	h->map_entries = (virtual_size + cluster_size - 1) / cluster_size;
	h->map_offset = SPARSE_HEADER_AREA;
	h->data_offset = round_up(h->map_offset + h->map_entries * SPARSE_ENTRY_SIZE,
	                          cluster_size);
	return check_geometry(h, why, whylen);
}

void sparse_header_encode(const struct sparse_header *h, uint8_t *out)
{
	memset(out, 0, SPARSE_HEADER_SIZE);
	memcpy(out + OFF_MAGIC, SPARSE_MAGIC, 8);
	put32(out + OFF_VERSION, h->version);
	put32(out + OFF_HEADER_SIZE, SPARSE_HEADER_SIZE);
	put64(out + OFF_VIRTUAL_SIZE, h->virtual_size);
	put32(out + OFF_CLUSTER_BITS, h->cluster_bits);
	put32(out + OFF_INCOMPAT, h->incompat_flags);
	put64(out + OFF_MAP_OFFSET, h->map_offset);
	put64(out + OFF_MAP_ENTRIES, h->map_entries);
	put64(out + OFF_DATA_OFFSET, h->data_offset);
	put32(out + OFF_COMPAT, h->compat_flags);
	put32(out + OFF_CRC, sparse_crc32c(0, out, OFF_CRC));
}

int sparse_header_decode(const uint8_t *buf, size_t len, struct sparse_header *h,
                         char *why, size_t whylen)
{
	uint32_t hsize, crc;

	memset(h, 0, sizeof(*h));
	if (len < 8 || memcmp(buf + OFF_MAGIC, SPARSE_MAGIC, 8) != 0) {
		say(why, whylen,
		    "not a vproxy sparse image (no \"%s\" magic at offset 0)",
		    SPARSE_MAGIC);
		return -EINVAL;
	}
	if (len < SPARSE_HEADER_SIZE) {
		say(why, whylen, "truncated: %zu bytes, shorter than the %u-byte header",
		    len, SPARSE_HEADER_SIZE);
		return -EINVAL;
	}
	h->version = get32(buf + OFF_VERSION);
	if (h->version != SPARSE_VERSION) {
		say(why, whylen,
		    "format version %u is not supported (this build reads %u)",
		    h->version, SPARSE_VERSION);
		return -ENOTSUP;
	}
	hsize = get32(buf + OFF_HEADER_SIZE);
	crc = get32(buf + OFF_CRC);
	if (hsize != SPARSE_HEADER_SIZE || crc != sparse_crc32c(0, buf, OFF_CRC)) {
		say(why, whylen,
		    "corrupt header: checksum mismatch (stored %08x, computed %08x)", crc,
		    sparse_crc32c(0, buf, OFF_CRC));
		return -EINVAL;
	}
	h->virtual_size = get64(buf + OFF_VIRTUAL_SIZE);
	h->cluster_bits = get32(buf + OFF_CLUSTER_BITS);
	h->incompat_flags = get32(buf + OFF_INCOMPAT);
	h->map_offset = get64(buf + OFF_MAP_OFFSET);
	h->map_entries = get64(buf + OFF_MAP_ENTRIES);
	h->data_offset = get64(buf + OFF_DATA_OFFSET);
	h->compat_flags = get32(buf + OFF_COMPAT);
	if (h->incompat_flags) {
		say(why, whylen,
		    "image uses features this build does not know (incompatible flags "
		    "%#x)",
		    h->incompat_flags);
		return -ENOTSUP;
	}
	if (check_geometry(h, why, whylen) < 0) {
		char inner[200];

		snprintf(inner, sizeof(inner), "%s", why ? why : "");
		say(why, whylen, "corrupt header: %s", inner);
		return -EINVAL;
	}
	return 0;
}

int sparse_create(const char *path, uint64_t virtual_size, uint64_t cluster_size,
                  bool overwrite, char *why, size_t whylen)
{
	struct sparse_header h;
	uint8_t area[SPARSE_HEADER_AREA] = {0};
	int fd, r;

	r = sparse_layout(virtual_size, cluster_size, &h, why, whylen);
	if (r < 0)
		return r;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | (overwrite ? O_TRUNC : O_EXCL),
	          0644);
	if (fd < 0) {
		r = -errno;
		say(why, whylen, "%s: %s", path, strerror(errno));
		return r;
	}
	sparse_header_encode(&h, area);
	/* The map is a hole: every entry reads 0, unallocated. */
	if (pwrite(fd, area, sizeof(area), 0) != (ssize_t)sizeof(area) ||
	    ftruncate(fd, (off_t)h.data_offset) < 0 || fsync(fd) < 0) {
		r = errno ? -errno : -EIO;
		say(why, whylen, "%s: %s", path, strerror(-r));
		close(fd);
		unlink(path);
		return r;
	}
	if (close(fd) < 0) {
		r = -errno;
		say(why, whylen, "%s: %s", path, strerror(errno));
		return r;
	}
	return 0;
}

int sparse_open(struct sparse_image *img, int fd, char *why, size_t whylen)
{
	uint8_t buf[SPARSE_HEADER_SIZE];
	struct stat st;
	ssize_t n;
	int r;

	memset(img, 0, sizeof(*img));
	img->fd = fd;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		say(why, whylen, "%s", strerror(errno));
		return r;
	}
	if (!S_ISREG(st.st_mode)) {
		say(why, whylen, "not a regular file");
		return -EINVAL;
	}
	n = pread(fd, buf, sizeof(buf), 0);
	if (n < 0) {
		r = -errno;
		say(why, whylen, "cannot read the header: %s", strerror(errno));
		return r;
	}
	r = sparse_header_decode(buf, (size_t)n, &img->h, why, whylen);
	if (r < 0)
		return r;
	img->cluster_size = 1ull << img->h.cluster_bits;
	img->file_size = (uint64_t)st.st_size;
	if (img->file_size < img->h.data_offset) {
		say(why, whylen,
		    "truncated: the file has %llu bytes, its map ends at %llu",
		    (unsigned long long)img->file_size,
		    (unsigned long long)img->h.data_offset);
		return -EINVAL;
	}
	return 0;
}

void sparse_close(struct sparse_image *img)
{
	img->fd = -1;
}

int sparse_map_read(const struct sparse_image *img, uint64_t vc, uint64_t n,
                    uint64_t *out)
{
	uint64_t off = img->h.map_offset + vc * SPARSE_ENTRY_SIZE;
	size_t len = (size_t)n * SPARSE_ENTRY_SIZE, done = 0;

	while (done < len) {
		ssize_t got = pread(img->fd, (char *)out + done, len - done,
		                    (off_t)(off + done));

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return -errno;
		if (got == 0)
			return -ENODATA; /* the file ends inside the map */
		done += (size_t)got;
	}
	for (uint64_t i = 0; i < n; i++)
		out[i] = le64toh(out[i]);
	return 0;
}

const char *sparse_entry_problem(const struct sparse_image *img, uint64_t entry,
                                 uint64_t file_size)
{
	if (entry & SPARSE_ENTRY_RESERVED)
		return "reserved bits set";
	if (entry % img->cluster_size)
		return "not cluster-aligned";
	if (entry < img->h.data_offset)
		return "points into the header or map";
	if (entry > file_size || file_size - entry < img->cluster_size)
		return "points beyond the end of the file";
	return NULL;
}

uint64_t sparse_entry_index(const struct sparse_image *img, uint64_t entry)
{
	return (entry - img->h.data_offset) >> img->h.cluster_bits;
}

uint64_t sparse_index_offset(const struct sparse_image *img, uint64_t i)
{
	return img->h.data_offset + (i << img->h.cluster_bits);
}

static void report(struct sparse_scan *s, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void report(struct sparse_scan *s, const char *fmt, ...)
{
	size_t used = strlen(s->report);
	va_list ap;

	s->problems++;
	if (s->problems > 10 || used + 2 >= sizeof(s->report))
		return;
	va_start(ap, fmt);
	vsnprintf(s->report + used, sizeof(s->report) - used - 1, fmt, ap);
	va_end(ap);
	used = strlen(s->report);
	s->report[used] = '\n';
	s->report[used + 1] = '\0';
}

/* Next [*start, *end) of data (not hole) in [from, limit); false at the
 * end.  File systems without SEEK_DATA report everything as data. */
static bool next_data(int fd, uint64_t from, uint64_t limit, uint64_t *start,
                      uint64_t *end)
{
	off_t d, h;

	if (from >= limit)
		return false;
	d = lseek(fd, (off_t)from, SEEK_DATA);
	if (d < 0) {
		if (errno == ENXIO)
			return false;
		*start = from;
		*end = limit;
		return true;
	}
	if ((uint64_t)d >= limit)
		return false;
	h = lseek(fd, d, SEEK_HOLE);
	*start = (uint64_t)d;
	*end = h < 0 || (uint64_t)h > limit ? limit : (uint64_t)h;
	return true;
}

#define WALK_CHUNK 4096u /* map entries read per pread */

int sparse_map_walk(const struct sparse_image *img,
                    int (*fn)(void *arg, uint64_t vc, uint64_t entry), void *arg)
{
	const struct sparse_header *h = &img->h;
	uint64_t map_end = h->map_offset + h->map_entries * SPARSE_ENTRY_SIZE;
	uint64_t pos = h->map_offset, start, end;
	uint64_t *buf = malloc(WALK_CHUNK * sizeof(*buf));
	int r = 0;

	if (!buf)
		return -ENOMEM;
	/* Only the parts of the map that hold data can hold entries. */
	while (r == 0 && next_data(img->fd, pos, map_end, &start, &end)) {
		uint64_t vc = (start - h->map_offset) / SPARSE_ENTRY_SIZE;
		uint64_t last =
		        (end - h->map_offset + SPARSE_ENTRY_SIZE - 1) / SPARSE_ENTRY_SIZE;

		if (last > h->map_entries)
			last = h->map_entries;
		while (r == 0 && vc < last) {
			uint64_t n = last - vc < WALK_CHUNK ? last - vc : WALK_CHUNK;

			r = sparse_map_read(img, vc, n, buf);
			for (uint64_t i = 0; r == 0 && i < n; i++)
				if (buf[i])
					r = fn(arg, vc + i, buf[i]);
			vc += n;
		}
		pos = last * SPARSE_ENTRY_SIZE + h->map_offset;
		if (end > pos)
			pos = end;
	}
	free(buf);
	return r;
}

struct scan_walk {
	const struct sparse_image *img;
	struct sparse_scan *s;
};

static int scan_entry(void *arg, uint64_t vc, uint64_t e)
{
	const struct sparse_image *img = ((struct scan_walk *)arg)->img;
	struct sparse_scan *s = ((struct scan_walk *)arg)->s;
	unsigned bits = img->h.cluster_bits;
	const char *bad = sparse_entry_problem(img, e, img->file_size);
	uint64_t i;

	if (bad) {
		report(s, "map entry %llu (virtual offset %llu): %#llx %s",
		       (unsigned long long)vc, (unsigned long long)(vc << bits),
		       (unsigned long long)e, bad);
		return 0;
	}
	i = sparse_entry_index(img, e);
	if (s->used[i / 8] & (1u << (i % 8))) {
		report(s,
		       "map entry %llu (virtual offset %llu): host offset %#llx is "
		       "used by another entry too",
		       (unsigned long long)vc, (unsigned long long)(vc << bits),
		       (unsigned long long)e);
		return 0;
	}
	s->used[i / 8] |= (uint8_t)(1u << (i % 8));
	s->allocated++;
	if (i + 1 > s->alloc_end)
		s->alloc_end = i + 1;
	return 0;
}

int sparse_scan(const struct sparse_image *img, struct sparse_scan *s)
{
	uint64_t data_bytes = img->file_size - img->h.data_offset;
	struct scan_walk w = {.img = img, .s = s};
	int r;

	memset(s, 0, sizeof(*s));
	s->host_clusters = (data_bytes + img->cluster_size - 1) >> img->h.cluster_bits;
	s->used = calloc(s->host_clusters / 8 + 1, 1);
	if (!s->used) {
		snprintf(s->report, sizeof(s->report),
		         "out of memory for %llu clusters\n",
		         (unsigned long long)s->host_clusters);
		return -ENOMEM;
	}
	r = sparse_map_walk(img, scan_entry, &w);
	if (r < 0) {
		snprintf(s->report, sizeof(s->report), "cannot read the map: %s\n",
		         strerror(-r));
		return r;
	}
	return s->problems ? 1 : 0;
}

void sparse_scan_free(struct sparse_scan *s)
{
	free(s->used);
	s->used = NULL;
}

static bool is_used(const struct sparse_scan *s, uint64_t i)
{
	return i < s->host_clusters && (s->used[i / 8] & (1u << (i % 8)));
}

/* Call fn for each run of unreferenced clusters that hold data. */
static int for_each_leak(const struct sparse_image *img, const struct sparse_scan *s,
                         int (*fn)(const struct sparse_image *, uint64_t first,
                                   uint64_t n, void *arg),
                         void *arg)
{
	uint64_t pos = img->h.data_offset, start, end, next = 0;

	while (next_data(img->fd, pos, img->file_size, &start, &end)) {
		uint64_t i = sparse_entry_index(
		        img, start - (start - img->h.data_offset) % img->cluster_size);
		uint64_t stop = (end - img->h.data_offset + img->cluster_size - 1) >>
		                img->h.cluster_bits;

		if (i < next)
			i = next;
		while (i < stop) {
			uint64_t run = 0;
			int r;

			while (i + run < stop && !is_used(s, i + run))
				run++;
			if (run) {
				r = fn(img, i, run, arg);
				if (r < 0)
					return r;
			}
			i += run;
			while (i < stop && is_used(s, i))
				i++;
		}
		next = stop;
		pos = end;
	}
	return 0;
}

static int count_run(const struct sparse_image *img, uint64_t first, uint64_t n,
                     void *arg)
{
	(void)img;
	(void)first;
	*(uint64_t *)arg += n;
	return 0;
}

int sparse_count_leaks(const struct sparse_image *img, const struct sparse_scan *s,
                       uint64_t *leaked, uint64_t *tail)
{
	uint64_t end = sparse_index_offset(img, s->alloc_end);

	*leaked = 0;
	*tail = img->file_size > end ? img->file_size - end : 0;
	return for_each_leak(img, s, count_run, leaked);
}

static int punch_run(const struct sparse_image *img, uint64_t first, uint64_t n,
                     void *arg)
{
	uint64_t off = sparse_index_offset(img, first);
	uint64_t len = n << img->h.cluster_bits;

	if (fallocate(img->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
	              (off_t)len) < 0) {
		static const uint8_t zeros[65536];

		if (errno != EOPNOTSUPP)
			return -errno;
		/* No holes here: zeros keep the invariant that a free
		 * cluster reads as zeros. */
		for (uint64_t done = 0; done < len;) {
			size_t chunk = len - done < sizeof(zeros) ? (size_t)(len - done)
			                                          : sizeof(zeros);
			ssize_t w = pwrite(img->fd, zeros, chunk, (off_t)(off + done));

			if (w <= 0)
				return w < 0 ? -errno : -EIO;
			done += (uint64_t)w;
		}
	}
	*(uint64_t *)arg += n;
	return 0;
}

int sparse_repair(struct sparse_image *img, const struct sparse_scan *s, uint64_t *freed,
                  char *why, size_t whylen)
{
	uint64_t end = sparse_index_offset(img, s->alloc_end);
	int r;

	*freed = 0;
	r = for_each_leak(img, s, punch_run, freed);
	if (r < 0) {
		say(why, whylen, "cannot free leaked clusters: %s", strerror(-r));
		return r;
	}
	if (img->file_size > end) {
		if (ftruncate(img->fd, (off_t)end) < 0) {
			r = -errno;
			say(why, whylen, "cannot cut the file to %llu bytes: %s",
			    (unsigned long long)end, strerror(errno));
			return r;
		}
		img->file_size = end;
	}
	if (fsync(img->fd) < 0) {
		r = -errno;
		say(why, whylen, "fsync: %s", strerror(errno));
		return r;
	}
	return 0;
}
