/*
 * Unit tests for parked requests (http/parking.c): a real TCP connection on loopback, its
 * server side detached into a real parking lot, answered, and read back by the client side as
 * bytes. What is asserted is what a client receives and what the access log is told.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "err.h"
#include "http/parking.h"
#include "http/request.h"
#include "log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* What the lot reported when an exchange ended. */
typedef struct outcome {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int count;
    bool sent;
    unsigned status;
    size_t bytes_out;
    int metrics_route;
    char request_id[32], method[16], url[64], user[32];
} outcome;

static void on_done(void *ctx, const parking_record *r, bool sent)
{
    outcome *o = ctx;
    pthread_mutex_lock(&o->lock);
    o->count++;
    o->sent = sent;
    o->status = r->status;
    o->bytes_out = r->bytes_out;
    o->metrics_route = r->metrics_route;
    snprintf(o->request_id, sizeof(o->request_id), "%s", r->request_id);
    snprintf(o->method, sizeof(o->method), "%s", r->method);
    snprintf(o->url, sizeof(o->url), "%s", r->url);
    snprintf(o->user, sizeof(o->user), "%s", r->user);
    pthread_cond_broadcast(&o->changed);
    pthread_mutex_unlock(&o->lock);
}

static void wait_done(outcome *o, int count)
{
    pthread_mutex_lock(&o->lock);
    while (o->count < count)
        pthread_cond_wait(&o->changed, &o->lock);
    pthread_mutex_unlock(&o->lock);
}

typedef struct fixture {
    parking_lot *lot;
    outcome done;
    int client, server; /* the two ends of one loopback TCP connection */
} fixture;

static void connect_pair(fixture *f)
{
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    assert_true(listener >= 0);
    assert_int_equal(bind(listener, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(listener, 1), 0);
    assert_int_equal(getsockname(listener, (struct sockaddr *)&addr, &len), 0);
    f->client = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(f->client, (struct sockaddr *)&addr, sizeof(addr)), 0);
    f->server = accept(listener, NULL, NULL);
    assert_true(f->server >= 0);
    close(listener);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    pthread_mutex_init(&f->done.lock, NULL);
    pthread_cond_init(&f->done.changed, NULL);
    parking_handlers handlers = {.done = on_done, .ctx = &f->done};
    if (parking_lot_start(&f->lot, &handlers) < 0)
        return -1;
    connect_pair(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    parking_lot_stop(f->lot);
    close(f->client);
    pthread_cond_destroy(&f->done.changed);
    pthread_mutex_destroy(&f->done.lock);
    free(f);
    return 0;
}

/* Everything the client receives up to the server's close. */
static char *read_all(int fd)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap + 1);
    for (;;) {
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        assert_true(n >= 0);
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == cap)
            buf = realloc(buf, (cap *= 2) + 1);
    }
    buf[len] = '\0';
    return buf;
}

static parked_request *detach(fixture *f, const char *method)
{
    parking_record record = {.request_id = "req-7",
                             .method = method,
                             .url = "/orders/dev?watch=%22a%22",
                             .user = "alice",
                             .metrics_route = -1};
    parked_request *p = parking_detach(f->lot, f->server, &record);
    assert_non_null(p);
    /* As libmicrohttpd does: the HTTP server closes its own descriptor, the lot keeps its copy. */
    close(f->server);
    return p;
}

static void assert_head_has(const char *reply, const char *line)
{
    const char *end = strstr(reply, "\r\n\r\n");
    const char *at = strstr(reply, line);
    if (end == NULL || at == NULL || at > end)
        fail_msg("no \"%s\" in the head of:\n%s", line, reply);
}

static void an_answer_is_written_in_full_then_the_connection_closes(void **state)
{
    fixture *f = *state;
    parked_request *p = detach(f, "GET");
    parking_set_route(p, 3);
    parking_release(p);

    response res = {0};
    assert_int_equal(response_set_copy(&res, 200, "application/json", "{\"v\":2}", 7), 0);
    assert_int_equal(response_add_header(&res, "ETag", "\"b\""), 0);
    parking_answer(p, &res);
    assert_null(res.body); /* taken over */

    char *reply = read_all(f->client);
    assert_true(strncmp(reply, "HTTP/1.1 200 OK\r\nDate: ", 23) == 0);
    assert_head_has(reply, "\r\nContent-Type: application/json\r\n");
    assert_head_has(reply, "\r\nETag: \"b\"\r\n");
    assert_head_has(reply, "\r\nContent-Length: 7\r\n");
    assert_head_has(reply, "\r\nConnection: close\r\n");
    assert_string_equal(strstr(reply, "\r\n\r\n"), "\r\n\r\n{\"v\":2}");
    free(reply);

    wait_done(&f->done, 1);
    assert_true(f->done.sent);
    assert_int_equal(f->done.status, 200);
    assert_int_equal(f->done.bytes_out, 7);
    assert_int_equal(f->done.metrics_route, 3);
    assert_string_equal(f->done.request_id, "req-7");
    assert_string_equal(f->done.method, "GET");
    assert_string_equal(f->done.url, "/orders/dev?watch=%22a%22");
    assert_string_equal(f->done.user, "alice");
}

/* A watcher can be answered while the HTTP server still holds the socket: the answer waits for
 * the release, and then goes out. */
static void an_answer_before_the_release_waits_for_it(void **state)
{
    fixture *f = *state;
    parked_request *p = detach(f, "GET");
    response res = {0};
    assert_int_equal(response_set_copy(&res, 503, "application/json", "{}", 2), 0);
    assert_int_equal(response_add_header(&res, "Retry-After", "0"), 0);
    parking_answer(p, &res);
    parking_release(p);

    char *reply = read_all(f->client);
    assert_true(strncmp(reply, "HTTP/1.1 503 Service Unavailable\r\n", 34) == 0);
    assert_head_has(reply, "\r\nRetry-After: 0\r\n");
    assert_string_equal(strstr(reply, "\r\n\r\n"), "\r\n\r\n{}");
    free(reply);
    wait_done(&f->done, 1);
    assert_true(f->done.sent);
    assert_int_equal(f->done.status, 503);
}

/* 304 has no body and no Content-Length; a HEAD gets the length without the body. */
static void not_modified_and_head_carry_no_body(void **state)
{
    fixture *f = *state;
    parked_request *p = detach(f, "GET");
    parking_release(p);
    response res = {0};
    assert_int_equal(response_set(&res, 304, NULL, NULL, 0), 0);
    assert_int_equal(response_add_header(&res, "ETag", "\"a\""), 0);
    parking_answer(p, &res);
    char *reply = read_all(f->client);
    assert_true(strncmp(reply, "HTTP/1.1 304 Not Modified\r\n", 27) == 0);
    assert_head_has(reply, "\r\nETag: \"a\"\r\n");
    assert_null(strstr(reply, "Content-Length"));
    assert_string_equal(strstr(reply, "\r\n\r\n"), "\r\n\r\n");
    free(reply);
    wait_done(&f->done, 1);
    assert_int_equal(f->done.bytes_out, 0);

    close(f->client);
    connect_pair(f);
    p = detach(f, "HEAD");
    parking_release(p);
    char *body = strdup("hello");
    prepared_response *prepared = prepared_response_new(200, "text/plain", "\"h\"", body, 5);
    assert_non_null(prepared);
    memset(&res, 0, sizeof(res));
    response_use_prepared(&res, prepared);
    parking_answer(p, &res);
    assert_null(res.prepared); /* the reference went with the answer */
    reply = read_all(f->client);
    assert_true(strncmp(reply, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_head_has(reply, "\r\nContent-Length: 5\r\n");
    assert_head_has(reply, "\r\nETag: \"h\"\r\n");
    assert_string_equal(strstr(reply, "\r\n\r\n"), "\r\n\r\n");
    free(reply);
    wait_done(&f->done, 2);
    assert_true(f->done.sent);
    assert_int_equal(f->done.bytes_out, 0);
    assert_string_equal(f->done.method, "HEAD");
}

/* A prepared response lends its bytes: they are written as they are, body after head. */
static void a_prepared_answer_is_sent_from_its_own_bytes(void **state)
{
    fixture *f = *state;
    parked_request *p = detach(f, "GET");
    parking_release(p);
    char *body = strdup("a: 1\n");
    prepared_response *prepared = prepared_response_new(200, "text/plain", "\"y\"", body, 5);
    assert_non_null(prepared);
    response res = {0};
    response_use_prepared(&res, prepared_response_retain(prepared));
    parking_answer(p, &res);
    char *reply = read_all(f->client);
    assert_head_has(reply, "\r\nContent-Type: text/plain\r\n");
    assert_head_has(reply, "\r\nETag: \"y\"\r\n");
    assert_string_equal(strstr(reply, "\r\n\r\n"), "\r\n\r\na: 1\n");
    free(reply);
    wait_done(&f->done, 1);
    assert_int_equal(f->done.bytes_out, 5);
    prepared_response_release(prepared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(an_answer_is_written_in_full_then_the_connection_closes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(an_answer_before_the_release_waits_for_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(not_modified_and_head_carry_no_body, setup, teardown),
        cmocka_unit_test_setup_teardown(a_prepared_answer_is_sent_from_its_own_bytes, setup,
                                        teardown),
    };
    log_configure(LOG_LEVEL_ERROR, LOG_FORMAT_TEXT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
