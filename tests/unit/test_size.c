/* SPDX-License-Identifier: MIT */
/*
 * The one size and count parser (common/size.c) that vproxyd's config and
 * plugins, vproxy-img, vproxy-guest and the bench share: every accepted
 * form, every refused one, and overflow exactly at the boundary.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "size.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const struct {
	const char *text;
	uint64_t value;
} good_sizes[] = {
        {"0", 0},
        {"1", 1},
        {"4096", 4096},
        {"010", 10}, /* decimal, never octal */
        {"0010K", 10ull << 10},
        {"08", 8},
        {"512K", 512ull << 10},
        {"512k", 512ull << 10},
        {"64M", 64ull << 20},
        {"64m", 64ull << 20},
        {"1G", 1ull << 30},
        {"1g", 1ull << 30},
        {"1T", 1ull << 40},
        {"1t", 1ull << 40},
        {"2MiB", 2ull << 20},
        {"2MB", 2ull << 20},
        {"2kiB", 2ull << 10},
        {"3k", 3ull << 10},
        {"512B", 512},
        {"0K", 0},
        {"18446744073709551615", UINT64_MAX},
        {"16777215T", 16777215ull << 40},
        {"17179869183G", 17179869183ull << 30},
        {"17592186044415M", 17592186044415ull << 20},
        {"18014398509481983K", 18014398509481983ull << 10},
};

START_TEST(size_good)
{
	uint64_t v = 1234;

	ck_assert_int_eq(vp_parse_size(good_sizes[_i].text, &v), 0);
	ck_assert_uint_eq(v, good_sizes[_i].value);
}
END_TEST

static const char *const bad_sizes[] = {
        /* nothing, or no digits */
        "",
        "M",
        "K",
        "B",
        "iB",
        /* signs and spaces */
        "-1",
        "+1",
        " 1",
        "1 ",
        "\t1",
        "1\n",
        "1 K",
        "- 1",
        /* other bases and notations */
        "0x10",
        "0X10",
        "0b1",
        "0o10",
        "1e3",
        "1.5G",
        ".5M",
        "1,000",
        /* suffixes: unknown, doubled, truncated, lower-case b */
        "1X",
        "1P",
        "1E",
        "1MM",
        "1iB",
        "1MiBB",
        "1Mi",
        "1Mib",
        "1mb",
        "1b",
        "1KB ",
        "1Bi",
        /* overflow, just past each boundary */
        "18446744073709551616",
        "99999999999999999999",
        "16777216T",
        "17179869184G",
        "17592186044416M",
        "18014398509481984K",
        "99999999999999999999K",
};

START_TEST(size_bad)
{
	uint64_t v = 1234;

	ck_assert_int_eq(vp_parse_size(bad_sizes[_i], &v), -EINVAL);
	ck_assert_uint_eq(v, 1234);
}
END_TEST

START_TEST(size_null)
{
	uint64_t v = 1234;

	ck_assert_int_eq(vp_parse_size(NULL, &v), -EINVAL);
	ck_assert_uint_eq(v, 1234);
}
END_TEST

static const struct {
	const char *text;
	uint64_t max, value;
} good_counts[] = {
        {"0", 10, 0},
        {"10", 10, 10},
        {"010", 10, 10},
        {"0032767", 32768, 32767},
        {"18446744073709551615", UINT64_MAX, UINT64_MAX},
};

START_TEST(count_good)
{
	uint64_t v = 1234;

	ck_assert_int_eq(vp_parse_count(good_counts[_i].text, good_counts[_i].max, &v),
	                 0);
	ck_assert_uint_eq(v, good_counts[_i].value);
}
END_TEST

static const struct {
	const char *text;
	uint64_t max;
} bad_counts[] = {
        {"", 10},
        {"11", 10},
        {"-1", 10},
        {"+1", 10},
        {" 1", 10},
        {"1 ", 10},
        {"0x1", 10},
        {"1K", UINT64_MAX},
        {"1B", 10},
        {"1.0", 10},
        {"18446744073709551616", UINT64_MAX},
        {"32769", 32768},
        {"1e2", 1000},
};

START_TEST(count_bad)
{
	uint64_t v = 1234;

	ck_assert_int_eq(vp_parse_count(bad_counts[_i].text, bad_counts[_i].max, &v),
	                 -EINVAL);
	ck_assert_int_eq(vp_parse_count(NULL, UINT64_MAX, &v), -EINVAL);
	ck_assert_uint_eq(v, 1234);
}
END_TEST

static Suite *size_suite(void)
{
	Suite *s = suite_create("size");
	TCase *size = tcase_create("size");
	TCase *count = tcase_create("count");

	tcase_add_loop_test(size, size_good, 0, N(good_sizes));
	tcase_add_loop_test(size, size_bad, 0, N(bad_sizes));
	tcase_add_test(size, size_null);
	suite_add_tcase(s, size);
	tcase_add_loop_test(count, count_good, 0, N(good_counts));
	tcase_add_loop_test(count, count_bad, 0, N(bad_counts));
	suite_add_tcase(s, count);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(size_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
