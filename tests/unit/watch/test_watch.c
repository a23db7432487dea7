/*
 * Unit tests for the watch registry (change/watch.c), handed a renderer of its own: a table of
 * answers the test changes at will, in place of composing from a repository. Watchers are real
 * long polls from real sockets to a real HTTP server on loopback, parked by the registry.
 * Asserted: who is woken by which change, what each client receives, the caps, and what a
 * shutdown answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "change/watch.h"
#include "err.h"
#include "http/http.h"
#include "log.h"
#include "metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- the renderer: "applications/profiles/label" -> ETag ---------------------------------- */

#define ANSWERS 8

typedef struct answers {
    pthread_mutex_t lock;
    char key[ANSWERS][64];
    char etag[ANSWERS][ETAG_SIZE];
    size_t count;
    unsigned renders; /* calls, for the "render once per group" check */
} answers;

static answers table = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void answer_key(char *out, size_t size, const env_query *q)
{
    snprintf(out, size, "%s/%s/%s", q->applications, q->profiles,
             q->label_echo ? q->label_echo : "-");
}

static void set_etag(const char *key, const char *etag)
{
    pthread_mutex_lock(&table.lock);
    size_t i = 0;
    while (i < table.count && strcmp(table.key[i], key) != 0)
        i++;
    if (i == table.count) {
        assert_true(table.count < ANSWERS);
        snprintf(table.key[table.count++], sizeof(table.key[0]), "%s", key);
    }
    snprintf(table.etag[i], sizeof(table.etag[0]), "%s", etag);
    pthread_mutex_unlock(&table.lock);
}

static int render_from_table(void *ctx, render_result *out, const env_query *q,
                             render_format fmt, const char *path)
{
    char key[64];
    (void)ctx;
    (void)path;
    memset(out, 0, sizeof(*out));
    answer_key(key, sizeof(key), q);
    pthread_mutex_lock(&table.lock);
    table.renders++;
    size_t i = 0;
    while (i < table.count && strcmp(table.key[i], key) != 0)
        i++;
    if (i == table.count) {
        pthread_mutex_unlock(&table.lock);
        return err_set(ERR_NOT_FOUND, "no %s", key);
    }
    snprintf(out->etag, sizeof(out->etag), "%s", table.etag[i]);
    pthread_mutex_unlock(&table.lock);
    char *body = NULL;
    assert_true(asprintf(&body, "{\"key\":\"%s\",\"fmt\":%d}", key, (int)fmt) > 0);
    out->ok = prepared_response_new(200, "application/json", out->etag, body, strlen(body));
    out->not_modified = prepared_response_new(304, NULL, out->etag, NULL, 0);
    return 0;
}

/* ---- a server whose only route is /{app}/{profiles}[/{label}]?watch=&timeout= ------------- */

static watch_registry *registry;

static int dispatch(request *req, response *res, int *metrics_route)
{
    *metrics_route = -1;
    if (req->nsegments < 2 || req->nsegments > 3)
        return response_error(res, req, ERR_NOT_FOUND, "not found");
    env_query q = {.applications = req->segments[0],
                   .profiles = req->segments[1],
                   .label = req->nsegments == 3 ? req->segments[2] : NULL,
                   .label_echo = req->nsegments == 3 ? req->segments[2] : NULL,
                   .decrypt = true};
    return watch_request(registry, req, res, &q, RENDER_ENV_V1, NULL,
                         request_query(req, "watch"), request_query(req, "timeout"));
}

static http_server *server;

static void start(size_t max_watchers, size_t max_per_client)
{
    watch_deps deps = {.render = render_from_table, .ctx = NULL};
    watch_limits limits = {
        .max_timeout = 300, .max_watchers = max_watchers, .max_per_client = max_per_client};
    table.count = 0;
    table.renders = 0;
    assert_int_equal(watch_registry_new(&registry, &deps, &limits), 0);
    http_options opts = {.listen = "127.0.0.1",
                         .port = 0,
                         .threads = 1,
                         .max_connections = 64,
                         .max_body_bytes = 1024,
                         .connection_timeout = 60};
    assert_int_equal(http_start(&server, NULL, &opts, dispatch), 0);
}

static void stop(void)
{
    watch_registry_shutdown(registry);
    http_stop(server);
    watch_registry_free(registry);
}

/* ---- clients ----------------------------------------------------------------------------- */

static int ask(const char *path)
{
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)http_port(server)),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    char line[512];
    int n = snprintf(line, sizeof(line), "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path);
    assert_int_equal(send(fd, line, (size_t)n, 0), n);
    return fd;
}

/* Parked watchers are what the registry counts: wait for the number, not for a time. */
static void wait_parked(size_t expected)
{
    for (int i = 0; i < 2000 && watch_count(registry) != expected; i++) {
        struct timespec ms = {.tv_sec = 0, .tv_nsec = 5000000};
        nanosleep(&ms, NULL);
    }
    assert_int_equal(watch_count(registry), expected);
}

/* The whole answer: a woken watcher's connection is closed after it. */
static char *reply(int fd)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap + 1);
    for (;;) {
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        assert_true(n >= 0);
        if (n == 0)
            break;
        len += (size_t)n;
        /* One answer is enough when the server keeps the connection (an immediate answer). */
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        char *length = strstr(buf, "Content-Length: ");
        if (end != NULL && length != NULL && length < end &&
            len >= (size_t)(end + 4 - buf) + strtoul(length + 16, NULL, 10))
            break;
        if (len == cap)
            buf = realloc(buf, (cap *= 2) + 1);
    }
    buf[len] = '\0';
    close(fd);
    return buf;
}

static bool nothing_received(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 0;
}

static void assert_answer(char *text, const char *status_line, const char *has)
{
    if (strncmp(text, status_line, strlen(status_line)) != 0 ||
        (has != NULL && strstr(text, has) == NULL))
        fail_msg("expected %s with %s, got:\n%s", status_line, has ? has : "-", text);
    free(text);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void a_stale_tag_is_answered_at_once_and_a_current_one_parks(void **state)
{
    (void)state;
    start(16, 16);
    set_etag("orders/dev/-", "\"e1\"");
    /* W/ and missing quotes are the same tag: it parks. */
    int current = ask("/orders/dev?watch=W/%22e1%22&timeout=60");
    wait_parked(1);
    int bare = ask("/orders/dev?watch=e1&timeout=60");
    wait_parked(2);
    assert_answer(reply(ask("/orders/dev?watch=%22e0%22")), "HTTP/1.1 200 OK",
                  "{\"key\":\"orders/dev/-\",\"fmt\":0}");
    assert_int_equal(watch_count(registry), 2);
    assert_true(nothing_received(current));
    stop();
    close(current);
    close(bare);
}

static void a_change_wakes_only_the_watchers_of_what_changed(void **state)
{
    (void)state;
    start(16, 16);
    set_etag("orders/dev/-", "\"o-dev\"");
    set_etag("orders/prod/-", "\"o-prod\"");
    set_etag("orders/dev/main", "\"o-main\"");
    set_etag("billing/dev/-", "\"b-dev\"");
    int orders_dev = ask("/orders/dev?watch=%22o-dev%22&timeout=60");
    int orders_dev2 = ask("/orders/dev?watch=%22o-dev%22&timeout=60");
    int orders_prod = ask("/orders/prod?watch=%22o-prod%22&timeout=60");
    int orders_main = ask("/orders/dev/main?watch=%22o-main%22&timeout=60");
    int billing = ask("/billing/dev?watch=%22b-dev%22&timeout=60");
    wait_parked(5);

    /* A refresh that changed nothing wakes nobody; each watched answer is rendered once. */
    pthread_mutex_lock(&table.lock);
    table.renders = 0;
    pthread_mutex_unlock(&table.lock);
    watch_notify(registry);
    assert_int_equal(watch_count(registry), 5);
    assert_int_equal(table.renders, 4);

    /* Another profile of the same application. */
    set_etag("orders/prod/-", "\"o-prod-2\"");
    watch_notify(registry);
    assert_answer(reply(orders_prod), "HTTP/1.1 200 OK", "ETag: \"o-prod-2\"");
    assert_int_equal(watch_count(registry), 4);

    /* Another label of the same application and profile. */
    set_etag("orders/dev/main", "\"o-main-2\"");
    watch_notify(registry);
    assert_answer(reply(orders_main), "HTTP/1.1 200 OK", "{\"key\":\"orders/dev/main\"");
    assert_int_equal(watch_count(registry), 3);

    /* An application: both of its watchers, not billing's. */
    set_etag("orders/dev/-", "\"o-dev-2\"");
    change_notice notice = {.repository = "", .from = "a", .to = "b", .versioned = true};
    watch_on_change(registry, &notice);
    assert_answer(reply(orders_dev), "HTTP/1.1 200 OK", "ETag: \"o-dev-2\"");
    assert_answer(reply(orders_dev2), "HTTP/1.1 200 OK", "ETag: \"o-dev-2\"");
    assert_int_equal(watch_count(registry), 1);
    assert_true(nothing_received(billing));
    json_t *counts = watch_counts_by_application(registry);
    assert_int_equal(json_integer_value(json_object_get(counts, "billing")), 1);
    assert_null(json_object_get(counts, "orders"));
    json_decref(counts);

    /* Shutdown answers the rest with 503 and Retry-After: 0, never "unchanged". */
    watch_registry_shutdown(registry);
    assert_int_equal(watch_count(registry), 0);
    assert_answer(reply(billing), "HTTP/1.1 503 Service Unavailable", "Retry-After: 0");
    http_stop(server);
    watch_registry_free(registry);
}

static void the_caps_refuse_with_429(void **state)
{
    (void)state;
    start(2, 1);
    set_etag("orders/dev/-", "\"e\"");
    int first = ask("/orders/dev?watch=%22e%22&timeout=60");
    wait_parked(1);
    /* Every client here is 127.0.0.1: the per-client cap of 1 refuses the second. */
    assert_answer(reply(ask("/orders/dev?watch=%22e%22&timeout=60")),
                  "HTTP/1.1 429 Too Many Requests", NULL);
    assert_int_equal(watch_count(registry), 1);
    assert_answer(reply(ask("/orders/dev?watch=%22e%22&timeout=0")), "HTTP/1.1 400 Bad Request",
                  "timeout");
    stop();
    close(first);

    start(1, 8);
    set_etag("orders/dev/-", "\"e\"");
    first = ask("/orders/dev?watch=%22e%22&timeout=60");
    wait_parked(1);
    assert_answer(reply(ask("/orders/dev?watch=%22e%22&timeout=60")),
                  "HTTP/1.1 429 Too Many Requests", "too many watchers");
    stop();
    close(first);
}

/* At its deadline a watcher is released with 304 and the tag it sent. */
static void the_deadline_answers_not_modified(void **state)
{
    (void)state;
    start(4, 4);
    set_etag("orders/dev/-", "\"e\"");
    int fd = ask("/orders/dev?watch=e&timeout=1");
    assert_answer(reply(fd), "HTTP/1.1 304 Not Modified", "ETag: \"e\"");
    assert_int_equal(watch_count(registry), 0);
    stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_stale_tag_is_answered_at_once_and_a_current_one_parks),
        cmocka_unit_test(a_change_wakes_only_the_watchers_of_what_changed),
        cmocka_unit_test(the_caps_refuse_with_429),
        cmocka_unit_test(the_deadline_answers_not_modified),
    };
    log_configure(LOG_LEVEL_ERROR, LOG_FORMAT_TEXT);
    metrics_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
