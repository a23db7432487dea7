/*
 * render — `almanac render APP PROFILES --out-dir DIR`: writes the configuration (the
 * Environment in the chosen formats, and the repository files named by --file) into DIR the way
 * the kubelet writes a ConfigMap volume (render_dir.c), and with --watch keeps it current.
 *
 * A version is the whole set: every format and every file, fetched together, the files pinned
 * to the commit the Environment came from so that one set never mixes two commits. Each new set
 * is staged in a folder of its own, checked by --check before anyone can see it, swapped in with
 * one rename, verified by --on-change (swapped back when that fails), and reported in
 * DIR/..status. A set equal to the one in use, or to one already refused, is not applied again:
 * a refused commit is retried only when a newer version arrives.
 *
 * With --watch, one thread follows the Environment (alm_watch) and one per --file follows that
 * file's rendered bytes (alm_client_poll_file); they only say "something moved". One updater
 * thread then fetches the set and applies it, so a commit that wakes several of them still
 * makes one update.
 */
#include "cli.h"
#include "render_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
    OPT_OUT_DIR = CLI_OPT_COMMAND_BASE,
    OPT_FORMAT,
    OPT_WATCH,
    OPT_ON_CHANGE,
    OPT_COUNT,
    OPT_MODE,
    OPT_FILE,
    OPT_CHECK,
    OPT_NO_REVERT,
    OPT_LAYOUT
};

#define MAX_FORMATS 4
#define MAX_FILES 32
#define MAX_ITEMS (MAX_FORMATS + MAX_FILES)
#define OUTPUT_TAIL 2048 /* bytes of a command's output kept for the log and ..status */
#define MAX_RETRY_S 30

static const char *const extensions[] = {
    [CLI_FORMAT_PROPERTIES] = "properties",
    [CLI_FORMAT_YAML] = "yml",
    [CLI_FORMAT_JSON] = "json",
    [CLI_FORMAT_ENV] = "env",
};

/* One version of everything rendered. */
typedef struct rset {
    alm_config *cfg;
    char *outputs[MAX_FORMATS]; /* the formats, rendered */
    size_t output_len[MAX_FORMATS];
    alm_buf files[MAX_FILES];
} rset;

/* What a watcher thread shares with the updater; outlives the command when a watcher is
 * still blocked in a long-poll at exit (the library cannot interrupt alm_client_poll_file). */
typedef struct hub {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool dirty;
    bool stopping;
} hub;

typedef struct file_watcher {
    hub *hub;
    alm_client *client;
    const char *path;
    unsigned int wait_s;
} file_watcher;

typedef struct render_job {
    const char *dir;
    const char *app;
    const char *profiles;
    cli_format formats[MAX_FORMATS];
    size_t nformats;
    mode_t mode;
    rdir_layout layout;
    const char *on_change;
    const char *check;
    bool no_revert;
    const char *files[MAX_FILES]; /* --file: repository paths, written under their base name */
    size_t nfiles;
    const cli_common *common;
    alm_client *fetch_client; /* the Environment, for every set (the watch owns its own) */
    alm_client *file_client;  /* files when no commit is known to pin them to */
    rset deployed;            /* the set in use (cfg NULL: none yet) */
    rset refused;             /* the last set refused (cfg NULL: none) */
    json_t *status;           /* what ..status says */
    /* --watch */
    hub *hub;
    unsigned long count;
    unsigned long rendered;
    pthread_t main_thread; /* told with SIGUSR1 when --count versions are done */
} render_job;

static void help(const char *command)
{
    (void)command;
    printf("usage: almanac render APP PROFILES --out-dir DIR [--format F[,F…]] [--file PATH]…\n"
           "                      [--watch] [--check CMD] [--on-change CMD] [options]\n\n"
           "Writes the configuration into DIR as the kubelet writes a ConfigMap volume: the\n"
           "files live in a timestamped folder, DIR/..data points at the current one and is\n"
           "swapped with one rename, and DIR/APP.yml (etc.) link through ..data. Readers that\n"
           "resolve ..data once never see two versions mixed. DIR/..status (JSON) says which\n"
           "version is served and which was refused, why and when.\n\n"
           "  --out-dir DIR    the directory to keep (created if missing)\n"
           "  --format F,…     yaml (default), json, properties, env: APP.yml, APP.json, …\n"
           "  --file PATH      also write this repository file (placeholders resolved) as\n"
           "                   DIR/BASENAME; repeatable; --watch follows it too\n"
           "  --mode OCTAL     permissions of the files (default 0600: they may hold secrets)\n"
           "  --layout L       symlinks (default: DIR/NAME -> ..data/NAME) or files (real\n"
           "                   files, each replaced with one rename, for programs that cannot\n"
           "                   follow links)\n"
           "  --watch          keep DIR current until interrupted; one update per new version\n"
           "  --check CMD      run CMD with /bin/sh before a version is swapped in, with env\n"
           "                   ALMANAC_RENDER_DIR naming the staged folder; non-zero refuses\n"
           "                   the version (the current one stays; retried only when a newer\n"
           "                   version arrives)\n"
           "  --on-change CMD  run CMD with /bin/sh after each update made by --watch (env\n"
           "                   ALMANAC_RENDER_DIR names the folder now in use); non-zero swaps\n"
           "                   the previous version back and runs CMD again\n"
           "  --no-revert      keep a version whose --on-change failed\n"
           "  --wait S         seconds one long-poll waits on the server (default 60)\n"
           "  --count N        with --watch: exit after N versions (the first one included)\n\n"
           "Both commands also get env ALMANAC_RENDER_VERSION, the commit of the version.\n\n"
           "%s",
           cli_common_help);
}

static int parse_formats(render_job *job, const char *list)
{
    char buf[128];
    if (strlen(list) >= sizeof(buf))
        return -1;
    strcpy(buf, list);
    job->nformats = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        cli_format f;
        if (cli_parse_format(&f, t) < 0 || job->nformats == MAX_FORMATS)
            return -1;
        for (size_t i = 0; i < job->nformats; i++) {
            if (job->formats[i] == f)
                return -1;
        }
        job->formats[job->nformats++] = f;
    }
    return job->nformats > 0 ? 0 : -1;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash != NULL ? slash + 1 : path;
}

/* The i-th stable name: the formats' APP.ext first, then the files' base names. */
static int stable_name(char *buf, size_t size, const render_job *job, size_t i)
{
    int n = i < job->nformats
                ? snprintf(buf, size, "%s.%s", job->app, extensions[job->formats[i]])
                : snprintf(buf, size, "%s", base_name(job->files[i - job->nformats]));
    return n > 0 && (size_t)n < size ? 0 : -1;
}

static void now_iso(char out[32])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- sets ------------------------------------------------------------------------------- */

static void rset_dispose(rset *s)
{
    alm_config_free(s->cfg);
    for (size_t i = 0; i < MAX_FORMATS; i++)
        free(s->outputs[i]);
    for (size_t i = 0; i < MAX_FILES; i++)
        alm_buf_dispose(&s->files[i]);
    memset(s, 0, sizeof(*s));
}

static void rset_move(rset *to, rset *from)
{
    rset_dispose(to);
    *to = *from;
    memset(from, 0, sizeof(*from));
}

/* Equal when every byte that would be written is: the rendered formats and files. */
static bool rset_equal(const render_job *job, const rset *a, const rset *b)
{
    if (a->cfg == NULL || b->cfg == NULL)
        return false;
    for (size_t i = 0; i < job->nformats; i++)
        if (a->output_len[i] != b->output_len[i] ||
            (a->output_len[i] > 0 && memcmp(a->outputs[i], b->outputs[i], a->output_len[i]) != 0))
            return false;
    for (size_t i = 0; i < job->nfiles; i++)
        if (a->files[i].size != b->files[i].size ||
            (a->files[i].size > 0 && memcmp(a->files[i].ptr, b->files[i].ptr, a->files[i].size) != 0))
            return false;
    return true;
}

static const char *rset_version(const rset *s)
{
    return s->cfg != NULL ? alm_config_version(s->cfg) : NULL;
}

/* The formats rendered into memory. */
static int render_outputs(const render_job *job, rset *s)
{
    for (size_t i = 0; i < job->nformats; i++) {
        FILE *f = open_memstream(&s->outputs[i], &s->output_len[i]);
        if (f == NULL) {
            fprintf(stderr, "almanac: out of memory\n");
            return CLI_EXIT_ERROR;
        }
        int rc = cli_render(f, s->cfg, job->formats[i]);
        if (fclose(f) != 0 && rc == CLI_EXIT_OK)
            rc = CLI_EXIT_ERROR;
        if (rc != CLI_EXIT_OK)
            return rc;
    }
    return CLI_EXIT_OK;
}

/*
 * Fetches the set: the Environment, then each file at the commit it came from (a client
 * pinned to that commit), so a commit landing in between cannot mix two versions.
 */
static int fetch_set(render_job *job, rset *s)
{
    int rc = CLI_EXIT_OK;
    alm_client *pinned = NULL;
    memset(s, 0, sizeof(*s));
    int error = alm_client_fetch(&s->cfg, job->fetch_client);
    if (error < 0)
        return cli_fail(error, NULL);
    if ((rc = render_outputs(job, s)) != CLI_EXIT_OK)
        goto out;
    const char *version = alm_config_version(s->cfg);
    alm_client *files = job->file_client;
    if (job->nfiles > 0 && version != NULL && !alm_config_is_stale(s->cfg)) {
        cli_common common = *job->common;
        common.label = version;
        common.cache_file = NULL;
        if ((rc = cli_client_new(&pinned, &common, job->app, job->profiles, 1)) != CLI_EXIT_OK)
            goto out;
        files = pinned;
    }
    for (size_t i = 0; i < job->nfiles; i++) {
        if ((error = alm_client_fetch_file(&s->files[i], files, job->files[i])) < 0) {
            rc = cli_fail(error, job->files[i]);
            goto out;
        }
    }
out:
    alm_client_free(pinned);
    if (rc != CLI_EXIT_OK)
        rset_dispose(s);
    return rc;
}

static size_t rset_items(const render_job *job, const rset *s, rdir_item *items)
{
    size_t n = 0;
    for (size_t i = 0; i < job->nformats + job->nfiles; i++, n++) {
        stable_name(items[n].name, sizeof(items[n].name), job, i);
        if (i < job->nformats) {
            items[n].data = s->outputs[i];
            items[n].len = s->output_len[i];
        } else {
            items[n].data = s->files[i - job->nformats].ptr;
            items[n].len = s->files[i - job->nformats].size;
        }
    }
    return n;
}

/* ---- commands ---------------------------------------------------------------------------- */

typedef struct cmd_result {
    int code; /* exit status, 128 + signal, or -1 when it could not run */
    char tail[OUTPUT_TAIL + 1];
} cmd_result;

/* Keeps the last OUTPUT_TAIL bytes seen. */
static void tail_append(cmd_result *r, size_t *len, const char *data, size_t n)
{
    if (n >= OUTPUT_TAIL) {
        memcpy(r->tail, data + n - OUTPUT_TAIL, OUTPUT_TAIL);
        *len = OUTPUT_TAIL;
    } else {
        if (*len + n > OUTPUT_TAIL) {
            size_t drop = *len + n - OUTPUT_TAIL;
            memmove(r->tail, r->tail + drop, *len - drop);
            *len -= drop;
        }
        memcpy(r->tail + *len, data, n);
        *len += n;
    }
    r->tail[*len] = '\0';
}

/*
 * Runs `/bin/sh -c cmd` with ALMANAC_RENDER_DIR and ALMANAC_RENDER_VERSION set, its output
 * passed on to stderr and its tail kept.
 */
static void run_command(cmd_result *r, const char *what, const char *cmd, const char *folder,
                        const char *version)
{
    int fds[2];
    size_t len = 0;
    memset(r, 0, sizeof(*r));
    r->code = -1;
    fflush(stdout);
    fflush(stderr);
    if (pipe(fds) < 0) {
        snprintf(r->tail, sizeof(r->tail), "cannot run %s: %s", what, strerror(errno));
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        setenv("ALMANAC_RENDER_DIR", folder, 1);
        setenv("ALMANAC_RENDER_VERSION", version ? version : "", 1);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        snprintf(r->tail, sizeof(r->tail), "cannot run %s: %s", what, strerror(errno));
        return;
    }
    char buf[4096];
    for (;;) {
        ssize_t n = read(fds[0], buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        fwrite(buf, 1, (size_t)n, stderr);
        tail_append(r, &len, buf, (size_t)n);
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return;
    }
    r->code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The last few lines of a command's output, for one log line. */
static const char *last_lines(const char *text, int lines)
{
    const char *end = text + strlen(text);
    while (end > text && end[-1] == '\n')
        end--;
    const char *p = end;
    while (p > text && lines > 0) {
        p--;
        if (*p == '\n')
            lines--;
    }
    return p > text ? p + 1 : text;
}

/* ---- status ----------------------------------------------------------------------------- */

static void status_write(render_job *job)
{
    char now[32];
    now_iso(now);
    json_object_set_new(job->status, "updated", json_string(now));
    rdir_write_status(job->dir, job->status);
}

static void status_served(render_job *job, const char *folder_name)
{
    char now[32];
    now_iso(now);
    const char *version = rset_version(&job->deployed);
    json_object_set_new(job->status, "served",
                        json_pack("{s:s?, s:s?, s:s, s:s}", "version", version, "etag",
                                  alm_config_etag(job->deployed.cfg), "folder", folder_name,
                                  "since", now));
}

/* Records a refused version: in ..status, on stderr, and as the set not to try again. */
static void refuse(render_job *job, rset *s, const char *stage, const cmd_result *r,
                   const char *outcome)
{
    char now[32], reason[256];
    now_iso(now);
    const char *version = rset_version(s);
    if (r->code < 0)
        snprintf(reason, sizeof(reason), "%s could not run", stage);
    else
        snprintf(reason, sizeof(reason), "%s exited with status %d", stage, r->code);
    fprintf(stderr, "almanac: version %s refused: %s; %s\n", version ? version : "(unknown)",
            reason, outcome);
    const char *tail = last_lines(r->tail, 10);
    if (*tail)
        fprintf(stderr, "almanac: last output of %s:\n%s\n", stage, tail);
    json_object_set_new(job->status, "refused",
                        json_pack("{s:s?, s:s?, s:s, s:s, s:i, s:s, s:s, s:s}", "version",
                                  version, "etag", alm_config_etag(s->cfg), "stage", stage,
                                  "reason", reason, "exitCode", r->code, "output",
                                  last_lines(r->tail, 20), "outcome", outcome, "at", now));
    status_write(job);
    rset_move(&job->refused, s);
}

/* ---- one update ------------------------------------------------------------------------- */

/*
 * Stages s, checks it, swaps it in and verifies it. Takes s over. CLI_EXIT_OK when s is in use
 * (or was refused: the directory is as good as before), an exit code when DIR could not be
 * written.
 */
static int apply_set(render_job *job, rset *s, bool run_on_change)
{
    rdir_item items[MAX_ITEMS];
    char folder[RDIR_PATH_MAX], previous[RDIR_NAME_MAX];
    cmd_result r;
    int rc = CLI_EXIT_OK;
    size_t n = rset_items(job, s, items);
    const char *version = rset_version(s);

    if (rdir_check_names(job->dir, items, n) < 0 ||
        rdir_stage(folder, job->dir, items, n, job->mode) < 0) {
        rc = CLI_EXIT_ERROR;
        goto out;
    }
    const char *folder_name = strrchr(folder, '/') + 1;
    rdir_current(previous, job->dir);
    if (job->check != NULL) {
        run_command(&r, "--check", job->check, folder, version);
        if (r.code != 0) {
            rdir_remove_folder(folder);
            refuse(job, s, "--check", &r,
                   previous[0] ? "the version in use stays" : "nothing is served yet");
            goto out;
        }
    }
    if (rdir_publish(job->dir, folder_name, items, n, job->layout) < 0) {
        rc = CLI_EXIT_ERROR;
        goto out;
    }
    if (run_on_change && job->on_change != NULL) {
        char live[RDIR_PATH_MAX];
        snprintf(live, sizeof(live), "%s/%s", job->dir, folder_name);
        run_command(&r, "--on-change", job->on_change, live, version);
        if (r.code != 0 && !job->no_revert && previous[0] != '\0') {
            /* The reload failed: put the previous version back and reload that. */
            rset_items(job, &job->deployed, items);
            if (rdir_publish(job->dir, previous, items, n, job->layout) < 0) {
                rc = CLI_EXIT_ERROR;
                goto out;
            }
            rdir_remove_folder(folder);
            cmd_result again;
            snprintf(live, sizeof(live), "%s/%s", job->dir, previous);
            run_command(&again, "--on-change", job->on_change, live,
                        rset_version(&job->deployed));
            refuse(job, s, "--on-change", &r,
                   again.code == 0 ? "swapped back to the previous version, --on-change passed"
                                   : "swapped back to the previous version, --on-change failed "
                                     "again");
            goto out;
        }
        if (r.code != 0) {
            fprintf(stderr, "almanac: warning: --on-change failed (status %d); keeping version %s\n",
                    r.code, version ? version : "(unknown)");
            char now[32];
            now_iso(now);
            json_object_set_new(job->status, "lastOnChangeFailure",
                                json_pack("{s:s?, s:i, s:s, s:s}", "version", version, "exitCode",
                                          r.code, "output", last_lines(r.tail, 20), "at", now));
        }
    }
    rdir_remove_old(job->dir, folder_name);
    rset_move(&job->deployed, s);
    /* A version in use is newer than any refused before it. */
    rset_dispose(&job->refused);
    json_object_set_new(job->status, "refused", json_null());
    status_served(job, folder_name);
    status_write(job);
out:
    rset_dispose(s);
    return rc;
}

/* ---- watching --------------------------------------------------------------------------- */

static void mark_dirty(hub *h)
{
    pthread_mutex_lock(&h->lock);
    h->dirty = true;
    pthread_cond_broadcast(&h->wake);
    pthread_mutex_unlock(&h->lock);
}

/* Runs on the library's watch thread: the Environment moved. */
static void on_env_change(const alm_config *old_cfg, const alm_config *new_cfg,
                          const alm_diff *diff, void *payload)
{
    (void)old_cfg;
    (void)new_cfg;
    (void)diff;
    mark_dirty(payload);
}

/* Waits up to `seconds`, returning early (true) when the command stops. */
static bool hub_sleep(hub *h, unsigned seconds)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += seconds;
    pthread_mutex_lock(&h->lock);
    while (!h->stopping && pthread_cond_timedwait(&h->wake, &h->lock, &until) == 0)
        ;
    bool stopping = h->stopping;
    pthread_mutex_unlock(&h->lock);
    return stopping;
}

static bool hub_stopping(hub *h)
{
    pthread_mutex_lock(&h->lock);
    bool stopping = h->stopping;
    pthread_mutex_unlock(&h->lock);
    return stopping;
}

/* One --file: long-polls its rendered bytes and says when they moved. */
static void *file_watch_thread(void *arg)
{
    file_watcher *fw = arg;
    char *etag = NULL;
    unsigned backoff = 1;
    while (!hub_stopping(fw->hub)) {
        alm_buf body = {NULL, 0}, tag = {NULL, 0};
        int error = alm_client_poll_file(&body, &tag, fw->client, fw->path, etag, fw->wait_s);
        if (error < 0) {
            fprintf(stderr, "almanac: watching %s: %s; retrying in %u s\n", fw->path,
                    alm_error_last()->message, backoff);
            if (hub_sleep(fw->hub, backoff))
                break;
            backoff = backoff * 2 > MAX_RETRY_S ? MAX_RETRY_S : backoff * 2;
            continue;
        }
        backoff = 1;
        alm_buf_dispose(&body);
        if (tag.ptr == NULL)
            continue; /* the timeout: unchanged */
        free(etag);
        etag = tag.ptr;
        /* The first answer too: a commit may have landed since the set was fetched. */
        mark_dirty(fw->hub);
    }
    free(etag);
    return NULL;
}

/* Fetches and applies sets while something moved, until the command stops. */
static void *updater_thread(void *arg)
{
    render_job *job = arg;
    hub *h = job->hub;
    unsigned backoff = 1;
    pthread_mutex_lock(&h->lock);
    while (!h->stopping) {
        if (!h->dirty) {
            pthread_cond_wait(&h->wake, &h->lock);
            continue;
        }
        h->dirty = false;
        pthread_mutex_unlock(&h->lock);

        rset s;
        int rc = fetch_set(job, &s);
        if (rc != CLI_EXIT_OK) {
            /* The wake-up must not be lost: try again after a pause. */
            fprintf(stderr, "almanac: retrying in %u s\n", backoff);
            bool stop = hub_sleep(h, backoff);
            backoff = backoff * 2 > MAX_RETRY_S ? MAX_RETRY_S : backoff * 2;
            pthread_mutex_lock(&h->lock);
            h->dirty = !stop;
            continue;
        }
        backoff = 1;
        bool applied = false;
        if (rset_equal(job, &s, &job->deployed) || rset_equal(job, &s, &job->refused)) {
            rset_dispose(&s);
        } else {
            apply_set(job, &s, true); /* a failed update keeps the previous version */
            applied = true;
        }
        pthread_mutex_lock(&h->lock);
        if (applied) {
            job->rendered++;
            if (job->count != 0 && job->rendered >= job->count)
                pthread_kill(job->main_thread, SIGUSR1);
        }
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

static hub *hub_new(void)
{
    hub *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->wake, NULL);
    return h;
}

static hub *hub_kept_for_file_watchers;

static void hub_free(hub *h)
{
    if (h == NULL)
        return;
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->wake);
    free(h);
}

/*
 * Follows the Environment and every file until SIGTERM, SIGINT or --count. The file watchers'
 * clients and the hub are left to the process's exit: a watcher may be blocked in a long-poll
 * that only the server's timeout ends.
 */
static int watch_loop(render_job *job, alm_client *client, alm_config *initial,
                      unsigned long wait_s)
{
    int rc = CLI_EXIT_OK;
    alm_watch *w = NULL;
    pthread_t updater;
    bool updater_started = false;

    /*
     * As a sidecar this is often PID 1, where an unhandled SIGTERM is ignored: wait for it
     * explicitly. Blocked before any thread starts, so only sigwait below receives it.
     */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    job->main_thread = pthread_self();
    if ((job->hub = hub_new()) == NULL) {
        fprintf(stderr, "almanac: out of memory\n");
        return CLI_EXIT_ERROR;
    }
    if (pthread_create(&updater, NULL, updater_thread, job) != 0) {
        fprintf(stderr, "almanac: cannot start a thread\n");
        hub_free(job->hub);
        job->hub = NULL;
        return CLI_EXIT_ERROR;
    }
    updater_started = true;
    for (size_t i = 0; i < job->nfiles; i++) {
        file_watcher *fw = calloc(1, sizeof(*fw));
        pthread_t t;
        if (fw == NULL) {
            rc = CLI_EXIT_ERROR;
            goto out;
        }
        fw->hub = job->hub;
        fw->path = job->files[i];
        fw->wait_s = (unsigned int)wait_s;
        if ((rc = cli_client_new(&fw->client, job->common, job->app, job->profiles, 1)) != 0) {
            free(fw);
            goto out;
        }
        if (pthread_create(&t, NULL, file_watch_thread, fw) != 0) {
            fprintf(stderr, "almanac: cannot start a thread\n");
            rc = CLI_EXIT_ERROR;
            goto out;
        }
        pthread_detach(t);
    }
    alm_watch_options wopts = ALM_WATCH_OPTIONS_INIT;
    wopts.on_change = on_env_change;
    wopts.payload = job->hub;
    wopts.poll_timeout_s = (unsigned int)wait_s;
    int error = alm_watch_start(&w, client, initial, &wopts);
    if (error < 0) {
        rc = cli_fail(error, NULL);
        goto out;
    }
    int sig = 0;
    while (sigwait(&stop_signals, &sig) != 0)
        ;
out:
    pthread_mutex_lock(&job->hub->lock);
    job->hub->stopping = true;
    pthread_cond_broadcast(&job->hub->wake);
    pthread_mutex_unlock(&job->hub->lock);
    if (updater_started)
        pthread_join(updater, NULL);
    alm_watch_free(w);
    if (job->nfiles == 0) {
        hub_free(job->hub);
    } else {
        /* File watchers may still sit in a long-poll and use the hub until the process exits:
         * it stays alive, held where a leak checker sees it. */
        hub_kept_for_file_watchers = job->hub;
    }
    job->hub = NULL;
    return rc;
}

typedef struct render_options {
    render_job *job;
    int watch;
    unsigned long wait_s;
} render_options;

static int render_option(void *ctx, int opt, const char *arg)
{
    render_options *o = ctx;
    char *end = NULL;
    switch (opt) {
    case OPT_OUT_DIR:
        o->job->dir = arg;
        break;
    case OPT_FORMAT:
        if (parse_formats(o->job, arg) < 0)
            return cli_usage_error("render",
                                   "bad --format '%s' (a list of yaml, json, "
                                   "properties, env, each once)",
                                   arg);
        break;
    case OPT_WATCH:
        o->watch = 1;
        break;
    case OPT_ON_CHANGE:
        o->job->on_change = arg;
        break;
    case OPT_CHECK:
        o->job->check = arg;
        break;
    case OPT_NO_REVERT:
        o->job->no_revert = true;
        break;
    case OPT_LAYOUT:
        if (strcmp(arg, "symlinks") == 0)
            o->job->layout = RDIR_LAYOUT_SYMLINKS;
        else if (strcmp(arg, "files") == 0)
            o->job->layout = RDIR_LAYOUT_FILES;
        else
            return cli_usage_error("render", "--layout is symlinks or files");
        break;
    case OPT_COUNT:
        errno = 0;
        o->job->count = strtoul(arg, &end, 10);
        if (errno != 0 || *end != '\0' || arg[0] == '-' || o->job->count == 0)
            return cli_usage_error("render", "--count takes a positive number");
        break;
    case OPT_MODE:
        errno = 0;
        unsigned long mode = strtoul(arg, &end, 8);
        if (errno != 0 || *end != '\0' || mode > 0777 || (mode & 0400) == 0)
            return cli_usage_error("render", "--mode takes octal permissions the owner "
                                             "can read, like 0600 or 0644");
        o->job->mode = (mode_t)mode;
        break;
    case OPT_FILE: {
        const char *base = base_name(arg);
        if (o->job->nfiles == MAX_FILES)
            return cli_usage_error("render", "at most %d --file", MAX_FILES);
        if (*base == '\0' || base[0] == '.' || arg[0] == '/' || strstr(arg, "//") ||
            strncmp(arg, "../", 3) == 0 || strncmp(arg, "./", 2) == 0 ||
            strstr(arg, "/../") || strstr(arg, "/./"))
            return cli_usage_error("render",
                                   "--file '%s' must be a relative path to a "
                                   "file, without '.' or '..'",
                                   arg);
        if (strlen(base) >= RDIR_NAME_MAX)
            return cli_usage_error("render", "--file '%s': name too long", arg);
        o->job->files[o->job->nfiles++] = arg;
        break;
    }
    case CLI_OPT_WAIT:
        if (cli_parse_seconds(&o->wait_s, arg) < 0)
            return cli_usage_error("render", "--wait takes 1-3600 seconds");
        break;
    default:
        return CLI_OPTION_UNKNOWN;
    }
    return CLI_OPTION_TAKEN;
}

static const struct option render_flags[] = {
    {"out-dir", required_argument, NULL, OPT_OUT_DIR},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"watch", no_argument, NULL, OPT_WATCH},
    {"on-change", required_argument, NULL, OPT_ON_CHANGE},
    {"count", required_argument, NULL, OPT_COUNT},
    {"mode", required_argument, NULL, OPT_MODE},
    {"file", required_argument, NULL, OPT_FILE},
    {"check", required_argument, NULL, OPT_CHECK},
    {"no-revert", no_argument, NULL, OPT_NO_REVERT},
    {"layout", required_argument, NULL, OPT_LAYOUT},
    {"wait", required_argument, NULL, CLI_OPT_WAIT},
    {NULL, 0, NULL, 0}};

int cli_cmd_render(int argc, char **argv)
{
    cli_common common;
    render_job job = {.formats = {CLI_FORMAT_YAML}, .nformats = 1, .mode = 0600};
    render_options o = {.job = &job, .wait_s = 60};
    int rc;
    alm_client *client = NULL;

    cli_command cmd = {"render", render_flags, render_option, &o, help};
    if ((rc = cli_parse_options(&cmd, &common, argc, argv)) >= 0)
        return rc;
    rc = CLI_EXIT_OK;
    int watch = o.watch;
    unsigned long wait_s = o.wait_s;
    if (argc - optind != 2)
        return cli_usage_error("render", "expected APP and PROFILES, got %d argument(s)",
                               argc - optind);
    if (job.dir == NULL)
        return cli_usage_error("render", "--out-dir is required");
    job.app = argv[optind];
    job.profiles = argv[optind + 1];
    job.common = &common;
    if (strchr(job.app, '/') != NULL || strcmp(job.app, "..") == 0 || job.app[0] == '.' ||
        strlen(job.app) > 200)
        return cli_usage_error("render", "APP '%s' cannot name a file", job.app);
    for (size_t i = 0; i < job.nformats + job.nfiles; i++) {
        for (size_t j = 0; j < i; j++) {
            char a[RDIR_NAME_MAX], b[RDIR_NAME_MAX];
            if (stable_name(a, sizeof(a), &job, i) < 0 || stable_name(b, sizeof(b), &job, j) < 0)
                return CLI_EXIT_USAGE;
            if (strcmp(a, b) == 0)
                return cli_usage_error("render", "two outputs would both be named '%s'", a);
        }
    }

    if ((job.status = json_object()) == NULL) {
        fprintf(stderr, "almanac: out of memory\n");
        return CLI_EXIT_ERROR;
    }
    json_object_set_new(job.status, "served", json_null());
    json_object_set_new(job.status, "refused", json_null());
    if ((rc = cli_client_new(&job.fetch_client, &common, job.app, job.profiles, 1)) != 0)
        goto out;
    if (job.nfiles > 0 &&
        (rc = cli_client_new(&job.file_client, &common, job.app, job.profiles, 1)) != 0)
        goto out;
    rset first;
    if ((rc = fetch_set(&job, &first)) != CLI_EXIT_OK)
        goto out;
    cli_warn_if_stale(first.cfg, &common);
    /* Kept for the watch's starting point, whatever apply_set does with the set. */
    alm_config *initial = alm_config_retain(first.cfg);
    if ((rc = apply_set(&job, &first, false)) != CLI_EXIT_OK) {
        alm_config_free(initial);
        goto out;
    }
    if (job.deployed.cfg == NULL && !watch) {
        alm_config_free(initial);
        rc = CLI_EXIT_ERROR; /* refused by --check, and nothing more will come */
        goto out;
    }
    if (!watch || job.count == 1) {
        alm_config_free(initial);
        goto out;
    }
    job.rendered = 1;
    if ((rc = cli_client_new(&client, &common, job.app, job.profiles, 1)) != 0) {
        alm_config_free(initial);
        goto out;
    }
    /* The watch starts from what was fetched, served or refused: only a newer version wakes it. */
    rc = watch_loop(&job, client, initial, wait_s);
    alm_config_free(initial);
out:
    alm_client_free(client);
    rset_dispose(&job.deployed);
    rset_dispose(&job.refused);
    json_decref(job.status);
    alm_client_free(job.file_client);
    alm_client_free(job.fetch_client);
    return rc;
}
