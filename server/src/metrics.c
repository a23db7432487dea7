/*
 * metrics — process-wide counters, gauges and a request-duration histogram, rendered as
 * Prometheus text exposition (version 0.0.4) for GET /metrics.
 *
 * Every update is one or two relaxed atomic adds on fixed arrays, so request threads never
 * block each other. Durations are kept as integer nanoseconds, since C11 has no atomic add for
 * doubles. Label values come only from fixed sets — route names registered at start-up and a
 * short list of status codes — so the number of series is bounded whatever the traffic.
 *
 * This module does not serve HTTP or check who may read the metrics (routes and auth do), and
 * it does not measure anything itself: callers pass in what they timed.
 */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_ROUTES 32
#define ROUTE_NAME_MAX 48

static const unsigned status_codes[] = {200, 304, 400, 401, 403, 404, 405, 413, 429, 500, 503};
#define STATUS_COUNT (sizeof(status_codes) / sizeof(status_codes[0]))
#define STATUS_OTHER STATUS_COUNT /* one more slot for every other code */

/* Upper bounds (le) in seconds; a last slot past them counts what only +Inf holds. */
static const double bucket_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                       0.1,    0.25,  0.5,    1,     2.5,  5,     10};
static const char *const bucket_labels[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01",
                                            "0.025",  "0.05",  "0.1",    "0.25",  "0.5",
                                            "1",      "2.5",   "5",      "10"};
#define BUCKET_COUNT (sizeof(bucket_bounds) / sizeof(bucket_bounds[0]))

typedef atomic_uint_least64_t counter;

typedef struct route_stats {
    counter by_status[STATUS_COUNT + 1];
    counter buckets[BUCKET_COUNT + 1]; /* not cumulative; summed when rendered */
    counter duration_ns;
} route_stats;

static struct {
    pthread_mutex_t register_lock; /* only metrics_route_id takes it, at start-up */
    atomic_int route_count;        /* names below it are complete (release/acquire) */
    char route_names[MAX_ROUTES][ROUTE_NAME_MAX];
    route_stats routes[MAX_ROUTES];
    counter cache_hits, cache_misses;
    counter snapshot_ok, snapshot_failed, snapshot_ns;
    counter fetch_ok, fetch_failed, fetch_timeout, fetch_ns;
    counter commits_verified, commits_refused;
    counter bus_published, bus_received, bus_failed;
    counter refresh_immediate, refresh_coalesced;
    counter last_fetch_ok; /* bits of a double: a gauge is only ever stored whole */
    atomic_long watchers;
    atomic_long watchers_max;
    atomic_long broken_files;
    counter stale_answers;
    counter repair_ok, repair_failed;
    counter repack_ok, repack_failed;
    counter start_time; /* bits of a double */
} m = {.register_lock = PTHREAD_MUTEX_INITIALIZER};

static void add(counter *c, uint_least64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint_least64_t get(counter *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* Seconds to nanoseconds, with NaN, negatives and absurd values clamped. */
static uint_least64_t to_ns(double seconds)
{
    if (!(seconds > 0))
        return 0;
    if (seconds > 1e9) /* some 31 years: nothing we time takes that long */
        seconds = 1e9;
    return (uint_least64_t)(seconds * 1e9);
}

static void store_double(counter *c, double value)
{
    uint_least64_t bits = 0;
    _Static_assert(sizeof(double) <= sizeof(bits), "a double fits 64 bits");
    memcpy(&bits, &value, sizeof(value));
    atomic_store_explicit(c, bits, memory_order_relaxed);
}

static double load_double(counter *c)
{
    uint_least64_t bits = atomic_load_explicit(c, memory_order_relaxed);
    double value;
    memcpy(&value, &bits, sizeof(value));
    return value;
}

void metrics_init(void)
{
    /* Called once before any request thread starts, so plain resets are safe here. */
    pthread_mutex_lock(&m.register_lock);
    atomic_store(&m.route_count, 0);
    memset(m.route_names, 0, sizeof(m.route_names));
    for (size_t r = 0; r < MAX_ROUTES; r++) {
        for (size_t i = 0; i <= STATUS_COUNT; i++)
            atomic_store(&m.routes[r].by_status[i], 0);
        for (size_t i = 0; i <= BUCKET_COUNT; i++)
            atomic_store(&m.routes[r].buckets[i], 0);
        atomic_store(&m.routes[r].duration_ns, 0);
    }
    counter *scalars[] = {&m.cache_hits,    &m.cache_misses,  &m.snapshot_ok,
                          &m.snapshot_failed, &m.snapshot_ns, &m.fetch_ok,
                          &m.fetch_failed,  &m.fetch_timeout, &m.fetch_ns,
                          &m.bus_published, &m.bus_received, &m.bus_failed,
                          &m.refresh_immediate, &m.refresh_coalesced};
    for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++)
        atomic_store(scalars[i], 0);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    store_double(&m.last_fetch_ok, 0);
    atomic_store(&m.watchers, 0);
    store_double(&m.start_time, (double)now.tv_sec + (double)now.tv_nsec / 1e9);
    pthread_mutex_unlock(&m.register_lock);
}

int metrics_route_id(const char *route_name)
{
    int id = -1;
    if (route_name == NULL || route_name[0] == '\0' || strlen(route_name) >= ROUTE_NAME_MAX)
        return -1;
    pthread_mutex_lock(&m.register_lock);
    int count = atomic_load_explicit(&m.route_count, memory_order_relaxed);
    for (int i = 0; i < count; i++) {
        if (strcmp(m.route_names[i], route_name) == 0) {
            id = i;
            goto out;
        }
    }
    if (count < MAX_ROUTES) {
        strcpy(m.route_names[count], route_name);
        atomic_store_explicit(&m.route_count, count + 1, memory_order_release);
        id = count;
    }
out:
    pthread_mutex_unlock(&m.register_lock);
    return id;
}

void metrics_request(int route_id, unsigned status, double seconds)
{
    if (route_id < 0 || route_id >= atomic_load_explicit(&m.route_count, memory_order_relaxed))
        return;
    route_stats *r = &m.routes[route_id];
    size_t slot = STATUS_OTHER;
    for (size_t i = 0; i < STATUS_COUNT; i++) {
        if (status_codes[i] == status) {
            slot = i;
            break;
        }
    }
    add(&r->by_status[slot], 1);

    size_t b = 0;
    while (b < BUCKET_COUNT && !(seconds <= bucket_bounds[b]))
        b++;
    if (isnan(seconds) || seconds < 0)
        b = 0; /* a clock that went backwards: count it as instant, like to_ns */
    add(&r->buckets[b], 1);
    add(&r->duration_ns, to_ns(seconds));
}

void metrics_response_cache(bool hit)
{
    add(hit ? &m.cache_hits : &m.cache_misses, 1);
}

void metrics_snapshot_build(bool ok, double seconds)
{
    add(ok ? &m.snapshot_ok : &m.snapshot_failed, 1);
    add(&m.snapshot_ns, to_ns(seconds));
}

void metrics_git_fetch(bool ok, double seconds)
{
    add(ok ? &m.fetch_ok : &m.fetch_failed, 1);
    add(&m.fetch_ns, to_ns(seconds));
}

void metrics_git_fetch_timeout(double seconds)
{
    add(&m.fetch_timeout, 1);
    add(&m.fetch_ns, to_ns(seconds));
}

void metrics_commit_verification(bool verified)
{
    add(verified ? &m.commits_verified : &m.commits_refused, 1);
}

void metrics_bus(metrics_bus_event what)
{
    add(what == METRICS_BUS_PUBLISHED  ? &m.bus_published
        : what == METRICS_BUS_RECEIVED ? &m.bus_received
                                       : &m.bus_failed,
        1);
}

void metrics_refresh_request(bool immediate)
{
    add(immediate ? &m.refresh_immediate : &m.refresh_coalesced, 1);
}

void metrics_set_last_fetch_ok(double unix_seconds)
{
    store_double(&m.last_fetch_ok, isfinite(unix_seconds) ? unix_seconds : 0);
}

void metrics_set_broken_files(long count)
{
    atomic_store_explicit(&m.broken_files, count, memory_order_relaxed);
}

void metrics_stale_answer(void)
{
    add(&m.stale_answers, 1);
}

void metrics_mirror_repair(bool ok)
{
    add(ok ? &m.repair_ok : &m.repair_failed, 1);
}

void metrics_repack(bool ok)
{
    add(ok ? &m.repack_ok : &m.repack_failed, 1);
}

void metrics_set_watchers_max(long count)
{
    atomic_store_explicit(&m.watchers_max, count, memory_order_relaxed);
}

void metrics_set_watchers(long count)
{
    atomic_store_explicit(&m.watchers, count, memory_order_relaxed);
}

/* Nanoseconds as seconds, exactly: integer part and nine decimals. */
static void print_seconds(FILE *f, uint_least64_t ns)
{
    fprintf(f, "%llu.%09llu", (unsigned long long)(ns / 1000000000u),
            (unsigned long long)(ns % 1000000000u));
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value as the exposition format wants it: \\, \" and \n escaped. */
static void print_label(FILE *f, const char *value)
{
    for (const char *p = value; *p != '\0'; p++) {
        if (*p == '\\' || *p == '"')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else
            fputc(*p, f);
    }
}

static void render_requests(FILE *f, int routes)
{
    family(f, "almanac_http_requests_total", "counter",
           "HTTP requests answered, by route and status code.");
    for (int r = 0; r < routes; r++) {
        for (size_t s = 0; s <= STATUS_COUNT; s++) {
            uint_least64_t n = get(&m.routes[r].by_status[s]);
            if (n == 0)
                continue;
            fputs("almanac_http_requests_total{route=\"", f);
            print_label(f, m.route_names[r]);
            if (s == STATUS_OTHER)
                fprintf(f, "\",code=\"other\"} %llu\n", (unsigned long long)n);
            else
                fprintf(f, "\",code=\"%u\"} %llu\n", status_codes[s], (unsigned long long)n);
        }
    }

    family(f, "almanac_http_request_duration_seconds", "histogram",
           "Time from the start of a request to its answer, by route.");
    for (int r = 0; r < routes; r++) {
        uint_least64_t slots[BUCKET_COUNT + 1], total = 0;
        /* One read of each slot, so the cumulative counts, +Inf and _count agree. */
        for (size_t b = 0; b <= BUCKET_COUNT; b++) {
            slots[b] = get(&m.routes[r].buckets[b]);
            total += slots[b];
        }
        if (total == 0)
            continue;
        uint_least64_t cumulative = 0;
        for (size_t b = 0; b <= BUCKET_COUNT; b++) {
            cumulative += slots[b];
            fputs("almanac_http_request_duration_seconds_bucket{route=\"", f);
            print_label(f, m.route_names[r]);
            fprintf(f, "\",le=\"%s\"} %llu\n", b < BUCKET_COUNT ? bucket_labels[b] : "+Inf",
                    (unsigned long long)cumulative);
        }
        fputs("almanac_http_request_duration_seconds_sum{route=\"", f);
        print_label(f, m.route_names[r]);
        fputs("\"} ", f);
        print_seconds(f, get(&m.routes[r].duration_ns));
        fputs("\nalmanac_http_request_duration_seconds_count{route=\"", f);
        print_label(f, m.route_names[r]);
        fprintf(f, "\"} %llu\n", (unsigned long long)total);
    }
}

static void render_counter(FILE *f, const char *name, const char *help, counter *c)
{
    family(f, name, "counter", help);
    fprintf(f, "%s %llu\n", name, (unsigned long long)get(c));
}

static void render_results(FILE *f, const char *name, const char *help, counter *ok,
                           counter *failed)
{
    family(f, name, "counter", help);
    fprintf(f, "%s{result=\"ok\"} %llu\n%s{result=\"failed\"} %llu\n", name,
            (unsigned long long)get(ok), name, (unsigned long long)get(failed));
}

static void render_seconds(FILE *f, const char *name, const char *help, uint_least64_t ns)
{
    family(f, name, "counter", help);
    fprintf(f, "%s ", name);
    print_seconds(f, ns);
    fputc('\n', f);
}

/* A unix time, to the millisecond, which is all a scrape every few seconds can use. */
static void render_timestamp(FILE *f, const char *name, const char *help, counter *c)
{
    family(f, name, "gauge", help);
    fprintf(f, "%s %.3f\n", name, load_double(c));
}

char *metrics_render(size_t *len)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (f == NULL)
        return NULL;

    int routes = atomic_load_explicit(&m.route_count, memory_order_acquire);
    render_requests(f, routes);
    render_counter(f, "almanac_response_cache_hits_total",
                   "Requests answered from the rendered-response cache.", &m.cache_hits);
    render_counter(f, "almanac_response_cache_misses_total",
                   "Requests that had to compose and render their answer.", &m.cache_misses);
    render_results(f, "almanac_snapshot_builds_total",
                   "Commits parsed into configuration snapshots, by result.", &m.snapshot_ok,
                   &m.snapshot_failed);
    render_seconds(f, "almanac_snapshot_build_seconds_total", "Time spent building snapshots.",
                   get(&m.snapshot_ns));
    render_results(f, "almanac_git_fetch_total", "Fetches from the remote repository, by result.",
                   &m.fetch_ok, &m.fetch_failed);
    fprintf(f, "almanac_git_fetch_total{result=\"timeout\"} %llu\n",
            (unsigned long long)get(&m.fetch_timeout));
    render_results(f, "almanac_mirror_reclones_total",
                   "The mirror found damaged (a pack, an index or a ref) and cloned again, by "
                   "result.", &m.repair_ok, &m.repair_failed);
    render_results(f, "almanac_git_repack_total",
                   "The mirror's packs merged into one, by result (failed: a full disk, say).",
                   &m.repack_ok, &m.repack_failed);
    family(f, "almanac_commit_verifications_total", "counter",
           "Commits whose SSH signature was checked (--verify-commits), by result; a refused "
           "commit is never served.");
    fprintf(f, "almanac_commit_verifications_total{result=\"verified\"} %llu\n"
               "almanac_commit_verifications_total{result=\"refused\"} %llu\n",
            (unsigned long long)get(&m.commits_verified),
            (unsigned long long)get(&m.commits_refused));
    family(f, "almanac_refresh_requests_total", "counter",
           "Requests to fetch (webhooks, peers, the bus), by whether they fetched at once or "
           "joined a fetch running or due.");
    fprintf(f, "almanac_refresh_requests_total{start=\"immediate\"} %llu\n"
               "almanac_refresh_requests_total{start=\"coalesced\"} %llu\n",
            (unsigned long long)get(&m.refresh_immediate),
            (unsigned long long)get(&m.refresh_coalesced));
    family(f, "almanac_bus_events_total", "counter",
           "Spring Cloud Bus events published, received from others (refresh events), and "
           "failed to publish (broker down or refusing).");
    fprintf(f, "almanac_bus_events_total{result=\"published\"} %llu\n"
               "almanac_bus_events_total{result=\"received\"} %llu\n"
               "almanac_bus_events_total{result=\"failed\"} %llu\n",
            (unsigned long long)get(&m.bus_published), (unsigned long long)get(&m.bus_received),
            (unsigned long long)get(&m.bus_failed));
    render_seconds(f, "almanac_git_fetch_seconds_total",
                   "Time spent fetching from the remote repository.", get(&m.fetch_ns));
    render_timestamp(f, "almanac_git_last_fetch_success_timestamp_seconds",
                     "Unix time of the last successful fetch; 0 if none yet.", &m.last_fetch_ok);
    family(f, "almanac_broken_files", "gauge",
           "Configuration files of the default label's commit that do not parse.");
    fprintf(f, "almanac_broken_files %ld\n",
            atomic_load_explicit(&m.broken_files, memory_order_relaxed));
    render_counter(f, "almanac_stale_answers_total",
                   "Answers composed from an earlier commit because a file they need is broken.",
                   &m.stale_answers);
    family(f, "almanac_watchers", "gauge", "Long-poll watch requests waiting for a change.");
    fprintf(f, "almanac_watchers %ld\n", atomic_load_explicit(&m.watchers, memory_order_relaxed));
    family(f, "almanac_watchers_max", "gauge",
           "Parked watchers allowed in all (--max-connections); beyond it new ones get 429.");
    fprintf(f, "almanac_watchers_max %ld\n",
            atomic_load_explicit(&m.watchers_max, memory_order_relaxed));
    render_timestamp(f, "process_start_time_seconds",
                     "Start time of the process since unix epoch in seconds.", &m.start_time);

    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(buf);
        return NULL;
    }
    if (len != NULL)
        *len = size;
    return buf;
}
