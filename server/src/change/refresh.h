/*
 * refresh — bringing the server up to date with its source: fetch the remote (or rescan the
 * directory) and drop what can no longer be trusted. Called by the poll timer, by
 * POST /actuator/refresh and by webhooks.
 */
#ifndef ALMANAC_REFRESH_H
#define ALMANAC_REFRESH_H

#include <stdbool.h>

struct repo;
struct snapcache;
struct change_announcer;
struct repo_set;
struct repo_source;

/* What refreshing needs, handed in: one source, its snapshot cache, and where to announce. The
 * refresher keeps a copy; the pointers must outlive it. */
typedef struct refresh_deps {
    struct repo *repo;
    struct snapcache *snapshots;
    const struct change_announcer *changes; /* NULL: nobody listens */
    /* One repository of a set (source/repos.h), or NULL with repo above: its refreshes are
     * serialised on its own lock, counted on it, announced under its name, and for a template
     * each of its mirrors is refreshed (repo is then unused). */
    struct repo_set *set;
    struct repo_source *source;
    /* Set by the refresher for one fetch: only refresher_request_heard asked for it. */
    bool heard_elsewhere;
} refresh_deps;

typedef struct refresh_result {
    bool changed;     /* a ref moved (dir mode: always true, a rescan cannot tell) */
    char version[41]; /* the default label's commit after the refresh ("" in dir mode) */
} refresh_result;

/* Serialised: concurrent callers wait for each other. A failed fetch keeps what was served. */
int refresh_now(const refresh_deps *deps, refresh_result *out);

/*
 * The background refresher: one thread that polls every interval seconds (0: never; after a
 * failed fetch it waits twice as long each time, up to 10 minutes) and runs the refreshes that
 * webhooks, peers and the bus ask for, on the leading edge: a request that finds it idle
 * fetches at once; requests that arrive while a fetch runs, or less than min_gap_ms after one
 * began, coalesce into one more fetch when the gap ends. A burst of notifications within
 * min_gap_ms therefore costs at most two fetches, and the first push is seen without delay.
 */
typedef struct refresher refresher;
int refresher_start(refresher **out, const refresh_deps *deps, unsigned interval,
                    unsigned min_gap_ms);
/* Asks for a refresh soon; never blocks. */
void refresher_request(refresher *r);
/* The same for every repository's refresher (repo_source.owner_data) of set. */
void refresh_request_all(struct repo_set *set);
/* The same, asked for by another node's announcement (a bus event): a change that fetch finds
 * is announced with heard_elsewhere, unless some other request wanted the same fetch. */
void refresher_request_heard(refresher *r);
void refresh_request_all_heard(struct repo_set *set);
/*
 * POST /actuator/refresh: parks req and answers it once a refresh begun after this call ends
 * (200 {"changed","version"}, or the fetch's error), or with 202 {"pending":true} if that takes
 * longer than 10 s. Never blocks on Git. <0 (nothing parked) when stopping or out of memory.
 */
struct request;
int refresher_answer(refresher *r, struct request *req);
/* The same, for a signal that names the default label's commit we should have (a peer's
 * notice): when the fetch is due and that commit is already here, it is skipped. */
void refresher_request_commit(refresher *r, const char *commit);
/* Fetches completed since start (for tests and metrics). */
unsigned long refresher_runs(refresher *r);
/* Stops the threads and answers whoever waits; requests that still arrive (an HTTP worker
 * finishing a webhook while the server stops) find a stopped refresher and are turned away, so
 * the struct must outlive the HTTP server: refresher_free, after http_stop. */
void refresher_stop(refresher *r);
void refresher_free(refresher *r);

#endif
