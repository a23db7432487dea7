/*
 * watch — alm_watch: a thread that long-polls through the client, swaps in each new snapshot,
 * computes the diff and calls the user back, and keeps a heartbeat so a quiet server shows as
 * stale.
 *
 * Locking: one mutex guards the current snapshot, the heartbeat time and the queue of changes
 * awaiting alm_watch_dispatch, and is never held while the callback runs or a request is in
 * flight. With manual dispatch the thread queues each change and writes a byte to a pipe the
 * caller's event loop polls; the callback then runs on the caller's thread.
 *
 * Stopping sets a flag, cancels the client's request in flight (curl_multi_wakeup) and signals
 * the condition the thread sleeps on between retries, so alm_watch_stop returns within a
 * moment, not a poll timeout.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_POLL_TIMEOUT_S 60u
#define MIN_RETRY_MS 100u

struct alm_watch {
    alm_client *client;
    alm_watch_options opts;
    pthread_t thread;
    bool started;
    bool stopping;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* signalled by alm_watch_stop */
    alm_config *current;
    struct timespec last_contact; /* CLOCK_MONOTONIC of the last answer from a server */
    bool contact;                 /* a server answered since the watch started */
    int pipe_fd[2];               /* manual dispatch: readable while changes are queued */
    struct pending *queue;        /* manual dispatch: changes not yet dispatched, oldest first */
    struct pending **queue_tail;
};

static int64_t elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

/* The three key lists of a diff, each entry pointing into one of the snapshots. */
typedef struct diff_lists {
    const char **added, **changed, **removed;
    size_t nadded, nchanged, nremoved;
} diff_lists;

static void diff_dispose(diff_lists *d)
{
    free(d->added);
    free(d->changed);
    free(d->removed);
}

/* A change queued for alm_watch_dispatch: both snapshots retained, so the diff stays valid. */
typedef struct pending {
    struct pending *next;
    alm_config *old_cfg;
    alm_config *new_cfg;
    diff_lists diff;
} pending;

static int diff_compute(diff_lists *d, const alm_config *old_cfg, const alm_config *new_cfg)
{
    size_t nold = alm_config_entrycount(old_cfg), nnew = alm_config_entrycount(new_cfg);
    memset(d, 0, sizeof(*d));
    d->added = calloc(nnew + 1, sizeof(*d->added));
    d->changed = calloc(nnew + 1, sizeof(*d->changed));
    d->removed = calloc(nold + 1, sizeof(*d->removed));
    if (d->added == NULL || d->changed == NULL || d->removed == NULL) {
        diff_dispose(d);
        return alm__error_set(ALM_ENOMEM, "out of memory computing a diff");
    }
    for (size_t i = 0; i < nnew; i++) {
        const alm_config_entry *e = alm_config_entry_byindex(new_cfg, i);
        const alm_config_entry *o = alm__config_entry_bykey(old_cfg, e->key);
        if (o == NULL)
            d->added[d->nadded++] = e->key;
        else if (o->type != e->type || strcmp(o->value, e->value) != 0)
            d->changed[d->nchanged++] = e->key; /* 8080 vs "8080" too: typed getters differ */
    }
    for (size_t j = 0; j < nold; j++) {
        const alm_config_entry *o = alm_config_entry_byindex(old_cfg, j);
        if (alm__config_entry_bykey(new_cfg, o->key) == NULL)
            d->removed[d->nremoved++] = o->key;
    }
    return 0;
}

/* Sleeps up to `ms` unless the watch is being stopped; returns true when it is. */
static bool pause_or_stop(alm_watch *w, unsigned long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->lock);
    while (!w->stopping) {
        if (pthread_cond_timedwait(&w->wake, &w->lock, &until) == ETIMEDOUT)
            break;
    }
    bool stopping = w->stopping;
    pthread_mutex_unlock(&w->lock);
    return stopping;
}

static bool is_stopping(alm_watch *w)
{
    pthread_mutex_lock(&w->lock);
    bool stopping = w->stopping;
    pthread_mutex_unlock(&w->lock);
    return stopping;
}

/* Swaps `next` in and calls back when the merged view changed; returns whether it did. */
static bool deliver(alm_watch *w, alm_config *next)
{
    bool changed = false;
    diff_lists d;
    pthread_mutex_lock(&w->lock);
    alm_config *old_cfg = w->current;
    w->current = next;
    pthread_mutex_unlock(&w->lock);

    if (diff_compute(&d, old_cfg, next) < 0) {
        alm__client_log(w->client, ALM_LOG_ERROR, "%s", alm_error_last()->message);
        alm_config_free(old_cfg);
        return true;
    }
    if (d.nadded + d.nchanged + d.nremoved == 0) {
        diff_dispose(&d);
        alm_config_free(old_cfg);
        return false;
    }
    changed = true;
    alm__client_log(w->client, ALM_LOG_INFO,
                    "configuration changed to version %s: %zu added, %zu changed, %zu removed",
                    alm_config_version(next) ? alm_config_version(next) : "?", d.nadded, d.nchanged,
                    d.nremoved);
    if (w->opts.manual_dispatch) {
        pending *p = calloc(1, sizeof(*p));
        if (p == NULL) {
            alm__client_log(w->client, ALM_LOG_ERROR, "out of memory queueing a change");
            diff_dispose(&d);
            alm_config_free(old_cfg);
            return changed;
        }
        p->old_cfg = old_cfg;
        p->new_cfg = alm_config_retain(next);
        p->diff = d;
        pthread_mutex_lock(&w->lock);
        *w->queue_tail = p;
        w->queue_tail = &p->next;
        pthread_mutex_unlock(&w->lock);
        /* A full pipe already says "changes are waiting"; the byte itself carries nothing. */
        ssize_t n = write(w->pipe_fd[1], "", 1);
        (void)n;
        return changed;
    }
    alm_diff diff = {d.added, d.nadded, d.changed, d.nchanged, d.removed, d.nremoved};
    w->opts.on_change(old_cfg, next, &diff, w->opts.payload);
    diff_dispose(&d);
    alm_config_free(old_cfg);
    return changed;
}

static void note_contact(alm_watch *w)
{
    pthread_mutex_lock(&w->lock);
    clock_gettime(CLOCK_MONOTONIC, &w->last_contact);
    w->contact = true;
    pthread_mutex_unlock(&w->lock);
}

#define FAILOVER_SPREAD_MS 2000

/* 0 to max_ms, uniformly (OpenSSL's generator, as the retry jitter). */
static unsigned long random_ms(unsigned long max_ms)
{
    uint32_t rnd = 0;
    if (RAND_bytes((unsigned char *)&rnd, sizeof(rnd)) != 1)
        return max_ms / 2;
    return (unsigned long)((double)rnd / 4294967295.0 * (double)max_ms);
}

static void *watch_main(void *arg)
{
    alm_watch *w = arg;
    alm_retry_policy retry = {0};
    unsigned long backoff = 0;
    bool failed_over = false; /* one quick failover per outage; then the retry policy */

    alm__client_retry_policy(w->client, &retry);
    while (!is_stopping(w)) {
        alm_config *cur = alm_watch_current(w);
        const char *etag = alm_config_etag(cur);
        alm_config *next = NULL;
        struct timespec started;
        clock_gettime(CLOCK_MONOTONIC, &started);
        int error = alm_client_poll(&next, w->client, etag, w->opts.poll_timeout_s);
        bool unchanged_etag = next != NULL && etag != NULL && alm_config_etag(next) != NULL &&
                              strcmp(etag, alm_config_etag(next)) == 0;
        alm_config_free(cur);
        if (error == ALM__ECANCELLED || is_stopping(w)) {
            alm_config_free(next);
            break;
        }
        if (error == 0) {
            note_contact(w);
            backoff = 0;
            failed_over = false;
            bool changed = false;
            if (next != NULL && !unchanged_etag)
                changed = deliver(w, next);
            else
                alm_config_free(next);
            /*
             * A server that did not hold the request (no ETag, or one that ignores ?watch=, as
             * Spring's does) would be polled in a tight loop: keep to one poll per window.
             */
            int64_t left = (int64_t)w->opts.poll_timeout_s * 1000 - elapsed_ms(&started);
            if (!changed && left > 0 && pause_or_stop(w, (unsigned long)left))
                break;
            continue;
        }
        if (alm__retryable(error) && alm__client_server_left(w->client) && !failed_over) {
            /* The server went away (restart, failover): ask the next one now, but not in the
             * same instant as every other watcher it had. */
            failed_over = true;
            unsigned long spread = random_ms(FAILOVER_SPREAD_MS);
            alm__client_log(w->client, ALM_LOG_INFO,
                            "watch: %s; asking the next server in %lu ms",
                            alm_error_last()->message, spread);
            if (pause_or_stop(w, spread))
                break;
            continue;
        }
        if (backoff == 0)
            backoff =
                retry.initial_backoff_ms > MIN_RETRY_MS ? retry.initial_backoff_ms : MIN_RETRY_MS;
        else
            backoff = (unsigned long)((double)backoff * retry.multiplier);
        if (backoff > retry.max_backoff_ms || !alm__retryable(error))
            backoff = retry.max_backoff_ms > MIN_RETRY_MS ? retry.max_backoff_ms : MIN_RETRY_MS;
        alm__client_log(w->client, alm__retryable(error) ? ALM_LOG_WARN : ALM_LOG_ERROR,
                        "watch: %s; next attempt in %lu ms", alm_error_last()->message, backoff);
        if (pause_or_stop(w, backoff))
            break;
    }
    return NULL;
}

int alm_watch_start(alm_watch **out, alm_client *client, alm_config *initial,
                    const alm_watch_options *opts)
{
    alm_watch *w = NULL;
    if (out == NULL || client == NULL || initial == NULL || opts == NULL)
        return alm__error_set(ALM_EINVALID, "alm_watch_start: NULL argument");
    *out = NULL;
    if (opts->version == 0 || opts->version > ALM_WATCH_OPTIONS_VERSION)
        return alm__error_set(ALM_EINVALID, "alm_watch_start: unknown options version %u",
                              opts->version);
    if (opts->on_change == NULL)
        return alm__error_set(ALM_EINVALID, "alm_watch_start: on_change is required");
    if (opts->poll_timeout_s > 3600)
        return alm__error_set(ALM_EINVALID, "alm_watch_start: poll timeout over 3600 s");
    if ((w = calloc(1, sizeof(*w))) == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    w->pipe_fd[0] = w->pipe_fd[1] = -1;
    w->queue_tail = &w->queue;
    if (opts->manual_dispatch && pipe2(w->pipe_fd, O_CLOEXEC | O_NONBLOCK) < 0) {
        free(w);
        return alm__error_set(ALM_ERROR, "alm_watch_start: cannot create a pipe: %s",
                              strerror(errno));
    }
    w->client = client;
    w->opts = *opts;
    if (w->opts.poll_timeout_s == 0)
        w->opts.poll_timeout_s = DEFAULT_POLL_TIMEOUT_S;
    if (w->opts.heartbeat_ms == 0)
        w->opts.heartbeat_ms = 3u * w->opts.poll_timeout_s * 1000u;
    w->current = alm_config_retain(initial);
    w->contact = !alm_config_is_stale(initial);
    clock_gettime(CLOCK_MONOTONIC, &w->last_contact);

    pthread_condattr_t attr;
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->wake, &attr);
    pthread_condattr_destroy(&attr);
    alm__client_uncancel(client);
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        alm_watch_free(w);
        return alm__error_set(ALM_ERROR, "alm_watch_start: cannot start a thread");
    }
    w->started = true;
    *out = w;
    return 0;
}

alm_config *alm_watch_current(alm_watch *w)
{
    if (w == NULL)
        return NULL;
    pthread_mutex_lock(&w->lock);
    alm_config *cfg = alm_config_retain(w->current);
    pthread_mutex_unlock(&w->lock);
    return cfg;
}

int alm_watch_is_stale(alm_watch *w)
{
    if (w == NULL)
        return 0;
    pthread_mutex_lock(&w->lock);
    int stale = !w->contact || elapsed_ms(&w->last_contact) > (int64_t)w->opts.heartbeat_ms;
    pthread_mutex_unlock(&w->lock);
    return stale;
}

void alm_watch_stop(alm_watch *w)
{
    if (w == NULL || !w->started)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
    alm__client_cancel(w->client);
    pthread_join(w->thread, NULL);
    w->started = false;
    alm__client_uncancel(w->client);
}

static void pending_free(pending *p)
{
    while (p != NULL) {
        pending *next = p->next;
        diff_dispose(&p->diff);
        alm_config_free(p->old_cfg);
        alm_config_free(p->new_cfg);
        free(p);
        p = next;
    }
}

int alm_watch_fd(alm_watch *w)
{
    return w != NULL ? w->pipe_fd[0] : -1;
}

int alm_watch_dispatch(alm_watch *w)
{
    char sink[64];
    if (w == NULL || !w->opts.manual_dispatch)
        return alm__error_set(ALM_EINVALID, "alm_watch_dispatch: not a manual-dispatch watch");
    /* Drain first: a change queued after this read leaves a byte for the next wake-up. */
    while (read(w->pipe_fd[0], sink, sizeof(sink)) > 0)
        ;
    pthread_mutex_lock(&w->lock);
    pending *list = w->queue;
    w->queue = NULL;
    w->queue_tail = &w->queue;
    pthread_mutex_unlock(&w->lock);

    int count = 0;
    for (pending *p = list; p != NULL; p = p->next, count++) {
        alm_diff diff = {p->diff.added,    p->diff.nadded,  p->diff.changed,
                         p->diff.nchanged, p->diff.removed, p->diff.nremoved};
        w->opts.on_change(p->old_cfg, p->new_cfg, &diff, w->opts.payload);
    }
    pending_free(list);
    return count;
}

void alm_watch_free(alm_watch *w)
{
    if (w == NULL)
        return;
    alm_watch_stop(w);
    pending_free(w->queue);
    if (w->pipe_fd[0] >= 0)
        close(w->pipe_fd[0]);
    if (w->pipe_fd[1] >= 0)
        close(w->pipe_fd[1]);
    alm_config_free(w->current);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
