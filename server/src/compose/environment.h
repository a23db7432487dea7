/*
 * environment — Spring's Environment for (applications, profiles, label): the ordered property
 * sources a request sees, composed from a commit's snapshot exactly the way Spring Cloud Config
 * orders files, documents, search paths and overrides, with `{cipher}` values decrypted.
 */
#ifndef ALMANAC_ENVIRONMENT_H
#define ALMANAC_ENVIRONMENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "compose/snapshot.h"

struct server;
struct keyring;

#define ENV_MAX_APPLICATIONS 32 /* names in one request ("a,b,c") */
#define ENV_MAX_PROFILES 32     /* profiles in one request */

typedef struct env_source {
    char *name;      /* "<repo display uri>/<path>", "... (document #N)", or "overrides" */
    json_t *props;   /* flat map, owned reference */
    json_t *origins; /* key -> "LINE:COL" ("Config server overrides" for overrides, as
                      * Spring shows them), owned reference; may be NULL */
} env_source;

typedef struct environment {
    env_source *sources; /* most specific first */
    size_t count;
    char version[41];   /* commit id; "" in dir mode */
    snapshot *snapshot; /* retained */
    char **locations;   /* the search locations used: "" (the root) first, lowest first */
    size_t nlocations;
} environment;

/*
 * What a request asks for, carried from the router to the response. The router fills in the
 * names and then resolves the label once (env_query_resolve); composition, the response cache
 * key and the answer's version all use that one commit, so a fetch moving the label meanwhile
 * cannot split one answer across two commits.
 */
typedef struct env_query {
    const char *applications; /* "orders" or "orders,billing", already validated */
    const char *profiles;     /* "dev" or "dev,mysql", already validated */
    const char *label;        /* as asked: NULL for the default label; "(_)" already "/" */
    const char *label_echo;   /* as the caller wrote it (Environment JSON echoes it); NULL: null */
    bool decrypt;             /* decrypt {cipher} values (false: leave them as they are) */
    bool resolved;            /* commit is set (env_query_resolve) */
    struct repo_source *source; /* the repository commit is of (env_query_resolve_served);
                                 * NULL: the server's default one */
    char commit[41];          /* what label named when resolved; "" in dir mode */
} env_query;

struct repo;
/* Resolves q->label to q->commit, once per request. Errors: repo_resolve's (ERR_NOT_FOUND for
 * an unknown label). */
int env_query_resolve(env_query *q, struct repo *source);
struct server;
struct repo_source;
/*
 * The same in the repository that serves q's applications and profiles (source/repos.h: the
 * default one, one of repos:, or a template's mirror, cloned now if needed), kept in q->source
 * until env_query_done. Errors: repo_resolve's, ERR_NOMEM.
 */
int env_query_resolve_served(env_query *q, struct server *srv);
/* Lets go of q->source (a template's mirror may then be removed); q stays readable. */
void env_query_done(env_query *q, struct server *srv);

typedef struct overrides overrides; /* --overrides-file, loaded once */

/*
 * Loads a YAML (.yml/.yaml) or .properties file; its documents merge, later over earlier. As in
 * Spring, values are strings, and `\${` / `\{` in a value stand for a literal `${` / `{`
 * (the escape Spring users write so the server passes a placeholder on to clients).
 */
int overrides_load(overrides **out, const char *path);
void overrides_free(overrides *o);
/* The flat map (borrowed), for tests and diagnostics. */
const json_t *overrides_props(const overrides *o);

/*
 * Composes q at q->commit (q must be resolved: ERR_INTERNAL otherwise), the snapshot from
 * srv->snapshots. Uses
 * srv->search_paths, srv->overrides, srv->keyring, srv->cloud_platform,
 * repo_display_uri(srv->repo).
 * ERR_NOT_FOUND for an unknown label; ERR_CONFIG "<path>:<line>:<col>: <reason>" when a file the
 * request needs failed to parse (other files/applications keep working). On failure *out is
 * left empty (environment_dispose is still safe).
 */
int environment_compose(environment *out, struct server *srv, const env_query *q);

/*
 * The composition itself, on a snapshot the caller holds, without a server (for tests and for
 * callers with a snapshot of their own). q->label and q->commit are not used: label_name and
 * the snapshot stand in for them.
 * The errors are environment_compose's but ERR_NOT_FOUND; ERR_BAD_REQUEST for more than
 * ENV_MAX_APPLICATIONS applications or ENV_MAX_PROFILES profiles.
 */
typedef struct env_compose_params {
    snapshot *snapshot;              /* the caller's; retained into the environment */
    const char *display_uri;         /* prefixes source names: "<display_uri>/<path>" */
    const char *const *search_paths; /* NULL-terminated, or NULL */
    const overrides *overrides;      /* or NULL */
    const struct keyring *keyring;   /* or NULL (then every {cipher} value is invalid) */
    const char *label_name;          /* for {label} in search paths; NULL: such paths skipped */
    char label_storage[256];         /* environment_params' copy of the default label */
    const char *cloud_platform;      /* for on-cloud-platform: springconf's canonical name
                                      * ("kubernetes", …); NULL: "none" */
} env_compose_params;
int environment_compose_snapshot(environment *out, const env_compose_params *p, const env_query *q);

/*
 * The parameters environment_compose uses for a resolved query: the snapshot of q->commit
 * (retained: the caller releases p->snapshot) and the server's search paths, overrides and
 * keyring (borrowed); q->label names {label} in search paths. Errors: snapcache_get's,
 * ERR_INTERNAL for a query not resolved.
 */
int environment_params(env_compose_params *p, struct server *srv, const env_query *q);

void environment_dispose(environment *env);

/*
 * The merged flat map for the /{app}-{profiles}.{yml,properties,json} documents: from the
 * lowest source up, a key keeps its first position and the highest value; a list (keys with
 * `[`) from a higher source replaces the whole list below; lists come after scalars;
 * `spring.profiles` dropped. New reference.
 */
json_t *environment_merge(const environment *env);

#endif
