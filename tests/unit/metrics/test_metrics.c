/*
 * Unit tests of metrics: what is counted shows up in the exposition text under the right
 * labels, histograms are cumulative, the text is well-formed, and concurrent updates are exact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics.h"

static int reset(void **state)
{
    (void)state;
    metrics_init();
    return 0;
}

static char *render(void)
{
    size_t len = 0;
    char *text = metrics_render(&len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

/* The value of the sample line that starts with `series` (name and labels), or NAN. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = text; *line != '\0';) {
        const char *end = strchr(line, '\n');
        if (end == NULL)
            end = line + strlen(line);
        if ((size_t)(end - line) > n && strncmp(line, series, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
        line = *end == '\n' ? end + 1 : end;
    }
    return NAN;
}

static void assert_sample(const char *text, const char *series, double want)
{
    double got = sample(text, series);
    if (isnan(got))
        fail_msg("no sample %s in:\n%s", series, text);
    if (fabs(got - want) > 1e-6 * (fabs(want) > 1 ? fabs(want) : 1))
        fail_msg("%s is %.9f, want %.9f", series, got, want);
}

static bool is_name_start(char c)
{
    return isalpha((unsigned char)c) || c == '_' || c == ':';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || isdigit((unsigned char)c);
}

/*
 * A simple check of the text format: comments are `# HELP name text` or `# TYPE name type`;
 * every other line is `name{label="value",...} value` (or without labels) and its family was
 * declared by a TYPE line before it. Returns NULL or what is wrong.
 */
static const char *check_format(const char *text)
{
    static char why[512];
    char family[128] = "";
    if (text[0] == '\0' || text[strlen(text) - 1] != '\n')
        return "does not end with a newline";
    for (const char *line = text; *line != '\0';) {
        const char *end = strchr(line, '\n');
        const char *p = line;
        snprintf(why, sizeof(why), "bad line: %.*s", (int)(end - line), line);
        if (strncmp(p, "# HELP ", 7) == 0 || strncmp(p, "# TYPE ", 7) == 0) {
            bool type = p[2] == 'T';
            p += 7;
            const char *name = p;
            if (!is_name_start(*p))
                return why;
            while (is_name_char(*p))
                p++;
            if (*p != ' ' || p + 1 >= end)
                return why;
            if (type) {
                snprintf(family, sizeof(family), "%.*s", (int)(p - name), name);
                const char *kind = p + 1;
                size_t klen = (size_t)(end - kind);
                if (!((klen == 7 && strncmp(kind, "counter", 7) == 0) ||
                      (klen == 5 && strncmp(kind, "gauge", 5) == 0) ||
                      (klen == 9 && strncmp(kind, "histogram", 9) == 0)))
                    return why;
            }
            line = end + 1;
            continue;
        }
        if (*p == '#' || !is_name_start(*p))
            return why;
        const char *name = p;
        while (is_name_char(*p))
            p++;
        size_t flen = strlen(family);
        if (flen == 0 || (size_t)(p - name) < flen || strncmp(name, family, flen) != 0)
            return why; /* a sample outside the family its TYPE line declared */
        if (*p == '{') {
            p++;
            while (*p != '}') {
                if (!is_name_start(*p))
                    return why;
                while (is_name_char(*p))
                    p++;
                if (p[0] != '=' || p[1] != '"')
                    return why;
                p += 2;
                while (*p != '"' && p < end)
                    p += *p == '\\' ? 2 : 1;
                if (*p != '"')
                    return why;
                p++;
                if (*p == ',')
                    p++;
                else if (*p != '}')
                    return why;
            }
            p++;
        }
        if (*p != ' ')
            return why;
        char *num_end = NULL;
        strtod(p + 1, &num_end);
        if (num_end == p + 1 || num_end != end)
            return why;
        line = end + 1;
    }
    return NULL;
}

static void test_counts_and_labels(void **state)
{
    (void)state;
    int env = metrics_route_id("environment");
    int doc = metrics_route_id("document");
    assert_int_equal(env, 0);
    assert_int_equal(doc, 1);
    assert_int_equal(metrics_route_id("environment"), env); /* registering again is a lookup */

    for (int i = 0; i < 3; i++)
        metrics_request(env, 200, 0.002);
    metrics_request(env, 404, 0.001);
    metrics_request(env, 418, 0.001);
    metrics_request(env, 999, 0.001);
    metrics_request(doc, 304, 0.0001);
    metrics_request(doc, 503, 1.0);
    metrics_response_cache(true);
    metrics_response_cache(true);
    metrics_response_cache(false);
    metrics_snapshot_build(true, 0.25);
    metrics_snapshot_build(false, 0.5);
    metrics_snapshot_build(true, 0.25);
    metrics_git_fetch(true, 1.5);
    metrics_git_fetch(false, 30);
    metrics_git_fetch_timeout(60);
    metrics_set_last_fetch_ok(1700000000.25);
    metrics_set_watchers(17);

    char *text = render();
    assert_sample(text, "almanac_http_requests_total{route=\"environment\",code=\"200\"}", 3);
    assert_sample(text, "almanac_http_requests_total{route=\"environment\",code=\"404\"}", 1);
    assert_sample(text, "almanac_http_requests_total{route=\"environment\",code=\"other\"}", 2);
    assert_sample(text, "almanac_http_requests_total{route=\"document\",code=\"304\"}", 1);
    assert_sample(text, "almanac_http_requests_total{route=\"document\",code=\"503\"}", 1);
    /* codes never seen are not exposed */
    assert_null(strstr(text, "route=\"document\",code=\"200\""));
    assert_sample(text, "almanac_response_cache_hits_total", 2);
    assert_sample(text, "almanac_response_cache_misses_total", 1);
    assert_sample(text, "almanac_snapshot_builds_total{result=\"ok\"}", 2);
    assert_sample(text, "almanac_snapshot_builds_total{result=\"failed\"}", 1);
    assert_sample(text, "almanac_snapshot_build_seconds_total", 1.0);
    assert_sample(text, "almanac_git_fetch_total{result=\"ok\"}", 1);
    assert_sample(text, "almanac_git_fetch_total{result=\"failed\"}", 1);
    assert_sample(text, "almanac_git_fetch_total{result=\"timeout\"}", 1);
    assert_sample(text, "almanac_git_fetch_seconds_total", 91.5);
    assert_non_null(strstr(text, "\nalmanac_git_last_fetch_success_timestamp_seconds "
                                 "1700000000.250\n"));
    assert_sample(text, "almanac_watchers", 17);
    assert_non_null(strstr(text, "# TYPE almanac_http_requests_total counter\n"));
    assert_non_null(strstr(text, "# TYPE almanac_http_request_duration_seconds histogram\n"));
    assert_non_null(strstr(text, "# TYPE almanac_watchers gauge\n"));
    assert_non_null(strstr(text, "# HELP almanac_response_cache_hits_total "));

    /* the length is optional */
    char *again = metrics_render(NULL);
    assert_non_null(again);
    assert_string_equal(again, text);
    free(again);

    /* the start time is the wall clock at metrics_init, give or take this test's run */
    double start = sample(text, "process_start_time_seconds");
    double now = (double)time(NULL);
    assert_true(start > now - 3600 && start <= now + 1);
    free(text);
}

static void test_routes_bounded(void **state)
{
    (void)state;
    char name[32];
    for (int i = 0; i < 32; i++) {
        snprintf(name, sizeof(name), "route%d", i);
        assert_int_equal(metrics_route_id(name), i);
    }
    assert_int_equal(metrics_route_id("one-too-many"), -1);
    assert_int_equal(metrics_route_id("route7"), 7);
    assert_int_equal(metrics_route_id(""), -1);
    assert_int_equal(metrics_route_id(NULL), -1);
    char long_name[100];
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_int_equal(metrics_route_id(long_name), -1);

    /* ids that were never handed out are ignored, not written out of bounds */
    metrics_request(-1, 200, 0.1);
    metrics_request(32, 200, 0.1);
    metrics_request(1000, 200, 0.1);
    metrics_init();
    metrics_request(0, 200, 0.1); /* after a reset, id 0 is not registered yet */
    char *text = render();
    assert_null(strstr(text, "almanac_http_requests_total{"));
    assert_null(strstr(text, "almanac_http_request_duration_seconds_bucket{"));
    assert_null(check_format(text));
    free(text);
}

static void test_label_escaping(void **state)
{
    (void)state;
    int id = metrics_route_id("we\"ird\\name\n");
    metrics_request(id, 200, 0.1);
    char *text = render();
    assert_sample(text, "almanac_http_requests_total{route=\"we\\\"ird\\\\name\\n\",code=\"200\"}",
                  1);
    const char *bad = check_format(text);
    if (bad != NULL)
        fail_msg("%s", bad);
    free(text);
}

static void test_histogram_cumulative(void **state)
{
    (void)state;
    int id = metrics_route_id("environment");
    static const double seen[] = {0.0001, 0.0005, 0.0007, 0.003, 0.005, 0.2,
                                  0.2,    9.99,   20,     -1,    NAN};
    double sum = 0;
    for (size_t i = 0; i < sizeof(seen) / sizeof(seen[0]); i++) {
        metrics_request(id, 200, seen[i]);
        if (seen[i] > 0)
            sum += seen[i];
    }
    char *text = render();

    /* le is inclusive; negative and NaN durations count as instant */
    static const struct {
        const char *le;
        double count;
    } want[] = {{"0.0005", 4}, {"0.001", 5}, {"0.0025", 5}, {"0.005", 7}, {"0.01", 7},
                {"0.025", 7},  {"0.05", 7},  {"0.1", 7},    {"0.25", 9},  {"0.5", 9},
                {"1", 9},      {"2.5", 9},   {"5", 9},      {"10", 10},   {"+Inf", 11}};
    double previous = 0;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        char series[160];
        snprintf(series, sizeof(series),
                 "almanac_http_request_duration_seconds_bucket{route=\"environment\",le=\"%s\"}",
                 want[i].le);
        assert_sample(text, series, want[i].count);
        double got = sample(text, series);
        assert_true(got >= previous);
        previous = got;
    }
    assert_sample(text, "almanac_http_request_duration_seconds_count{route=\"environment\"}", 11);
    assert_sample(text, "almanac_http_request_duration_seconds_sum{route=\"environment\"}", sum);

    /* buckets come in rising order of le, +Inf last, then _sum and _count */
    const char *inf = strstr(text, "le=\"+Inf\"");
    const char *ten = strstr(text, "le=\"10\"");
    const char *first = strstr(text, "le=\"0.0005\"");
    assert_true(first != NULL && ten != NULL && inf != NULL && first < ten && ten < inf);
    assert_true(inf < strstr(text, "almanac_http_request_duration_seconds_sum{"));
    free(text);
}

static void test_format(void **state)
{
    (void)state;
    /* empty: families with no samples yet are still well-formed */
    char *text = render();
    const char *bad = check_format(text);
    if (bad != NULL)
        fail_msg("%s\n%s", bad, text);
    free(text);

    const char *routes[] = {"environment", "document", "file", "encrypt", "watch", "metrics"};
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        int id = metrics_route_id(routes[i]);
        metrics_request(id, 200, 0.003 * (double)i);
        metrics_request(id, (unsigned)(400 + i), 0.5);
    }
    metrics_snapshot_build(true, 0.1);
    metrics_git_fetch(true, 0.2);
    metrics_set_last_fetch_ok((double)time(NULL));
    metrics_set_watchers(3);
    text = render();
    bad = check_format(text);
    if (bad != NULL)
        fail_msg("%s\n%s", bad, text);

    /* each family is declared once */
    for (const char *p = text; (p = strstr(p, "# TYPE ")) != NULL; p++) {
        const char *end = strchr(p + 7, ' ');
        char decl[128];
        snprintf(decl, sizeof(decl), "%.*s ", (int)(end - p), p);
        assert_ptr_equal(strstr(text, decl), p);
    }
    /* and the checker does catch what it is meant to */
    assert_non_null(check_format("almanac_x 1\n"));
    assert_non_null(check_format("# TYPE almanac_x counter\nalmanac_x{a=\"b\" 1\n"));
    assert_non_null(check_format("# TYPE almanac_x counter\nalmanac_x one\n"));
    assert_non_null(check_format("# TYPE almanac_x counter\nalmanac_x 1"));
    assert_null(check_format("# TYPE almanac_x counter\nalmanac_x{a=\"b\",c=\"d\"} 1.5\n"));
    free(text);
}

enum { THREADS = 4, PER_THREAD = 50000 };

static int shared_route;

static void *hammer(void *arg)
{
    (void)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        metrics_request(shared_route, i % 2 == 0 ? 200 : 404, 0.001);
        metrics_response_cache(i % 4 != 0);
        metrics_git_fetch(true, 0.5);
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    shared_route = metrics_route_id("environment");
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);

    char *text = render();
    const double total = THREADS * PER_THREAD;
    assert_sample(text, "almanac_http_requests_total{route=\"environment\",code=\"200\"}",
                  total / 2);
    assert_sample(text, "almanac_http_requests_total{route=\"environment\",code=\"404\"}",
                  total / 2);
    assert_sample(text, "almanac_http_request_duration_seconds_count{route=\"environment\"}",
                  total);
    assert_sample(
        text, "almanac_http_request_duration_seconds_bucket{route=\"environment\",le=\"0.001\"}",
        total);
    assert_sample(text, "almanac_response_cache_hits_total", total * 3 / 4);
    assert_sample(text, "almanac_response_cache_misses_total", total / 4);
    assert_sample(text, "almanac_git_fetch_total{result=\"ok\"}", total);
    assert_sample(text, "almanac_git_fetch_seconds_total", total * 0.5);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_counts_and_labels, reset),
        cmocka_unit_test_setup(test_routes_bounded, reset),
        cmocka_unit_test_setup(test_label_escaping, reset),
        cmocka_unit_test_setup(test_histogram_cumulative, reset),
        cmocka_unit_test_setup(test_format, reset),
        cmocka_unit_test_setup(test_concurrent, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
