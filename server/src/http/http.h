/*
 * http — the HTTP server: libmicrohttpd's daemon, the request lifecycle (set up on the first
 * call, take the body on the next ones, answer on the last, free in the completion callback),
 * percent-decoding of the path (each segment exactly once), body caps, one access-log line and
 * one metrics sample per request. What to answer is decided by the dispatcher (routes.c).
 */
#ifndef ALMANAC_HTTP_H
#define ALMANAC_HTTP_H

#include "http/request.h"

#include <stdbool.h>

struct server;

typedef struct http_server http_server;

/* Fills res for req; returns 0 (errors are answers too, via response_error). */
typedef int (*http_dispatch_fn)(request *req, response *res, int *metrics_route);

typedef struct http_options {
    const char *listen;         /* address to bind, IPv4 or IPv6 literal */
    unsigned port;              /* 0: any free port */
    unsigned threads;           /* worker threads, >= 1 */
    unsigned max_connections;
    size_t max_body_bytes;
    unsigned connection_timeout; /* seconds a connection may stay idle */
    unsigned per_ip_connections; /* concurrent connections from one address; 0: no limit */
    size_t connection_memory;   /* bytes for one connection's request head; 0: the default */
    bool tls;                   /* HTTPS with the identity tls.c holds (tls_load first) */
} http_options;

/*
 * Splits a raw path (without its leading '/') in place into segments, each percent-decoded
 * exactly once; a trailing slash is ignored. ERR_BAD_REQUEST for an empty segment, a decoded
 * NUL, invalid UTF-8 or more than max segments.
 */
int http_split_path(char *path, char *segments[], size_t max, size_t *count);

/*
 * Decodes one application/x-www-form-urlencoded value in place: '+' is a space, %XX a byte, a
 * malformed escape stays as written. Returns the decoded length (a decoded NUL makes it differ
 * from strlen, for callers that must refuse one).
 */
size_t http_form_decode(char *text);

int http_start(http_server **out, struct server *srv, const http_options *opts,
               http_dispatch_fn dispatch);
/* The port actually bound (useful with port 0). */
unsigned http_port(const http_server *h);
/* Requests received and not yet completed (parked watchers included; idle keep-alive
 * connections not). */
unsigned http_requests_in_flight(const http_server *h);
/* Stops accepting new connections; in-flight requests finish. */
void http_quiesce(http_server *h);
/* Waits for in-flight requests and frees everything. NULL ok. */
void http_stop(http_server *h);

#endif
