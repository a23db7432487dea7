/*
 * watch — `almanac watch APP PROFILES`: prints the configuration once, then again each time the
 * server reports a new version (long-poll through alm_client_poll). Server outages are ridden
 * out with a capped backoff; only answers that will not change by waiting (auth, not found,
 * protocol) end the command.
 */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { OPT_FORMAT = CLI_OPT_COMMAND_BASE, OPT_WAIT, OPT_COUNT };

#define MAX_OUTAGE_PAUSE_S 30u

static void help(void)
{
    printf("usage: almanac watch APP PROFILES [--label L] [--format F] [options]\n\n"
           "Prints the configuration of APP for PROFILES, then again each time it changes on\n"
           "the server, until interrupted. Each version is printed in full: with the default\n"
           "json format that is one line per version.\n\n"
           "  --format F    json (default), yaml, properties or env\n"
           "  --wait S      seconds one long-poll waits on the server (default 60)\n"
           "  --count N     exit after printing N versions\n\n"
           "%s",
           cli_common_help);
}

static void pause_s(unsigned int s)
{
    struct timespec left = {(time_t)s, 0};
    while (nanosleep(&left, &left) < 0 && errno == EINTR)
        ;
}

static int retryable(int error)
{
    return error == ALM_ENETWORK || error == ALM_ETIMEOUT || error == ALM_ESERVER;
}

int cli_cmd_watch(int argc, char **argv)
{
    static const struct option options[] = {{"format", required_argument, NULL, OPT_FORMAT},
                                            {"wait", required_argument, NULL, OPT_WAIT},
                                            {"count", required_argument, NULL, OPT_COUNT},
                                            CLI_COMMON_LONG_OPTIONS,
                                            {NULL, 0, NULL, 0}};
    cli_common common;
    cli_format format = CLI_FORMAT_JSON;
    unsigned long wait_s = 60, count = 0, printed = 0;
    alm_client *client = NULL;
    alm_config *cfg = NULL;
    int rc = CLI_EXIT_OK, opt;
    char *end = NULL;

    cli_common_init(&common);
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        if (opt == CLI_OPT_HELP) {
            help();
            return CLI_EXIT_OK;
        }
        int handled = cli_common_option(&common, opt, optarg);
        if (handled < 0)
            return CLI_EXIT_USAGE;
        if (handled)
            continue;
        if (opt == OPT_FORMAT) {
            if (cli_parse_format(&format, optarg) < 0)
                return cli_usage_error("watch", "unknown format '%s'", optarg);
        } else if (opt == OPT_WAIT || opt == OPT_COUNT) {
            errno = 0;
            unsigned long v = strtoul(optarg, &end, 10);
            if (errno != 0 || *end != '\0' || optarg[0] == '-' || v == 0 ||
                (opt == OPT_WAIT && v > 3600))
                return cli_usage_error("watch", "%s takes a positive number%s", argv[optind - 1],
                                       opt == OPT_WAIT ? " of seconds up to 3600" : "");
            *(opt == OPT_WAIT ? &wait_s : &count) = v;
        } else if (opt == ':') {
            return cli_usage_error("watch", "%s needs a value", argv[optind - 1]);
        } else {
            return cli_usage_error("watch", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 2)
        return cli_usage_error("watch", "expected APP and PROFILES, got %d argument(s)",
                               argc - optind);

    if ((rc = cli_client_new(&client, &common, argv[optind], argv[optind + 1])) != 0)
        goto out;
    int error = alm_client_fetch(&cfg, client);
    if (error < 0) {
        rc = cli_fail(error, NULL);
        goto out;
    }
    unsigned int outage_pause = 1;
    for (;;) {
        cli_warn_if_stale(cfg, &common);
        if ((rc = cli_render(stdout, cfg, format)) != CLI_EXIT_OK)
            goto out;
        if (count != 0 && ++printed >= count)
            goto out;
        if (alm_config_etag(cfg) == NULL) {
            fprintf(stderr, "almanac: the server sent no ETag, so it cannot be watched; use "
                            "'almanac get' instead\n");
            rc = CLI_EXIT_PROTOCOL;
            goto out;
        }
        alm_config *next = NULL;
        for (;;) {
            error = alm_client_poll(&next, client, alm_config_etag(cfg), (unsigned int)wait_s);
            if (error == 0 && next != NULL &&
                strcmp(alm_config_etag(next) ? alm_config_etag(next) : "",
                       alm_config_etag(cfg)) != 0)
                break;
            alm_config_free(next);
            next = NULL;
            if (error == 0) {
                outage_pause = 1;
                continue;
            }
            if (!retryable(error)) {
                rc = cli_fail(error, NULL);
                goto out;
            }
            fprintf(stderr, "almanac: warning: %s; retrying in %u s\n", alm_error_last()->message,
                    outage_pause);
            pause_s(outage_pause);
            outage_pause = outage_pause * 2 > MAX_OUTAGE_PAUSE_S ? MAX_OUTAGE_PAUSE_S
                                                                 : outage_pause * 2;
        }
        alm_config_free(cfg);
        cfg = next;
    }
out:
    alm_config_free(cfg);
    alm_client_free(client);
    return rc;
}
