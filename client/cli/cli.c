/*
 * cli — the CLI's shared plumbing: common flags and ALMANAC_* variables, client creation,
 * error reporting with exit codes, and rendering of the merged configuration through common/'s
 * flatrender. The commands themselves live in get.c and watch.c.
 */
#include "cli.h"
#include "flatrender.h"
#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_SERVER "http://127.0.0.1:8888"

const char cli_common_help[] =
    "Server options:\n"
    "  --server URL[,URL…]  server base URL(s), tried in turn (env ALMANAC_SERVER;\n"
    "                       default " DEFAULT_SERVER ")\n"
    "  --user NAME          HTTP Basic user (env ALMANAC_USER)\n"
    "  --password PASS      HTTP Basic password (env ALMANAC_PASSWORD, preferred: flags are\n"
    "                       visible to other users in the process list)\n"
    "  --token TOKEN        bearer token instead of user and password (env ALMANAC_TOKEN)\n"
    "  --token-file FILE    bearer token read from FILE, again whenever FILE changes: a\n"
    "                       Kubernetes projected ServiceAccount token (env ALMANAC_TOKEN_FILE)\n"
    "  --ca-file FILE       PEM bundle to verify an https server with\n"
    "  --label LABEL        branch, tag or commit (default: the server's default label)\n"
    "  --cache-file FILE    keep the last good configuration in FILE and use it when no\n"
    "                       server can be reached (env ALMANAC_CACHE_FILE)\n"
    "  --fail-fast          fail when no server can be reached, even with a cache file\n"
    "  --timeout SECONDS    per-request timeout (default 30)\n"
    "  --retries N          attempts before giving up (default 6; 1 = no retry)\n"
    "  --verbose            log each request and retry on stderr\n"
    "  --help               show this help\n";

static const char *env_or_null(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? v : NULL;
}

void cli_common_init(cli_common *common)
{
    memset(common, 0, sizeof(*common));
    common->server = env_or_null("ALMANAC_SERVER");
    if (common->server == NULL)
        common->server = DEFAULT_SERVER;
    common->user = env_or_null("ALMANAC_USER");
    common->password = env_or_null("ALMANAC_PASSWORD");
    common->token = env_or_null("ALMANAC_TOKEN");
    common->token_file = env_or_null("ALMANAC_TOKEN_FILE");
    common->cache_file = env_or_null("ALMANAC_CACHE_FILE");
}

static int parse_uint(unsigned int *out, const char *arg, unsigned int min, unsigned int max)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(arg, &end, 10);
    if (errno != 0 || end == arg || *end != '\0' || arg[0] == '-' || v < min || v > max)
        return -1;
    *out = (unsigned int)v;
    return 0;
}

int cli_common_option(cli_common *common, int opt, const char *arg)
{
    unsigned int n = 0;
    switch (opt) {
    case CLI_OPT_SERVER:
        common->server = arg;
        return 1;
    case CLI_OPT_USER:
        common->user = arg;
        return 1;
    case CLI_OPT_PASSWORD:
        common->password = arg;
        return 1;
    case CLI_OPT_TOKEN:
        common->token = arg;
        common->token_file = NULL; /* a flag beats the other kind's environment variable */
        return 1;
    case CLI_OPT_TOKEN_FILE:
        common->token_file = arg;
        common->token = NULL;
        return 1;
    case CLI_OPT_CA_FILE:
        common->ca_file = arg;
        return 1;
    case CLI_OPT_CACHE_FILE:
        common->cache_file = arg;
        return 1;
    case CLI_OPT_FAIL_FAST:
        common->fail_fast = 1;
        return 1;
    case CLI_OPT_LABEL:
        common->label = arg;
        return 1;
    case CLI_OPT_TIMEOUT:
        if (parse_uint(&n, arg, 1, 3600) < 0) {
            fprintf(stderr, "almanac: --timeout takes 1-3600 seconds, not '%s'\n", arg);
            return -1;
        }
        common->timeout_ms = n * 1000u;
        return 1;
    case CLI_OPT_RETRIES:
        if (parse_uint(&n, arg, 1, 100) < 0) {
            fprintf(stderr, "almanac: --retries takes 1-100, not '%s'\n", arg);
            return -1;
        }
        common->retries = n;
        return 1;
    case CLI_OPT_VERBOSE:
        common->verbose = 1;
        return 1;
    default:
        return 0;
    }
}

int cli_parse_options(const cli_command *cmd, cli_common *common, int argc, char **argv)
{
    static const struct option common_options[] = {CLI_COMMON_LONG_OPTIONS};
    enum { COMMON = sizeof(common_options) / sizeof(common_options[0]), MAX_OWN = 32 };
    struct option all[MAX_OWN + COMMON + 1];
    size_t n = 0;
    for (; cmd->options != NULL && cmd->options[n].name != NULL && n < MAX_OWN; n++)
        all[n] = cmd->options[n];
    memcpy(all + n, common_options, sizeof(common_options));
    memset(&all[n + COMMON], 0, sizeof(all[0]));

    int opt;
    cli_common_init(common);
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":", all, NULL)) != -1) {
        if (opt == CLI_OPT_HELP) {
            cmd->help(cmd->name);
            return CLI_EXIT_OK;
        }
        int handled = cli_common_option(common, opt, optarg);
        if (handled < 0)
            return CLI_EXIT_USAGE;
        if (handled)
            continue;
        if (opt == ':')
            return cli_usage_error(cmd->name, "%s needs a value", argv[optind - 1]);
        int own = opt == '?' || cmd->own == NULL ? CLI_OPTION_UNKNOWN
                                                  : cmd->own(cmd->ctx, opt, optarg);
        if (own == CLI_OPTION_UNKNOWN)
            return cli_usage_error(cmd->name, "unknown option '%s'", argv[optind - 1]);
        if (own != CLI_OPTION_TAKEN)
            return own;
    }
    return -1;
}

static void on_library_log(alm_log_level level, const char *message, void *payload)
{
    (void)payload;
    log_level mapped = level <= ALM_LOG_DEBUG  ? LOG_LEVEL_DEBUG
                       : level == ALM_LOG_INFO ? LOG_LEVEL_INFO
                       : level == ALM_LOG_WARN ? LOG_LEVEL_WARN
                                               : LOG_LEVEL_ERROR;
    log_write(mapped, "client", "%s", message);
}

/* The library's words for a configuration fetched but not written to --cache-file
 * (client.c, after a good fetch). */
#define CACHE_NOT_WRITTEN "configuration fetched, but not cached"

/*
 * Commands that print one line for their outcome (get, diff, cipher) keep the library's
 * per-attempt warnings to themselves. A cache file that could not be written (a full disk) is
 * news their outcome does not carry, since the command succeeded, and the next boot without
 * a server would find no copy: that warning is passed on.
 */
static void on_quiet_library_log(alm_log_level level, const char *message, void *payload)
{
    if (level >= ALM_LOG_WARN && strncmp(message, CACHE_NOT_WRITTEN, strlen(CACHE_NOT_WRITTEN)) == 0)
        on_library_log(level, message, payload);
}

int cli_client_new(alm_client **out, const cli_common *common, const char *app,
                   const char *profiles, int warnings)
{
    alm_client_options opts = ALM_CLIENT_OPTIONS_INIT;
    opts.server = common->server;
    opts.application = app;
    opts.profiles = profiles;
    opts.label = common->label;
    opts.username = common->user;
    opts.password = common->password;
    opts.token = common->token;
    opts.token_file = common->token_file;
    opts.ca_file = common->ca_file;
    opts.cache_file = common->cache_file;
    opts.fail_fast = common->fail_fast;
    opts.request_timeout_ms = common->timeout_ms;
    opts.retry.max_attempts = common->retries;
    opts.keep_placeholders = common->keep_placeholders;
    if (common->verbose) {
        log_configure(LOG_LEVEL_DEBUG, LOG_FORMAT_TEXT);
        opts.log_cb = on_library_log;
        opts.log_level = ALM_LOG_DEBUG;
    } else if (warnings) {
        log_configure(LOG_LEVEL_WARN, LOG_FORMAT_TEXT);
        opts.log_cb = on_library_log;
        opts.log_level = ALM_LOG_WARN;
    } else {
        log_configure(LOG_LEVEL_WARN, LOG_FORMAT_TEXT);
        opts.log_cb = on_quiet_library_log;
        opts.log_level = ALM_LOG_WARN;
    }
    int error = alm_client_new(out, &opts);
    if (error < 0)
        return cli_fail(error, NULL);
    return 0;
}

int cli_fail(int code, const char *context)
{
    const char *hint = "";
    int exit_code = CLI_EXIT_ERROR;
    switch (code) {
    case ALM_ENOTFOUND:
        exit_code = CLI_EXIT_NOTFOUND;
        hint = "; check the application, profiles, --label and key";
        break;
    case ALM_EAUTH:
        hint = "; pass --user and --password (or --token), or ALMANAC_USER/ALMANAC_PASSWORD "
               "(ALMANAC_TOKEN)";
        exit_code = CLI_EXIT_AUTH;
        break;
    case ALM_ENETWORK:
    case ALM_ETIMEOUT:
    case ALM_ESERVER:
        hint = "; check that the server runs and that --server (or ALMANAC_SERVER) names it";
        exit_code = CLI_EXIT_UNAVAILABLE;
        break;
    case ALM_ETLS:
        hint = "; pass the server's CA certificate with --ca-file";
        exit_code = CLI_EXIT_UNAVAILABLE;
        break;
    case ALM_ECACHE:
        exit_code = CLI_EXIT_CACHE;
        break;
    case ALM_EPROTOCOL:
    case ALM_ETOOBIG:
        hint = "; check that --server names an almanac or Spring Cloud Config server";
        exit_code = CLI_EXIT_PROTOCOL;
        break;
    case ALM_EINVALID:
        exit_code = CLI_EXIT_USAGE;
        break;
    default:
        break;
    }
    fprintf(stderr, "almanac: %s%s%s%s\n", context ? context : "", context ? ": " : "",
            alm_error_last()->message, hint);
    return exit_code;
}

int cli_usage_error(const char *command, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "almanac %s: %s; see 'almanac %s --help'\n", command, msg, command);
    return CLI_EXIT_USAGE;
}

int cli_parse_seconds(unsigned long *out, const char *arg)
{
    unsigned int n = 0;
    if (parse_uint(&n, arg, 1, 3600) < 0)
        return -1;
    *out = n;
    return 0;
}

int cli_parse_format(cli_format *out, const char *name)
{
    static const struct {
        const char *name;
        cli_format format;
    } formats[] = {{"properties", CLI_FORMAT_PROPERTIES},
                   {"yaml", CLI_FORMAT_YAML},
                   {"yml", CLI_FORMAT_YAML},
                   {"json", CLI_FORMAT_JSON},
                   {"env", CLI_FORMAT_ENV}};
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        if (strcmp(name, formats[i].name) == 0) {
            *out = formats[i].format;
            return 0;
        }
    }
    return -1;
}

/* What one property source contributes to the document order (see document_order). */
typedef struct order_walk {
    json_t *order;   /* plain keys, first seen from the least specific source */
    json_t *current; /* this source's lists: name -> array of its element keys */
    int oom;
} order_walk;

static int note_key(const char *key, void *payload)
{
    order_walk *w = payload;
    const char *bracket = strchr(key, '[');
    if (bracket == NULL) {
        /* Setting a key that is there keeps its place, as in the server's merge. */
        if (json_object_get(w->order, key) == NULL &&
            json_object_set_new(w->order, key, json_true()) < 0)
            w->oom = 1;
        return w->oom;
    }
    char *name = strndup(key, (size_t)(bracket - key));
    json_t *group = name != NULL ? json_object_get(w->current, name) : NULL;
    if (name != NULL && group == NULL &&
        json_object_set_new(w->current, name, group = json_array()) < 0)
        group = NULL;
    if (group == NULL || json_array_append_new(group, json_string(key)) < 0)
        w->oom = 1;
    free(name);
    return w->oom;
}

/*
 * The merged keys in the order the server's documents (`/{app}-{profiles}.yml`, …) list them,
 * so `get --format` prints the same bytes: plain keys where the least specific source first
 * has them, then each list, whole, from the most specific source that has it, placed where the
 * first source with that list put it; `spring.profiles` is not part of a document. A JSON
 * array of keys, or NULL when out of memory.
 */
static json_t *document_order(const alm_config *cfg)
{
    order_walk w = {json_object(), NULL, 0};
    json_t *lists = json_object(), *keys = json_array();
    const char *name;
    json_t *group;
    w.oom = w.order == NULL || lists == NULL || keys == NULL;
    for (size_t i = alm_config_source_count(cfg); !w.oom && i > 0; i--) {
        if ((w.current = json_object()) == NULL) {
            w.oom = 1;
            break;
        }
        alm_config_source_keys(cfg, i - 1, note_key, &w);
        json_object_foreach(w.current, name, group)
        {
            if (!w.oom && json_object_set(lists, name, group) < 0)
                w.oom = 1;
        }
        json_decref(w.current);
        w.current = NULL;
    }
    json_t *v;
    json_object_foreach(w.order, name, v)
    {
        if (!w.oom && strcmp(name, "spring.profiles") != 0 &&
            json_array_append_new(keys, json_string(name)) < 0)
            w.oom = 1;
    }
    json_object_foreach(lists, name, group)
    {
        size_t j;
        json_array_foreach(group, j, v)
        {
            if (!w.oom && json_array_append(keys, v) < 0)
                w.oom = 1;
        }
    }
    json_decref(w.order);
    json_decref(lists);
    if (w.oom) {
        json_decref(keys);
        return NULL;
    }
    return keys;
}

/* The merged view as the flat, typed map flatrender takes, in the server's document order. */
static json_t *flat_map(const alm_config *cfg)
{
    json_t *flat = json_object(), *keys = document_order(cfg), *index = json_object(), *k;
    size_t i;
    for (i = 0; index != NULL && i < alm_config_entrycount(cfg); i++) {
        if (json_object_set_new(index, alm_config_entry_byindex(cfg, i)->key,
                                json_integer((json_int_t)i)) < 0) {
            json_decref(index);
            index = NULL;
        }
    }
    if (keys == NULL || index == NULL) {
        json_decref(flat);
        flat = NULL;
    }
    json_array_foreach(keys, i, k)
    {
        const char *key = json_string_value(k);
        const json_t *at = json_object_get(index, key);
        if (flat == NULL)
            break;
        if (at == NULL || json_object_get(flat, key) != NULL)
            continue;
        const alm_config_entry *e = alm_config_entry_byindex(cfg, (size_t)json_integer_value(at));
        json_t *v = NULL;
        int64_t n;
        double d;
        int b;
        switch (e->type) {
        case ALM_TYPE_INTEGER:
            v = alm_config_get_int64(&n, cfg, e->key) == 0 ? json_integer(n) : NULL;
            break;
        case ALM_TYPE_DOUBLE:
            v = alm_config_get_double(&d, cfg, e->key) == 0 ? json_real(d) : NULL;
            break;
        case ALM_TYPE_BOOLEAN:
            v = alm_config_get_bool(&b, cfg, e->key) == 0 ? json_boolean(b) : NULL;
            break;
        case ALM_TYPE_NULL:
            v = json_null();
            break;
        default:
            v = json_string(e->value);
            break;
        }
        if (v == NULL || json_object_set_new(flat, e->key, v) < 0) {
            json_decref(flat);
            flat = NULL;
        }
    }
    json_decref(keys);
    json_decref(index);
    return flat;
}

static int render_to(FILE *out, const alm_config *cfg, cli_format format, int final_newline);

int cli_render(FILE *out, const alm_config *cfg, cli_format format)
{
    return render_to(out, cfg, format, 1);
}

int cli_render_document(FILE *out, const alm_config *cfg, cli_format format)
{
    return render_to(out, cfg, format, 0);
}

static int render_to(FILE *out, const alm_config *cfg, cli_format format, int final_newline)
{
    char err[256] = "";
    flatrender_buf buf = {0};
    int rc = -1;
    json_t *flat = flat_map(cfg);
    if (flat == NULL) {
        fprintf(stderr, "almanac: out of memory\n");
        return CLI_EXIT_ERROR;
    }
    switch (format) {
    case CLI_FORMAT_YAML:
        rc = flatrender_yaml(&buf, flat, err, sizeof(err));
        break;
    case CLI_FORMAT_JSON:
        rc = flatrender_json(&buf, flat, err, sizeof(err));
        break;
    case CLI_FORMAT_ENV:
        rc = flatrender_env(&buf, flat, err, sizeof(err));
        break;
    default:
        rc = flatrender_properties(&buf, flat, err, sizeof(err));
        break;
    }
    json_decref(flat);
    if (rc < 0) {
        fprintf(stderr, "almanac: cannot render the configuration: %s\n", err);
        free(buf.data);
        return CLI_EXIT_PROTOCOL;
    }
    fwrite(buf.data, 1, buf.len, out);
    if (final_newline && buf.len > 0 && buf.data[buf.len - 1] != '\n')
        fputc('\n', out);
    free(buf.data);
    if (fflush(out) != 0) {
        fprintf(stderr, "almanac: cannot write the output: %s\n", strerror(errno));
        return CLI_EXIT_ERROR;
    }
    return CLI_EXIT_OK;
}

void cli_warn_if_stale(const alm_config *cfg, const cli_common *common)
{
    if (!alm_config_is_stale(cfg))
        return;
    char when[32] = "an unknown time";
    time_t at = (time_t)alm_config_fetched_at(cfg);
    struct tm tm;
    if (at > 0 && gmtime_r(&at, &tm) != NULL)
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr,
            "almanac: warning: no server could serve it; using the copy cached at %s in %s "
            "(version %s)\n",
            when, common->cache_file ? common->cache_file : "?",
            alm_config_version(cfg) ? alm_config_version(cfg) : "unknown");
}
