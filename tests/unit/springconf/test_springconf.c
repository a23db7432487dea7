/*
 * Unit tests for springconf's search-path list, the one reader of --search-paths for the server
 * and for `almanac diff --repo-dir`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "springconf.h"

#include <stdlib.h>
#include <string.h>

static void assert_paths(const char *value, const char *const *expected)
{
    char **paths = springconf_search_paths(value);
    assert_non_null(paths);
    size_t i = 0;
    for (; expected[i] != NULL; i++) {
        if (paths[i] == NULL)
            fail_msg("'%s': entry %zu missing, expected '%s'", value, i, expected[i]);
        assert_string_equal(paths[i], expected[i]);
    }
    assert_null(paths[i]);
    springconf_search_paths_free(paths);
}

static void entries_are_trimmed_and_empty_ones_dropped(void **state)
{
    (void)state;
    assert_paths("a, {application}/b/ ,/c//,, ,/", (const char *const[]){"a", "{application}/b",
                                                                          "c", NULL});
    assert_paths("", (const char *const[]){NULL});
    assert_paths(NULL, (const char *const[]){NULL});
    assert_paths("{label}/x", (const char *const[]){"{label}/x", NULL});
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(entries_are_trimmed_and_empty_ones_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
