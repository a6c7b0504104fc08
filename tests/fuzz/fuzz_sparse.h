/* SPDX-License-Identifier: MIT */
/*
 * The image file the sparse harnesses build from their input: a flags
 * byte, a little-endian u16 of hole pages, then the file's start.  The
 * header checksum is recomputed (so the fuzzer need not learn CRC-32C)
 * unless flags bit 0 says to keep it as given, and the file is extended
 * with a hole of that many 4 KiB pages (up to 256 MiB: room for the map
 * of a large virtual disk without a large input).
 */
#ifndef VP_FUZZ_SPARSE_H
#define VP_FUZZ_SPARSE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "sparse_format.h"

#define FUZZ_SPARSE_KEEP_CRC 0x01u
#define FUZZ_SPARSE_CRC_OFFSET 124u

/* Write the image to fd (truncated first); returns the flags byte, or -1
 * when the file cannot be written. */
static inline int fuzz_sparse_build(int fd, const uint8_t *data, size_t size)
{
	uint8_t head[SPARSE_HEADER_SIZE];
	uint8_t flags = size > 0 ? data[0] : 0;
	size_t extra = size > 2 ? ((size_t)data[1] | (size_t)data[2] << 8) * 4096 : 0;
	size_t len = size > 3 ? size - 3 : 0;

	data += size > 3 ? 3 : size;
	if (ftruncate(fd, 0) < 0 || (len && pwrite(fd, data, len, 0) != (ssize_t)len))
		return -1;
	if (!(flags & FUZZ_SPARSE_KEEP_CRC) && len >= SPARSE_HEADER_SIZE) {
		uint32_t crc;

		memcpy(head, data, sizeof(head));
		crc = sparse_crc32c(0, head, FUZZ_SPARSE_CRC_OFFSET);
		for (unsigned i = 0; i < 4; i++)
			head[FUZZ_SPARSE_CRC_OFFSET + i] = (uint8_t)(crc >> (8 * i));
		if (pwrite(fd, head + FUZZ_SPARSE_CRC_OFFSET, 4,
		           FUZZ_SPARSE_CRC_OFFSET) != 4)
			return -1;
	}
	if (extra && ftruncate(fd, (off_t)(len + extra)) < 0)
		return -1;
	return flags;
}

#endif
