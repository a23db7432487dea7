/*
 * parking — long-poll sockets held outside libmicrohttpd while they wait.
 *
 * A parked long poll has nothing to read and nothing to send until its configuration changes or
 * its deadline passes, yet a suspended libmicrohttpd connection keeps its whole state for it: the
 * connection struct and the touched pages of its memory pool, about 6 KB each. So once http.c
 * has parsed a watch request and found it current, it parks a duplicate of the socket here and
 * lets libmicrohttpd drop the connection; what stays per watcher is one small record and the
 * descriptor. One thread notices clients that go away, writes each answer (finishing partial
 * writes as the socket drains) and closes the connection after it.
 *
 * It does not decide when to answer (watch.c) nor what (http.c builds the bytes).
 */
#ifndef ALMANAC_PARKING_H
#define ALMANAC_PARKING_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

typedef struct parking_lot parking_lot;
typedef struct parked_socket parked_socket;

typedef struct parking_handlers {
    /* The exchange is over; sent tells whether the whole answer went out. Runs exactly once per
     * parked socket, on the lot's thread, after which its ctx is never used again. */
    void (*done)(void *ctx, bool sent);
} parking_handlers;

int parking_lot_start(parking_lot **out, const parking_handlers *handlers);
/*
 * Finishes the answers it can without waiting, closes every socket still held (done runs for
 * each) and frees the lot. Every parked socket must have been answered first: nothing may call
 * parking_send afterwards. NULL ok.
 */
void parking_lot_stop(parking_lot *lot);

/*
 * Parks fd (a duplicate: the lot owns and closes it) with the caller's ctx. Nothing is watched
 * until parking_release, so the HTTP server can first let go of its own descriptor. NULL when
 * the lot is stopping or out of memory (fd stays the caller's).
 */
parked_socket *parking_park(parking_lot *lot, int fd, void *ctx);
/* The HTTP server no longer uses its descriptor for this socket: the lot takes over. */
void parking_release(parked_socket *s);

typedef struct parking_answer {
    char *head; /* status line and headers, owned: wiped and freed when done */
    size_t head_len;
    const char *body; /* borrowed until body_done(body_cls) runs; may be NULL */
    size_t body_len;
    void (*body_done)(void *body_cls);
    void *body_cls;
} parking_answer;

/* Answers a parked socket, exactly once, from any thread (before or after its release). The
 * answer must end the connection ("Connection: close"): the lot closes it once it is sent. */
void parking_send(parked_socket *s, const parking_answer *answer);

#endif
