/*
 * render — `almanac render APP PROFILES --out-dir DIR`: writes the configuration into DIR the
 * way the kubelet writes a ConfigMap volume, so a program reading DIR never sees a mix of two
 * versions:
 *
 *   DIR/..2026_11_22_03_44_00.Ab12Cd/APP.yml   one timestamped folder per version
 *   DIR/..data -> ..2026_11_22_03_44_00.Ab12Cd  swapped with a single rename(2)
 *   DIR/APP.yml -> ..data/APP.yml                stable names for readers
 *
 * A reader that resolves ..data once and reads every file through it sees one version; each
 * file is complete before ..data ever points at it. Older folders are removed after the swap.
 * With --watch the directory is kept current through alm_watch, and --on-change runs a shell
 * command after each swap.
 */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
    OPT_FILE
};

#define MAX_FORMATS 4
#define MAX_FILES 32
#define DATA_LINK "..data"
#define DATA_TMP_LINK "..data_tmp"

static const char *const extensions[] = {
    [CLI_FORMAT_PROPERTIES] = "properties",
    [CLI_FORMAT_YAML] = "yml",
    [CLI_FORMAT_JSON] = "json",
    [CLI_FORMAT_ENV] = "env",
};

typedef struct render_job {
    const char *dir;
    const char *app;
    cli_format formats[MAX_FORMATS];
    size_t nformats;
    mode_t mode;
    const char *on_change;
    const char *files[MAX_FILES]; /* --file: repository paths, written under their base name */
    size_t nfiles;
    alm_client *file_client; /* its own client: the watch owns the other one */
    /* --watch */
    pthread_mutex_t lock;
    unsigned long count;
    unsigned long rendered;
    pthread_t main_thread; /* told with SIGUSR1 when --count renders are done */
    int rc;
} render_job;

static void help(void)
{
    printf("usage: almanac render APP PROFILES --out-dir DIR [--format F[,F…]] [--watch]\n"
           "                      [--on-change CMD] [options]\n\n"
           "Writes the configuration into DIR as the kubelet writes a ConfigMap volume: the\n"
           "files live in a timestamped folder, DIR/..data points at the current one and is\n"
           "swapped with one rename, and DIR/APP.yml (etc.) link through ..data. Readers that\n"
           "resolve ..data once never see two versions mixed.\n\n"
           "  --out-dir DIR    the directory to keep (created if missing)\n"
           "  --format F,…     yaml (default), json, properties, env: APP.yml, APP.json, …\n"
           "  --file PATH      also write this repository file (placeholders resolved) as\n"
           "                   DIR/BASENAME; repeatable\n"
           "  --mode OCTAL     permissions of the files (default 0600: they may hold secrets)\n"
           "  --watch          keep DIR current until interrupted\n"
           "  --on-change CMD  run CMD with /bin/sh after each update made by --watch\n"
           "  --wait S         seconds one long-poll waits on the server (default 60)\n"
           "  --count N        with --watch: exit after N versions (the first one included)\n\n"
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

/* snprintf into a path buffer; -1 (with a message) when the path does not fit. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
path_fmt(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size) {
        fprintf(stderr, "almanac: path too long under --out-dir\n");
        return -1;
    }
    return 0;
}

static int fail_errno(const char *what, const char *path)
{
    fprintf(stderr, "almanac: %s %s: %s\n", what, path, strerror(errno));
    return CLI_EXIT_ERROR;
}

static int sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Writes one rendered file into the version folder, complete and synced. */
static int write_one(const render_job *job, const char *folder, const alm_config *cfg,
                     cli_format format)
{
    char path[4096];
    if (path_fmt(path, sizeof(path), "%s/%s.%s", folder, job->app, extensions[format]) < 0)
        return CLI_EXIT_ERROR;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, job->mode);
    if (fd < 0)
        return fail_errno("cannot create", path);
    fchmod(fd, job->mode); /* whatever the umask says */
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        return fail_errno("cannot write", path);
    }
    int rc = cli_render(f, cfg, format);
    if (rc == CLI_EXIT_OK && fsync(fileno(f)) < 0)
        rc = fail_errno("cannot sync", path);
    if (fclose(f) != 0 && rc == CLI_EXIT_OK)
        rc = fail_errno("cannot write", path);
    return rc;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash != NULL ? slash + 1 : path;
}

/* Fetches one repository file and writes it into the version folder under its base name. */
static int write_repo_file(const render_job *job, const char *folder, const char *repo_path)
{
    char path[4096];
    alm_buf buf = {NULL, 0};
    int rc = CLI_EXIT_OK;
    int error = alm_client_fetch_file(&buf, job->file_client, repo_path);
    if (error < 0)
        return cli_fail(error, repo_path);
    if (path_fmt(path, sizeof(path), "%s/%s", folder, base_name(repo_path)) < 0) {
        alm_buf_dispose(&buf);
        return CLI_EXIT_ERROR;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, job->mode);
    if (fd < 0) {
        alm_buf_dispose(&buf);
        return fail_errno("cannot create", path);
    }
    fchmod(fd, job->mode);
    size_t done = 0;
    while (done < buf.size && rc == CLI_EXIT_OK) {
        ssize_t n = write(fd, buf.ptr + done, buf.size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = fail_errno("cannot write", path);
        else
            done += (size_t)n;
    }
    if (rc == CLI_EXIT_OK && fsync(fd) < 0)
        rc = fail_errno("cannot sync", path);
    close(fd);
    alm_buf_dispose(&buf);
    return rc;
}

static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char sub[4096];
            if (path_fmt(sub, sizeof(sub), "%s/%s", path, de->d_name) == 0)
                unlink(sub); /* version folders hold only regular files */
        }
        closedir(d);
    }
    rmdir(path);
}

/* Removes every version folder but `keep` (a name inside dir). */
static void remove_old_versions(const char *dir, const char *keep)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "..", 2) != 0 || strcmp(de->d_name, "..") == 0 ||
            strcmp(de->d_name, DATA_LINK) == 0 || strcmp(de->d_name, DATA_TMP_LINK) == 0 ||
            strcmp(de->d_name, keep) == 0)
            continue;
        char sub[4096];
        if (path_fmt(sub, sizeof(sub), "%s/%s", dir, de->d_name) == 0)
            remove_tree(sub);
    }
    closedir(d);
}

/* Refuses, before anything is written, a stable name that is taken by something not ours. */
/* The i-th stable name: the formats' APP.ext first, then the files' base names. */
static int stable_name(char *buf, size_t size, const render_job *job, size_t i)
{
    if (i < job->nformats)
        return path_fmt(buf, size, "%s.%s", job->app, extensions[job->formats[i]]);
    return path_fmt(buf, size, "%s", base_name(job->files[i - job->nformats]));
}

static int check_names(const render_job *job)
{
    for (size_t i = 0; i < job->nformats + job->nfiles; i++) {
        char name[1024], path[4096];
        struct stat st;
        if (stable_name(name, sizeof(name), job, i) < 0 ||
            path_fmt(path, sizeof(path), "%s/%s", job->dir, name) < 0)
            return CLI_EXIT_ERROR;
        if (lstat(path, &st) == 0 && !S_ISLNK(st.st_mode)) {
            fprintf(stderr,
                    "almanac: %s exists and is not a link; give --out-dir a directory "
                    "only almanac writes to\n",
                    path);
            return CLI_EXIT_ERROR;
        }
    }
    return CLI_EXIT_OK;
}

static int render_once(const render_job *job, const alm_config *cfg)
{
    char folder[4096], link_tmp[4096], link_data[4096], stamp[64];
    int rc = CLI_EXIT_OK;

    if (mkdir(job->dir, 0755) < 0 && errno != EEXIST)
        return fail_errno("cannot create", job->dir);
    if ((rc = check_names(job)) != CLI_EXIT_OK)
        return rc;
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "..%Y_%m_%d_%H_%M_%S", &tm);
    if (path_fmt(folder, sizeof(folder), "%s/%s.XXXXXX", job->dir, stamp) < 0)
        return CLI_EXIT_ERROR;
    if (mkdtemp(folder) == NULL)
        return fail_errno("cannot create a version folder in", job->dir);
    /* mkdtemp makes it 0700: give it the files' mode, with search wherever read is allowed, so
     * --mode 0644 files can be read by another user, as with a ConfigMap volume. */
    mode_t folder_mode = job->mode | ((job->mode & 0444) >> 2);
    if (chmod(folder, folder_mode) < 0)
        return fail_errno("cannot set the permissions of", folder);
    for (size_t i = 0; i < job->nformats && rc == CLI_EXIT_OK; i++)
        rc = write_one(job, folder, cfg, job->formats[i]);
    for (size_t i = 0; i < job->nfiles && rc == CLI_EXIT_OK; i++)
        rc = write_repo_file(job, folder, job->files[i]);
    if (rc == CLI_EXIT_OK && sync_dir(folder) < 0)
        rc = fail_errno("cannot sync", folder);
    if (rc != CLI_EXIT_OK) {
        remove_tree(folder);
        return rc;
    }

    /* The swap: a new link under a temporary name, renamed over ..data in one step. */
    const char *folder_name = strrchr(folder, '/') + 1;
    if (path_fmt(link_tmp, sizeof(link_tmp), "%s/%s", job->dir, DATA_TMP_LINK) < 0 ||
        path_fmt(link_data, sizeof(link_data), "%s/%s", job->dir, DATA_LINK) < 0) {
        remove_tree(folder);
        return CLI_EXIT_ERROR;
    }
    unlink(link_tmp);
    if (symlink(folder_name, link_tmp) < 0 || rename(link_tmp, link_data) < 0) {
        rc = fail_errno("cannot swap", link_data);
        unlink(link_tmp);
        remove_tree(folder);
        return rc;
    }
    /* The stable names, made once; they resolve through ..data ever after. */
    for (size_t i = 0; i < job->nformats + job->nfiles; i++) {
        char name[1024], path[4096], target[1100];
        struct stat st;
        if (stable_name(name, sizeof(name), job, i) < 0 ||
            path_fmt(path, sizeof(path), "%s/%s", job->dir, name) < 0 ||
            path_fmt(target, sizeof(target), "%s/%s", DATA_LINK, name) < 0)
            return CLI_EXIT_ERROR;
        if (lstat(path, &st) == 0)
            continue; /* a link, made by an earlier run (check_names saw to that) */
        if (symlink(target, path) < 0)
            return fail_errno("cannot create", path);
    }
    sync_dir(job->dir);
    remove_old_versions(job->dir, folder_name);
    return CLI_EXIT_OK;
}

static void run_on_change(const render_job *job)
{
    if (job->on_change == NULL)
        return;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", job->on_change, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "almanac: warning: --on-change command failed (status %d)\n",
                WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* Runs on the library's watch thread. */
static void on_change(const alm_config *old_cfg, const alm_config *new_cfg, const alm_diff *diff,
                      void *payload)
{
    render_job *job = payload;
    (void)old_cfg;
    (void)diff;
    int rc = render_once(job, new_cfg);
    if (rc == CLI_EXIT_OK)
        run_on_change(job);
    pthread_mutex_lock(&job->lock);
    job->rendered++;
    /* A failed update keeps the previous version in place; --watch goes on. */
    if (job->count != 0 && job->rendered >= job->count)
        pthread_kill(job->main_thread, SIGUSR1);
    pthread_mutex_unlock(&job->lock);
}

int cli_cmd_render(int argc, char **argv)
{
    static const struct option options[] = {{"out-dir", required_argument, NULL, OPT_OUT_DIR},
                                            {"format", required_argument, NULL, OPT_FORMAT},
                                            {"watch", no_argument, NULL, OPT_WATCH},
                                            {"on-change", required_argument, NULL, OPT_ON_CHANGE},
                                            {"count", required_argument, NULL, OPT_COUNT},
                                            {"mode", required_argument, NULL, OPT_MODE},
                                            {"file", required_argument, NULL, OPT_FILE},
                                            {"wait", required_argument, NULL, CLI_OPT_WAIT},
                                            CLI_COMMON_LONG_OPTIONS,
                                            {NULL, 0, NULL, 0}};
    cli_common common;
    render_job job = {.formats = {CLI_FORMAT_YAML}, .nformats = 1, .mode = 0600};
    int watch = 0, rc = CLI_EXIT_OK, opt;
    unsigned long wait_s = 60;
    alm_client *client = NULL;
    alm_config *cfg = NULL;
    alm_watch *w = NULL;
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
        switch (opt) {
        case OPT_OUT_DIR:
            job.dir = optarg;
            break;
        case OPT_FORMAT:
            if (parse_formats(&job, optarg) < 0)
                return cli_usage_error("render",
                                       "bad --format '%s' (a list of yaml, json, "
                                       "properties, env, each once)",
                                       optarg);
            break;
        case OPT_WATCH:
            watch = 1;
            break;
        case OPT_ON_CHANGE:
            job.on_change = optarg;
            break;
        case OPT_COUNT:
            errno = 0;
            job.count = strtoul(optarg, &end, 10);
            if (errno != 0 || *end != '\0' || optarg[0] == '-' || job.count == 0)
                return cli_usage_error("render", "--count takes a positive number");
            break;
        case OPT_MODE:
            errno = 0;
            unsigned long mode = strtoul(optarg, &end, 8);
            if (errno != 0 || *end != '\0' || mode > 0777 || (mode & 0400) == 0)
                return cli_usage_error("render", "--mode takes octal permissions the owner "
                                                 "can read, like 0600 or 0644");
            job.mode = (mode_t)mode;
            break;
        case OPT_FILE: {
            const char *base = base_name(optarg);
            if (job.nfiles == MAX_FILES)
                return cli_usage_error("render", "at most %d --file", MAX_FILES);
            if (*base == '\0' || base[0] == '.' || optarg[0] == '/' || strstr(optarg, "//") ||
                strncmp(optarg, "../", 3) == 0 || strncmp(optarg, "./", 2) == 0 ||
                strstr(optarg, "/../") || strstr(optarg, "/./"))
                return cli_usage_error("render",
                                       "--file '%s' must be a relative path to a "
                                       "file, without '.' or '..'",
                                       optarg);
            job.files[job.nfiles++] = optarg;
            break;
        }
        case CLI_OPT_WAIT:
            if (cli_parse_seconds(&wait_s, optarg) < 0)
                return cli_usage_error("render", "--wait takes 1-3600 seconds");
            break;
        case ':':
            return cli_usage_error("render", "%s needs a value", argv[optind - 1]);
        default:
            return cli_usage_error("render", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 2)
        return cli_usage_error("render", "expected APP and PROFILES, got %d argument(s)",
                               argc - optind);
    if (job.dir == NULL)
        return cli_usage_error("render", "--out-dir is required");
    job.app = argv[optind];
    if (strchr(job.app, '/') != NULL || strcmp(job.app, "..") == 0 || job.app[0] == '.')
        return cli_usage_error("render", "APP '%s' cannot name a file", job.app);
    for (size_t i = 0; i < job.nformats + job.nfiles; i++) {
        for (size_t j = 0; j < i; j++) {
            char a[1024], b[1024];
            if (stable_name(a, sizeof(a), &job, i) < 0 || stable_name(b, sizeof(b), &job, j) < 0)
                return CLI_EXIT_USAGE;
            if (strcmp(a, b) == 0)
                return cli_usage_error("render", "two outputs would both be named '%s'", a);
        }
    }

    if ((rc = cli_client_new(&client, &common, argv[optind], argv[optind + 1], 1)) != 0)
        goto out;
    if (job.nfiles > 0 &&
        (rc = cli_client_new(&job.file_client, &common, argv[optind], argv[optind + 1], 1)) != 0)
        goto out;
    int error = alm_client_fetch(&cfg, client);
    if (error < 0) {
        rc = cli_fail(error, NULL);
        goto out;
    }
    cli_warn_if_stale(cfg, &common);
    if ((rc = render_once(&job, cfg)) != CLI_EXIT_OK || !watch)
        goto out;
    job.rendered = 1;
    if (job.count == 1)
        goto out;

    pthread_mutex_init(&job.lock, NULL);
    /*
     * As a sidecar this is often PID 1, where an unhandled SIGTERM is ignored: wait for it
     * explicitly. Blocked before the watch thread starts, so only sigwait below receives it.
     */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    job.main_thread = pthread_self();
    alm_watch_options wopts = ALM_WATCH_OPTIONS_INIT;
    wopts.on_change = on_change;
    wopts.payload = &job;
    wopts.poll_timeout_s = (unsigned int)wait_s;
    if ((error = alm_watch_start(&w, client, cfg, &wopts)) < 0) {
        rc = cli_fail(error, NULL);
    } else {
        int sig = 0;
        while (sigwait(&stop_signals, &sig) != 0)
            ;
        alm_watch_free(w);
    }
    pthread_mutex_destroy(&job.lock);
out:
    alm_config_free(cfg);
    alm_client_free(job.file_client);
    alm_client_free(client);
    return rc;
}
