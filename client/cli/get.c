/*
 * get — `almanac get APP PROFILES [--format F] [--key KEY]`: one fetch, printed in the chosen
 * format (the merged view, most specific source winning), or the text of one key.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { OPT_FORMAT = CLI_OPT_COMMAND_BASE, OPT_KEY, OPT_EXPLAIN, OPT_RAW };

static void help(const char *command)
{
    (void)command;
    printf("usage: almanac get APP PROFILES [--label L] [--format F] [--key KEY | --explain KEY] [options]\n\n"
           "Fetches the configuration of application APP for the comma-separated PROFILES and\n"
           "prints it merged, the most specific property source winning for each key.\n\n"
           "  --format F   properties (default), yaml, json or env (FOO_BAR_0=value lines)\n"
           "  --key KEY    print only the value of KEY (exit code 3 when it is absent)\n"
           "  --explain KEY  why KEY has its value: the file, line, column, commit and profile\n"
           "               layer that set it, and every lower layer it overrode\n"
           "  --raw        keep ${...} placeholders as written (by default they are resolved,\n"
           "               as in the server's /APP-PROFILES.yml documents)\n\n"
           "%s",
           cli_common_help);
}

typedef struct explain_state {
    const char *app;
    const char *profiles;
    const char *version;
    int printed;
} explain_state;

/*
 * The profile layer of a source name: "orders-prod.yml" -> "prod" when prod was asked for,
 * a "(document #N)" of a file -> that file's on-profile document; else the base layer.
 */
static void layer_of(char *buf, size_t size, const char *source, const explain_state *st)
{
    const char *base = strrchr(source, '/');
    base = base ? base + 1 : source;
    const char *doc = strstr(base, " (document #");
    size_t stem = strcspn(base, ".");
    char profiles[512];
    snprintf(profiles, sizeof(profiles), "%s", st->profiles);
    char *save = NULL;
    for (char *p = strtok_r(profiles, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        size_t plen = strlen(p);
        if (stem > plen + 1 && base[stem - plen - 1] == '-' &&
            strncmp(base + stem - plen, p, plen) == 0) {
            snprintf(buf, size, "profile %s%s", p, doc ? ", on-profile document" : "");
            return;
        }
    }
    snprintf(buf, size, "%s", doc ? "on-profile document" : "base (no profile)");
}

static int print_layer(const alm_config_layer *layer, void *payload)
{
    explain_state *st = payload;
    char layer_name[600];
    layer_of(layer_name, sizeof(layer_name), layer->source, st);
    char line[32] = "", column[32] = "";
    if (layer->origin != NULL)
        sscanf(layer->origin, "%31[0-9]:%31[0-9]", line, column);
    if (layer->wins) {
        printf("%s\n  set by   %s", layer->value, layer->source);
        if (line[0])
            printf(", line %s, column %s", line, column);
        printf("\n  commit   %s\n  layer    %s\n", st->version ? st->version : "(none: dir mode)",
               layer_name);
    } else {
        if (st->printed++ == 0)
            printf("  overrides\n");
        printf("    %s", layer->source);
        if (line[0])
            printf(", line %s, column %s", line, column);
        printf(" (%s): %s\n", layer_name, layer->value);
    }
    return 0;
}

/* --explain: the v2 answer keeps each value's origin; every source that sets key is shown. */
static int explain_key(alm_client *client, const char *key, const char *app, const char *profiles)
{
    alm_config *cfg = NULL;
    int error = alm_client_fetch_explained(&cfg, client);
    if (error < 0)
        return cli_fail(error, NULL);
    explain_state st = {app, profiles, alm_config_version(cfg), 0};
    printf("%s = ", key);
    if ((error = alm_config_layers(cfg, key, print_layer, &st)) < 0) {
        printf("(not set)\n");
        alm_config_free(cfg);
        return cli_fail(error, NULL);
    }
    alm_config_free(cfg);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
}

typedef struct get_options {
    cli_common *common;
    cli_format format;
    const char *key, *explain;
} get_options;

static int get_option(void *ctx, int opt, const char *arg)
{
    get_options *o = ctx;
    if (opt == OPT_FORMAT) {
        if (cli_parse_format(&o->format, arg) < 0)
            return cli_usage_error("get", "unknown format '%s' (json, yaml, properties, env)",
                                   arg);
    } else if (opt == OPT_KEY) {
        o->key = arg;
    } else if (opt == OPT_EXPLAIN) {
        o->explain = arg;
    } else if (opt == OPT_RAW) {
        o->common->keep_placeholders = 1;
    }
    return CLI_OPTION_TAKEN;
}

static const struct option get_flags[] = {
    {"format", required_argument, NULL, OPT_FORMAT},
    {"key", required_argument, NULL, OPT_KEY},
    {"explain", required_argument, NULL, OPT_EXPLAIN},
    {"raw", no_argument, NULL, OPT_RAW},
    {NULL, 0, NULL, 0}};

int cli_cmd_get(int argc, char **argv)
{
    cli_common common;
    get_options o = {.common = &common, .format = CLI_FORMAT_PROPERTIES};
    alm_client *client = NULL;
    alm_config *cfg = NULL;
    int rc = CLI_EXIT_OK;

    cli_command cmd = {"get", get_flags, get_option, &o, help};
    if ((rc = cli_parse_options(&cmd, &common, argc, argv)) >= 0)
        return rc;
    rc = CLI_EXIT_OK;
    const char *key = o.key, *explain = o.explain;
    cli_format format = o.format;
    if (argc - optind != 2)
        return cli_usage_error("get", "expected APP and PROFILES, got %d argument(s)",
                               argc - optind);

    if ((rc = cli_client_new(&client, &common, argv[optind], argv[optind + 1], 0)) != 0)
        goto out;
    if (explain != NULL) {
        rc = explain_key(client, explain, argv[optind], argv[optind + 1]);
        goto out;
    }
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
        /* On a terminal a final newline keeps the prompt off the last line. */
        rc = isatty(STDOUT_FILENO) ? cli_render(stdout, cfg, format)
                                   : cli_render_document(stdout, cfg, format);
    }
out:
    alm_config_free(cfg);
    alm_client_free(client);
    return rc;
}
