/*
 * refresh — fetch and announce (see refresh.h). Snapshots are keyed by commit id, so after a Git
 * fetch nothing needs dropping: new commits simply miss the cache. Dir mode has no commit ids,
 * so there the snapshot cache is dropped before the directory is read again. After a change,
 * refresh announces it (announce.h): which commit the default label moved from and to, and
 * which applications changed; the names come from comparing the old and new snapshots file by
 * file, so an edit that changes nothing parsed (a comment) names nobody.
 *
 * It does not know who listens: the watch registry, the SSE hub and the response cache
 * subscribe in main.c.
 */
#include "change/refresh.h"

#include "change/announce.h"
#include "change/appnames.h"
#include "compose/snapshot.h"
#include "errors.h"
#include "log.h"
#include "server.h"
#include "source/repo.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/*
 * The plain files the commit changed: paths that differ between the commits and are no
 * configuration file of either snapshot. NULL when they cannot be listed (logged).
 */
static json_t *changed_plain_files(struct server *srv, const char *from, const char *to,
                                   const snapshot *before, const snapshot *after)
{
    json_t *all = json_array(), *plain = json_array();
    size_t i;
    json_t *path;
    if (all == NULL || plain == NULL ||
        repo_changed_paths(srv->repo, from, to, all, CHANGE_MAX_FILES) < 0) {
        LOG_WARN(MODULE, "cannot list the files changed by %s: %s", to, err_message());
        json_decref(all);
        json_decref(plain);
        return NULL;
    }
    json_array_foreach(all, i, path)
    {
        const char *p = json_string_value(path);
        if ((before == NULL || snapshot_find(before, p) == NULL) &&
            (after == NULL || snapshot_find(after, p) == NULL))
            json_array_append(plain, path);
    }
    json_decref(all);
    return plain;
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
    json_t *names = NULL, *files = NULL;

    /* Unchanged, the answer still names the commit served (Spring's clients log it). */
    memcpy(out->version, before_commit, sizeof(out->version));
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
    }
    char after_commit[REPO_COMMIT_HEX];
    after = current_snapshot(srv, after_commit);
    memcpy(out->version, after_commit, sizeof(out->version));
    /* Events describe the default label; watchers may watch any label, so any moved ref
     * (or any edit in dir mode) is worth a look. */
    bool default_moved = git ? strcmp(before_commit, after_commit) != 0 : true;
    if (default_moved) {
        names = changed_applications(before, after);
        if (git)
            files = changed_plain_files(srv, before_commit, after_commit, before, after);
    }
    out->changed = git || (names != NULL && json_array_size(names) > 0);
    if (!out->changed)
        goto out;
    LOG_INFO(MODULE, "refreshed, default label at %s", out->version[0] ? out->version : "(dir)");
    change_notice notice = {
        .repository = "",
        .label = NULL,
        .from = before_commit,
        .to = after_commit,
        .versioned = git,
        .applications = names,
        .files = files,
    };
    change_announce(srv->changes, &notice);
out:
    json_decref(names);
    json_decref(files);
    snapshot_release(before);
    snapshot_release(after);
    pthread_mutex_unlock(&refresh_lock);
    return error;
}

#define MAX_BACKOFF_SECONDS 600

struct refresher {
    struct server *srv;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
    bool pending;
    bool fetched_once;
    struct timespec last_start; /* when the last requested fetch began */
    unsigned interval;
    unsigned min_gap_ms;
    unsigned long runs;
};

static struct timespec add_ms(struct timespec t, long long ms)
{
    t.tv_sec += (time_t)(ms / 1000);
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static bool later(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec > b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec > b->tv_nsec);
}

static void *refresher_thread(void *arg)
{
    refresher *r = arg;
    unsigned failures = 0;
    struct timespec next_poll;
    clock_gettime(CLOCK_MONOTONIC, &next_poll);
    next_poll = add_ms(next_poll, (long long)r->interval * 1000);

    pthread_mutex_lock(&r->lock);
    while (!r->stopping) {
        struct timespec now, due;
        clock_gettime(CLOCK_MONOTONIC, &now);
        bool poll_due = r->interval > 0 && !later(&next_poll, &now);
        bool request_due = false;
        if (r->pending) {
            /* Leading edge: a request finding the refresher idle fetches at once; requests
             * arriving while a fetch runs, or within min_gap_ms of its start, wait for one more
             * fetch at the end of the gap. */
            due = r->fetched_once ? add_ms(r->last_start, r->min_gap_ms) : now;
            request_due = !later(&due, &now);
        }
        if (!poll_due && !request_due) {
            struct timespec wait_until = add_ms(now, 3600LL * 1000);
            if (r->interval > 0 && later(&wait_until, &next_poll))
                wait_until = next_poll;
            if (r->pending && later(&wait_until, &due))
                wait_until = due;
            pthread_cond_timedwait(&r->wake, &r->lock, &wait_until);
            continue;
        }
        /* Only requested fetches open a gap: a poll that happens to run just before a webhook
         * must not delay it. */
        if (r->pending) {
            r->last_start = now;
            r->fetched_once = true;
        }
        r->pending = false;
        pthread_mutex_unlock(&r->lock);

        refresh_result result;
        int error = refresh_now(r->srv, &result);
        failures = error < 0 ? failures + 1 : 0;
        long long delay = (long long)r->interval;
        for (unsigned i = 0; i < failures && delay < MAX_BACKOFF_SECONDS; i++)
            delay *= 2;
        if (failures > 0 && delay > MAX_BACKOFF_SECONDS)
            delay = MAX_BACKOFF_SECONDS;
        clock_gettime(CLOCK_MONOTONIC, &now);
        next_poll = add_ms(now, delay * 1000);

        pthread_mutex_lock(&r->lock);
        r->runs++;
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

int refresher_start(refresher **out, struct server *srv, unsigned interval, unsigned min_gap_ms)
{
    refresher *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    r->srv = srv;
    r->interval = interval;
    r->min_gap_ms = min_gap_ms;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&r->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0 || pthread_mutex_init(&r->lock, NULL) != 0) {
        free(r);
        return err_set(ERR_NOMEM, "cannot set up the refresher");
    }
    if (pthread_create(&r->thread, NULL, refresher_thread, r) != 0) {
        pthread_cond_destroy(&r->wake);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return err_set(ERR_INTERNAL, "cannot start the refresher thread");
    }
    *out = r;
    return 0;
}

void refresher_request(refresher *r)
{
    pthread_mutex_lock(&r->lock);
    r->pending = true;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
}

unsigned long refresher_runs(refresher *r)
{
    pthread_mutex_lock(&r->lock);
    unsigned long runs = r->runs;
    pthread_mutex_unlock(&r->lock);
    return runs;
}

void refresher_stop(refresher *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
