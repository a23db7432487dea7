/*
 * main — the almanac command line: dispatches to one command per file (get.c, watch.c) and
 * prints the overall help with the exit codes. Everything it knows about the server it learns
 * through almanac.h, like any other program that embeds libalmanac.
 */
#include "cli.h"

#include <string.h>

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"get", cli_cmd_get, "print the configuration of an application, or one key of it"},
    {"watch", cli_cmd_watch, "print the configuration each time it changes"},
    {"exec", cli_cmd_exec, "run a command with the configuration as environment variables"},
    {"render", cli_cmd_render, "keep a directory of configuration files, as a ConfigMap volume"},
    {"diff", cli_cmd_diff, "the effective change between two labels, from a server or a clone"},
    {"lint", cli_cmd_lint, "check a configuration repository before committing it"},
    {"encrypt", cli_cmd_encrypt, "encrypt a secret with the server's key"},
    {"decrypt", cli_cmd_decrypt, "decrypt a {cipher} value with the server's key"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: almanac COMMAND [OPTIONS] [ARGS]\n\n"
                 "A client of the Almanac (and Spring Cloud Config) configuration server.\n\n"
                 "Commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'almanac COMMAND --help' describes a command and its options.\n\n"
                 "Exit codes:\n"
                 "  0  success (a warning on stderr when a cached copy stood in for the server)\n"
                 "  1  other error\n"
                 "  2  bad command line\n"
                 "  3  no such key, application or label\n"
                 "  4  credentials missing or refused\n"
                 "  5  no server reachable and no usable cached copy\n"
                 "  6  cache file damaged or written for another application\n"
                 "  7  the server's answer was malformed or too large\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "almanac: no command given; see 'almanac --help'\n");
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0) {
        printf("almanac %s (libalmanac %s)\n", ALM_VERSION, alm_version(NULL, NULL, NULL));
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(name, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "almanac: unknown command '%s'; see 'almanac --help'\n", name);
    return CLI_EXIT_USAGE;
}
