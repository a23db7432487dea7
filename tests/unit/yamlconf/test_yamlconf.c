/*
 * Unit tests for yamlconf. Most behaviour is covered as data: every tests/resources/yaml/NAME.yml
 * is parsed and compared with NAME.expect.json, which holds either
 *   {"documents":[{"on_profile":null|"...","props":{...},"origins":{...}?,"index":N?}, ...]}
 * (props compared in order and by JSON type) or
 *   {"error":{"line":N,"message_contains":"..."}},
 * optionally with "limits":{"max_entries":N,...} to parse under tighter caps. The C tests below
 * cover what is awkward to write as a file: generated hostile inputs, limits, and the API.
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

#include "yamlconf.h"

#define CASES_DIR ALMANAC_TEST_RESOURCES "/yaml"

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void report(char **log, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends one line to the failure report of a case. */
static void report(char **log, const char *name, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    size_t old = *log ? strlen(*log) : 0;
    char *grown = realloc(*log, old + strlen(name) + strlen(line) + 4);
    assert_non_null(grown);
    sprintf(grown + old, "%s: %s\n", name, line);
    *log = grown;
}

static char *dump(const json_t *value)
{
    return json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(17));
}

static void check_props(char **log, const char *name, unsigned d, json_t *want, json_t *got)
{
    if (json_object_size(want) != json_object_size(got))
        report(log, name, "doc %u: %zu props, expected %zu", d, json_object_size(got),
               json_object_size(want));
    void *wi = json_object_iter(want), *gi = json_object_iter(got);
    for (; wi != NULL && gi != NULL;
         wi = json_object_iter_next(want, wi),
         gi = json_object_iter_next(got, gi)) {
        const char *wk = json_object_iter_key(wi), *gk = json_object_iter_key(gi);
        json_t *wv = json_object_iter_value(wi), *gv = json_object_iter_value(gi);
        if (strcmp(wk, gk) != 0) {
            report(log, name, "doc %u: key \"%s\" where \"%s\" was expected", d, gk, wk);
            return;
        }
        if (!json_equal(wv, gv)) {
            char *ws = dump(wv), *gs = dump(gv);
            report(log, name, "doc %u: %s = %s, expected %s", d, gk, gs, ws);
            free(ws);
            free(gs);
        }
    }
}

static void check_case(char **log, const char *name, const char *yaml, size_t len,
                       const json_t *expect)
{
    confdoc_limits limits = CONFDOC_LIMITS_DEFAULT;
    json_t *l = json_object_get(expect, "limits");
    if (l != NULL) {
        json_t *v;
        if ((v = json_object_get(l, "max_bytes")))
            limits.max_bytes = (size_t)json_integer_value(v);
        if ((v = json_object_get(l, "max_depth")))
            limits.max_depth = (unsigned)json_integer_value(v);
        if ((v = json_object_get(l, "max_key_len")))
            limits.max_key_len = (size_t)json_integer_value(v);
        if ((v = json_object_get(l, "max_entries")))
            limits.max_entries = (size_t)json_integer_value(v);
        if ((v = json_object_get(l, "max_documents")))
            limits.max_documents = (size_t)json_integer_value(v);
    }

    confdoc_list list = {NULL, 0};
    confdoc_error err;
    int rc = yamlconf_parse(&list, yaml, len, &limits, &err);
    json_t *want_error = json_object_get(expect, "error");
    if (want_error != NULL) {
        if (rc == 0) {
            report(log, name, "parsed, but an error was expected");
        } else {
            json_t *line = json_object_get(want_error, "line");
            const char *contains =
                json_string_value(json_object_get(want_error, "message_contains"));
            if (line != NULL && (json_int_t)err.line != json_integer_value(line))
                report(log, name, "error at line %u (%s), expected line %lld", err.line,
                       err.message, (long long)json_integer_value(line));
            if (contains != NULL && strstr(err.message, contains) == NULL)
                report(log, name, "error \"%s\" does not contain \"%s\"", err.message, contains);
            if (list.count != 0 || list.docs != NULL)
                report(log, name, "output not left empty on error");
        }
        confdoc_list_dispose(&list);
        return;
    }
    if (rc != 0) {
        report(log, name, "error at %u:%u: %s", err.line, err.col, err.message);
        return;
    }

    json_t *docs = json_object_get(expect, "documents");
    if (json_array_size(docs) != list.count)
        report(log, name, "%zu documents, expected %zu", list.count, json_array_size(docs));
    for (size_t i = 0; i < list.count && i < json_array_size(docs); i++) {
        json_t *want = json_array_get(docs, i);
        const confdoc *doc = &list.docs[i];
        const json_t *profile = json_object_get(want, "on_profile");
        const char *want_profile = json_string_value(profile);
        if ((want_profile == NULL) != (doc->on_profile == NULL) ||
            (want_profile != NULL && strcmp(want_profile, doc->on_profile) != 0))
            report(log, name, "doc %zu: on_profile %s, expected %s", i,
                   doc->on_profile ? doc->on_profile : "null", want_profile ? want_profile : "null");
        if (doc->index != i)
            report(log, name, "doc %zu: index %u", i, doc->index);
        check_props(log, name, (unsigned)i, json_object_get(want, "props"), doc->props);
        const char *key;
        json_t *origin;
        json_object_foreach(json_object_get(want, "origins"), key, origin)
        {
            const char *got = json_string_value(json_object_get(doc->origins, key));
            if (got == NULL || strcmp(got, json_string_value(origin)) != 0)
                report(log, name, "doc %zu: origin of %s is %s, expected %s", i, key,
                       got ? got : "(none)", json_string_value(origin));
        }
        if (json_object_size(doc->origins) != json_object_size(doc->props))
            report(log, name, "doc %zu: origins and props differ in size", i);
    }
    confdoc_list_dispose(&list);
}

static void test_cases_from_files(void **state)
{
    (void)state;
    DIR *dir = opendir(CASES_DIR);
    assert_non_null(dir);
    char **names = NULL;
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        size_t n = strlen(entry->d_name);
        if (n < 5 || strcmp(entry->d_name + n - 4, ".yml") != 0)
            continue;
        names = realloc(names, (count + 1) * sizeof(*names));
        assert_non_null(names);
        names[count++] = strndup(entry->d_name, n - 4);
    }
    closedir(dir);
    qsort(names, count, sizeof(*names), compare_names);
    assert_true(count >= 30);

    char *log = NULL;
    for (size_t i = 0; i < count; i++) {
        char path[4096];
        size_t len, elen;
        snprintf(path, sizeof(path), "%s/%s.yml", CASES_DIR, names[i]);
        char *yaml = test_read_file(path, &len);
        snprintf(path, sizeof(path), "%s/%s.expect.json", CASES_DIR, names[i]);
        char *expect_text = test_read_file(path, &elen);
        json_error_t jerr;
        json_t *expect = expect_text ? json_loads(expect_text, 0, &jerr) : NULL;
        if (yaml == NULL || expect == NULL)
            report(&log, names[i], "cannot read the case or its expect.json");
        else
            check_case(&log, names[i], yaml, len, expect);
        json_decref(expect);
        free(expect_text);
        free(yaml);
        free(names[i]);
    }
    free(names);
    if (log != NULL) {
        print_error("%s", log);
        free(log);
        fail_msg("some YAML cases failed");
    }
    print_message("%zu YAML cases passed\n", count);
}

/* ---- generated inputs ---- */

static int parse(confdoc_list *list, const char *text, const confdoc_limits *limits,
                 confdoc_error *err)
{
    return yamlconf_parse(list, text, strlen(text), limits, err);
}

static void test_billion_laughs_fails_fast(void **state)
{
    (void)state;
    /* 10 levels of 10 aliases each: 10^10 leaves if expanded */
    char doc[4096] = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
    for (int i = 1; i <= 10; i++) {
        char line[256];
        int n = snprintf(line, sizeof(line), "a%d: &a%d [", i, i);
        for (int j = 0; j < 10; j++)
            n += snprintf(line + n, sizeof(line) - (size_t)n, "%s*a%d", j ? ", " : "", i - 1);
        snprintf(line + n, sizeof(line) - (size_t)n, "]\n");
        strcat(doc, line);
    }
    confdoc_list list = {NULL, 0};
    confdoc_error err;
    assert_int_equal(parse(&list, doc, NULL, &err), -1);
    assert_non_null(strstr(err.message, "alias expansion exceeds 100000 entries"));
    assert_int_equal(list.count, 0);
    assert_null(list.docs);
}

static void test_merge_work_is_bounded(void **state)
{
    (void)state;
    /* merging one big map many times yields few entries but costs work per merged key */
    size_t cap = 64 * 1024, len = 0;
    char *doc = malloc(cap);
    assert_non_null(doc);
    len += (size_t)snprintf(doc + len, cap - len, "big: &big {");
    for (int i = 0; i < 200; i++)
        len += (size_t)snprintf(doc + len, cap - len, "%sk%d: %d", i ? ", " : "", i, i);
    len += (size_t)snprintf(doc + len, cap - len, "}\nm: {<<: [");
    for (int i = 0; i < 50; i++)
        len += (size_t)snprintf(doc + len, cap - len, "%s*big", i ? ", " : "");
    len += (size_t)snprintf(doc + len, cap - len, "]}\n");

    confdoc_limits limits = CONFDOC_LIMITS_DEFAULT;
    limits.max_entries = 1000;
    confdoc_list list = {NULL, 0};
    confdoc_error err;
    assert_int_equal(yamlconf_parse(&list, doc, len, &limits, &err), -1);
    assert_non_null(strstr(err.message, "alias expansion exceeds 1000 entries"));

    /* the same file is fine under the default caps: 400 entries */
    assert_int_equal(yamlconf_parse(&list, doc, len, NULL, &err), 0);
    assert_int_equal(json_object_size(list.docs[0].props), 400);
    confdoc_list_dispose(&list);
    free(doc);
}

static void test_deep_nesting(void **state)
{
    (void)state;
    size_t depth = 100000;
    char *doc = malloc(depth * 2 + 1);
    assert_non_null(doc);
    memset(doc, '[', depth);
    memset(doc + depth, ']', depth);
    doc[depth * 2] = '\0';
    confdoc_list list = {NULL, 0};
    confdoc_error err;
    assert_int_equal(parse(&list, doc, NULL, &err), -1);
    assert_string_equal(err.message, "nesting deeper than 64");
    assert_int_equal(err.line, 1);
    assert_int_equal(err.col, 65);
    free(doc);

    /* exactly at the limit is fine */
    confdoc_limits limits = CONFDOC_LIMITS_DEFAULT;
    limits.max_depth = 3;
    assert_int_equal(parse(&list, "a: {b: {c: 1}}", &limits, &err), 0);
    assert_int_equal(json_integer_value(json_object_get(list.docs[0].props, "a.b.c")), 1);
    confdoc_list_dispose(&list);
    assert_int_equal(parse(&list, "a: {b: {c: [1]}}", &limits, &err), -1);
}

static void test_deep_through_aliases(void **state)
{
    (void)state;
    /* textually shallow, but each alias nests the previous structure one level deeper */
    char doc[8192] = "l0: &l0 {x: 1}\n";
    for (int i = 1; i < 100; i++) {
        char line[64];
        snprintf(line, sizeof(line), "l%d: &l%d {n: *l%d}\n", i, i, i - 1);
        strcat(doc, line);
    }
    confdoc_list list = {NULL, 0};
    confdoc_error err;
    assert_int_equal(parse(&list, doc, NULL, &err), -1);
    assert_non_null(strstr(err.message, "nesting deeper than 64"));
}

static void test_limits(void **state)
{
    (void)state;
    confdoc_list list = {NULL, 0};
    confdoc_error err;
    confdoc_limits limits = CONFDOC_LIMITS_DEFAULT;

    limits.max_bytes = 8;
    assert_int_equal(parse(&list, "a: 123456", &limits, &err), -1);
    assert_non_null(strstr(err.message, "larger than 8 bytes"));
    assert_int_equal(parse(&list, "a: 1234", &limits, &err), 0);
    confdoc_list_dispose(&list);

    limits = (confdoc_limits)CONFDOC_LIMITS_DEFAULT;
    limits.max_documents = 2;
    assert_int_equal(parse(&list, "a: 1\n---\nb: 2\n", &limits, &err), 0);
    assert_int_equal(list.count, 2);
    confdoc_list_dispose(&list);
    assert_int_equal(parse(&list, "a: 1\n---\nb: 2\n---\n---\n", &limits, &err), -1);
    assert_non_null(strstr(err.message, "more than 2 documents"));
    assert_int_equal(err.line, 4);

    limits = (confdoc_limits)CONFDOC_LIMITS_DEFAULT;
    limits.max_key_len = 5;
    assert_int_equal(parse(&list, "ab: {cd: 1}", &limits, &err), 0);
    confdoc_list_dispose(&list);
    assert_int_equal(parse(&list, "ab: {cd: {e: 1}}", &limits, &err), -1);
    assert_non_null(strstr(err.message, "key longer than 5 bytes"));
    assert_int_equal(err.line, 1);
    assert_int_equal(err.col, 11);

    limits = (confdoc_limits)CONFDOC_LIMITS_DEFAULT;
    limits.max_entries = 3;
    assert_int_equal(parse(&list, "a: 1\nb: 2\n---\nc: 3\n", &limits, &err), 0);
    confdoc_list_dispose(&list);
    /* the cap is per file, across documents */
    assert_int_equal(parse(&list, "a: 1\nb: 2\n---\nc: 3\nd: 4\n", &limits, &err), -1);
    assert_non_null(strstr(err.message, "more than 3 entries"));
    assert_int_equal(err.line, 5);
}

static void test_wide_flat_file(void **state)
{
    (void)state;
    /* a large but honest file stays well inside the defaults */
    size_t n = 20000;
    char *doc = malloc(n * 32);
    assert_non_null(doc);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(doc + len, "key%zu:\n  v: %zu\n", i, i);
    confdoc_list list = {NULL, 0};
    confdoc_error err;
    assert_int_equal(yamlconf_parse(&list, doc, len, NULL, &err), 0);
    assert_int_equal(json_object_size(list.docs[0].props), n);
    assert_int_equal(json_integer_value(json_object_get(list.docs[0].props, "key19999.v")), 19999);
    confdoc_list_dispose(&list);
    free(doc);
}

static void test_origins(void **state)
{
    (void)state;
    const char *doc = "server:\n"
                      "  port: 8080\n"
                      "  name:   \"quoted\"\n"
                      "list:\n"
                      "  - a\n"
                      "  -   b\n"
                      "base: &b {x: 1}\n"
                      "copy: *b\n"
                      "empty: []\n";
    confdoc_list list = {NULL, 0};
    confdoc_error err;
    assert_int_equal(parse(&list, doc, NULL, &err), 0);
    json_t *o = list.docs[0].origins;
    assert_string_equal(json_string_value(json_object_get(o, "server.port")), "2:9");
    assert_string_equal(json_string_value(json_object_get(o, "server.name")), "3:11");
    assert_string_equal(json_string_value(json_object_get(o, "list[0]")), "5:5");
    assert_string_equal(json_string_value(json_object_get(o, "list[1]")), "6:7");
    assert_string_equal(json_string_value(json_object_get(o, "base.x")), "7:14");
    /* through an alias: the anchored value's own position */
    assert_string_equal(json_string_value(json_object_get(o, "copy.x")), "7:14");
    assert_string_equal(json_string_value(json_object_get(o, "empty")), "9:8");
    confdoc_list_dispose(&list);
}

static void test_errors_leave_output_empty(void **state)
{
    (void)state;
    const char *bad[] = {
        "a: 1\na: 2\n",
        "a: [1, 2\n",
        "a: *nope\n",
        "a: &x [*x]\n",
        "a: !!int abc\n",
        "a: !custom 1\n",
        "? [k]\n: v\n",
        "~: v\n",
        "a: 1\n---\nb: [\n",
        "a: {<<: 1}\n",
        "a: {<<: [1]}\n",
        "a: <<\n",
        "\"\\0\": x\n",
        "a: \"\\xff\\x00\"\nb: \x01\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        confdoc_list list = {NULL, 0};
        confdoc_error err;
        memset(&err, 0, sizeof(err));
        if (parse(&list, bad[i], NULL, &err) != -1)
            fail_msg("case %zu parsed: %s", i, bad[i]);
        assert_int_equal(list.count, 0);
        assert_null(list.docs);
        assert_true(err.message[0] != '\0');
        assert_true(err.line >= 1);
    }
}

static void test_null_error_and_limits(void **state)
{
    (void)state;
    confdoc_list list = {NULL, 0};
    assert_int_equal(yamlconf_parse(&list, "a: [", 4, NULL, NULL), -1);
    assert_int_equal(yamlconf_parse(&list, "", 0, NULL, NULL), 0);
    assert_int_equal(list.count, 0);
    assert_int_equal(yamlconf_parse(&list, "a: 1", 4, NULL, NULL), 0);
    assert_int_equal(list.count, 1);
    confdoc_list_dispose(&list);
}

static void test_embedded_nul_in_value(void **state)
{
    (void)state;
    const char doc[] = "a: \"x\\0y\"\n";
    confdoc_list list = {NULL, 0};
    confdoc_error err;
    assert_int_equal(yamlconf_parse(&list, doc, sizeof(doc) - 1, NULL, &err), 0);
    json_t *v = json_object_get(list.docs[0].props, "a");
    assert_int_equal(json_string_length(v), 3);
    assert_memory_equal(json_string_value(v), "x\0y", 3);
    confdoc_list_dispose(&list);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases_from_files),
        cmocka_unit_test(test_billion_laughs_fails_fast),
        cmocka_unit_test(test_merge_work_is_bounded),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_deep_through_aliases),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_wide_flat_file),
        cmocka_unit_test(test_origins),
        cmocka_unit_test(test_errors_leave_output_empty),
        cmocka_unit_test(test_null_error_and_limits),
        cmocka_unit_test(test_embedded_nul_in_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
