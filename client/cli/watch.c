/*
 * watch — `almanac watch APP PROFILES`: prints the configuration once, then again (or only what
 * changed, with --diff) each time the server reports a new version. Built on alm_watch, so the
 * CLI follows changes exactly the way an embedding program does: the library's thread
 * long-polls and calls back here; this file only prints and counts.
 */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_FORMAT = CLI_OPT_COMMAND_BASE, OPT_WAIT, OPT_COUNT, OPT_DIFF };

static void help(const char *command)
{
    (void)command;
    printf("usage: almanac watch APP PROFILES [--label L] [--format F] [--diff] [options]\n\n"
           "Prints the configuration of APP for PROFILES, then again each time it changes on\n"
           "the server, until interrupted. With the default json format each version is one\n"
           "line. Server outages are ridden out (with warnings on stderr), not fatal.\n\n"
           "  --format F    json (default), yaml, properties or env\n"
           "  --diff        after the first version, print each change as one JSON line:\n"
           "                {\"version\":…,\"added\":{…},\"changed\":{…},\"removed\":[…]}\n"
           "  --wait S      seconds one long-poll waits on the server (default 60)\n"
           "  --count N     exit after printing N versions (the first one included)\n\n"
           "%s",
           cli_common_help);
}

typedef struct watch_state {
    pthread_mutex_t lock;
    pthread_cond_t done;
    cli_format format;
    int diff;
    unsigned long count;
    unsigned long printed;
    int rc;
} watch_state;

static int print_diff(const alm_config *cfg, const alm_diff *diff)
{
    json_t *line = json_pack("{s:s*, s:{}, s:{}, s:[]}", "version", alm_config_version(cfg),
                             "added", "changed", "removed");
    json_t *added = json_object_get(line, "added");
    json_t *changed = json_object_get(line, "changed");
    json_t *removed = json_object_get(line, "removed");
    const char *v = NULL;
    for (size_t i = 0; line != NULL && i < diff->added_count; i++) {
        if (alm_config_get_string(&v, cfg, diff->added[i]) == 0)
            json_object_set_new(added, diff->added[i], json_string(v));
    }
    for (size_t i = 0; line != NULL && i < diff->changed_count; i++) {
        if (alm_config_get_string(&v, cfg, diff->changed[i]) == 0)
            json_object_set_new(changed, diff->changed[i], json_string(v));
    }
    for (size_t i = 0; line != NULL && i < diff->removed_count; i++)
        json_array_append_new(removed, json_string(diff->removed[i]));
    char *text = line != NULL ? json_dumps(line, JSON_COMPACT) : NULL;
    json_decref(line);
    if (text == NULL) {
        fprintf(stderr, "almanac: out of memory\n");
        return CLI_EXIT_ERROR;
    }
    printf("%s\n", text);
    free(text);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
}

/* Runs on the library's watch thread. */
static void on_change(const alm_config *old_cfg, const alm_config *new_cfg, const alm_diff *diff,
                      void *payload)
{
    watch_state *st = payload;
    (void)old_cfg;
    pthread_mutex_lock(&st->lock);
    if (st->rc == CLI_EXIT_OK && (st->count == 0 || st->printed < st->count)) {
        st->rc = st->diff ? print_diff(new_cfg, diff) : cli_render(stdout, new_cfg, st->format);
        st->printed++;
    }
    if (st->rc != CLI_EXIT_OK || (st->count != 0 && st->printed >= st->count))
        pthread_cond_signal(&st->done);
    pthread_mutex_unlock(&st->lock);
}

static int parse_positive(unsigned long *out, const char *arg, unsigned long max)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(arg, &end, 10);
    if (errno != 0 || *end != '\0' || arg[0] == '-' || v == 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

typedef struct watch_options {
    watch_state *st;
    unsigned long wait_s;
} watch_options;

static int watch_option(void *ctx, int opt, const char *arg)
{
    watch_options *o = ctx;
    if (opt == OPT_FORMAT) {
        if (cli_parse_format(&o->st->format, arg) < 0)
            return cli_usage_error("watch", "unknown format '%s'", arg);
    } else if (opt == OPT_WAIT) {
        if (parse_positive(&o->wait_s, arg, 3600) < 0)
            return cli_usage_error("watch", "--wait takes 1-3600 seconds, not '%s'", arg);
    } else if (opt == OPT_COUNT) {
        if (parse_positive(&o->st->count, arg, 1000000000ul) < 0)
            return cli_usage_error("watch", "--count takes a positive number, not '%s'", arg);
    } else if (opt == OPT_DIFF) {
        o->st->diff = 1;
    }
    return CLI_OPTION_TAKEN;
}

static const struct option watch_flags[] = {
    {"format", required_argument, NULL, OPT_FORMAT},
    {"wait", required_argument, NULL, OPT_WAIT},
    {"count", required_argument, NULL, OPT_COUNT},
    {"diff", no_argument, NULL, OPT_DIFF},
    {NULL, 0, NULL, 0}};

int cli_cmd_watch(int argc, char **argv)
{
    cli_common common;
    watch_state st = {.format = CLI_FORMAT_JSON, .rc = CLI_EXIT_OK};
    watch_options o = {.st = &st, .wait_s = 60};
    alm_client *client = NULL;
    alm_config *cfg = NULL;
    alm_watch *watch = NULL;
    int rc;

    cli_command cmd = {"watch", watch_flags, watch_option, &o, help};
    if ((rc = cli_parse_options(&cmd, &common, argc, argv)) >= 0)
        return rc;
    rc = CLI_EXIT_OK;
    unsigned long wait_s = o.wait_s;
    if (argc - optind != 2)
        return cli_usage_error("watch", "expected APP and PROFILES, got %d argument(s)",
                               argc - optind);

    if ((rc = cli_client_new(&client, &common, argv[optind], argv[optind + 1], 1)) != 0)
        goto out;
    int error = alm_client_fetch(&cfg, client);
    if (error < 0) {
        rc = cli_fail(error, NULL);
        goto out;
    }
    cli_warn_if_stale(cfg, &common);
    if ((rc = cli_render(stdout, cfg, st.format)) != CLI_EXIT_OK)
        goto out;
    st.printed = 1;
    if (st.count == 1)
        goto out;

    pthread_mutex_init(&st.lock, NULL);
    pthread_cond_init(&st.done, NULL);
    alm_watch_options wopts = ALM_WATCH_OPTIONS_INIT;
    wopts.on_change = on_change;
    wopts.payload = &st;
    wopts.poll_timeout_s = (unsigned int)wait_s;
    if ((error = alm_watch_start(&watch, client, cfg, &wopts)) < 0) {
        rc = cli_fail(error, NULL);
    } else {
        /* Until --count versions were printed or printing failed; otherwise until a signal. */
        pthread_mutex_lock(&st.lock);
        while (st.rc == CLI_EXIT_OK && (st.count == 0 || st.printed < st.count))
            pthread_cond_wait(&st.done, &st.lock);
        rc = st.rc;
        pthread_mutex_unlock(&st.lock);
        alm_watch_free(watch);
    }
    pthread_cond_destroy(&st.done);
    pthread_mutex_destroy(&st.lock);
out:
    alm_config_free(cfg);
    alm_client_free(client);
    return rc;
}
