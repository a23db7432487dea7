/*
 * router_fuzzer — a request path through the whole server. First everything that runs before
 * the repository is touched: splitting and percent-decoding (http.c), then every validation
 * routes.c applies to names, labels, profiles and resource paths; whatever the input, a path
 * that passes must never name a parent directory. Then the same path is sent as a real request
 * to a server built in this process over a small sample repository (a directory written at
 * start, served as dir:): any answer of 500 or above is a finding (abort), as is no answer.
 * A request cannot make the server fail; only the repository or the machine can.
 */
#include "api/routes.h"
#include "change/announce.h"
#include "compose/render.h"
#include "compose/snapshot.h"
#include "errors.h"
#include "http/http.h"
#include "log.h"
#include "metrics.h"
#include "names.h"
#include "server.h"
#include "settings.h"
#include "source/repo.h"
#include "source/repos.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define ANSWER_SECONDS 10 /* a request unanswered this long counts as a hang */

static void check_no_parent(const char *path)
{
    const char *p = path;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.')
            abort();
        if (end == NULL)
            return;
        p = end + 1;
    }
}

static void check_parsing(const uint8_t *data, size_t size)
{
    char *path = malloc(size + 1);
    if (path == NULL)
        return;
    memcpy(path, data, size);
    path[size] = '\0';

    char *segments[REQUEST_MAX_SEGMENTS];
    size_t count = 0;
    if (http_split_path(path, segments, REQUEST_MAX_SEGMENTS, &count) == 0) {
        char out[1024];
        for (size_t i = 0; i < count; i++) {
            if (names_decode(segments[i], "name", out, sizeof(out)) == 0) {
                check_no_parent(out);
                if (out[0] == '/')
                    abort();
            }
            names_check_profiles(segments[i]);
        }
        if (count > 0 && names_join_path(segments, count, out, sizeof(out)) == 0) {
            check_no_parent(out);
            if (out[0] == '/' || strchr(out, '\\') != NULL)
                abort();
        }
    }
    free(path);
}

/* ---- the in-process server ------------------------------------------------------------------ */

static const struct {
    const char *path, *text;
} sample_files[] = {
    {"application.yml", "greeting: hello\nshared:\n  list: [1, 2]\n"},
    {"orders.yml", "db:\n  pool: 5\nurl: http://${host:localhost}/x\n---\n"
                   "spring.config.activate.on-profile: dev\ndb:\n  pool: 1\n"},
    {"orders-prod.properties", "db.url=jdbc:pg://prod\nsecret={cipher}not-hex\n"},
    {"billing.json", "{\"currency\": \"EUR\", \"limits\": {\"max\": 10}}\n"},
    {"templates/nginx.conf", "server ${greeting};\n"},
};

static settings cfg;
static server srv;
static unsigned port;
static char sample_root[4096];

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_sample(void)
{
    if (sample_root[0])
        nftw(sample_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int write_sample(const char *root)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/templates", root);
    if (mkdir(path, 0700) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(sample_files) / sizeof(sample_files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", root, sample_files[i].path);
        FILE *f = fopen(path, "w");
        if (f == NULL || fputs(sample_files[i].text, f) < 0 || fclose(f) != 0)
            return -1;
    }
    return 0;
}

/* Builds the server once: no watchers, event stream, refresher or authentication, so that no
 * request can park (a hang would stall the fuzzer) and every route answers at once. */
static void start_server(void)
{
    const char *tmp = getenv("TMPDIR");
    char repo_arg[sizeof(sample_root) + 8], cache[sizeof(sample_root) + 8];
    http_server *http = NULL;

    snprintf(sample_root, sizeof(sample_root), "%s/almanac-router-fuzz-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(sample_root) || atexit(remove_sample) != 0 || write_sample(sample_root) < 0) {
        fprintf(stderr, "router_fuzzer: cannot write the sample repository in %s\n",
                sample_root);
        abort();
    }
    snprintf(repo_arg, sizeof(repo_arg), "dir:%s", sample_root);
    snprintf(cache, sizeof(cache), "%s/.cache", sample_root);
    char program[] = "almanac-server", repo_flag[] = "--repo", cache_flag[] = "--cache-dir",
         listen_flag[] = "--listen", loopback[] = "127.0.0.1", port_flag[] = "--port",
         any_port[] = "0";
    char *argv[] = {program, repo_flag, repo_arg, cache_flag, cache, listen_flag, loopback,
                    port_flag, any_port, NULL};
    char *envp[] = {NULL};
    log_configure(LOG_LEVEL_ERROR, LOG_FORMAT_TEXT);
    metrics_init();
    routes_init();
    if (settings_load(&cfg, 9, argv, envp) != 0) {
        fprintf(stderr, "router_fuzzer: settings: %s\n", err_message());
        abort();
    }
    srv.settings = &cfg;
    repo_options ropts = {.uri = cfg.repo, .cache_dir = cfg.cache_dir,
                          .max_file_bytes = cfg.max_file_bytes};
    confdoc_limits limits = CONFDOC_LIMITS_DEFAULT;
    static char *no_search_paths[] = {NULL};
    srv.search_paths = no_search_paths;
    http_options hopts = {.listen = "127.0.0.1", .threads = 1, .max_connections = 64,
                          .max_body_bytes = cfg.max_body_bytes, .connection_timeout = 30};
    if (repo_open(&srv.repo, &ropts) < 0 ||
        repo_set_single(&srv.repos, srv.repo, srv.search_paths) < 0 ||
        snapcache_new(&srv.snapshots, cfg.snapshot_cache, &limits) < 0 ||
        respcache_new(&srv.responses, cfg.response_cache_bytes, 1024) < 0 ||
        change_announcer_new(&srv.changes) < 0 ||
        http_start(&http, &srv, &hopts, routes_dispatch) < 0) {
        fprintf(stderr, "router_fuzzer: cannot start the server: %s\n", err_message());
        abort();
    }
    port = http_port(http);
}

/* The path as a request line can carry it: bytes that would end or split the line are
 * percent-encoded, everything else (raw high bytes too) goes as it is. */
static size_t request_text(char *out, size_t cap, const uint8_t *data, size_t size)
{
    size_t n = (size_t)snprintf(out, cap, "GET /");
    for (size_t i = 0; i < size && n + 4 < cap; i++) {
        if (data[i] <= 0x20 || data[i] == 0x7f)
            n += (size_t)snprintf(out + n, cap - n, "%%%02X", data[i]);
        else
            out[n++] = (char)data[i];
    }
    n += (size_t)snprintf(out + n, cap - n,
                          " HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n");
    return n < cap ? n : cap - 1;
}

/* libFuzzer's -timeout runs a SIGALRM timer: every call below may be interrupted (EINTR), and
 * an interrupted connect() goes on in the background rather than restarting. */
static int connect_through_signals(int fd, const struct sockaddr_in *addr)
{
    if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0)
        return 0;
    if (errno != EINTR)
        return -1;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int ready, error = 0;
    socklen_t error_len = sizeof(error);
    while ((ready = poll(&p, 1, ANSWER_SECONDS * 1000)) < 0 && errno == EINTR)
        ;
    if (ready <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_len) < 0)
        return -1;
    errno = error;
    return error == 0 ? 0 : -1;
}

static int send_all(int fd, const char *text, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, text, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        text += n;
        len -= (size_t)n;
    }
    return 0;
}

static void check_answer(const uint8_t *data, size_t size)
{
    static char line[3 * 8192 + 128];
    char answer[64];
    size_t len = request_text(line, sizeof(line), data, size), got = 0;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval wait = {.tv_sec = ANSWER_SECONDS};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof(wait)) < 0 ||
        connect_through_signals(fd, &addr) < 0 || send_all(fd, line, len) < 0) {
        perror("router_fuzzer: cannot send the request");
        abort();
    }
    while (got < sizeof(answer) - 1) {
        ssize_t n = recv(fd, answer + got, sizeof(answer) - 1 - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    answer[got] = '\0';
    int status = 0;
    if (sscanf(answer, "HTTP/1.%*c %d", &status) != 1) {
        fprintf(stderr, "router_fuzzer: no answer to GET /%.*s\n", (int)size, (const char *)data);
        abort();
    }
    if (status >= 500) {
        fprintf(stderr, "router_fuzzer: %d for GET /%.*s\n", status, (int)size,
                (const char *)data);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    check_parsing(data, size);
    if (port == 0)
        start_server();
    check_answer(data, size);
    return 0;
}
