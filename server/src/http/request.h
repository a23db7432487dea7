/*
 * request — what a route handler sees of an HTTP exchange, with no libmicrohttpd type in sight
 * (only http.c includes <microhttpd.h>).
 *
 * A handler reads the request (method, decoded path segments, query, headers, body), calls one
 * service module, and fills the response. Bodies are owned by the response once set. Errors go
 * through response_error(), which renders Spring's JSON error body from the err_code table, so
 * every handler fails the same way.
 */
#ifndef ALMANAC_REQUEST_H
#define ALMANAC_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct server;

#define REQUEST_MAX_SEGMENTS 64

typedef struct request {
    const char *method;           /* "GET", "HEAD", "POST", ... */
    const char *url;              /* the path as received, not decoded (for error bodies, logs) */
    char *segments[REQUEST_MAX_SEGMENTS]; /* path segments, each percent-decoded exactly once */
    size_t nsegments;
    const char *body;             /* POST body (not NUL-terminated), or NULL */
    size_t body_len;
    struct server *server;
    void *conn;                   /* http.c's connection, for the accessors below */
    void *http_state;             /* http.c's per-request state */
    const char *user;             /* authenticated principal, NULL when open or anonymous */
    bool is_admin;                /* the principal may use admin endpoints */
    const void *principal;        /* auth.c's entry for the caller, NULL when auth is off */
} request;

typedef struct response_header {
    char *name;
    char *value;
} response_header;

typedef struct response {
    unsigned status;
    char *content_type;           /* owned */
    char *body;                   /* owned, may be NULL for an empty body */
    size_t body_len;
    struct prepared_response *prepared; /* alternatively, a ready response (one reference) */
    struct response_stream_handle *stream; /* or a stream (response_stream) */
    response_header headers[8];
    size_t nheaders;
} response;

/*
 * A response rendered once and sent many times (the response cache): status, headers and body
 * are fixed, so sending it costs no formatting, copy or allocation. Reference-counted; the
 * last release frees it after any connection still sending it is done.
 */
typedef struct prepared_response prepared_response;
/* Takes ownership of body. etag may be NULL. NULL on OOM. */
prepared_response *prepared_response_new(unsigned status, const char *content_type,
                                         const char *etag, char *body, size_t len);
/* Adds a header before p is first sent (value: printable ASCII). -1 on OOM. */
int prepared_response_add_header(prepared_response *p, const char *name, const char *value);
prepared_response *prepared_response_retain(prepared_response *p);
void prepared_response_release(prepared_response *p); /* NULL ok */
size_t prepared_response_size(const prepared_response *p);
/* Sends p (the response takes over one reference the caller passes in). */
void response_use_prepared(response *res, prepared_response *p);

/*
 * Long poll. request_suspend parks the request from inside a handler (which then returns
 * with nothing set) and hands back a handle; request_resume answers it later, from any thread,
 * exactly once, taking over res's contents. A parked request costs no thread: its socket leaves
 * libmicrohttpd for http/parking.c (under TLS it stays suspended inside libmicrohttpd), and
 * nothing times it out: whoever holds the handle keeps the deadline.
 */
typedef struct request_handle request_handle;
request_handle *request_suspend(request *req);
void request_resume(request_handle *handle, response *res);
/*
 * Streaming answers (Server-Sent Events). The read callback fills buf with up to max bytes and
 * returns how many, or 0 when it has nothing now — the connection is then parked until
 * response_stream_wake — or -1 to end the stream. It runs under the stream's own lock, so a
 * wake between its "nothing to send" and the park is never lost; it must not block, and the
 * caller must never hold a lock it takes while calling response_stream_wake.
 * on_close(ctx) runs exactly once when the stream ends for whatever reason; read is never
 * called after it. *handle is a reference for the caller (release it when done with it).
 */
typedef struct response_stream_handle response_stream_handle;
typedef long (*response_stream_read_fn)(void *ctx, char *buf, size_t max);
int response_stream(response *res, const char *content_type, response_stream_read_fn read,
                    void *ctx, void (*on_close)(void *ctx), response_stream_handle **handle);
void response_stream_wake(response_stream_handle *handle);
response_stream_handle *response_stream_retain(response_stream_handle *handle);
void response_stream_release(response_stream_handle *handle);

/* Names the authenticated caller in this request's access-log line (a user, a token's name, a
 * token's subject; never a credential). Copied; control characters and spaces become '?'. */
void request_note_user(request *req, const char *name);

/* The peer's IP address as text, for per-client limits and logs. */
const char *request_peer(const request *req, char *buf, size_t size);

/* Header value, case-insensitive name, or NULL. */
const char *request_header(const request *req, const char *name);
/* Query argument value (decoded), or NULL; an argument given without "=value" returns "". */
const char *request_query(const request *req, const char *name);

/* Sets status and body (taking ownership of body, which may be NULL). 0, or ERR_NOMEM. */
int response_set(response *res, unsigned status, const char *content_type, char *body,
                 size_t len);
/* Copies body. */
int response_set_copy(response *res, unsigned status, const char *content_type, const char *body,
                      size_t len);
int response_add_header(response *res, const char *name, const char *value);
/*
 * Spring's error body {"timestamp","status","error","message","path"} for err_code code, with
 * message (NULL: err_message()). Returns 0 so handlers can `return response_error(...)`.
 */
int response_error(response *res, const request *req, int code, const char *message);
/* A JSON body (the reference is stolen) with the given status. */
int response_json(response *res, unsigned status, json_t *json);

#endif
