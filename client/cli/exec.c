/*
 * exec — `almanac exec APP PROFILES [--restart | --signal SIG] -- CMD [ARG…]`: runs CMD with
 * the configuration as environment variables (foo.bar-baz[0] -> FOO_BAR_BAZ_0).
 *
 * Without --restart or --signal, almanac replaces itself with CMD (execvp): nothing stays
 * behind. With either, almanac stays as a small supervisor: an alm_watch in manual-dispatch
 * mode and a signalfd share one poll loop on the main thread; on a change the child is
 * restarted with the new environment (--restart: SIGTERM, wait, start again) or sent SIG;
 * INT, TERM, HUP, QUIT, USR1 and USR2 are forwarded to the child; almanac exits with the
 * child's status (128 + N when a signal N ended it).
 */
#include "cli.h"
#include "flatrender.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum { OPT_RESTART = CLI_OPT_COMMAND_BASE, OPT_SIGNAL, OPT_GRACE };

static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

static void help(const char *command)
{
    (void)command;
    printf("usage: almanac exec APP PROFILES [--restart | --signal SIG] [options]\n"
           "                    -- CMD [ARG…]\n\n"
           "Runs CMD with the configuration of APP for PROFILES as environment variables:\n"
           "each key becomes upper case with every run of other characters turned into '_'\n"
           "(db.pool-size -> DB_POOL_SIZE, hosts[0] -> HOSTS_0), overriding inherited ones.\n\n"
           "  --restart     follow changes: restart CMD with the new environment (SIGTERM,\n"
           "                then SIGKILL if it has not exited after --grace seconds)\n"
           "  --grace S     seconds CMD has to exit on a restart (default 10)\n"
           "  --signal SIG  follow changes: send SIG (HUP, USR1, … or a number) to CMD\n"
           "  --wait S      seconds one long-poll waits on the server (default 60)\n\n"
           "Without --restart or --signal almanac becomes CMD. Otherwise it stays beside CMD,\n"
           "forwards INT, TERM, HUP, QUIT, USR1 and USR2 to it, and exits with CMD's status\n"
           "(128+N if signal N ended it). 127: CMD could not be run.\n\n"
           "%s",
           cli_common_help);
}

static int parse_signal(const char *arg)
{
    static const struct {
        const char *name;
        int sig;
    } names[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},
                 {"TERM", SIGTERM}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}};
    const char *name = strncmp(arg, "SIG", 3) == 0 ? arg + 3 : arg;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(name, names[i].name) == 0)
            return names[i].sig;
    }
    char *end = NULL;
    long n = strtol(arg, &end, 10);
    return *end == '\0' && n > 0 && n < 65 ? (int)n : -1;
}

/* environ without the names the configuration sets, then the configuration; NULL on OOM. */
static char **build_env(const alm_config *cfg)
{
    size_t ninherited = 0, nkeys = alm_config_entrycount(cfg), n = 0;
    while (environ[ninherited] != NULL)
        ninherited++;
    char **env = calloc(ninherited + nkeys + 1, sizeof(*env));
    char **names = calloc(nkeys + 1, sizeof(*names));
    if (env == NULL || names == NULL)
        goto fail;
    for (size_t i = 0; i < nkeys; i++) {
        const alm_config_entry *e = alm_config_entry_byindex(cfg, i);
        if ((names[i] = flatrender_env_name(e->key)) == NULL)
            goto fail;
    }
    for (size_t i = 0; i < ninherited; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t len = eq != NULL ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int overridden = 0;
        for (size_t k = 0; k < nkeys && !overridden; k++)
            overridden = strlen(names[k]) == len && strncmp(names[k], environ[i], len) == 0;
        if (!overridden && (env[n++] = strdup(environ[i])) == NULL)
            goto fail;
    }
    for (size_t i = 0; i < nkeys; i++) {
        const alm_config_entry *e = alm_config_entry_byindex(cfg, i);
        size_t len = strlen(names[i]) + strlen(e->value) + 2;
        if (names[i][0] == '\0')
            continue; /* a key with no letter or digit has no variable */
        if ((env[n] = malloc(len)) == NULL)
            goto fail;
        snprintf(env[n++], len, "%s=%s", names[i], e->value);
    }
    for (size_t i = 0; i < nkeys; i++)
        free(names[i]);
    free(names);
    return env;
fail:
    for (size_t i = 0; names != NULL && i < nkeys; i++)
        free(names[i]);
    free(names);
    for (size_t i = 0; env != NULL && i < n; i++)
        free(env[i]);
    free(env);
    return NULL;
}

static void free_env(char **env)
{
    for (size_t i = 0; env != NULL && env[i] != NULL; i++)
        free(env[i]);
    free(env);
}

/* Replaces the process's environment with `env` (which it takes) and execs argv. */
static int become(char **argv, char **env)
{
    environ = env;
    execvp(argv[0], argv);
    fprintf(stderr, "almanac: cannot run %s: %s\n", argv[0], strerror(errno));
    return 127;
}

static pid_t spawn(char **argv, const alm_config *cfg, const sigset_t *blocked)
{
    char **env = build_env(cfg);
    if (env == NULL) {
        fprintf(stderr, "almanac: out of memory\n");
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        sigprocmask(SIG_UNBLOCK, blocked, NULL);
        _exit(become(argv, env));
    }
    free_env(env);
    if (pid < 0)
        fprintf(stderr, "almanac: cannot start %s: %s\n", argv[0], strerror(errno));
    return pid;
}

typedef struct supervisor {
    alm_config *latest; /* the newest configuration dispatched, retained */
    int changed;
} supervisor;

static void on_change(const alm_config *old_cfg, const alm_config *new_cfg, const alm_diff *diff,
                      void *payload)
{
    supervisor *sv = payload;
    (void)old_cfg;
    (void)diff;
    alm_config_free(sv->latest);
    sv->latest = alm_config_retain(new_cfg);
    sv->changed = 1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int exit_status(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return CLI_EXIT_ERROR;
}

/* The supervising loop: one poll over the signalfd and the watch's descriptor. */
static int supervise(alm_client *client, alm_config *cfg, char **argv, int restart, int sig,
                     unsigned int wait_s, unsigned int grace_s)
{
    int64_t kill_at = 0; /* while restarting: when SIGTERM turns into SIGKILL */
    supervisor sv = {alm_config_retain(cfg), 0};
    alm_watch *watch = NULL;
    sigset_t blocked;
    int sfd = -1, rc = CLI_EXIT_ERROR, restarting = 0;
    pid_t child = -1;

    /* Blocked before the watch thread exists, so every thread inherits the mask and the
     * signals wait in the signalfd. */
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGCHLD);
    for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
        sigaddset(&blocked, forwarded[i]);
    sigprocmask(SIG_BLOCK, &blocked, NULL);
    if ((sfd = signalfd(-1, &blocked, SFD_CLOEXEC)) < 0) {
        fprintf(stderr, "almanac: signalfd: %s\n", strerror(errno));
        goto out;
    }
    if ((child = spawn(argv, cfg, &blocked)) < 0)
        goto out;

    alm_watch_options wopts = ALM_WATCH_OPTIONS_INIT;
    wopts.on_change = on_change;
    wopts.payload = &sv;
    wopts.poll_timeout_s = wait_s;
    wopts.manual_dispatch = 1;
    int error = alm_watch_start(&watch, client, cfg, &wopts);
    if (error < 0) {
        rc = cli_fail(error, NULL);
        kill(child, SIGTERM);
        waitpid(child, NULL, 0);
        goto out;
    }
    for (;;) {
        struct pollfd fds[2] = {{.fd = sfd, .events = POLLIN},
                                {.fd = alm_watch_fd(watch), .events = POLLIN}};
        int timeout = -1;
        if (restarting && kill_at != 0) {
            int64_t left = kill_at - now_ms();
            timeout = left > 0 ? (int)left : 0;
        }
        if (poll(fds, 2, timeout) < 0 && errno != EINTR) {
            fprintf(stderr, "almanac: poll: %s\n", strerror(errno));
            goto out;
        }
        if (restarting && kill_at != 0 && now_ms() >= kill_at) {
            /* SIGKILL once; then wait for SIGCHLD with no deadline. */
            fprintf(stderr, "almanac: %s did not exit within %u s of SIGTERM; killing it\n",
                    argv[0], grace_s);
            kill(child, SIGKILL);
            kill_at = 0;
        }
        if (fds[1].revents & POLLIN) {
            alm_watch_dispatch(watch);
            if (sv.changed) {
                sv.changed = 0;
                if (restart && !restarting) {
                    restarting = 1;
                    kill_at = now_ms() + (int64_t)grace_s * 1000;
                    kill(child, SIGTERM);
                } else if (!restart) {
                    kill(child, sig);
                }
            }
        }
        if (!(fds[0].revents & POLLIN))
            continue;
        struct signalfd_siginfo si;
        if (read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
            continue;
        if (si.ssi_signo != SIGCHLD) {
            kill(child, (int)si.ssi_signo);
            restarting = 0; /* the operator's signal decides now, not the restart */
            kill_at = 0;
            continue;
        }
        int status = 0;
        pid_t done = waitpid(child, &status, WNOHANG);
        if (done != child)
            continue;
        if (!restarting) {
            rc = exit_status(status);
            goto out;
        }
        restarting = 0;
        if ((child = spawn(argv, sv.latest, &blocked)) < 0)
            goto out;
    }
out:
    alm_watch_free(watch);
    alm_config_free(sv.latest);
    if (sfd >= 0)
        close(sfd);
    return rc;
}

typedef struct exec_options {
    int restart, sig;
    unsigned long wait_s, grace_s;
} exec_options;

static int exec_option(void *ctx, int opt, const char *arg)
{
    exec_options *o = ctx;
    if (opt == OPT_RESTART) {
        o->restart = 1;
    } else if (opt == OPT_SIGNAL) {
        if ((o->sig = parse_signal(arg)) < 0)
            return cli_usage_error("exec", "unknown signal '%s'", arg);
    } else if (opt == CLI_OPT_WAIT) {
        if (cli_parse_seconds(&o->wait_s, arg) < 0)
            return cli_usage_error("exec", "--wait takes 1-3600 seconds, not '%s'", arg);
    } else if (opt == OPT_GRACE) {
        if (cli_parse_seconds(&o->grace_s, arg) < 0)
            return cli_usage_error("exec", "--grace takes 1-3600 seconds, not '%s'", arg);
    }
    return CLI_OPTION_TAKEN;
}

static const struct option exec_flags[] = {
    {"restart", no_argument, NULL, OPT_RESTART},
    {"signal", required_argument, NULL, OPT_SIGNAL},
    {"wait", required_argument, NULL, CLI_OPT_WAIT},
    {"grace", required_argument, NULL, OPT_GRACE},
    {NULL, 0, NULL, 0}};

int cli_cmd_exec(int argc, char **argv)
{
    cli_common common;
    exec_options o = {.wait_s = 60, .grace_s = 10};
    int rc;
    alm_client *client = NULL;
    alm_config *cfg = NULL;

    /* Options may come anywhere before "--"; getopt stops there, so CMD's options stay CMD's
     * (and moves APP and PROFILES to just after it). */
    cli_command command = {"exec", exec_flags, exec_option, &o, help};
    if ((rc = cli_parse_options(&command, &common, argc, argv)) >= 0)
        return rc;
    rc = CLI_EXIT_OK;
    int restart = o.restart, sig = o.sig;
    unsigned long wait_s = o.wait_s, grace_s = o.grace_s;
    /* APP PROFILES, then (after an optional "--") the command. */
    if (argc - optind < 2)
        return cli_usage_error("exec", "expected APP PROFILES -- CMD");
    const char *app = argv[optind], *profiles = argv[optind + 1];
    int cmd = optind + 2;
    if (cmd < argc && strcmp(argv[cmd], "--") == 0)
        cmd++;
    if (cmd >= argc)
        return cli_usage_error("exec", "no command given after APP PROFILES --");
    if (restart && sig)
        return cli_usage_error("exec", "give --restart or --signal, not both");

    if ((rc = cli_client_new(&client, &common, app, profiles, 1)) != 0)
        goto out;
    int error = alm_client_fetch(&cfg, client);
    if (error < 0) {
        rc = cli_fail(error, NULL);
        goto out;
    }
    cli_warn_if_stale(cfg, &common);
    if (!restart && !sig) {
        char **env = build_env(cfg);
        if (env == NULL) {
            fprintf(stderr, "almanac: out of memory\n");
            rc = CLI_EXIT_ERROR;
            goto out;
        }
        alm_config_free(cfg);
        alm_client_free(client);
        return become(argv + cmd, env);
    }
    rc = supervise(client, cfg, argv + cmd, restart, sig, (unsigned int)wait_s,
                   (unsigned int)grace_s);
out:
    alm_config_free(cfg);
    alm_client_free(client);
    return rc;
}
