/*
 * refresh — bringing the server up to date with its source: fetch the remote (or rescan the
 * directory) and drop what can no longer be trusted. Called by the poll timer, by
 * POST /actuator/refresh and by webhooks.
 */
#ifndef ALMANAC_REFRESH_H
#define ALMANAC_REFRESH_H

#include <stdbool.h>

struct server;

typedef struct refresh_result {
    bool changed;     /* a ref moved (dir mode: always true, a rescan cannot tell) */
    char version[41]; /* the default label's commit after the refresh ("" in dir mode) */
} refresh_result;

/* Serialised: concurrent callers wait for each other. A failed fetch keeps what was served. */
int refresh_now(struct server *srv, refresh_result *out);

/*
 * The background refresher: one thread that polls every interval seconds (0: never; after a
 * failed fetch it waits twice as long each time, up to 10 minutes) and runs the refreshes that
 * webhooks ask for, coalesced: a request waits until no other came for quiet_ms, at most
 * max_delay_ms after the first, so a burst of notifications costs one fetch.
 */
typedef struct refresher refresher;
int refresher_start(refresher **out, struct server *srv, unsigned interval, unsigned quiet_ms,
                    unsigned max_delay_ms);
/* Asks for a refresh soon; never blocks. */
void refresher_request(refresher *r);
/* Fetches completed since start (for tests and metrics). */
unsigned long refresher_runs(refresher *r);
void refresher_stop(refresher *r);

#endif
