/*
 * unit_propfile — every tests/resources/properties/NAME.properties parsed and compared with
 * NAME.expect.json, which holds either
 *   {"documents": [{"props": {...}, "origins": {...}, "on_profile": "dev" | null}, ...]}
 * (key order is compared too) or {"error": {"line": L, "col": C, "message": "substring"}},
 * optionally with "limits": {"max_bytes": ..., "max_entries": ..., ...} to parse under.
 * A few properties of the parser that data files cannot express are tested directly below.
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

#include "propfile.h"

#define CASE_DIR ALMANAC_TEST_RESOURCES "/properties"

/* Same keys in the same order with equal values. */
static void assert_ordered_equal(const char *name, const char *what, json_t *expected,
                                 json_t *actual)
{
    char *e = json_dumps(expected, JSON_COMPACT | JSON_ENCODE_ANY);
    char *a = json_dumps(actual, JSON_COMPACT | JSON_ENCODE_ANY);
    if (strcmp(e, a) != 0)
        print_error("%s: %s differ\n  expected %s\n  actual   %s\n", name, what, e, a);
    assert_string_equal(e, a);
    free(e);
    free(a);
}

static void run_case(void **state)
{
    const char *name = *state;
    char path[1024];
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/%s.properties", CASE_DIR, name);
    char *data = test_read_file(path, &len);
    assert_non_null(data);
    snprintf(path, sizeof(path), "%s/%s.expect.json", CASE_DIR, name);
    json_error_t jerr;
    json_t *expect = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    if (expect == NULL)
        fail_msg("%s: %s", path, jerr.text);

    confdoc_limits limits = CONFDOC_LIMITS_DEFAULT;
    json_t *l = json_object_get(expect, "limits");
    if (l != NULL) {
        json_t *v;
        if ((v = json_object_get(l, "max_bytes")) != NULL)
            limits.max_bytes = (size_t)json_integer_value(v);
        if ((v = json_object_get(l, "max_key_len")) != NULL)
            limits.max_key_len = (size_t)json_integer_value(v);
        if ((v = json_object_get(l, "max_entries")) != NULL)
            limits.max_entries = (size_t)json_integer_value(v);
        if ((v = json_object_get(l, "max_documents")) != NULL)
            limits.max_documents = (size_t)json_integer_value(v);
    }

    confdoc_list list = {NULL, 0};
    confdoc_error err;
    int rc = propfile_parse(&list, data, len, &limits, &err);
    json_t *want_error = json_object_get(expect, "error");
    if (want_error != NULL) {
        if (rc == 0)
            fail_msg("%s: parsed, expected an error", name);
        assert_int_equal(list.count, 0);
        assert_null(list.docs);
        const char *message = json_string_value(json_object_get(want_error, "message"));
        if (strstr(err.message, message) == NULL)
            fail_msg("%s: error '%s' lacks '%s'", name, err.message, message);
        assert_int_equal(err.line, json_integer_value(json_object_get(want_error, "line")));
        assert_int_equal(err.col, json_integer_value(json_object_get(want_error, "col")));
    } else {
        if (rc != 0)
            fail_msg("%s: %u:%u: %s", name, err.line, err.col, err.message);
        json_t *docs = json_object_get(expect, "documents");
        assert_int_equal(list.count, json_array_size(docs));
        for (size_t i = 0; i < list.count; i++) {
            json_t *want = json_array_get(docs, i);
            assert_int_equal(list.docs[i].index, i);
            assert_ordered_equal(name, "props", json_object_get(want, "props"), list.docs[i].props);
            assert_ordered_equal(name, "origins", json_object_get(want, "origins"),
                                 list.docs[i].origins);
            const char *profile = json_string_value(json_object_get(want, "on_profile"));
            if (profile == NULL)
                assert_null(list.docs[i].on_profile);
            else
                assert_string_equal(profile, list.docs[i].on_profile);
        }
    }
    confdoc_list_dispose(&list);
    json_decref(expect);
    free(data);
}

/* A repeated key keeps its first position: jansson's json_object_set on an existing key. */
static void test_duplicate_keeps_position(void **state)
{
    (void)state;
    const char text[] = "a=1\nb=2\na=3\n";
    confdoc_list list = {NULL, 0};
    confdoc_error err;
    assert_int_equal(propfile_parse(&list, text, sizeof(text) - 1, NULL, &err), 0);
    void *iter = json_object_iter(list.docs[0].props);
    assert_string_equal(json_object_iter_key(iter), "a");
    assert_string_equal(json_string_value(json_object_iter_value(iter)), "3");
    assert_string_equal(json_string_value(json_object_get(list.docs[0].origins, "a")), "3:3");
    confdoc_list_dispose(&list);
}

/* A NUL character from \u0000 stays inside a value (jansson keeps the length). */
static void test_nul_in_value_keeps_length(void **state)
{
    (void)state;
    const char text[] = "a=x\\u0000y\n";
    confdoc_list list = {NULL, 0};
    confdoc_error err;
    assert_int_equal(propfile_parse(&list, text, sizeof(text) - 1, NULL, &err), 0);
    json_t *v = json_object_get(list.docs[0].props, "a");
    assert_int_equal(json_string_length(v), 3);
    assert_memory_equal(json_string_value(v), "x\0y", 3);
    confdoc_list_dispose(&list);
}

/* A million continuation lines must not recurse: the reader loops. */
static void test_many_continuations(void **state)
{
    (void)state;
    size_t count = 1000000;
    char *text = malloc(count * 2 + 8);
    assert_non_null(text);
    memcpy(text, "k=v", 3);
    size_t n = 3;
    for (size_t i = 0; i < count; i++) {
        text[n++] = '\\';
        text[n++] = '\n';
    }
    text[n++] = 'w';
    confdoc_list list = {NULL, 0};
    confdoc_error err;
    assert_int_equal(propfile_parse(&list, text, n, NULL, &err), 0);
    assert_string_equal(json_string_value(json_object_get(list.docs[0].props, "k")), "vw");
    confdoc_list_dispose(&list);
    free(text);
}

/* Bytes the parser has never seen before come out as valid UTF-8 jansson accepts. */
static void test_every_byte_is_latin1(void **state)
{
    (void)state;
    char text[2 + 256];
    text[0] = 'k';
    text[1] = '=';
    size_t n = 2;
    for (int c = 0x20; c < 256; c++)
        if (c != '\\')
            text[n++] = (char)c;
    confdoc_list list = {NULL, 0};
    confdoc_error err;
    assert_int_equal(propfile_parse(&list, text, n, NULL, &err), 0);
    const char *v = json_string_value(json_object_get(list.docs[0].props, "k"));
    assert_non_null(v);
    assert_non_null(strstr(v, "\xc3\xbf")); /* 0xFF is U+00FF */
    confdoc_list_dispose(&list);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(((const struct CMUnitTest *)a)->name, ((const struct CMUnitTest *)b)->name);
}

int main(void)
{
    static const struct CMUnitTest direct[] = {
        cmocka_unit_test(test_duplicate_keeps_position),
        cmocka_unit_test(test_nul_in_value_keeps_length),
        cmocka_unit_test(test_many_continuations),
        cmocka_unit_test(test_every_byte_is_latin1),
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
        const char *ext = ".properties";
        if (len <= strlen(ext) || strcmp(entry->d_name + len - strlen(ext), ext) != 0)
            continue;
        tests = realloc(tests, (count + 1) * sizeof(*tests));
        if (tests == NULL)
            return 1;
        char *name = strndup(entry->d_name, len - strlen(ext));
        tests[count++] = (struct CMUnitTest){name, run_case, NULL, NULL, name};
    }
    closedir(dir);
    qsort(tests, count, sizeof(*tests), name_cmp);
    int failed = _cmocka_run_group_tests("propfile_cases", tests, count, NULL, NULL);
    failed += cmocka_run_group_tests(direct, NULL, NULL);
    for (size_t i = 0; i < count; i++)
        free((void *)tests[i].initial_state);
    free(tests);
    return count >= 20 && failed == 0 ? 0 : 1;
}
