/*
 * The image file the sparse harnesses build from their input: the input
 * after its first two bytes is the file's start, the header checksum
 * recomputed (so the fuzzer need not learn CRC-32C) unless flags bit 0
 * says to keep it as given, and the file extended with a hole of as many
 * 4 KiB pages as the second byte says.
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
	size_t extra = size > 1 ? (size_t)data[1] * 4096 : 0;
	size_t len = size > 2 ? size - 2 : 0;

	data += size > 2 ? 2 : size;
	if (ftruncate(fd, 0) < 0 || (len && pwrite(fd, data, len, 0) != (ssize_t)len))
		return -1;
	if (!(flags & FUZZ_SPARSE_KEEP_CRC) && len >= SPARSE_HEADER_SIZE) {
		uint32_t crc;

		memcpy(head, data, sizeof(head));
		crc = sparse_crc32c(0, head, FUZZ_SPARSE_CRC_OFFSET);
		for (unsigned i = 0; i < 4; i++)
			head[FUZZ_SPARSE_CRC_OFFSET + i] = (uint8_t)(crc >> (8 * i));
		if (pwrite(fd, head + FUZZ_SPARSE_CRC_OFFSET, 4, FUZZ_SPARSE_CRC_OFFSET) != 4)
			return -1;
	}
	if (extra && ftruncate(fd, (off_t)(len + extra)) < 0)
		return -1;
	return flags;
}

#endif
