/*
 * diff — `almanac diff APP PROFILES --from A --to B`: the effective change between two labels,
 * from a server (GET /diff) or, with --repo-dir, offline from a local clone (diff_offline.c).
 * Prints it as text, JSON or Markdown (for a pull-request comment); the exit code says whether
 * anything changed, as diff(1)'s does.
 */
#include "cli.h"
#include "diff_offline.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_FROM = CLI_OPT_COMMAND_BASE, OPT_TO, OPT_FORMAT, OPT_REPO_DIR, OPT_SEARCH_PATHS };

enum { EXIT_CHANGES = 1 };

typedef enum { OUT_TEXT, OUT_JSON, OUT_MARKDOWN } out_format;

static void help(const char *command)
{
    (void)command;
    printf("usage: almanac diff APP PROFILES --from A --to B [--format F] [options]\n"
           "       almanac diff [APP PROFILES] --repo-dir DIR --from A --to B [--format F]\n\n"
           "Prints the effective change of the configuration between two labels (commit ids,\n"
           "tags or branches): the keys added, removed and changed in the composed\n"
           "Environment, with the file, line and column that set each value.\n\n"
           "  --from A, --to B     the two labels (with --repo-dir, any Git revision: HEAD~1,\n"
           "                       origin/main)\n"
           "  --format F           text (default), json or markdown\n"
           "  --repo-dir DIR       offline, on a local clone, with the server's own composition\n"
           "                       code; without APP PROFILES, every application and profile\n"
           "                       the repository names. {cipher} values are compared as written\n"
           "                       and shown masked\n"
           "  --search-paths P     with --repo-dir: the server's --search-paths\n\n"
           "Exit codes: 0 no effective change, 1 changes, 2 or more: trouble (as listed in\n"
           "'almanac --help', with 'other error' reported as 2).\n\n"
           "%s",
           cli_common_help);
}

static char *value_text(const json_t *side)
{
    const json_t *value = json_object_get(side, "value");
    if (json_is_string(value))
        return strdup(json_string_value(value));
    return json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
}

/* "orders-prod.yml:12:3" from the side's source name (after the repository URI) and origin. */
static void where(char *buf, size_t size, const json_t *side, const char *uri_prefix)
{
    const char *source = json_string_value(json_object_get(side, "source"));
    const char *origin = json_string_value(json_object_get(side, "origin"));
    if (source == NULL) {
        snprintf(buf, size, "?");
        return;
    }
    size_t plen = uri_prefix ? strlen(uri_prefix) : 0;
    if (plen > 0 && strncmp(source, uri_prefix, plen) == 0 && source[plen] == '/')
        source += plen + 1;
    snprintf(buf, size, "%s%s%s", source, origin ? ":" : "", origin ? origin : "");
}

/* The repository URI all source names start with ("file:///…/remote"): the longest common
 * prefix up to a '/', so that lines show repository-relative paths. */
static char *common_uri(const json_t *environments)
{
    char *prefix = NULL;
    size_t i, j;
    json_t *env, *entry;
    const char *lists[] = {"added", "removed", "changed"};
    json_array_foreach(environments, i, env)
    {
        for (size_t l = 0; l < 3; l++) {
            json_array_foreach(json_object_get(env, lists[l]), j, entry)
            {
                const char *sides[] = {"from", "to"};
                for (size_t s = 0; s < 2; s++) {
                    const char *src = json_string_value(
                        json_object_get(json_object_get(entry, sides[s]), "source"));
                    if (src == NULL)
                        continue;
                    if (prefix == NULL) {
                        const char *slash = strrchr(src, '/');
                        prefix = strndup(src, slash ? (size_t)(slash - src) : 0);
                        continue;
                    }
                    size_t n = 0;
                    while (prefix[n] && prefix[n] == src[n])
                        n++;
                    while (n > 0 && prefix[n] != '\0' && prefix[n] != '/')
                        n--;
                    prefix[n] = '\0';
                }
            }
        }
    }
    return prefix;
}

static void print_entries(FILE *out, const json_t *env, out_format format, const char *uri)
{
    static const struct {
        const char *list;
        const char *symbol;
    } kinds[] = {{"added", "+"}, {"removed", "-"}, {"changed", "~"}};
    char at_from[512], at_to[512];
    for (size_t k = 0; k < 3; k++) {
        size_t i;
        json_t *entry;
        json_array_foreach(json_object_get(env, kinds[k].list), i, entry)
        {
            const char *key = json_string_value(json_object_get(entry, "key"));
            json_t *from = json_object_get(entry, "from"), *to = json_object_get(entry, "to");
            char *old = from ? value_text(from) : NULL, *new = to ? value_text(to) : NULL;
            where(at_from, sizeof(at_from), from, uri);
            where(at_to, sizeof(at_to), to, uri);
            if (format == OUT_MARKDOWN) {
                fprintf(out, "| %s | `%s` | %s%s%s | %s%s%s | %s |\n", kinds[k].symbol, key,
                        old ? "`" : "", old ? old : "", old ? "`" : "", new ? "`" : "",
                        new ? new : "", new ? "`" : "", to ? at_to : at_from);
            } else if (from && to && strcmp(at_from, at_to) != 0) {
                fprintf(out, "  %s %s: %s -> %s    (%s, was %s)\n", kinds[k].symbol, key, old, new,
                        at_to, at_from);
            } else if (from && to) {
                fprintf(out, "  %s %s: %s -> %s    (%s)\n", kinds[k].symbol, key, old, new, at_to);
            } else {
                fprintf(out, "  %s %s = %s    (%s)\n", kinds[k].symbol, key, to ? new : old,
                        to ? at_to : at_from);
            }
            free(old);
            free(new);
        }
    }
}

static bool has_changes(const json_t *result)
{
    size_t i;
    json_t *env;
    json_array_foreach(json_object_get(result, "environments"), i, env)
    {
        const json_t *counts = json_object_get(env, "counts");
        if (json_integer_value(json_object_get(counts, "added")) +
                json_integer_value(json_object_get(counts, "removed")) +
                json_integer_value(json_object_get(counts, "changed")) >
            0)
            return true;
    }
    return false;
}

static void print_diff(FILE *out, const json_t *result, out_format format)
{
    const json_t *environments = json_object_get(result, "environments");
    const char *from = json_string_value(json_object_get(result, "fromVersion"));
    const char *to = json_string_value(json_object_get(result, "toVersion"));
    char *uri = common_uri(environments);
    size_t i;
    json_t *env;
    if (format == OUT_MARKDOWN)
        fprintf(out, "### Configuration change %.12s → %.12s\n\n", from ? from : "?",
                to ? to : "?");
    if (!has_changes(result))
        fprintf(out, "%s", format == OUT_MARKDOWN ? "No effective change.\n"
                                                  : "no effective change\n");
    json_array_foreach(environments, i, env)
    {
        const json_t *counts = json_object_get(env, "counts");
        long long added = json_integer_value(json_object_get(counts, "added"));
        long long removed = json_integer_value(json_object_get(counts, "removed"));
        long long changed = json_integer_value(json_object_get(counts, "changed"));
        if (added + removed + changed == 0)
            continue;
        const char *app = json_string_value(json_object_get(env, "application"));
        const char *profile = json_string_value(json_object_get(env, "profile"));
        if (format == OUT_MARKDOWN)
            fprintf(out,
                    "#### %s / %s — %lld added, %lld removed, %lld changed\n\n"
                    "| | key | before | after | set by |\n|---|---|---|---|---|\n",
                    app, profile, added, removed, changed);
        else
            fprintf(out, "%s/%s: %lld added, %lld removed, %lld changed\n", app, profile, added,
                    removed, changed);
        print_entries(out, env, format, uri);
        if (format == OUT_MARKDOWN)
            fprintf(out, "\n");
    }
    free(uri);
}

/* GET /diff/APP/PROFILES through the library, shaped like diff_offline's answer. */
static int diff_server(json_t **out, const cli_common *common, const char *app,
                       const char *profiles, const char *from, const char *to)
{
    alm_client *client = NULL;
    alm_buf body = {NULL, 0};
    json_error_t jerr;
    int rc = cli_client_new(&client, common, app, profiles, 0);
    if (rc != 0)
        return rc;
    int error = alm_client_diff(&body, client, from, to);
    if (error < 0) {
        rc = cli_fail(error, NULL);
        goto out;
    }
    json_t *diff = json_loadb(body.ptr, body.size, 0, &jerr);
    if (diff == NULL) {
        fprintf(stderr, "almanac diff: the server's answer is not JSON: %s\n", jerr.text);
        rc = CLI_EXIT_PROTOCOL;
        goto out;
    }
    json_object_set_new(diff, "profile", json_string(profiles));
    *out = json_pack("{s:s, s:s, s:O, s:O, s:[o]}", "from", from, "to", to, "fromVersion",
                     json_object_get(diff, "fromVersion"), "toVersion",
                     json_object_get(diff, "toVersion"), "environments", diff);
    rc = *out ? CLI_EXIT_OK : CLI_EXIT_ERROR;
out:
    alm_buf_dispose(&body);
    alm_client_free(client);
    return rc;
}

typedef struct diff_options {
    const char *from, *to, *repo_dir, *search_paths;
    out_format format;
} diff_options;

static int diff_option(void *ctx, int opt, const char *arg)
{
    diff_options *o = ctx;
    if (opt == OPT_FROM) {
        o->from = arg;
    } else if (opt == OPT_TO) {
        o->to = arg;
    } else if (opt == OPT_REPO_DIR) {
        o->repo_dir = arg;
    } else if (opt == OPT_SEARCH_PATHS) {
        o->search_paths = arg;
    } else if (opt == OPT_FORMAT) {
        if (strcmp(arg, "text") == 0)
            o->format = OUT_TEXT;
        else if (strcmp(arg, "json") == 0)
            o->format = OUT_JSON;
        else if (strcmp(arg, "markdown") == 0)
            o->format = OUT_MARKDOWN;
        else
            return cli_usage_error("diff", "unknown format '%s' (text, json, markdown)", arg);
    }
    return CLI_OPTION_TAKEN;
}

static const struct option diff_flags[] = {
    {"from", required_argument, NULL, OPT_FROM},
    {"to", required_argument, NULL, OPT_TO},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"repo-dir", required_argument, NULL, OPT_REPO_DIR},
    {"search-paths", required_argument, NULL, OPT_SEARCH_PATHS},
    {NULL, 0, NULL, 0}};

int cli_cmd_diff(int argc, char **argv)
{
    cli_common common;
    diff_options o = {.format = OUT_TEXT};
    json_t *result = NULL;
    int rc;

    cli_command cmd = {"diff", diff_flags, diff_option, &o, help};
    if ((rc = cli_parse_options(&cmd, &common, argc, argv)) >= 0)
        return rc;
    const char *from = o.from, *to = o.to, *repo_dir = o.repo_dir, *search_paths = o.search_paths;
    out_format format = o.format;
    int args = argc - optind;
    if (from == NULL || to == NULL)
        return cli_usage_error("diff", "--from and --to are both needed");
    if (!(args == 2 || (args == 0 && repo_dir != NULL)))
        return cli_usage_error("diff", "expected APP and PROFILES%s, got %d argument(s)",
                               repo_dir ? " (or none, for the whole repository)" : "", args);
    const char *app = args == 2 ? argv[optind] : NULL;
    const char *profiles = args == 2 ? argv[optind + 1] : NULL;
    if (repo_dir != NULL)
        rc = diff_offline(&result, repo_dir, app, profiles, from, to, search_paths);
    else
        rc = diff_server(&result, &common, app, profiles, from, to);
    if (rc != CLI_EXIT_OK)
        goto out;
    if (format == OUT_JSON) {
        if (json_dumpf(result, stdout, JSON_INDENT(2) | JSON_SORT_KEYS) < 0)
            rc = CLI_EXIT_ERROR;
        fputc('\n', stdout);
    } else {
        print_diff(stdout, result, format);
    }
    if (fflush(stdout) != 0)
        rc = CLI_EXIT_ERROR;
    else if (has_changes(result))
        rc = EXIT_CHANGES;
out:
    json_decref(result);
    /* 1 means "changes" here, as for diff(1): other errors move to 2. */
    return rc == CLI_EXIT_ERROR && result == NULL ? CLI_EXIT_USAGE : rc;
}
