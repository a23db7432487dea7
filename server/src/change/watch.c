/*
 * watch — the long-poll registry (see watch.h).
 *
 * Watchers are grouped by what they watch, so a refresh renders each watched Environment once
 * however many clients wait on it, and compares ETags: only watchers whose ETag differs are
 * woken. Deadlines are kept here (libmicrohttpd does not time out parked connections) by one
 * thread that sleeps until the earliest of them. Rendering happens outside the registry lock;
 * the lock covers only list surgery and resuming connections, which never blocks.
 *
 * It does not decide when to refresh (refresh.c) nor how to render (render.c).
 */
#include "change/watch.h"

#include "errors.h"
#include "log.h"
#include "metrics.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#define MODULE "watch"
#define DEFAULT_TIMEOUT_SECONDS 30
#define PEER_SIZE 48

typedef struct group group;

typedef struct waiter {
    request_handle *handle;
    group *group;
    char etag[ETAG_SIZE];
    char peer[PEER_SIZE];
    struct timespec deadline; /* CLOCK_MONOTONIC */
    struct waiter *prev, *next;
} waiter;

struct group {
    char *key;
    char *applications;
    char *profiles;
    char *label;      /* NULL: default label */
    char *label_echo; /* as the client wrote it, NULL if none */
    render_format fmt;
    char *path;       /* RENDER_PLAIN_FILE: the file's repository path; else NULL */
    waiter *head;
    size_t index;     /* position in the registry's array */
};

struct watch_registry {
    watch_deps deps;
    watch_limits limits;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool thread_started;
    bool stopping;
    unsigned long generation;   /* bumped by every notify: detects a refresh during a park */
    struct timespec next_deadline;
    json_t *index;              /* group key -> position in groups */
    group **groups;
    size_t ngroups, capacity;
    json_t *per_peer;           /* peer address -> parked watchers */
    size_t total;
};

static struct timespec monotonic_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now;
}

static bool before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static char *group_key(const env_query *q, render_format fmt, const char *path)
{
    char *key = NULL;
    if (asprintf(&key, "%d\x1f%s\x1f%s\x1f%s\x1f%s", (int)fmt, q->applications, q->profiles,
                 q->label_echo ? q->label_echo : "\x1e", path ? path : "") < 0)
        return NULL;
    return key;
}

/* The current answer for what a group watches. */
static int render_watched(watch_registry *w, render_result *out, const env_query *q,
                          render_format fmt, const char *path)
{
    return w->deps.render(w->deps.ctx, out, q, fmt, path);
}

static void group_free(group *g)
{
    if (g == NULL)
        return;
    free(g->key);
    free(g->applications);
    free(g->profiles);
    free(g->label);
    free(g->label_echo);
    free(g->path);
    free(g);
}

static group *group_find_or_add(watch_registry *w, const env_query *q, render_format fmt,
                                const char *path)
{
    char *key = group_key(q, fmt, path);
    if (key == NULL)
        return NULL;
    json_t *pos = json_object_get(w->index, key);
    if (pos != NULL) {
        free(key);
        return w->groups[json_integer_value(pos)];
    }
    if (w->ngroups == w->capacity) {
        size_t capacity = w->capacity ? w->capacity * 2 : 16;
        group **grown = realloc(w->groups, capacity * sizeof(*grown));
        if (grown == NULL) {
            free(key);
            return NULL;
        }
        w->groups = grown;
        w->capacity = capacity;
    }
    group *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        free(key);
        return NULL;
    }
    g->key = key;
    g->applications = strdup(q->applications);
    g->profiles = strdup(q->profiles);
    g->label = q->label ? strdup(q->label) : NULL;
    g->label_echo = q->label_echo ? strdup(q->label_echo) : NULL;
    g->fmt = fmt;
    g->path = path ? strdup(path) : NULL;
    g->index = w->ngroups;
    if (g->applications == NULL || g->profiles == NULL || (q->label && g->label == NULL) ||
        (q->label_echo && g->label_echo == NULL) || (path && g->path == NULL) ||
        json_object_set_new(w->index, key, json_integer((json_int_t)g->index)) != 0) {
        group_free(g);
        return NULL;
    }
    w->groups[w->ngroups++] = g;
    return g;
}

/* Swap-remove an empty group, fixing the index of the group moved into its place. */
static void group_remove(watch_registry *w, group *g)
{
    size_t at = g->index;
    json_object_del(w->index, g->key);
    w->ngroups--;
    if (at != w->ngroups) {
        group *moved = w->groups[w->ngroups];
        moved->index = at;
        w->groups[at] = moved;
        json_object_set_new(w->index, moved->key, json_integer((json_int_t)at));
    }
    group_free(g);
}

static void peer_adjust(watch_registry *w, const char *peer, long delta)
{
    json_t *count = json_object_get(w->per_peer, peer);
    long value = (count ? (long)json_integer_value(count) : 0) + delta;
    if (value <= 0)
        json_object_del(w->per_peer, peer);
    else
        json_object_set_new(w->per_peer, peer, json_integer(value));
}

/* Unlinks a waiter (lock held) and answers it with res. */
static void waiter_finish(watch_registry *w, waiter *x, response *res)
{
    group *g = x->group;
    if (x->prev)
        x->prev->next = x->next;
    else
        g->head = x->next;
    if (x->next)
        x->next->prev = x->prev;
    peer_adjust(w, x->peer, -1);
    w->total--;
    request_resume(x->handle, res);
    free(x);
    if (g->head == NULL)
        group_remove(w, g);
    metrics_set_watchers((long)w->total);
}

static void answer_not_modified(watch_registry *w, waiter *x)
{
    response res;
    memset(&res, 0, sizeof(res));
    response_set(&res, 304, NULL, NULL, 0);
    response_add_header(&res, "ETag", x->etag);
    waiter_finish(w, x, &res);
}

/*
 * At shutdown a parked watcher must not read "unchanged": a client would then wait out the
 * rest of its window (most of a minute) before asking again, while another replica holds the
 * news. 503 with Retry-After: 0 says "this server is going; ask again now, elsewhere".
 */
static void answer_stopping(watch_registry *w, waiter *x)
{
    response res;
    memset(&res, 0, sizeof(res));
    json_t *doc = json_pack("{s:i, s:s, s:s}", "status", 503, "error", "Service Unavailable",
                            "message", "the server is shutting down; ask again (another server)");
    char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    response_set(&res, 503, body ? "application/json" : NULL, body, body ? strlen(body) : 0);
    response_add_header(&res, "Retry-After", "0");
    waiter_finish(w, x, &res);
}

static void *deadline_thread(void *arg)
{
    watch_registry *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->stopping) {
        struct timespec now = monotonic_now();
        struct timespec next = {.tv_sec = now.tv_sec + 3600, .tv_nsec = now.tv_nsec};
        for (size_t i = 0; i < w->ngroups;) {
            group *g = w->groups[i];
            bool removed = false;
            for (waiter *x = g->head, *following; x; x = following) {
                following = x->next;
                if (!before(&now, &x->deadline)) {
                    removed = g->head == x && following == NULL;
                    answer_not_modified(w, x);
                } else if (before(&x->deadline, &next)) {
                    next = x->deadline;
                }
            }
            /* A removed group's slot now holds another group: look at the same slot again. */
            if (!removed)
                i++;
        }
        w->next_deadline = next;
        /* The condition variable runs on CLOCK_MONOTONIC (see watch_registry_new). */
        int rc = pthread_cond_timedwait(&w->wake, &w->lock, &next);
        (void)rc;
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int watch_registry_new(watch_registry **out, const watch_deps *deps, const watch_limits *limits)
{
    watch_registry *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    w->deps = *deps;
    w->limits = *limits;
    metrics_set_watchers_max((long)limits->max_watchers);
    w->index = json_object();
    w->per_peer = json_object();
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&w->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (w->index == NULL || w->per_peer == NULL || rc != 0 ||
        pthread_mutex_init(&w->lock, NULL) != 0) {
        json_decref(w->index);
        json_decref(w->per_peer);
        free(w);
        return err_set(ERR_NOMEM, "cannot set up the watch registry");
    }
    w->next_deadline = monotonic_now();
    if (pthread_create(&w->thread, NULL, deadline_thread, w) != 0) {
        watch_registry_free(w);
        return err_set(ERR_INTERNAL, "cannot start the watch deadline thread");
    }
    w->thread_started = true;
    *out = w;
    return 0;
}

void watch_registry_shutdown(watch_registry *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    while (w->ngroups > 0)
        answer_stopping(w, w->groups[w->ngroups - 1]->head);
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    if (w->thread_started) {
        pthread_join(w->thread, NULL);
        w->thread_started = false;
    }
}

void watch_registry_free(watch_registry *w)
{
    if (w == NULL)
        return;
    watch_registry_shutdown(w);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
    json_decref(w->index);
    json_decref(w->per_peer);
    free(w->groups);
    free(w);
}

size_t watch_count(watch_registry *w)
{
    pthread_mutex_lock(&w->lock);
    size_t n = w->total;
    pthread_mutex_unlock(&w->lock);
    return n;
}

const watch_limits *watch_registry_limits(const watch_registry *w)
{
    return &w->limits;
}

/*
 * A refused watcher is logged with the setting that refused it, once a minute at most per
 * cap: an operator sees which flag to raise without a line per refused request.
 */
static void log_cap_reached(const char *setting, size_t cap, const char *peer)
{
    static _Atomic long last_total, last_per_ip;
    _Atomic long *last = strcmp(setting, "--max-connections") == 0 ? &last_total : &last_per_ip;
    long now = (long)time(NULL), before = atomic_load(last);
    if (now - before < 60 || !atomic_compare_exchange_strong(last, &before, now))
        return;
    LOG_WARN(MODULE, "watch refused with 429: %zu parked watchers%s%s reached %s (%zu); raise "
             "it (and the open-file limit) if this is expected load",
             cap, peer ? " from " : "", peer ? peer : "", setting, cap);
}

json_t *watch_counts_by_application(watch_registry *w)
{
    json_t *counts = json_object();
    pthread_mutex_lock(&w->lock);
    for (size_t i = 0; counts != NULL && i < w->ngroups; i++) {
        size_t n = 0;
        for (const waiter *x = w->groups[i]->head; x != NULL; x = x->next)
            n++;
        if (n == 0)
            continue;
        const char *apps = w->groups[i]->applications;
        json_int_t before = json_integer_value(json_object_get(counts, apps));
        if (json_object_set_new(counts, apps, json_integer(before + (json_int_t)n)) < 0) {
            json_decref(counts);
            counts = NULL;
        }
    }
    pthread_mutex_unlock(&w->lock);
    return counts;
}

static int parse_timeout(const char *text, unsigned max, unsigned *out)
{
    if (text == NULL || text[0] == '\0') {
        *out = DEFAULT_TIMEOUT_SECONDS < max ? DEFAULT_TIMEOUT_SECONDS : max;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value == 0)
        return err_set(ERR_BAD_REQUEST, "timeout must be a whole number of seconds above 0");
    *out = value > max ? max : (unsigned)value;
    return 0;
}

/* The deadline, shortened by up to a tenth so that clients parked together do not all return
 * in the same instant. */
static struct timespec jittered_deadline(unsigned timeout)
{
    struct timespec deadline = monotonic_now();
    unsigned short noise = 0;
    if (RAND_bytes((unsigned char *)&noise, sizeof(noise)) != 1)
        noise = 0;
    long long total_ms = (long long)timeout * 1000;
    total_ms -= (total_ms / 10) * noise / 65535;
    deadline.tv_sec += (time_t)(total_ms / 1000);
    deadline.tv_nsec += (long)(total_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    return deadline;
}

int watch_request(watch_registry *w, request *req, response *res, const env_query *q,
                  render_format fmt, const char *path, const char *etag, const char *timeout_text)
{
    unsigned timeout = 0;
    char wanted[ETAG_SIZE];
    char peer[PEER_SIZE];
    if (parse_timeout(timeout_text, w->limits.max_timeout, &timeout) < 0)
        return response_error(res, req, ERR_BAD_REQUEST, NULL);
    etag_normalise(etag, wanted);
    request_peer(req, peer, sizeof(peer));

    for (int attempt = 0; attempt < 3; attempt++) {
        pthread_mutex_lock(&w->lock);
        unsigned long generation = w->generation;
        pthread_mutex_unlock(&w->lock);

        render_result r;
        int error = render_watched(w, &r, q, fmt, path);
        if (error < 0)
            return response_error(res, req, error, NULL);
        if (strcmp(r.etag, wanted) != 0) {
            /* The caller's version is stale (or unknown): answer at once. */
            response_use_prepared(res, r.ok);
            r.ok = NULL;
            render_result_dispose(&r);
            return 0;
        }
        render_result_dispose(&r);

        pthread_mutex_lock(&w->lock);
        if (w->generation != generation) {
            /* A refresh ran while we rendered: look again rather than miss its change. */
            pthread_mutex_unlock(&w->lock);
            continue;
        }
        json_t *count = json_object_get(w->per_peer, peer);
        if (w->stopping || w->total >= w->limits.max_watchers ||
            (count && (size_t)json_integer_value(count) >= w->limits.max_per_client)) {
            bool stopping = w->stopping, total_cap = w->total >= w->limits.max_watchers;
            pthread_mutex_unlock(&w->lock);
            if (stopping)
                return response_error(res, req, ERR_UNAVAILABLE, "server is shutting down");
            if (total_cap)
                log_cap_reached("--max-connections", w->limits.max_watchers, NULL);
            else
                log_cap_reached("--max-watchers-per-ip", w->limits.max_per_client, peer);
            return response_error(res, req, ERR_TOO_MANY, "too many watchers");
        }
        group *g = group_find_or_add(w, q, fmt, path);
        waiter *x = g ? calloc(1, sizeof(*x)) : NULL;
        if (x == NULL) {
            if (g != NULL && g->head == NULL)
                group_remove(w, g);
            pthread_mutex_unlock(&w->lock);
            return response_error(res, req, ERR_NOMEM, "out of memory");
        }
        x->group = g;
        memcpy(x->etag, wanted, sizeof(x->etag));
        snprintf(x->peer, sizeof(x->peer), "%s", peer);
        x->deadline = jittered_deadline(timeout);
        x->handle = request_suspend(req);
        x->next = g->head;
        if (g->head)
            g->head->prev = x;
        g->head = x;
        peer_adjust(w, peer, +1);
        w->total++;
        metrics_set_watchers((long)w->total);
        if (before(&x->deadline, &w->next_deadline))
            pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
        return 0;
    }
    return response_error(res, req, ERR_UNAVAILABLE, "configuration is changing; try again");
}

typedef struct watched {
    char *key;
    env_query q;
    render_format fmt;
    char *path;
} watched;

static void notify_served_by(watch_registry *w, const char *repository);

void watch_on_change(void *ctx, const change_notice *notice)
{
    notify_served_by(ctx, notice->repository);
}

/* Renders what one group watches and wakes its watchers whose ETag differs; returns how
 * many it woke. */
static size_t notify_group(watch_registry *w, const watched *it)
{
    render_result r;
    size_t woken = 0;
    if (it->key == NULL || it->q.applications == NULL || it->q.profiles == NULL ||
        (it->fmt == RENDER_PLAIN_FILE && it->path == NULL) ||
        render_watched(w, &r, &it->q, it->fmt, it->path) < 0)
        return 0;
    pthread_mutex_lock(&w->lock);
    json_t *pos = json_object_get(w->index, it->key);
    group *g = pos ? w->groups[json_integer_value(pos)] : NULL;
    for (waiter *x = g ? g->head : NULL, *following; x; x = following) {
        following = x->next;
        if (strcmp(x->etag, r.etag) == 0)
            continue;
        response res;
        memset(&res, 0, sizeof(res));
        response_use_prepared(&res, prepared_response_retain(r.ok));
        waiter_finish(w, x, &res);
        woken++;
    }
    pthread_mutex_unlock(&w->lock);
    render_result_dispose(&r);
    return woken;
}

/*
 * A commit to application.yml changes every watched Environment at once, and each must be
 * composed and rendered anew before its watchers can be answered. Below NOTIFY_PARALLEL_MIN
 * groups the refreshing thread does it alone; above, helpers take groups from a shared counter
 * so that all cores but one render. The one left keeps serving reads and writing the answers
 * (each group's watchers go to the parking thread as soon as that group is rendered): on two
 * cores, a second render thread made reads during a wake-up slower and the last watcher no
 * sooner (docs/performance.md, the fleet section).
 */
#define NOTIFY_PARALLEL_MIN 64
#define NOTIFY_MAX_THREADS 4

typedef struct notify_work {
    watch_registry *w;
    const watched *list;
    size_t count;
    atomic_size_t next;
    atomic_size_t woken;
} notify_work;

static void *notify_worker(void *arg)
{
    notify_work *work = arg;
    size_t woken = 0;
    for (size_t i; (i = atomic_fetch_add(&work->next, 1)) < work->count;)
        woken += notify_group(work->w, &work->list[i]);
    atomic_fetch_add(&work->woken, woken);
    return NULL;
}

static size_t notify_threads(size_t groups)
{
    if (groups < NOTIFY_PARALLEL_MIN)
        return 1;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus < 3 ? 1 : cpus - 1 > NOTIFY_MAX_THREADS ? NOTIFY_MAX_THREADS : (size_t)cpus - 1;
}

void watch_notify(watch_registry *w)
{
    notify_served_by(w, NULL);
}

/* Re-renders what is watched of the applications the repository named serves (NULL: all; a
 * change elsewhere cannot alter the others' answers) and wakes the watchers whose answer
 * changed. */
static void notify_served_by(watch_registry *w, const char *repository)
{
    size_t count = 0;
    watched *list = NULL;

    pthread_mutex_lock(&w->lock);
    w->generation++;
    if (w->ngroups > 0)
        list = calloc(w->ngroups, sizeof(*list));
    for (size_t i = 0; list != NULL && i < w->ngroups; i++) {
        group *g = w->groups[i];
        if (repository != NULL && w->deps.serves != NULL &&
            !w->deps.serves(w->deps.ctx, repository, g->applications, g->profiles))
            continue;
        watched *it = &list[count];
        it->key = strdup(g->key);
        it->q.applications = strdup(g->applications);
        it->q.profiles = strdup(g->profiles);
        it->q.label = g->label ? strdup(g->label) : NULL;
        it->q.decrypt = true;
        it->q.label_echo = g->label_echo ? strdup(g->label_echo) : NULL;
        it->fmt = g->fmt;
        it->path = g->path ? strdup(g->path) : NULL;
        count++;
    }
    pthread_mutex_unlock(&w->lock);

    notify_work work = {.w = w, .list = list, .count = count};
    atomic_init(&work.next, 0);
    atomic_init(&work.woken, 0);
    pthread_t helpers[NOTIFY_MAX_THREADS - 1];
    size_t started = 0;
    for (size_t n = notify_threads(count); started + 1 < n; started++)
        if (pthread_create(&helpers[started], NULL, notify_worker, &work) != 0)
            break; /* fewer helpers: the groups are still all taken, by those that run */
    notify_worker(&work);
    for (size_t i = 0; i < started; i++)
        pthread_join(helpers[i], NULL);
    size_t woken = atomic_load(&work.woken);
    if (woken > 0)
        LOG_INFO(MODULE, "woke %zu watcher(s) of %zu watched environment(s)%s", woken, count,
                 started > 0 ? " (rendered in parallel)" : "");

    for (size_t i = 0; i < count; i++) {
        free(list[i].key);
        free((char *)(uintptr_t)list[i].q.applications);
        free((char *)(uintptr_t)list[i].q.profiles);
        free((char *)(uintptr_t)list[i].q.label);
        free((char *)(uintptr_t)list[i].q.label_echo);
        free(list[i].path);
    }
    free(list);
}
