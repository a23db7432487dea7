/*
 * Validation of names, labels, profiles and resource paths: the checks every request passes
 * before anything touches the repository. The traversal shapes come from Spring's CVEs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "errors.h"
#include "names.h"

#include <string.h>

static void decodes_underscore_marker_to_slash(void **state)
{
    (void)state;
    char out[128];
    assert_int_equal(names_decode("feature(_)x", "label", out, sizeof(out)), 0);
    assert_string_equal(out, "feature/x");
    assert_int_equal(names_decode("orders", "name", out, sizeof(out)), 0);
    assert_string_equal(out, "orders");
    assert_int_equal(names_decode("orders,billing", "name", out, sizeof(out)), 0);
    assert_string_equal(out, "orders,billing");
}

static void rejects_traversal_in_names(void **state)
{
    (void)state;
    char out[128];
    static const char *const bad[] = {
        "(_)etc",       "..",        "a..b",     "(_)..(_)x", "x(_)..(_)y", "a#b",
        "a\\b",         "x(_)(_)y",  "x(_)",     ".",         "x(_).(_)y",  "x(_).",
        "\x01",         "a\nb",      "",         "..(_)x",    "(_)",        "a(_)..",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = names_decode(bad[i], "name", out, sizeof(out));
        if (rc != ERR_BAD_REQUEST)
            fail_msg("accepted hostile name \"%s\"", bad[i]);
    }
}

static void rejects_names_too_long_for_buffer(void **state)
{
    (void)state;
    char out[8];
    assert_int_equal(names_decode("abcdefghij", "name", out, sizeof(out)), ERR_BAD_REQUEST);
}

static void accepts_spring_profiles(void **state)
{
    (void)state;
    static const char *const good[] = {"dev", "dev,mysql", "a", "prod-eu.1", "x+y", "a@b",
                                       "default", "k8s_prod", "1"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (names_check_profiles(good[i]) != 0)
            fail_msg("rejected valid profiles \"%s\"", good[i]);
}

static void rejects_bad_profiles(void **state)
{
    (void)state;
    static const char *const bad[] = {"",      ",",    "dev,",  ",dev",   "-dev",  "dev-",
                                      "de v",  "a/b",  "..",    "a\\b",   "dev,,x", "%2e",
                                      "dev#1", ".dev", "dev.",  "a;b",    "(_)"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (names_check_profiles(bad[i]) != ERR_BAD_REQUEST)
            fail_msg("accepted invalid profiles \"%s\"", bad[i]);
}

static void joins_resource_paths(void **state)
{
    (void)state;
    char out[256];
    char *segments[] = {"templates", "nginx.conf"};
    assert_int_equal(names_join_path(segments, 2, out, sizeof(out)), 0);
    assert_string_equal(out, "templates/nginx.conf");
    char *marked[] = {"templates(_)sub(_)file.txt"};
    assert_int_equal(names_join_path(marked, 1, out, sizeof(out)), 0);
    assert_string_equal(out, "templates/sub/file.txt");
}

static void rejects_traversal_in_paths(void **state)
{
    (void)state;
    char out[256];
    /* Each entry is one decoded segment list, written as a single segment or a pair. */
    static const char *const bad[][2] = {
        {"..", "x"},       {"a", ".."},         {"(_)..(_)x", NULL}, {"..(_)x", NULL},
        {"a(_)(_)b", NULL}, {"(_)etc", NULL},   {"a\\..\\b", NULL},  {".", NULL},
        {"a/../b", NULL},  {"a", "b/../../c"},  {"x\x01", NULL},     {"a#b", NULL},
        {"", NULL},        {"a(_)", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *segments[2] = {(char *)(uintptr_t)bad[i][0], (char *)(uintptr_t)bad[i][1]};
        size_t count = bad[i][1] ? 2 : 1;
        if (names_join_path(segments, count, out, sizeof(out)) != ERR_BAD_REQUEST)
            fail_msg("accepted hostile path \"%s\" \"%s\"", bad[i][0],
                     bad[i][1] ? bad[i][1] : "");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decodes_underscore_marker_to_slash),
        cmocka_unit_test(rejects_traversal_in_names),
        cmocka_unit_test(rejects_names_too_long_for_buffer),
        cmocka_unit_test(accepts_spring_profiles),
        cmocka_unit_test(rejects_bad_profiles),
        cmocka_unit_test(joins_resource_paths),
        cmocka_unit_test(rejects_traversal_in_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
