/*
 * Structured access to a snapshot: list lengths and typed elements, copy-out string arrays,
 * subtree walks in key order, and relaxed names (Spring Boot's binding forms) with their
 * collisions. The same functions against a real server: test_client_structured.py.
 */
#include "client_tests.h"

#include "almanac.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Two sources: the first (most specific) wins, and owns any list it has an element of. */
static const char ENV[] =
    "{\"name\":\"orders\",\"profiles\":[\"prod\"],\"propertySources\":["
    "{\"name\":\"orders-prod.yml\",\"source\":{"
    "\"hosts[0]\":\"a\",\"hosts[1]\":\"b\","
    "\"ports[0]\":80,\"ports[1]\":\"0x1bb\",\"ports[2]\":8080,\"ports[3]\":8443,\"ports[4]\":9,"
    "\"ports[5]\":1,\"ports[6]\":2,\"ports[7]\":3,\"ports[8]\":4,\"ports[9]\":5,\"ports[10]\":6,"
    "\"flags[0]\":true,\"flags[1]\":\"off\",\"ratios[0]\":0.5,"
    "\"servers[0].name\":\"s0\",\"servers[0].port\":1,\"servers[1].name\":\"s1\","
    "\"orders.pool-size\":7,\"orders.pool.size\":8,\"orders.poolside\":\"sea\","
    "\"gap[0]\":\"x\",\"gap[2]\":\"z\",\"empty\":\"\",\"csv\":\" red, green ,blue\","
    "\"orders.pool.max-idle\":2}},"
    "{\"name\":\"orders.yml\",\"source\":{"
    "\"hosts[0]\":\"z1\",\"hosts[1]\":\"z2\",\"hosts[2]\":\"z3\",\"orders.pool\":\"top\","
    "\"orders.poolSize\":99,\"retry.maxAttempts\":4}}]}";

static alm_config *parse_env(void)
{
    alm_config *cfg = NULL;
    if (alm_config_parse(&cfg, ENV, sizeof(ENV) - 1) < 0)
        fail_msg("%s", alm_error_last()->message);
    return cfg;
}

static void test_list_length_and_elements(void **state)
{
    (void)state;
    alm_config *cfg = parse_env();
    size_t n = 99;
    const char *s = NULL;
    int64_t i64 = 0;
    double d = 0;
    int b = -1;

    /* hosts comes whole from the profile: two elements, not three. */
    assert_int_equal(alm_config_list_len(&n, cfg, "hosts"), 0);
    assert_int_equal(n, 2);
    assert_int_equal(alm_config_list_get_string(&s, cfg, "hosts", 1), 0);
    assert_string_equal(s, "b");
    assert_int_equal(alm_config_list_get_string(&s, cfg, "hosts", 2), ALM_ENOTFOUND);

    assert_int_equal(alm_config_list_len(&n, cfg, "ports"), 0);
    assert_int_equal(n, 11); /* ports[10] counts, though it sorts after ports[1] as bytes */
    assert_int_equal(alm_config_list_get_int64(&i64, cfg, "ports", 1), 0);
    assert_int_equal(i64, 443);
    assert_int_equal(alm_config_list_get_int64(&i64, cfg, "ports", 10), 0);
    assert_int_equal(i64, 6);
    assert_int_equal(alm_config_list_get_bool(&b, cfg, "flags", 0), 0);
    assert_int_equal(b, 1);
    assert_int_equal(alm_config_list_get_bool(&b, cfg, "flags", 1), 0);
    assert_int_equal(b, 0);
    assert_int_equal(alm_config_list_get_double(&d, cfg, "ratios", 0), 0);
    assert_true(d == 0.5);
    assert_int_equal(alm_config_list_get_int64(&i64, cfg, "hosts", 0), ALM_ETYPE);

    /* A list of maps: its length, and elements reached by their keys. */
    assert_int_equal(alm_config_list_len(&n, cfg, "servers"), 0);
    assert_int_equal(n, 2);
    assert_int_equal(alm_config_list_get_string(&s, cfg, "servers", 0), ALM_ENOTFOUND);

    assert_int_equal(alm_config_list_len(&n, cfg, "gap"), ALM_ETYPE);
    assert_non_null(strstr(alm_error_last()->message, "[2] but no [1]"));
    assert_int_equal(alm_config_list_len(&n, cfg, "empty"), 0);
    assert_int_equal(n, 0);
    assert_int_equal(alm_config_list_len(&n, cfg, "csv"), ALM_ETYPE);
    assert_int_equal(alm_config_list_len(&n, cfg, "nothing"), ALM_ENOTFOUND);
    assert_int_equal(alm_config_list_len(&n, cfg, "host"), ALM_ENOTFOUND);
    assert_int_equal(alm_config_list_len(NULL, cfg, "hosts"), ALM_EINVALID);
    assert_int_equal(alm_config_list_get_string(&s, cfg, NULL, 0), ALM_EINVALID);
    alm_config_free(cfg);
}

static void test_strarray(void **state)
{
    (void)state;
    alm_config *cfg = parse_env();
    alm_strarray arr = {NULL, 0};

    assert_int_equal(alm_config_get_strarray(&arr, cfg, "ports"), 0);
    assert_int_equal(arr.count, 11);
    assert_string_equal(arr.strings[0], "80");
    assert_string_equal(arr.strings[1], "0x1bb");
    assert_null(arr.strings[11]);
    alm_strarray_dispose(&arr);
    assert_null(arr.strings);
    assert_int_equal(arr.count, 0);
    alm_strarray_dispose(&arr);
    alm_strarray_dispose(NULL);

    assert_int_equal(alm_config_get_strarray(&arr, cfg, "csv"), 0);
    assert_int_equal(arr.count, 3);
    assert_string_equal(arr.strings[0], "red");
    assert_string_equal(arr.strings[1], "green");
    assert_string_equal(arr.strings[2], "blue");
    alm_strarray_dispose(&arr);

    assert_int_equal(alm_config_get_strarray(&arr, cfg, "empty"), 0);
    assert_int_equal(arr.count, 0);
    assert_null(arr.strings[0]);
    alm_strarray_dispose(&arr);

    assert_int_equal(alm_config_get_strarray(&arr, cfg, "servers"), ALM_ETYPE);
    assert_null(arr.strings);
    assert_int_equal(alm_config_get_strarray(&arr, cfg, "gap"), ALM_ETYPE);
    assert_int_equal(alm_config_get_strarray(&arr, cfg, "nothing"), ALM_ENOTFOUND);
    assert_null(arr.strings);
    alm_config_free(cfg);
}

typedef struct collected {
    char keys[32][48];
    size_t n;
    size_t stop_after;
} collected;

static int collect(const alm_config_entry *e, void *payload)
{
    collected *c = payload;
    snprintf(c->keys[c->n], sizeof(c->keys[0]), "%s", e->key);
    c->n++;
    return c->stop_after != 0 && c->n == c->stop_after ? 42 : 0;
}

static void test_subtree(void **state)
{
    (void)state;
    alm_config *cfg = parse_env();
    static const char *const want[] = {"orders.pool", "orders.pool-size", "orders.pool.max-idle",
                                       "orders.pool.size"};
    const char *const forms[] = {"orders.pool", "orders.pool.*", "orders.pool."};
    for (size_t f = 0; f < 3; f++) {
        collected c = {.n = 0};
        assert_int_equal(alm_config_foreach_under(cfg, forms[f], collect, &c), 0);
        /* orders.pool-size is not under orders.pool ("-" is not a separator). */
        assert_int_equal(c.n, 3);
        assert_string_equal(c.keys[0], want[0]);
        assert_string_equal(c.keys[1], want[2]);
        assert_string_equal(c.keys[2], want[3]);
    }
    collected c = {.n = 0};
    assert_int_equal(alm_config_foreach_under(cfg, "ports", collect, &c), 0);
    assert_int_equal(c.n, 11);
    assert_string_equal(c.keys[2], "ports[2]");
    assert_string_equal(c.keys[10], "ports[10]");
    collected s = {.n = 0};
    assert_int_equal(alm_config_foreach_under(cfg, "servers", collect, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.keys[0], "servers[0].name");
    assert_string_equal(s.keys[1], "servers[0].port");
    assert_string_equal(s.keys[2], "servers[1].name");

    collected all = {.n = 0, .stop_after = 5};
    assert_int_equal(alm_config_foreach_under(cfg, "", collect, &all), 42);
    assert_int_equal(all.n, 5);
    assert_string_equal(all.keys[0], "csv");
    collected none = {.n = 0};
    assert_int_equal(alm_config_foreach_under(cfg, "orders.pools", collect, &none), 0);
    assert_int_equal(none.n, 0);
    assert_int_equal(alm_config_foreach_under(cfg, NULL, collect, &none), ALM_EINVALID);
    alm_config_free(cfg);
}

static void test_relaxed_names(void **state)
{
    (void)state;
    alm_config *cfg = parse_env();
    const char *key = NULL;
    /* Each form finds orders.pool-size, the first of the candidates in precedence order. */
    const char *const forms[] = {"orders.pool-size", "orders.poolSize", "orders.pool_size",
                                 "Orders.Pool-Size", "ORDERS_POOLSIZE", "orders.POOLSIZE"};
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        if (alm_config_relaxed_key(&key, cfg, forms[i]) < 0)
            fail_msg("%s: %s", forms[i], alm_error_last()->message);
        assert_string_equal(key, strcmp(forms[i], "orders.poolSize") == 0 ? "orders.poolSize"
                                                                           : "orders.pool-size");
    }
    /* ORDERS_POOL_SIZE spells orders.pool-size and orders.pool.size: the first in precedence
     * order wins (both come from the profile; orders.pool-size was sent first). */
    assert_int_equal(alm_config_relaxed_key(&key, cfg, "ORDERS_POOL_SIZE"), 0);
    assert_string_equal(key, "orders.pool-size");
    assert_int_equal(alm_config_relaxed_key(&key, cfg, "ORDERS_POOL_MAX_IDLE"), 0);
    assert_string_equal(key, "orders.pool.max-idle");
    assert_int_equal(alm_config_relaxed_key(&key, cfg, "orders.pool.maxIdle"), 0);
    assert_string_equal(key, "orders.pool.max-idle");
    /* From the lower source, camel case in the file, found by its kebab and env forms. */
    assert_int_equal(alm_config_relaxed_key(&key, cfg, "retry.max-attempts"), 0);
    assert_string_equal(key, "retry.maxAttempts");
    assert_int_equal(alm_config_relaxed_key(&key, cfg, "RETRY_MAX_ATTEMPTS"), 0);
    assert_string_equal(key, "retry.maxAttempts");
    /* Indexes: HOSTS_1 is hosts[1]; SERVERS_1_NAME is servers[1].name. */
    assert_int_equal(alm_config_relaxed_key(&key, cfg, "HOSTS_1"), 0);
    assert_string_equal(key, "hosts[1]");
    assert_int_equal(alm_config_relaxed_key(&key, cfg, "SERVERS_1_NAME"), 0);
    assert_string_equal(key, "servers[1].name");
    assert_int_equal(alm_config_relaxed_key(&key, cfg, "Servers[0].NAME"), 0);
    assert_string_equal(key, "servers[0].name");
    /* "." is never ignored: orders.poolside is not orders.pool.side. */
    assert_int_equal(alm_config_relaxed_key(&key, cfg, "orders.pool.side"), ALM_ENOTFOUND);
    assert_int_equal(alm_config_relaxed_key(&key, cfg, "ORDERS_POOL_SIDE"), 0);
    assert_string_equal(key, "orders.poolside");
    assert_int_equal(alm_config_relaxed_key(&key, cfg, "HOSTS_2"), ALM_ENOTFOUND);
    assert_int_equal(alm_config_relaxed_key(&key, cfg, ""), ALM_EINVALID);
    assert_int_equal(alm_config_relaxed_key(&key, cfg, NULL), ALM_EINVALID);
    alm_config_free(cfg);
}

int client_structured_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_length_and_elements),
        cmocka_unit_test(test_strarray),
        cmocka_unit_test(test_subtree),
        cmocka_unit_test(test_relaxed_names),
    };
    return cmocka_run_group_tests_name("client_structured", tests, NULL, NULL);
}
