/* SPDX-License-Identifier: MIT */
/*
 * The verification data pattern (common/pattern.c) of vproxy-guest and the
 * bench's guest: a filled block checks clean, the first changed word is
 * found, and another writer, block or generation gives other data.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pattern.h"

#define WORDS 512

static uint64_t buf[WORDS];

START_TEST(fill_then_check)
{
	uint64_t seed = vp_pattern_seed(5, 7, 1);

	vp_pattern_fill(seed, buf, sizeof(buf));
	ck_assert_uint_eq(vp_pattern_check(seed, buf, sizeof(buf)), WORDS);
	for (size_t i = 0; i < WORDS; i++)
		ck_assert_uint_eq(buf[i], vp_pattern_word(seed, i));
	/* a trailing partial word is neither written nor checked */
	memset(buf, 0, sizeof(buf));
	vp_pattern_fill(seed, buf, 12);
	ck_assert_uint_eq(buf[1], 0);
	ck_assert_uint_eq(vp_pattern_check(seed, buf, 12), 1);
	ck_assert_uint_eq(vp_pattern_check(seed, buf, 7), 0);
}
END_TEST

START_TEST(first_bad_word)
{
	static const size_t at[] = {0, 1, 17, WORDS - 1};
	uint64_t seed = vp_pattern_seed(1, 0, 3);

	for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++) {
		vp_pattern_fill(seed, buf, sizeof(buf));
		buf[at[k]] ^= 1ull << 63;
		if (at[k] + 1 < WORDS)
			buf[at[k] + 1] = 0; /* later damage does not hide it */
		ck_assert_uint_eq(vp_pattern_check(seed, buf, sizeof(buf)), at[k]);
	}
	memset(buf, 0, sizeof(buf));
	ck_assert_uint_eq(vp_pattern_check(seed, buf, sizeof(buf)), 0);
}
END_TEST

START_TEST(seeds_differ)
{
	/* neighbours in each part, and parts that differ by the same bits */
	const uint64_t seeds[] = {
	        vp_pattern_seed(0, 0, 0),
	        vp_pattern_seed(1, 0, 0),
	        vp_pattern_seed(0, 1, 0),
	        vp_pattern_seed(0, 0, 1),
	        vp_pattern_seed(1, 1, 0),
	        vp_pattern_seed(1, 0, 1),
	        vp_pattern_seed(0, 1, 1),
	        vp_pattern_seed(1, 1, 1),
	        vp_pattern_seed(1ull << 40, 0, 0),
	        vp_pattern_seed(0, 0, 1u << 8),
	        vp_pattern_seed(5ull << 32 | 1, 9, 2),
	        vp_pattern_seed(5ull << 32 | 1, 9, 3),
	};
	const size_t n = sizeof(seeds) / sizeof(seeds[0]);

	for (size_t i = 0; i < n; i++) {
		for (size_t j = i + 1; j < n; j++) {
			ck_assert_uint_ne(seeds[i], seeds[j]);
			vp_pattern_fill(seeds[i], buf, sizeof(buf));
			ck_assert_uint_eq(vp_pattern_check(seeds[j], buf, sizeof(buf)),
			                  0);
		}
	}
	/* stable across runs: data written by one process is checked by another */
	ck_assert_uint_eq(vp_pattern_seed(5, 7, 1), vp_pattern_seed(5, 7, 1));
	ck_assert_uint_eq(vp_mix64(0), 0);
	ck_assert_uint_eq(vp_mix64(1), 0x5692161d100b05e5ull);
}
END_TEST

static Suite *pattern_suite(void)
{
	Suite *s = suite_create("pattern");
	TCase *t = tcase_create("pattern");

	tcase_add_test(t, fill_then_check);
	tcase_add_test(t, first_bad_word);
	tcase_add_test(t, seeds_differ);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(pattern_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
