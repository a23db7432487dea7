/*
 * render: the response cache (hits share one prepared response, the byte budget evicts) and
 * the ETag rules (a digest of the property sources: equal content, equal tag, whatever the
 * version), on a real directory served in dir mode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "errors.h"
#include "compose/render.h"
#include "source/repo.h"
#include "source/repos.h"
#include "server.h"
#include "compose/snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fixture {
    char dir[64];
    char uri[96];
    settings cfg;
    server srv;
} fixture;

static void write_file(const fixture *f, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    fputs(text, out);
    fclose(out);
}

static fixture *open_fixture(size_t cache_bytes)
{
    fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    strcpy(f->dir, "/tmp/almanac-render-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    write_file(f, "application.yml", "shared: true\nratio: 0.21\n");
    write_file(f, "orders.yml", "orders:\n  limit: 5\n");
    write_file(f, "billing.yml", "billing:\n  currency: EUR\n");
    snprintf(f->uri, sizeof(f->uri), "dir:%s", f->dir);
    repo_options ropts = {.uri = f->uri, .cache_dir = f->dir, .max_file_bytes = 1 << 20};
    assert_int_equal(repo_open(&f->srv.repo, &ropts), 0);
    assert_int_equal(repo_set_single(&f->srv.repos, f->srv.repo, NULL), 0);
    confdoc_limits limits = CONFDOC_LIMITS_DEFAULT;
    assert_int_equal(snapcache_new(&f->srv.snapshots, 4, &limits), 0);
    assert_int_equal(respcache_new(&f->srv.responses, cache_bytes, 64), 0);
    f->srv.settings = &f->cfg;
    return f;
}

static void close_fixture(fixture *f)
{
    respcache_free(f->srv.responses);
    snapcache_free(f->srv.snapshots);
    repo_set_free(f->srv.repos);
    repo_free(f->srv.repo);
    char command[128];
    snprintf(command, sizeof(command), "rm -rf '%s'", f->dir);
    assert_int_equal(system(command), 0);
    free(f);
}

static render_result get(fixture *f, const char *app, render_format fmt)
{
    env_query q = {.applications = app, .profiles = "dev", .label = NULL, .decrypt = true};
    render_result r;
    assert_int_equal(env_query_resolve(&q, f->srv.repo), 0);
    assert_int_equal(render_get(&r, &f->srv, &q, fmt, true), 0);
    return r;
}

static void repeated_request_is_served_from_the_cache(void **state)
{
    (void)state;
    fixture *f = open_fixture(1 << 20);
    render_result first = get(f, "orders", RENDER_ENV_V1);
    render_result second = get(f, "orders", RENDER_ENV_V1);
    assert_ptr_equal(first.ok, second.ok);
    assert_string_equal(first.etag, second.etag);
    /* Another format or application is another entry. */
    render_result v2 = get(f, "orders", RENDER_ENV_V2);
    render_result other = get(f, "billing", RENDER_ENV_V1);
    assert_ptr_not_equal(first.ok, v2.ok);
    assert_string_not_equal(first.etag, v2.etag);
    assert_string_not_equal(first.etag, other.etag);
    render_result_dispose(&first);
    render_result_dispose(&second);
    render_result_dispose(&v2);
    render_result_dispose(&other);
    close_fixture(f);
}

static render_result get_profile(fixture *f, const char *profiles)
{
    env_query q = {.applications = "orders", .profiles = profiles, .label = NULL, .decrypt = true};
    render_result r;
    assert_int_equal(env_query_resolve(&q, f->srv.repo), 0);
    assert_int_equal(render_get(&r, &f->srv, &q, RENDER_ENV_V1, true), 0);
    return r;
}

static void byte_budget_evicts(void **state)
{
    (void)state;
    /* Measure one answer, then allow room for about four. */
    fixture *probe = open_fixture(1 << 20);
    render_result sample = get_profile(probe, "p0");
    size_t budget = 4 * (prepared_response_size(sample.ok) + 256);
    render_result_dispose(&sample);
    close_fixture(probe);

    fixture *f = open_fixture(budget);
    static const char *const profiles[] = {"p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"};
    render_result first = get_profile(f, profiles[0]);
    render_result cached = get_profile(f, profiles[0]);
    assert_ptr_equal(first.ok, cached.ok); /* it was cacheable at all */
    render_result_dispose(&cached);
    for (size_t i = 1; i < 8; i++) {
        render_result r = get_profile(f, profiles[i]);
        render_result_dispose(&r);
    }
    render_result again = get_profile(f, profiles[0]);
    assert_ptr_not_equal(first.ok, again.ok);
    assert_string_equal(first.etag, again.etag);
    render_result_dispose(&first);
    render_result_dispose(&again);
    close_fixture(f);
}

static void etag_follows_content_not_edits(void **state)
{
    (void)state;
    fixture *f = open_fixture(1 << 20);
    render_result before = get(f, "orders", RENDER_ENV_V1);
    /* A comment changes the file but not what it means: same tag after a rescan. */
    write_file(f, "orders.yml", "# reviewed\norders:\n  limit: 5\n");
    snapcache_invalidate(f->srv.snapshots);
    respcache_clear(f->srv.responses);
    render_result comment = get(f, "orders", RENDER_ENV_V1);
    assert_string_equal(before.etag, comment.etag);
    write_file(f, "orders.yml", "orders:\n  limit: 6\n");
    snapcache_invalidate(f->srv.snapshots);
    respcache_clear(f->srv.responses);
    render_result changed = get(f, "orders", RENDER_ENV_V1);
    assert_string_not_equal(before.etag, changed.etag);
    render_result_dispose(&before);
    render_result_dispose(&comment);
    render_result_dispose(&changed);
    close_fixture(f);
}

static void environment_json_keeps_spring_order_and_short_reals(void **state)
{
    (void)state;
    fixture *f = open_fixture(1 << 20);
    env_query q = {.applications = "orders",
                   .profiles = "dev",
                   .label = NULL,
                   .label_echo = "main",
                   .decrypt = true};
    environment env;
    assert_int_equal(env_query_resolve(&q, f->srv.repo), 0);
    assert_int_equal(environment_compose(&env, &f->srv, &q), 0);
    size_t len = 0;
    char *json = render_environment_json(&env, &q, RENDER_ENV_V1, &len);
    assert_non_null(json);
    assert_int_equal(strlen(json), len);
    const char *order[] = {"\"name\":\"orders\"", "\"profiles\":[\"dev\"]", "\"label\":\"main\"",
                           "\"version\":null", "\"state\":\"\"", "\"propertySources\":["};
    const char *at = json;
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        const char *found = strstr(at, order[i]);
        if (found == NULL)
            fail_msg("missing or out of order: %s in %s", order[i], json);
        at = found;
    }
    assert_non_null(strstr(json, "\"ratio\":0.21}"));
    free(json);
    environment_dispose(&env);
    close_fixture(f);
}

/* The ETag of a rendered answer is the digest of the property sources alone, whether or not
 * the Environment holds a real number (with none, the answer's own bytes are hashed), and a
 * value that spells the propertySources key does not move what is hashed. */
static void answer_etag_is_the_property_sources_digest(void **state)
{
    (void)state;
    static const char *const shared[] = {
        "shared: true\nratio: 0.21\n",
        "shared: true\n",
        "shared: '\"propertySources\":[ x'\npropertySources: 3\n",
    };
    fixture *f = open_fixture(1 << 20);
    for (size_t i = 0; i < sizeof(shared) / sizeof(shared[0]); i++) {
        write_file(f, "application.yml", shared[i]);
        snapcache_invalidate(f->srv.snapshots);
        respcache_clear(f->srv.responses);
        static const render_format formats[] = {RENDER_ENV_V1, RENDER_ENV_V2};
        for (size_t k = 0; k < 2; k++) {
            render_result r = get(f, "orders", formats[k]);
            env_query q = {.applications = "orders", .profiles = "dev", .decrypt = true};
            environment env;
            assert_int_equal(env_query_resolve(&q, f->srv.repo), 0);
            assert_int_equal(environment_compose(&env, &f->srv, &q), 0);
            char expected[ETAG_SIZE];
            render_environment_etag(&env, formats[k], expected);
            assert_string_equal(r.etag, expected);
            environment_dispose(&env);
            render_result_dispose(&r);
        }
    }
    close_fixture(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(repeated_request_is_served_from_the_cache),
        cmocka_unit_test(byte_budget_evicts),
        cmocka_unit_test(etag_follows_content_not_edits),
        cmocka_unit_test(environment_json_keeps_spring_order_and_short_reals),
        cmocka_unit_test(answer_etag_is_the_property_sources_digest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
