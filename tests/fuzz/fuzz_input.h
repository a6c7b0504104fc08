/* SPDX-License-Identifier: MIT */
/*
 * Reading a fuzzer's input as a stream of little-endian fields.  Past the
 * end every read returns zeros, so a harness never has to check lengths:
 * a short input is a valid input whose missing fields are zero.
 */
#ifndef VP_FUZZ_INPUT_H
#define VP_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct fz {
	const uint8_t *p;
	size_t n;
};

/* Copy len bytes to buf, zero-filling what the input lacks. */
static inline void fz_bytes(struct fz *f, void *buf, size_t len)
{
	size_t take = len < f->n ? len : f->n;

	memcpy(buf, f->p, take);
	memset((uint8_t *)buf + take, 0, len - take);
	f->p += take;
	f->n -= take;
}

static inline uint8_t fz_u8(struct fz *f)
{
	uint8_t v;

	fz_bytes(f, &v, 1);
	return v;
}

static inline uint16_t fz_u16(struct fz *f)
{
	uint8_t b[2];

	fz_bytes(f, b, 2);
	return (uint16_t)(b[0] | b[1] << 8);
}

static inline uint32_t fz_u32(struct fz *f)
{
	uint8_t b[4];

	fz_bytes(f, b, 4);
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	       (uint32_t)b[3] << 24;
}

static inline uint64_t fz_u64(struct fz *f)
{
	uint64_t lo = fz_u32(f);

	return lo | (uint64_t)fz_u32(f) << 32;
}

/* True while input remains. */
static inline int fz_more(const struct fz *f)
{
	return f->n > 0;
}

#endif
