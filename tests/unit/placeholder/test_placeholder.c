/*
 * unit_placeholder — ${key} / ${key:default} resolution: Spring's parsing rules, escapes,
 * unresolvable placeholders, cycles, depth, and the size caps that keep a hostile repository
 * from exploding memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "placeholder.h"

/* Resolves text against a map built from "key", "value" pairs (NULL-terminated). */
static json_t *map_of(const char *first, ...)
{
    json_t *map = json_object();
    va_list ap;
    va_start(ap, first);
    for (const char *key = first; key != NULL; key = va_arg(ap, const char *))
        json_object_set_new(map, key, json_string(va_arg(ap, const char *)));
    va_end(ap);
    return map;
}

static void assert_resolves(const json_t *map, const char *text, const char *want)
{
    size_t len = 0;
    char *got = placeholder_resolve_text(text, strlen(text), map, &len);
    assert_non_null(got);
    if (strcmp(got, want) != 0)
        fail_msg("'%s' resolved to '%s', expected '%s'", text, got, want);
    assert_int_equal(len, strlen(want));
    free(got);
}

static void assert_value(const json_t *map, const char *key, const char *want)
{
    const char *got = json_string_value(json_object_get(map, key));
    assert_non_null(got);
    if (strcmp(got, want) != 0)
        fail_msg("%s = '%s', expected '%s'", key, got, want);
}

static void test_simple(void **state)
{
    (void)state;
    json_t *map = map_of("a", "1", "b.c", "two", NULL);
    assert_resolves(map, "${a}", "1");
    assert_resolves(map, "x${a}y${b.c}z", "x1ytwoz");
    assert_resolves(map, "no placeholders", "no placeholders");
    assert_resolves(map, "", "");
    json_decref(map);
}

static void test_defaults(void **state)
{
    (void)state;
    json_t *map = map_of("a", "1", "empty", "", NULL);
    assert_resolves(map, "${missing:def}", "def");
    assert_resolves(map, "${missing:}", "");
    assert_resolves(map, "${a:def}", "1");
    assert_resolves(map, "${empty:def}", ""); /* present though empty: no default */
    assert_resolves(map, "${missing:b:c}", "b:c");
    assert_resolves(map, "${missing:http://host:8080}", "http://host:8080");
    json_decref(map);
}

static void test_nested(void **state)
{
    (void)state;
    json_t *map = map_of("name", "db", "db.url", "jdbc:x", "b", "B", "ref", "${b}", NULL);
    assert_resolves(map, "${missing:${b}}", "B");
    assert_resolves(map, "${${name}.url}", "jdbc:x");
    assert_resolves(map, "${ref}", "B"); /* a value found is resolved in turn */
    assert_resolves(map, "${missing:${also.missing:${name}}}", "db");
    assert_resolves(map, "${${missing:name}}", "db");
    json_decref(map);
}

static void test_unresolvable_left_as_written(void **state)
{
    (void)state;
    json_t *map = map_of("x", "X", NULL);
    assert_resolves(map, "${missing}", "${missing}");
    assert_resolves(map, "a ${missing} b ${x}", "a ${missing} b X");
    assert_resolves(map, "${missing${x}}", "${missing${x}}");
    assert_resolves(map, "${missing:${other}}", "${other}"); /* the default, as written */
    assert_resolves(map, "${}", "${}");
    json_decref(map);
}

static void test_unbalanced(void **state)
{
    (void)state;
    json_t *map = map_of("a", "1", NULL);
    assert_resolves(map, "${a", "${a");
    assert_resolves(map, "${${a}", "${1");
    assert_resolves(map, "}${a}}", "}1}");
    assert_resolves(map, "$${a}", "$1");
    assert_resolves(map, "$ {a}", "$ {a}");
    json_decref(map);
}

static void test_braces_count_inside(void **state)
{
    (void)state;
    /* Like Spring, every `{` inside a placeholder counts toward finding its end. */
    json_t *map = map_of("a{b}", "odd", "a", "1", NULL);
    assert_resolves(map, "${a{b}}", "odd");
    assert_resolves(map, "${missing:{json}}", "{json}");
    json_decref(map);
}

static void test_escapes(void **state)
{
    (void)state;
    json_t *map = map_of("a", "1", NULL);
    assert_resolves(map, "\\${a}", "${a}");
    assert_resolves(map, "\\\\${a}", "${a}"); /* two backslashes: how JSON sources spell it */
    assert_resolves(map, "\\${a} and ${a}", "${a} and 1");
    assert_resolves(map, "${missing:\\${a}}", "${a}");
    assert_resolves(map, "back\\slash", "back\\slash");
    assert_resolves(map, "\\${a${a}}", "${a1}"); /* only the escaped opening is literal */
    json_decref(map);
}

static void test_escaped_value_not_resolved_twice(void **state)
{
    (void)state;
    json_t *map = map_of("literal", "\\${x}", "x", "1", "uses", "<${literal}>", NULL);
    assert_int_equal(placeholder_resolve_map(map), 0);
    assert_value(map, "literal", "${x}");
    assert_value(map, "uses", "<${x}>");
    json_decref(map);
}

static void test_whitespace_in_key(void **state)
{
    (void)state;
    json_t *map = map_of("a", "1", NULL);
    assert_resolves(map, "${ a }", "1");
    assert_resolves(map, "${\ta:def}", "1");
    json_decref(map);
}

static void test_typed_values(void **state)
{
    (void)state;
    json_t *map = json_pack("{s:i, s:f, s:f, s:b, s:s}", "port", 8080, "ratio", 1.5, "big", 1e7,
                            "flag", 1, "url", "http://h:${port}/?r=${ratio}&b=${big}&f=${flag}");
    assert_int_equal(placeholder_resolve_map(map), 0);
    assert_value(map, "url", "http://h:8080/?r=1.5&b=1.0E7&f=true");
    assert_true(json_is_integer(json_object_get(map, "port"))); /* typed values stay typed */
    assert_true(json_is_real(json_object_get(map, "ratio")));
    json_decref(map);
}

static void test_map_sees_original_values(void **state)
{
    (void)state;
    json_t *map = map_of("a", "${b}", "b", "${c}", "c", "3", "d", "${a}-${b}", NULL);
    assert_int_equal(placeholder_resolve_map(map), 0);
    assert_value(map, "a", "3");
    assert_value(map, "b", "3");
    assert_value(map, "d", "3-3");
    /* Keys keep their positions. */
    void *iter = json_object_iter(map);
    assert_string_equal(json_object_iter_key(iter), "a");
    json_decref(map);
}

static void test_cycles(void **state)
{
    (void)state;
    json_t *map =
        map_of("a", "${b}", "b", "${a}", "self", "[${self}]", "c", "1", "mixed", "${a} and ${c}",
               "via.default", "${missing:${a}}", "reaches", "${b}", NULL);
    assert_int_equal(placeholder_resolve_map(map), 0);
    assert_value(map, "a", "${b}");
    assert_value(map, "b", "${a}");
    assert_value(map, "self", "[${self}]");
    assert_value(map, "mixed", "${a} and 1");
    assert_value(map, "via.default", "${missing:${a}}");
    assert_value(map, "reaches", "${b}");
    json_decref(map);
}

/* A chain longer than the depth limit stops there; a shorter one resolves fully. */
static void test_depth(void **state)
{
    (void)state;
    json_t *map = json_object();
    char key[32], value[32];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(value, sizeof(value), "${k%d}", i + 1);
        json_object_set_new(map, key, json_string(value));
    }
    json_object_set_new(map, "k100", json_string("end"));
    assert_resolves(map, "${k90}", "end");
    assert_resolves(map, "<${k0}>", "<${k0}>");
    assert_int_equal(placeholder_resolve_map(map), 0);
    assert_value(map, "k95", "end");
    assert_value(map, "k0", "${k1}");
    json_decref(map);
}

/* ${a}${a}... chains: each level doubles; the value stays as written beyond 1 MiB. */
static void test_exponential_growth_capped(void **state)
{
    (void)state;
    json_t *map = json_object();
    char key[32], value[64];
    json_object_set_new(map, "a0", json_string("0123456789abcdef0123456789abcdef"));
    for (int i = 1; i <= 40; i++) {
        snprintf(key, sizeof(key), "a%d", i);
        snprintf(value, sizeof(value), "${a%d}${a%d}", i - 1, i - 1);
        json_object_set_new(map, key, json_string(value));
    }
    json_object_set_new(map, "top", json_string("x${a40}y"));
    assert_int_equal(placeholder_resolve_map(map), 0);
    assert_value(map, "top", "x${a40}y");
    assert_value(map, "a40", "${a39}${a39}");
    /* 32 bytes * 2^14 = 512 KiB fits; 2^15 = 1 MiB plus nothing does not. */
    assert_int_equal(json_string_length(json_object_get(map, "a14")), 32u << 14);
    assert_value(map, "a16", "${a15}${a15}");
    json_decref(map);
}

/*
 * Many references to one large value: each result is capped, and the copying of one call is
 * bounded, so values after the budget is spent stay as written.
 */
static void test_fanout_of_large_value(void **state)
{
    (void)state;
    json_t *map = json_object();
    char *big = malloc(600001);
    memset(big, 'x', 600000);
    big[600000] = '\0';
    json_object_set_new(map, "big", json_string(big));
    json_object_set_new(map, "one", json_string("${big}"));
    char key[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "r%d", i);
        json_object_set_new(map, key, json_string("${big}${big}"));
    }
    json_object_set_new(map, "last", json_string("${big}"));
    assert_int_equal(placeholder_resolve_map(map), 0);
    assert_value(map, "r0", "${big}${big}");
    assert_value(map, "last", "${big}");
    assert_int_equal(json_string_length(json_object_get(map, "one")), 600000);
    free(big);
    json_decref(map);
}

static void test_text_keeps_length_and_nul(void **state)
{
    (void)state;
    json_t *map = map_of("a", "A", NULL);
    const char text[] = "x\0${a}";
    size_t len = 0;
    char *got = placeholder_resolve_text(text, sizeof(text) - 1, map, &len);
    assert_non_null(got);
    assert_int_equal(len, 3);
    assert_memory_equal(got, "x\0A", 4);
    free(got);
    got = placeholder_resolve_text("plain", 5, map, &len);
    assert_string_equal(got, "plain");
    assert_int_equal(len, 5);
    free(got);
    json_decref(map);
}

static void test_null_and_missing_values(void **state)
{
    (void)state;
    json_t *map = json_pack("{s:n, s:s}", "nothing", "v", "${nothing:default}");
    assert_int_equal(placeholder_resolve_map(map), 0);
    assert_value(map, "v", "default");
    assert_true(json_is_null(json_object_get(map, "nothing")));
    json_decref(map);
}

static void test_many_cyclic_references_are_fast(void **state)
{
    (void)state;
    /* The cycle is found once and remembered, so 100k references cost 100k lookups. */
    json_t *map = map_of("a", "${b}", "b", "${c}", "c", "${a}", NULL);
    size_t n = 100000;
    char *text = malloc(n * 4 + 1);
    for (size_t i = 0; i < n; i++)
        memcpy(text + i * 4, "${a}", 4);
    text[n * 4] = '\0';
    size_t len = 0;
    char *got = placeholder_resolve_text(text, n * 4, map, &len);
    assert_non_null(got);
    assert_int_equal(len, n * 4);
    assert_string_equal(got, text);
    free(got);
    free(text);
    json_decref(map);
}

/* Over 8 MiB of text, or growth beyond 4 MiB: the text comes back as it was. */
static void test_text_caps(void **state)
{
    (void)state;
    json_t *map = map_of("a", "A", NULL);
    size_t n = (9u << 20);
    char *text = malloc(n + 1);
    memset(text, 'x', n);
    memcpy(text, "${a}", 4);
    text[n] = '\0';
    size_t len = 0;
    char *got = placeholder_resolve_text(text, n, map, &len);
    assert_int_equal(len, n);
    assert_memory_equal(got, "${a}", 4);
    free(got);
    free(text);

    char *big = malloc(700001);
    memset(big, 'y', 700000);
    big[700000] = '\0';
    json_object_set_new(map, "big", json_string(big));
    n = 7 * 6; /* seven references: 4.9 MB of growth */
    text = malloc(n + 1);
    for (size_t i = 0; i < 7; i++)
        memcpy(text + i * 6, "${big}", 6);
    text[n] = '\0';
    got = placeholder_resolve_text(text, n, map, &len);
    assert_int_equal(len, n);
    assert_string_equal(got, text);
    free(got);
    text[30] = '\0'; /* five references: 3.5 MB, within the growth allowed */
    got = placeholder_resolve_text(text, 30, map, &len);
    assert_int_equal(len, 5 * 700000);
    free(got);
    free(text);
    free(big);
    json_decref(map);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_nested),
        cmocka_unit_test(test_unresolvable_left_as_written),
        cmocka_unit_test(test_unbalanced),
        cmocka_unit_test(test_braces_count_inside),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_escaped_value_not_resolved_twice),
        cmocka_unit_test(test_whitespace_in_key),
        cmocka_unit_test(test_typed_values),
        cmocka_unit_test(test_map_sees_original_values),
        cmocka_unit_test(test_cycles),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_exponential_growth_capped),
        cmocka_unit_test(test_fanout_of_large_value),
        cmocka_unit_test(test_text_keeps_length_and_nul),
        cmocka_unit_test(test_null_and_missing_values),
        cmocka_unit_test(test_many_cyclic_references_are_fast),
        cmocka_unit_test(test_text_caps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
