/*
 * announce — how a change travels: refresh describes what moved in a change_notice and hands
 * it to every listener subscribed at start-up, in the order they subscribed. Refresh knows the
 * announcer only; the watch registry, the SSE hub, the response cache (and whatever comes next:
 * a message bus, peer replicas, file watchers) each subscribe a listener in main.c.
 *
 * Listeners run on the refreshing thread, one after the other, while refresh holds its lock:
 * a listener must not call refresh, and should hand slow work (network I/O) to its own thread.
 * Subscribing is for start-up only; announcing may then happen from any thread.
 */
#ifndef ALMANAC_ANNOUNCE_H
#define ALMANAC_ANNOUNCE_H

#include <jansson.h>
#include <stdbool.h>

typedef struct change_notice {
    const char *repository;     /* the repository that moved; "" while a server serves one */
    const char *label;          /* the label from and to describe; NULL: the default label */
    const char *from;           /* its commit before the refresh ("" if none was readable) */
    const char *to;             /* its commit after the refresh */
    bool versioned;             /* false in dir mode: from and to are "", and anything kept by
                                 * commit id (rendered answers) may now be stale */
    const json_t *applications; /* array of the names of the applications whose files differ
                                 * between from and to ("*": all of them), no duplicates; NULL
                                 * when the label did not move (only some other ref did) */
    const json_t *files;        /* array of the plain files (repository paths that are not
                                 * configuration files) changed between from and to, at most
                                 * CHANGE_MAX_FILES; NULL when not known (dir mode, or the label
                                 * did not move). A file whose rendering changed only through a
                                 * placeholder is not listed: its application is. */
    bool heard_elsewhere;       /* the fetch was asked for only by another node's announcement
                                 * (a bus event): listeners that announce to those same nodes
                                 * have nothing to tell them */
} change_notice;

#define CHANGE_MAX_FILES 100

/* Called for every announcement; ctx is what was given to change_subscribe. */
typedef void (*change_listener)(void *ctx, const change_notice *notice);

typedef struct change_announcer change_announcer;

int change_announcer_new(change_announcer **out);
void change_announcer_free(change_announcer *a);

/* Adds a listener (at most CHANGE_MAX_LISTENERS). Start-up only: not safe against announce. */
#define CHANGE_MAX_LISTENERS 16
int change_subscribe(change_announcer *a, change_listener fn, void *ctx);

/* Calls every listener with notice, in subscription order. a may be NULL (nobody listens). */
void change_announce(const change_announcer *a, const change_notice *notice);

#endif
