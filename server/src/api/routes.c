/*
 * routes — which handler answers which request, and the Spring read API's handlers:
 * Environment, merged documents, plain files, health, metrics, refresh.
 *
 * Handlers are short: parse and validate the path, call one service module (render.c,
 * environment.c, repo.c), answer. Every name, profile, label and path is validated here before
 * it reaches the repository, and the repository layer checks paths again (defence in depth).
 */
#include "api/routes.h"

#include "api/console.h"
#include "api/diff.h"

#include "change/appnames.h"
#include "guard/auth.h"
#include "compose/environment.h"
#include "errors.h"
#include "change/events.h"
#include "flatrender.h"
#include "log.h"
#include "metrics.h"
#include "names.h"
#include "placeholder.h"
#include "change/bus.h"
#include "change/peers.h"
#include "change/refresh.h"
#include "compose/render.h"
#include "source/repo.h"
#include "source/repos.h"
#include "api/routes_cipher.h"
#include "server.h"
#include "change/watch.h"
#include "api/webhook.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#define MODULE "routes"
#define PATH_MAX_LEN 1024

enum { M_GET = 1, M_POST = 2 };

typedef enum { PERM_OPEN, PERM_APPLICATION, PERM_ADMIN } permission;

typedef struct route {
    const char *name;
    bool reserved; /* its path belongs to it whatever the method: another method is a 405 */
    unsigned methods;
    bool (*match)(const request *req);
    int (*handler)(request *req, response *res);
    permission perm;
    int metrics_id;
} route;

/* ---- path shapes ------------------------------------------------------------------------ */

static bool is_document_ext(const char *ext)
{
    return strcmp(ext, "yml") == 0 || strcmp(ext, "yaml") == 0 ||
           strcmp(ext, "properties") == 0 || strcmp(ext, "json") == 0;
}

/* "name-profiles.ext": the split is at the last hyphen before the extension. */
static bool split_document(const char *segment, char *name, char *profiles, size_t size,
                           char *ext, size_t ext_size)
{
    const char *dot = strrchr(segment, '.');
    if (dot == NULL || !is_document_ext(dot + 1))
        return false;
    const char *hyphen = NULL;
    for (const char *p = segment; p < dot; p++)
        if (*p == '-')
            hyphen = p;
    if (hyphen == NULL || hyphen == segment || hyphen + 1 == dot)
        return false;
    size_t name_len = (size_t)(hyphen - segment);
    size_t profiles_len = (size_t)(dot - hyphen - 1);
    if (name_len >= size || profiles_len >= size || strlen(dot + 1) >= ext_size)
        return false;
    memcpy(name, segment, name_len);
    name[name_len] = '\0';
    memcpy(profiles, hyphen + 1, profiles_len);
    profiles[profiles_len] = '\0';
    strcpy(ext, dot + 1);
    return true;
}

static bool ends_with_document_ext(const char *segment)
{
    const char *dot = strrchr(segment, '.');
    return dot != NULL && is_document_ext(dot + 1);
}

static bool path_is(const request *req, const char *a, const char *b)
{
    if (b == NULL)
        return req->nsegments == 1 && strcmp(req->segments[0], a) == 0;
    return req->nsegments == 2 && strcmp(req->segments[0], a) == 0 &&
           strcmp(req->segments[1], b) == 0;
}

static bool match_health(const request *req)
{
    return path_is(req, "actuator", "health");
}
static bool match_metrics(const request *req)
{
    return path_is(req, "metrics", NULL) || path_is(req, "actuator", "prometheus");
}
static bool match_refresh(const request *req)
{
    return path_is(req, "actuator", "refresh");
}
static bool match_encrypt(const request *req)
{
    return (req->nsegments == 1 || req->nsegments == 3) && strcmp(req->segments[0], "encrypt") == 0;
}
static bool match_decrypt(const request *req)
{
    return (req->nsegments == 1 || req->nsegments == 3) && strcmp(req->segments[0], "decrypt") == 0;
}
static bool match_encrypt_status(const request *req)
{
    return path_is(req, "encrypt", "status");
}
static bool match_key(const request *req)
{
    return (req->nsegments == 1 || req->nsegments == 3) && strcmp(req->segments[0], "key") == 0;
}

static bool match_monitor(const request *req)
{
    return path_is(req, "monitor", NULL);
}

/* /actuator/busrefresh and /actuator/busrefresh/{destination} */
static bool match_busrefresh(const request *req)
{
    return (req->nsegments == 2 || req->nsegments == 3) &&
           strcmp(req->segments[0], "actuator") == 0 && strcmp(req->segments[1], "busrefresh") == 0;
}

static bool match_peer_refresh(const request *req)
{
    return path_is(req, "actuator", "peer-refresh");
}

static bool match_events(const request *req)
{
    return path_is(req, "events", NULL);
}

/* /diff and /diff/{application}/{profiles}: an application named "diff" keeps its Environment
 * (two segments) but gives /diff/{profile}/{label} to this route. */
static bool match_diff_all(const request *req)
{
    return req->nsegments == 1 && strcmp(req->segments[0], "diff") == 0;
}

static bool match_diff_environment(const request *req)
{
    return req->nsegments == 3 && strcmp(req->segments[0], "diff") == 0;
}

/* The console: /ui, /ui/ and /ui/{file}; /ui/api/... for its read models. Off with --no-ui
 * (an application named "ui" then keeps /ui/{profiles}). */
static bool console_on(const request *req)
{
    return req->nsegments >= 1 && strcmp(req->segments[0], "ui") == 0 &&
           req->server->settings != NULL && req->server->settings->ui;
}

static bool match_console_asset(const request *req)
{
    return console_on(req) &&
           (req->nsegments == 1 || (req->nsegments == 2 && strcmp(req->segments[1], "api") != 0));
}

static bool match_console_overview(const request *req)
{
    return console_on(req) && req->nsegments == 3 && strcmp(req->segments[1], "api") == 0 &&
           strcmp(req->segments[2], "overview") == 0;
}

static bool match_console_environment(const request *req)
{
    return console_on(req) && req->nsegments == 5 && strcmp(req->segments[1], "api") == 0 &&
           strcmp(req->segments[2], "environment") == 0;
}

static bool match_document(const request *req)
{
    char a[NAMES_MAX_LEN], b[NAMES_MAX_LEN], c[16];
    if (req->nsegments == 1)
        return split_document(req->segments[0], a, b, sizeof(a), c, sizeof(c));
    if (req->nsegments == 2)
        return split_document(req->segments[1], a, b, sizeof(a), c, sizeof(c));
    return false;
}

static bool match_environment(const request *req)
{
    /* /foo/dev.yml is neither an environment nor (without a hyphen) a document: 404. */
    if (req->nsegments == 2)
        return !ends_with_document_ext(req->segments[1]);
    if (req->nsegments == 3)
        return request_query(req, "useDefaultLabel") == NULL;
    return false;
}

static bool match_plain_file(const request *req)
{
    return req->nsegments >= 4 ||
           (req->nsegments == 3 && request_query(req, "useDefaultLabel") != NULL);
}

/* ---- access control --------------------------------------------------------------------- */

/*
 * With --auth-file, routes_dispatch has authenticated the caller of every PERM_APPLICATION
 * route before its handler runs; the handler knows the application names only once it has
 * parsed the path, so it asks here. NULL principal: authentication is off.
 */
static int check_applications(const request *req, const char *names)
{
    if (auth_may_read(req->principal, names))
        return 0;
    return err_set(ERR_FORBIDDEN, "not allowed to read application \"%s\"", names);
}

/*
 * A plain file that is itself a configuration document (`payments-prod.yml` fetched through
 * /orders/dev/main/payments-prod.yml) would bypass the check above: its own application (the
 * stem or any prefix before a '-', as /monitor guesses it; `application*` is shared) must be
 * readable too.
 */
static int check_plain_file(const request *req, const char *path)
{
    if (req->principal == NULL || auth_principal_is_admin(req->principal))
        return 0;
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot == NULL || (slash != NULL && dot < slash) || !is_document_ext(dot + 1))
        return 0;
    json_t *names = json_array();
    bool allowed = false;
    if (names == NULL || appnames_add_from_path(names, path) < 0) {
        json_decref(names);
        return err_set(ERR_NOMEM, "out of memory");
    }
    size_t i;
    json_t *name;
    json_array_foreach(names, i, name)
    {
        const char *n = json_string_value(name);
        if (strcmp(n, "*") == 0 || auth_allows_applications(req->principal, n))
            allowed = true;
    }
    json_decref(names);
    return allowed ? 0 : err_set(ERR_FORBIDDEN, "not allowed to read %s", path);
}

/* ---- handlers ---------------------------------------------------------------------------- */

static bool wants_v2(const request *req)
{
    const char *accept = request_header(req, "Accept");
    return accept != NULL && strstr(accept, "application/vnd.spring-cloud.config-server.v2+json");
}

static void answer_rendered(const request *req, response *res, render_result *r)
{
    if (etag_matches(request_header(req, "If-None-Match"), r->etag)) {
        response_use_prepared(res, r->not_modified);
        r->not_modified = NULL;
    } else {
        response_use_prepared(res, r->ok);
        r->ok = NULL;
    }
    render_result_dispose(r);
}

static int serve_rendered(request *req, response *res, const char *name_segment,
                          const char *profiles, const char *label_segment, render_format fmt)
{
    char name[NAMES_MAX_LEN];
    char label[NAMES_MAX_LEN];
    if (names_decode(name_segment, "application name", name, sizeof(name)) < 0 ||
        names_check_profiles(profiles) < 0 ||
        (label_segment && names_decode(label_segment, "label", label, sizeof(label)) < 0))
        return response_error(res, req, ERR_BAD_REQUEST, NULL);
    if (check_applications(req, name) < 0)
        return response_error(res, req, ERR_FORBIDDEN, NULL);

    const char *resolve = request_query(req, "resolvePlaceholders");
    bool resolve_placeholders = resolve == NULL || strcasecmp(resolve, "false") != 0;
    env_query q = {
        .applications = name,
        .profiles = profiles,
        .label = label_segment ? label : NULL,
        .label_echo = label_segment,
        .decrypt = true,
    };
    const char *watch = request_query(req, "watch");
    if (watch != NULL && (fmt == RENDER_ENV_V1 || fmt == RENDER_ENV_V2) &&
        req->server->watches != NULL)
        return watch_request(req->server->watches, req, res, &q, fmt, NULL, watch,
                             request_query(req, "timeout"));

    render_result r;
    int error = env_query_resolve_served(&q, req->server);
    if (error == 0)
        error = render_get(&r, req->server, &q, fmt, resolve_placeholders);
    env_query_done(&q, req->server);
    if (error < 0)
        return response_error(res, req, error, NULL);
    answer_rendered(req, res, &r);
    return 0;
}

static int handle_environment(request *req, response *res)
{
    return serve_rendered(req, res, req->segments[0], req->segments[1],
                          req->nsegments == 3 ? req->segments[2] : NULL,
                          wants_v2(req) ? RENDER_ENV_V2 : RENDER_ENV_V1);
}

static int handle_document(request *req, response *res)
{
    char name[NAMES_MAX_LEN], profiles[NAMES_MAX_LEN], ext[16];
    const char *doc = req->segments[req->nsegments - 1];
    if (!split_document(doc, name, profiles, sizeof(name), ext, sizeof(ext)))
        return response_error(res, req, ERR_NOT_FOUND, "not found");
    render_format fmt = strcmp(ext, "properties") == 0 ? RENDER_DOC_PROPERTIES
                        : strcmp(ext, "json") == 0     ? RENDER_DOC_JSON
                                                       : RENDER_DOC_YAML;
    return serve_rendered(req, res, name, profiles, req->nsegments == 2 ? req->segments[0] : NULL,
                          fmt);
}

/*
 * A plain file from the repository, placeholders resolved from the application's environment
 * (compose/plainfile.c), with an ETag like every rendered answer: `If-None-Match` gets 304 and
 * `?watch=<etag>&timeout=` parks the caller until the rendered file changes.
 */
static int handle_plain_file(request *req, response *res)
{
    char name[NAMES_MAX_LEN], label[NAMES_MAX_LEN], path[PATH_MAX_LEN];
    /* Spring: /{name}/{profile}/{path...}?useDefaultLabel, the path nested or not. */
    bool default_label = request_query(req, "useDefaultLabel") != NULL;
    size_t first_path_segment = default_label ? 2 : 3;
    const char *profiles = req->segments[1];

    if (names_decode(req->segments[0], "application name", name, sizeof(name)) < 0 ||
        names_check_profiles(profiles) < 0 ||
        (!default_label && names_decode(req->segments[2], "label", label, sizeof(label)) < 0) ||
        names_join_path(req->segments + first_path_segment, req->nsegments - first_path_segment,
                         path, sizeof(path)) < 0)
        return response_error(res, req, ERR_BAD_REQUEST, NULL);
    if (check_applications(req, name) < 0 || check_plain_file(req, path) < 0)
        return response_error(res, req, err_last_code(), NULL);

    env_query q = {.applications = name,
                   .profiles = profiles,
                   .label = default_label ? NULL : label,
                   .label_echo = default_label ? NULL : req->segments[2],
                   .decrypt = true};
    const char *watch = request_query(req, "watch");
    if (watch != NULL && req->server->watches != NULL)
        return watch_request(req->server->watches, req, res, &q, RENDER_PLAIN_FILE, path, watch,
                             request_query(req, "timeout"));
    render_result r;
    int error = env_query_resolve_served(&q, req->server);
    if (error == 0)
        error = render_plain_file(&r, req->server, &q, path);
    env_query_done(&q, req->server);
    if (error < 0)
        return response_error(res, req, error, NULL);
    answer_rendered(req, res, &r);
    return 0;
}

/* The files of the default label's commit that do not parse ("path:line:col: reason"); also
 * the almanac_broken_files gauge, so that it is current whenever health or metrics is read. */
static json_t *broken_files(struct server *srv)
{
    char commit[REPO_COMMIT_HEX];
    snapshot *snap = NULL;
    json_t *list = json_array();
    if (list != NULL && srv->snapshots != NULL && repo_resolve(srv->repo, NULL, commit) == 0 &&
        snapcache_get(&snap, srv->snapshots, srv->repo, commit) == 0) {
        for (size_t i = 0; i < snapshot_file_count(snap); i++) {
            const snapshot_file *f = snapshot_file_at(snap, i);
            if (f->failed)
                json_array_append_new(list, json_sprintf("%s:%u:%u: %s", f->path, f->error.line,
                                                         f->error.col, f->error.message));
        }
    }
    snapshot_release(snap);
    metrics_set_broken_files((long)json_array_size(list));
    return list;
}

static long open_files_limit(void)
{
    struct rlimit limit;
    return getrlimit(RLIMIT_NOFILE, &limit) == 0 ? (long)limit.rlim_cur : -1;
}

/* One mirror's health: UP, or DEGRADED with why (a failed fetch, a vanished default branch, a
 * branch tip refused by --verify-commits). */
static json_t *mirror_health(repo *source, bool *degraded)
{
    repo_status st;
    repo_get_status(source, &st);
    json_t *refused = repo_refused_commits(source);
    *degraded = st.degraded || st.default_gone[0] || st.mirror_damaged[0] || st.repack_error[0] ||
                json_array_size(refused) > 0;
    json_t *details = json_pack("{s:s, s:s}", "uri", repo_display_uri(source), "defaultLabel",
                                st.default_label);
    if (details != NULL && st.is_git) {
        time_t now = time(NULL);
        if (st.last_fetch_ok)
            json_object_set_new(details, "lastFetchAgeSeconds",
                                json_integer((json_int_t)(now - st.last_fetch_ok)));
        if (st.last_error[0])
            json_object_set_new(details, "lastError", json_string(st.last_error));
        if (st.default_gone[0])
            json_object_set_new(details, "defaultLabelGone", json_string(st.default_gone));
        if (st.mirror_damaged[0])
            json_object_set_new(details, "mirrorDamaged", json_string(st.mirror_damaged));
        if (st.repack_error[0])
            json_object_set_new(details, "repackError", json_string(st.repack_error));
    }
    if (details != NULL && repo_verifies_commits(source))
        json_object_set_new(details, "verifyCommits", json_true());
    if (details != NULL && json_array_size(refused) > 0)
        json_object_set(details, "refusedCommits", refused);
    json_decref(refused);
    return details;
}

/* components.repositories: one component per repository of repos: (a template: one detail per
 * mirror), each DEGRADED on its own; the whole DEGRADED when any is. */
static json_t *repositories_health(server *srv)
{
    json_t *parts = json_object();
    bool any = false;
    for (size_t i = 1; parts != NULL && i < repo_set_count(srv->repos); i++) {
        repo_source *src = repo_set_at(srv->repos, i);
        bool degraded = false;
        json_t *details;
        if (!src->is_template) {
            details = mirror_health(src->repo, &degraded);
        } else {
            repo_source **mirrors = NULL;
            size_t n = repo_set_mirrors(srv->repos, src, &mirrors);
            json_t *each = json_object();
            for (size_t m = 0; m < n; m++) {
                bool bad = false;
                json_t *one = mirror_health(mirrors[m]->repo, &bad);
                degraded = degraded || bad;
                json_object_set_new(each, mirrors[m]->uri,
                                    json_pack("{s:s, s:o}", "status", bad ? "DEGRADED" : "UP",
                                              "details", one));
                repo_set_release(srv->repos, mirrors[m]);
            }
            free(mirrors);
            details = json_pack("{s:s, s:o}", "uri", src->uri, "mirrors", each);
        }
        any = any || degraded;
        json_object_set_new(parts, src->name,
                            json_pack("{s:s, s:o}", "status", degraded ? "DEGRADED" : "UP",
                                      "details", details));
    }
    return json_pack("{s:s, s:o}", "status", any ? "DEGRADED" : "UP", "components", parts);
}

static int handle_health(request *req, response *res)
{
    bool degraded = false;
    json_t *details = mirror_health(req->server->repo, &degraded);
    json_t *broken = broken_files(req->server);
    const char *repo_state = degraded || json_array_size(broken) > 0 ? "DEGRADED" : "UP";
    if (details != NULL && json_array_size(broken) > 0)
        json_object_set(details, "brokenFiles", broken);
    json_decref(broken);
    json_t *body = json_pack("{s:s, s:{s:{s:s, s:o}}}", "status", "UP", "components", "repository",
                             "status", repo_state, "details", details);
    if (body != NULL && repo_set_count(req->server->repos) > 1)
        json_object_set_new(json_object_get(body, "components"), "repositories",
                            repositories_health(req->server));
    /* Parked watchers against their caps: what an operator sizes --max-connections by. */
    if (body != NULL && req->server->watches != NULL) {
        const watch_limits *lim = watch_registry_limits(req->server->watches);
        json_object_set_new(json_object_get(body, "components"), "watchers",
                            json_pack("{s:s, s:{s:I, s:I, s:I, s:I}}", "status", "UP", "details",
                                      "parked", (json_int_t)watch_count(req->server->watches),
                                      "max", (json_int_t)lim->max_watchers, "maxPerAddress",
                                      (json_int_t)lim->max_per_client, "openFilesLimit",
                                      (json_int_t)open_files_limit()));
    }
    /* Issuers whose keys cannot be refreshed degrade, not fail: the cached keys still work. */
    authdb *db = authdb_acquire(&req->server->auth);
    json_t *issuers = authdb_health(db);
    authdb_release(db);
    if (body != NULL && issuers != NULL)
        json_object_set_new(json_object_get(body, "components"), "issuers", issuers);
    else
        json_decref(issuers);
    /* The bus is a hint: a broker outage shows here and changes nothing else. */
    if (body != NULL && req->server->bus != NULL) {
        bus_status bs;
        bus_get_status(req->server->bus, &bs);
        json_t *component = json_pack("{s:s, s:{s:s}}", "status", bs.connected ? "UP" : "DOWN",
                                "details", "destination", bs.destination);
        if (component != NULL && !bs.connected && bs.last_error[0])
            json_object_set_new(json_object_get(component, "details"), "lastError",
                                json_string(bs.last_error));
        json_object_set_new(json_object_get(body, "components"), "bus", component);
    }
    return response_json(res, 200, body);
}

static int handle_metrics(request *req, response *res)
{
    json_decref(broken_files(req->server));
    size_t len = 0;
    char *text = metrics_render(&len);
    if (text == NULL)
        return response_error(res, req, ERR_NOMEM, "out of memory");
    size_t repos_len = 0;
    char *repos_text = req->server->repos ? repo_set_metrics(req->server->repos, &repos_len) : NULL;
    if (repos_text != NULL) {
        char *both = realloc(text, len + repos_len + 1);
        if (both != NULL) {
            memcpy(both + len, repos_text, repos_len + 1);
            text = both;
            len += repos_len;
        }
        free(repos_text);
    }
    authdb *db = authdb_acquire(&req->server->auth);
    size_t auth_len = 0;
    char *auth_text = authdb_metrics(db, &auth_len);
    authdb_release(db);
    if (auth_text != NULL) {
        char *both = realloc(text, len + auth_len + 1);
        if (both != NULL) {
            memcpy(both + len, auth_text, auth_len + 1);
            text = both;
            len += auth_len;
        }
        free(auth_text);
    }
    return response_set(res, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

/* The fetch runs on the refresher's thread; this request is parked until it ends (or 202). */
static int handle_refresh(request *req, response *res)
{
    if (req->server->refresher != NULL) {
        if (refresher_answer(req->server->refresher, req) < 0)
            return response_error(res, req, err_last_code(), NULL);
        /* The answer is the default repository's; the others fetch alongside. */
        for (size_t i = 1; i < repo_set_count(req->server->repos); i++) {
            refresher *r = repo_set_at(req->server->repos, i)->owner_data;
            if (r != NULL)
                refresher_request(r);
        }
        return 0;
    }
    const server *srv = req->server;
    refresh_deps deps = {.repo = srv->repo,
                         .snapshots = srv->snapshots,
                         .changes = srv->changes,
                         .set = srv->repos,
                         .source = srv->repos ? repo_set_at(srv->repos, 0) : NULL};
    refresh_result result;
    int error = refresh_now(&deps, &result);
    if (error < 0)
        return response_error(res, req, error, NULL);
    json_t *body = json_pack("{s:b, s:s}", "changed", result.changed, "version", result.version);
    return response_json(res, 200, body);
}

static int handle_events(request *req, response *res)
{
    if (req->server->events == NULL)
        return response_error(res, req, ERR_NOT_FOUND, "events are not enabled");
    return event_hub_subscribe(req->server->events, req, res);
}

static const char *webhook_header(void *ctx, const char *name)
{
    return request_header(ctx, name);
}

/* Fetches the repositories a webhook names by URL; every one when it names none we serve (a
 * form post, a push to a mirror of ours under another URL). */
static void request_refresh_of(server *srv, const json_t *urls)
{
    repo_set *set = srv->repos;
    size_t count = repo_set_count(set), asked = 0;
    for (size_t i = 0; i < count; i++) {
        repo_source *src = repo_set_at(set, i);
        size_t k;
        json_t *url;
        json_array_foreach(urls, k, url)
        {
            if (repo_set_serves_uri(set, src, json_string_value(url))) {
                if (src->owner_data != NULL)
                    refresher_request(src->owner_data);
                LOG_INFO(MODULE, "push to %s: refreshing repository %s",
                         json_string_value(url), src->name[0] ? src->name : "(default)");
                asked++;
                break;
            }
        }
    }
    if (asked == 0)
        refresh_request_all(srv->repos);
}

/* POST /monitor: checked against the provider's signature, answered with the application
 * names at once; the fetch itself is coalesced with other notifications. */
static int handle_monitor(request *req, response *res)
{
    webhook_provider provider = webhook_detect(webhook_header, req);
    int error = webhook_verify(provider, webhook_header, req, req->server->webhook_secret,
                               req->body, req->body_len);
    if (error < 0) {
        LOG_WARN(MODULE, "rejected webhook: %s", err_message());
        return response_error(res, req, error, NULL);
    }
    if (provider == WEBHOOK_UNKNOWN)
        return response_error(res, req, ERR_BAD_REQUEST,
                              "unrecognised webhook: no push event header and not a path= form");
    json_t *names = NULL;
    if ((error = webhook_applications(&names, provider, req->body, req->body_len)) < 0)
        return response_error(res, req, error, NULL);
    json_t *urls = NULL;
    if ((error = webhook_repository_urls(&urls, provider, req->body, req->body_len)) < 0) {
        json_decref(names);
        return response_error(res, req, error, NULL);
    }
    request_refresh_of(req->server, urls);
    json_decref(urls);
    /* The other replicas fetch alongside this one rather than after it. */
    peers_notify(req->server->peers, NULL);
    LOG_INFO(MODULE, "%s push notification, refresh scheduled", webhook_provider_name(provider));
    return response_json(res, 200, names);
}

/* POST /actuator/busrefresh[/{destination}]: as Spring's endpoint, publish a refresh event for
 * the destination (everyone by default) and refresh here too (our own event is not heard). */
static int handle_busrefresh(request *req, response *res)
{
    server *srv = req->server;
    if (srv->bus == NULL)
        return response_error(res, req, ERR_NOT_FOUND, "the bus is off (no --bus-amqp-url)");
    const char *destination = req->nsegments == 3 ? req->segments[2] : NULL;
    if (destination != NULL) {
        size_t len = strlen(destination);
        bool printable = len > 0 && len < 128;
        for (const char *p = destination; printable && *p; p++)
            printable = *p > ' ' && *p < 0x7f;
        if (!printable)
            return response_error(res, req, ERR_BAD_REQUEST,
                                  "destination: 1 to 127 printable characters");
    }
    bus_publish_refresh(srv->bus, destination);
    refresh_request_all(srv->repos);
    return response_set(res, 204, NULL, NULL, 0);
}

/* POST /actuator/peer-refresh: another replica says "fetch now", signed with --peer-secret. A
 * notice naming the commit this replica already serves, or sent by this replica itself, is
 * acknowledged without a fetch. */
static int handle_peer_refresh(request *req, response *res)
{
    server *srv = req->server;
    if (srv->peers == NULL)
        return response_error(res, req, ERR_NOT_FOUND, "peer notices need --peer-secret");
    peer_notice notice;
    int error = peers_accept(srv->peers, request_header(req, PEERS_SIGNATURE_HEADER), req->body,
                             req->body_len, &notice);
    if (error < 0) {
        char peer[64];
        LOG_WARN(MODULE, "peer notice from %s refused: %s",
                 request_peer(req, peer, sizeof(peer)), err_message());
        return response_error(res, req, error, NULL);
    }
    char current[REPO_COMMIT_HEX] = "";
    bool have = notice.commit[0] != '\0' && repo_resolve(srv->repo, NULL, current) == 0 &&
                strcmp(current, notice.commit) == 0;
    bool fetch = !notice.from_self && !have;
    /* A notice that names no commit comes from a change in any repository: all fetch. */
    if (fetch && notice.commit[0] == '\0')
        refresh_request_all(srv->repos);
    else if (fetch && srv->refresher != NULL)
        refresher_request_commit(srv->refresher, notice.commit);
    LOG_INFO(MODULE, "peer notice from %s (commit %s): %s", notice.origin,
             notice.commit[0] ? notice.commit : "not named",
             notice.from_self ? "our own, ignored" : have ? "already here" : "fetching");
    return response_json(res, 200, json_pack("{s:b}", "fetching", fetch));
}

static route route_table[] = {
    {"health", true, M_GET, match_health, handle_health, PERM_OPEN, -1},
    {"metrics", true, M_GET, match_metrics, handle_metrics, PERM_ADMIN, -1},
    {"refresh", true, M_POST, match_refresh, handle_refresh, PERM_ADMIN, -1},
    {"encrypt_status", true, M_GET, match_encrypt_status, route_encrypt_status, PERM_ADMIN, -1},
    {"encrypt", true, M_POST, match_encrypt, route_encrypt, PERM_ADMIN, -1},
    {"decrypt", true, M_POST, match_decrypt, route_decrypt, PERM_ADMIN, -1},
    {"key", true, M_GET, match_key, route_key, PERM_OPEN, -1},
    {"events", true, M_GET, match_events, handle_events, PERM_ADMIN, -1},
    {"monitor", true, M_POST, match_monitor, handle_monitor, PERM_OPEN, -1},
    {"peer_refresh", true, M_POST, match_peer_refresh, handle_peer_refresh, PERM_OPEN, -1},
    {"busrefresh", true, M_POST, match_busrefresh, handle_busrefresh, PERM_ADMIN, -1},
    {"ui", true, M_GET, match_console_asset, console_handle_asset, PERM_APPLICATION, -1},
    {"ui_overview", true, M_GET, match_console_overview, console_handle_overview,
     PERM_APPLICATION, -1},
    {"ui_environment", true, M_GET, match_console_environment, console_handle_environment,
     PERM_APPLICATION, -1},
    {"diff_all", true, M_GET, match_diff_all, diff_handle_all, PERM_APPLICATION, -1},
    {"diff", true, M_GET, match_diff_environment, diff_handle_environment, PERM_APPLICATION, -1},
    {"document", false, M_GET, match_document, handle_document, PERM_APPLICATION, -1},
    {"environment", false, M_GET, match_environment, handle_environment, PERM_APPLICATION, -1},
    {"plain_file", false, M_GET, match_plain_file, handle_plain_file, PERM_APPLICATION, -1},
};

#define ROUTE_COUNT (sizeof(route_table) / sizeof(route_table[0]))

static int other_route_id = -1;

void routes_init(void)
{
    for (size_t i = 0; i < ROUTE_COUNT; i++)
        route_table[i].metrics_id = metrics_route_id(route_table[i].name);
    other_route_id = metrics_route_id("other");
}

static unsigned method_bit(const char *method)
{
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
        return M_GET;
    if (strcmp(method, "POST") == 0)
        return M_POST;
    return 0;
}

static int answer_unauthorized(request *req, response *res)
{
    char peer[64];
    LOG_INFO(MODULE, "authentication failed from %s: %s", request_peer(req, peer, sizeof(peer)),
             err_message());
    response_error(res, req, ERR_UNAUTHORIZED, NULL);
    response_add_header(res, "WWW-Authenticate", "Basic realm=\"almanac\"");
    return 0;
}

/*
 * Runs r's handler once the caller may: open routes always; with --auth-file, others only with
 * valid credentials (401), admin routes only for admins (403). The principal stays valid while
 * the handler runs (the auth database reference is held); application routes check their names
 * themselves (check_applications). r NULL: no route, authenticate before saying 404 or 405.
 * An address past its failed attempts for the minute gets 429 without a check.
 */
static int run_route(const route *r, request *req, response *res, int fallback_code)
{
    if (r != NULL && r->perm == PERM_OPEN)
        return r->handler(req, res);
    authdb *db = authdb_acquire(&req->server->auth);
    const auth_principal *who = NULL;
    const char *credentials = request_header(req, "Authorization");
    char peer[64];
    if (db != NULL)
        request_peer(req, peer, sizeof(peer));
    if (db != NULL && credentials != NULL && auth_throttled(db, peer)) {
        response_error(res, req, ERR_TOO_MANY, "too many failed attempts: try again later");
        response_add_header(res, "Retry-After", "60");
    } else if (db != NULL && auth_authenticate(db, credentials, &who) < 0) {
        if (credentials != NULL)
            auth_note_failure(db, peer);
        answer_unauthorized(req, res);
    } else if (r == NULL) {
        response_error(res, req, fallback_code, fallback_code == ERR_METHOD ? "method not allowed"
                                                                            : "not found");
    } else if (db != NULL && r->perm == PERM_ADMIN && !auth_principal_is_admin(who)) {
        response_error(res, req, ERR_FORBIDDEN, "this endpoint needs an admin");
    } else {
        req->principal = who;
        req->user = who ? auth_principal_name(who) : NULL;
        if (who != NULL)
            request_note_user(req, req->user);
        req->is_admin = who ? auth_principal_is_admin(who) : true;
        r->handler(req, res);
        req->principal = NULL;
        req->user = NULL;
        req->is_admin = false;
    }
    authdb_release(db);
    return 0;
}

int routes_dispatch(request *req, response *res, int *metrics_route)
{
    unsigned method = method_bit(req->method);
    bool path_known = false;
    *metrics_route = other_route_id;
    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        const route *r = &route_table[i];
        if (!r->match(req))
            continue;
        path_known = true;
        if ((r->methods & method) == 0) {
            if (r->reserved)
                break;
            continue;
        }
        *metrics_route = r->metrics_id;
        return run_route(r, req, res, 0);
    }
    return run_route(NULL, req, res, path_known ? ERR_METHOD : ERR_NOT_FOUND);
}
