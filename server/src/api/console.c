/*
 * console — the read-only web console at /ui/: its static files (compiled into the binary, sent
 * under a strict Content-Security-Policy) and the two read models only it needs:
 *
 *   GET /ui/api/overview                       applications x profiles of the served commit,
 *                                              each with the commit that last changed it, and
 *                                              parked watchers per application
 *   GET /ui/api/environment/{app}/{profiles}   one Environment key by key: the winning value,
 *                                              its file, line and column, the layers it
 *                                              overrode; secrets always masked
 *
 * Everything else the console shows comes from the public API (/diff, /events,
 * /actuator/health). Authorisation is the API's: every /ui/ route needs a valid caller when
 * --auth-file is set, and applications the caller may not read are left out.
 */
#include "api/console.h"

#include "names.h"
#include "api/ui_assets.h"
#include "change/watch.h"
#include "compose/diff.h"
#include "compose/environment.h"
#include "compose/snapshot.h"
#include "errors.h"
#include "guard/auth.h"
#include "log.h"
#include "server.h"
#include "source/repo.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MODULE "console"
#define NAME_MAX_LEN 512
#define HISTORY_DEPTH 30        /* commits examined for "last changed" */
#define MAX_COMPOSITIONS 4000   /* per overview: beyond, "last changed" says "earlier" */
#define MASK "******"

/* No inline script or style, nothing from elsewhere: the console works offline and cannot be
 * turned against its user by a value it displays. */
#define CSP "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " \
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/* ---- static files ------------------------------------------------------------------------- */

int console_handle_asset(request *req, response *res)
{
    size_t url_len = strcspn(req->url, "?");
    if (req->nsegments == 1 && req->url[url_len - 1] != '/') {
        /* "/ui": the files use relative URLs, so the slash matters */
        response_set_copy(res, 301, "text/plain", "/ui/", 4);
        response_add_header(res, "Location", "/ui/");
        return 0;
    }
    const char *name = req->nsegments == 2 && req->segments[1][0] ? req->segments[1]
                                                                   : "index.html";
    for (size_t i = 0; i < ui_asset_count; i++) {
        if (strcmp(ui_assets[i].name, name) != 0)
            continue;
        response_set_copy(res, 200, ui_assets[i].content_type, (const char *)ui_assets[i].data,
                          ui_assets[i].size);
        response_add_header(res, "Content-Security-Policy", CSP);
        response_add_header(res, "X-Content-Type-Options", "nosniff");
        response_add_header(res, "Referrer-Policy", "no-referrer");
        response_add_header(res, "Cache-Control", "no-cache");
        return 0;
    }
    return response_error(res, req, ERR_NOT_FOUND, "no such console file");
}

/* ---- overview: applications x profiles, and when each last changed ------------------------ */

typedef struct history {
    repo_commit_info commits[HISTORY_DEPTH];
    char *summaries[HISTORY_DEPTH];
    char *authors[HISTORY_DEPTH];
    size_t count;
} history;

static int remember_commit(const repo_commit_info *info, void *payload)
{
    history *h = payload;
    h->commits[h->count] = *info;
    h->summaries[h->count] = strdup(info->summary);
    h->authors[h->count] = strdup(info->author);
    if (h->summaries[h->count] == NULL || h->authors[h->count] == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    h->commits[h->count].summary = h->summaries[h->count];
    h->commits[h->count].author = h->authors[h->count];
    h->count++;
    return 0;
}

static void history_dispose(history *h)
{
    for (size_t i = 0; i < h->count; i++) {
        free(h->summaries[i]);
        free(h->authors[i]);
    }
}

/* The merged map of (app, profile) at a snapshot, secrets as written; NULL when it does not
 * compose (a broken file counts as a change). */
static json_t *merged_at(const env_compose_params *base, snapshot *snap, const char *app,
                         const char *profile)
{
    env_compose_params p = *base;
    p.snapshot = snap;
    env_query q = {.applications = app, .profiles = profile, .decrypt = false};
    environment env;
    json_t *merged = NULL;
    if (environment_compose_snapshot(&env, &p, &q) == 0)
        merged = environment_merge(&env);
    environment_dispose(&env);
    return merged;
}

static json_t *commit_json(const repo_commit_info *c)
{
    return json_pack("{s:s, s:I, s:s, s:s}", "commit", c->id, "time", (json_int_t)c->time,
                     "summary", c->summary, "author", c->author);
}

typedef struct overview_cache {
    pthread_mutex_t lock;
    char commit[REPO_COMMIT_HEX];
    json_t *overview; /* {"applications": {app: {profile: lastChanged}}, "history": [...]},
                       * every pair, unfiltered */
} overview_cache;

static overview_cache cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* {"applications": {app: {profile: {"commit","time","summary","author"} or
 * {"earlierThan": commit}}}, "history": [commits examined, newest first]}. */
static json_t *build_overview(struct server *srv, const env_compose_params *head)
{
    history h = {.count = 0};
    snapshot *snaps[HISTORY_DEPTH] = {NULL};
    json_t *apps = json_object(), *pairs = diff_named_pairs(head->snapshot, NULL), *result = NULL;
    size_t compositions = 0;
    const char *top = snapshot_commit(head->snapshot);
    if (apps == NULL || pairs == NULL)
        goto fail;
    if (top[0] != '\0' && repo_log(srv->repo, top, HISTORY_DEPTH, remember_commit, &h) < 0)
        LOG_WARN(MODULE, "history unavailable: %s", err_message());
    if (h.count > 0)
        snaps[0] = snapshot_retain(head->snapshot);
    size_t i;
    json_t *pair;
    json_array_foreach(pairs, i, pair)
    {
        const char *app = json_string_value(json_object_get(pair, "application"));
        const char *profile = json_string_value(json_object_get(pair, "profile"));
        json_t *row = json_object_get(apps, app), *last = NULL;
        if (row == NULL && json_object_set_new(apps, app, row = json_object()) < 0)
            goto fail;
        json_t *newer = h.count > 0 ? merged_at(head, snaps[0], app, profile) : NULL;
        for (size_t c = 1; c < h.count && last == NULL; c++) {
            if (++compositions > MAX_COMPOSITIONS)
                break;
            if (snaps[c] == NULL &&
                snapshot_build(&snaps[c], srv->repo, h.commits[c].id, NULL, snaps[c - 1]) < 0)
                break;
            json_t *older = merged_at(head, snaps[c], app, profile);
            if (older == NULL || newer == NULL || !json_equal(older, newer))
                last = commit_json(&h.commits[c - 1]);
            json_decref(newer);
            newer = older;
        }
        json_decref(newer);
        if (last == NULL && h.count > 0)
            last = h.count < HISTORY_DEPTH && compositions <= MAX_COMPOSITIONS
                       ? commit_json(&h.commits[h.count - 1]) /* the first commit */
                       : json_pack("{s:s}", "earlierThan", h.commits[h.count - 1].id);
        if (json_object_set_new(row, profile, last ? last : json_null()) < 0)
            goto fail;
    }
    json_t *commits = json_array();
    for (size_t c = 0; commits != NULL && c < h.count; c++)
        if (json_array_append_new(commits, commit_json(&h.commits[c])) < 0)
            break;
    result = json_pack("{s:O, s:o}", "applications", apps, "history",
                       commits ? commits : json_array());
fail:
    json_decref(apps);
    for (size_t s = 0; s < HISTORY_DEPTH; s++)
        snapshot_release(snaps[s]);
    history_dispose(&h);
    json_decref(pairs);
    return result;
}

int console_handle_overview(request *req, response *res)
{
    env_compose_params head = {0};
    json_t *all = NULL, *visible = json_object(), *watchers = NULL, *body = NULL;
    env_query default_label = {.label = NULL};
    int error = env_query_resolve(&default_label, req->server->repo);
    if (error < 0 || (error = environment_params(&head, req->server, &default_label)) < 0)
        goto out;
    const char *commit = snapshot_commit(head.snapshot);
    pthread_mutex_lock(&cache.lock);
    if (cache.overview != NULL && commit[0] != '\0' && strcmp(cache.commit, commit) == 0) {
        all = json_incref(cache.overview);
    } else if ((all = build_overview(req->server, &head)) != NULL && commit[0] != '\0') {
        json_decref(cache.overview);
        cache.overview = json_incref(all);
        snprintf(cache.commit, sizeof(cache.commit), "%s", commit);
    }
    pthread_mutex_unlock(&cache.lock);
    error = ERR_NOMEM;
    if (all == NULL || visible == NULL)
        goto out;
    const char *app;
    json_t *profiles;
    json_object_foreach(json_object_get(all, "applications"), app, profiles)
    {
        if (auth_may_read(req->principal, app) && json_object_set(visible, app, profiles) < 0)
            goto out;
    }
    watchers = req->server->watches ? watch_counts_by_application(req->server->watches)
                                    : json_object();
    json_t *visible_watchers = json_object();
    json_t *count;
    json_object_foreach(watchers, app, count)
    {
        if (auth_may_read(req->principal, app))
            json_object_set(visible_watchers, app, count);
    }
    body = json_pack("{s:s?, s:o, s:O, s:o, s:b}", "version", commit[0] ? commit : NULL,
                     "applications", json_incref(visible), "history",
                     json_object_get(all, "history"), "watchers", visible_watchers, "admin",
                     req->is_admin);
    error = body ? 0 : ERR_NOMEM;
out:
    snapshot_release(head.snapshot);
    json_decref(all);
    json_decref(visible);
    json_decref(watchers);
    if (error < 0)
        return response_error(res, req, error, NULL);
    return response_json(res, 200, body);
}

/* ---- one Environment, key by key ---------------------------------------------------------- */

static json_t *layer_json(const env_source *src, const char *key)
{
    json_t *value = json_object_get(src->props, key);
    json_t *origin = src->origins ? json_object_get(src->origins, key) : NULL;
    return json_pack("{s:s, s:o, s:O?}", "source", src->name, "value",
                     diff_is_cipher(value) ? json_string(MASK) : json_incref(value), "origin", origin);
}

int console_handle_environment(request *req, response *res)
{
    char app[NAME_MAX_LEN], label[NAME_MAX_LEN];
    const char *profiles = req->segments[4];
    const char *label_q = request_query(req, "label");
    environment env = {0};
    json_t *merged = NULL, *keys = NULL, *body = NULL;
    int error;
    if (names_decode(req->segments[3], "application name", app, sizeof(app)) < 0 ||
        names_check_profiles(profiles) < 0 ||
        (label_q && *label_q && names_decode(label_q, "label", label, sizeof(label)) < 0))
        return response_error(res, req, ERR_BAD_REQUEST, NULL);
    if (!auth_may_read(req->principal, app))
        return response_error(res, req, ERR_FORBIDDEN, NULL);
    env_query q = {.applications = app,
                   .profiles = profiles,
                   .label = label_q && *label_q ? label : NULL,
                   .decrypt = false};
    if ((error = env_query_resolve_served(&q, req->server)) < 0 ||
        (error = environment_compose(&env, req->server, &q)) < 0)
        goto out;
    error = ERR_NOMEM;
    if ((merged = environment_merge(&env)) == NULL || (keys = json_array()) == NULL)
        goto out;
    json_object_del(merged, "spring.profiles");
    const char *key;
    json_t *value;
    json_object_foreach(merged, key, value)
    {
        json_t *layers = json_array();
        bool secret = diff_is_cipher(value);
        for (size_t s = 0; layers != NULL && s < env.count; s++)
            if (json_object_get(env.sources[s].props, key) != NULL)
                json_array_append_new(layers, layer_json(&env.sources[s], key));
        json_t *entry = json_pack("{s:s, s:o, s:b, s:o}", "key", key, "value",
                                  secret ? json_string(MASK) : json_incref(value), "secret", secret,
                                  "layers", layers ? layers : json_array());
        if (entry == NULL || json_array_append_new(keys, entry) < 0)
            goto out;
    }
    body = json_pack("{s:s, s:s, s:s?, s:o}", "name", app, "profiles", profiles, "version",
                     env.version[0] ? env.version : NULL, "keys", json_incref(keys));
    error = body ? 0 : ERR_NOMEM;
out:
    environment_dispose(&env);
    env_query_done(&q, req->server);
    json_decref(merged);
    json_decref(keys);
    if (error < 0)
        return response_error(res, req, error, NULL);
    return response_json(res, 200, body);
}
