/* SPDX-License-Identifier: MIT */
/* Unit tests of the latency histogram (common/hist.c) of the bench,
 * its guest and vproxy-guest. */
#include "hist.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct hist a, b, c;

START_TEST(test_bucket_layout)
{
	uint64_t prev_max = 0;

	/* exact below the linear limit */
	for (uint64_t v = 0; v < HIST_LINEAR; v++) {
		ck_assert_uint_eq(hist_bucket(v), v);
		ck_assert_uint_eq(hist_bucket_max(hist_bucket(v)), v);
	}
	/* every value lands in a bucket whose upper edge is >= it and within
	 * 1/128 of it; buckets tile the line without gaps */
	for (unsigned bkt = HIST_LINEAR; bkt < HIST_BUCKETS - 1; bkt++) {
		uint64_t hi = hist_bucket_max(bkt), lo = hist_bucket_max(bkt - 1) + 1;

		ck_assert_uint_gt(hi, prev_max);
		ck_assert_uint_eq(hist_bucket(lo), bkt);
		ck_assert_uint_eq(hist_bucket(hi), bkt);
		ck_assert((double)(hi - lo) <= (double)lo / HIST_SUB + 1);
		prev_max = hi;
	}
	/* beyond the range: the last bucket */
	ck_assert_uint_eq(hist_bucket(UINT64_MAX), HIST_BUCKETS - 1);
}
END_TEST

START_TEST(test_percentiles_uniform)
{
	hist_init(&a);
	for (uint64_t v = 1; v <= 100000; v++)
		hist_add(&a, v * 10); /* 10 ns .. 1 ms */
	ck_assert_uint_eq(a.count, 100000);
	ck_assert_uint_eq(a.min_ns, 10);
	ck_assert_uint_eq(a.max_ns, 1000000);
	ck_assert(hist_mean(&a) > 500004 && hist_mean(&a) < 500006);
	/* within the bucket precision of the exact order statistic */
	ck_assert(llabs((long long)hist_percentile(&a, 0.50) - 500000) <= 500000 / 100);
	ck_assert(llabs((long long)hist_percentile(&a, 0.99) - 990000) <= 990000 / 100);
	ck_assert(llabs((long long)hist_percentile(&a, 0.999) - 999000) <= 999000 / 100);
	ck_assert_uint_eq(hist_percentile(&a, 1.0), 1000000);
	ck_assert_uint_eq(hist_percentile(&a, 0.0), 10);
}
END_TEST

START_TEST(test_percentile_skewed)
{
	/* 990 fast, 10 slow: p99 is fast, p99.9 is slow (not an average) */
	hist_init(&a);
	for (int i = 0; i < 990; i++)
		hist_add(&a, 2000);
	for (int i = 0; i < 10; i++)
		hist_add(&a, 5000000);
	ck_assert(hist_percentile(&a, 0.99) <= 2016);
	ck_assert(hist_percentile(&a, 0.991) >= 4900000);
	ck_assert_uint_eq(hist_percentile(&a, 0.999), 5000000);
}
END_TEST

START_TEST(test_merge_equals_union)
{
	hist_init(&a);
	hist_init(&b);
	hist_init(&c);
	for (uint64_t v = 0; v < 50000; v++) {
		uint64_t x = (v * 2654435761u) % 3000000;

		hist_add(v % 3 ? &a : &b, x);
		hist_add(&c, x);
	}
	hist_merge(&a, &b);
	ck_assert_uint_eq(a.count, c.count);
	ck_assert_uint_eq(a.sum_ns, c.sum_ns);
	ck_assert_uint_eq(a.min_ns, c.min_ns);
	ck_assert_uint_eq(a.max_ns, c.max_ns);
	ck_assert_mem_eq(a.b, c.b, sizeof(a.b));
	ck_assert_uint_eq(hist_percentile(&a, 0.99), hist_percentile(&c, 0.99));
}
END_TEST

START_TEST(test_empty)
{
	hist_init(&a);
	hist_init(&b);
	ck_assert_uint_eq(hist_percentile(&a, 0.5), 0);
	ck_assert(hist_mean(&a) == 0);
	hist_merge(&a, &b);
	ck_assert_uint_eq(a.count, 0);
	ck_assert_uint_eq(a.min_ns, UINT64_MAX);
}
END_TEST

START_TEST(test_text_roundtrip)
{
	char *buf = NULL, *line, *save = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	hist_init(&a);
	hist_init(&b);
	hist_init(&c);
	for (uint64_t v = 1; v < 20000; v += 7)
		hist_add(&a, v * v);
	hist_add(&c, 42);
	ck_assert_ptr_nonnull(f);
	hist_write(&a, "lat_read", f);
	hist_write(&c, "lat_write", f);
	fclose(f);
	hist_init(&c);
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		int r = hist_parse_line(&b, "lat_read", line);

		if (r == 0)
			r = hist_parse_line(&c, "lat_write", line);
		ck_assert_int_eq(r, 1);
	}
	ck_assert_uint_eq(b.count, a.count);
	ck_assert_uint_eq(b.sum_ns, a.sum_ns);
	ck_assert_uint_eq(b.min_ns, a.min_ns);
	ck_assert_uint_eq(b.max_ns, a.max_ns);
	ck_assert_mem_eq(b.b, a.b, sizeof(a.b));
	ck_assert_uint_eq(c.count, 1);
	ck_assert_uint_eq(hist_percentile(&c, 0.5), 42);
	ck_assert_int_eq(hist_parse_line(&b, "lat_read", "lat_read b 999999 1"), -1);
	ck_assert_int_eq(hist_parse_line(&b, "lat_read", "lat_readx n 1 2 3 4"), 0);
	free(buf);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("bench_hist");
	TCase *tc = tcase_create("hist");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_bucket_layout);
	tcase_add_test(tc, test_percentiles_uniform);
	tcase_add_test(tc, test_percentile_skewed);
	tcase_add_test(tc, test_merge_equals_union);
	tcase_add_test(tc, test_empty);
	tcase_add_test(tc, test_text_roundtrip);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
