/*
 * watch — alm_watch: long-polls through the client, swaps in each new snapshot, computes the
 * diff and calls the user back; keeps the watch's health (fresh, stale, outage kinds) with a
 * heartbeat so a quiet server shows as stale; paces retries with the client's watch policy and
 * logs outages by state change, not by attempt.
 *
 * One implementation, a state machine that never blocks: alm_watch_perform() does what is due
 * (hands libcurl its ready sockets, finishes a poll, starts the next one when its pause is
 * over, expires the heartbeat) and alm_watch_timeout_ms() says when it is next due; the
 * client's epoll descriptor (alm_watch_fd) gathers libcurl's sockets. A program with its own
 * event loop drives that itself (alm_watch_new); alm_watch_start adds a thread that does
 * nothing else than poll the descriptor (and a pipe that stops it) and call the same step.
 *
 * Locking: one mutex guards the current snapshot, the status, the heartbeat time and the queue
 * of events awaiting alm_watch_dispatch, and is never held while a callback runs. The state
 * machine's own fields belong to the thread that steps it. With manual dispatch the thread
 * queues each event (change, status, log line) and writes a byte to a pipe the caller's event
 * loop polls; the callbacks then run on the caller's thread, and the public current snapshot
 * moves when its change is dispatched. The HTTP exchange is client.c's.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_POLL_TIMEOUT_S 60u
#define MIN_RETRY_MS 100u
#define MAX_QUEUED_LOG_LINES 256u
/* A refusal (401, 403, 404) will not pass by itself: the first pause is this many times longer. */
#define REFUSAL_BACKOFF_FACTOR 10u

/* An outage as the log tells it: one line when it begins or changes kind, one when it ends. */
typedef struct outage {
    unsigned int attempts; /* failed attempts so far; 0: no outage */
    struct timespec since;
    alm_watch_status kind;
} outage;

struct alm_watch {
    alm_client *client;
    alm_watch_options opts;
    bool threaded;  /* alm_watch_start: a thread steps the watch */
    pthread_t thread;
    bool started;   /* the thread runs */
    bool stopping;  /* under the lock: the thread is asked to end */
    bool stopped;   /* alm_watch_stop ran: nothing more is done */
    int stop_pipe[2]; /* threaded: written by alm_watch_stop to wake the thread's poll */
    int loop_fd;      /* the client's epoll descriptor */
    pthread_mutex_t lock;
    pthread_cond_t fresh; /* broadcast when the status changes */
    alm_config *current;  /* what alm_watch_current() hands out */
    alm_config *latest;   /* the watch thread's own: the last snapshot received (thread only) */
    alm_watch_status status;
    struct timespec last_contact; /* CLOCK_MONOTONIC of the last answer from a server */
    int pipe_fd[2];               /* manual dispatch: readable while events are queued */
    struct pending *queue;        /* manual dispatch: events not yet dispatched, oldest first */
    struct pending **queue_tail;
    unsigned int queued_log_lines;
    unsigned long dropped_log_lines;

    /* The state machine (only the stepping thread touches these). */
    bool busy;                /* a poll is in flight */
    struct timespec next_at;  /* idle: when the next poll starts */
    struct timespec poll_began; /* of the poll in flight */
    bool ask_now;             /* the next poll asks at once (no ?watch=) */
    bool failed_over;         /* one quick failover per outage; then the retry policy */
    outage out;
    alm_retry_policy policy;
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

/*
 * An event queued for alm_watch_dispatch. A change retains both snapshots, so the diff stays
 * valid; a status or log line carries its text.
 */
typedef enum { EV_CHANGE, EV_STATUS, EV_LOG } event_kind;
typedef struct pending {
    struct pending *next;
    event_kind kind;
    alm_config *old_cfg;
    alm_config *new_cfg;
    diff_lists diff;
    int level; /* EV_STATUS: the status; EV_LOG: the level */
    char text[];
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

static bool is_stopping(alm_watch *w)
{
    pthread_mutex_lock(&w->lock);
    bool stopping = w->stopping;
    pthread_mutex_unlock(&w->lock);
    return stopping;
}

/* `t` moved `ms` milliseconds later. */
static struct timespec after_ms(struct timespec t, unsigned long ms)
{
    t.tv_sec += (time_t)(ms / 1000);
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static struct timespec now_plus_ms(unsigned long ms)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return after_ms(now, ms);
}

/* Milliseconds from now until `t`, 0 when it has passed. */
static int64_t ms_until(const struct timespec *t)
{
    int64_t left = -elapsed_ms(t);
    return left > 0 ? left : 0;
}

/* Queues `p` for alm_watch_dispatch and wakes the caller's loop. */
static void enqueue(alm_watch *w, pending *p)
{
    pthread_mutex_lock(&w->lock);
    *w->queue_tail = p;
    w->queue_tail = &p->next;
    pthread_mutex_unlock(&w->lock);
    /* A full pipe already says "events are waiting"; the byte itself carries nothing. */
    ssize_t n = write(w->pipe_fd[1], "", 1);
    (void)n;
}

static pending *pending_new(event_kind kind, int level, const char *text)
{
    size_t len = text != NULL ? strlen(text) : 0;
    pending *p = calloc(1, sizeof(*p) + len + 1);
    if (p == NULL)
        return NULL;
    p->kind = kind;
    p->level = level;
    if (text != NULL)
        memcpy(p->text, text, len + 1);
    return p;
}

/*
 * The client's diagnostics while the watch runs (the sink of alm__client_set_log_sink): with
 * manual dispatch queued for the caller's thread, a bounded number of them between dispatches.
 */
static void log_sink(void *arg, alm_log_level level, const char *line)
{
    alm_watch *w = arg;
    pthread_mutex_lock(&w->lock);
    bool room = w->queued_log_lines < MAX_QUEUED_LOG_LINES;
    if (room)
        w->queued_log_lines++;
    else
        w->dropped_log_lines++;
    pthread_mutex_unlock(&w->lock);
    pending *p = room ? pending_new(EV_LOG, (int)level, line) : NULL;
    if (p != NULL)
        enqueue(w, p);
}

static const char *status_name(alm_watch_status s)
{
    switch (s) {
    case ALM_WATCH_FRESH: return "fresh";
    case ALM_WATCH_STALE: return "stale";
    case ALM_WATCH_UNREACHABLE: return "server unreachable";
    case ALM_WATCH_AUTH_REFUSED: return "credentials refused";
    case ALM_WATCH_REFUSED: return "request refused";
    }
    return "?";
}

/*
 * Records a new status (and, for FRESH, the contact) and tells the caller if it changed. With
 * manual dispatch the event is queued under the same lock that publishes the status, so a
 * thread woken by the change (alm_watch_wait_fresh) finds the event already queued.
 */
static void set_status(alm_watch *w, alm_watch_status status, const char *reason)
{
    bool queue = w->opts.manual_dispatch && w->opts.on_status != NULL;
    pending *p = queue ? pending_new(EV_STATUS, (int)status, reason) : NULL;
    pthread_mutex_lock(&w->lock);
    bool changed = w->status != status;
    w->status = status;
    if (status == ALM_WATCH_FRESH)
        clock_gettime(CLOCK_MONOTONIC, &w->last_contact);
    if (changed && p != NULL) {
        *w->queue_tail = p;
        w->queue_tail = &p->next;
        p = NULL;
    }
    if (changed)
        pthread_cond_broadcast(&w->fresh);
    pthread_mutex_unlock(&w->lock);
    if (!changed || w->opts.on_status == NULL) {
        free(p);
        return;
    }
    if (queue) {
        if (p != NULL) {
            free(p);
            alm__client_log(w->client, ALM_LOG_ERROR, "out of memory queueing a status");
            return;
        }
        ssize_t n = write(w->pipe_fd[1], "", 1);
        (void)n;
        return;
    }
    w->opts.on_status(status, reason, w->opts.payload);
}

/* The status with the heartbeat applied; called with the lock held. */
static alm_watch_status status_locked(alm_watch *w)
{
    if (w->status == ALM_WATCH_FRESH &&
        elapsed_ms(&w->last_contact) > (int64_t)w->opts.heartbeat_ms)
        return ALM_WATCH_STALE;
    return w->status;
}

/* Runs during a request: a server that holds the long-poll past the heartbeat turns stale. */
static void heartbeat_check(alm_watch *w)
{
    pthread_mutex_lock(&w->lock);
    bool expired = w->status == ALM_WATCH_FRESH && status_locked(w) == ALM_WATCH_STALE;
    pthread_mutex_unlock(&w->lock);
    if (expired)
        set_status(w, ALM_WATCH_STALE, "no answer from the server within the heartbeat");
}

/* Swaps `next` in and calls back when the merged view changed; returns whether it did. */
static bool deliver(alm_watch *w, alm_config *next)
{
    diff_lists d;
    alm_config *old_cfg = w->latest;
    w->latest = next;

    if (diff_compute(&d, old_cfg, next) < 0) {
        alm__client_log(w->client, ALM_LOG_ERROR, "%s", alm_error_last()->message);
        d.nadded = d.nchanged = d.nremoved = 0;
        d.added = d.changed = d.removed = NULL;
    }
    if (d.nadded + d.nchanged + d.nremoved == 0) {
        /* Same merged view: the public snapshot follows quietly (a newer version, same keys). */
        if (!w->opts.manual_dispatch) {
            pthread_mutex_lock(&w->lock);
            alm_config *prev = w->current;
            w->current = alm_config_retain(next);
            pthread_mutex_unlock(&w->lock);
            alm_config_free(prev);
        }
        diff_dispose(&d);
        alm_config_free(old_cfg);
        return false;
    }
    alm__client_log(w->client, ALM_LOG_INFO,
                    "configuration changed to version %s: %zu added, %zu changed, %zu removed",
                    alm_config_version(next) ? alm_config_version(next) : "?", d.nadded, d.nchanged,
                    d.nremoved);
    if (w->opts.manual_dispatch) {
        pending *p = pending_new(EV_CHANGE, 0, NULL);
        if (p == NULL) {
            alm__client_log(w->client, ALM_LOG_ERROR, "out of memory queueing a change");
            diff_dispose(&d);
            alm_config_free(old_cfg);
            return true;
        }
        p->old_cfg = old_cfg;
        p->new_cfg = alm_config_retain(next);
        p->diff = d;
        enqueue(w, p);
        return true;
    }
    pthread_mutex_lock(&w->lock);
    alm_config *prev = w->current;
    w->current = alm_config_retain(next);
    pthread_mutex_unlock(&w->lock);
    alm_config_free(prev);
    alm_diff diff = {d.added, d.nadded, d.changed, d.nchanged, d.removed, d.nremoved};
    w->opts.on_change(old_cfg, next, &diff, w->opts.payload);
    diff_dispose(&d);
    alm_config_free(old_cfg);
    return true;
}

/* What a failed request says about the watch's health. */
static alm_watch_status failure_status(int error)
{
    if (error == ALM_EAUTH)
        return ALM_WATCH_AUTH_REFUSED;
    if (alm__retryable(error) || error == ALM_ETLS)
        return ALM_WATCH_UNREACHABLE;
    return ALM_WATCH_REFUSED;
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

/* What the poll that just ended means for the watch; sets when the next one starts. */
static int poll_ended(alm_watch *w, int error, alm_config *next)
{
    if (error == 0) {
        const char *latest_etag = alm_config_etag(w->latest);
        bool unchanged_etag = next != NULL && latest_etag != NULL &&
                              alm_config_etag(next) != NULL &&
                              strcmp(latest_etag, alm_config_etag(next)) == 0;
        if (w->out.attempts > 0)
            alm__client_log(w->client, ALM_LOG_INFO,
                            "watch: the server answers again after %lld s (%s) and %u failed "
                            "attempt%s",
                            (long long)(elapsed_ms(&w->out.since) / 1000),
                            status_name(w->out.kind), w->out.attempts,
                            w->out.attempts == 1 ? "" : "s");
        memset(&w->out, 0, sizeof(w->out));
        set_status(w, ALM_WATCH_FRESH, "the server answered");
        w->failed_over = false;
        bool changed = false;
        if (next != NULL && !unchanged_etag)
            changed = deliver(w, next);
        else
            alm_config_free(next);
        /*
         * A server that did not hold the request (no ETag, or one that ignores ?watch=, as
         * Spring's does) would be polled in a tight loop: keep to one poll per window. An
         * immediate request (after a failure) is followed by a long-poll at once.
         */
        int64_t left = (int64_t)w->opts.poll_timeout_s * 1000 - elapsed_ms(&w->poll_began);
        bool was_now = w->ask_now;
        w->ask_now = false;
        w->next_at = now_plus_ms(!was_now && !changed && left > 0 ? (unsigned long)left : 0);
        return changed ? 1 : 0;
    }
    if (alm__retryable(error) && alm__client_server_left(w->client) && !w->failed_over) {
        /* The server went away (restart, failover): ask the next one now, but not in the
         * same instant as every other watcher it had. */
        w->failed_over = true;
        unsigned long spread = random_ms(FAILOVER_SPREAD_MS);
        alm__client_log(w->client, ALM_LOG_INFO, "watch: %s; asking the next server in %lu ms",
                        alm_error_last()->message, spread);
        w->ask_now = true; /* the next server says at once what it has */
        w->next_at = now_plus_ms(spread);
        return 0;
    }

    char reason[512];
    snprintf(reason, sizeof(reason), "%s", alm_error_last()->message);
    alm_watch_status kind = failure_status(error);
    unsigned long retry_after = alm__client_retry_after(w->client);
    bool refusal = kind == ALM_WATCH_AUTH_REFUSED || kind == ALM_WATCH_REFUSED;
    unsigned long initial = w->policy.initial_backoff_ms;
    if (refusal)
        initial *= REFUSAL_BACKOFF_FACTOR;
    if (initial < MIN_RETRY_MS)
        initial = MIN_RETRY_MS;
    if (w->out.attempts == 0)
        clock_gettime(CLOCK_MONOTONIC, &w->out.since);
    w->out.attempts++;
    unsigned long pause = alm__backoff_ms(&w->policy, initial, w->out.attempts);
    if (pause < retry_after)
        pause = retry_after;
    if (pause < MIN_RETRY_MS)
        pause = MIN_RETRY_MS;
    if (w->out.attempts == 1 || kind != w->out.kind)
        alm__client_log(w->client, refusal ? ALM_LOG_ERROR : ALM_LOG_WARN,
                        "watch: %s: %s; retrying with backoff up to %u s%s", status_name(kind),
                        reason, w->policy.max_backoff_ms / 1000,
                        retry_after ? " (the server's Retry-After honoured)" : "");
    else
        alm__client_log(w->client, ALM_LOG_DEBUG, "watch: attempt %u failed: %s; next in %lu ms",
                        w->out.attempts, reason, pause);
    w->out.kind = kind;
    set_status(w, kind, reason);
    w->ask_now = true;
    w->next_at = now_plus_ms(pause);
    return 0;
}

/* Does what is due; returns the number of changes delivered (or queued, with manual dispatch). */
static int step(alm_watch *w)
{
    int changes = 0;
    if (w->stopped)
        return 0;
    if (w->busy) {
        alm_config *next = NULL;
        int rc = alm__client_async_step(w->client, &next);
        if (rc != ALM__INPROGRESS) {
            w->busy = false;
            changes += poll_ended(w, rc, next);
        }
    }
    /* A poll that could not even start (a token file gone, say) ends like a failed one. */
    for (int tries = 0; !w->busy && ms_until(&w->next_at) == 0 && tries < 2; tries++) {
        clock_gettime(CLOCK_MONOTONIC, &w->poll_began);
        const char *etag = w->ask_now ? NULL : alm_config_etag(w->latest);
        int rc = alm__client_async_poll_begin(w->client, etag, w->opts.poll_timeout_s);
        if (rc == 0)
            w->busy = true;
        else
            changes += poll_ended(w, rc, NULL);
    }
    heartbeat_check(w);
    return changes;
}

/* When step() is next due, in milliseconds from now; -1 for "only on activity". */
static long step_timeout(alm_watch *w)
{
    if (w->stopped)
        return -1;
    int64_t due = w->busy ? alm__client_async_timeout_ms(w->client) : ms_until(&w->next_at);
    pthread_mutex_lock(&w->lock);
    if (w->status == ALM_WATCH_FRESH) {
        int64_t heartbeat = (int64_t)w->opts.heartbeat_ms + 1 - elapsed_ms(&w->last_contact);
        if (heartbeat < 0)
            heartbeat = 0;
        if (due < 0 || heartbeat < due)
            due = heartbeat;
    }
    pthread_mutex_unlock(&w->lock);
    return due > LONG_MAX ? LONG_MAX : (long)due;
}

/* Polls the watch's descriptor for up to `timeout_ms` (-1: its own timeout), then steps. */
static int poll_and_step(alm_watch *w, long timeout_ms)
{
    struct pollfd fds[2] = {{.fd = w->loop_fd, .events = POLLIN},
                            {.fd = w->stop_pipe[0], .events = POLLIN}};
    long due = step_timeout(w);
    if (timeout_ms < 0 || (due >= 0 && due < timeout_ms))
        timeout_ms = due;
    if (timeout_ms > INT_MAX)
        timeout_ms = INT_MAX;
    poll(fds, w->stop_pipe[0] >= 0 ? 2 : 1, (int)timeout_ms);
    if (w->threaded && is_stopping(w))
        return 0;
    return step(w);
}

static void *watch_main(void *arg)
{
    alm_watch *w = arg;
    while (!is_stopping(w))
        poll_and_step(w, -1);
    return NULL;
}

/* What alm_watch_new and alm_watch_start share: a watch ready to step, no thread. */
static int watch_create(alm_watch **out, alm_client *client, alm_config *initial,
                        const alm_watch_options *opts, const char *fn, bool threaded)
{
    alm_watch *w = NULL;
    if (out == NULL || client == NULL || initial == NULL || opts == NULL)
        return alm__error_set(ALM_EINVALID, "%s: NULL argument", fn);
    *out = NULL;
    if (opts->version == 0 || opts->version > ALM_WATCH_OPTIONS_VERSION)
        return alm__error_set(ALM_EINVALID, "%s: unknown options version %u", fn, opts->version);
    if (opts->on_change == NULL)
        return alm__error_set(ALM_EINVALID, "%s: on_change is required", fn);
    if (opts->poll_timeout_s > 3600)
        return alm__error_set(ALM_EINVALID, "%s: poll timeout over 3600 s", fn);
    if (!threaded && opts->manual_dispatch)
        return alm__error_set(ALM_EINVALID, "%s: manual_dispatch is for alm_watch_start; "
                                            "alm_watch_new already runs every callback in "
                                            "alm_watch_perform", fn);
    if ((w = calloc(1, sizeof(*w))) == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    w->pipe_fd[0] = w->pipe_fd[1] = -1;
    w->stop_pipe[0] = w->stop_pipe[1] = -1;
    w->loop_fd = -1;
    w->queue_tail = &w->queue;
    w->threaded = threaded;
    w->client = client;
    /* Copy only what the caller's version has; the rest stays zero (defaults). */
    memcpy(&w->opts, opts,
           opts->version >= 2 ? sizeof(w->opts) : offsetof(alm_watch_options, on_status));
    if (w->opts.poll_timeout_s == 0)
        w->opts.poll_timeout_s = DEFAULT_POLL_TIMEOUT_S;
    if (w->opts.heartbeat_ms == 0)
        w->opts.heartbeat_ms = 3u * w->opts.poll_timeout_s * 1000u;
    w->current = alm_config_retain(initial);
    w->latest = alm_config_retain(initial);
    w->status = alm_config_is_stale(initial) ? ALM_WATCH_STALE : ALM_WATCH_FRESH;
    clock_gettime(CLOCK_MONOTONIC, &w->last_contact);
    clock_gettime(CLOCK_MONOTONIC, &w->next_at); /* the first poll is due at once */
    /* A stale start (from the cache) asks at once rather than waiting on a long-poll. */
    w->ask_now = alm_config_is_stale(initial) != 0;
    alm__client_watch_policy(client, &w->policy);

    pthread_condattr_t attr;
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->fresh, &attr);
    pthread_condattr_destroy(&attr);
    if (w->opts.manual_dispatch && pipe2(w->pipe_fd, O_CLOEXEC | O_NONBLOCK) < 0) {
        alm_watch_free(w);
        return alm__error_set(ALM_ERROR, "%s: cannot create a pipe: %s", fn, strerror(errno));
    }
    if (threaded && pipe2(w->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        alm_watch_free(w);
        return alm__error_set(ALM_ERROR, "%s: cannot create a pipe: %s", fn, strerror(errno));
    }
    int fd = alm__client_async_open(client);
    if (fd < 0) {
        alm_watch_free(w);
        return fd;
    }
    w->loop_fd = fd;
    if (w->opts.manual_dispatch)
        alm__client_set_log_sink(client, log_sink, w);
    *out = w;
    return 0;
}

int alm_watch_new(alm_watch **out, alm_client *client, alm_config *initial,
                  const alm_watch_options *opts)
{
    return watch_create(out, client, initial, opts, "alm_watch_new", false);
}

long alm_watch_timeout_ms(alm_watch *w)
{
    if (w == NULL || w->threaded)
        return -1;
    return step_timeout(w);
}

int alm_watch_perform(alm_watch *w)
{
    if (w == NULL || w->threaded)
        return alm__error_set(ALM_EINVALID, "alm_watch_perform: not a watch made by "
                                            "alm_watch_new");
    return step(w);
}

int alm_watch_start(alm_watch **out, alm_client *client, alm_config *initial,
                    const alm_watch_options *opts)
{
    alm_watch *w = NULL;
    int error = watch_create(&w, client, initial, opts, "alm_watch_start", true);
    if (error < 0)
        return error;
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

alm_watch_status alm_watch_get_status(alm_watch *w)
{
    if (w == NULL)
        return ALM_WATCH_FRESH;
    pthread_mutex_lock(&w->lock);
    alm_watch_status s = status_locked(w);
    pthread_mutex_unlock(&w->lock);
    return s;
}

int alm_watch_is_stale(alm_watch *w)
{
    return w != NULL && alm_watch_get_status(w) != ALM_WATCH_FRESH;
}

int alm_watch_wait_fresh(alm_watch *w, unsigned int timeout_ms)
{
    if (w == NULL)
        return alm__error_set(ALM_EINVALID, "alm_watch_wait_fresh: NULL watch");
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(timeout_ms / 1000);
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    if (!w->threaded) {
        /* Nothing else steps this watch: drive it here, on the caller's thread. */
        while (alm_watch_get_status(w) != ALM_WATCH_FRESH && !w->stopped) {
            int64_t left = ms_until(&until);
            if (left == 0)
                break;
            poll_and_step(w, (long)left);
        }
    }
    pthread_mutex_lock(&w->lock);
    alm_watch_status s = status_locked(w);
    while (s != ALM_WATCH_FRESH && w->threaded) {
        if (pthread_cond_timedwait(&w->fresh, &w->lock, &until) == ETIMEDOUT) {
            s = status_locked(w);
            break;
        }
        s = status_locked(w);
    }
    pthread_mutex_unlock(&w->lock);
    if (s == ALM_WATCH_FRESH)
        return 0;
    return alm__error_set(ALM_ETIMEOUT, "the watch is not fresh after %u ms: %s", timeout_ms,
                          status_name(s));
}

void alm_watch_stop(alm_watch *w)
{
    if (w == NULL || w->stopped)
        return;
    if (w->started) {
        pthread_mutex_lock(&w->lock);
        w->stopping = true;
        pthread_mutex_unlock(&w->lock);
        ssize_t n = write(w->stop_pipe[1], "", 1);
        (void)n;
        pthread_join(w->thread, NULL);
        w->started = false;
    }
    w->stopped = true;
    w->busy = false;
    if (w->loop_fd >= 0) {
        /* Drops a poll in flight and gives the client back its blocking ways. */
        alm__client_async_close(w->client);
        w->loop_fd = -1;
    }
    alm__client_set_log_sink(w->client, NULL, NULL);
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
    if (w == NULL)
        return -1;
    if (w->opts.manual_dispatch)
        return w->pipe_fd[0];
    return w->threaded ? -1 : w->loop_fd;
}

int alm_watch_dispatch(alm_watch *w)
{
    char sink[64];
    if (w == NULL || !w->opts.manual_dispatch)
        return alm__error_set(ALM_EINVALID, "alm_watch_dispatch: not a manual-dispatch watch");
    /* Drain first: an event queued after this read leaves a byte for the next wake-up. */
    while (read(w->pipe_fd[0], sink, sizeof(sink)) > 0)
        ;
    pthread_mutex_lock(&w->lock);
    pending *list = w->queue;
    w->queue = NULL;
    w->queue_tail = &w->queue;
    w->queued_log_lines = 0;
    unsigned long dropped = w->dropped_log_lines;
    w->dropped_log_lines = 0;
    pthread_mutex_unlock(&w->lock);

    int count = 0;
    for (pending *p = list; p != NULL; p = p->next) {
        if (p->kind == EV_LOG) {
            alm__client_log_deliver(w->client, (alm_log_level)p->level, p->text);
        } else if (p->kind == EV_STATUS) {
            w->opts.on_status((alm_watch_status)p->level, p->text, w->opts.payload);
        } else {
            pthread_mutex_lock(&w->lock);
            alm_config *prev = w->current;
            w->current = alm_config_retain(p->new_cfg);
            pthread_mutex_unlock(&w->lock);
            alm_config_free(prev);
            alm_diff diff = {p->diff.added,    p->diff.nadded,  p->diff.changed,
                             p->diff.nchanged, p->diff.removed, p->diff.nremoved};
            w->opts.on_change(p->old_cfg, p->new_cfg, &diff, w->opts.payload);
            count++;
        }
    }
    if (dropped > 0) {
        char line[128];
        snprintf(line, sizeof(line), "watch: %lu log lines dropped between two dispatches",
                 dropped);
        alm__client_log_deliver(w->client, ALM_LOG_WARN, line);
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
    if (w->stop_pipe[0] >= 0)
        close(w->stop_pipe[0]);
    if (w->stop_pipe[1] >= 0)
        close(w->stop_pipe[1]);
    alm_config_free(w->current);
    alm_config_free(w->latest);
    pthread_cond_destroy(&w->fresh);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
