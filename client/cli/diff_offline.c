/*
 * diff_offline — see diff_offline.h. The one place in the CLI that reaches past almanac.h: it
 * links the server's compose/ and source/ objects (documented in docs/architecture.md), since a
 * second implementation of Spring's composition rules would drift from the server's.
 */
#include "diff_offline.h"

#include "cli.h"
#include "compose/diff.h"
#include "compose/environment.h"
#include "compose/snapshot.h"
#include "errors.h"
#include "source/repo.h"
#include "springconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static int fail(const char *what)
{
    fprintf(stderr, "almanac diff: %s: %s\n", what, err_message());
    return err_last_code() == ERR_NOT_FOUND ? CLI_EXIT_NOTFOUND : CLI_EXIT_USAGE;
}

static int side(env_compose_params *p, repo *r, const char *rev, const char *const *paths)
{
    char commit[REPO_COMMIT_HEX];
    snapshot *snap = NULL;
    if (repo_resolve(r, rev, commit) < 0 || snapshot_build(&snap, r, commit, NULL, NULL) < 0)
        return -1;
    p->snapshot = snap;
    p->display_uri = repo_display_uri(r);
    p->search_paths = paths;
    p->label_name = rev;
    return 0;
}

/* The full diff of one pair, with "application" and "profile" set. */
static int one(json_t *environments, const diff_job *job, const char *app, const char *profile)
{
    json_t *diff = NULL;
    if (diff_environment(&diff, job, app, profile) < 0)
        return -1;
    json_object_del(diff, "fromVersion");
    json_object_del(diff, "toVersion");
    if (json_object_set_new(diff, "application", json_string(app)) < 0 ||
        json_object_set_new(diff, "profile", json_string(profile)) < 0 ||
        json_array_append_new(environments, diff) < 0)
        return err_set(ERR_NOMEM, "out of memory");
    return 0;
}

int diff_offline(json_t **out, const char *repo_dir, const char *applications,
                 const char *profiles, const char *from, const char *to,
                 const char *search_paths)
{
    int rc = CLI_EXIT_ERROR;
    repo *r = NULL;
    env_compose_params a, b;
    json_t *summary = NULL, *environments = json_array(), *result = NULL;
    char **paths = springconf_search_paths(search_paths);
    repo_options opts = {.uri = repo_dir, .in_place = true};
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    *out = NULL;
    if (environments == NULL || paths == NULL)
        goto out;
    if (repo_open(&r, &opts) < 0) {
        rc = fail(repo_dir);
        goto out;
    }
    if (side(&a, r, from, (const char *const *)paths) < 0) {
        rc = fail(from);
        goto out;
    }
    if (side(&b, r, to, (const char *const *)paths) < 0) {
        rc = fail(to);
        goto out;
    }
    diff_job job = {.from = &a, .to = &b, .opts = {.mask_secrets = true}};
    if (applications != NULL) {
        if (one(environments, &job, applications, profiles) < 0) {
            rc = fail("cannot compose");
            goto out;
        }
    } else {
        if (diff_repository(&summary, &job) < 0) {
            rc = fail("cannot compose");
            goto out;
        }
        size_t i;
        json_t *row;
        json_array_foreach(json_object_get(summary, "changed"), i, row)
        {
            if (one(environments, &job, json_string_value(json_object_get(row, "application")),
                    json_string_value(json_object_get(row, "profile"))) < 0) {
                rc = fail("cannot compose");
                goto out;
            }
        }
    }
    result = json_pack("{s:s, s:s, s:s, s:s, s:O}", "from", from, "to", to, "fromVersion",
                       snapshot_commit(a.snapshot), "toVersion", snapshot_commit(b.snapshot),
                       "environments", environments);
    if (result != NULL) {
        *out = result;
        rc = CLI_EXIT_OK;
    }
out:
    snapshot_release(a.snapshot);
    snapshot_release(b.snapshot);
    repo_free(r);
    json_decref(summary);
    json_decref(environments);
    springconf_search_paths_free(paths);
    return rc;
}
