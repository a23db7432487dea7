/*
 * render — an Environment turned into the bytes a client receives (Spring's Environment JSON,
 * v1 and v2, and the merged .yml/.properties/.json documents), with an ETag, kept in a bounded
 * response cache keyed by (format, applications, profiles, label, commit). A repeated request
 * costs one hash lookup and a write of bytes that were formatted once.
 */
#ifndef ALMANAC_RENDER_H
#define ALMANAC_RENDER_H

#include "change/announce.h"
#include "compose/environment.h"
#include "compose/etag.h"
#include "http/request.h"

#include <stdbool.h>
#include <stddef.h>

struct server;

typedef enum {
    RENDER_ENV_V1,         /* application/json */
    RENDER_ENV_V2,         /* application/vnd.spring-cloud.config-server.v2+json, with origins */
    RENDER_DOC_YAML,       /* /{app}-{profiles}.yml and .yaml */
    RENDER_DOC_PROPERTIES, /* .properties */
    RENDER_DOC_JSON,       /* .json */
    RENDER_PLAIN_FILE      /* a plain file: render_plain_file, never render_get */
} render_format;

typedef struct respcache respcache;

int respcache_new(respcache **out, size_t max_bytes, size_t max_entries);
void respcache_free(respcache *c);
/* Forgets everything (dir mode after a refresh: its "commit" never changes). */
void respcache_clear(respcache *c);
/* A change listener (announce.h), ctx the cache: clears it when the source has no commit ids
 * (dir mode), since then a key cannot tell an old answer from a new one. */
void respcache_on_change(void *ctx, const change_notice *notice);

typedef struct render_result {
    prepared_response *ok;           /* 200 with the body and ETag; one reference for the caller */
    prepared_response *not_modified; /* 304 with the same ETag; one reference for the caller */
    char etag[ETAG_SIZE];     /* quoted, as in the header */
    char version[41];                /* the commit the answer was built from ("" in dir mode) */
} render_result;

/*
 * The rendered answer for q (resolved: env_query_resolve) in format fmt: from the cache, or
 * composed at q->commit, rendered and cached. Environment JSON echoes q->label_echo.
 * Errors: those of environment_compose, ERR_BAD_REQUEST for a malformed key in a merged
 * document. On success the caller releases both prepared responses.
 */
int render_get(render_result *out, struct server *srv, const env_query *q, render_format fmt,
               bool resolve_placeholders);
void render_result_dispose(render_result *r);

/*
 * A plain file (`GET /{app}/{profile}/{label}/{path}`) for q (resolved), placeholders
 * resolved, from the cache or rendered and cached like the rest. Its ETag is a digest of the
 * bytes sent, so a commit that leaves the rendered file as it was keeps its tag, and one that
 * changes only a value it uses changes it. path is validated, slashes as "/". Errors:
 * environment_compose's, ERR_NOT_FOUND for a missing file, repo_read_file's.
 */
int render_plain_file(render_result *out, struct server *srv, const env_query *q,
                      const char *path);

/*
 * The current answer for a query not yet resolved (a watched one: its label may have moved
 * since it was asked): resolves a copy of it, then render_get (placeholders resolved) or, for
 * RENDER_PLAIN_FILE, render_plain_file of path. srv is the struct server; the signature is
 * the watch registry's watch_render_fn.
 */
int render_latest(void *srv, render_result *out, const env_query *q, render_format fmt,
                  const char *path);

/* Environment JSON for env (not cached); exposed for tests and for the watch path. */
char *render_environment_json(const environment *env, const env_query *q, render_format fmt,
                              size_t *len);
/* json_dumps flags for value: compact, and the real precision that is exact and readable. */
size_t render_json_flags(const json_t *value);
/* The ETag of an Environment: a digest of its property sources' names and values only. */
void render_environment_etag(const environment *env, render_format fmt,
                             char etag[ETAG_SIZE]);

#endif
