/*
 * Unit tests for scalar: Java's Double.toString (Java 19+ shortest form) and the text of each
 * JSON scalar type.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "scalar.h"

static void expect_double(double value, const char *expected)
{
    char buf[64];
    scalar_format_double(value, buf, sizeof(buf));
    if (strcmp(buf, expected) != 0)
        fail_msg("%.17g: got \"%s\", expected \"%s\"", value, buf, expected);
}

static void test_plain_range(void **state)
{
    (void)state;
    expect_double(1.1, "1.1");
    expect_double(1.10, "1.1");
    expect_double(1000.0, "1000.0");
    expect_double(8080.0, "8080.0");
    expect_double(100.0, "100.0");
    expect_double(0.5, "0.5");
    expect_double(-1.5, "-1.5");
    expect_double(0.001, "0.001");
    expect_double(0.0123, "0.0123");
    expect_double(12345.678, "12345.678");
    expect_double(9999999.0, "9999999.0");
    expect_double(1234567.125, "1234567.125");
    expect_double(0.1 + 0.2, "0.30000000000000004");
    expect_double(1.0 / 3.0, "0.3333333333333333");
    expect_double(2.0 / 3.0, "0.6666666666666666");
    expect_double(685230.15, "685230.15");
    expect_double(90.5, "90.5");
}

static void test_scientific_range(void **state)
{
    (void)state;
    expect_double(1e7, "1.0E7");
    expect_double(1.0E-5, "1.0E-5");
    expect_double(1.234e-4, "1.234E-4");
    expect_double(123456789.0, "1.23456789E8");
    expect_double(-2.5e10, "-2.5E10");
    expect_double(1e23, "1.0E23");
    expect_double(2e23, "2.0E23");
    expect_double(DBL_MAX, "1.7976931348623157E308");
    expect_double(DBL_MIN, "2.2250738585072014E-308");
    expect_double(9007199254740992.0, "9.007199254740992E15");
    expect_double(9223372036854775808.0, "9.223372036854776E18");
    expect_double(0.0009999999999999998, "9.999999999999998E-4");
}

static void test_subnormals(void **state)
{
    (void)state;
    /* one digit would round-trip, but Java prefers the closer two-digit decimal */
    expect_double(4.9e-324, "4.9E-324");
    expect_double(2 * 4.9e-324, "9.9E-324");
    expect_double(3 * 4.9e-324, "1.5E-323");
}

static void test_specials(void **state)
{
    (void)state;
    expect_double(0.0, "0.0");
    expect_double(-0.0, "-0.0");
    expect_double((double)NAN, "NaN");
    expect_double((double)INFINITY, "Infinity");
    expect_double(-(double)INFINITY, "-Infinity");
}

static void test_round_trip_many(void **state)
{
    (void)state;
    /* Whatever the layout, the digits must read back as the same double. */
    unsigned seed = 12345;
    for (int i = 0; i < 20000; i++) {
        uint64_t bits = 0;
        for (int k = 0; k < 4; k++) {
            seed = seed * 1103515245u + 12345u;
            bits = (bits << 16) | ((seed >> 8) & 0xffffu);
        }
        double value;
        memcpy(&value, &bits, sizeof(value));
        if (!isfinite(value))
            continue;
        char buf[64];
        scalar_format_double(value, buf, sizeof(buf));
        double back = strtod(buf, NULL);
        if (memcmp(&back, &value, sizeof(value)) != 0)
            fail_msg("%a printed as %s reads back as %a", value, buf, back);
        assert_non_null(strchr(buf, '.'));
    }
}

static void test_small_buffer(void **state)
{
    (void)state;
    char buf[4];
    scalar_format_double(1234.5, buf, sizeof(buf));
    assert_string_equal(buf, "123");
    scalar_format_double(1.0, NULL, 0);
}

static void expect_text(json_t *value, const char *expected)
{
    char *text = scalar_to_text(value);
    assert_non_null(text);
    assert_string_equal(text, expected);
    free(text);
    json_decref(value);
}

static void test_to_text(void **state)
{
    (void)state;
    expect_text(json_string("hello"), "hello");
    expect_text(json_string(""), "");
    expect_text(json_integer(-42), "-42");
    expect_text(json_integer(INT64_MAX), "9223372036854775807");
    expect_text(json_real(1e3), "1000.0");
    expect_text(json_real(1e-5), "1.0E-5");
    expect_text(json_true(), "true");
    expect_text(json_false(), "false");
    expect_text(json_null(), "");

    char *text = scalar_to_text(NULL);
    assert_string_equal(text, "");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_range),  cmocka_unit_test(test_scientific_range),
        cmocka_unit_test(test_subnormals),   cmocka_unit_test(test_specials),
        cmocka_unit_test(test_round_trip_many), cmocka_unit_test(test_small_buffer),
        cmocka_unit_test(test_to_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
