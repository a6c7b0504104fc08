/* SPDX-License-Identifier: MIT */
/* The verification data pattern of the guest programs (pattern.h). */
#include "pattern.h"

uint64_t vp_mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t vp_pattern_seed(uint64_t writer, uint64_t block, uint32_t gen)
{
	/* Each part mixed on its own first, so that no two (writer, block,
	 * gen) differing in a few bits cancel out in the XOR. */
	return vp_mix64(vp_mix64(writer) ^ vp_mix64(block + VP_GOLDEN64) ^
	                vp_mix64(((uint64_t)gen << 1) | 1));
}

uint64_t vp_pattern_word(uint64_t seed, size_t i)
{
	return vp_mix64(seed + (uint64_t)i * VP_GOLDEN64);
}

void vp_pattern_fill(uint64_t seed, void *buf, size_t len)
{
	uint64_t *w = buf;

	for (size_t i = 0; i < len / 8; i++)
		w[i] = vp_pattern_word(seed, i);
}

size_t vp_pattern_check(uint64_t seed, const void *buf, size_t len)
{
	const uint64_t *w = buf;
	size_t i;

	for (i = 0; i < len / 8; i++)
		if (w[i] != vp_pattern_word(seed, i))
			break;
	return i;
}
