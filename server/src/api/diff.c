/*
 * diff endpoints — GET /diff/{application}/{profiles}?from=&to= (one Environment) and
 * GET /diff?from=&to= (every application and profile the two commits name, with counts).
 *
 * Both sides are composed without decryption unless the caller is an admin, so a secret's
 * plain text never leaves the server for anyone else: its entry says "secret" and both values
 * read "******". The comparison itself is compose/diff.c's, shared with `almanac diff`.
 */
#include "api/diff.h"

#include "names.h"
#include "compose/diff.h"
#include "compose/environment.h"
#include "errors.h"
#include "guard/auth.h"
#include "server.h"

#include <string.h>


/* The from= and to= labels, decoded like a label segment ("(_)" -> "/"). */
static int diff_labels(const request *req, char *from, char *to, size_t size)
{
    const char *f = request_query(req, "from"), *t = request_query(req, "to");
    if (f == NULL || t == NULL || *f == '\0' || *t == '\0')
        return err_set(ERR_BAD_REQUEST, "from= and to= are both needed (commit ids, tags or "
                                        "branches)");
    if (names_decode(f, "from", from, size) < 0 || names_decode(t, "to", to, size) < 0)
        return ERR_BAD_REQUEST;
    return 0;
}

/* Runs fn on the job for from= and to=; answers errors itself. apps NULL: the whole repo. */
static int run_diff(request *req, response *res, const char *apps, const char *profiles)
{
    char from[NAMES_MAX_LEN], to[NAMES_MAX_LEN];
    env_compose_params a, b;
    json_t *body = NULL;
    int error = diff_labels(req, from, to, sizeof(from));
    if (error < 0)
        return response_error(res, req, error, NULL);
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    diff_job job = {
        .from = &a,
        .to = &b,
        .decrypt = req->is_admin && req->server->keyring != NULL,
        .opts = {.mask_secrets = !req->is_admin},
        .may_read = auth_may_read,
        .caller = req->principal,
    };
    /* An application's diff reads the repository that serves it; the whole-repository diff
     * the default one. */
    env_query qa = {.applications = apps, .profiles = profiles, .label = from};
    env_query qb = {.applications = apps, .profiles = profiles, .label = to};
    if ((error = apps ? env_query_resolve_served(&qa, req->server)
                      : env_query_resolve(&qa, req->server->repo)) < 0 ||
        (error = apps ? env_query_resolve_served(&qb, req->server)
                      : env_query_resolve(&qb, req->server->repo)) < 0 ||
        (error = environment_params(&a, req->server, &qa)) < 0 ||
        (error = environment_params(&b, req->server, &qb)) < 0)
        goto out;
    error = apps ? diff_environment(&body, &job, apps, profiles) : diff_repository(&body, &job);
    if (error == 0 && (json_object_set_new(body, "from", json_string(from)) < 0 ||
                       json_object_set_new(body, "to", json_string(to)) < 0 ||
                       (apps && json_object_set_new(body, "application", json_string(apps)) < 0) ||
                       (apps && json_object_set_new(body, "profiles", json_string(profiles)) < 0)))
        error = ERR_NOMEM;
out:
    snapshot_release(a.snapshot);
    snapshot_release(b.snapshot);
    env_query_done(&qa, req->server);
    env_query_done(&qb, req->server);
    if (error < 0) {
        json_decref(body);
        return response_error(res, req, error, NULL);
    }
    return response_json(res, 200, body);
}

int diff_handle_environment(request *req, response *res)
{
    char apps[NAMES_MAX_LEN];
    const char *profiles = req->segments[2];
    if (names_decode(req->segments[1], "application name", apps, sizeof(apps)) < 0 ||
        names_check_profiles(profiles) < 0)
        return response_error(res, req, ERR_BAD_REQUEST, NULL);
    if (!auth_may_read(req->principal, apps))
        return response_error(res, req, ERR_FORBIDDEN, NULL);
    return run_diff(req, res, apps, profiles);
}

int diff_handle_all(request *req, response *res)
{
    return run_diff(req, res, NULL, NULL);
}
