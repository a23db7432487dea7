/*
 * parking — long-poll requests held outside libmicrohttpd while they wait: detaching their
 * socket, answering it, releasing it. All of a parked request's life after http.c lets go of
 * it is here.
 *
 * A parked long poll has nothing to read and nothing to send until its configuration changes or
 * its deadline passes, yet a suspended libmicrohttpd connection keeps its whole state for it: the
 * connection struct and the touched pages of its memory pool, about 6 KB each. So once a handler
 * has found a watch request current and calls request_suspend, http.c hands the socket here
 * (parking_detach takes a duplicate) and lets libmicrohttpd drop the connection; what stays per
 * watcher is one small record and the descriptor. One thread notices clients that go away,
 * writes each answer (finishing partial writes as the socket drains) and closes the connection
 * after it; the answer is written as libmicrohttpd would have written it, with
 * "Connection: close".
 *
 * It does not decide when to answer (watch.c, refresh.c) nor what (the handlers' response).
 */
#ifndef ALMANAC_PARKING_H
#define ALMANAC_PARKING_H

#include "http/request.h"

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

typedef struct parking_lot parking_lot;
typedef struct parked_request parked_request;

/* What the access log and the metrics need of a parked request once it is over. */
typedef struct parking_record {
    const char *request_id;
    const char *method;
    const char *url;         /* as received */
    const char *user;        /* "" when none */
    struct timespec started; /* CLOCK_MONOTONIC */
    int metrics_route;       /* -1: none */
    unsigned status;         /* of the answer written; 0 when none was */
    size_t bytes_out;        /* body bytes of that answer */
} parking_record;

typedef struct parking_handlers {
    /* The exchange is over; sent tells whether the whole answer went out. Runs exactly once per
     * parked request, on the lot's thread; record is valid only during the call. */
    void (*done)(void *ctx, const parking_record *record, bool sent);
    void *ctx;
} parking_handlers;

int parking_lot_start(parking_lot **out, const parking_handlers *handlers);
/*
 * Finishes the answers it can without waiting, closes every socket still held (done runs for
 * each) and frees the lot. Every parked request must have been answered first: nothing may call
 * parking_answer afterwards. NULL ok.
 */
void parking_lot_stop(parking_lot *lot);

/*
 * Detaches a request: fd is the HTTP server's descriptor of its socket, of which the lot takes a
 * duplicate (and owns it); record's strings are copied (status and bytes_out are filled in
 * later). Nothing is watched until parking_release, so the HTTP server can first let go of its
 * own descriptor. NULL when the lot is stopping or out of memory or descriptors: the request
 * stays the HTTP server's.
 */
parked_request *parking_detach(parking_lot *lot, int fd, const parking_record *record);
/* The handle request_resume answers through (the caller's of request_suspend). */
request_handle *parking_handle(parked_request *p);
/* The route the handler ran as, for the metrics (before parking_release). */
void parking_set_route(parked_request *p, int metrics_route);
/* The HTTP server no longer uses its descriptor for this socket: the lot takes over. */
void parking_release(parked_request *p);
/*
 * Answers a parked request, exactly once, from any thread (before or after its release), taking
 * over res's contents: status line, Date, res's fields, Content-Length (none on 1xx, 204 and
 * 304), "Connection: close", and the body unless the request was a HEAD. A prepared response
 * lends its bytes until they are sent. The lot closes the connection once it is written.
 */
void parking_answer(parked_request *p, response *res);

#endif
