/* SPDX-License-Identifier: MIT */
/* The data the guest programs (vproxy-guest, vproxy-bench-guest) write and
 * verify.  Every 8-byte word of a block follows from a seed that names the
 * writer, the block and its generation (how many times the writer has
 * rewritten it), so a failed check can also tell whose data or which older
 * generation a block holds instead. */
#ifndef VP_PATTERN_H
#define VP_PATTERN_H

#include <stddef.h>
#include <stdint.h>

/* The golden-ratio increment of splitmix64: consecutive multiples of it
 * mixed by vp_mix64() are a good pseudo-random sequence. */
#define VP_GOLDEN64 0x9e3779b97f4a7c15ull

/* splitmix64's finaliser: a bijection of 64-bit values that mixes every
 * input bit into every output bit. */
uint64_t vp_mix64(uint64_t z);
/* The seed of block's data as written by writer (any per-writer key, e.g.
 * domid and device) in generation gen. */
uint64_t vp_pattern_seed(uint64_t writer, uint64_t block, uint32_t gen);
/* Word i of the data with that seed. */
uint64_t vp_pattern_word(uint64_t seed, size_t i);
/* Fill buf's len / 8 words with the data of seed. */
void vp_pattern_fill(uint64_t seed, void *buf, size_t len);
/* Index of the first of buf's len / 8 words that differs from the data of
 * seed, or len / 8 when all match. */
size_t vp_pattern_check(uint64_t seed, const void *buf, size_t len);

#endif
