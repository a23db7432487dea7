/*
 * watch — boot, then follow changes: the configuration is fetched once, then a libalmanac
 * watch thread long-polls the server and calls back with each new snapshot and what changed.
 * The program keeps its live configuration behind a small lock that request threads would take
 * just long enough to alm_config_retain the current snapshot, as a real service would.
 *
 *   cc watch.c $(pkg-config --cflags --libs almanac) -lpthread -o watch
 *   ALMANAC_SERVER=http://config:8888 ./watch orders prod
 *
 * Runs until interrupted (Ctrl-C).
 */
#include <almanac.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static alm_config *live; /* what the rest of the program reads */

/* What a request handler would do: take a reference, read, drop it. */
static alm_config *live_config(void)
{
    pthread_mutex_lock(&live_lock);
    alm_config *cfg = alm_config_retain(live);
    pthread_mutex_unlock(&live_lock);
    return cfg;
}

static void on_change(const alm_config *old_cfg, const alm_config *new_cfg, const alm_diff *diff,
                      void *payload)
{
    (void)payload;
    /* Swap the live pointer first; readers holding the old snapshot keep it until they drop
     * it. Then report. */
    alm_config *next = alm_config_retain(new_cfg);
    pthread_mutex_lock(&live_lock);
    alm_config *prev = live;
    live = next;
    pthread_mutex_unlock(&live_lock);
    alm_config_free(prev);
    printf("version %s -> %s\n", alm_config_version(old_cfg) ? alm_config_version(old_cfg) : "?",
           alm_config_version(new_cfg) ? alm_config_version(new_cfg) : "?");
    for (size_t i = 0; i < diff->added_count; i++)
        printf("  + %s\n", diff->added[i]);
    for (size_t i = 0; i < diff->changed_count; i++)
        printf("  ~ %s\n", diff->changed[i]);
    for (size_t i = 0; i < diff->removed_count; i++)
        printf("  - %s\n", diff->removed[i]);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    alm_client_options opts = ALM_CLIENT_OPTIONS_INIT;
    alm_watch_options wopts = ALM_WATCH_OPTIONS_INIT;
    alm_client *client = NULL;
    alm_config *config = NULL;
    alm_watch *watch = NULL;
    sigset_t stop;
    int sig = 0, status = EXIT_FAILURE;

    if (argc != 3) {
        fprintf(stderr, "usage: watch APP PROFILES\n");
        return 2;
    }
    /* Block the stop signals before any thread starts, so every thread inherits the mask. */
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    opts.server = getenv("ALMANAC_SERVER");
    opts.application = argv[1];
    opts.profiles = argv[2];
    if (alm_client_new(&client, &opts) < 0 || alm_client_fetch(&config, client) < 0)
        goto fail;
    live = alm_config_retain(config);
    printf("booted on version %s\n", alm_config_version(config) ? alm_config_version(config) : "?");
    fflush(stdout);

    wopts.on_change = on_change;
    if (alm_watch_start(&watch, client, config, &wopts) < 0)
        goto fail;

    sigwait(&stop, &sig);
    alm_config *now = live_config();
    printf("stopping on version %s (%s)\n", alm_config_version(now) ? alm_config_version(now) : "?",
           alm_watch_is_stale(watch) ? "stale" : "fresh");
    alm_config_free(now);
    status = EXIT_SUCCESS;
    goto out;
fail:
    fprintf(stderr, "watch: %s\n", alm_error_last()->message);
out:
    alm_watch_free(watch); /* before the client it uses */
    alm_config_free(config);
    alm_config_free(live);
    alm_client_free(client);
    return status;
}
