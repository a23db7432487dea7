/*
 * watch — long-poll watchers of an Environment: parked requests grouped by what they watch
 * (applications, profiles, label, format), woken when that Environment's ETag changes, or with
 * 304 when their own deadline passes. A commit that leaves an Environment as it was wakes
 * nobody. A watcher costs one small record here and a request_handle (http/request.h); the
 * socket itself is held by http/parking.c, outside libmicrohttpd (a TLS connection stays
 * suspended inside libmicrohttpd instead). How a watched answer is rendered is handed in
 * (watch_deps). Woken by watch_notify, which main.c subscribes to refresh's change notices
 * (watch_on_change).
 */
#ifndef ALMANAC_WATCH_H
#define ALMANAC_WATCH_H

#include "change/announce.h"
#include "compose/render.h"
#include "http/request.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct watch_registry watch_registry;

/*
 * How to render what a group watches, now: the query as it was asked (its label not yet
 * resolved: it may have moved since), in fmt, with path for RENDER_PLAIN_FILE. The server
 * hands in compose/render.c's render_latest; a test hands in its own table.
 */
typedef int (*watch_render_fn)(void *ctx, render_result *out, const env_query *q,
                               render_format fmt, const char *path);

/* Whether a change of the repository named can alter what (applications, profiles) are
 * answered (source/repos.h: each is served by one repository). */
typedef bool (*watch_serves_fn)(void *ctx, const char *repository, const char *applications,
                                const char *profiles);

typedef struct watch_deps {
    watch_render_fn render;
    watch_serves_fn serves; /* NULL: every change concerns every watcher */
    void *ctx;
} watch_deps;

typedef struct watch_limits {
    unsigned max_timeout;      /* seconds; longer requests are cut to this */
    size_t max_watchers;       /* in all; beyond it new watchers get 429 */
    size_t max_per_client;     /* per peer address; beyond it 429 */
} watch_limits;

/* Starts the registry and its deadline thread. */
int watch_registry_new(watch_registry **out, const watch_deps *deps, const watch_limits *limits);
/* Answers every parked watcher (304, so clients simply ask again elsewhere) and stops. */
void watch_registry_shutdown(watch_registry *w);
void watch_registry_free(watch_registry *w);

/*
 * Handles `?watch=<etag>&timeout=<s>` for an Environment or merged-document request (path
 * NULL), or for a plain file (fmt RENDER_PLAIN_FILE, path its repository path). If the current
 * answer's ETag differs from the caller's, answers at once; otherwise parks the request.
 * Answers errors through res like any handler.
 */
int watch_request(watch_registry *w, request *req, response *res, const env_query *q,
                  render_format fmt, const char *path, const char *etag, const char *timeout);

/* After a refresh: re-render everything watched (Environments and plain files, whose
 * placeholders may have changed with no edit to the file) and wake the watchers whose answer
 * changed. */
void watch_notify(watch_registry *w);
/* A change listener (announce.h), ctx the registry: any moved ref may concern a watched
 * label, so every announcement is worth a watch_notify. */
void watch_on_change(void *ctx, const change_notice *notice);

/* Parked watchers right now. */
size_t watch_count(watch_registry *w);
/* The caps the registry was started with (for health and metrics). */
const watch_limits *watch_registry_limits(const watch_registry *w);
/* Parked watchers per requested applications ("orders", "orders,billing"): a new JSON object
 * {applications: count}, or NULL on OOM. For the console. */
json_t *watch_counts_by_application(watch_registry *w);

#endif
