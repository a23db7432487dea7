/*
 * internal — what the two halves of the http/ wing share and nobody else sees: the shape of a
 * prepared response (http.c builds it for libmicrohttpd; parking.c writes the same bytes on a
 * parked socket), the long-poll handle, and the small helpers both need.
 */
#ifndef ALMANAC_HTTP_INTERNAL_H
#define ALMANAC_HTTP_INTERNAL_H

#include "http/request.h"

#include <stdatomic.h>
#include <stddef.h>

struct MHD_Response;

struct prepared_response {
    atomic_int refs;
    unsigned status;
    size_t size;
    struct MHD_Response *mhd;
    const char *body; /* the bytes mhd sends, for answers written outside it */
    char *fields;     /* its header lines ("Content-Type: ...\r\n..."), same use */
};

struct request_state;
struct parked_request;

/*
 * What the watch registry and the refresher hold for a parked request: exactly one of the two
 * is set, and request_resume answers through it.
 */
struct request_handle {
    struct request_state *suspended; /* http.c: a connection suspended inside libmicrohttpd */
    struct parked_request *parked;   /* parking.c: a socket parked outside it */
};

/* The reason phrase of an HTTP status ("OK"), "" when unknown. */
const char *http_reason_phrase(unsigned status);
/* Frees what a response holds (body, headers, a prepared reference, an unsent stream). */
void response_dispose(response *res);

#endif
