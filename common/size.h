/* SPDX-License-Identifier: MIT */
/* Sizes and counts as users write them on command lines and in config
 * files: one rule for vproxyd, its plugins, vproxy-img, vproxy-guest and
 * the bench.
 *
 * A size is decimal digits, then optionally one of K, M, G or T (either
 * case; powers of 1024), then optionally "B" or "iB" ("B" alone is also
 * allowed after the digits).  Examples: 4096, 512K, 64M, 2MiB, 512B, 1t.
 * Leading zeros are decimal ("010" is ten).  Refused: an empty string,
 * signs, spaces, hex ("0x10"), fractions, any other suffix, and values
 * above UINT64_MAX after scaling. */
#ifndef VP_SIZE_H
#define VP_SIZE_H

#include <stdint.h>

/* The rule above in a few words, for error messages. */
#define VP_SIZE_RULE                                                                     \
	"decimal digits, optionally K, M, G or T (powers of 1024), then B or iB"

/* Parse a size as described above into *out.  0, or -EINVAL (also on
 * overflow) with *out unchanged. */
int vp_parse_size(const char *text, uint64_t *out);

/* Parse a count: decimal digits only, no suffix, at most max.  0, or
 * -EINVAL (syntax, or above max) with *out unchanged. */
int vp_parse_count(const char *text, uint64_t max, uint64_t *out);

#endif
