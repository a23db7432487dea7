/*
 * unit_flatrender — every tests/resources/flatrender/NAME.json (a flat map, key order as in the
 * file) rendered and compared byte for byte with NAME.expect.yml, NAME.expect.json,
 * NAME.expect.properties and NAME.expect.env, whichever exist. NAME.expect.error holds a
 * substring of the message the tree renderers (YAML, JSON, tree) must fail with; the
 * .properties and env renderers never look inside keys and must still succeed.
 *
 * Where a YAML rendering is expected, it is also read back with yamlconf_parse and must flatten
 * to the input map again (same keys, same values, same types): the property that matters to a
 * client.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_files.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flatrender.h"
#include "yamlconf.h"

#define CASE_DIR ALMANAC_TEST_RESOURCES "/flatrender"

typedef int (*renderer)(flatrender_buf *, const json_t *, char *, size_t);

static void check_output(const char *name, const char *ext, renderer fn, const json_t *flat)
{
    char path[1024];
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/%s.expect.%s", CASE_DIR, name, ext);
    char *want = test_read_file(path, &len);
    if (want == NULL)
        return;
    flatrender_buf buf = {NULL, 0};
    char msg[256] = "";
    if (fn(&buf, flat, msg, sizeof(msg)) != 0)
        fail_msg("%s.%s: failed: %s", name, ext, msg);
    assert_non_null(buf.data);
    assert_int_equal(buf.data[buf.len], '\0');
    if (buf.len != len || memcmp(buf.data, want, len) != 0)
        fail_msg("%s.%s differs\n--- expected\n%s\n--- actual\n%s", name, ext, want, buf.data);
    free(buf.data);
    free(want);
}

static void check_error(const char *name, const char *want, const json_t *flat)
{
    renderer tree_renderers[] = {flatrender_yaml, flatrender_json};
    for (size_t i = 0; i < 2; i++) {
        flatrender_buf buf = {NULL, 0};
        char msg[256] = "";
        if (tree_renderers[i](&buf, flat, msg, sizeof(msg)) == 0)
            fail_msg("%s: rendered, expected an error with '%s'", name, want);
        assert_null(buf.data);
        if (strstr(msg, want) == NULL)
            fail_msg("%s: error '%s' lacks '%s'", name, msg, want);
    }
    char msg[256] = "";
    assert_null(flatrender_tree(flat, msg, sizeof(msg)));
    assert_non_null(strstr(msg, want));

    flatrender_buf buf = {NULL, 0};
    assert_int_equal(flatrender_properties(&buf, flat, msg, sizeof(msg)), 0);
    free(buf.data);
    assert_int_equal(flatrender_env(&buf, flat, msg, sizeof(msg)), 0);
    free(buf.data);
}

/* The YAML output, read back as Spring would read a file, flattens to the same map. */
static void check_round_trip(const char *name, const json_t *flat)
{
    flatrender_buf buf = {NULL, 0};
    char msg[256];
    assert_int_equal(flatrender_yaml(&buf, flat, msg, sizeof(msg)), 0);
    confdoc_list list = {NULL, 0};
    confdoc_error err;
    if (yamlconf_parse(&list, buf.data, buf.len, NULL, &err) != 0)
        fail_msg("%s: output does not parse: %u:%u: %s\n%s", name, err.line, err.col, err.message,
                 buf.data);
    json_t *back = list.count > 0 ? list.docs[0].props : NULL;
    /* List padding renders as null, which flattens to "" (Spring's rule): skip those keys. */
    const char *key;
    json_t *value;
    json_object_foreach(back, key, value)
    {
        json_t *orig = json_object_get(flat, key);
        if (orig == NULL && json_is_string(value) && json_string_length(value) == 0)
            continue;
        if (orig == NULL || !json_equal(orig, value)) {
            char *o = orig ? json_dumps(orig, JSON_ENCODE_ANY) : NULL;
            char *v = json_dumps(value, JSON_ENCODE_ANY);
            fail_msg("%s: '%s' reads back as %s, was %s\n%s", name, key, v, o ? o : "absent",
                     buf.data);
        }
    }
    json_object_foreach((json_t *)flat, key, value)
    {
        if (json_object_get(back, key) == NULL)
            fail_msg("%s: '%s' lost in\n%s", name, key, buf.data);
    }
    confdoc_list_dispose(&list);
    free(buf.data);
}

static void run_case(void **state)
{
    const char *name = *state;
    char path[1024];
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/%s.json", CASE_DIR, name);
    json_error_t jerr;
    json_t *flat = json_load_file(path, 0, &jerr);
    if (flat == NULL)
        fail_msg("%s: %s", path, jerr.text);
    char *before = json_dumps(flat, JSON_COMPACT);

    snprintf(path, sizeof(path), "%s/%s.expect.error", CASE_DIR, name);
    char *error = test_read_file(path, &len);
    if (error != NULL) {
        error[strcspn(error, "\n")] = '\0';
        check_error(name, error, flat);
        free(error);
    } else {
        check_output(name, "yml", flatrender_yaml, flat);
        check_output(name, "json", flatrender_json, flat);
        check_output(name, "properties", flatrender_properties, flat);
        check_output(name, "env", flatrender_env, flat);
        snprintf(path, sizeof(path), "%s/%s.expect.yml", CASE_DIR, name);
        char *yml = test_read_file(path, &len);
        if (yml != NULL)
            check_round_trip(name, flat);
        free(yml);
    }
    /* Rendering never changes its input. */
    char *after = json_dumps(flat, JSON_COMPACT);
    assert_string_equal(before, after);
    free(before);
    free(after);
    json_decref(flat);
}

static void test_env_names(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"foo.bar-baz[0]", "FOO_BAR_BAZ_0"},
        {"a[0].b", "A_0_B"},
        {"a[0][1]", "A_0_1"},
        {"server.port", "SERVER_PORT"},
        {"x..y", "X_Y"},
        {"_a_", "A"},
        {"1st", "_1ST"},
        {"", "_"},
        {"...", "_"},
        {"caf\xc3\xa9.key", "CAF_KEY"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *name = flatrender_env_name(cases[i][0]);
        assert_non_null(name);
        assert_string_equal(name, cases[i][1]);
        free(name);
    }
}

/* The tree is a new reference the caller owns and may change without touching the input. */
static void test_tree_is_independent(void **state)
{
    (void)state;
    json_t *flat = json_pack("{s:s, s:i}", "a.b", "x", "a.c[0]", 1);
    char msg[256];
    json_t *tree = flatrender_tree(flat, msg, sizeof(msg));
    assert_non_null(tree);
    json_t *want = json_pack("{s:{s:s, s:[i]}}", "a", "b", "x", "c", 1);
    assert_true(json_equal(tree, want));
    json_object_set_new(json_object_get(tree, "a"), "b", json_string("changed"));
    assert_string_equal(json_string_value(json_object_get(flat, "a.b")), "x");
    json_decref(want);
    json_decref(tree);
    json_decref(flat);
}

/* Not an object: refused with a message, by every renderer. */
static void test_not_an_object(void **state)
{
    (void)state;
    json_t *list = json_array();
    flatrender_buf buf = {NULL, 0};
    char msg[256] = "";
    assert_int_equal(flatrender_yaml(&buf, list, msg, sizeof(msg)), -1);
    assert_int_equal(flatrender_properties(&buf, list, msg, sizeof(msg)), -1);
    assert_int_equal(flatrender_env(&buf, list, msg, sizeof(msg)), -1);
    assert_null(buf.data);
    assert_true(msg[0] != '\0');
    json_decref(list);
}

/* A dense list of many elements stays within the padding budget. */
static void test_large_dense_list(void **state)
{
    (void)state;
    json_t *flat = json_object();
    char key[32];
    for (int i = 50000 - 1; i >= 0; i--) {
        snprintf(key, sizeof(key), "l[%d]", i);
        json_object_set_new(flat, key, json_integer(i));
    }
    flatrender_buf buf = {NULL, 0};
    char msg[256];
    assert_int_equal(flatrender_json(&buf, flat, msg, sizeof(msg)), 0);
    assert_int_equal(strncmp(buf.data, "{\"l\":[0,1,2,", 12), 0);
    free(buf.data);
    json_decref(flat);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(((const struct CMUnitTest *)a)->name, ((const struct CMUnitTest *)b)->name);
}

int main(void)
{
    static const struct CMUnitTest direct[] = {
        cmocka_unit_test(test_env_names),
        cmocka_unit_test(test_tree_is_independent),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_large_dense_list),
    };
    DIR *dir = opendir(CASE_DIR);
    if (dir == NULL) {
        fprintf(stderr, "cannot open %s\n", CASE_DIR);
        return 1;
    }
    struct CMUnitTest *tests = NULL;
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        size_t len = strlen(entry->d_name);
        if (len <= 5 || strcmp(entry->d_name + len - 5, ".json") != 0 ||
            (len > 12 && strcmp(entry->d_name + len - 12, ".expect.json") == 0))
            continue;
        tests = realloc(tests, (count + 1) * sizeof(*tests));
        if (tests == NULL)
            return 1;
        char *name = strndup(entry->d_name, len - 5);
        tests[count++] = (struct CMUnitTest){name, run_case, NULL, NULL, name};
    }
    closedir(dir);
    qsort(tests, count, sizeof(*tests), name_cmp);
    int failed = _cmocka_run_group_tests("flatrender_cases", tests, count, NULL, NULL);
    failed += cmocka_run_group_tests(direct, NULL, NULL);
    for (size_t i = 0; i < count; i++)
        free((void *)tests[i].initial_state);
    free(tests);
    return count >= 20 && failed == 0 ? 0 : 1;
}
