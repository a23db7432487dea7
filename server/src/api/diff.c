/*
 * diff endpoints — GET /diff/{application}/{profiles}?from=&to= (one Environment) and
 * GET /diff?from=&to= (every application and profile the two commits name, with counts).
 *
 * Both sides are composed without decryption unless the caller is an admin, so a secret's
 * plain text never leaves the server for anyone else: its entry says "secret" and both values
 * read "******". The comparison itself is compose/diff.c's.
 */
#include "api/diff.h"

#include "api/routes.h"
#include "compose/diff.h"
#include "compose/environment.h"
#include "compose/snapshot.h"
#include "errors.h"
#include "guard/auth.h"
#include "server.h"
#include "source/repo.h"

#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 512
#define DIFF_MAX_PAIRS 20000 /* pairs composed by one GET /diff */

/* The from= and to= labels, decoded like a label segment ("(_)" -> "/"). */
static int diff_labels(const request *req, char *from, char *to, size_t size)
{
    const char *f = request_query(req, "from"), *t = request_query(req, "to");
    if (f == NULL || t == NULL || *f == '\0' || *t == '\0')
        return err_set(ERR_BAD_REQUEST, "from= and to= are both needed (commit ids, tags or "
                                        "branches)");
    if (routes_decode_name(f, "from", from, size) < 0 || routes_decode_name(t, "to", to, size) < 0)
        return ERR_BAD_REQUEST;
    return 0;
}

static bool caller_may_read(const request *req, const char *applications)
{
    return req->principal == NULL || auth_allows_applications(req->principal, applications);
}

static int compose_side(environment *env, request *req, const char *apps, const char *profiles,
                        const char *label)
{
    env_query q = {
        .applications = apps,
        .profiles = profiles,
        .label = label,
        .decrypt = req->is_admin && req->server->keyring != NULL,
    };
    return environment_compose(env, req->server, &q);
}

static int diff_one(json_t **out, request *req, const char *apps, const char *profiles,
                    const char *from, const char *to)
{
    environment a = {0}, b = {0};
    env_diff_options opts = {.mask_secrets = !req->is_admin};
    int error = compose_side(&a, req, apps, profiles, from);
    if (error == 0)
        error = compose_side(&b, req, apps, profiles, to);
    if (error == 0)
        error = environment_diff(out, &a, &b, &opts);
    environment_dispose(&a);
    environment_dispose(&b);
    return error;
}

int diff_handle_environment(request *req, response *res)
{
    char apps[NAME_MAX_LEN], from[NAME_MAX_LEN], to[NAME_MAX_LEN];
    const char *profiles = req->segments[2];
    json_t *diff = NULL;
    int error;
    if (routes_decode_name(req->segments[1], "application name", apps, sizeof(apps)) < 0 ||
        routes_check_profiles(profiles) < 0 || diff_labels(req, from, to, sizeof(from)) < 0)
        return response_error(res, req, ERR_BAD_REQUEST, NULL);
    if (!caller_may_read(req, apps))
        return response_error(res, req, ERR_FORBIDDEN, NULL);
    if ((error = diff_one(&diff, req, apps, profiles, from, to)) < 0)
        return response_error(res, req, error, NULL);
    if (json_object_set_new(diff, "application", json_string(apps)) < 0 ||
        json_object_set_new(diff, "profiles", json_string(profiles)) < 0 ||
        json_object_set_new(diff, "from", json_string(from)) < 0 ||
        json_object_set_new(diff, "to", json_string(to)) < 0) {
        json_decref(diff);
        return response_error(res, req, ERR_NOMEM, "out of memory");
    }
    return response_json(res, 200, diff);
}

static int snapshot_of(snapshot **out, struct server *srv, const char *label)
{
    char commit[REPO_COMMIT_HEX];
    int error = repo_resolve(srv->repo, label, commit);
    return error < 0 ? error : snapcache_get(out, srv->snapshots, srv->repo, commit);
}

/* {"application","profile","counts"} for one pair, or NULL with *error 0 when unchanged. */
static json_t *pair_summary(request *req, const char *app, const char *profile, const char *from,
                            const char *to, int *error)
{
    json_t *diff = NULL, *row = NULL;
    *error = diff_one(&diff, req, app, profile, from, to);
    if (*error == 0 && !environment_diff_is_empty(diff)) {
        row = json_pack("{s:s, s:s, s:O}", "application", app, "profile", profile, "counts",
                        json_object_get(diff, "counts"));
        if (row == NULL)
            *error = ERR_NOMEM;
    }
    json_decref(diff);
    return row;
}

int diff_handle_all(request *req, response *res)
{
    char from[NAME_MAX_LEN], to[NAME_MAX_LEN];
    snapshot *a = NULL, *b = NULL;
    json_t *pairs = NULL, *changed = NULL, *body = NULL;
    int error = diff_labels(req, from, to, sizeof(from));
    if (error < 0)
        return response_error(res, req, error, NULL);
    if ((error = snapshot_of(&a, req->server, from)) < 0 ||
        (error = snapshot_of(&b, req->server, to)) < 0)
        goto out;
    error = ERR_NOMEM;
    if ((pairs = diff_named_pairs(a, b)) == NULL || (changed = json_array()) == NULL)
        goto out;
    if (json_array_size(pairs) > DIFF_MAX_PAIRS) {
        error = err_set(ERR_TOO_LARGE, "the repository names %zu (application, profile) pairs; "
                                       "at most %d are compared at once",
                        json_array_size(pairs), DIFF_MAX_PAIRS);
        goto out;
    }
    size_t i;
    json_t *pair;
    json_array_foreach(pairs, i, pair)
    {
        const char *app = json_string_value(json_object_get(pair, "application"));
        const char *profile = json_string_value(json_object_get(pair, "profile"));
        if (!caller_may_read(req, app))
            continue;
        json_t *row = pair_summary(req, app, profile, from, to, &error);
        if (error < 0)
            goto out;
        if (row != NULL && json_array_append_new(changed, row) < 0) {
            error = ERR_NOMEM;
            goto out;
        }
    }
    body = json_pack("{s:s, s:s, s:s, s:s, s:O}", "from", from, "to", to, "fromVersion",
                     snapshot_commit(a), "toVersion", snapshot_commit(b), "changed", changed);
    error = body ? 0 : ERR_NOMEM;
out:
    snapshot_release(a);
    snapshot_release(b);
    json_decref(pairs);
    json_decref(changed);
    if (error < 0)
        return response_error(res, req, error, NULL);
    return response_json(res, 200, body);
}
