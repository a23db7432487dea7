/*
 * metrics — process-wide counters and histograms, rendered in Prometheus text format for
 * GET /metrics. Updates are lock-free atomics, cheap enough for every request. Label values come
 * from fixed sets (route names registered at start, status codes), never from request input,
 * so cardinality is bounded.
 */
#ifndef ALMANAC_METRICS_H
#define ALMANAC_METRICS_H

#include <stdbool.h>
#include <stddef.h>

void metrics_init(void);
/* Registers a route name ("environment", "document", ...) and returns its id (< 32 routes). */
int metrics_route_id(const char *route_name);
void metrics_request(int route_id, unsigned status, double seconds);
void metrics_response_cache(bool hit);
void metrics_snapshot_build(bool ok, double seconds);
void metrics_git_fetch(bool ok, double seconds);
/* A fetch abandoned at --git-timeout: counted as result="timeout", not "failed". */
void metrics_git_fetch_timeout(double seconds);
void metrics_set_last_fetch_ok(double unix_seconds);
/* One commit's signature checked (--verify-commits): verified or refused. Each commit once. */
void metrics_commit_verification(bool verified);
typedef enum { METRICS_BUS_PUBLISHED, METRICS_BUS_RECEIVED, METRICS_BUS_FAILED } metrics_bus_event;
void metrics_bus(metrics_bus_event what);
/* A requested fetch: immediate (leading edge) or coalesced into one running or due. */
void metrics_refresh_request(bool immediate);
void metrics_set_watchers(long count);
void metrics_set_watchers_max(long count); /* the registry's cap, set at start */
/* Files of the default label's commit that do not parse (a gauge). */
void metrics_set_broken_files(long count);
/* One answer composed from a last-good commit (--broken-file last-good). */
void metrics_stale_answer(void);
/* The mirror was found damaged and cloned again (ok), or cloning it again failed. */
void metrics_mirror_repair(bool ok);
/* Packs of the mirror merged into one (ok), or a repack that failed (a full disk). */
void metrics_repack(bool ok);
/* The whole exposition text; caller frees. NULL on OOM. */
char *metrics_render(size_t *len);

#endif
