/*
 * cli.h — what the almanac CLI's commands share: the common flags, building a client from
 * them, rendering a configuration, and turning a library error into an exit code and one line
 * on stderr. The CLI is written against almanac.h only, like any other program.
 */
#ifndef ALMANAC_CLI_H
#define ALMANAC_CLI_H

#include "almanac.h"

#include <getopt.h>
#include <stdio.h>

/* Exit codes, documented in `almanac --help` and docs/client.md. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_ERROR = 1,       /* anything not listed below */
    CLI_EXIT_USAGE = 2,       /* bad command line */
    CLI_EXIT_NOTFOUND = 3,    /* no such key, label or application */
    CLI_EXIT_AUTH = 4,        /* credentials missing or refused */
    CLI_EXIT_UNAVAILABLE = 5, /* no server reachable and no usable cached copy */
    CLI_EXIT_CACHE = 6,       /* the cache file is damaged or belongs to another request */
    CLI_EXIT_PROTOCOL = 7     /* the server's answer was malformed or too large */
};

typedef enum cli_format {
    CLI_FORMAT_PROPERTIES,
    CLI_FORMAT_YAML,
    CLI_FORMAT_JSON,
    CLI_FORMAT_ENV
} cli_format;

/* The flags every command that talks to a server accepts. */
typedef struct cli_common {
    const char *server;
    const char *user;
    const char *password;
    const char *token;
    const char *token_file;
    const char *ca_file;
    const char *cache_file;
    const char *label;
    unsigned int timeout_ms;
    unsigned int retries;
    int fail_fast;
    int verbose;
    int keep_placeholders; /* `get --raw`: values as the sources hold them */
} cli_common;

/* Long options shared by the commands; their `val`s start at CLI_OPT_BASE. */
enum {
    CLI_OPT_BASE = 1000,
    CLI_OPT_SERVER,
    CLI_OPT_USER,
    CLI_OPT_PASSWORD,
    CLI_OPT_TOKEN,
    CLI_OPT_CA_FILE,
    CLI_OPT_CACHE_FILE,
    CLI_OPT_FAIL_FAST,
    CLI_OPT_LABEL,
    CLI_OPT_TIMEOUT,
    CLI_OPT_RETRIES,
    CLI_OPT_VERBOSE,
    CLI_OPT_TOKEN_FILE,
    CLI_OPT_HELP,
    CLI_OPT_WAIT,               /* not common: the commands that follow changes add it */
    CLI_OPT_COMMAND_BASE = 1100 /* a command's own options start here */
};

#define CLI_COMMON_LONG_OPTIONS                                                                    \
    {"server", required_argument, NULL, CLI_OPT_SERVER},                                           \
        {"user", required_argument, NULL, CLI_OPT_USER},                                           \
        {"password", required_argument, NULL, CLI_OPT_PASSWORD},                                   \
        {"token", required_argument, NULL, CLI_OPT_TOKEN},                                         \
        {"token-file", required_argument, NULL, CLI_OPT_TOKEN_FILE},                               \
        {"ca-file", required_argument, NULL, CLI_OPT_CA_FILE},                                     \
        {"cache-file", required_argument, NULL, CLI_OPT_CACHE_FILE},                               \
        {"fail-fast", no_argument, NULL, CLI_OPT_FAIL_FAST},                                       \
        {"label", required_argument, NULL, CLI_OPT_LABEL},                                         \
        {"timeout", required_argument, NULL, CLI_OPT_TIMEOUT},                                     \
        {"retries", required_argument, NULL, CLI_OPT_RETRIES},                                     \
        {"verbose", no_argument, NULL, CLI_OPT_VERBOSE},                                           \
    {                                                                                              \
        "help", no_argument, NULL, CLI_OPT_HELP                                                    \
    }

/* The help text of the common flags, for each command's --help. */
extern const char cli_common_help[];

/* Fills `common` with defaults and the ALMANAC_* environment variables. */
void cli_common_init(cli_common *common);

/*
 * Handles one common option from getopt_long. Returns 1 when handled, 0 when `opt` is not a
 * common option, or -1 after printing a usage error.
 */
int cli_common_option(cli_common *common, int opt, const char *arg);

/*
 * A command's own option (only ever one of cmd->options), handed over by cli_parse_options:
 * CLI_OPTION_TAKEN, CLI_OPTION_UNKNOWN (not one it takes in this mode: a usage error follows),
 * or the exit code to stop with after the command printed its own usage error.
 */
enum { CLI_OPTION_TAKEN = 0, CLI_OPTION_UNKNOWN = -1 };
typedef int (*cli_option_fn)(void *ctx, int opt, const char *arg);

typedef struct cli_command {
    const char *name;              /* as in messages: "get" */
    const struct option *options;  /* its own (at most 32), then {NULL}; the common ones are
                                    * added by cli_parse_options */
    cli_option_fn own;             /* its own options; NULL when it has none */
    void *ctx;                     /* for own */
    void (*help)(const char *name); /* prints `almanac NAME --help` */
} cli_command;

/*
 * The option loop of every command: getopt_long over cmd->options and the common ones (options
 * may come anywhere before "--", where it stops), the common ones into common (which it
 * initialises with cli_common_init), the
 * command's own to cmd->own; --help prints help; a missing value or an unknown option is a usage
 * error. Returns -1 to go on, the operands from argv[optind]; otherwise the exit code to return
 * now (CLI_EXIT_OK after --help).
 */
int cli_parse_options(const cli_command *cmd, cli_common *common, int argc, char **argv);

/*
 * Creates a client for `app`/`profiles` from the common flags; prints the error and returns an
 * exit code on failure. The library's warnings reach stderr when `warnings` is set, everything
 * it logs with --verbose.
 */
int cli_client_new(alm_client **out, const cli_common *common, const char *app,
                   const char *profiles, int warnings);

/* Prints "almanac: <message>; <what to do>" for a library error; returns the exit code. */
int cli_fail(int code, const char *context);

/* Prints a usage error ("almanac CMD: msg; see 'almanac CMD --help'"); returns CLI_EXIT_USAGE. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
int cli_usage_error(const char *command, const char *fmt, ...);

/* Parses a long-poll wait, 1-3600 seconds; -1 when invalid. */
int cli_parse_seconds(unsigned long *out, const char *arg);

/* Parses "json", "yaml", "properties" or "env"; -1 when unknown. */
int cli_parse_format(cli_format *out, const char *name);

/* Writes the merged configuration in `format` to `out`; prints the error and returns an exit
 * code on failure. */
int cli_render(FILE *out, const alm_config *cfg, cli_format format);
/*
 * The same bytes as the server's `/{app}-{profiles}.{yml,properties,json}` document: no
 * final newline added (the server's JSON and properties have none).
 */
int cli_render_document(FILE *out, const alm_config *cfg, cli_format format);

/* Prints the stale-copy warning when `cfg` came from the cache file. */
void cli_warn_if_stale(const alm_config *cfg, const cli_common *common);

int cli_cmd_get(int argc, char **argv);
int cli_cmd_watch(int argc, char **argv);
int cli_cmd_exec(int argc, char **argv);
int cli_cmd_render(int argc, char **argv);
int cli_cmd_lint(int argc, char **argv);
int cli_cmd_encrypt(int argc, char **argv);
int cli_cmd_decrypt(int argc, char **argv);
int cli_cmd_diff(int argc, char **argv);

#endif
