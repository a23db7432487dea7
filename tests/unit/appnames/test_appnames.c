/* Changed paths to application names, as Spring's /monitor answers them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "change/appnames.h"

#include <stdlib.h>
#include <string.h>

static void assert_names(const char *const *paths, const char *expected_json)
{
    json_t *names = json_array();
    for (size_t i = 0; paths[i]; i++)
        assert_int_equal(appnames_add_from_path(names, paths[i]), 0);
    char *text = json_dumps(names, JSON_COMPACT);
    assert_string_equal(text, expected_json);
    free(text);
    json_decref(names);
}

static void longest_prefix_first(void **state)
{
    (void)state;
    const char *paths[] = {"foo-bar-dev.yml", NULL};
    assert_names(paths, "[\"foo-bar-dev\",\"foo-bar\",\"foo\"]");
}

static void strips_directories_and_extension(void **state)
{
    (void)state;
    const char *paths[] = {"config/sub/orders.properties", NULL};
    assert_names(paths, "[\"orders\"]");
}

static void application_files_concern_everyone(void **state)
{
    (void)state;
    const char *paths[] = {"application.yml", "application-prod.yml", "x/application.properties",
                           NULL};
    assert_names(paths, "[\"*\"]");
}

static void duplicates_are_listed_once(void **state)
{
    (void)state;
    const char *paths[] = {"orders.yml", "orders-dev.yml", "orders-prod.yml", NULL};
    assert_names(paths, "[\"orders\",\"orders-dev\",\"orders-prod\"]");
}

static void names_starting_with_application_are_not_everyone(void **state)
{
    (void)state;
    const char *paths[] = {"applications-api.yml", NULL};
    assert_names(paths, "[\"applications-api\",\"applications\"]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(longest_prefix_first),
        cmocka_unit_test(strips_directories_and_extension),
        cmocka_unit_test(application_files_concern_everyone),
        cmocka_unit_test(duplicates_are_listed_once),
        cmocka_unit_test(names_starting_with_application_are_not_everyone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
