/*
 * watch_libuv — follow configuration changes from a libuv event loop, with no thread of the
 * library's: a uv_poll_t watches alm_watch_fd() for reading, a uv_timer_t is re-armed with
 * alm_watch_timeout_ms() after each alm_watch_perform(), and a uv_signal_t ends the loop.
 * Callbacks run inside alm_watch_perform(), on the loop's thread (counted below to show it).
 *
 *   cc watch_libuv.c $(pkg-config --cflags --libs almanac libuv) -o watch_libuv
 *   ALMANAC_SERVER=http://config:8888 ./watch_libuv orders prod
 *
 * Runs until interrupted (Ctrl-C or SIGTERM).
 */
#include <almanac.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

static alm_watch *watch;
static alm_config *live; /* only the loop's thread touches it */
static pthread_t loop_thread;
static unsigned long callbacks, elsewhere;
static uv_poll_t watch_poll;
static uv_timer_t watch_timer;
static uv_signal_t sigint, sigterm;

static void count_callback(void)
{
    callbacks++;
    if (!pthread_equal(pthread_self(), loop_thread))
        elsewhere++;
}

static const char *version_of(const alm_config *cfg)
{
    return alm_config_version(cfg) ? alm_config_version(cfg) : "?";
}

static void on_change(const alm_config *old_cfg, const alm_config *new_cfg, const alm_diff *diff,
                      void *payload)
{
    (void)payload;
    count_callback();
    alm_config_free(live);
    live = alm_config_retain(new_cfg);
    printf("version %s -> %s\n", version_of(old_cfg), version_of(new_cfg));
    for (size_t i = 0; i < diff->added_count; i++)
        printf("  + %s\n", diff->added[i]);
    for (size_t i = 0; i < diff->changed_count; i++)
        printf("  ~ %s\n", diff->changed[i]);
    for (size_t i = 0; i < diff->removed_count; i++)
        printf("  - %s\n", diff->removed[i]);
    fflush(stdout);
}

static void on_log(alm_log_level level, const char *message, void *payload)
{
    (void)payload;
    count_callback();
    fprintf(stderr, "watch_libuv: [%d] %s\n", (int)level, message);
}

static void on_timer(uv_timer_t *timer);

/* Runs the watch's pending work, then tells libuv when it is next due. */
static void perform_and_rearm(void)
{
    alm_watch_perform(watch);
    long timeout = alm_watch_timeout_ms(watch);
    if (timeout < 0)
        uv_timer_stop(&watch_timer);
    else
        uv_timer_start(&watch_timer, on_timer, (uint64_t)timeout, 0);
}

static void on_timer(uv_timer_t *timer)
{
    (void)timer;
    perform_and_rearm();
}

static void on_readable(uv_poll_t *handle, int status, int events)
{
    (void)handle;
    (void)status;
    (void)events;
    perform_and_rearm();
}

static void on_signal(uv_signal_t *handle, int signum)
{
    (void)signum;
    /* Closing every handle lets uv_run return. */
    uv_close((uv_handle_t *)&watch_poll, NULL);
    uv_close((uv_handle_t *)&watch_timer, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    (void)handle;
}

int main(int argc, char **argv)
{
    alm_client_options opts = ALM_CLIENT_OPTIONS_INIT;
    alm_watch_options wopts = ALM_WATCH_OPTIONS_INIT;
    alm_client *client = NULL;
    alm_config *config = NULL;
    uv_loop_t *loop = uv_default_loop();
    int status = EXIT_FAILURE;

    if (argc != 3) {
        fprintf(stderr, "usage: watch_libuv APP PROFILES\n");
        return 2;
    }
    loop_thread = pthread_self();
    opts.server = getenv("ALMANAC_SERVER");
    opts.application = argv[1];
    opts.profiles = argv[2];
    opts.log_cb = on_log;
    if (alm_client_new(&client, &opts) < 0 || alm_client_fetch(&config, client) < 0)
        goto fail;
    live = alm_config_retain(config);
    printf("booted on version %s\n", version_of(config));
    fflush(stdout);

    wopts.on_change = on_change;
    if (alm_watch_new(&watch, client, config, &wopts) < 0)
        goto fail;
    uv_poll_init(loop, &watch_poll, alm_watch_fd(watch));
    uv_poll_start(&watch_poll, UV_READABLE, on_readable);
    uv_timer_init(loop, &watch_timer);
    uv_timer_start(&watch_timer, on_timer, (uint64_t)alm_watch_timeout_ms(watch), 0);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_run(loop, UV_RUN_DEFAULT);

    printf("stopping on version %s (%s); %lu callbacks, %lu off the loop thread\n",
           version_of(live), alm_watch_is_stale(watch) ? "stale" : "fresh", callbacks, elsewhere);
    status = EXIT_SUCCESS;
    goto out;
fail:
    fprintf(stderr, "watch_libuv: %s\n", alm_error_last()->message);
out:
    alm_watch_free(watch); /* before the client it uses */
    alm_config_free(config);
    alm_config_free(live);
    alm_client_free(client);
    uv_loop_close(loop);
    return status;
}
