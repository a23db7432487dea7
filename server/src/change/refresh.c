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
 *
 * No request waits on Git: every fetch runs on the refresher's thread. POST /actuator/refresh
 * parks its connection (refresher_answer) and is answered when a fetch that started after it
 * ends, or with 202 at REFRESH_WAIT_MS, whichever comes first; a small answering thread keeps
 * those deadlines, since the refresher's own thread may be inside a fetch.
 */
#include "change/refresh.h"

#include "change/announce.h"
#include "change/appnames.h"
#include "compose/snapshot.h"
#include "errors.h"
#include "log.h"
#include "metrics.h"
#include "source/repo.h"
#include "source/repos.h"
#include "http/request.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MODULE "refresh"
#define REFRESH_WAIT_MS 10000 /* longest POST /actuator/refresh waits for its fetch */

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
static json_t *changed_plain_files(const refresh_deps *deps, const char *from, const char *to,
                                   const snapshot *before, const snapshot *after)
{
    json_t *all = json_array(), *plain = json_array();
    size_t i;
    json_t *path;
    if (all == NULL || plain == NULL ||
        repo_changed_paths(deps->repo, from, to, all, CHANGE_MAX_FILES) < 0) {
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

static snapshot *current_snapshot(const refresh_deps *deps, char commit[REPO_COMMIT_HEX])
{
    snapshot *snap = NULL;
    commit[0] = '\0';
    if (repo_resolve(deps->repo, NULL, commit) < 0 ||
        snapcache_get(&snap, deps->snapshots, deps->repo, commit) < 0)
        return NULL;
    return snap;
}

/* One mirror: fetch, compare, announce under the name of the repository. */
static int refresh_one(const refresh_deps *deps, pthread_mutex_t *lock, const char *name,
                       refresh_result *out)
{
    int error = 0;
    char before_commit[REPO_COMMIT_HEX];
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(lock);
    snapshot *before = current_snapshot(deps, before_commit);
    snapshot *after = NULL;
    json_t *names = NULL, *files = NULL;

    /* Unchanged, the answer still names the commit served (Spring's clients log it). */
    memcpy(out->version, before_commit, sizeof(out->version));
    bool git = repo_is_git(deps->repo);
    bool refs_moved = false;
    if (git) {
        error = repo_fetch(deps->repo, &refs_moved);
        if (deps->source != NULL)
            atomic_fetch_add(error < 0 ? &repo_set_owner(deps->source)->fetches_failed
                                       : &repo_set_owner(deps->source)->fetches_ok,
                             1);
        if (error < 0) {
            LOG_WARN(MODULE, "%s%s%sfetch failed, still serving the cached mirror: %s",
                     name[0] ? "repository " : "", name, name[0] ? ": " : "", err_message());
            goto out;
        }
        if (!refs_moved)
            goto out;
    } else {
        snapcache_invalidate(deps->snapshots);
    }
    char after_commit[REPO_COMMIT_HEX];
    after = current_snapshot(deps, after_commit);
    memcpy(out->version, after_commit, sizeof(out->version));
    /* Events describe the default label; watchers may watch any label, so any moved ref
     * (or any edit in dir mode) is worth a look. */
    bool default_moved = git ? strcmp(before_commit, after_commit) != 0 : true;
    if (default_moved) {
        names = changed_applications(before, after);
        if (git)
            files = changed_plain_files(deps, before_commit, after_commit, before, after);
    }
    out->changed = git || (names != NULL && json_array_size(names) > 0);
    if (!out->changed)
        goto out;
    LOG_INFO(MODULE, "%s%s%srefreshed, default label at %s", name[0] ? "repository " : "", name,
             name[0] ? ": " : "", out->version[0] ? out->version : "(dir)");
    change_notice notice = {
        .repository = name,
        .label = NULL,
        .from = before_commit,
        .to = after_commit,
        .versioned = git,
        .applications = names,
        .files = files,
        .heard_elsewhere = deps->heard_elsewhere,
    };
    change_announce(deps->changes, &notice);
out:
    json_decref(names);
    json_decref(files);
    snapshot_release(before);
    snapshot_release(after);
    pthread_mutex_unlock(lock);
    return error;
}

int refresh_now(const refresh_deps *deps, refresh_result *out)
{
    repo_source *src = deps->source;
    if (src == NULL)
        return refresh_one(deps, &refresh_lock, "", out);
    if (!src->is_template) {
        refresh_deps one = *deps;
        one.repo = src->repo;
        return refresh_one(&one, &src->refresh_lock, src->name, out);
    }
    /* A template: each mirror cloned so far; the first failure is the one reported. */
    repo_source **mirrors = NULL;
    size_t n = repo_set_mirrors(deps->set, src, &mirrors);
    int error = 0;
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        refresh_result result;
        refresh_deps one = *deps;
        one.repo = mirrors[i]->repo;
        one.source = mirrors[i];
        int e = refresh_one(&one, &mirrors[i]->refresh_lock, src->name, &result);
        if (e < 0 && error == 0)
            error = e;
        out->changed = out->changed || result.changed;
        repo_set_release(deps->set, mirrors[i]);
    }
    free(mirrors);
    return error;
}

#define MAX_BACKOFF_SECONDS 600

/* A parked POST /actuator/refresh. */
typedef struct refresh_waiter {
    request_handle *handle;
    char *url;              /* as received, for an error body */
    unsigned long target;   /* answered once this many fetches have ended */
    struct timespec deadline;
    struct refresh_waiter *next;
} refresh_waiter;

struct refresher {
    refresh_deps deps;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
    bool stopped; /* threads joined; the struct stays for late callers until refresher_free */
    bool pending;
    bool pending_unconditional; /* some pending request named no commit */
    bool pending_heard_only;    /* every pending request came from refresher_request_heard */
    char pending_commit[41];    /* otherwise: the commit the requests said we should have */
    bool fetched_once;
    bool fetching;
    struct timespec last_start; /* when the last requested fetch began */
    unsigned interval;
    unsigned min_gap_ms;
    unsigned long runs;     /* refreshes ended */
    unsigned long started;  /* refreshes begun */
    /* the last refresh's outcome, for waiters */
    int last_error;
    char last_message[300];
    refresh_result last_result;
    refresh_waiter *waiters;
    pthread_cond_t answer_wake;
    pthread_t answer_thread;
    bool answer_thread_ok;
};

static void waiter_answer(refresh_waiter *w, int error, const char *message,
                          const refresh_result *result, bool pending)
{
    response res;
    request fake;
    memset(&res, 0, sizeof(res));
    memset(&fake, 0, sizeof(fake));
    fake.url = w->url;
    if (pending)
        response_json(&res, 202,
                      json_pack("{s:b, s:s}", "pending", 1, "message",
                                "the refresh is still running; its outcome will show in "
                                "/actuator/health"));
    else if (error < 0)
        response_error(&res, &fake, error, message);
    else
        response_json(&res, 200, json_pack("{s:b, s:s}", "changed", result->changed, "version",
                                           result->version));
    request_resume(w->handle, &res);
    free(w->url);
    free(w);
}

/* Unlinks (lock held) the waiters that match: done ones (runs reached) or expired ones. */
static refresh_waiter *take_waiters(refresher *r, bool done, const struct timespec *now)
{
    refresh_waiter *taken = NULL, **link = &r->waiters;
    while (*link != NULL) {
        refresh_waiter *w = *link;
        bool match = done ? r->runs >= w->target
                          : (now == NULL || !(w->deadline.tv_sec > now->tv_sec ||
                                              (w->deadline.tv_sec == now->tv_sec &&
                                               w->deadline.tv_nsec > now->tv_nsec)));
        if (match) {
            *link = w->next;
            w->next = taken;
            taken = w;
        } else {
            link = &w->next;
        }
    }
    return taken;
}

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

static bool have_commit(refresher *r)
{
    char current[REPO_COMMIT_HEX] = "";
    struct repo *source = r->deps.source != NULL ? r->deps.source->repo : r->deps.repo;
    return r->pending_commit[0] != '\0' && source != NULL &&
           repo_resolve(source, NULL, current) == 0 &&
           strcmp(current, r->pending_commit) == 0;
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
        /* Requests that only named a commit we now have (a peer saying what it fetched, while
         * our own fetch of it was running) need no fetch, and open no gap. */
        if (request_due && !poll_due && !r->pending_unconditional && have_commit(r)) {
            r->pending = false;
            continue;
        }
        /* Only requested fetches open a gap: a poll that happens to run just before a webhook
         * must not delay it. */
        if (r->pending) {
            r->last_start = now;
            r->fetched_once = true;
        }
        r->deps.heard_elsewhere = r->pending && r->pending_heard_only && !poll_due;
        r->pending = false;
        r->pending_heard_only = false;
        r->started++;
        r->pending_unconditional = false;
        r->fetching = true;
        pthread_mutex_unlock(&r->lock);

        refresh_result result;
        err_clear();
        int error = refresh_now(&r->deps, &result);
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
        r->fetching = false;
        r->last_error = error;
        r->last_result = result;
        snprintf(r->last_message, sizeof(r->last_message), "%s", err_message());
        char message[sizeof(r->last_message)];
        memcpy(message, r->last_message, sizeof(message));
        refresh_waiter *done = take_waiters(r, true, NULL);
        pthread_mutex_unlock(&r->lock);
        while (done != NULL) {
            refresh_waiter *next = done->next;
            waiter_answer(done, error, message, &result, false);
            done = next;
        }
        pthread_mutex_lock(&r->lock);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* Answers with 202 the waiters whose fetch outlived REFRESH_WAIT_MS. */
static void *answer_thread(void *arg)
{
    refresher *r = arg;
    pthread_mutex_lock(&r->lock);
    while (!r->stopping) {
        struct timespec now, until;
        clock_gettime(CLOCK_MONOTONIC, &now);
        refresh_waiter *expired = take_waiters(r, false, &now);
        if (expired != NULL) {
            pthread_mutex_unlock(&r->lock);
            while (expired != NULL) {
                refresh_waiter *next = expired->next;
                waiter_answer(expired, 0, NULL, NULL, true);
                expired = next;
            }
            pthread_mutex_lock(&r->lock);
            continue;
        }
        until = add_ms(now, 3600LL * 1000);
        for (refresh_waiter *w = r->waiters; w != NULL; w = w->next)
            if (later(&until, &w->deadline))
                until = w->deadline;
        pthread_cond_timedwait(&r->answer_wake, &r->lock, &until);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

int refresher_start(refresher **out, const refresh_deps *deps, unsigned interval,
                    unsigned min_gap_ms)
{
    refresher *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    r->deps = *deps;
    r->interval = interval;
    r->min_gap_ms = min_gap_ms;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&r->wake, &attr);
    int rc2 = pthread_cond_init(&r->answer_wake, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0 || rc2 != 0 || pthread_mutex_init(&r->lock, NULL) != 0) {
        free(r);
        return err_set(ERR_NOMEM, "cannot set up the refresher");
    }
    if (pthread_create(&r->thread, NULL, refresher_thread, r) != 0) {
        pthread_cond_destroy(&r->wake);
        pthread_cond_destroy(&r->answer_wake);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return err_set(ERR_INTERNAL, "cannot start the refresher thread");
    }
    r->answer_thread_ok = pthread_create(&r->answer_thread, NULL, answer_thread, r) == 0;
    *out = r;
    return 0;
}

void refresh_request_all(repo_set *set)
{
    for (size_t i = 0; set != NULL && i < repo_set_count(set); i++) {
        refresher *r = repo_set_at(set, i)->owner_data;
        if (r != NULL)
            refresher_request(r);
    }
}

static void request_fetch(refresher *r, const char *commit, bool heard);

void refresher_request_heard(refresher *r)
{
    request_fetch(r, NULL, true);
}

void refresh_request_all_heard(repo_set *set)
{
    for (size_t i = 0; set != NULL && i < repo_set_count(set); i++) {
        refresher *r = repo_set_at(set, i)->owner_data;
        if (r != NULL)
            refresher_request_heard(r);
    }
}

void refresher_request(refresher *r)
{
    refresher_request_commit(r, NULL);
}

/* heard: asked for by another node's announcement only (refresher_request_heard). */
static void request_fetch(refresher *r, const char *commit, bool heard)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    pthread_mutex_lock(&r->lock);
    /* On the leading edge when nothing runs or waits and the gap has passed: counted, so that
     * the behaviour can be observed without timing it. */
    struct timespec gap_end = add_ms(r->last_start, r->min_gap_ms);
    bool immediate = !r->pending && !r->fetching && (!r->fetched_once || !later(&gap_end, &now));
    metrics_refresh_request(immediate);
    /* a fetch is announced as heard elsewhere only if no one else wants it */
    r->pending_heard_only = heard && (!r->pending || r->pending_heard_only);
    r->pending = true;
    if (commit == NULL || commit[0] == '\0')
        r->pending_unconditional = true;
    else
        snprintf(r->pending_commit, sizeof(r->pending_commit), "%s", commit);
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
}

void refresher_request_commit(refresher *r, const char *commit)
{
    request_fetch(r, commit, false);
}

int refresher_answer(refresher *r, request *req)
{
    refresh_waiter *w = calloc(1, sizeof(*w));
    if (w == NULL || (w->url = strdup(req->url ? req->url : "")) == NULL) {
        free(w);
        return err_set(ERR_NOMEM, "out of memory");
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    pthread_mutex_lock(&r->lock);
    if (r->stopping || !r->answer_thread_ok) {
        pthread_mutex_unlock(&r->lock);
        free(w->url);
        free(w);
        return err_set(ERR_UNAVAILABLE, "the server is stopping");
    }
    pthread_mutex_unlock(&r->lock);
    /* Suspended before the handle is shared, so no answer can come before the suspension. */
    w->handle = request_suspend(req);
    w->deadline = add_ms(now, REFRESH_WAIT_MS);
    pthread_mutex_lock(&r->lock);
    if (r->stopping) { /* stopped while this request was being suspended */
        pthread_mutex_unlock(&r->lock);
        waiter_answer(w, ERR_UNAVAILABLE, "the server is stopping", NULL, false);
        return 0;
    }
    /* the next refresh to begin is the first that began after this request */
    w->target = r->started + 1;
    w->next = r->waiters;
    r->waiters = w;
    r->pending = true;
    r->pending_heard_only = false;
    r->pending_unconditional = true;
    pthread_cond_signal(&r->wake);
    pthread_cond_signal(&r->answer_wake);
    pthread_mutex_unlock(&r->lock);
    return 0;
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
    if (r == NULL || r->stopped)
        return;
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    pthread_cond_signal(&r->wake);
    pthread_cond_signal(&r->answer_wake);
    pthread_mutex_unlock(&r->lock);
    /* a fetch stuck on a silent remote must not hold up the exit */
    repo_cancel_fetches();
    pthread_join(r->thread, NULL);
    if (r->answer_thread_ok)
        pthread_join(r->answer_thread, NULL);
    r->stopped = true;
    /* whoever still waits is answered before the HTTP server stops */
    pthread_mutex_lock(&r->lock);
    refresh_waiter *left = r->waiters;
    r->waiters = NULL;
    pthread_mutex_unlock(&r->lock);
    while (left != NULL) {
        refresh_waiter *next = left->next;
        waiter_answer(left, ERR_UNAVAILABLE, "the server is stopping", NULL, false);
        left = next;
    }
}

void refresher_free(refresher *r)
{
    if (r == NULL)
        return;
    refresher_stop(r);
    pthread_cond_destroy(&r->answer_wake);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
