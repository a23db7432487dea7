/*
 * Spring profile expressions: the cases below mirror what Spring Framework's Profiles.of
 * accepts, rejects and matches, so a repository selects the same documents here as there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "profile_expr.h"

typedef struct match_case {
    const char *expr;
    const char *active; /* comma-separated */
    int expected;       /* 1, 0, or -1 (malformed) */
} match_case;

static const match_case CASES[] = {
    {"dev", "dev", 1},
    {"dev", "prod", 0},
    {"dev", "dev,mysql", 1},
    {"mysql", "dev,mysql", 1},
    {"!prod", "dev", 1},
    {"!prod", "prod", 0},
    {"!dev", "dev,mysql", 0},
    {"dev & mysql", "dev,mysql", 1},
    {"dev & mysql", "dev", 0},
    {"dev&!cloud", "dev", 1},
    {"dev & !cloud", "dev,cloud", 0},
    {"a | b", "b", 1},
    {"a | b", "c", 0},
    {"a | b | c", "c", 1},
    {"a & b & c", "a,b,c", 1},
    {"a & b & c", "a,b", 0},
    {"(a | b) & c", "b,c", 1},
    {"(a | b) & c", "b", 0},
    {"a & (b | c)", "a,c", 1},
    {"!(a & b)", "a,b", 0},
    {"!(a & b)", "a", 1},
    {"!!a", "a", 1},
    {"!(a)", "b", 1},
    {"((a))", "a", 1},
    {"  dev  ", "dev", 1},
    {"dev,prod", "prod", 1}, /* a list: any of them */
    {"dev, prod", "stage", 0},
    {"dev,!prod", "stage", 1},
    {"default", "default", 1},
    {"default", "dev", 0}, /* the default profile is active only when asked for */
    {"Dev", "dev", 0},     /* case-sensitive */
    {"a b", "a", 0},       /* one token "a b", not a profile name */
    /* Malformed, as Spring rejects them. */
    {"a & b | c", "a", -1},
    {"a | b & c", "a", -1},
    {"", "a", -1},
    {"   ", "a", -1},
    {"!", "a", -1},
    {"a &", "a", 1}, /* Spring: a trailing operator joins nothing and is ignored */
    {"()", "a", -1},
    {"a,,b", "a", -1},
    {"a | (b & c) | d", "d", 1},
    {"(a & b) | (c & d)", "c,d", 1},
    {"(a & b) | (c & d)", "a,d", 0},
};

static size_t split(const char *csv, char buf[][32], const char **out, size_t max)
{
    size_t n = 0;
    for (const char *s = csv; *s != '\0' && n < max;) {
        const char *comma = strchr(s, ',');
        size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
        memcpy(buf[n], s, len);
        buf[n][len] = '\0';
        out[n] = buf[n];
        n++;
        if (comma == NULL)
            break;
        s = comma + 1;
    }
    return n;
}

static void test_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(CASES) / sizeof(*CASES); i++) {
        char names[8][32];
        const char *active[8];
        char msg[256] = "";
        size_t n = split(CASES[i].active, names, active, 8);
        int got = profile_expr_match(CASES[i].expr, active, n, msg, sizeof(msg));
        if (got != CASES[i].expected)
            fail_msg("[%s] with {%s}: expected %d, got %d (%s)", CASES[i].expr, CASES[i].active,
                     CASES[i].expected, got, msg);
        if (got < 0)
            assert_non_null(strstr(msg, "profile expression"));
        assert_int_equal(profile_expr_validate(CASES[i].expr, NULL, 0), got < 0 ? -1 : 0);
    }
}

static void test_null_matches(void **state)
{
    (void)state;
    assert_int_equal(profile_expr_match(NULL, NULL, 0, NULL, 0), 1);
}

static void test_caps(void **state)
{
    char deep[200];
    char msg[512];
    const char *active[] = {"a"};
    size_t i;

    (void)state;
    /* Nesting deeper than the cap fails instead of recursing without bound. */
    for (i = 0; i < 100; i++)
        deep[i] = '(';
    deep[i++] = 'a';
    deep[i] = '\0';
    assert_int_equal(profile_expr_match(deep, active, 1, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "deeply"));
    /* Within the cap, unclosed parentheses are tolerated, as in Spring. */
    assert_int_equal(profile_expr_match("((a", active, 1, msg, sizeof(msg)), 1);

    char longexpr[PROFILE_EXPR_MAX_LEN + 2];
    memset(longexpr, 'a', sizeof(longexpr) - 1);
    longexpr[sizeof(longexpr) - 1] = '\0';
    assert_int_equal(profile_expr_match(longexpr, active, 1, msg, sizeof(msg)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_null_matches),
        cmocka_unit_test(test_caps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
