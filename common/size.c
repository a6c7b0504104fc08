/* SPDX-License-Identifier: MIT */
/* Sizes and counts: one parser for everything a user types (size.h).
 * Hand-written instead of strtoull(): strtoull accepts leading spaces,
 * signs (and negates "-1" into a huge value), and with base 0 reads
 * "010" as octal and "0x10" as hex. */
#include "size.h"

#include <errno.h>
#include <string.h>

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Decimal digits at *sp, advancing *sp past them.  0 or -EINVAL when
 * there is no digit or the value exceeds UINT64_MAX. */
static int parse_digits(const char **sp, uint64_t *out)
{
	const char *s = *sp;
	uint64_t value = 0;

	if (!is_digit(*s))
		return -EINVAL;
	for (; is_digit(*s); s++) {
		if (__builtin_mul_overflow(value, 10u, &value) ||
		    __builtin_add_overflow(value, (uint64_t)(*s - '0'), &value))
			return -EINVAL;
	}
	*sp = s;
	*out = value;
	return 0;
}

/* The binary shift of a K/M/G/T suffix letter (either case), or 0. */
static unsigned unit_shift(char c)
{
	switch (c) {
	case 'k':
	case 'K': return 10;
	case 'm':
	case 'M': return 20;
	case 'g':
	case 'G': return 30;
	case 't':
	case 'T': return 40;
	default: return 0;
	}
}

int vp_parse_size(const char *text, uint64_t *out)
{
	const char *s = text;
	uint64_t value;
	unsigned shift;

	if (!s || parse_digits(&s, &value) < 0)
		return -EINVAL;
	shift = unit_shift(*s);
	if (shift) {
		s++;
		if (strcmp(s, "iB") == 0)
			s += 2;
		else if (strcmp(s, "B") == 0)
			s++;
	} else if (strcmp(s, "B") == 0) {
		s++;
	}
	if (*s != '\0')
		return -EINVAL;
	if (shift && value > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = value << shift;
	return 0;
}

int vp_parse_count(const char *text, uint64_t max, uint64_t *out)
{
	const char *s = text;
	uint64_t value;

	if (!s || parse_digits(&s, &value) < 0 || *s != '\0' || value > max)
		return -EINVAL;
	*out = value;
	return 0;
}
