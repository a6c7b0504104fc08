/* SPDX-License-Identifier: MIT */
/* vproxy-img: create, inspect, check, repair and convert disk images for
 * the sparse and raw plugins.  See usage() and vproxy-img.1.
 *
 * Exit status: 0 success (check: no corruption), 1 check found corruption,
 * 2 usage or I/O error. */
#include "size.h"
#include "sparse_format.h"
#include "vpio_file.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROG "vproxy-img"
#define EXIT_CORRUPT 1
#define EXIT_ERROR 2

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EXIT_ERROR);
}

static const char *const usage_main =
        "usage: " PROG " COMMAND [options] ...\n"
        "Disk images for vproxyd's sparse and raw plugins.\n"
        "\n"
        "commands:\n"
        "  create [-c SIZE] [-f] FILE SIZE   make an empty sparse image\n"
        "  info [--json] FILE                virtual size, allocation, layout\n"
        "  check [--repair] FILE             look for corruption (and leaks)\n"
        "  convert [-O FMT] [-c SIZE] SRC DST  raw <-> sparse copy\n"
        "  map [--json] FILE                 allocated extents of a sparse image\n"
        "\n"
        "'" PROG " COMMAND --help' describes one command.  Sizes take K, M, G or T\n"
        "(powers of 1024).  Exit status: 0 success, 1 check found corruption,\n"
        "2 usage or I/O error.\n";

static const char *const usage_create =
        "usage: " PROG " create [-c|--cluster-size SIZE] [-f|--force] FILE SIZE\n"
        "Create FILE as an empty sparse image of SIZE bytes (K/M/G/T suffixes,\n"
        "a multiple of 512).  Nothing is allocated until the guest writes.\n"
        "  -c, --cluster-size SIZE  allocation unit, a power of two from 4K to 2M\n"
        "                           (default 64K)\n"
        "  -f, --force              replace FILE if it exists\n";

static const char *const usage_info =
        "usage: " PROG " info [--json] FILE\n"
        "Print the format, virtual size, cluster size, cluster count and the\n"
        "bytes allocated of a sparse or raw image.\n"
        "  --json  one JSON object instead of text\n";

static const char *const usage_check =
        "usage: " PROG " check [-r|--repair] FILE\n"
        "Check a sparse image: the header, every map entry (alignment, range,\n"
        "reserved bits) and that no two entries share a cluster.  Clusters that\n"
        "hold data but are referenced by no entry (leaks, left by a crash) are\n"
        "reported but are not corruption.\n"
        "  -r, --repair  free leaked clusters and cut the file after the last\n"
        "                used one (corruption is never \"repaired\")\n"
        "Exit status: 0 no corruption, 1 corrupt (described on stdout), 2 the\n"
        "file could not be checked.\n";

static const char *const usage_convert =
        "usage: " PROG " convert [-O raw|sparse] [-c SIZE] [-f] [-q] SRC DST\n"
        "Copy the disk in SRC (sparse or raw, detected) to DST.  Zero areas are\n"
        "not written: a sparse DST allocates only clusters with data, a raw DST\n"
        "keeps holes.  A progress bar is drawn when stderr is a terminal.\n"
        "  -O, --output-format FMT  raw or sparse (default: the other one)\n"
        "  -c, --cluster-size SIZE  cluster size of a sparse DST (default 64K)\n"
        "  -f, --force              replace DST if it exists\n"
        "  -q, --quiet              no progress bar\n";

static const char *const usage_map =
        "usage: " PROG " map [--json] FILE\n"
        "List the allocated extents of a sparse image: virtual offset, length\n"
        "and offset in the file, adjacent clusters merged.\n"
        "  --json  a JSON array instead of text\n";

/* "1.5 GiB" style, for people. */
static const char *human(uint64_t v, char *buf, size_t len)
{
	static const char *const unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double x = (double)v;
	unsigned u = 0;

	while (x >= 1024 && u < 5) {
		x /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " bytes", v);
	else
		snprintf(buf, len, "%.1f %s", x, unit[u]);
	return buf;
}

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* Is the command's only argument --help? */
static bool wants_help(int argc, char **argv, const char *text)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(text, stdout);
			return true;
		}
	}
	return false;
}

static void usage_error(const char *text, const char *fmt, ...)
        __attribute__((format(printf, 2, 3), noreturn));

static void usage_error(const char *text, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n%s", text);
	exit(EXIT_ERROR);
}

/* ---- opening images ---- */

enum fmt { FMT_RAW, FMT_SPARSE };

struct image {
	const char *path;
	int fd;
	enum fmt fmt;
	struct sparse_image sp; /* FMT_SPARSE */
	uint64_t size;          /* virtual size */
	struct stat st;
};

/* Does fd start with our magic? */
static bool has_magic(int fd)
{
	char buf[8];

	return pread(fd, buf, sizeof(buf), 0) == (ssize_t)sizeof(buf) &&
	       memcmp(buf, SPARSE_MAGIC, sizeof(buf)) == 0;
}

/* Open path (read-only unless writable) and take the lock vproxyd's
 * plugins take.  lock_needed: fail when the image is in use; otherwise
 * warn.  Returns 0, or -errno with a message printed; for sparse images
 * a bad header is returned as -EINVAL with why filled. */
static int image_open(struct image *img, const char *path, bool writable,
                      bool lock_needed, bool want_sparse, char *why, size_t whylen)
{
	memset(img, 0, sizeof(*img));
	img->path = path;
	img->fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (img->fd < 0)
		die("%s: %s", path, strerror(errno));
	if (fstat(img->fd, &img->st) < 0)
		die("%s: %s", path, strerror(errno));
	if (S_ISDIR(img->st.st_mode))
		die("%s: is a directory", path);
	if (vpio_lock_file(img->fd, writable, lock_needed ? 2000 : 0) < 0) {
		if (lock_needed)
			die("%s: in use (locked by vproxyd or another tool); stop the "
			    "device first",
			    path);
		fprintf(stderr, PROG ": %s: in use; figures may change while we read\n",
		        path);
	}
	if (S_ISREG(img->st.st_mode) && has_magic(img->fd)) {
		int r = sparse_open(&img->sp, img->fd, why, whylen);

		img->fmt = FMT_SPARSE;
		if (r < 0)
			return r;
		img->size = img->sp.h.virtual_size;
		return 0;
	}
	if (want_sparse) {
		snprintf(why, whylen,
		         "not a vproxy sparse image (no \"%s\" magic at offset 0)",
		         SPARSE_MAGIC);
		return -EMEDIUMTYPE;
	}
	img->fmt = FMT_RAW;
	if (S_ISBLK(img->st.st_mode)) {
		off_t end = lseek(img->fd, 0, SEEK_END);

		if (end < 0)
			die("%s: %s", path, strerror(errno));
		img->size = (uint64_t)end;
	} else {
		img->size = (uint64_t)img->st.st_size;
	}
	return 0;
}

static void image_close(struct image *img)
{
	if (img->fmt == FMT_SPARSE)
		sparse_close(&img->sp);
	close(img->fd);
}

static struct image open_sparse_or_die(const char *path, bool writable, bool lock_needed)
{
	struct image img;
	char why[300];

	if (image_open(&img, path, writable, lock_needed, true, why, sizeof(why)) < 0)
		die("%s: %s", path, why);
	return img;
}

/* ---- create ---- */

static int cmd_create(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"cluster-size", required_argument, NULL, 'c'},
	        {"force", no_argument, NULL, 'f'},
	        {NULL, 0, NULL, 0}};
	uint64_t cs = SPARSE_DEFAULT_CLUSTER, size;
	bool force = false;
	char why[300];
	int c;

	if (wants_help(argc, argv, usage_create))
		return 0;
	while ((c = getopt_long(argc, argv, "c:f", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (vp_parse_size(optarg, &cs) < 0)
				usage_error(usage_create,
				            "cluster size \"%s\" is not a size (" VP_SIZE_RULE ")",
				            optarg);
			break;
		case 'f': force = true; break;
		default: usage_error(usage_create, "bad option");
		}
	}
	if (argc - optind != 2)
		usage_error(usage_create, "create needs FILE and SIZE");
	if (vp_parse_size(argv[optind + 1], &size) < 0)
		usage_error(usage_create,
		            "\"%s\" is not a size (" VP_SIZE_RULE ")",
		            argv[optind + 1]);
	if (cs < (1u << SPARSE_MIN_CLUSTER_BITS) ||
	    cs > (1u << SPARSE_MAX_CLUSTER_BITS) || (cs & (cs - 1)))
		usage_error(usage_create,
		            "cluster size must be a power of two from 4K to 2M");
	if (sparse_create(argv[optind], size, cs, force, why, sizeof(why)) < 0)
		die("%s", why);
	return 0;
}

/* ---- info ---- */

static int cmd_info(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
	                                     {NULL, 0, NULL, 0}};
	bool json = false;
	struct image img;
	struct sparse_scan scan = {0};
	uint64_t cs = 0, count = 0, alloc_clusters = 0, alloc_bytes;
	char why[300], b1[32], b2[32];
	int c, corrupt = 0;

	if (wants_help(argc, argv, usage_info))
		return 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'j')
			usage_error(usage_info, "bad option");
		json = true;
	}
	if (argc - optind != 1)
		usage_error(usage_info, "info needs FILE");
	if (image_open(&img, argv[optind], false, false, false, why, sizeof(why)) < 0)
		die("%s: %s", argv[optind], why);
	alloc_bytes = (uint64_t)img.st.st_blocks * 512;
	if (img.fmt == FMT_SPARSE) {
		cs = img.sp.cluster_size;
		count = img.sp.h.map_entries;
		corrupt = sparse_scan(&img.sp, &scan);
		alloc_clusters = scan.allocated;
		alloc_bytes = alloc_clusters * cs;
		sparse_scan_free(&scan);
	}
	if (json) {
		printf("{\"file\": ");
		json_string(stdout, img.path);
		printf(", \"format\": \"%s\"", img.fmt == FMT_SPARSE ? "sparse" : "raw");
		if (img.fmt == FMT_SPARSE)
			printf(", \"version\": %u", img.sp.h.version);
		printf(", \"virtual-size\": %" PRIu64, img.size);
		if (img.fmt == FMT_SPARSE)
			printf(", \"cluster-size\": %" PRIu64
			       ", \"cluster-count\": %" PRIu64
			       ", \"allocated-clusters\": %" PRIu64,
			       cs, count, alloc_clusters);
		printf(", \"allocated-bytes\": %" PRIu64 ", \"file-size\": %" PRIu64,
		       alloc_bytes, (uint64_t)img.st.st_size);
		if (img.fmt == FMT_SPARSE)
			printf(", \"corrupt\": %s", corrupt ? "true" : "false");
		printf("}\n");
	} else {
		printf("file: %s\n", img.path);
		if (img.fmt == FMT_SPARSE)
			printf("format: sparse (version %u)\n", img.sp.h.version);
		else
			printf("format: raw\n");
		printf("virtual size: %s (%" PRIu64 " bytes)\n",
		       human(img.size, b1, sizeof(b1)), img.size);
		if (img.fmt == FMT_SPARSE) {
			printf("cluster size: %s\n", human(cs, b1, sizeof(b1)));
			printf("clusters: %" PRIu64 ", allocated %" PRIu64 "\n", count,
			       alloc_clusters);
		}
		printf("allocated: %s (%" PRIu64 " bytes)\n",
		       human(alloc_bytes, b1, sizeof(b1)), alloc_bytes);
		printf("file size: %s\n",
		       human((uint64_t)img.st.st_size, b2, sizeof(b2)));
		if (corrupt)
			printf("corrupt: yes (run " PROG " check)\n");
	}
	image_close(&img);
	return 0;
}

/* ---- check ---- */

static int cmd_check(int argc, char **argv)
{
	static const struct option opts[] = {{"repair", no_argument, NULL, 'r'},
	                                     {NULL, 0, NULL, 0}};
	bool repair = false;
	struct image img;
	struct sparse_scan scan;
	uint64_t leaked, tail, freed;
	char why[300];
	const char *path;
	int c, r;

	if (wants_help(argc, argv, usage_check))
		return 0;
	while ((c = getopt_long(argc, argv, "r", opts, NULL)) != -1) {
		if (c != 'r')
			usage_error(usage_check, "bad option");
		repair = true;
	}
	if (argc - optind != 1)
		usage_error(usage_check, "check needs FILE");
	path = argv[optind];
	r = image_open(&img, path, repair, true, true, why, sizeof(why));
	if (r == -EMEDIUMTYPE || r == -ENOTSUP)
		die("%s: %s", path, why);
	if (r < 0) {
		printf("%s: corrupt: %s\n", path, why);
		return EXIT_CORRUPT;
	}
	r = sparse_scan(&img.sp, &scan);
	if (r < 0)
		die("%s: %s", path, scan.report);
	if (r > 0) {
		printf("%s: corrupt: %" PRIu64 " bad map entr%s\n%s", path, scan.problems,
		       scan.problems == 1 ? "y" : "ies", scan.report);
		if (scan.problems > 10)
			printf("(and %" PRIu64 " more)\n", scan.problems - 10);
		if (repair)
			printf("not repaired: only leaks can be repaired\n");
		sparse_scan_free(&scan);
		image_close(&img);
		return EXIT_CORRUPT;
	}
	if (sparse_count_leaks(&img.sp, &scan, &leaked, &tail) < 0)
		die("%s: cannot look for leaks: %s", path, strerror(errno));
	printf("%s: no corruption; %" PRIu64 " of %" PRIu64 " clusters allocated\n", path,
	       scan.allocated, img.sp.h.map_entries);
	if (leaked || tail) {
		printf("leaks: %" PRIu64 " unreferenced cluster%s holding data, %" PRIu64
		       " bytes after the last used cluster (not corruption)\n",
		       leaked, leaked == 1 ? "" : "s", tail);
		if (repair) {
			if (sparse_repair(&img.sp, &scan, &freed, why, sizeof(why)) < 0)
				die("%s: %s", path, why);
			printf("repaired: freed %" PRIu64
			       " cluster%s, file cut to %" PRIu64 " bytes\n",
			       freed, freed == 1 ? "" : "s", img.sp.file_size);
		} else {
			printf("'" PROG " check --repair %s' frees them\n", path);
		}
	}
	sparse_scan_free(&scan);
	image_close(&img);
	return 0;
}

/* ---- map ---- */

/* Extents being merged and printed by cmd_map. */
struct map_out {
	const struct sparse_image *sp;
	uint64_t size; /* virtual size */
	bool json, first;
	uint64_t run_v, run_len, run_h;
};

static void map_flush(struct map_out *m)
{
	if (!m->run_len)
		return;
	if (m->json)
		printf("%s{\"start\": %" PRIu64 ", \"length\": %" PRIu64
		       ", \"offset\": %" PRIu64 "}",
		       m->first ? "" : ", ", m->run_v, m->run_len, m->run_h);
	else
		printf("%#-20" PRIx64 " %#-20" PRIx64 " %#" PRIx64 "\n", m->run_v,
		       m->run_len, m->run_h);
	m->first = false;
	m->run_len = 0;
}

static int map_entry(void *arg, uint64_t vc, uint64_t e)
{
	struct map_out *m = arg;
	uint64_t v = vc << m->sp->h.cluster_bits;
	uint64_t len =
	        m->size - v < m->sp->cluster_size ? m->size - v : m->sp->cluster_size;

	if (sparse_entry_problem(m->sp, e, m->sp->file_size))
		return 0; /* check reports these */
	if (m->run_len && m->run_v + m->run_len == v && m->run_h + m->run_len == e) {
		m->run_len += len;
		return 0;
	}
	map_flush(m);
	m->run_v = v;
	m->run_len = len;
	m->run_h = e;
	return 0;
}

static int cmd_map(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
	                                     {NULL, 0, NULL, 0}};
	struct map_out m = {.first = true};
	struct image img;
	int c, r;

	if (wants_help(argc, argv, usage_map))
		return 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'j')
			usage_error(usage_map, "bad option");
		m.json = true;
	}
	if (argc - optind != 1)
		usage_error(usage_map, "map needs FILE");
	img = open_sparse_or_die(argv[optind], false, false);
	m.sp = &img.sp;
	m.size = img.size;
	if (m.json)
		printf("[");
	else
		printf("%-20s %-20s %s\n", "virtual-offset", "length", "file-offset");
	/* Only the allocated parts of the map, as check reads it. */
	r = sparse_map_walk(&img.sp, map_entry, &m);
	if (r < 0)
		die("%s: cannot read the map: %s", img.path, strerror(-r));
	map_flush(&m);
	if (m.json)
		printf("]\n");
	image_close(&img);
	return 0;
}

/* ---- convert ---- */

struct progress {
	bool on;
	uint64_t total;
	int shown;
};

static void progress_show(struct progress *p, uint64_t done)
{
	int pct = p->total ? (int)(done * 100 / p->total) : 100;
	char bar[41];

	if (!p->on || pct == p->shown)
		return;
	p->shown = pct;
	memset(bar, ' ', 40);
	memset(bar, '#', (size_t)(pct * 40 / 100));
	bar[40] = '\0';
	fprintf(stderr, "\r[%s] %3d%%", bar, pct);
	if (pct == 100)
		fputc('\n', stderr);
	fflush(stderr);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static void read_full(int fd, void *buf, size_t len, uint64_t off, const char *path)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n =
		        pread(fd, (char *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("%s: read at %" PRIu64 ": %s", path, off + done,
			    strerror(errno));
		if (n == 0) {
			memset((char *)buf + done, 0, len - done);
			return;
		}
		done += (size_t)n;
	}
}

static void write_full(int fd, const void *buf, size_t len, uint64_t off,
                       const char *path)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done,
		                   (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("%s: write at %" PRIu64 ": %s", path, off + done,
			    n < 0 ? strerror(errno) : "no progress");
		done += (size_t)n;
	}
}

/* Read [off, off+len) of the source disk; false if it is certainly all
 * zeros (unallocated or a hole), without reading it. */
static bool src_read(struct image *src, uint64_t off, uint8_t *buf, size_t len)
{
	bool any = false;

	if (off >= src->size) {
		memset(buf, 0, len);
		return false;
	}
	if (src->fmt == FMT_RAW) {
		off_t d = lseek(src->fd, (off_t)off, SEEK_DATA);

		if (S_ISREG(src->st.st_mode) && d >= 0 && (uint64_t)d >= off + len) {
			memset(buf, 0, len);
			return false;
		}
		if (S_ISREG(src->st.st_mode) && d < 0 && errno == ENXIO) {
			memset(buf, 0, len);
			return false;
		}
		read_full(src->fd, buf, len, off, src->path);
		return true;
	}
	for (size_t done = 0; done < len;) {
		uint64_t pos = off + done, vc = pos >> src->sp.h.cluster_bits;
		uint64_t in = pos & (src->sp.cluster_size - 1);
		size_t n = (size_t)(src->sp.cluster_size - in);
		uint64_t e = 0;

		if (n > len - done)
			n = len - done;
		if (vc < src->sp.h.map_entries) {
			int r = sparse_map_read(&src->sp, vc, 1, &e);

			if (r < 0)
				die("%s: cannot read the map: %s", src->path,
				    strerror(-r));
		}
		if (e && !sparse_entry_problem(&src->sp, e, src->sp.file_size)) {
			read_full(src->fd, buf + done, n, e + in, src->path);
			any = true;
		} else {
			memset(buf + done, 0, n);
		}
		done += n;
	}
	return any;
}

/* The first offset at or after off where the source may hold data, or
 * vsize when none does: convert skips what lies between, so its time
 * follows the data, not the virtual size (an empty 1 PiB image would
 * otherwise take hours, and an untrusted one could make it spin). */
static uint64_t src_next_data(struct image *src, uint64_t off, uint64_t vsize)
{
	const struct sparse_header *h = &src->sp.h;
	uint64_t vc, entries[512];
	off_t d;

	if (off >= src->size)
		return vsize;
	if (src->fmt == FMT_RAW) {
		if (!S_ISREG(src->st.st_mode))
			return off;
		d = lseek(src->fd, (off_t)off, SEEK_DATA);
		if (d < 0)
			return errno == ENXIO ? vsize : off;
		return (uint64_t)d;
	}
	for (vc = off >> h->cluster_bits; vc < h->map_entries;) {
		uint64_t pos = h->map_offset + vc * SPARSE_ENTRY_SIZE, n;

		/* Holes in the map hold no entries. */
		d = lseek(src->fd, (off_t)pos, SEEK_DATA);
		if (d < 0 && errno == ENXIO)
			return vsize;
		if (d > (off_t)pos) {
			vc = ((uint64_t)d - h->map_offset) / SPARSE_ENTRY_SIZE;
			continue;
		}
		n = h->map_entries - vc < 512 ? h->map_entries - vc : 512;
		if (sparse_map_read(&src->sp, vc, n, entries) < 0)
			return off; /* src_read() reports it */
		/* Entries src_read() would read as zeros count as holes. */
		for (uint64_t i = 0; i < n; i++)
			if (entries[i] && !sparse_entry_problem(&src->sp, entries[i],
			                                        src->sp.file_size))
				return (vc + i) << h->cluster_bits > off
				               ? (vc + i) << h->cluster_bits
				               : off;
		vc += n;
	}
	return vsize;
}

static int cmd_convert(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"output-format", required_argument, NULL, 'O'},
	        {"cluster-size", required_argument, NULL, 'c'},
	        {"force", no_argument, NULL, 'f'},
	        {"quiet", no_argument, NULL, 'q'},
	        {NULL, 0, NULL, 0}};
	const char *out_fmt = NULL, *dst_path;
	uint64_t cs = SPARSE_DEFAULT_CLUSTER, vsize, next_host;
	bool force = false, quiet = false, to_sparse;
	struct image src, dst;
	struct progress prog = {0};
	char why[300];
	uint8_t *buf;
	size_t chunk;
	int c, fd;

	if (wants_help(argc, argv, usage_convert))
		return 0;
	while ((c = getopt_long(argc, argv, "O:c:fq", opts, NULL)) != -1) {
		switch (c) {
		case 'O': out_fmt = optarg; break;
		case 'c':
			if (vp_parse_size(optarg, &cs) < 0)
				usage_error(usage_convert,
				            "cluster size \"%s\" is not a size (" VP_SIZE_RULE ")",
				            optarg);
			break;
		case 'f': force = true; break;
		case 'q': quiet = true; break;
		default: usage_error(usage_convert, "bad option");
		}
	}
	if (argc - optind != 2)
		usage_error(usage_convert, "convert needs SRC and DST");
	if (out_fmt && strcmp(out_fmt, "raw") != 0 && strcmp(out_fmt, "sparse") != 0)
		usage_error(usage_convert, "output format \"%s\" is not raw or sparse",
		            out_fmt);
	if (image_open(&src, argv[optind], false, true, false, why, sizeof(why)) < 0)
		die("%s: %s", argv[optind], why);
	dst_path = argv[optind + 1];
	to_sparse = out_fmt ? strcmp(out_fmt, "sparse") == 0 : src.fmt == FMT_RAW;
	vsize = (src.size + 511) / 512 * 512;
	if (vsize == 0)
		die("%s: empty; nothing to convert", src.path);

	if (to_sparse) {
		if (sparse_create(dst_path, vsize, cs, force, why, sizeof(why)) < 0)
			die("%s", why);
		if (image_open(&dst, dst_path, true, true, true, why, sizeof(why)) < 0)
			die("%s: %s", dst_path, why);
		chunk = (size_t)cs;
	} else {
		fd = open(dst_path,
		          O_RDWR | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL),
		          0644);
		if (fd < 0)
			die("%s: %s", dst_path, strerror(errno));
		if (ftruncate(fd, (off_t)vsize) < 0)
			die("%s: %s", dst_path, strerror(errno));
		memset(&dst, 0, sizeof(dst));
		dst.path = dst_path;
		dst.fd = fd;
		dst.fmt = FMT_RAW;
		chunk = 1u << 20;
	}
	buf = malloc(chunk);
	if (!buf)
		die("out of memory");
	prog.on = !quiet && isatty(STDERR_FILENO);
	prog.total = vsize;
	prog.shown = -1;
	next_host = to_sparse ? dst.sp.h.data_offset : 0;
	for (uint64_t off = 0; off < vsize; off += chunk) {
		size_t n;

		/* Never backwards: off is a multiple of chunk. */
		off = src_next_data(&src, off, vsize) / chunk * chunk;
		if (off >= vsize)
			break;
		n = vsize - off < chunk ? (size_t)(vsize - off) : chunk;
		progress_show(&prog, off);
		if (!src_read(&src, off, buf, n) || all_zero(buf, n))
			continue;
		if (to_sparse) {
			uint64_t e = htole64(next_host);

			/* Data first, then the entry: the order the plugin keeps. */
			write_full(dst.fd, buf, n, next_host, dst_path);
			write_full(dst.fd, &e, sizeof(e),
			           dst.sp.h.map_offset + (off / cs) * SPARSE_ENTRY_SIZE,
			           dst_path);
			next_host += cs;
		} else {
			write_full(dst.fd, buf, n, off, dst_path);
		}
	}
	progress_show(&prog, vsize);
	/* A sparse image's last cluster is whole, whatever the data. */
	if (to_sparse && ftruncate(dst.fd, (off_t)next_host) < 0)
		die("%s: %s", dst_path, strerror(errno));
	if (fsync(dst.fd) < 0)
		die("%s: fsync: %s", dst_path, strerror(errno));
	free(buf);
	image_close(&src);
	image_close(&dst);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {{"create", cmd_create},
	            {"info", cmd_info},
	            {"check", cmd_check},
	            {"convert", cmd_convert},
	            {"map", cmd_map}};

	if (argc < 2) {
		fputs(usage_main, stderr);
		return EXIT_ERROR;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(usage_main, stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, PROG ": unknown command \"%s\"\n%s", argv[1], usage_main);
	return EXIT_ERROR;
}
