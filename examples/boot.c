/*
 * boot — the smallest useful libalmanac program: fetch the configuration once at startup,
 * fall back to the last good copy if the server is down, read a few typed values, exit.
 *
 *   cc boot.c $(pkg-config --cflags --libs almanac) -o boot
 *   ALMANAC_SERVER=http://config:8888 ./boot orders prod /var/cache/orders.json
 *
 * Prints every merged key with the property source it came from, then the typed lookups.
 */
#include <almanac.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static void log_to_stderr(alm_log_level level, const char *message, void *payload)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    (void)payload;
    if (level >= ALM_LOG_WARN)
        fprintf(stderr, "boot: %s: %s\n", names[level], message);
}

static int print_entry(const alm_config_entry *e, void *payload)
{
    (void)payload;
    printf("%s = %s    (%s)\n", e->key, e->value, e->source);
    return 0;
}

int main(int argc, char **argv)
{
    alm_client_options opts = ALM_CLIENT_OPTIONS_INIT;
    alm_client *client = NULL;
    alm_config *config = NULL;
    int status = EXIT_FAILURE;

    if (argc < 3) {
        fprintf(stderr, "usage: boot APP PROFILES [CACHE_FILE]\n");
        return 2;
    }
    opts.server = getenv("ALMANAC_SERVER"); /* NULL: http://127.0.0.1:8888 */
    opts.application = argv[1];
    opts.profiles = argv[2];
    opts.cache_file = argc > 3 ? argv[3] : NULL;
    opts.retry.max_attempts = 3;
    opts.log_cb = log_to_stderr;

    if (alm_client_new(&client, &opts) < 0 || alm_client_fetch(&config, client) < 0) {
        const alm_error *e = alm_error_last();
        fprintf(stderr, "boot: %s (%s)\n", e->message, alm_strerror(e->code));
        goto out;
    }
    printf("# %s/%s version %s%s\n", alm_config_application(config), alm_config_profiles(config),
           alm_config_version(config) ? alm_config_version(config) : "unknown",
           alm_config_is_stale(config) ? " (stale: from the cache file)" : "");
    alm_config_foreach(config, print_entry, NULL);

    /* Typed lookups with defaults: a missing key leaves the default in place. */
    int64_t port = 8080;
    int debug = 0;
    if (alm_config_get_int64(&port, config, "server.port") < 0 &&
        alm_error_last()->code != ALM_ENOTFOUND)
        fprintf(stderr, "boot: %s\n", alm_error_last()->message);
    if (alm_config_get_bool(&debug, config, "debug") < 0 && alm_error_last()->code != ALM_ENOTFOUND)
        fprintf(stderr, "boot: %s\n", alm_error_last()->message);
    printf("# server.port=%" PRId64 " debug=%s\n", port, debug ? "true" : "false");
    status = EXIT_SUCCESS;
out:
    alm_config_free(config);
    alm_client_free(client);
    return status;
}
