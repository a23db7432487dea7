/*
 * watch_probe — drives alm_watch through its public API for test_watch_api.py: boots, starts a
 * watch, then obeys one command per line on stdin and answers one line on stdout:
 *   stale   — waits until alm_watch_is_stale() is 1      -> "stale"
 *   fresh   — waits until alm_watch_is_stale() is 0      -> "fresh"
 *   change  — waits for the next callback                -> "change <diff as JSON>"
 *   current — prints alm_watch_current()'s version       -> "current <version>"
 *   stop    — alm_watch_free() then exit 0                -> "stopped"
 *   stalecfg — whether the snapshot booted on is stale      -> "stalecfg 0|1"
 *   statuses N — waits for N on_status calls, prints them and forgets them
 *             -> "statuses fresh,unreachable,…"
 *   pending — manual dispatch: waits until alm_watch_fd() is readable, dispatches nothing
 *             -> "pending <version of alm_watch_current()>"
 *   waitfresh — alm_watch_wait_fresh(20 s)                  -> "waitfresh <return code>"
 *   threads — whether every callback and log line ran on the main thread (manual dispatch)
 *             -> "threads ok" or "threads wrong: <what>"
 * Each wait has a 20 s deadline ("timeout" and exit 1). Usage: watch_probe URL APP PROFILES
 * HEARTBEAT_MS POLL_S [CACHE_FILE]. With ALMANAC_PROBE_MANUAL=1 in the environment the watch
 * uses manual dispatch: "change" polls alm_watch_fd() and calls alm_watch_dispatch() on the
 * main thread, and the callbacks (on_change, on_status, log_cb at debug level) check that
 * they run there. With ALMANAC_PROBE_LOOP=1 the watch has no thread of the library's
 * (alm_watch_new): a loop thread of the probe's polls alm_watch_fd() with alm_watch_timeout_ms()
 * and calls alm_watch_perform(), the callbacks check that they run on that thread, and
 * "waitfresh" waits for the status instead (alm_watch_wait_fresh belongs to the loop's thread).
 * Every log line goes to stderr as "log LEVEL MESSAGE". The boot and the watch
 * retry quickly (50-200 ms); with ALMANAC_PROBE_WATCH_DEFAULTS=1 the watch keeps its defaults.
 */
#include "almanac.h"

#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static char *last_diff; /* JSON of the last diff not yet reported */
static int current_matches = 1;
static alm_watch *watch;
static int manual;
static pthread_t main_thread;
static int wrong_thread;
static char wrong_what[64];
static char statuses[1024];
static int loop_mode;
static int loop_running; /* under `lock`: callbacks must come from the loop thread */
static __thread int is_loop_thread;
static int loop_quit[2] = {-1, -1};

static void check_thread(const char *what)
{
    if (loop_mode && loop_running && !is_loop_thread && !wrong_thread) {
        wrong_thread = 1;
        snprintf(wrong_what, sizeof(wrong_what), "%s", what);
    }
    if (manual && !pthread_equal(pthread_self(), main_thread) && !wrong_thread) {
        wrong_thread = 1;
        snprintf(wrong_what, sizeof(wrong_what), "%s", what);
    }
}

static void on_status(alm_watch_status status, const char *reason, void *payload)
{
    static const char *const names[] = {"fresh", "stale", "unreachable", "auth_refused",
                                        "refused"};
    (void)payload;
    (void)reason;
    pthread_mutex_lock(&lock);
    check_thread("on_status");
    size_t used = strlen(statuses);
    snprintf(statuses + used, sizeof(statuses) - used, "%s%s", used ? "," : "",
             (unsigned)status < 5 ? names[status] : "?");
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

static void on_log(alm_log_level level, const char *message, void *payload)
{
    (void)payload;
    pthread_mutex_lock(&lock);
    check_thread("log_cb");
    fprintf(stderr, "log %d %s\n", (int)level, message);
    pthread_mutex_unlock(&lock);
}

static json_t *key_list(const char *const *keys, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(keys[i]));
    return a;
}

static void on_change(const alm_config *old_cfg, const alm_config *new_cfg, const alm_diff *diff,
                      void *payload)
{
    (void)payload;
    /* The library holds no lock here: reading the watch from the callback must work, and the
     * new snapshot must already be the current one. */
    alm_config *cur = alm_watch_current(watch);
    json_t *j =
        json_pack("{s:o, s:o, s:o, s:s?, s:s?}", "added", key_list(diff->added, diff->added_count),
                  "changed", key_list(diff->changed, diff->changed_count), "removed",
                  key_list(diff->removed, diff->removed_count), "old", alm_config_version(old_cfg),
                  "new", alm_config_version(new_cfg));
    pthread_mutex_lock(&lock);
    if (cur != new_cfg)
        current_matches = 0;
    check_thread("on_change");
    free(last_diff);
    last_diff = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    json_decref(j);
    alm_config_free(cur);
}

static int wait_until(int (*ready)(void))
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 20;
    pthread_mutex_lock(&lock);
    int ok = ready();
    while (!ok) {
        struct timespec tick;
        clock_gettime(CLOCK_REALTIME, &tick);
        if (tick.tv_sec >= deadline.tv_sec)
            break;
        tick.tv_nsec += 20000000L; /* re-check staleness, which has no event, every 20 ms */
        if (tick.tv_nsec >= 1000000000L) {
            tick.tv_sec++;
            tick.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&changed, &lock, &tick);
        ok = ready();
    }
    pthread_mutex_unlock(&lock);
    return ok;
}

static int is_stale(void)
{
    return alm_watch_is_stale(watch);
}

static int is_fresh(void)
{
    return !alm_watch_is_stale(watch);
}

static size_t want_statuses;

static int has_statuses(void)
{
    size_t n = statuses[0] != '\0';
    for (const char *p = statuses; *p; p++)
        n += *p == ',';
    return n >= want_statuses;
}

static int has_change(void)
{
    return last_diff != NULL;
}

/* Manual dispatch: the event loop a program would run, reduced to poll(2). */
static int dispatch_until_change(void)
{
    struct pollfd pfd = {.fd = alm_watch_fd(watch), .events = POLLIN};
    for (int waited = 0; waited < 20000 && last_diff == NULL; waited += 100) {
        if (poll(&pfd, 1, 100) > 0 && alm_watch_dispatch(watch) < 0)
            return 0;
    }
    return last_diff != NULL;
}

/* The event loop a program would run on a thread of its own, reduced to poll(2). */
static void *loop_main(void *arg)
{
    (void)arg;
    is_loop_thread = 1;
    for (;;) {
        struct pollfd fds[2] = {{.fd = alm_watch_fd(watch), .events = POLLIN},
                                {.fd = loop_quit[0], .events = POLLIN}};
        long timeout = alm_watch_timeout_ms(watch);
        poll(fds, 2, timeout > 60000 ? 60000 : (int)timeout);
        if (fds[1].revents & POLLIN)
            return NULL;
        alm_watch_perform(watch);
    }
}


int main(int argc, char **argv)
{
    alm_client_options opts = ALM_CLIENT_OPTIONS_INIT;
    alm_client *client = NULL;
    alm_config *cfg = NULL;
    char line[64];

    if (argc != 6 && argc != 7)
        return 2;
    opts.cache_file = argc == 7 ? argv[6] : NULL;
    opts.server = argv[1];
    opts.application = argv[2];
    opts.profiles = argv[3];
    opts.retry.initial_backoff_ms = 50;
    opts.retry.max_backoff_ms = 200;
    opts.retry.max_attempts = 2;
    /* Quick retries keep the tests short; the policy itself is tested against a real server. */
    alm_retry_policy watch_retry = {0, 50, 200, 2.0, -1};
    /* ALMANAC_PROBE_WATCH_DEFAULTS: the watch keeps its own default policy, whatever the boot's. */
    opts.watch_retry = getenv("ALMANAC_PROBE_WATCH_DEFAULTS") ? NULL : &watch_retry;
    opts.log_cb = on_log;
    opts.log_level = ALM_LOG_DEBUG;
    main_thread = pthread_self();
    if (alm_client_new(&client, &opts) < 0 || alm_client_fetch(&cfg, client) < 0) {
        printf("error %s\n", alm_error_last()->message);
        return 1;
    }
    alm_watch_options wopts = ALM_WATCH_OPTIONS_INIT;
    wopts.on_change = on_change;
    wopts.on_status = on_status;
    manual = getenv("ALMANAC_PROBE_MANUAL") != NULL;
    loop_mode = getenv("ALMANAC_PROBE_LOOP") != NULL;
    wopts.manual_dispatch = manual;
    wopts.heartbeat_ms = (unsigned int)atoi(argv[4]);
    wopts.poll_timeout_s = (unsigned int)atoi(argv[5]);
    pthread_t loop_thread;
    if (loop_mode) {
        if (alm_watch_new(&watch, client, cfg, &wopts) < 0 || pipe(loop_quit) < 0) {
            printf("error %s\n", alm_error_last()->message);
            return 1;
        }
        pthread_mutex_lock(&lock);
        loop_running = 1;
        pthread_mutex_unlock(&lock);
        pthread_create(&loop_thread, NULL, loop_main, NULL);
    } else if (alm_watch_start(&watch, client, cfg, &wopts) < 0) {
        printf("error %s\n", alm_error_last()->message);
        return 1;
    }
    int booted_stale = alm_config_is_stale(cfg);
    alm_config_free(cfg); /* the watch holds its own reference */
    if ((alm_watch_fd(watch) >= 0) != (manual || loop_mode)) {
        printf("error alm_watch_fd disagrees with manual_dispatch\n");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);

    int status = 0;
    while (status == 0 && fgets(line, sizeof(line), stdin) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (strcmp(line, "stale") == 0) {
            status = wait_until(is_stale) ? 0 : 1;
            printf("%s\n", status == 0 ? "stale" : "timeout");
        } else if (strcmp(line, "fresh") == 0) {
            status = wait_until(is_fresh) ? 0 : 1;
            printf("%s\n", status == 0 ? "fresh" : "timeout");
        } else if (strcmp(line, "change") == 0) {
            status = (manual ? dispatch_until_change() : wait_until(has_change)) ? 0 : 1;
            pthread_mutex_lock(&lock);
            printf("change %s%s%s%s\n", last_diff ? last_diff : "timeout",
                   current_matches ? "" : " (current mismatch)",
                   wrong_thread ? " (wrong thread) " : "", wrong_what);
            free(last_diff);
            last_diff = NULL;
            pthread_mutex_unlock(&lock);
        } else if (strncmp(line, "statuses ", 9) == 0) {
            /* The status is published before its callback runs: wait for the calls. */
            want_statuses = (size_t)atoi(line + 9);
            if (manual) {
                struct pollfd pfd = {.fd = alm_watch_fd(watch), .events = POLLIN};
                for (int waited = 0; waited < 20000 && !has_statuses(); waited += 100) {
                    if (poll(&pfd, 1, 100) > 0)
                        alm_watch_dispatch(watch);
                }
            } else {
                wait_until(has_statuses);
            }
            pthread_mutex_lock(&lock);
            printf("statuses %s\n", statuses);
            statuses[0] = '\0';
            pthread_mutex_unlock(&lock);
        } else if (strcmp(line, "pending") == 0) {
            struct pollfd pfd = {.fd = alm_watch_fd(watch), .events = POLLIN};
            int ready = poll(&pfd, 1, 20000);
            alm_config *cur = alm_watch_current(watch);
            printf("pending %s\n", ready <= 0                 ? "timeout"
                                   : alm_config_version(cur) ? alm_config_version(cur)
                                                             : "-");
            alm_config_free(cur);
        } else if (strcmp(line, "waitfresh") == 0 && loop_mode) {
            printf("waitfresh %d\n", wait_until(is_fresh) ? 0 : ALM_ETIMEOUT);
        } else if (strcmp(line, "waitfresh") == 0) {
            printf("waitfresh %d\n", alm_watch_wait_fresh(watch, 20000));
        } else if (strcmp(line, "threads") == 0) {
            pthread_mutex_lock(&lock);
            printf("threads %s%s\n", wrong_thread ? "wrong: " : "ok", wrong_what);
            pthread_mutex_unlock(&lock);
        } else if (strcmp(line, "stalecfg") == 0) {
            printf("stalecfg %d\n", booted_stale);
        } else if (strcmp(line, "current") == 0) {
            alm_config *cur = alm_watch_current(watch);
            printf("current %s\n", alm_config_version(cur) ? alm_config_version(cur) : "-");
            alm_config_free(cur);
        } else if (strcmp(line, "stop") == 0) {
            if (loop_mode) {
                /* The loop ends first: perform and free must not overlap. */
                ssize_t n = write(loop_quit[1], "", 1);
                (void)n;
                pthread_join(loop_thread, NULL);
                pthread_mutex_lock(&lock);
                loop_running = 0;
                pthread_mutex_unlock(&lock);
                loop_mode = 0;
            }
            alm_watch_free(watch);
            watch = NULL;
            printf("stopped\n");
            break;
        }
        fflush(stdout);
    }
    if (loop_mode) {
        ssize_t n = write(loop_quit[1], "", 1);
        (void)n;
        pthread_join(loop_thread, NULL);
    }
    alm_watch_free(watch);
    alm_client_free(client);
    free(last_diff);
    return status;
}
