/*
 * alm_config: Environment parsing and the merged view (cases as data under
 * resources/environment/), typed conversions, lookups, iteration, errors and refcounting.
 */
#include "client_tests.h"

#include "almanac.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENV_CASES ALMANAC_CLIENT_RESOURCES "/environment"

char *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    assert_true(size >= 0);
    char *buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    buf[size] = '\0';
    fclose(f);
    if (len != NULL)
        *len = (size_t)size;
    return buf;
}

static alm_config *parse_file(const char *path)
{
    size_t len;
    char *json = test_read_file(path, &len);
    alm_config *cfg = NULL;
    int error = alm_config_parse(&cfg, json, len);
    free(json);
    if (error < 0)
        fail_msg("%s: %s", path, alm_error_last()->message);
    return cfg;
}

static const char *type_name(alm_value_type t)
{
    static const char *const names[] = {"string", "integer", "double", "boolean", "null"};
    return (unsigned)t < 5 ? names[t] : "?";
}

static void check_case(const char *json_path, const char *expect_path)
{
    size_t len;
    char *json = test_read_file(json_path, &len);
    json_error_t jerr;
    json_t *expect = json_load_file(expect_path, 0, &jerr);
    if (expect == NULL)
        fail_msg("%s: %s", expect_path, jerr.text);

    alm_config *cfg = NULL;
    int error = alm_config_parse(&cfg, json, len);
    const char *want_error = json_string_value(json_object_get(expect, "error"));
    if (want_error != NULL) {
        assert_int_equal(error, ALM_EPROTOCOL);
        assert_string_equal(want_error, "EPROTOCOL");
        assert_null(cfg);
        assert_int_equal(alm_error_last()->code, ALM_EPROTOCOL);
    } else {
        if (error < 0)
            fail_msg("%s: %s", json_path, alm_error_last()->message);
        const json_t *entries = json_object_get(expect, "entries");
        assert_int_equal(alm_config_entrycount(cfg), json_array_size(entries));
        size_t i;
        const json_t *row;
        json_array_foreach(entries, i, row)
        {
            const alm_config_entry *e = alm_config_entry_byindex(cfg, i);
            assert_non_null(e);
            assert_string_equal(e->key, json_string_value(json_array_get(row, 0)));
            assert_string_equal(e->value, json_string_value(json_array_get(row, 1)));
            assert_string_equal(e->source, json_string_value(json_array_get(row, 2)));
            assert_string_equal(type_name(e->type), json_string_value(json_array_get(row, 3)));
            /* Lookup by key agrees with iteration. */
            const char *v = NULL, *src = NULL;
            assert_int_equal(alm_config_get_string(&v, cfg, e->key), 0);
            assert_ptr_equal(v, e->value);
            assert_int_equal(alm_config_source_of(&src, cfg, e->key), 0);
            assert_string_equal(src, e->source);
        }
        assert_null(alm_config_entry_byindex(cfg, json_array_size(entries)));
    }
    alm_config_free(cfg);
    json_decref(expect);
    free(json);
}

static void test_environment_cases(void **state)
{
    (void)state;
    DIR *dir = opendir(ENV_CASES);
    assert_non_null(dir);
    struct dirent *de;
    int cases = 0;
    while ((de = readdir(dir)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".json") != 0 ||
            (n > 12 && strcmp(de->d_name + n - 12, ".expect.json") == 0))
            continue;
        char json_path[1024], expect_path[1024];
        snprintf(json_path, sizeof(json_path), "%s/%s", ENV_CASES, de->d_name);
        snprintf(expect_path, sizeof(expect_path), "%s/%.*s.expect.json", ENV_CASES, (int)(n - 5),
                 de->d_name);
        print_message("environment case %s\n", de->d_name);
        check_case(json_path, expect_path);
        cases++;
    }
    closedir(dir);
    assert_true(cases >= 5);
}

static void test_header_fields(void **state)
{
    (void)state;
    alm_config *cfg = parse_file(ENV_CASES "/precedence.json");
    assert_string_equal(alm_config_application(cfg), "orders");
    assert_string_equal(alm_config_profiles(cfg), "dev,mysql");
    assert_null(alm_config_label(cfg));
    assert_string_equal(alm_config_version(cfg), "0123456789abcdef0123456789abcdef01234567");
    assert_null(alm_config_etag(cfg)); /* parsed, not fetched: no ETag */
    assert_int_equal(alm_config_is_stale(cfg), 0);
    assert_int_equal(alm_config_fetched_at(cfg), 0);
    assert_int_equal(alm_config_source_count(cfg), 4);
    assert_string_equal(alm_config_source_name(cfg, 0), "file:///repo/orders-mysql.yml");
    assert_string_equal(alm_config_source_name(cfg, 3), "file:///repo/application.yml");
    assert_null(alm_config_source_name(cfg, 4));
    assert_int_equal(alm_config_has(cfg, "db.url"), 1);
    assert_int_equal(alm_config_has(cfg, "db"), 0);
    assert_int_equal(alm_config_has(cfg, NULL), 0);
    alm_config_free(cfg);

    /* Without the optional fields, the accessors say NULL rather than guess. */
    const char *bare = "{\"propertySources\":[]}";
    assert_int_equal(alm_config_parse(&cfg, bare, strlen(bare)), 0);
    assert_null(alm_config_application(cfg));
    assert_null(alm_config_profiles(cfg));
    assert_null(alm_config_version(cfg));
    assert_int_equal(alm_config_entrycount(cfg), 0);
    alm_config_free(cfg);
}

static const char conversions[] =
    "{\"name\":\"conv\",\"profiles\":[\"default\"],\"propertySources\":[{\"name\":\"s\","
    "\"source\":{"
    "\"i.plain\":\"42\",\"i.spaced\":\" 42 \",\"i.plus\":\"+7\",\"i.octal\":\"010\","
    "\"i.hex\":\"0x1F\",\"i.neghex\":\"-0x1F\",\"i.hash\":\"#ff\",\"i.HEX\":\"0X10\","
    "\"i.max\":\"9223372036854775807\",\"i.min\":\"-9223372036854775808\","
    "\"i.over\":\"9223372036854775808\",\"i.under\":\"-9223372036854775809\","
    "\"i.hexover\":\"0x8000000000000000\",\"i.frac\":\"1.5\",\"i.word\":\"abc\","
    "\"i.empty\":\"\",\"i.sign\":\"-\",\"i.trailing\":\"12abc\",\"i.double.sign\":\"--1\","
    "\"n.int\":42,\"n.real\":3.0,\"n.frac\":3.5,\"n.huge\":1e30,\"n.neg\":-2,"
    "\"b.true\":true,\"b.false\":false,\"null\":null,"
    "\"d.plain\":\"1.5\",\"d.sci\":\" 2e3 \",\"d.nan\":\"NaN\",\"d.neginf\":\"-Infinity\","
    "\"d.inf\":\"inf\",\"d.big\":\"1e999\",\"d.word\":\"abc\",\"d.dot\":\".5\","
    "\"s.TRUE\":\"TRUE\",\"s.Yes\":\"Yes\",\"s.on\":\"on\",\"s.OFF\":\"OFF\",\"s.No\":\"No\","
    "\"s.0\":\"0\",\"s.1\":\"1\",\"s.spaced\":\" true \",\"s.maybe\":\"maybe\","
    "\"s.empty\":\"\""
    "}}]}";

static void test_int64_conversions(void **state)
{
    (void)state;
    alm_config *cfg = NULL;
    assert_int_equal(alm_config_parse(&cfg, conversions, strlen(conversions)), 0);
    static const struct {
        const char *key;
        int64_t value;
    } good[] = {{"i.plain", 42},      {"i.spaced", 42},     {"i.plus", 7},   {"i.octal", 10},
                {"i.hex", 31},        {"i.neghex", -31},    {"i.hash", 255}, {"i.HEX", 16},
                {"i.max", INT64_MAX}, {"i.min", INT64_MIN}, {"n.int", 42},   {"n.real", 3},
                {"n.neg", -2}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int64_t v = 0;
        if (alm_config_get_int64(&v, cfg, good[i].key) != 0)
            fail_msg("%s: %s", good[i].key, alm_error_last()->message);
        assert_true(v == good[i].value);
    }
    static const struct {
        const char *key;
        int error;
    } bad[] = {{"i.over", ALM_ERANGE}, {"i.under", ALM_ERANGE},      {"i.hexover", ALM_ERANGE},
               {"n.huge", ALM_ERANGE}, {"i.frac", ALM_ETYPE},        {"i.word", ALM_ETYPE},
               {"i.empty", ALM_ETYPE}, {"i.sign", ALM_ETYPE},        {"i.trailing", ALM_ETYPE},
               {"n.frac", ALM_ETYPE},  {"i.double.sign", ALM_ETYPE}, {"b.true", ALM_ETYPE},
               {"null", ALM_ETYPE},    {"absent", ALM_ENOTFOUND}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t v = 1234;
        int rc = alm_config_get_int64(&v, cfg, bad[i].key);
        if (rc != bad[i].error)
            fail_msg("%s: got %d, want %d", bad[i].key, rc, bad[i].error);
        assert_true(v == 1234); /* untouched on failure */
        assert_int_equal(alm_error_last()->code, bad[i].error);
        assert_non_null(strstr(alm_error_last()->message, bad[i].key));
    }
    alm_config_free(cfg);
}

static void test_double_conversions(void **state)
{
    (void)state;
    alm_config *cfg = NULL;
    double d = 0;
    assert_int_equal(alm_config_parse(&cfg, conversions, strlen(conversions)), 0);
    assert_int_equal(alm_config_get_double(&d, cfg, "d.plain"), 0);
    assert_true(d == 1.5);
    assert_int_equal(alm_config_get_double(&d, cfg, "d.sci"), 0);
    assert_true(d == 2000.0);
    assert_int_equal(alm_config_get_double(&d, cfg, "d.dot"), 0);
    assert_true(d == 0.5);
    assert_int_equal(alm_config_get_double(&d, cfg, "n.int"), 0);
    assert_true(d == 42.0);
    assert_int_equal(alm_config_get_double(&d, cfg, "n.frac"), 0);
    assert_true(d == 3.5);
    assert_int_equal(alm_config_get_double(&d, cfg, "d.nan"), 0);
    assert_true(isnan(d));
    assert_int_equal(alm_config_get_double(&d, cfg, "d.neginf"), 0);
    assert_true(isinf(d) && d < 0);
    assert_int_equal(alm_config_get_double(&d, cfg, "d.inf"), ALM_ETYPE); /* Java says no */
    assert_int_equal(alm_config_get_double(&d, cfg, "d.big"), ALM_ERANGE);
    assert_int_equal(alm_config_get_double(&d, cfg, "d.word"), ALM_ETYPE);
    assert_int_equal(alm_config_get_double(&d, cfg, "b.false"), ALM_ETYPE);
    assert_int_equal(alm_config_get_double(&d, cfg, "absent"), ALM_ENOTFOUND);
    alm_config_free(cfg);
}

static void test_bool_conversions(void **state)
{
    (void)state;
    alm_config *cfg = NULL;
    assert_int_equal(alm_config_parse(&cfg, conversions, strlen(conversions)), 0);
    static const struct {
        const char *key;
        int value;
    } good[] = {{"b.true", 1}, {"b.false", 0}, {"s.TRUE", 1}, {"s.Yes", 1}, {"s.on", 1},
                {"s.OFF", 0},  {"s.No", 0},    {"s.0", 0},    {"s.1", 1},   {"s.spaced", 1}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int b = -1;
        if (alm_config_get_bool(&b, cfg, good[i].key) != 0)
            fail_msg("%s: %s", good[i].key, alm_error_last()->message);
        assert_int_equal(b, good[i].value);
    }
    int b = -1;
    assert_int_equal(alm_config_get_bool(&b, cfg, "s.maybe"), ALM_ETYPE);
    assert_int_equal(alm_config_get_bool(&b, cfg, "s.empty"), ALM_ETYPE);
    assert_int_equal(alm_config_get_bool(&b, cfg, "n.int"), ALM_ETYPE);
    assert_int_equal(alm_config_get_bool(&b, cfg, "absent"), ALM_ENOTFOUND);
    assert_int_equal(b, -1);

    /* The text form of typed values is Spring's. */
    const char *s = NULL;
    assert_int_equal(alm_config_get_string(&s, cfg, "b.true"), 0);
    assert_string_equal(s, "true");
    assert_int_equal(alm_config_get_string(&s, cfg, "n.real"), 0);
    assert_string_equal(s, "3.0");
    assert_int_equal(alm_config_get_string(&s, cfg, "n.huge"), 0);
    assert_string_equal(s, "1.0E30");
    assert_int_equal(alm_config_get_string(&s, cfg, "null"), 0);
    assert_string_equal(s, "");
    alm_config_free(cfg);
}

static int count_until(const alm_config_entry *e, void *payload)
{
    int *n = payload;
    (*n)++;
    return strcmp(e->key, "log.level") == 0 ? 77 : 0;
}

static void test_foreach_and_arguments(void **state)
{
    (void)state;
    alm_config *cfg = parse_file(ENV_CASES "/precedence.json");
    int n = 0;
    assert_int_equal(alm_config_foreach(cfg, count_until, &n), 77);
    assert_int_equal(n, 3);

    const char *s = NULL;
    int64_t i = 0;
    assert_int_equal(alm_config_foreach(NULL, count_until, &n), ALM_EINVALID);
    assert_int_equal(alm_config_foreach(cfg, NULL, &n), ALM_EINVALID);
    assert_int_equal(alm_config_get_string(NULL, cfg, "db.url"), ALM_EINVALID);
    assert_int_equal(alm_config_get_string(&s, NULL, "db.url"), ALM_EINVALID);
    assert_int_equal(alm_config_get_string(&s, cfg, NULL), ALM_EINVALID);
    assert_int_equal(alm_config_get_int64(&i, cfg, "missing.key"), ALM_ENOTFOUND);
    assert_non_null(strstr(alm_error_last()->message, "missing.key"));
    assert_int_equal(alm_config_parse(NULL, "{}", 2), ALM_EINVALID);
    alm_config *none = (alm_config *)&n; /* must be overwritten with NULL on failure */
    assert_int_equal(alm_config_parse(&none, "{}", 2), ALM_EPROTOCOL);
    assert_null(none);
    assert_int_equal(alm_config_entrycount(NULL), 0);
    assert_null(alm_config_version(NULL));
    alm_config_free(NULL);
    assert_null(alm_config_retain(NULL));
    alm_config_free(cfg);
}

static void test_errors_and_version(void **state)
{
    (void)state;
    alm_error_clear();
    assert_non_null(alm_error_last());
    assert_int_equal(alm_error_last()->code, ALM_OK);
    assert_string_equal(alm_error_last()->message, "no error");
    for (int code = ALM_ETLS; code <= 0; code++)
        assert_non_null(alm_strerror(code));
    assert_string_equal(alm_strerror(ALM_ENOTFOUND), "not found");
    assert_string_equal(alm_strerror(-999), "error");

    int major = -1, minor = -1, patch = -1;
    assert_string_equal(alm_version(&major, &minor, &patch), ALM_VERSION);
    assert_int_equal(major, ALM_VERSION_MAJOR);
    assert_int_equal(minor, ALM_VERSION_MINOR);
    assert_int_equal(patch, ALM_VERSION_PATCH);
    assert_non_null(alm_version(NULL, NULL, NULL));
}

/* Errors are per thread: a failure on one thread leaves another's message alone. */
static void *fail_on_other_thread(void *arg)
{
    (void)arg;
    alm_config *cfg = NULL;
    alm_config_parse(&cfg, "[", 1);
    return (void *)(intptr_t)alm_error_last()->code;
}

typedef struct shared_read {
    alm_config *cfg;
    int ok;
} shared_read;

/* Readers on several threads retain, read and free one snapshot (run under TSan/ASan in CI). */
static void *read_shared(void *arg)
{
    shared_read *r = arg;
    r->ok = 1;
    for (int round = 0; round < 2000; round++) {
        alm_config *mine = alm_config_retain(r->cfg);
        const char *s = NULL;
        if (alm_config_get_string(&s, mine, "db.url") != 0 ||
            strcmp(s, "jdbc:mysql://db/orders") != 0)
            r->ok = 0;
        alm_config_free(mine);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    alm_error_clear();
    pthread_t t;
    void *code = NULL;
    assert_int_equal(pthread_create(&t, NULL, fail_on_other_thread, NULL), 0);
    assert_int_equal(pthread_join(t, &code), 0);
    assert_int_equal((int)(intptr_t)code, ALM_EPROTOCOL);
    assert_int_equal(alm_error_last()->code, ALM_OK);

    shared_read readers[4];
    pthread_t threads[4];
    alm_config *cfg = parse_file(ENV_CASES "/precedence.json");
    for (int i = 0; i < 4; i++) {
        readers[i].cfg = cfg;
        assert_int_equal(pthread_create(&threads[i], NULL, read_shared, &readers[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_true(readers[i].ok);
    }
    alm_config_free(cfg);
}

int client_config_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_environment_cases),  cmocka_unit_test(test_header_fields),
        cmocka_unit_test(test_int64_conversions),  cmocka_unit_test(test_double_conversions),
        cmocka_unit_test(test_bool_conversions),   cmocka_unit_test(test_foreach_and_arguments),
        cmocka_unit_test(test_errors_and_version), cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests_name("client_config", tests, NULL, NULL);
}
