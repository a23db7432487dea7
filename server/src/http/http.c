/*
 * http — libmicrohttpd glue (the only module including <microhttpd.h>, together with nothing
 * else): daemon setup, the per-request state machine, path decoding, request/response
 * accessors used by handlers, prepared (cached) responses, access log and request metrics.
 *
 * It does not decide what to answer (routes.c does) and knows nothing about configuration.
 *
 * The path is decoded here, once per segment, instead of by libmicrohttpd (whose default
 * unescaping runs over the whole path before it is split, turning %2F into a separator — the
 * shape of Spring's CVE-2020-5410). Query values are decoded on lookup.
 */
#include "http/http.h"

#include "errors.h"
#include "log.h"
#include "metrics.h"
#include "http/internal.h"
#include "http/parking.h"
#include "server.h"
#include "http/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#define LISTEN_BACKLOG 65535
#define MODULE "http"

struct http_server {
    struct MHD_Daemon *daemon;
    struct server *srv;
    http_dispatch_fn dispatch;
    size_t max_body_bytes;
    unsigned port;
    atomic_uint in_flight;
    parking_lot *parking; /* NULL under TLS: a TLS session cannot leave libmicrohttpd */
};

struct response_stream_handle {
    atomic_int refs;
    pthread_mutex_t lock;
    struct MHD_Connection *conn; /* set when the response is queued */
    bool parked;
    bool closed;
    response_stream_read_fn read;
    void *ctx;
    void (*on_close)(void *);
    char *content_type;
};

/* One HTTP request, from the first access-handler call to the completion callback. */
typedef struct request_state {
    struct request_handle handle; /* {.suspended = itself} while suspended */
    request req;
    struct timespec started;
    char *path_storage;    /* the decoded segments point into this */
    char *body;
    size_t body_len;
    bool body_too_large;
    bool answered;
    unsigned status;
    size_t bytes_out;
    int metrics_route;
    char request_id[64];
    char user[160];        /* the authenticated caller, for the access log ("" if none) */
    char **decoded;        /* query values decoded on demand, freed at completion */
    size_t ndecoded;
    struct http_server *owner;
    bool suspended;        /* parked by request_suspend, waiting for request_resume */
    response pending;      /* the answer request_resume left for the next access call */
    /* parked outside libmicrohttpd (parking.c): the connection is dropped */
    parked_request *parked;
} request_state;

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* libmicrohttpd must not decode anything: we decode each path segment ourselves. */
static size_t keep_escaped(void *cls, struct MHD_Connection *conn, char *uri)
{
    (void)cls;
    (void)conn;
    return strlen(uri);
}

/* jansson refuses invalid UTF-8 (overlong forms and surrogates included): let it judge. */
static bool valid_utf8(const char *text, size_t len)
{
    json_t *probe = json_stringn(text, len);
    json_decref(probe);
    return probe != NULL;
}

int http_split_path(char *path, char *segments[], size_t max, size_t *count)
{
    *count = 0;
    size_t total = strlen(path);
    if (total > 0 && path[total - 1] == '/')
        path[--total] = '\0';
    if (total == 0)
        return 0;
    char *cursor = path;
    for (;;) {
        char *slash = strchr(cursor, '/');
        if (slash != NULL)
            *slash = '\0';
        if (*cursor == '\0')
            return err_set(ERR_BAD_REQUEST, "empty path segment");
        if (*count == max)
            return err_set(ERR_BAD_REQUEST, "too many path segments");
        size_t raw_len = strlen(cursor);
        size_t len = MHD_http_unescape(cursor);
        if (len != strlen(cursor) || len > raw_len)
            return err_set(ERR_BAD_REQUEST, "NUL byte in path");
        if (!valid_utf8(cursor, len))
            return err_set(ERR_BAD_REQUEST, "path is not valid UTF-8");
        segments[(*count)++] = cursor;
        if (slash == NULL)
            return 0;
        cursor = slash + 1;
    }
}

static int split_path(request_state *st, const char *url)
{
    if (url[0] != '/')
        return err_set(ERR_BAD_REQUEST, "path must start with '/'");
    st->path_storage = strdup(url + 1);
    if (st->path_storage == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    return http_split_path(st->path_storage, st->req.segments, REQUEST_MAX_SEGMENTS,
                           &st->req.nsegments);
}

size_t http_form_decode(char *text)
{
    for (char *p = text; *p; p++)
        if (*p == '+')
            *p = ' ';
    return MHD_http_unescape(text);
}

const char *request_header(const request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *request_query(const request *req, const char *name)
{
    const char *raw = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
    if (raw == NULL) {
        /* An argument without "=value" is stored with a NULL value: tell it from absence. */
        if (MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, name, strlen(name),
                                          NULL, NULL) == MHD_YES)
            return "";
        return NULL;
    }
    request_state *st = req->http_state;
    char **grown = realloc(st->decoded, (st->ndecoded + 1) * sizeof(*grown));
    if (grown == NULL)
        return NULL;
    st->decoded = grown;
    char *copy = strdup(raw);
    if (copy == NULL)
        return NULL;
    size_t len = http_form_decode(copy);
    if (len != strlen(copy) || !valid_utf8(copy, len)) {
        free(copy);
        return NULL; /* a value that is not text is no value */
    }
    st->decoded[st->ndecoded++] = copy;
    return copy;
}

int response_set(response *res, unsigned status, const char *content_type, char *body, size_t len)
{
    char *type = content_type ? strdup(content_type) : NULL;
    if (content_type != NULL && type == NULL) {
        free(body);
        return ERR_NOMEM;
    }
    free(res->content_type);
    if (res->body != NULL)
        OPENSSL_cleanse(res->body, res->body_len);
    free(res->body);
    res->status = status;
    res->content_type = type;
    res->body = body;
    res->body_len = len;
    return 0;
}

int response_set_copy(response *res, unsigned status, const char *content_type, const char *body,
                      size_t len)
{
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return ERR_NOMEM;
    memcpy(copy, body, len);
    copy[len] = '\0';
    return response_set(res, status, content_type, copy, len);
}

int response_add_header(response *res, const char *name, const char *value)
{
    if (res->nheaders == sizeof(res->headers) / sizeof(res->headers[0]))
        return ERR_INTERNAL;
    char *n = strdup(name);
    char *v = strdup(value);
    if (n == NULL || v == NULL) {
        free(n);
        free(v);
        return ERR_NOMEM;
    }
    res->headers[res->nheaders].name = n;
    res->headers[res->nheaders].value = v;
    res->nheaders++;
    return 0;
}

int response_json(response *res, unsigned status, json_t *json)
{
    if (json == NULL)
        return response_set(res, 500, NULL, NULL, 0);
    char *text = json_dumps(json, JSON_COMPACT);
    json_decref(json);
    if (text == NULL)
        return response_set(res, 500, NULL, NULL, 0);
    return response_set(res, status, "application/json", text, strlen(text));
}

/*
 * A JSON string for text that may not be UTF-8 (a raw byte in a request path, or a message
 * quoting one): as is when valid, else with every byte outside printable ASCII written as %XX.
 * Without this the error body could not be built and the answer was an empty 500.
 */
static json_t *json_text(const char *text)
{
    if (text == NULL)
        return json_null();
    json_t *j = json_string(text);
    if (j != NULL)
        return j;
    size_t len = strlen(text);
    char *out = malloc(3 * len + 1), *w = out;
    if (out == NULL)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p >= 0x20 && *p < 0x7f)
            *w++ = (char)*p;
        else
            w += sprintf(w, "%%%02X", *p);
    }
    *w = '\0';
    j = json_string(out);
    free(out);
    return j;
}

int response_error(response *res, const request *req, int code, const char *message)
{
    unsigned status = err_http_status(code);
    char stamp[40];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof(stamp) - n, ".%03ld+00:00", now.tv_nsec / 1000000L);
    /* The path as received: never the decoded form, which may hold what the caller smuggled. */
    json_t *body = json_pack("{s:s, s:i, s:s, s:o, s:o*}", "timestamp", stamp, "status",
                             (int)status, "error", err_http_reason(status), "message",
                             json_text(message ? message : err_message()), "path",
                             req ? json_text(req->url) : NULL);
    response_json(res, status, body);
    return 0;
}

/*
 * Response bodies may hold decrypted secrets (/decrypt, Environments with {cipher} values):
 * every buffer handed to libmicrohttpd is wiped before it is freed, whenever that happens.
 */
typedef struct wiped_buffer {
    char *data;
    size_t len;
} wiped_buffer;

static void wipe_buffer(void *cls)
{
    wiped_buffer *b = cls;
    if (b->data != NULL) {
        OPENSSL_cleanse(b->data, b->len);
        free(b->data);
    }
    free(b);
}

/* Takes body (NULL allowed when len is 0) and returns a response that wipes it when done. */
static struct MHD_Response *response_from_owned(char *body, size_t len)
{
    static char empty[1];
    wiped_buffer *b = malloc(sizeof(*b));
    if (b == NULL) {
        free(body);
        return NULL;
    }
    b->data = body;
    b->len = len;
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback_cls(
        len, body != NULL ? body : empty, wipe_buffer, b);
    if (r == NULL)
        wipe_buffer(b);
    return r;
}

prepared_response *prepared_response_new(unsigned status, const char *content_type,
                                         const char *etag, char *body, size_t len)
{
    prepared_response *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        free(body);
        return NULL;
    }
    p->mhd = response_from_owned(body, len);
    if (p->mhd == NULL) {
        free(p);
        return NULL;
    }
    p->status = status;
    p->size = len;
    p->body = body;
    if (asprintf(&p->fields, "%s%s%s%s%s%s", content_type ? "Content-Type: " : "",
                 content_type ? content_type : "", content_type ? "\r\n" : "", etag ? "ETag: " : "",
                 etag ? etag : "", etag ? "\r\n" : "") < 0)
        p->fields = NULL;
    if (p->fields == NULL ||
        (content_type &&
         MHD_add_response_header(p->mhd, "Content-Type", content_type) != MHD_YES) ||
        (etag && MHD_add_response_header(p->mhd, "ETag", etag) != MHD_YES)) {
        MHD_destroy_response(p->mhd);
        free(p->fields);
        free(p);
        return NULL;
    }
    atomic_init(&p->refs, 1);
    return p;
}

int prepared_response_add_header(prepared_response *p, const char *name, const char *value)
{
    char *fields = NULL;
    if (asprintf(&fields, "%s%s: %s\r\n", p->fields, name, value) < 0)
        return -1;
    if (MHD_add_response_header(p->mhd, name, value) != MHD_YES) {
        free(fields);
        return -1;
    }
    free(p->fields);
    p->fields = fields;
    return 0;
}

prepared_response *prepared_response_retain(prepared_response *p)
{
    if (p != NULL)
        atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void prepared_response_release(prepared_response *p)
{
    if (p == NULL)
        return;
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) {
        /* MHD frees the buffer only once every connection still sending it is done. */
        MHD_destroy_response(p->mhd);
        free(p->fields);
        free(p);
    }
}

size_t prepared_response_size(const prepared_response *p)
{
    return p->size;
}

void response_use_prepared(response *res, prepared_response *p)
{
    prepared_response_release(res->prepared);
    res->prepared = p;
}

response_stream_handle *response_stream_retain(response_stream_handle *s)
{
    if (s != NULL)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void response_stream_release(response_stream_handle *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    pthread_mutex_destroy(&s->lock);
    free(s->content_type);
    free(s);
}

/* The stream is over: tell its owner once, then drop the connection's reference. */
static void stream_close(response_stream_handle *s)
{
    pthread_mutex_lock(&s->lock);
    bool was_closed = s->closed;
    s->closed = true;
    pthread_mutex_unlock(&s->lock);
    if (!was_closed && s->on_close)
        s->on_close(s->ctx);
    response_stream_release(s);
}

int response_stream(response *res, const char *content_type, response_stream_read_fn read,
                    void *ctx, void (*on_close)(void *), response_stream_handle **handle)
{
    response_stream_handle *s = calloc(1, sizeof(*s));
    if (s == NULL || pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return ERR_NOMEM;
    }
    atomic_init(&s->refs, handle ? 2 : 1);
    s->read = read;
    s->ctx = ctx;
    s->on_close = on_close;
    s->content_type = strdup(content_type);
    res->status = 200;
    res->stream = s;
    if (handle)
        *handle = s;
    return 0;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    response_stream_handle *s = cls;
    pthread_mutex_lock(&s->lock);
    long n = s->closed ? -1 : s->read(s->ctx, buf, max);
    if (n == 0) {
        /* Nothing to send: park until a wake, instead of being polled in a busy loop. */
        s->parked = true;
        MHD_suspend_connection(s->conn);
    }
    pthread_mutex_unlock(&s->lock);
    if (n < 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    return (ssize_t)n;
}

static void stream_reader_done(void *cls)
{
    stream_close(cls);
}

void response_stream_wake(response_stream_handle *s)
{
    pthread_mutex_lock(&s->lock);
    if (s->parked && !s->closed) {
        s->parked = false;
        MHD_resume_connection(s->conn);
    }
    pthread_mutex_unlock(&s->lock);
}

void response_dispose(response *res)
{
    if (res->stream != NULL)
        stream_close(res->stream); /* never sent */
    free(res->content_type);
    if (res->body != NULL)
        OPENSSL_cleanse(res->body, res->body_len);
    free(res->body);
    for (size_t i = 0; i < res->nheaders; i++) {
        free(res->headers[i].name);
        free(res->headers[i].value);
    }
    prepared_response_release(res->prepared);
    memset(res, 0, sizeof(*res));
}

/* X-Request-Id as sent, else the trace id of a W3C traceparent, else a fresh id. */
static void pick_request_id(request_state *st, struct MHD_Connection *conn)
{
    static atomic_ulong counter;
    const char *given = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (given != NULL && given[0] != '\0') {
        size_t j = 0;
        for (size_t i = 0; given[i] && j < sizeof(st->request_id) - 1; i++) {
            unsigned char c = (unsigned char)given[i];
            /* Keep log lines parseable whatever a client sends. */
            if (c > 0x20 && c < 0x7f && c != '"' && c != '\\')
                st->request_id[j++] = (char)c;
        }
        st->request_id[j] = '\0';
        if (j > 0)
            return;
    }
    const char *traceparent = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "traceparent");
    /* version "-" trace-id(32 hex) "-" parent-id "-" flags */
    if (traceparent != NULL && strlen(traceparent) >= 55 && traceparent[2] == '-' &&
        strspn(traceparent + 3, "0123456789abcdef") >= 32) {
        memcpy(st->request_id, traceparent + 3, 32);
        st->request_id[32] = '\0';
        return;
    }
    snprintf(st->request_id, sizeof(st->request_id), "%08lx",
             atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed) + 1);
}

static enum MHD_Result queue(struct MHD_Connection *conn, request_state *st, response *res)
{
    enum MHD_Result ret;
    st->status = res->status ? res->status : 200;
    if (res->stream != NULL) {
        response_stream_handle *s = res->stream;
        struct MHD_Response *streamed = MHD_create_response_from_callback(
            MHD_SIZE_UNKNOWN, 4096, stream_reader, s, stream_reader_done);
        if (streamed == NULL)
            return MHD_NO;
        res->stream = NULL; /* now owned by the MHD response: freed in stream_reader_done */
        s->conn = conn;
        MHD_add_response_header(streamed, "Content-Type", s->content_type);
        MHD_add_response_header(streamed, "Cache-Control", "no-cache");
        MHD_add_response_header(streamed, "X-Accel-Buffering", "no");
        ret = MHD_queue_response(conn, st->status, streamed);
        MHD_destroy_response(streamed);
        return ret;
    }
    if (res->prepared != NULL) {
        st->status = res->prepared->status;
        st->bytes_out = res->prepared->size;
        ret = MHD_queue_response(conn, st->status, res->prepared->mhd);
        return ret;
    }
    struct MHD_Response *mhd = response_from_owned(res->body, res->body_len);
    res->body = NULL; /* now owned by mhd, or freed */
    if (mhd == NULL)
        return MHD_NO;
    st->bytes_out = res->body_len;
    if (res->content_type)
        MHD_add_response_header(mhd, "Content-Type", res->content_type);
    for (size_t i = 0; i < res->nheaders; i++)
        MHD_add_response_header(mhd, res->headers[i].name, res->headers[i].value);
    ret = MHD_queue_response(conn, st->status, mhd);
    MHD_destroy_response(mhd);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size, void **ctx)
{
    http_server *h = cls;
    request_state *st = *ctx;
    (void)version;

    if (st == NULL) {
        st = calloc(1, sizeof(*st));
        if (st == NULL)
            return MHD_NO;
        clock_gettime(CLOCK_MONOTONIC, &st->started);
        st->metrics_route = -1;
        st->req.method = method;
        st->req.url = url;
        st->req.server = h->srv;
        st->req.conn = conn;
        st->req.http_state = st;
        st->owner = h;
        atomic_fetch_add_explicit(&h->in_flight, 1, memory_order_relaxed);
        pick_request_id(st, conn);
        *ctx = st;
        return MHD_YES;
    }

    if (*upload_data_size > 0) {
        /* Past the cap the body is drained and dropped, then answered with 413. */
        if (!st->body_too_large) {
            if (st->body_len + *upload_data_size > h->max_body_bytes) {
                st->body_too_large = true;
                free(st->body);
                st->body = NULL;
                st->body_len = 0;
            } else {
                char *grown = realloc(st->body, st->body_len + *upload_data_size + 1);
                if (grown == NULL)
                    return MHD_NO;
                memcpy(grown + st->body_len, upload_data, *upload_data_size);
                st->body = grown;
                st->body_len += *upload_data_size;
                st->body[st->body_len] = '\0';
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (st->suspended) {
        /* Called again after request_resume: send what the resumer left. */
        st->suspended = false;
        log_set_request_id(st->request_id);
        enum MHD_Result resumed = queue(conn, st, &st->pending);
        response_dispose(&st->pending);
        log_set_request_id(NULL);
        return resumed;
    }
    if (st->answered)
        return MHD_YES;
    st->answered = true;

    log_set_request_id(st->request_id);
    err_clear();
    response res;
    memset(&res, 0, sizeof(res));
    st->req.body = st->body;
    st->req.body_len = st->body_len;

    if (st->body_too_large) {
        char msg[96];
        snprintf(msg, sizeof(msg), "request body larger than %zu bytes", h->max_body_bytes);
        response_error(&res, &st->req, ERR_TOO_LARGE, msg);
    } else if (split_path(st, url) < 0) {
        response_error(&res, &st->req, err_last_code(), NULL);
    } else {
        h->dispatch(&st->req, &res, &st->metrics_route);
    }
    if (st->parked != NULL) {
        /* The socket is parked outside: have libmicrohttpd drop the connection without a word
         * (it cannot write anything on it any more; see request_suspend). */
        parking_set_route(st->parked, st->metrics_route);
        response_dispose(&res);
        log_set_request_id(NULL);
        return MHD_NO;
    }
    if (st->suspended) {
        response_dispose(&res);
        log_set_request_id(NULL);
        return MHD_YES;
    }
    enum MHD_Result ret = queue(conn, st, &res);
    response_dispose(&res);
    log_set_request_id(NULL);
    return ret;
}

/*
 * Parks a request that is about to wait: outside libmicrohttpd when the socket can leave it
 * (parking.c takes a duplicate; on_request then returns MHD_NO, which makes libmicrohttpd
 * forget the connection and close its own descriptor — without shutdown(), because the daemon
 * runs with MHD_USE_TURBO; without it, the client would see the end of the stream), else
 * suspended inside it (TLS, the lot stopping, out of descriptors).
 */
request_handle *request_suspend(request *req)
{
    request_state *st = req->http_state;
    http_server *h = st->owner;
    const union MHD_ConnectionInfo *fd_info =
        h->parking == NULL ? NULL
                           : MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (fd_info != NULL) {
        parking_record record = {
            .request_id = st->request_id,
            .method = req->method,
            .url = req->url,
            .user = st->user,
            .started = st->started,
            .metrics_route = -1,
        };
        st->parked = parking_detach(h->parking, fd_info->connect_fd, &record);
        if (st->parked != NULL)
            return parking_handle(st->parked);
    }
    /* Suspend before anyone can learn of the handle, so a resume never precedes it. */
    MHD_suspend_connection(req->conn);
    st->suspended = true;
    st->handle.suspended = st;
    st->handle.parked = NULL;
    return &st->handle;
}

void request_resume(request_handle *handle, response *res)
{
    if (handle->parked != NULL) {
        parking_answer(handle->parked, res);
        return;
    }
    request_state *st = handle->suspended;
    st->pending = *res;
    memset(res, 0, sizeof(*res));
    MHD_resume_connection(st->req.conn);
}

const char *http_reason_phrase(unsigned status)
{
    const char *reason = MHD_get_reason_phrase_for(status);
    return reason ? reason : "";
}

/* One access-log line and one metrics sample per answered request, however it was sent. */
static void record_request(const char *request_id, const char *method, const char *url,
                           const char *user, int metrics_route, unsigned status,
                           size_t bytes_out, const struct timespec *started, bool completed)
{
    double elapsed = seconds_since(started);
    if (metrics_route >= 0)
        metrics_request(metrics_route, status, elapsed);
    log_set_request_id(request_id);
    LOG_INFO(MODULE, "%s %s %u %zu %.3fms%s%s%s", method, url, status, bytes_out,
             elapsed * 1000.0, user[0] ? " user=" : "", user, completed ? "" : " (client gone)");
    log_set_request_id(NULL);
}

/* A parked request's exchange is over: its line in the access log, and it leaves the count. */
static void parked_done(void *ctx, const parking_record *r, bool sent)
{
    http_server *h = ctx;
    record_request(r->request_id, r->method, r->url, r->user, r->metrics_route, r->status,
                   r->bytes_out, &r->started, sent);
    atomic_fetch_sub_explicit(&h->in_flight, 1, memory_order_relaxed);
}

void request_note_user(request *req, const char *name)
{
    request_state *st = req->http_state;
    size_t n = 0;
    /* A subject comes from a token's claims: keep the log line one line of plain text. */
    for (; name != NULL && name[n] != '\0' && n + 1 < sizeof(st->user); n++) {
        unsigned char c = (unsigned char)name[n];
        st->user[n] = c > 0x20 && c < 0x7f ? (char)c : '?';
    }
    st->user[n] = '\0';
}

const char *request_peer(const request *req, char *buf, size_t size)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    buf[0] = '\0';
    if (info == NULL || info->client_addr == NULL)
        return buf;
    const struct sockaddr *sa = info->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, buf,
                  (socklen_t)size);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, buf,
                  (socklen_t)size);
    return buf;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **ctx,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    request_state *st = *ctx;
    if (st == NULL)
        return;
    /* A parked request is not over: libmicrohttpd is done with its socket, which the parking
     * lot now owns, and it stays in flight (and unlogged) until its answer is written. */
    bool detached = st->parked != NULL;
    if (detached)
        parking_release(st->parked);
    if (st->answered && !detached)
        record_request(st->request_id, st->req.method, st->req.url, st->user, st->metrics_route,
                       st->status, st->bytes_out, &st->started,
                       toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    response_dispose(&st->pending);
    if (!detached)
        atomic_fetch_sub_explicit(&st->owner->in_flight, 1, memory_order_relaxed);
    for (size_t i = 0; i < st->ndecoded; i++)
        free(st->decoded[i]);
    free(st->decoded);
    free(st->path_storage);
    free(st->body);
    free(st);
    *ctx = NULL;
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 0)))
#endif
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char message[512];
    vsnprintf(message, sizeof(message), fmt, ap);
    size_t len = strlen(message);
    while (len > 0 && (message[len - 1] == '\n' || message[len - 1] == '\r'))
        message[--len] = '\0';
    LOG_DEBUG(MODULE, "libmicrohttpd: %s", message);
}

static int parse_listen(struct sockaddr_storage *addr, const char *listen, unsigned port)
{
    memset(addr, 0, sizeof(*addr));
    struct sockaddr_in *v4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)addr;
    const char *host = listen && *listen ? listen : "0.0.0.0";
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        return AF_INET;
    }
    char bare[64];
    size_t len = strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof(bare)) {
        memcpy(bare, host + 1, len - 2);
        bare[len - 2] = '\0';
        host = bare;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        return AF_INET6;
    }
    return err_set(ERR_BAD_REQUEST, "--listen: \"%s\" is not an IPv4 or IPv6 address", listen);
}

/*
 * The listening socket is ours, not libmicrohttpd's, so that a failure says why (EADDRINUSE,
 * EACCES) instead of a guess. SO_REUSEADDR only lets a restart bind past connections still in
 * TIME_WAIT; SO_REUSEPORT is never set: with it a second server on the same port silently
 * takes a share of the connections, where an operator expects it to fail.
 */
static int open_listener(const struct sockaddr_storage *addr, int family, const char *listen_on,
                         unsigned port)
{
    int one = 1;
    socklen_t len = family == AF_INET6 ? (socklen_t)sizeof(struct sockaddr_in6)
                                       : (socklen_t)sizeof(struct sockaddr_in);
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return err_set(ERR_UNAVAILABLE, "cannot create a socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (family == AF_INET6) /* as libmicrohttpd did: "::" is IPv6 only */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    /* A fleet woken by one commit reconnects all at once. The kernel cuts the backlog to
     * net.core.somaxconn, so asking for more than glibc's SOMAXCONN (4096) lets an operator
     * raise it with that sysctl alone (docs/performance.md, the fleet section). */
    if (bind(fd, (const struct sockaddr *)addr, len) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        int e = errno;
        close(fd);
        return err_set(ERR_UNAVAILABLE, "cannot listen on %s port %u: %s%s",
                       listen_on ? listen_on : "0.0.0.0", port, strerror(e),
                       e == EADDRINUSE ? " (another process holds it)" : "");
    }
    return fd;
}

int http_start(http_server **out, struct server *srv, const http_options *opts,
               http_dispatch_fn dispatch)
{
    struct sockaddr_storage addr;
    int family = parse_listen(&addr, opts->listen, opts->port);
    if (family < 0)
        return family;

    int listen_fd = open_listener(&addr, family, opts->listen, opts->port);
    if (listen_fd < 0)
        return listen_fd;
    http_server *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        close(listen_fd);
        return err_set(ERR_NOMEM, "out of memory");
    }
    h->srv = srv;
    h->dispatch = dispatch;
    h->max_body_bytes = opts->max_body_bytes;
    if (!opts->tls) {
        parking_handlers handlers = {.done = parked_done, .ctx = h};
        if (parking_lot_start(&h->parking, &handlers) < 0) {
            free(h);
            close(listen_fd);
            return err_last_code();
        }
    }

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | MHD_USE_TURBO;
    if (family == AF_INET6)
        flags |= MHD_USE_IPv6;
    bool tls = opts->tls;
    if (tls)
        flags |= MHD_USE_TLS;

    struct MHD_OptionItem options[16];
    size_t n = 0;
    options[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, listen_fd, NULL};
    options[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT,
                                           (intptr_t)opts->max_connections, NULL};
    options[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT,
                                           (intptr_t)opts->connection_timeout, NULL};
    /* One address holding many sockets must not take every slot from the others. */
    if (opts->per_ip_connections > 0)
        options[n++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                               (intptr_t)opts->per_ip_connections, NULL};
    /* The request line and headers live in this pool: a larger head is answered 431. */
    if (opts->connection_memory > 0)
        options[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                               (intptr_t)opts->connection_memory, NULL};
    if (opts->threads > 1)
        options[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE,
                                               (intptr_t)opts->threads, NULL};
    if (tls) {
        /* TLS 1.2 and 1.3 only, GnuTLS's secure cipher suites. */
        options[n++] = (struct MHD_OptionItem){
            MHD_OPTION_HTTPS_PRIORITIES, 0,
            (void *)(uintptr_t)"SECURE256:+SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"};
    }
    options[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

    /* Callbacks go as variadic arguments: an option array holds them only as integers. The
     * certificate comes from tls.c at each handshake, so a reload needs no restart. */
#define COMMON_OPTIONS                                                                             \
    MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed,   \
        NULL, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_ARRAY, options,             \
        MHD_OPTION_END
    if (tls)
        h->daemon = MHD_start_daemon(flags, (uint16_t)opts->port, NULL, NULL, on_request, h,
                                     MHD_OPTION_HTTPS_CERT_CALLBACK, tls_certificate_callback(),
                                     COMMON_OPTIONS);
    else
        h->daemon = MHD_start_daemon(flags, (uint16_t)opts->port, NULL, NULL, on_request, h,
                                     COMMON_OPTIONS);
#undef COMMON_OPTIONS
    if (h->daemon == NULL) {
        parking_lot_stop(h->parking);
        free(h);
        close(listen_fd);
        return err_set(ERR_UNAVAILABLE, "cannot start the HTTP daemon on %s port %u",
                       opts->listen ? opts->listen : "0.0.0.0", opts->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : opts->port;
    *out = h;
    return 0;
}

unsigned http_port(const http_server *h)
{
    return h->port;
}

unsigned http_requests_in_flight(const http_server *h)
{
    return atomic_load_explicit(&h->in_flight, memory_order_relaxed);
}

void http_quiesce(http_server *h)
{
    if (h != NULL && h->daemon != NULL) {
        MHD_socket fd = MHD_quiesce_daemon(h->daemon);
        if (fd != MHD_INVALID_SOCKET)
            close(fd);
    }
}

void http_stop(http_server *h)
{
    if (h == NULL)
        return;
    /* Stopping the daemon completes every connection, so each detached request has been
     * released to the lot before the lot stops. */
    if (h->daemon != NULL)
        MHD_stop_daemon(h->daemon);
    parking_lot_stop(h->parking);
    free(h);
}
