/*
 * Unit tests for repo: real repositories built with the git CLI in a temporary directory,
 * served through file:// remotes into a temporary cache, and a plain directory for dir mode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "errors.h"
#include "log.h"
#include "source/repo.h"

#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILE 1024
#define SMALL 1024 /* every path the tests build fits */

static char base[256];   /* the temporary directory holding everything */
static char origin[512]; /* the main remote (a non-bare repository) */
static char c1[REPO_COMMIT_HEX], c2[REPO_COMMIT_HEX], cfeat[REPO_COMMIT_HEX];

/* snprintf that fails the test instead of truncating */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void
spr(char *out, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(out, size, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < size);
}

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void
sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (system(cmd) != 0)
        fail_msg("command failed: %s", cmd);
}

/* First line of a command's output. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void
capture(char *out, size_t size, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    FILE *p;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    p = popen(cmd, "r");
    assert_non_null(p);
    if (!fgets(out, (int)size, p))
        out[0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    assert_int_equal(pclose(p), 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

static void head_of(const char *dir, char out[REPO_COMMIT_HEX])
{
    capture(out, REPO_COMMIT_HEX, "git -C %s rev-parse HEAD", dir);
}

static void make_remote(const char *dir, const char *branch)
{
    sh("git init -q -b %s %s", branch, dir);
}

static void commit_all(const char *dir, const char *msg)
{
    sh("git -C %s add -A && git -C %s commit -q -m '%s'", dir, dir, msg);
}

static void open_repo(repo **r, const char *uri, const char *cache, const char *label)
{
    repo_options opts = {
        .uri = uri, .cache_dir = cache, .default_label = label, .max_file_bytes = MAX_FILE};
    int error = repo_open(r, &opts);
    if (error < 0)
        fail_msg("repo_open(%s): %s", uri, err_message());
}

static int setup(void **state)
{
    char path[1024], big[2001];
    (void)state;

    log_configure(LOG_LEVEL_ERROR, LOG_FORMAT_TEXT);
    /* the developer's own git configuration must not change what the CLI builds */
    setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
    setenv("GIT_CONFIG_GLOBAL", "/dev/null", 1);
    setenv("GIT_AUTHOR_NAME", "Test", 1);
    setenv("GIT_AUTHOR_EMAIL", "test@example.org", 1);
    setenv("GIT_COMMITTER_NAME", "Test", 1);
    setenv("GIT_COMMITTER_EMAIL", "test@example.org", 1);

    spr(base, sizeof(base), "%s/almanac-repo-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(base));
    spr(origin, sizeof(origin), "%s/origin", base);
    make_remote(origin, "main");

    spr(path, sizeof(path), "%s/application.yml", origin);
    write_file(path, "greeting: one\n");
    spr(path, sizeof(path), "%s/a-b.yml", origin);
    write_file(path, "ab: 1\n");
    spr(path, sizeof(path), "%s/a.yml", origin);
    write_file(path, "a: 1\n");
    sh("mkdir -p %s/a %s/sub/deeper", origin, origin);
    spr(path, sizeof(path), "%s/a/c.yml", origin);
    write_file(path, "c: 1\n");
    spr(path, sizeof(path), "%s/sub/deeper/app-dev.properties", origin);
    write_file(path, "x=1\n");
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    spr(path, sizeof(path), "%s/big.txt", origin);
    write_file(path, big);
    sh("ln -s application.yml %s/link.yml", origin);
    sh("ln -s /etc %s/etc-link", origin);
    commit_all(origin, "first");
    head_of(origin, c1);
    sh("git -C %s tag v1 && git -C %s tag -a v1.1 -m 'annotated'", origin, origin);
    /* a tag of a tag, and a tag of something that is not a commit */
    sh("git -C %s -c advice.nestedTag=false tag -a v1.2 -m 'nested' v1.1", origin);
    sh("git -C %s tag blobtag $(git -C %s rev-parse HEAD:a.yml)", origin, origin);

    sh("git -C %s checkout -q -b feature/x", origin);
    spr(path, sizeof(path), "%s/feature.yml", origin);
    write_file(path, "feature: on\n");
    commit_all(origin, "feature");
    head_of(origin, cfeat);

    sh("git -C %s checkout -q main", origin);
    spr(path, sizeof(path), "%s/application.yml", origin);
    write_file(path, "greeting: two\n");
    /* a submodule entry: no configuration there, and nothing to follow */
    sh("git -C %s update-index --add --cacheinfo 160000,%s,submod", origin, cfeat);
    commit_all(origin, "second");
    head_of(origin, c2);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (base[0])
        nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* A fresh cache directory under base, named for the test. */
static void cache_for(char *out, size_t size, const char *name)
{
    spr(out, size, "%s/cache-%s", base, name);
}

static void uri_for(char *out, size_t size, const char *dir)
{
    spr(out, size, "file://%s", dir);
}

/* The one mirror in a cache directory, checking its name on the way. */
static void mirror_in(const char *cache, const char *prefix, char *out, size_t size)
{
    struct dirent *de;
    struct stat st;
    size_t found = 0;
    DIR *d = opendir(cache);

    assert_non_null(d);
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name), p = strlen(prefix);
        if (de->d_name[0] == '.')
            continue;
        /* <name>-<12 hex>.git */
        assert_int_equal(n, p + 1 + 12 + 4);
        assert_memory_equal(de->d_name, prefix, p);
        assert_int_equal(de->d_name[p], '-');
        assert_int_equal(strspn(de->d_name + p + 1, "0123456789abcdef"), 12);
        assert_string_equal(de->d_name + n - 4, ".git");
        spr(out, size, "%s/%s", cache, de->d_name);
        found++;
    }
    closedir(d);
    assert_int_equal(found, 1);
    assert_int_equal(stat(cache, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

static size_t packs_in(const char *mirror)
{
    char dir[SMALL * 2];
    struct dirent *de;
    size_t n = 0;
    DIR *d;

    spr(dir, sizeof(dir), "%s/objects/pack", mirror);
    d = opendir(dir);
    assert_non_null(d);
    while ((de = readdir(d)))
        if (strlen(de->d_name) > 5 && strcmp(de->d_name + strlen(de->d_name) - 5, ".pack") == 0)
            n++;
    closedir(d);
    return n;
}

static void expect_fetch(repo *r, bool *changed)
{
    int error = repo_fetch(r, changed);
    if (error < 0)
        fail_msg("repo_fetch: %s", err_message());
}

static void expect_resolves(repo *r, const char *label, const char *want)
{
    char got[REPO_COMMIT_HEX];
    int error = repo_resolve(r, label, got);
    if (error < 0)
        fail_msg("resolve(%s): %s", label ? label : "(null)", err_message());
    assert_string_equal(got, want);
}

static void expect_not_found(repo *r, const char *label)
{
    char got[REPO_COMMIT_HEX];
    int error = repo_resolve(r, label, got);
    if (error != ERR_NOT_FOUND)
        fail_msg("resolve(%s) gave %d, wanted ERR_NOT_FOUND", label, error);
}

static void test_resolve(void **state)
{
    char cache[SMALL], uri[SMALL], shortid[8], hex4[5], treeid[REPO_COMMIT_HEX];
    repo_status st;
    repo *r = NULL;
    static const char *const hostile[] = {"main~1",
                                          "main^",
                                          "main^{tree}",
                                          "HEAD@{1}",
                                          "main@{0}",
                                          "..",
                                          "main..feature/x",
                                          "-main",
                                          "/main",
                                          "a b",
                                          "main:application.yml",
                                          "ma\\in",
                                          "ma\001in",
                                          ":/second",
                                          "refs/heads/../heads/main",
                                          "HEAD",
                                          "mai",
                                          "ffff",
                                          "zzzz",
                                          "feature/",
                                          "v1.1^{}"};
    (void)state;

    cache_for(cache, sizeof(cache), "resolve");
    uri_for(uri, sizeof(uri), origin);
    open_repo(&r, uri, cache, NULL);
    assert_true(repo_is_git(r));
    assert_string_equal(repo_display_uri(r), uri);

    expect_resolves(r, NULL, c2);
    expect_resolves(r, "", c2);
    expect_resolves(r, "main", c2);
    expect_resolves(r, "feature/x", cfeat);
    expect_resolves(r, "v1", c1);
    expect_resolves(r, "v1.1", c1);
    expect_resolves(r, "v1.2", c1);
    expect_not_found(r, "blobtag");
    expect_resolves(r, c1, c1);
    memcpy(shortid, c1, 7);
    shortid[7] = '\0';
    expect_resolves(r, shortid, c1);
    for (size_t i = 0; i < 7; i++)
        shortid[i] = (char)(shortid[i] >= 'a' ? shortid[i] - 'a' + 'A' : shortid[i]);
    expect_resolves(r, shortid, c1);
    expect_not_found(r, "unknown");
    capture(treeid, sizeof(treeid), "git -C %s rev-parse %s^{tree}", origin, c1);
    expect_not_found(r, treeid); /* an object, but not a commit */
    expect_not_found(r, "0000000000000000000000000000000000000000");
    memcpy(hex4, c1, 3);
    hex4[3] = '\0';
    expect_not_found(r, hex4); /* under 4 hex digits is never a commit id */
    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++)
        expect_not_found(r, hostile[i]);

    repo_get_status(r, &st);
    assert_true(st.is_git);
    assert_false(st.degraded);
    assert_true(st.last_fetch_ok > 0);
    assert_true(st.last_fetch_attempt >= st.last_fetch_ok);
    assert_string_equal(st.last_error, "");
    assert_string_equal(st.default_label, "main");
    repo_free(r);

    /* a configured default label */
    open_repo(&r, uri, cache, "feature/x");
    expect_resolves(r, NULL, cfeat);
    repo_get_status(r, &st);
    assert_string_equal(st.default_label, "feature/x");
    repo_free(r);
}

typedef struct seen {
    char paths[32][64];
    char data[32][64];
    size_t lens[32];
    bool null_data[32];
    size_t n;
    int stop_at; /* return 7 from this call (1-based), 0: never */
} seen;

static int collect(const char *path, const char *data, size_t len, void *payload)
{
    seen *s = payload;
    assert_true(s->n < 32);
    spr(s->paths[s->n], sizeof(s->paths[0]), "%s", path);
    s->null_data[s->n] = data == NULL;
    if (data) {
        assert_int_equal(data[len], '\0');
        spr(s->data[s->n], sizeof(s->data[0]), "%.*s", (int)len, data);
    }
    s->lens[s->n] = len;
    s->n++;
    return s->stop_at && (int)s->n == s->stop_at ? 7 : 0;
}

static bool only_yml(const char *path, void *payload)
{
    size_t n = strlen(path);
    (void)payload;
    return n > 4 && strcmp(path + n - 4, ".yml") == 0;
}

static void test_walk(void **state)
{
    char cache[SMALL], uri[SMALL];
    static const char *const want[] = {"a-b.yml", "a.yml",
                                       "a/c.yml", "application.yml",
                                       "big.txt", "sub/deeper/app-dev.properties"};
    seen s;
    repo *r = NULL;
    (void)state;

    cache_for(cache, sizeof(cache), "walk");
    uri_for(uri, sizeof(uri), origin);
    open_repo(&r, uri, cache, NULL);

    memset(&s, 0, sizeof(s));
    assert_int_equal(repo_walk(r, c2, NULL, collect, &s), 0);
    assert_int_equal(s.n, 6); /* the symlinks link.yml and etc-link are skipped */
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(s.paths[i], want[i]);
    assert_string_equal(s.data[3], "greeting: two\n");
    assert_true(s.null_data[4]);
    assert_int_equal(s.lens[4], 2000);
    assert_string_equal(s.data[5], "x=1\n");

    memset(&s, 0, sizeof(s));
    assert_int_equal(repo_walk(r, c1, only_yml, collect, &s), 0);
    assert_int_equal(s.n, 4);
    assert_string_equal(s.data[3], "greeting: one\n");

    memset(&s, 0, sizeof(s));
    assert_int_equal(repo_walk(r, cfeat, only_yml, collect, &s), 0);
    assert_int_equal(s.n, 5);
    assert_string_equal(s.paths[4], "feature.yml");

    memset(&s, 0, sizeof(s));
    s.stop_at = 2;
    assert_int_equal(repo_walk(r, c2, NULL, collect, &s), 7);
    assert_int_equal(s.n, 2);

    assert_int_equal(repo_walk(r, "main", NULL, collect, &s), ERR_NOT_FOUND);
    assert_int_equal(repo_walk(r, "0000000000000000000000000000000000000000", NULL, collect, &s),
                     ERR_NOT_FOUND);
    repo_free(r);
}

static void expect_file(repo *r, const char *commit, const char *path, const char *want)
{
    char *data = NULL;
    size_t len = 0;
    int error = repo_read_file(r, commit, path, &data, &len);
    if (error < 0)
        fail_msg("read(%s): %s", path, err_message());
    assert_int_equal(len, strlen(want));
    assert_string_equal(data, want);
    free(data);
}

static void expect_read_error(repo *r, const char *commit, const char *path, int code)
{
    char *data = NULL;
    size_t len = 0;
    int error = repo_read_file(r, commit, path, &data, &len);
    if (error != code)
        fail_msg("read(%s) gave %d, wanted %d", path, error, code);
    assert_null(data);
}

static const char *const traversal[] = {"../x",
                                        "a/../../x",
                                        "/etc/passwd",
                                        "a/./c.yml",
                                        "a//c.yml",
                                        "a/",
                                        "",
                                        ".",
                                        "..",
                                        "a\\c.yml",
                                        "etc-link/passwd",
                                        "link.yml",
                                        "a",
                                        "submod",
                                        "submod/x",
                                        "a/c.yml/",
                                        "a\tb",
                                        "a\nb"};

static void test_read_file(void **state)
{
    char cache[SMALL], uri[SMALL];
    repo *r = NULL;
    (void)state;

    cache_for(cache, sizeof(cache), "read");
    uri_for(uri, sizeof(uri), origin);
    open_repo(&r, uri, cache, NULL);

    expect_file(r, c2, "application.yml", "greeting: two\n");
    expect_file(r, c1, "application.yml", "greeting: one\n");
    expect_file(r, c2, "a/c.yml", "c: 1\n");
    expect_file(r, c2, "sub/deeper/app-dev.properties", "x=1\n");
    expect_file(r, cfeat, "feature.yml", "feature: on\n");
    expect_read_error(r, c2, "feature.yml", ERR_NOT_FOUND);
    expect_read_error(r, c2, "absent.yml", ERR_NOT_FOUND);
    expect_read_error(r, c2, "big.txt", ERR_CONFIG); /* the repository's problem: 500 */
    expect_read_error(r, "nonsense", "application.yml", ERR_NOT_FOUND);
    for (size_t i = 0; i < sizeof(traversal) / sizeof(traversal[0]); i++)
        expect_read_error(r, c2, traversal[i], ERR_NOT_FOUND);
    repo_free(r);
}

static void test_master_fallback(void **state)
{
    char dir[SMALL], cache[SMALL], uri[SMALL], head[REPO_COMMIT_HEX], path[SMALL];
    repo_status st;
    repo *r = NULL;
    (void)state;

    spr(dir, sizeof(dir), "%s/legacy", base);
    make_remote(dir, "master");
    spr(path, sizeof(path), "%s/application.yml", dir);
    write_file(path, "legacy: true\n");
    commit_all(dir, "legacy");
    head_of(dir, head);

    cache_for(cache, sizeof(cache), "master");
    uri_for(uri, sizeof(uri), dir);
    open_repo(&r, uri, cache, NULL);
    expect_resolves(r, NULL, head);
    repo_get_status(r, &st);
    assert_string_equal(st.default_label, "master");
    repo_free(r);

    /* neither main nor master */
    sh("git -C %s branch -q -m master trunk", dir);
    cache_for(cache, sizeof(cache), "trunk");
    open_repo(&r, uri, cache, NULL);
    expect_not_found(r, NULL);
    assert_non_null(strstr(err_message(), "no default branch (main or master)"));
    expect_resolves(r, "trunk", head);
    repo_free(r);
}

static void test_fetch(void **state)
{
    char dir[SMALL], cache[SMALL], uri[SMALL], head[REPO_COMMIT_HEX], path[SMALL];
    bool changed = true;
    repo *r = NULL;
    (void)state;

    spr(dir, sizeof(dir), "%s/fetched", base);
    sh("git clone -q %s %s", origin, dir);
    sh("git -C %s branch -q doomed", dir);
    cache_for(cache, sizeof(cache), "fetch");
    uri_for(uri, sizeof(uri), dir);
    open_repo(&r, uri, cache, NULL);
    expect_resolves(r, NULL, c2);
    expect_resolves(r, "doomed", c2);

    expect_fetch(r, &changed);
    assert_false(changed);

    spr(path, sizeof(path), "%s/application.yml", dir);
    write_file(path, "greeting: three\n");
    commit_all(dir, "third");
    head_of(dir, head);
    expect_fetch(r, &changed);
    assert_true(changed);
    expect_resolves(r, NULL, head);
    expect_file(r, head, "application.yml", "greeting: three\n");

    /* deleted branches go, new tags come */
    sh("git -C %s branch -q -D doomed && git -C %s tag v3", dir, dir);
    expect_fetch(r, &changed);
    assert_true(changed);
    expect_not_found(r, "doomed");
    expect_resolves(r, "v3", head);
    expect_fetch(r, NULL);
    repo_free(r);
}

static void test_degraded(void **state)
{
    char dir[SMALL], cache[SMALL], uri[SMALL];
    repo_status st;
    bool changed = true;
    repo *r = NULL;
    (void)state;

    spr(dir, sizeof(dir), "%s/vanishing", base);
    sh("git clone -q --bare %s %s", origin, dir);
    cache_for(cache, sizeof(cache), "degraded");
    uri_for(uri, sizeof(uri), dir);
    open_repo(&r, uri, cache, NULL);
    repo_free(r);

    sh("rm -rf %s", dir);
    open_repo(&r, uri, cache, NULL);
    repo_get_status(r, &st);
    assert_true(st.degraded);
    assert_true(st.last_error[0] != '\0');
    /* the mirror's own last good fetch, from the first instance */
    assert_true(st.last_fetch_ok > 0);
    assert_true(st.last_fetch_ok <= st.last_fetch_attempt);
    expect_resolves(r, NULL, c2);
    expect_file(r, c2, "application.yml", "greeting: two\n");

    assert_int_equal(repo_fetch(r, &changed), ERR_UNAVAILABLE);
    assert_false(changed);
    repo_get_status(r, &st);
    assert_true(st.degraded);
    expect_resolves(r, "v1.1", c1);

    /* the remote comes back: the next fetch clears degraded mode */
    sh("git clone -q --bare %s %s", origin, dir);
    expect_fetch(r, &changed);
    repo_get_status(r, &st);
    assert_false(st.degraded);
    assert_string_equal(st.last_error, "");
    assert_true(st.last_fetch_ok > 0);
    repo_free(r);
}

static void test_no_mirror(void **state)
{
    char cache[SMALL], uri[SMALL + 32];
    repo_options opts = {0};
    repo *r = (repo *)&opts; /* must be reset to NULL */
    struct dirent *de;
    DIR *d;
    (void)state;

    cache_for(cache, sizeof(cache), "nomirror");
    spr(uri, sizeof(uri), "file://%s/no-such-repo", base);
    opts.uri = uri;
    opts.cache_dir = cache;
    assert_int_equal(repo_open(&r, &opts), ERR_UNAVAILABLE);
    assert_null(r);
    assert_non_null(strstr(err_message(), "cannot reach file://"));
    assert_non_null(strstr(err_message(), "no cached mirror in"));

    /* the failed clone leaves nothing that could later pass for a mirror */
    d = opendir(cache);
    assert_non_null(d);
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            fail_msg("left behind: %s", de->d_name);
    closedir(d);

    /* a password in the URI never reaches a message */
    spr(uri, sizeof(uri), "https://user:hunter2@127.0.0.1:1/config.git");
    assert_true(repo_open(&r, &opts) < 0);
    assert_null(strstr(err_message(), "hunter2"));
    assert_null(strstr(err_message(), "user"));
    assert_non_null(strstr(err_message(), "https://127.0.0.1:1/config.git"));

    opts.uri = "dir:/no/such/directory";
    assert_true(repo_open(&r, &opts) < 0);
    assert_null(r);
}

static void test_ssh_display(void **state)
{
    char cache[SMALL];
    repo_options opts = {0};
    repo *r = NULL;
    (void)state;

    /* nothing listens on port 1: the clone fails at once, and the message shows no user */
    cache_for(cache, sizeof(cache), "ssh");
    opts.uri = "ssh://git@127.0.0.1:1/config.git";
    opts.cache_dir = cache;
    assert_true(repo_open(&r, &opts) < 0);
    assert_null(r);
    assert_non_null(strstr(err_message(), "cannot reach ssh://127.0.0.1:1/config.git:"));
    assert_null(strstr(err_message(), "git@"));

    opts.uri = "ssh://git:s3cr3t@127.0.0.1:1/config.git";
    assert_true(repo_open(&r, &opts) < 0);
    assert_non_null(strstr(err_message(), "cannot reach ssh://127.0.0.1:1/config.git:"));
    assert_null(strstr(err_message(), "s3cr3t"));
}

/* An HTTP server that asks for Basic credentials and writes down each Authorization it gets. */
static const char auth_server_py[] =
    "import http.server, os, sys\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        auth = self.headers.get('Authorization')\n"
    "        if auth:\n"
    "            with open(sys.argv[1], 'a') as f:\n"
    "                f.write(auth + '\\n')\n"
    "        self.send_response(401)\n"
    "        self.send_header('WWW-Authenticate', 'Basic realm=\"config\"')\n"
    "        self.send_header('Content-Length', '0')\n"
    "        self.end_headers()\n"
    "    def log_message(self, *args):\n"
    "        pass\n"
    "server = http.server.HTTPServer(('127.0.0.1', 0), H)\n"
    "print(server.server_address[1], os.getpid(), flush=True)\n"
    "server.serve_forever()\n";

static void test_http_credentials(void **state)
{
    char script[SMALL], seen_file[SMALL], pw[SMALL], cache[SMALL], uri[SMALL], line[256];
    repo_options opts = {0};
    repo *r = NULL;
    FILE *server, *f;
    int port = 0, pid = 0;
    (void)state;

    spr(script, sizeof(script), "%s/auth_server.py", base);
    spr(seen_file, sizeof(seen_file), "%s/authorizations", base);
    spr(pw, sizeof(pw), "%s/git-password", base);
    write_file(script, auth_server_py);
    write_file(pw, "s3cret\n");
    spr(line, sizeof(line), "exec python3 %s %s", script, seen_file);
    server = popen(line, "r");
    assert_non_null(server);
    assert_non_null(fgets(line, sizeof(line), server));
    assert_int_equal(sscanf(line, "%d %d", &port, &pid), 2);

    setenv("ALMANAC_GIT_USERNAME", "alice", 1);
    setenv("ALMANAC_GIT_PASSWORD_FILE", pw, 1);
    cache_for(cache, sizeof(cache), "http");
    /* userinfo in the URI is never sent: the environment's credentials are */
    spr(uri, sizeof(uri), "http://mallory:wrong@127.0.0.1:%d/config.git", port);
    opts.uri = uri;
    opts.cache_dir = cache;
    /* a password over plain http:// is refused before anything is sent... */
    assert_true(repo_open(&r, &opts) < 0);
    assert_null(r);
    assert_non_null(strstr(err_message(), "plain http://"));
    /* ...unless the network is declared trusted */
    opts.allow_insecure_http = true;
    assert_true(repo_open(&r, &opts) < 0);
    assert_null(r);
    assert_null(strstr(err_message(), "s3cret"));
    assert_null(strstr(err_message(), "mallory"));
    assert_non_null(strstr(err_message(), "authentication failed for 127.0.0.1"));
    unsetenv("ALMANAC_GIT_USERNAME");
    unsetenv("ALMANAC_GIT_PASSWORD_FILE");

    kill(pid, SIGTERM);
    pclose(server);
    f = fopen(seen_file, "r");
    assert_non_null(f);
    /* offered once ("alice:s3cret"), not again after the refusal */
    assert_non_null(fgets(line, sizeof(line), f));
    assert_string_equal(line, "Basic YWxpY2U6czNjcmV0\n");
    assert_null(fgets(line, sizeof(line), f));
    fclose(f);
}

static void test_empty_remote(void **state)
{
    char dir[SMALL], cache[SMALL], uri[SMALL], commit[REPO_COMMIT_HEX];
    repo_status st;
    seen s;
    repo *r = NULL;
    (void)state;

    spr(dir, sizeof(dir), "%s/empty", base);
    make_remote(dir, "main");
    cache_for(cache, sizeof(cache), "empty");
    uri_for(uri, sizeof(uri), dir);
    open_repo(&r, uri, cache, NULL);
    assert_int_equal(repo_resolve(r, NULL, commit), ERR_NOT_FOUND);
    assert_string_equal(commit, "");
    memset(&s, 0, sizeof(s));
    assert_int_equal(repo_walk(r, c1, NULL, collect, &s), ERR_NOT_FOUND);
    repo_get_status(r, &st);
    assert_string_equal(st.default_label, "main");
    assert_false(st.degraded);
    repo_free(r);
}

static void test_broken_mirror(void **state)
{
    char cache[SMALL], uri[SMALL], mirror[SMALL], path[SMALL * 2];
    repo *r = NULL;
    (void)state;

    cache_for(cache, sizeof(cache), "broken");
    uri_for(uri, sizeof(uri), origin);
    open_repo(&r, uri, cache, NULL);
    repo_free(r);
    mirror_in(cache, "origin", mirror, sizeof(mirror));
    spr(path, sizeof(path), "%s/HEAD", mirror);
    assert_int_equal(unlink(path), 0);

    /* no longer a repository: cloned again rather than served or failed */
    open_repo(&r, uri, cache, NULL);
    expect_resolves(r, NULL, c2);
    expect_file(r, c2, "application.yml", "greeting: two\n");
    repo_free(r);
    mirror_in(cache, "origin", mirror, sizeof(mirror));
}

/* Overwrites the middle of every pack in the mirror, leaving header, index and checksum. */
static void corrupt_packs(const char *mirror)
{
    char dir[SMALL * 2], path[SMALL * 3];
    struct dirent *de;
    DIR *d;

    spr(dir, sizeof(dir), "%s/objects/pack", mirror);
    d = opendir(dir);
    assert_non_null(d);
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        struct stat st;
        FILE *f;
        if (n < 5 || strcmp(de->d_name + n - 5, ".pack") != 0)
            continue;
        spr(path, sizeof(path), "%s/%s", dir, de->d_name);
        assert_int_equal(stat(path, &st), 0);
        assert_true(st.st_size > 64);
        f = fopen(path, "r+");
        assert_non_null(f);
        assert_int_equal(fseek(f, 12, SEEK_SET), 0);
        for (off_t i = 12; i < st.st_size - 20; i++)
            fputc(0x5a, f);
        fclose(f);
    }
    closedir(d);
}

static void test_corrupt_objects(void **state)
{
    char dir[SMALL], away[SMALL + 8], cache[SMALL], uri[SMALL], mirror[SMALL];
    char commit[REPO_COMMIT_HEX];
    char *data = NULL;
    size_t len;
    seen s;
    repo *r = NULL;
    repo_status st;
    int error;
    (void)state;

    spr(dir, sizeof(dir), "%s/to-corrupt", base);
    sh("git clone -q --bare %s %s", origin, dir);
    cache_for(cache, sizeof(cache), "corrupt");
    uri_for(uri, sizeof(uri), dir);
    open_repo(&r, uri, cache, NULL);
    repo_free(r);
    mirror_in(cache, "to-corrupt", mirror, sizeof(mirror));
    corrupt_packs(mirror);

    /* with the remote away the damage cannot be cloned over: the refs still name the
     * commits, but nothing can be read: errors, not "not found" and not a crash; tags survive
     * the fetch at open; status says what is wrong */
    spr(away, sizeof(away), "%s.away", dir);
    assert_int_equal(rename(dir, away), 0);
    open_repo(&r, uri, cache, NULL);
    error = repo_resolve(r, "main", commit);
    assert_true(error == ERR_GIT);
    error = repo_resolve(r, "v1.1", commit);
    assert_true(error == ERR_GIT);
    error = repo_read_file(r, c2, "application.yml", &data, &len);
    assert_true(error == ERR_GIT);
    assert_null(data);
    memset(&s, 0, sizeof(s));
    assert_int_equal(repo_walk(r, c2, NULL, collect, &s), ERR_GIT);
    assert_int_equal(s.n, 0);
    repo_get_status(r, &st);
    assert_non_null(strstr(st.mirror_damaged, "does not match its checksum"));
    assert_non_null(strstr(st.mirror_damaged, "cloning again failed"));

    /* the remote is back: the next fetch clones again instead of fetching into the damage */
    assert_int_equal(rename(away, dir), 0);
    assert_int_equal(repo_fetch(r, NULL), 0);
    assert_int_equal(repo_resolve(r, "main", commit), 0);
    assert_int_equal(repo_read_file(r, c2, "application.yml", &data, &len), 0);
    free(data);
    repo_get_status(r, &st);
    assert_string_equal(st.mirror_damaged, "");
    repo_free(r);

    /* damaged while nobody runs and the remote there: cloned again at open */
    mirror_in(cache, "to-corrupt", mirror, sizeof(mirror));
    corrupt_packs(mirror);
    open_repo(&r, uri, cache, NULL);
    assert_int_equal(repo_resolve(r, "v1.1", commit), 0);
    repo_get_status(r, &st);
    assert_string_equal(st.mirror_damaged, "");
    repo_free(r);
}

static void test_plain_path(void **state)
{
    char cache[SMALL], want[SMALL + 16], cwd[PATH_MAX + 1];
    repo *r = NULL;
    (void)state;

    cache_for(cache, sizeof(cache), "plain");
    open_repo(&r, origin, cache, NULL);
    spr(want, sizeof(want), "file://%s", origin);
    assert_string_equal(repo_display_uri(r), want);
    expect_resolves(r, "v1", c1);
    repo_free(r);

    /* relative to the working directory, with a trailing slash */
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(base), 0);
    open_repo(&r, "origin/", cache, NULL);
    assert_string_equal(repo_display_uri(r), want);
    expect_resolves(r, "feature/x", cfeat);
    repo_free(r);
    assert_int_equal(chdir(cwd), 0);
}

static void test_dir_mode(void **state)
{
    char dir[SMALL], outside[SMALL], path[SMALL * 2], uri[SMALL + 16], want[SMALL + 16],
        commit[REPO_COMMIT_HEX] = "x", big[2001], *real;
    static const char *const want_paths[] = {"a-b.yml", "a.yml", "a/c.yml", "application.yml",
                                             "big.txt"};
    repo_status st;
    seen s;
    repo *r = NULL;
    (void)state;

    spr(dir, sizeof(dir), "%s/plain-dir", base);
    spr(outside, sizeof(outside), "%s/outside", base);
    sh("mkdir -p %s/a %s/.git %s/.hidden-dir %s", dir, dir, dir, outside);
    spr(path, sizeof(path), "%s/secret.yml", outside);
    write_file(path, "secret: yes\n");
    spr(path, sizeof(path), "%s/application.yml", dir);
    write_file(path, "native: true\n");
    spr(path, sizeof(path), "%s/a.yml", dir);
    write_file(path, "a: 1\n");
    spr(path, sizeof(path), "%s/a-b.yml", dir);
    write_file(path, "ab: 1\n");
    spr(path, sizeof(path), "%s/a/c.yml", dir);
    write_file(path, "c: 1\n");
    spr(path, sizeof(path), "%s/.git/config", dir);
    write_file(path, "[core]\n");
    spr(path, sizeof(path), "%s/.env", dir);
    write_file(path, "TOKEN=x\n");
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    spr(path, sizeof(path), "%s/big.txt", dir);
    write_file(path, big);
    sh("ln -s %s/secret.yml %s/escape.yml", outside, dir);
    sh("ln -s %s %s/escape-dir", outside, dir);
    sh("ln -s application.yml %s/inside-link.yml", dir);
    sh("mkfifo %s/fifo.yml", dir);

    spr(uri, sizeof(uri), "dir:%s/", dir);
    open_repo(&r, uri, NULL, "anything");
    assert_false(repo_is_git(r));
    real = realpath(dir, NULL);
    assert_non_null(real);
    spr(want, sizeof(want), "file:%s", real);
    free(real);
    assert_string_equal(repo_display_uri(r), want);

    assert_int_equal(repo_resolve(r, "whatever", commit), 0);
    assert_string_equal(commit, "");
    assert_int_equal(repo_resolve(r, NULL, commit), 0);
    assert_string_equal(commit, "");
    repo_get_status(r, &st);
    assert_false(st.is_git);
    assert_false(st.degraded);

    memset(&s, 0, sizeof(s));
    assert_int_equal(repo_walk(r, "", NULL, collect, &s), 0);
    assert_int_equal(s.n, 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(s.paths[i], want_paths[i]);
    assert_string_equal(s.data[3], "native: true\n");
    assert_true(s.null_data[4]);
    assert_int_equal(s.lens[4], 2000);

    expect_file(r, "", "application.yml", "native: true\n");
    expect_file(r, NULL, "a/c.yml", "c: 1\n");
    expect_read_error(r, "", "big.txt", ERR_CONFIG);
    expect_read_error(r, "", "escape.yml", ERR_NOT_FOUND);
    expect_read_error(r, "", "escape-dir/secret.yml", ERR_NOT_FOUND);
    expect_read_error(r, "", "inside-link.yml", ERR_NOT_FOUND);
    expect_read_error(r, "", "fifo.yml", ERR_NOT_FOUND);
    expect_read_error(r, "", ".git/config", ERR_NOT_FOUND);
    expect_read_error(r, "", ".env", ERR_NOT_FOUND);
    expect_read_error(r, "", "absent.yml", ERR_NOT_FOUND);
    for (size_t i = 0; i < sizeof(traversal) / sizeof(traversal[0]); i++)
        expect_read_error(r, "", traversal[i], ERR_NOT_FOUND);
    spr(path, sizeof(path), "../outside/secret.yml");
    expect_read_error(r, "", path, ERR_NOT_FOUND);
    repo_free(r);
}

static void test_repack(void **state)
{
    char dir[SMALL], cache[SMALL], uri[SMALL], path[SMALL], text[64], mirror[SMALL],
        doomed[REPO_COMMIT_HEX], head[REPO_COMMIT_HEX];
    bool changed;
    seen s;
    repo *r = NULL;
    (void)state;

    spr(dir, sizeof(dir), "%s/packed", base);
    sh("git clone -q %s %s", origin, dir);
    sh("git -C %s branch -q feature/x origin/feature/x", dir);
    cache_for(cache, sizeof(cache), "packed/nested");
    uri_for(uri, sizeof(uri), dir);
    open_repo(&r, uri, cache, NULL);
    mirror_in(cache, "packed", mirror, sizeof(mirror));

    /* a commit only a branch that then disappears can reach */
    sh("git -C %s checkout -q -b doomed", dir);
    spr(path, sizeof(path), "%s/doomed.yml", dir);
    write_file(path, "doomed: true\n");
    commit_all(dir, "doomed");
    head_of(dir, doomed);
    sh("git -C %s checkout -q main && git -C %s branch -q -D doomed", dir, dir);
    expect_fetch(r, &changed);
    assert_false(changed); /* the branch came and went between two fetches */
    sh("git -C %s branch -q doomed %s", dir, doomed);
    expect_fetch(r, &changed);
    assert_true(changed);
    expect_resolves(r, doomed, doomed);
    sh("git -C %s branch -q -D doomed", dir);

    for (int round = 0; round < 25; round++) {
        spr(path, sizeof(path), "%s/application.yml", dir);
        spr(text, sizeof(text), "greeting: packed %d\n", round);
        write_file(path, text);
        commit_all(dir, "round");
        expect_fetch(r, &changed);
        assert_true(changed);
    }
    /* without repacking there would be 28 packs by now */
    assert_true(packs_in(mirror) <= 10);
    head_of(dir, head);
    expect_resolves(r, NULL, head);
    expect_resolves(r, "v1", c1);
    expect_resolves(r, "v1.1", c1);
    expect_resolves(r, c1, c1);
    expect_resolves(r, "feature/x", cfeat);
    expect_file(r, head, "application.yml", "greeting: packed 24\n");
    expect_file(r, c1, "application.yml", "greeting: one\n");
    expect_file(r, cfeat, "feature.yml", "feature: on\n");
    memset(&s, 0, sizeof(s));
    assert_int_equal(repo_walk(r, c1, NULL, collect, &s), 0);
    assert_int_equal(s.n, 6);
    /* pruned and repacked away */
    expect_not_found(r, "doomed");
    expect_not_found(r, doomed);
    repo_free(r);

    /* a later run opens the repacked mirror as it is */
    open_repo(&r, uri, cache, NULL);
    expect_resolves(r, NULL, head);
    repo_free(r);
}

/* ---- concurrency: readers on their own handles while another thread fetches ------------- */

typedef struct shared {
    repo *r;
    atomic_bool done;
    atomic_int failures;
    char final[REPO_COMMIT_HEX];
} shared;

static void *reader(void *arg)
{
    shared *sh_ = arg;
    char commit[REPO_COMMIT_HEX], *data = NULL;
    size_t len;
    bool last = false;

    /* one more round after the fetcher is done, so every reader checks the final state */
    while (!last) {
        last = atomic_load(&sh_->done);
        if (repo_resolve(sh_->r, NULL, commit) < 0 ||
            repo_read_file(sh_->r, commit, "application.yml", &data, &len) < 0 ||
            strncmp(data, "greeting: ", 10) != 0)
            atomic_fetch_add(&sh_->failures, 1);
        free(data);
        data = NULL;
        if (repo_resolve(sh_->r, "v1.1", commit) < 0 || strcmp(commit, c1) != 0 ||
            repo_read_file(sh_->r, c1, "a/c.yml", &data, &len) < 0 || strcmp(data, "c: 1\n") != 0)
            atomic_fetch_add(&sh_->failures, 1);
        free(data);
        data = NULL;
    }
    if (repo_resolve(sh_->r, NULL, commit) < 0 || strcmp(commit, sh_->final) != 0)
        atomic_fetch_add(&sh_->failures, 1);
    return NULL;
}

static void test_concurrent(void **state)
{
    char dir[SMALL], cache[SMALL], uri[SMALL], path[SMALL], text[64];
    pthread_t threads[4];
    shared sh_;
    bool changed;
    (void)state;

    spr(dir, sizeof(dir), "%s/busy", base);
    sh("git clone -q %s %s", origin, dir);
    cache_for(cache, sizeof(cache), "busy");
    uri_for(uri, sizeof(uri), dir);
    memset(&sh_, 0, sizeof(sh_));
    atomic_init(&sh_.done, false);
    atomic_init(&sh_.failures, 0);
    open_repo(&sh_.r, uri, cache, NULL);

    for (size_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, reader, &sh_), 0);
    /* enough rounds for the mirror to be repacked under the readers' feet */
    for (int round = 0; round < 30; round++) {
        spr(path, sizeof(path), "%s/application.yml", dir);
        spr(text, sizeof(text), "greeting: round %d\n", round);
        write_file(path, text);
        commit_all(dir, "round");
        expect_fetch(sh_.r, &changed);
        assert_true(changed);
    }
    head_of(dir, sh_.final);
    atomic_store(&sh_.done, true);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    assert_int_equal(atomic_load(&sh_.failures), 0);
    expect_file(sh_.r, sh_.final, "application.yml", "greeting: round 29\n");
    repo_free(sh_.r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_walk),
        cmocka_unit_test(test_read_file),
        cmocka_unit_test(test_master_fallback),
        cmocka_unit_test(test_fetch),
        cmocka_unit_test(test_degraded),
        cmocka_unit_test(test_no_mirror),
        cmocka_unit_test(test_ssh_display),
        cmocka_unit_test(test_http_credentials),
        cmocka_unit_test(test_empty_remote),
        cmocka_unit_test(test_broken_mirror),
        cmocka_unit_test(test_corrupt_objects),
        cmocka_unit_test(test_plain_path),
        cmocka_unit_test(test_dir_mode),
        cmocka_unit_test(test_repack),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
