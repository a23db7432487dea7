/*
 * watch_poll — follow configuration changes from a program's own poll(2) loop, with no thread
 * of the library's: the watch gives a descriptor and a timeout, the loop waits on them beside
 * its other descriptors (here a signalfd for Ctrl-C), and alm_watch_perform() does the work.
 * Every callback runs inside alm_watch_perform(), on this one thread, so the program needs no
 * lock around its configuration; the example counts any callback that did not, to show it.
 *
 *   cc watch_poll.c $(pkg-config --cflags --libs almanac) -o watch_poll
 *   ALMANAC_SERVER=http://config:8888 ./watch_poll orders prod
 *
 * Runs until interrupted (Ctrl-C or SIGTERM).
 */
#include <almanac.h>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <unistd.h>

static alm_config *live; /* the configuration the program uses; only this thread touches it */
static pthread_t loop_thread;
static unsigned long callbacks, elsewhere;

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

static void on_status(alm_watch_status status, const char *reason, void *payload)
{
    (void)payload;
    count_callback();
    fprintf(stderr, "watch_poll: status %d: %s\n", (int)status, reason);
}

static void on_log(alm_log_level level, const char *message, void *payload)
{
    (void)payload;
    count_callback();
    fprintf(stderr, "watch_poll: [%d] %s\n", (int)level, message);
}

int main(int argc, char **argv)
{
    alm_client_options opts = ALM_CLIENT_OPTIONS_INIT;
    alm_watch_options wopts = ALM_WATCH_OPTIONS_INIT;
    alm_client *client = NULL;
    alm_config *config = NULL;
    alm_watch *watch = NULL;
    int status = EXIT_FAILURE, sigfd = -1;
    sigset_t stop;

    if (argc != 3) {
        fprintf(stderr, "usage: watch_poll APP PROFILES\n");
        return 2;
    }
    loop_thread = pthread_self();
    /* Ctrl-C and SIGTERM arrive as readable data on a descriptor of the loop. */
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    if ((sigfd = signalfd(-1, &stop, SFD_CLOEXEC)) < 0) {
        perror("signalfd");
        return EXIT_FAILURE;
    }

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
    wopts.on_status = on_status;
    if (alm_watch_new(&watch, client, config, &wopts) < 0)
        goto fail;

    for (;;) {
        struct pollfd fds[2] = {{.fd = alm_watch_fd(watch), .events = POLLIN},
                                {.fd = sigfd, .events = POLLIN}};
        long timeout = alm_watch_timeout_ms(watch);
        if (poll(fds, 2, timeout > 60000 ? 60000 : (int)timeout) < 0)
            continue; /* EINTR */
        if (fds[1].revents & POLLIN)
            break;
        /* Readable or timed out: either way the watch has work (a spurious call is harmless). */
        alm_watch_perform(watch);
    }
    printf("stopping on version %s (%s); %lu callbacks, %lu off the loop thread\n",
           version_of(live), alm_watch_is_stale(watch) ? "stale" : "fresh", callbacks, elsewhere);
    status = EXIT_SUCCESS;
    goto out;
fail:
    fprintf(stderr, "watch_poll: %s\n", alm_error_last()->message);
out:
    alm_watch_free(watch); /* before the client it uses */
    alm_config_free(config);
    alm_config_free(live);
    alm_client_free(client);
    close(sigfd);
    return status;
}
