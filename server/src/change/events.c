/*
 * events — GET /events, a Server-Sent Events stream of `refresh` events: one per new commit,
 * with the commit id and the applications whose files changed, numbered so that a client
 * reconnecting with Last-Event-ID gets what it missed (from the last EVENTS_KEPT events).
 *
 * Subscribers are parked streams (http.c) woken on publish and every heartbeat interval. The
 * registry lock is never held while waking a stream: http.c calls our read callback with the
 * stream's lock held, and that callback takes the registry lock.
 */
#include "change/events.h"

#include "errors.h"
#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MODULE "events"
#define EVENTS_KEPT 64
#define EVENT_TEXT_MAX 65536

typedef struct event {
    unsigned long id;
    char *text; /* the whole SSE frame */
    size_t len;
} event;

typedef struct subscriber {
    struct event_hub *hub;
    response_stream_handle *stream;
    unsigned long last_id;   /* last event id delivered */
    unsigned long heartbeat; /* last heartbeat generation delivered */
    size_t partial;          /* bytes of the current frame already sent */
    bool hello_sent;
    struct subscriber *prev, *next;
} subscriber;

struct event_hub {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool thread_started;
    bool stopping;
    unsigned heartbeat_seconds;
    unsigned long heartbeat_generation;
    event ring[EVENTS_KEPT];
    unsigned long next_id; /* id of the next event published; ids start at 1 */
    subscriber *subscribers;
    size_t count;
    size_t max_subscribers;
};

static const event *find_event(const event_hub *hub, unsigned long id)
{
    const event *e = &hub->ring[id % EVENTS_KEPT];
    return e->text != NULL && e->id == id ? e : NULL;
}

/* Collects the streams to wake (retained) so they are woken without the registry lock. */
static response_stream_handle **collect_streams(event_hub *hub, size_t *count)
{
    response_stream_handle **streams = calloc(hub->count ? hub->count : 1, sizeof(*streams));
    size_t n = 0;
    for (subscriber *s = hub->subscribers; streams && s; s = s->next)
        streams[n++] = response_stream_retain(s->stream);
    *count = n;
    return streams;
}

static void wake_all(response_stream_handle **streams, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        response_stream_wake(streams[i]);
        response_stream_release(streams[i]);
    }
    free(streams);
}

static void *heartbeat_thread(void *arg)
{
    event_hub *hub = arg;
    pthread_mutex_lock(&hub->lock);
    while (!hub->stopping) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += (time_t)hub->heartbeat_seconds;
        int rc = 0;
        while (!hub->stopping && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&hub->wake, &hub->lock, &deadline);
        if (hub->stopping)
            break;
        hub->heartbeat_generation++;
        size_t count = 0;
        response_stream_handle **streams = collect_streams(hub, &count);
        pthread_mutex_unlock(&hub->lock);
        wake_all(streams, count);
        pthread_mutex_lock(&hub->lock);
    }
    pthread_mutex_unlock(&hub->lock);
    return NULL;
}

int event_hub_new(event_hub **out, unsigned heartbeat_seconds, size_t max_subscribers)
{
    event_hub *hub = calloc(1, sizeof(*hub));
    if (hub == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    hub->heartbeat_seconds = heartbeat_seconds ? heartbeat_seconds : 15;
    hub->max_subscribers = max_subscribers;
    hub->next_id = 1;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&hub->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0 || pthread_mutex_init(&hub->lock, NULL) != 0) {
        free(hub);
        return err_set(ERR_NOMEM, "cannot set up the event hub");
    }
    if (pthread_create(&hub->thread, NULL, heartbeat_thread, hub) != 0) {
        event_hub_free(hub);
        return err_set(ERR_INTERNAL, "cannot start the heartbeat thread");
    }
    hub->thread_started = true;
    *out = hub;
    return 0;
}

void event_hub_shutdown(event_hub *hub)
{
    if (hub == NULL)
        return;
    pthread_mutex_lock(&hub->lock);
    hub->stopping = true;
    pthread_cond_broadcast(&hub->wake);
    size_t count = 0;
    response_stream_handle **streams = collect_streams(hub, &count);
    pthread_mutex_unlock(&hub->lock);
    /* Woken streams see `stopping` and end, so no connection stays parked at daemon stop. */
    wake_all(streams, count);
    if (hub->thread_started) {
        pthread_join(hub->thread, NULL);
        hub->thread_started = false;
    }
}

void event_hub_free(event_hub *hub)
{
    if (hub == NULL)
        return;
    event_hub_shutdown(hub);
    for (size_t i = 0; i < EVENTS_KEPT; i++)
        free(hub->ring[i].text);
    pthread_cond_destroy(&hub->wake);
    pthread_mutex_destroy(&hub->lock);
    free(hub);
}

void event_hub_on_change(void *ctx, const change_notice *notice)
{
    if (notice->applications != NULL)
        event_hub_publish_change(ctx, notice->repository, notice->to, notice->applications,
                                 notice->files);
}

int event_hub_publish_refresh(event_hub *hub, const char *commit, const json_t *applications,
                              const json_t *files)
{
    return event_hub_publish_change(hub, NULL, commit, applications, files);
}

int event_hub_publish_change(event_hub *hub, const char *repository, const char *commit,
                             const json_t *applications, const json_t *files)
{
    json_t *data = json_pack("{s:s?, s:O}", "commit", commit && commit[0] ? commit : NULL,
                             "applications", applications);
    /* Only for another repository than the default: one repository's events read as before. */
    if (data != NULL && repository != NULL && repository[0] != '\0')
        json_object_set_new(data, "repository", json_string(repository));
    /* Only when there are some: a commit to configuration files reads as it always did. */
    if (data != NULL && files != NULL && json_array_size(files) > 0)
        json_object_set(data, "files", (json_t *)(uintptr_t)files);
    char *json = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    if (json == NULL)
        return err_set(ERR_NOMEM, "out of memory");

    pthread_mutex_lock(&hub->lock);
    unsigned long id = hub->next_id++;
    char *frame = NULL;
    int len = asprintf(&frame, "id: %lu\nevent: refresh\ndata: %s\n\n", id, json);
    free(json);
    if (len < 0 || (size_t)len > EVENT_TEXT_MAX) {
        free(frame);
        pthread_mutex_unlock(&hub->lock);
        return err_set(ERR_NOMEM, "event too large");
    }
    event *slot = &hub->ring[id % EVENTS_KEPT];
    free(slot->text);
    slot->id = id;
    slot->text = frame;
    slot->len = (size_t)len;
    size_t count = 0;
    response_stream_handle **streams = collect_streams(hub, &count);
    pthread_mutex_unlock(&hub->lock);
    wake_all(streams, count);
    return 0;
}

/* Copies as much of text (from the subscriber's partial offset) as fits. */
static long copy_frame(subscriber *s, const char *text, size_t len, char *buf, size_t max,
                       bool *complete)
{
    size_t left = len - s->partial;
    size_t n = left < max ? left : max;
    memcpy(buf, text + s->partial, n);
    s->partial += n;
    *complete = s->partial == len;
    if (*complete)
        s->partial = 0;
    return (long)n;
}

static long read_events(void *ctx, char *buf, size_t max)
{
    subscriber *s = ctx;
    event_hub *hub = s->hub;
    long n = 0;
    bool complete = false;
    pthread_mutex_lock(&hub->lock);
    if (hub->stopping) {
        n = -1;
        goto out;
    }
    if (!s->hello_sent) {
        /* Tells EventSource how long to wait before reconnecting, and flushes the headers. */
        static const char hello[] = "retry: 3000\n\n";
        n = copy_frame(s, hello, sizeof(hello) - 1, buf, max, &complete);
        s->hello_sent = complete;
        goto out;
    }
    unsigned long oldest = hub->next_id > EVENTS_KEPT ? hub->next_id - EVENTS_KEPT : 1;
    if (s->last_id + 1 < oldest)
        s->last_id = oldest - 1; /* missed more than we keep: resume from the oldest */
    if (s->last_id + 1 < hub->next_id) {
        const event *e = find_event(hub, s->last_id + 1);
        if (e == NULL) {
            s->last_id++;
            goto out;
        }
        n = copy_frame(s, e->text, e->len, buf, max, &complete);
        if (complete)
            s->last_id++;
        goto out;
    }
    if (s->heartbeat != hub->heartbeat_generation) {
        static const char beat[] = ": heartbeat\n\n";
        n = copy_frame(s, beat, sizeof(beat) - 1, buf, max, &complete);
        if (complete)
            s->heartbeat = hub->heartbeat_generation;
    }
out:
    pthread_mutex_unlock(&hub->lock);
    return n;
}

static void subscriber_closed(void *ctx)
{
    subscriber *s = ctx;
    event_hub *hub = s->hub;
    pthread_mutex_lock(&hub->lock);
    if (s->prev)
        s->prev->next = s->next;
    else if (hub->subscribers == s)
        hub->subscribers = s->next;
    if (s->next)
        s->next->prev = s->prev;
    hub->count--;
    pthread_mutex_unlock(&hub->lock);
    response_stream_release(s->stream);
    free(s);
}

int event_hub_subscribe(event_hub *hub, request *req, response *res)
{
    const char *last = request_header(req, "Last-Event-ID");
    unsigned long last_id = 0;
    if (last != NULL) {
        char *end = NULL;
        errno = 0;
        last_id = strtoul(last, &end, 10);
        if (errno != 0 || end == last || *end != '\0')
            return response_error(res, req, ERR_BAD_REQUEST, "Last-Event-ID must be a number");
    }
    subscriber *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return response_error(res, req, ERR_NOMEM, "out of memory");
    s->hub = hub;

    pthread_mutex_lock(&hub->lock);
    if (hub->stopping || hub->count >= hub->max_subscribers) {
        bool stopping = hub->stopping;
        pthread_mutex_unlock(&hub->lock);
        free(s);
        return response_error(res, req, stopping ? ERR_UNAVAILABLE : ERR_TOO_MANY,
                              stopping ? "server is shutting down" : "too many subscribers");
    }
    /* Without Last-Event-ID a client starts from now; with it, from just after that id. */
    s->last_id = last != NULL && last_id < hub->next_id ? last_id : hub->next_id - 1;
    s->heartbeat = hub->heartbeat_generation;
    if (response_stream(res, "text/event-stream", read_events, s, subscriber_closed,
                        &s->stream) != 0) {
        pthread_mutex_unlock(&hub->lock);
        free(s);
        return response_error(res, req, ERR_NOMEM, "out of memory");
    }
    s->next = hub->subscribers;
    if (hub->subscribers)
        hub->subscribers->prev = s;
    hub->subscribers = s;
    hub->count++;
    pthread_mutex_unlock(&hub->lock);
    return 0;
}

size_t event_hub_subscribers(event_hub *hub)
{
    pthread_mutex_lock(&hub->lock);
    size_t n = hub->count;
    pthread_mutex_unlock(&hub->lock);
    return n;
}
