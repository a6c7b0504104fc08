/* SPDX-License-Identifier: MIT */
/*
 * The vproxy sparse image format (docs/SPARSE-FORMAT.md): a 128-byte
 * header in the first 4 KiB, a flat cluster map of 64-bit little-endian
 * entries, then data clusters.  This is the code both the sparse plugin
 * and vproxy-img use to create, open, scan, check and repair images; it
 * does plain synchronous I/O and knows nothing of the plugin ABI.
 */
#ifndef VP_SPARSE_FORMAT_H
#define VP_SPARSE_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPARSE_MAGIC "VPXSPARS"
#define SPARSE_VERSION 1u
#define SPARSE_HEADER_SIZE 128u     /* bytes the header occupies */
#define SPARSE_HEADER_AREA 4096u    /* bytes reserved for it at offset 0 */
#define SPARSE_MIN_CLUSTER_BITS 12u /* 4 KiB */
#define SPARSE_MAX_CLUSTER_BITS 21u /* 2 MiB */
#define SPARSE_DEFAULT_CLUSTER (64u * 1024u)
#define SPARSE_ENTRY_SIZE 8u
#define SPARSE_ENTRY_RESERVED 0xff00000000000000ull /* must be zero */
#define SPARSE_MAX_VIRTUAL (1ull << 56)             /* 64 PiB */

/* The decoded header. */
struct sparse_header {
	uint32_t version;
	uint64_t virtual_size;   /* bytes, a multiple of 512 */
	uint32_t cluster_bits;   /* cluster size = 1 << cluster_bits */
	uint32_t incompat_flags; /* none defined: non-zero is refused */
	uint32_t compat_flags;   /* none defined: ignored */
	uint64_t map_offset;     /* byte offset of map entry 0 */
	uint64_t map_entries;    /* ceil(virtual_size / cluster size) */
	uint64_t data_offset;    /* first byte data clusters may use */
};

/* An open image: the header, checked.  The map is read with pread, never
 * mapped: a file cut from outside must fail a read, not raise SIGBUS. */
struct sparse_image {
	int fd; /* the caller's; not closed here */
	struct sparse_header h;
	uint64_t cluster_size;
	uint64_t file_size; /* at open */
};

/* What a scan of the map found. */
struct sparse_scan {
	uint8_t *used;          /* bit i: host cluster i is referenced (malloc) */
	uint64_t host_clusters; /* clusters between data_offset and end of file */
	uint64_t allocated;     /* valid map entries */
	uint64_t alloc_end;     /* 1 + the highest referenced host cluster */
	uint64_t problems;      /* corrupt entries */
	char report[2048];      /* the first problems, one per line */
};

/* CRC-32C (Castagnoli) of buf, continuing from crc (start with 0). */
uint32_t sparse_crc32c(uint32_t crc, const void *buf, size_t len);

/* Fill *h with the layout of a new image.  0, or -EINVAL with a reason. */
int sparse_layout(uint64_t virtual_size, uint64_t cluster_size, struct sparse_header *h,
                  char *why, size_t whylen);

/* Serialise h into SPARSE_HEADER_SIZE bytes, checksum included. */
void sparse_header_encode(const struct sparse_header *h, uint8_t *out);

/* Parse and validate a header from the first len bytes of a file.
 * 0; -EINVAL (not an image of ours, or corrupt) or -ENOTSUP (newer
 * version or unknown incompatible feature), with a reason. */
int sparse_header_decode(const uint8_t *buf, size_t len, struct sparse_header *h,
                         char *why, size_t whylen);

/* Create path as an empty image (fails if it exists unless overwrite).
 * 0 or a negative errno with a reason. */
int sparse_create(const char *path, uint64_t virtual_size, uint64_t cluster_size,
                  bool overwrite, char *why, size_t whylen);

/* Read and check the header of fd.  0 or a negative errno with a
 * reason; on success sparse_close() undoes it. */
int sparse_open(struct sparse_image *img, int fd, char *why, size_t whylen);

/* Forget the image; the fd stays the caller's. */
void sparse_close(struct sparse_image *img);

/* Read the raw map entries of virtual clusters [vc, vc + n) into out
 * (host byte order; vc + n <= map_entries).  0, or -ENODATA when the
 * file ends inside the map (cut since it was opened), or another -errno. */
int sparse_map_read(const struct sparse_image *img, uint64_t vc, uint64_t n,
                    uint64_t *out);

/* Call fn(arg, vc, entry) for every non-zero map entry in increasing vc,
 * reading only the parts of the map that hold data (SEEK_DATA), so the
 * time is proportional to the allocated part, not the virtual size.
 * Stops when fn returns non-zero and returns that; else 0, or -errno
 * when the map cannot be read. */
int sparse_map_walk(const struct sparse_image *img,
                    int (*fn)(void *arg, uint64_t vc, uint64_t entry), void *arg);

/* NULL if entry (non-zero) is a valid data cluster reference for an
 * image file of file_size bytes, else what is wrong with it. */
const char *sparse_entry_problem(const struct sparse_image *img, uint64_t entry,
                                 uint64_t file_size);

/* Host cluster index of a valid non-zero entry. */
uint64_t sparse_entry_index(const struct sparse_image *img, uint64_t entry);

/* Byte offset in the file of host cluster index i. */
uint64_t sparse_index_offset(const struct sparse_image *img, uint64_t i);

/* Walk the map: validate every entry, find clusters referenced twice,
 * build the used bitmap.  0 clean, 1 corrupt (s->problems, s->report),
 * or a negative errno (with s->report).  Free s with sparse_scan_free. */
int sparse_scan(const struct sparse_image *img, struct sparse_scan *s);

/* Release the bitmap of a scan. */
void sparse_scan_free(struct sparse_scan *s);

/* Count leaked clusters: not referenced, yet holding data in the file.
 * *tail gets the bytes past the last referenced cluster.  0 or -errno. */
int sparse_count_leaks(const struct sparse_image *img, const struct sparse_scan *s,
                       uint64_t *leaked, uint64_t *tail);

/* Give leaked space back: punch every unreferenced cluster holding data,
 * cut the file after the last referenced cluster, fsync.  Only for a
 * clean scan of a writable fd.  Sets *freed to the clusters punched.
 * 0 or a negative errno with a reason. */
int sparse_repair(struct sparse_image *img, const struct sparse_scan *s, uint64_t *freed,
                  char *why, size_t whylen);

#endif
