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

#endif
