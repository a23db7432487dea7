/*
 * refresh — fetch and invalidate (see refresh.h). Snapshots and rendered responses are keyed by
 * commit id, so after a Git fetch nothing needs dropping: new commits simply miss the caches.
 * Dir mode has no commit ids, so there both caches are cleared. After a change, watchers are
 * told (watch.c) and a `refresh` event naming the changed applications is published
 * (events.c); the names come from comparing the old and new snapshots file by file, so an
 * edit that changes nothing parsed (a comment) names nobody.
 */
#include "refresh.h"

#include "appnames.h"
#include "errors.h"
#include "events.h"
#include "log.h"
#include "render.h"
#include "repo.h"
#include "server.h"
#include "snapshot.h"
#include "watch.h"

#include <jansson.h>
#include <pthread.h>
#include <string.h>

#define MODULE "refresh"

static pthread_mutex_t refresh_lock = PTHREAD_MUTEX_INITIALIZER;

static bool same_file(const snapshot_file *a, const snapshot_file *b)
{
    if (a->failed != b->failed || a->docs.count != b->docs.count)
        return false;
    for (size_t i = 0; i < a->docs.count; i++) {
        const confdoc *x = &a->docs.docs[i], *y = &b->docs.docs[i];
        if (!json_equal(x->props, y->props) || (x->on_profile == NULL) != (y->on_profile == NULL) ||
            (x->on_profile && strcmp(x->on_profile, y->on_profile) != 0))
            return false;
    }
    return true;
}

/* Names of the applications whose configuration files differ between two snapshots. */
static json_t *changed_applications(const snapshot *before, const snapshot *after)
{
    json_t *names = json_array();
    for (size_t i = 0; names && after && i < snapshot_file_count(after); i++) {
        const snapshot_file *f = snapshot_file_at(after, i);
        const snapshot_file *old = before ? snapshot_find(before, f->path) : NULL;
        if (old == NULL || !same_file(old, f))
            appnames_add_from_path(names, f->path);
    }
    for (size_t i = 0; names && before && i < snapshot_file_count(before); i++) {
        const snapshot_file *f = snapshot_file_at(before, i);
        if (after == NULL || snapshot_find(after, f->path) == NULL)
            appnames_add_from_path(names, f->path);
    }
    return names;
}

static snapshot *current_snapshot(struct server *srv, char commit[REPO_COMMIT_HEX])
{
    snapshot *snap = NULL;
    commit[0] = '\0';
    if (repo_resolve(srv->repo, NULL, commit) < 0 ||
        snapcache_get(&snap, srv->snapshots, srv->repo, commit) < 0)
        return NULL;
    return snap;
}

int refresh_now(struct server *srv, refresh_result *out)
{
    int error = 0;
    char before_commit[REPO_COMMIT_HEX];
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&refresh_lock);
    snapshot *before = current_snapshot(srv, before_commit);
    snapshot *after = NULL;
    json_t *names = NULL;

    bool git = repo_is_git(srv->repo);
    bool refs_moved = false;
    if (git) {
        error = repo_fetch(srv->repo, &refs_moved);
        if (error < 0) {
            LOG_WARN(MODULE, "fetch failed, still serving the cached mirror: %s", err_message());
            goto out;
        }
        if (!refs_moved)
            goto out;
    } else {
        snapcache_invalidate(srv->snapshots);
        respcache_clear(srv->responses);
    }
    char after_commit[REPO_COMMIT_HEX];
    after = current_snapshot(srv, after_commit);
    memcpy(out->version, after_commit, sizeof(out->version));
    /* Events describe the default label; watchers may watch any label, so any moved ref
     * (or any edit in dir mode) is worth a look. */
    bool default_moved = git ? strcmp(before_commit, after_commit) != 0 : true;
    if (default_moved)
        names = changed_applications(before, after);
    out->changed = git || (names != NULL && json_array_size(names) > 0);
    if (!out->changed)
        goto out;
    LOG_INFO(MODULE, "refreshed, default label at %s", out->version[0] ? out->version : "(dir)");
    if (srv->watches != NULL)
        watch_notify(srv->watches);
    if (srv->events != NULL && names != NULL && (json_array_size(names) > 0 || git))
        event_hub_publish_refresh(srv->events, out->version, names);
out:
    json_decref(names);
    snapshot_release(before);
    snapshot_release(after);
    pthread_mutex_unlock(&refresh_lock);
    return error;
}
