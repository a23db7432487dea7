/*
 * get — `almanac get APP PROFILES [--format F] [--key KEY]`: one fetch, printed in the chosen
 * format (the merged view, most specific source winning), or the text of one key.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

enum { OPT_FORMAT = CLI_OPT_COMMAND_BASE, OPT_KEY };

static void help(void)
{
    printf("usage: almanac get APP PROFILES [--label L] [--format F] [--key KEY] [options]\n\n"
           "Fetches the configuration of application APP for the comma-separated PROFILES and\n"
           "prints it merged, the most specific property source winning for each key.\n\n"
           "  --format F   properties (default), yaml, json or env (FOO_BAR_0=value lines)\n"
           "  --key KEY    print only the value of KEY (exit code 3 when it is absent)\n\n"
           "%s",
           cli_common_help);
}

int cli_cmd_get(int argc, char **argv)
{
    static const struct option options[] = {{"format", required_argument, NULL, OPT_FORMAT},
                                            {"key", required_argument, NULL, OPT_KEY},
                                            CLI_COMMON_LONG_OPTIONS,
                                            {NULL, 0, NULL, 0}};
    cli_common common;
    cli_format format = CLI_FORMAT_PROPERTIES;
    const char *key = NULL;
    alm_client *client = NULL;
    alm_config *cfg = NULL;
    int rc = CLI_EXIT_OK, opt;

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
                return cli_usage_error("get", "unknown format '%s' (json, yaml, properties, env)",
                                       optarg);
        } else if (opt == OPT_KEY) {
            key = optarg;
        } else if (opt == ':') {
            return cli_usage_error("get", "%s needs a value", argv[optind - 1]);
        } else {
            return cli_usage_error("get", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 2)
        return cli_usage_error("get", "expected APP and PROFILES, got %d argument(s)",
                               argc - optind);

    if ((rc = cli_client_new(&client, &common, argv[optind], argv[optind + 1], 0)) != 0)
        goto out;
    int error = alm_client_fetch(&cfg, client);
    if (error < 0) {
        rc = cli_fail(error, NULL);
        goto out;
    }
    cli_warn_if_stale(cfg, &common);
    if (key != NULL) {
        const char *value = NULL;
        if ((error = alm_config_get_string(&value, cfg, key)) < 0) {
            rc = cli_fail(error, NULL);
            goto out;
        }
        printf("%s\n", value);
        rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
    } else {
        rc = cli_render(stdout, cfg, format);
    }
out:
    alm_config_free(cfg);
    alm_client_free(client);
    return rc;
}
