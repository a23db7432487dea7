/*
 * client — alm_client: options, the HTTP exchange with the servers (libcurl), retry with
 * backoff and jitter, and the decision to fall back to the cache file.
 *
 * One libcurl easy handle per client, driven through the client's own multi handle: reused so
 * that connections are kept alive between a fetch and the long-polls that follow it (hence a
 * client is used by one thread at a time). The blocking calls run the multi handle to the end
 * of each request; a watch drives the same handle without blocking (alm__client_async_*):
 * libcurl's socket and timer callbacks put its sockets into an epoll set, the one descriptor a
 * caller's event loop polls, and each call does what is ready. The Environment's parsing is
 * config.c's, the cache file's format cache.c's, the watch's state machine watch.c's.
 */
#include "internal.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define MAX_SERVERS 64
#define MAX_URL_LEN 8192
#define DEFAULT_SERVER "http://127.0.0.1:8888"
#define DEFAULT_CONNECT_TIMEOUT_MS 5000u
#define DEFAULT_REQUEST_TIMEOUT_MS 30000u
#define MAX_POLL_TIMEOUT_S 3600u
#define USER_AGENT "almanac-c/" ALM_VERSION

struct alm_client {
    char **servers; /* base URLs without a trailing slash */
    size_t nservers;
    size_t preferred; /* the server that answered last; tried first */
    int server_left;  /* the last poll ended because its server went away (see poll_gone) */
    char *application;
    char *profiles;
    char *label;
    char *path; /* "/{application}/{profiles}[/{label}]", each segment escaped */
    char *username;
    char *password;
    char *token;
    alm__token_file token_file; /* version 2: token read from a file, again when it changes */
    char *ca_file;
    char *cache_file;
    unsigned int connect_timeout_ms;
    unsigned int request_timeout_ms;
    alm_retry_policy retry;       /* boot */
    alm_retry_policy watch_retry; /* the watch's; max_attempts unused */
    int keep_placeholders;
    int fail_fast;
    size_t max_response;
    alm_log_cb log_cb;
    void *log_payload;
    alm_log_level log_level;
    int v1_levels; /* the caller's options are version 1: levels numbered from DEBUG = 0 */
    alm__log_sink sink; /* while a watch runs: where its diagnostics go instead */
    void *sink_arg;
    CURL *curl;
    CURLM *multi;
    unsigned long retry_after_ms; /* of the last answer */
    long last_status;             /* of the last answer, 0 for none */
    struct async_poll *async;     /* while a watch drives the client without blocking */
};

/* The parts of one request libcurl points into while it runs. */
typedef struct request_ctx {
    char url[MAX_URL_LEN];
    char errbuf[CURL_ERROR_SIZE];
    struct curl_slist *headers;
} request_ctx;

/* What one GET asks for, whichever server it goes to. */
typedef struct target {
    const char *path;       /* escaped, starting with "/" */
    const char *query;      /* "" or "?…" */
    const char *accept;     /* the Accept header line */
    unsigned long extra_ms; /* added to the request timeout: a long-poll's wait */
    const char *body;       /* non-NULL: POST these bytes as text/plain */
    size_t body_len;
} target;

/* One HTTP answer. */
typedef struct response {
    char *body;
    size_t len;
    size_t cap;
    size_t max;
    int too_big;
    long status;
    char etag[256];
    int dropped; /* the connection was made, then lost before a whole answer */
    unsigned long retry_after_ms; /* the answer's Retry-After, 0 without one */
} response;

/* A long-poll in flight on the multi handle, driven by alm__client_async_step. */
typedef struct async_poll {
    int epfd;
    int64_t timer_at_ms; /* libcurl's deadline (CLOCK_MONOTONIC ms), -1 for none */
    int running;         /* the easy handle is in the multi handle */
    char query[512];
    target t;
    response r;
    size_t tried;  /* servers asked in this round */
    size_t server; /* the one asked now */
    request_ctx ctx;
} async_poll;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
    /* Never cleaned up: other users of libcurl in the process may still need it. */
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

void alm__client_log(const alm_client *c, alm_log_level level, const char *fmt, ...)
{
    char line[1024];
    if (c->log_cb == NULL || level < c->log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (c->sink != NULL)
        c->sink(c->sink_arg, level, line);
    else
        alm__client_log_deliver(c, level, line);
}

void alm__client_log_deliver(const alm_client *c, alm_log_level level, const char *line)
{
    if (c->log_cb != NULL)
        c->log_cb(c->v1_levels ? (alm_log_level)(level - 1) : level, line, c->log_payload);
}

void alm__client_set_log_sink(alm_client *c, alm__log_sink sink, void *arg)
{
    c->sink = sink;
    c->sink_arg = arg;
}

static void free_secret(char *s)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

void alm_client_free(alm_client *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->nservers; i++)
        free(c->servers[i]);
    free(c->servers);
    free(c->application);
    free(c->profiles);
    free(c->label);
    free(c->path);
    free(c->username);
    free_secret(c->password);
    free_secret(c->token);
    alm__token_file_dispose(&c->token_file);
    free(c->ca_file);
    free(c->cache_file);
    alm__client_async_close(c);
    if (c->curl != NULL)
        curl_easy_cleanup(c->curl);
    if (c->multi != NULL)
        curl_multi_cleanup(c->multi);
    free(c);
}

int alm_client_options_init(alm_client_options *opts, unsigned int version)
{
    if (opts == NULL || version == 0 || version > ALM_CLIENT_OPTIONS_VERSION)
        return alm__error_set(ALM_EINVALID, "alm_client_options_init: unknown version %u", version);
    memset(opts, 0, sizeof(*opts));
    opts->version = version;
    return 0;
}

static int dup_opt(char **dst, const char *src)
{
    if (src == NULL || *src == '\0')
        return 0;
    *dst = strdup(src);
    return *dst != NULL ? 0 : alm__error_set(ALM_ENOMEM, "out of memory");
}

/* libcurl's own URL parser on one server URL: a host, a port that is a port, no blank. */
static int check_url(const char *url, size_t len)
{
    int error = 0;
    char *copy = strndup(url, len), *host = NULL;
    CURLU *u = curl_url();
    if (copy == NULL || u == NULL) {
        error = alm__error_set(ALM_ENOMEM, "out of memory");
        goto out;
    }
    if (strpbrk(copy, " \t\r\n") != NULL) {
        error = alm__error_set(ALM_EINVALID, "server URL '%s' holds a blank", copy);
        goto out;
    }
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, copy, 0);
    if (rc == CURLUE_OK)
        rc = curl_url_get(u, CURLUPART_HOST, &host, 0);
    if (rc != CURLUE_OK || host == NULL || *host == '\0')
        error = alm__error_set(ALM_EINVALID, "server URL '%s' is not a valid URL: %s", copy,
                               rc != CURLUE_OK ? curl_url_strerror(rc) : "no host");
out:
    curl_free(host);
    curl_url_cleanup(u);
    free(copy);
    return error;
}

/* Adds one server URL (`len` bytes of `url`), trimmed of blanks and of trailing slashes. */
static int add_server(alm_client *c, const char *url, size_t len)
{
    while (len > 0 && (*url == ' ' || *url == '\t')) {
        url++;
        len--;
    }
    while (len > 0 && (url[len - 1] == ' ' || url[len - 1] == '\t' || url[len - 1] == '/'))
        len--;
    if (len == 0)
        return 0;
    if (c->nservers == MAX_SERVERS)
        return alm__error_set(ALM_EINVALID, "more than %d servers", MAX_SERVERS);
    if (len > MAX_URL_LEN / 2)
        return alm__error_set(ALM_EINVALID, "server URL longer than %d bytes", MAX_URL_LEN / 2);
    size_t scheme = strncasecmp(url, "http://", 7) == 0    ? 7
                    : strncasecmp(url, "https://", 8) == 0 ? 8
                                                           : 0;
    if (scheme == 0 || scheme == len)
        return alm__error_set(ALM_EINVALID, "server URL '%.*s' is not http:// or https://",
                              (int)len, url);
    /* Credentials inside a URL would end up in logs and error messages. */
    const char *authority_end = memchr(url + scheme, '/', len - scheme);
    size_t authority_len = authority_end ? (size_t)(authority_end - url) - scheme : len - scheme;
    if (memchr(url + scheme, '@', authority_len) != NULL)
        return alm__error_set(ALM_EINVALID, "server URL carries credentials; set the username "
                                            "and password (or token) options instead");
    if (memchr(url, '?', len) != NULL || memchr(url, '#', len) != NULL)
        return alm__error_set(ALM_EINVALID, "server URL '%.*s' has a query or fragment", (int)len,
                              url);
    int error = check_url(url, len);
    if (error < 0)
        return error;
    char **grown = realloc(c->servers, (c->nservers + 1) * sizeof(*grown));
    if (grown == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    c->servers = grown;
    if ((c->servers[c->nservers] = strndup(url, len)) == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    c->nservers++;
    return 0;
}

static int read_servers(alm_client *c, const alm_client_options *opts)
{
    int error = 0;
    if (opts->servers != NULL) {
        for (size_t i = 0; opts->servers[i] != NULL && error == 0; i++)
            error = add_server(c, opts->servers[i], strlen(opts->servers[i]));
    } else {
        const char *list = opts->server != NULL ? opts->server : DEFAULT_SERVER;
        while (error == 0) {
            const char *comma = strchr(list, ',');
            size_t len = comma != NULL ? (size_t)(comma - list) : strlen(list);
            error = add_server(c, list, len);
            if (comma == NULL)
                break;
            list = comma + 1;
        }
    }
    if (error == 0 && c->nservers == 0)
        error = alm__error_set(ALM_EINVALID, "no server URL given");
    return error;
}

/* Appends "/" and `segment` percent-encoded to `path` (reallocated). */
static int append_segment(alm_client *c, char **path, const char *segment)
{
    char *escaped = curl_easy_escape(c->curl, segment, 0);
    if (escaped == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    size_t old = *path != NULL ? strlen(*path) : 0, add = strlen(escaped);
    char *grown = realloc(*path, old + add + 2);
    if (grown == NULL) {
        curl_free(escaped);
        return alm__error_set(ALM_ENOMEM, "out of memory");
    }
    grown[old] = '/';
    memcpy(grown + old + 1, escaped, add + 1);
    *path = grown;
    curl_free(escaped);
    return 0;
}

/* The request path; a label's "/" travels as "(_)", as Spring expects. */
/* `s` with every "/" written "(_)", as Spring reads a label or resource path inside one
 * segment. New string, NULL on OOM. */
static char *spell_slashes(const char *s)
{
    size_t slashes = 0;
    for (const char *p = s; *p; p++)
        slashes += *p == '/';
    char *spelled = malloc(strlen(s) + 2 * slashes + 1), *w = spelled;
    if (spelled == NULL)
        return NULL;
    for (const char *p = s; *p; p++) {
        if (*p == '/') {
            memcpy(w, "(_)", 3);
            w += 3;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    return spelled;
}

static int build_path(alm_client *c)
{
    int error;
    char *label = NULL;
    if ((error = append_segment(c, &c->path, c->application)) < 0 ||
        (error = append_segment(c, &c->path, c->profiles)) < 0 || c->label == NULL)
        return error;
    if ((label = spell_slashes(c->label)) == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    error = append_segment(c, &c->path, label);
    free(label);
    return error;
}

static int check_policy(const alm_retry_policy *p, const char *name)
{
    if (p->multiplier != 0 && !(p->multiplier >= 1.0))
        return alm__error_set(ALM_EINVALID, "alm_client_new: %s multiplier must be >= 1", name);
    if (p->jitter > 1.0)
        return alm__error_set(ALM_EINVALID, "alm_client_new: %s jitter must be within 0-1", name);
    return 0;
}

static int check_options(const alm_client_options *opts)
{
    int error = 0;
    if (opts == NULL)
        return alm__error_set(ALM_EINVALID, "alm_client_new: options are required (at least "
                                            "the application)");
    if (opts->version == 0 || opts->version > ALM_CLIENT_OPTIONS_VERSION)
        return alm__error_set(ALM_EINVALID,
                              "alm_client_new: unknown options version %u "
                              "(initialise with ALM_CLIENT_OPTIONS_INIT)",
                              opts->version);
    if (opts->application == NULL || *opts->application == '\0')
        return alm__error_set(ALM_EINVALID, "alm_client_new: the application name is required");
    if (opts->token != NULL && *opts->token != '\0' &&
        ((opts->username != NULL && *opts->username != '\0') || opts->password != NULL))
        return alm__error_set(ALM_EINVALID, "alm_client_new: give a username and password or a "
                                            "token, not both");
    if (opts->version >= 2 && opts->token_file != NULL && *opts->token_file != '\0' &&
        ((opts->token != NULL && *opts->token != '\0') ||
         (opts->username != NULL && *opts->username != '\0') || opts->password != NULL))
        return alm__error_set(ALM_EINVALID, "alm_client_new: a token file replaces the token, "
                                            "username and password options");
    /* Found at once rather than as a 401 at the first request, which reads like a server fault. */
    if (opts->username != NULL && *opts->username != '\0' && opts->password == NULL)
        return alm__error_set(ALM_EINVALID, "alm_client_new: username '%s' has no password",
                              opts->username);
    if ((error = check_policy(&opts->retry, "retry")) < 0)
        return error;
    if (opts->version >= 3 && opts->watch_retry != NULL &&
        (error = check_policy(opts->watch_retry, "watch_retry")) < 0)
        return error;
    if ((int)opts->log_level < 0 || opts->log_level > ALM_LOG_ERROR)
        return alm__error_set(ALM_EINVALID, "alm_client_new: unknown log level %d",
                              (int)opts->log_level);
    return 0;
}

/*
 * A copy of a comma-separated list of names (`what`: "application", "profiles") with the blanks
 * around each name dropped. A name that would be sent as something else, or not understood by
 * the server ("/" or control characters inside, empty), is refused here, with the name.
 */
static int normalise_names(char **out, const char *list, const char *what)
{
    size_t n = strlen(list);
    char *w = malloc(n + 1), *p = w;
    if (w == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    const char *s = list;
    for (;;) {
        const char *comma = strchr(s, ',');
        const char *end = comma != NULL ? comma : s + strlen(s);
        while (s < end && (*s == ' ' || *s == '\t'))
            s++;
        while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end == s) {
            free(w);
            return alm__error_set(ALM_EINVALID, "alm_client_new: %s '%s' has an empty name",
                                  what, list);
        }
        for (const char *q = s; q < end; q++) {
            if (*q == '/' || (unsigned char)*q < 0x20 || *q == 0x7f) {
                free(w);
                return alm__error_set(ALM_EINVALID,
                                      "alm_client_new: %s '%s': a name may not hold '/' or "
                                      "control characters",
                                      what, list);
            }
        }
        if (p != w)
            *p++ = ',';
        memcpy(p, s, (size_t)(end - s));
        p += end - s;
        if (comma == NULL)
            break;
        s = comma + 1;
    }
    *p = '\0';
    *out = w;
    return 0;
}

/* Fills the zero fields of `p` with `defaults`' (a negative jitter means none). */
static void fill_policy(alm_retry_policy *out, const alm_retry_policy *p,
                        const alm_retry_policy *defaults)
{
    out->max_attempts = p->max_attempts ? p->max_attempts : defaults->max_attempts;
    out->initial_backoff_ms =
        p->initial_backoff_ms ? p->initial_backoff_ms : defaults->initial_backoff_ms;
    out->max_backoff_ms = p->max_backoff_ms ? p->max_backoff_ms : defaults->max_backoff_ms;
    out->multiplier = p->multiplier != 0 ? p->multiplier : defaults->multiplier;
    out->jitter = p->jitter == 0 ? defaults->jitter : p->jitter < 0 ? 0 : p->jitter;
}

int alm_client_new(alm_client **out, const alm_client_options *opts)
{
    int error = 0;
    alm_client *c = NULL;

    if (out == NULL)
        return alm__error_set(ALM_EINVALID, "alm_client_new: NULL out");
    *out = NULL;
    if ((error = check_options(opts)) < 0)
        return error;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_result != CURLE_OK)
        return alm__error_set(ALM_ERROR, "libcurl initialisation failed: %s",
                              curl_easy_strerror(curl_init_result));
    if ((c = calloc(1, sizeof(*c))) == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    if ((c->curl = curl_easy_init()) == NULL || (c->multi = curl_multi_init()) == NULL) {
        error = alm__error_set(ALM_ENOMEM, "cannot create a libcurl handle");
        goto out;
    }
    if ((error = read_servers(c, opts)) < 0 ||
        (error = normalise_names(&c->application, opts->application, "application")) < 0 ||
        (error = normalise_names(&c->profiles,
                                 opts->profiles && *opts->profiles ? opts->profiles : "default",
                                 "profiles")) < 0 ||
        (error = dup_opt(&c->label, opts->label)) < 0 ||
        (error = dup_opt(&c->username, opts->username)) < 0 ||
        (error = dup_opt(&c->token, opts->token)) < 0 ||
        (error = dup_opt(&c->ca_file, opts->ca_file)) < 0 ||
        (error = dup_opt(&c->cache_file, opts->cache_file)) < 0 ||
        (error = alm__token_file_init(&c->token_file,
                                      opts->version >= 2 ? opts->token_file : NULL)) < 0)
        goto out;
    /* An empty password is a real password; only NULL means none. */
    if (opts->password != NULL && (c->password = strdup(opts->password)) == NULL) {
        error = alm__error_set(ALM_ENOMEM, "out of memory");
        goto out;
    }
    if ((error = build_path(c)) < 0)
        goto out;

    c->connect_timeout_ms =
        opts->connect_timeout_ms ? opts->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    c->request_timeout_ms =
        opts->request_timeout_ms ? opts->request_timeout_ms : DEFAULT_REQUEST_TIMEOUT_MS;
    static const alm_retry_policy boot_defaults = {6, 1000, 2000, 1.1, 0.1};
    static const alm_retry_policy watch_defaults = {0, 1000, 300000, 2.0, 0.2};
    static const alm_retry_policy none = {0, 0, 0, 0, 0};
    fill_policy(&c->retry, &opts->retry, &boot_defaults);
    fill_policy(&c->watch_retry,
                opts->version >= 3 && opts->watch_retry != NULL ? opts->watch_retry : &none,
                &watch_defaults);
    if (opts->version >= 3)
        c->keep_placeholders = opts->keep_placeholders != 0;
    c->fail_fast = opts->fail_fast != 0;
    c->max_response =
        opts->max_response_bytes ? opts->max_response_bytes : ALM__DEFAULT_MAX_RESPONSE;
    c->log_cb = opts->log_cb;
    c->log_payload = opts->log_payload;
    /* Versions 1 and 2 numbered the levels from DEBUG = 0: read and call back that way. */
    c->v1_levels = opts->version < 3;
    c->log_level = c->v1_levels                          ? (alm_log_level)(opts->log_level + 1)
                   : opts->log_level == ALM_LOG_DEFAULT ? ALM_LOG_INFO
                                                        : opts->log_level;
    *out = c;
    c = NULL;
out:
    alm_client_free(c);
    return error;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    response *r = userp;
    size_t n = size * nmemb;
    if (n > r->max - r->len) {
        r->too_big = 1;
        return 0; /* aborts the transfer */
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 16384;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *grown = realloc(r->body, cap);
        if (grown == NULL)
            return 0;
        r->body = grown;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

/* Retry-After's value: delta-seconds, or an HTTP date (read by libcurl); capped at an hour. */
static unsigned long parse_retry_after(const char *v, size_t n)
{
    char text[128];
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
        n--;
    if (n == 0 || n >= sizeof(text))
        return 0;
    memcpy(text, v, n);
    text[n] = '\0';
    unsigned long long seconds = 0;
    if (text[0] >= '0' && text[0] <= '9') {
        char *end = NULL;
        errno = 0;
        seconds = strtoull(text, &end, 10);
        if (*end != '\0')
            return 0;
        if (errno == ERANGE)
            seconds = ULLONG_MAX;
    } else {
        time_t at = curl_getdate(text, NULL), now = time(NULL);
        if (at == (time_t)-1 || at <= now)
            return 0;
        seconds = (unsigned long long)(at - now);
    }
    return seconds >= ALM__MAX_RETRY_AFTER_MS / 1000 ? ALM__MAX_RETRY_AFTER_MS
                                                    : (unsigned long)seconds * 1000ul;
}

/* Keeps the ETag of the final answer, without W/ and quotes. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    response *r = userp;
    size_t n = size * nmemb;
    if (n > 5 && strncasecmp(data, "HTTP/", 5) == 0) {
        r->etag[0] = '\0'; /* a new answer begins (after a 100 Continue, say) */
        r->retry_after_ms = 0;
    }
    if (n > 12 && strncasecmp(data, "retry-after:", 12) == 0) {
        r->retry_after_ms = parse_retry_after(data + 12, n - 12);
        return n;
    }
    if (n < 5 || strncasecmp(data, "etag:", 5) != 0)
        return n;
    const char *v = data + 5, *end = data + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    if (end - v >= 2 && v[0] == 'W' && v[1] == '/')
        v += 2;
    if (end - v >= 2 && *v == '"' && end[-1] == '"') {
        v++;
        end--;
    }
    size_t len = (size_t)(end - v);
    if (len < sizeof(r->etag)) {
        memcpy(r->etag, v, len);
        r->etag[len] = '\0';
    }
    return n;
}

static void response_dispose(response *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* The "message" of a Spring-style JSON error body, or "". */
static void error_detail(char *buf, size_t size, const response *r)
{
    buf[0] = '\0';
    if (r->body == NULL)
        return;
    json_error_t jerr;
    json_t *doc = json_loadb(r->body, r->len, 0, &jerr);
    const char *msg = json_string_value(json_object_get(doc, "message"));
    if (msg == NULL) /* the encryption endpoints answer {"description","status"} */
        msg = json_string_value(json_object_get(doc, "description"));
    if (msg != NULL && *msg != '\0')
        snprintf(buf, size, ": %.200s", msg);
    json_decref(doc);
}

static int status_error(const char *url, const response *r)
{
    char detail[256];
    error_detail(detail, sizeof(detail), r);
    switch (r->status) {
    case 401:
        return alm__error_set(ALM_EAUTH,
                              "%s answered 401: credentials missing or wrong; set the "
                              "username and password or the token%s",
                              url, detail);
    case 403:
        return alm__error_set(ALM_EAUTH,
                              "%s answered 403: these credentials may not read this "
                              "application%s",
                              url, detail);
    case 404:
        return alm__error_set(ALM_ENOTFOUND,
                              "%s answered 404: no such label or "
                              "application%s",
                              url, detail);
    case 429:
        return alm__error_set(ALM_ESERVER, "%s answered 429: too many requests%s%s", url,
                              r->retry_after_ms ? "; it asks to wait" : "", detail);
    case 502:
    case 503:
    case 504:
        return alm__error_set(ALM_ESERVER, "%s answered %ld: server busy or unavailable%s", url,
                              r->status, detail);
    default:
        if (r->status >= 500)
            return alm__error_set(ALM_ESERVER, "%s answered %ld%s", url, r->status, detail);
        return alm__error_set(ALM_EPROTOCOL, "%s answered an unexpected %ld%s", url, r->status,
                              detail);
    }
}

static int curl_error(const char *url, CURLcode rc, const char *msg, const response *r)
{
    const char *why = *msg ? msg : curl_easy_strerror(rc);
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return alm__error_set(ALM_ETIMEOUT, "%s: timed out: %s", url, why);
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
        if (r->too_big || rc == CURLE_FILESIZE_EXCEEDED)
            return alm__error_set(ALM_ETOOBIG, "%s: answer larger than %zu bytes", url, r->max);
        return alm__error_set(ALM_ENOMEM, "%s: out of memory receiving the answer", url);
    case CURLE_OUT_OF_MEMORY:
        return alm__error_set(ALM_ENOMEM, "%s: out of memory", url);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
        return alm__error_set(ALM_ETLS, "%s: cannot verify the server's certificate: %s", url, why);
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return alm__error_set(ALM_EINVALID, "%s: %s", url, why);
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_BAD_CONTENT_ENCODING:
        return alm__error_set(ALM_ENETWORK, "%s: bad or broken answer: %s", url, why);
    default:
        return alm__error_set(ALM_ENETWORK, "%s: cannot reach the server: %s", url, why);
    }
}

void alm__client_retry_policy(const alm_client *c, alm_retry_policy *out)
{
    *out = c->retry;
}

void alm__client_watch_policy(const alm_client *c, alm_retry_policy *out)
{
    *out = c->watch_retry;
}

unsigned long alm__client_retry_after(const alm_client *c)
{
    return c->retry_after_ms;
}

long alm__client_last_status(const alm_client *c)
{
    return c->last_status;
}

/* Runs the prepared transfer on the client's multi handle to its end. */
static CURLcode perform(alm_client *c)
{
    CURLcode result = CURLE_OK;
    int running = 1, left = 0;
    if (curl_multi_add_handle(c->multi, c->curl) != CURLM_OK)
        return CURLE_OUT_OF_MEMORY;
    while (running) {
        if (curl_multi_perform(c->multi, &running) != CURLM_OK) {
            result = CURLE_OUT_OF_MEMORY;
            break;
        }
        if (running == 0)
            break;
        if (curl_multi_poll(c->multi, NULL, 0, 1000, NULL) != CURLM_OK) {
            result = CURLE_OUT_OF_MEMORY;
            break;
        }
    }
    if (result == CURLE_OK) {
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
            if (msg->msg == CURLMSG_DONE)
                result = msg->data.result;
        }
    }
    curl_multi_remove_handle(c->multi, c->curl);
    return result;
}

/* Releases what the easy handle pointed to for one request. */
static void request_ctx_dispose(alm_client *c, request_ctx *x)
{
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(x->headers);
    x->headers = NULL;
}

/* Prepares the easy handle for one GET (or POST) of `server` + the target. */
static int request_begin(alm_client *c, const char *server, const target *t, response *r,
                         request_ctx *x)
{
    int error = 0;
    struct curl_slist *headers = NULL;
    CURL *h = c->curl;
    char *url = x->url, *errbuf = x->errbuf;

    const char *token = c->token;
    errbuf[0] = '\0';
    if ((size_t)snprintf(url, sizeof(x->url), "%s%s%s", server, t->path, t->query) >=
        sizeof(x->url))
        return alm__error_set(ALM_EINVALID, "request URL longer than %d bytes", MAX_URL_LEN);
    if (c->token_file.path != NULL && (error = alm__token_file_current(&c->token_file, &token)) < 0)
        return error;
    r->max = c->max_response;
    headers = curl_slist_append(NULL, t->accept);
    if (headers != NULL && t->body != NULL) {
        struct curl_slist *more = curl_slist_append(headers, "Content-Type: text/plain");
        if (more == NULL)
            curl_slist_free_all(headers);
        headers = more;
    }
    if (headers == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");

    /* curl_easy_reset keeps the connection cache, so keep-alive survives between requests. */
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, USER_AGENT);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(c->request_timeout_ms + t->extra_ms));
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_response);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    if (t->body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)t->body_len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, t->body);
    }
    if (c->ca_file != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    if (token != NULL) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
        curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, token);
    } else if (c->username != NULL || c->password != NULL) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, c->username ? c->username : "");
        curl_easy_setopt(h, CURLOPT_PASSWORD, c->password ? c->password : "");
    }

    alm__client_log(c, ALM_LOG_DEBUG, "%s %s", t->body != NULL ? "POST" : "GET", url);
    c->retry_after_ms = 0;
    c->last_status = 0;
    x->headers = headers;
    return 0;
}

/* Reads the outcome of the request begun on `x`: 0 with r->status 200 or 304, or an error. */
static int request_end(alm_client *c, CURLcode rc, response *r, request_ctx *x)
{
    int error = 0;
    CURL *h = c->curl;
    const char *url = x->url;
    if (rc != CURLE_OK) {
        r->dropped = rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING ||
                     rc == CURLE_PARTIAL_FILE || rc == CURLE_SEND_ERROR;
        error = curl_error(url, rc, x->errbuf, r);
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    c->last_status = r->status;
    c->retry_after_ms = r->retry_after_ms;
    if (r->status != 200 && r->status != 304)
        error = status_error(url, r);
out:
    /* The handle keeps pointers to these; clear them before they go out of scope. */
    request_ctx_dispose(c, x);
    return error;
}

/* One GET of `server` + the target, blocking. Returns 0 with r->status 200 or 304, or an error. */
static int request(alm_client *c, const char *server, const target *t, response *r)
{
    request_ctx x;
    int error = request_begin(c, server, t, r, &x);
    if (error < 0)
        return error;
    return request_end(c, perform(c), r, &x);
}

int alm__retryable(int error)
{
    return error == ALM_ENETWORK || error == ALM_ETIMEOUT || error == ALM_ESERVER;
}

/*
 * A held long poll that ends with the server going away: 503 (a server shutting down answers
 * its watchers so, with Retry-After: 0) or a connection lost (libcurl may retry a dropped
 * reused connection once with a fresh connect, which then fails: a network error of any kind
 * counts). Every watcher of that server learns it at the same instant; the watch loop spreads
 * their next polls (see alm__client_server_left) instead of sending them all to the next
 * server at once.
 */
static int poll_gone(const target *t, const response *r, int error)
{
    return t->extra_ms > 0 && (r->status == 503 || r->dropped || error == ALM_ENETWORK);
}

int alm__client_server_left(alm_client *c)
{
    int left = c->server_left;
    c->server_left = 0;
    return left;
}

/*
 * One round over the servers, starting with the one that answered last. Each failing server
 * is logged at `level`: a warning at boot, debug for a watch's poll (the watch logs outages).
 */
/*
 * After server `s` failed with `error`: whether the round goes on to the next server. A server
 * that answered "no" ends it; so does a long-poll whose server went away (the next poll asks
 * the next server, see poll_gone).
 */
static int round_goes_on(alm_client *c, const target *t, const response *r, size_t s, int error,
                         alm_log_level level)
{
    if (!alm__retryable(error))
        return 0;
    if (poll_gone(t, r, error)) {
        c->preferred = (s + 1) % c->nservers; /* the next poll asks the next server */
        c->server_left = 1;
        alm__client_log(c, ALM_LOG_INFO, "%s", alm_error_last()->message);
        return 0;
    }
    alm__client_log(c, level, "%s", alm_error_last()->message);
    return 1;
}

static int round_over_servers(alm_client *c, const target *t, response *r, alm_log_level level)
{
    int error = ALM_ERROR;
    for (size_t i = 0; i < c->nservers; i++) {
        size_t s = (c->preferred + i) % c->nservers;
        response_dispose(r);
        error = request(c, c->servers[s], t, r);
        if (error == 0) {
            c->preferred = s;
            return 0;
        }
        if (!round_goes_on(c, t, r, s, error, level))
            return error;
    }
    return error;
}

static void sleep_ms(unsigned long ms)
{
    struct timespec left = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&left, &left) < 0 && errno == EINTR)
        ;
}

unsigned long alm__backoff_ms(const alm_retry_policy *p, unsigned long initial_ms,
                              unsigned int round)
{
    double delay = (double)initial_ms;
    for (unsigned int i = 1; i < round && delay < p->max_backoff_ms; i++)
        delay *= p->multiplier;
    if (delay > p->max_backoff_ms)
        delay = p->max_backoff_ms;
    uint32_t rnd = 0;
    if (p->jitter > 0 && RAND_bytes((unsigned char *)&rnd, sizeof(rnd)) == 1) {
        double unit = (double)rnd / 4294967295.0 * 2.0 - 1.0; /* -1 .. 1 */
        delay += delay * p->jitter * unit;
    }
    return delay < 0 ? 0 : (unsigned long)delay;
}

/* Parses a 200 answer and writes it to the cache file. */
static int accept_answer(alm_config **out, alm_client *c, const response *r)
{
    int64_t now = (int64_t)time(NULL);
    int error = alm__config_from_json(out, r->body ? r->body : "", r->len,
                                      r->etag[0] ? r->etag : NULL, now, 0);
    if (error == 0 && !c->keep_placeholders && (error = alm__config_resolve(*out)) < 0) {
        alm_config_free(*out);
        *out = NULL;
    }
    if (error < 0) {
        alm__error_wrap(error, "the server's answer for %s", c->path);
        return error;
    }
    if (c->cache_file != NULL) {
        alm__cache_key key = {c->application, c->profiles, c->label};
        if (alm__cache_write(c->cache_file, &key, r->body, r->len, r->etag[0] ? r->etag : NULL,
                             now) < 0)
            /* the CLI passes this line on even where it keeps warnings quiet: keep its start
             * as cli.c's CACHE_NOT_WRITTEN says */
            alm__client_log(c, ALM_LOG_WARN, "configuration fetched, but not cached: %s",
                            alm_error_last()->message);
    }
    return 0;
}

/* Falls back to the cache file after `error`; returns 0 with a stale snapshot, or an error. */
static int use_cache(alm_config **out, alm_client *c, int error)
{
    char reason[512];
    snprintf(reason, sizeof(reason), "%s", alm_error_last()->message);
    alm__cache_key key = {c->application, c->profiles, c->label};
    int cerr = alm__cache_read(out, c->cache_file, &key);
    if (cerr == 0 && !c->keep_placeholders && (cerr = alm__config_resolve(*out)) < 0) {
        alm_config_free(*out);
        *out = NULL;
    }
    if (cerr == ALM_ENOTFOUND)
        return alm__error_set(error, "%s (and no cache file at %s to fall back to)", reason,
                              c->cache_file);
    if (cerr < 0)
        return alm__error_wrap(cerr, "%s; and the cache cannot stand in", reason);
    char when[32] = "an unknown time";
    time_t at = (time_t)alm_config_fetched_at(*out);
    struct tm tm;
    if (at > 0 && gmtime_r(&at, &tm) != NULL)
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    alm__client_log(c, ALM_LOG_WARN, "using the configuration cached at %s in %s: %s", when,
                    c->cache_file, reason);
    return 0;
}

/*
 * An Environment read answers 404 only for a label the server does not know. With no label
 * given, that is the server's default branch gone missing (deleted, or a server pointed at the
 * wrong repository): a fault of the server, not of this service, so a cached copy stands in as
 * for any outage. A label the caller named is its own choice, and 404 stays final.
 */
static int default_label_missing(const alm_client *c, int error)
{
    return error == ALM_ENOTFOUND && (c->label == NULL || c->label[0] == '\0');
}

/* Rounds over the servers with the retry policy until a 200 or a failure worth returning. */
static int get_with_retry(alm_client *c, const target *t, response *r)
{
    int error = 0;
    for (unsigned int round = 1;; round++) {
        error = round_over_servers(c, t, r, ALM_LOG_WARN);
        if (error == 0 && r->status != 200)
            error =
                alm__error_set(ALM_EPROTOCOL, "the server answered %ld to a plain GET", r->status);
        if (error == 0 || !alm__retryable(error) || round >= c->retry.max_attempts)
            return error;
        unsigned long pause = alm__backoff_ms(&c->retry, c->retry.initial_backoff_ms, round);
        if (c->retry_after_ms > c->retry.max_backoff_ms) {
            /* Waiting that long is the cache's job (or the caller's), not a boot's. */
            alm__client_log(c, ALM_LOG_WARN,
                            "the server asks to retry in %lu s, more than the %u ms this "
                            "client waits between attempts; giving up",
                            c->retry_after_ms / 1000, c->retry.max_backoff_ms);
            return error;
        }
        if (pause < c->retry_after_ms)
            pause = c->retry_after_ms;
        alm__client_log(c, ALM_LOG_INFO, "attempt %u of %u failed; retrying in %lu ms", round,
                        c->retry.max_attempts, pause);
        sleep_ms(pause);
    }
}

int alm_client_fetch(alm_config **out, alm_client *c)
{
    int error = 0;
    response r = {0};

    if (out == NULL || c == NULL)
        return alm__error_set(ALM_EINVALID, "alm_client_fetch: NULL argument");
    *out = NULL;
    const target t = {.path = c->path, .query = "", .accept = "Accept: application/json"};
    error = get_with_retry(c, &t, &r);
    if (error == 0)
        error = accept_answer(out, c, &r);
    else if ((alm__retryable(error) || error == ALM_ETLS || default_label_missing(c, error)) &&
             !c->fail_fast && c->cache_file != NULL)
        error = use_cache(out, c, error);
    response_dispose(&r);
    return error;
}

int alm_client_fetch_explained(alm_config **out, alm_client *c)
{
    int error = 0;
    response r = {0};

    if (out == NULL || c == NULL)
        return alm__error_set(ALM_EINVALID, "alm_client_fetch_explained: NULL argument");
    *out = NULL;
    /* The v2 media type carries each value's origin; the cache file keeps v1 answers only. */
    const target t = {.path = c->path,
                      .query = "",
                      .accept = "Accept: application/vnd.spring-cloud.config-server.v2+json"};
    if ((error = get_with_retry(c, &t, &r)) == 0) {
        error = alm__config_from_json(out, r.body ? r.body : "", r.len, r.etag[0] ? r.etag : NULL,
                                      (int64_t)time(NULL), 0);
        if (error < 0)
            alm__error_wrap(error, "the server's answer for %s", c->path);
    }
    response_dispose(&r);
    return error;
}

/* The query of a long-poll from `etag` ("" without one: the configuration at once). */
static int poll_query(alm_client *c, char *query, size_t size, const char *etag,
                      unsigned int timeout_s)
{
    query[0] = '\0';
    if (etag == NULL)
        return 0;
    char *escaped = curl_easy_escape(c->curl, etag, 0);
    if (escaped == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    int fits = (size_t)snprintf(query, size, "?watch=%s&timeout=%u", escaped, timeout_s) < size;
    curl_free(escaped);
    return fits ? 0 : alm__error_set(ALM_EINVALID, "alm_client_poll: etag too long");
}

int alm_client_poll(alm_config **out, alm_client *c, const char *etag, unsigned int timeout_s)
{
    int error = 0;
    response r = {0};
    char query[512];

    if (out == NULL || c == NULL)
        return alm__error_set(ALM_EINVALID, "alm_client_poll: NULL argument");
    *out = NULL;
    if (timeout_s == 0 || timeout_s > MAX_POLL_TIMEOUT_S)
        return alm__error_set(ALM_EINVALID, "alm_client_poll: timeout must be 1-%u seconds",
                              MAX_POLL_TIMEOUT_S);
    if ((error = poll_query(c, query, sizeof(query), etag, timeout_s)) < 0)
        return error;
    const target t = {.path = c->path,
                      .query = query,
                      .accept = "Accept: application/json",
                      .extra_ms = etag != NULL ? timeout_s * 1000ul : 0};
    error = round_over_servers(c, &t, &r, ALM_LOG_DEBUG);
    if (error == 0 && r.status == 200)
        error = accept_answer(out, c, &r);
    response_dispose(&r);
    return error;
}

void alm_buf_dispose(alm_buf *buf)
{
    if (buf == NULL)
        return;
    free(buf->ptr);
    buf->ptr = NULL;
    buf->size = 0;
}

/* "/{application}/{profiles}/{label}/{path}" (or …/{path}?useDefaultLabel), each escaped. */
static int file_target(alm_client *c, const char *path, char **out, const char **query)
{
    int error = 0;
    char *copy = NULL, *built = NULL;
    if ((error = append_segment(c, &built, c->application)) < 0 ||
        (error = append_segment(c, &built, c->profiles)) < 0)
        goto out;
    /* The label travels as it does for the Environment; the path keeps its slashes. */
    if (c->label != NULL) {
        const char *label_seg = strrchr(c->path, '/');
        size_t old = strlen(built), add = strlen(label_seg);
        char *grown = realloc(built, old + add + 1);
        if (grown == NULL) {
            error = alm__error_set(ALM_ENOMEM, "out of memory");
            goto out;
        }
        memcpy(grown + old, label_seg, add + 1);
        built = grown;
    }
    /* One segment, "/" written "(_)" as Spring reads it in resource paths: the servers
     * accept that with and without a label, which is not true of a multi-segment path. */
    for (const char *p = path; *p; p++) {
        if ((p == path || p[-1] == '/') && (strncmp(p, "./", 2) == 0 || strncmp(p, "../", 3) == 0 ||
                                            strcmp(p, ".") == 0 || strcmp(p, "..") == 0)) {
            error = alm__error_set(ALM_EINVALID, "file path '%s' has a '.' or '..' segment", path);
            goto out;
        }
    }
    if ((copy = spell_slashes(path)) == NULL) {
        error = alm__error_set(ALM_ENOMEM, "out of memory");
        goto out;
    }
    if ((error = append_segment(c, &built, copy)) < 0)
        goto out;
    *query = c->label != NULL ? "" : "?useDefaultLabel";
    *out = built;
    built = NULL;
out:
    free(copy);
    free(built);
    return error;
}

/* A plain file's path as the client asks for it: relative, a file, no empty segment. */
static int check_file_path(const char *path)
{
    size_t plen = strlen(path);
    if (plen == 0 || path[0] == '/' || path[plen - 1] == '/' || strstr(path, "//") != NULL)
        return alm__error_set(ALM_EINVALID,
                              "file path '%s' must be relative, name a file, and "
                              "have no empty segment",
                              path);
    return 0;
}

/* Hands the answer's body to `out`; an empty body is an empty string, never NULL. */
static int take_body(alm_buf *out, response *r)
{
    if (r->body == NULL && (r->body = calloc(1, 1)) == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    out->ptr = r->body;
    out->size = r->len;
    r->body = NULL;
    return 0;
}

int alm_client_fetch_file(alm_buf *out, alm_client *c, const char *path)
{
    int error = 0;
    char *file_path = NULL;
    const char *query = "";
    response r = {0};

    if (out == NULL || c == NULL || path == NULL)
        return alm__error_set(ALM_EINVALID, "alm_client_fetch_file: NULL argument");
    out->ptr = NULL;
    out->size = 0;
    if ((error = check_file_path(path)) < 0)
        return error;
    if ((error = file_target(c, path, &file_path, &query)) < 0)
        goto out;
    const target t = {.path = file_path, .query = query, .accept = "Accept: */*"};
    if ((error = get_with_retry(c, &t, &r)) < 0)
        goto out;
    error = take_body(out, &r);
out:
    free(file_path);
    response_dispose(&r);
    return error;
}

/* "label" as a query value: "(_)" for "/" as in paths, then percent-encoded. */
static char *escape_label(alm_client *c, const char *label)
{
    char *spelled = spell_slashes(label);
    char *escaped = spelled ? curl_easy_escape(c->curl, spelled, 0) : NULL;
    free(spelled);
    return escaped;
}

int alm_client_diff(alm_buf *out, alm_client *c, const char *from, const char *to)
{
    int error = 0;
    char *path = NULL, *query = NULL, *from_q = NULL, *to_q = NULL;
    response r = {0};

    if (out == NULL || c == NULL || from == NULL || to == NULL || !*from || !*to)
        return alm__error_set(ALM_EINVALID, "alm_client_diff: NULL or empty argument");
    out->ptr = NULL;
    out->size = 0;
    if ((error = append_segment(c, &path, "diff")) < 0 ||
        (error = append_segment(c, &path, c->application)) < 0 ||
        (error = append_segment(c, &path, c->profiles)) < 0)
        goto out;
    from_q = escape_label(c, from);
    to_q = escape_label(c, to);
    if (from_q == NULL || to_q == NULL ||
        (query = malloc(strlen(from_q) + strlen(to_q) + 16)) == NULL) {
        error = alm__error_set(ALM_ENOMEM, "out of memory");
        goto out;
    }
    sprintf(query, "?from=%s&to=%s", from_q, to_q);
    const target t = {.path = path, .query = query, .accept = "Accept: application/json"};
    if ((error = get_with_retry(c, &t, &r)) < 0)
        goto out;
    error = take_body(out, &r);
out:
    free(path);
    free(query);
    curl_free(from_q);
    curl_free(to_q);
    response_dispose(&r);
    return error;
}

int alm_client_poll_file(alm_buf *out, alm_buf *etag_out, alm_client *c, const char *path,
                         const char *etag, unsigned int timeout_s)
{
    int error = 0;
    char *file_path = NULL, *escaped = NULL;
    const char *base_query = "";
    char query[512];
    response r = {0};

    if (out == NULL || etag_out == NULL || c == NULL || path == NULL)
        return alm__error_set(ALM_EINVALID, "alm_client_poll_file: NULL argument");
    out->ptr = etag_out->ptr = NULL;
    out->size = etag_out->size = 0;
    if ((error = check_file_path(path)) < 0)
        return error;
    if (timeout_s == 0 || timeout_s > MAX_POLL_TIMEOUT_S)
        return alm__error_set(ALM_EINVALID, "alm_client_poll_file: timeout must be 1-%u seconds",
                              MAX_POLL_TIMEOUT_S);
    if ((error = file_target(c, path, &file_path, &base_query)) < 0)
        goto out;
    snprintf(query, sizeof(query), "%s", base_query);
    if (etag != NULL) {
        if ((escaped = curl_easy_escape(c->curl, etag, 0)) == NULL) {
            error = alm__error_set(ALM_ENOMEM, "out of memory");
            goto out;
        }
        if ((size_t)snprintf(query, sizeof(query), "%s%swatch=%s&timeout=%u", base_query,
                             base_query[0] ? "&" : "?", escaped, timeout_s) >= sizeof(query)) {
            error = alm__error_set(ALM_EINVALID, "alm_client_poll_file: etag too long");
            goto out;
        }
    }
    const target t = {.path = file_path,
                      .query = query,
                      .accept = "Accept: */*",
                      .extra_ms = etag != NULL ? timeout_s * 1000ul : 0};
    if ((error = round_over_servers(c, &t, &r, ALM_LOG_DEBUG)) < 0 || r.status != 200)
        goto out;
    if (r.etag[0] == '\0') {
        error = alm__error_set(ALM_EPROTOCOL, "the server sent %s without an ETag: it cannot "
                                              "watch plain files", path);
        goto out;
    }
    if ((etag_out->ptr = strdup(r.etag)) == NULL) {
        error = alm__error_set(ALM_ENOMEM, "out of memory");
        goto out;
    }
    etag_out->size = strlen(r.etag);
    if ((error = take_body(out, &r)) < 0)
        alm_buf_dispose(etag_out);
out:
    curl_free(escaped);
    free(file_path);
    response_dispose(&r);
    return error;
}

/* POST /encrypt or /decrypt: the text in, the text out (the server's encryption service). */
static int cipher_call(alm_buf *out, alm_client *c, const char *op, const char *text, size_t len)
{
    int error = 0;
    response r = {0};
    if (out == NULL || c == NULL || text == NULL)
        return alm__error_set(ALM_EINVALID, "alm_client_%s: NULL argument", op + 1);
    out->ptr = NULL;
    out->size = 0;
    if (len == 0)
        return alm__error_set(ALM_EINVALID, "alm_client_%s: empty text", op + 1);
    const target t = {.path = op,
                      .query = "",
                      .accept = "Accept: text/plain, application/json",
                      .body = text,
                      .body_len = len};
    error = get_with_retry(c, &t, &r);
    if (error == ALM_EPROTOCOL && r.status == 400) {
        char detail[256];
        error_detail(detail, sizeof(detail), &r);
        error = alm__error_set(ALM_EINVALID, "the server cannot %s this text%s", op + 1, detail);
    }
    if (error == 0)
        error = take_body(out, &r);
    /* The answer to /decrypt is a secret. */
    if (r.body != NULL)
        OPENSSL_cleanse(r.body, r.len);
    response_dispose(&r);
    return error;
}

int alm_client_encrypt(alm_buf *out, alm_client *c, const char *plaintext, size_t len)
{
    return cipher_call(out, c, "/encrypt", plaintext, len);
}

int alm_client_decrypt(alm_buf *out, alm_client *c, const char *ciphertext, size_t len)
{
    /* Accept the value as it sits in a configuration file. */
    if (ciphertext != NULL && len >= 8 && memcmp(ciphertext, "{cipher}", 8) == 0) {
        ciphertext += 8;
        len -= 8;
    }
    return cipher_call(out, c, "/decrypt", ciphertext, len);
}

/* ---- the same long-poll without blocking, for a watch driven by an event loop ------------- */

static int64_t monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* libcurl's CURLMOPT_SOCKETFUNCTION: keeps the epoll set in step with what it waits for. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *arg, void *socketp)
{
    async_poll *a = arg;
    (void)easy;
    (void)socketp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(a->epfd, EPOLL_CTL_DEL, fd, NULL);
        return 0;
    }
    struct epoll_event ev = {0};
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    ev.data.fd = fd;
    if (epoll_ctl(a->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 && errno == ENOENT)
        epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev);
    return 0;
}

/* libcurl's CURLMOPT_TIMERFUNCTION: when it wants to be called without socket activity. */
static int on_timer(CURLM *multi, long timeout_ms, void *arg)
{
    async_poll *a = arg;
    (void)multi;
    a->timer_at_ms = timeout_ms < 0 ? -1 : monotonic_ms() + timeout_ms;
    return 0;
}

int alm__client_async_open(alm_client *c)
{
    if (c->async != NULL)
        return c->async->epfd;
    async_poll *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    a->timer_at_ms = -1;
    if ((a->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        free(a);
        return alm__error_set(ALM_ERROR, "cannot create an epoll descriptor: %s", strerror(errno));
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, a);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, a);
    c->async = a;
    return a->epfd;
}

void alm__client_async_abort(alm_client *c)
{
    async_poll *a = c->async;
    if (a == NULL || !a->running)
        return;
    curl_multi_remove_handle(c->multi, c->curl);
    request_ctx_dispose(c, &a->ctx);
    response_dispose(&a->r);
    a->running = 0;
    a->timer_at_ms = -1;
}

void alm__client_async_close(alm_client *c)
{
    async_poll *a = c->async;
    if (a == NULL)
        return;
    alm__client_async_abort(c);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, NULL);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, NULL);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, NULL);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, NULL);
    close(a->epfd);
    free(a);
    c->async = NULL;
}

long alm__client_async_timeout_ms(const alm_client *c)
{
    const async_poll *a = c->async;
    if (a == NULL || !a->running || a->timer_at_ms < 0)
        return -1;
    int64_t left = a->timer_at_ms - monotonic_ms();
    return left < 0 ? 0 : left > LONG_MAX ? LONG_MAX : (long)left;
}

/* Starts the request to server a->server. */
static int async_start(alm_client *c)
{
    async_poll *a = c->async;
    response_dispose(&a->r);
    int error = request_begin(c, c->servers[a->server], &a->t, &a->r, &a->ctx);
    if (error < 0)
        return error;
    if (curl_multi_add_handle(c->multi, c->curl) != CURLM_OK) {
        request_ctx_dispose(c, &a->ctx);
        return alm__error_set(ALM_ENOMEM, "cannot add a transfer to libcurl's multi handle");
    }
    a->running = 1;
    return 0;
}

int alm__client_async_poll_begin(alm_client *c, const char *etag, unsigned int timeout_s)
{
    async_poll *a = c->async;
    int error;
    if (a == NULL || a->running)
        return alm__error_set(ALM_EINVALID, "a long-poll is already running");
    if ((error = poll_query(c, a->query, sizeof(a->query), etag, timeout_s)) < 0)
        return error;
    a->t = (target){.path = c->path,
                    .query = a->query,
                    .accept = "Accept: application/json",
                    .extra_ms = etag != NULL ? timeout_s * 1000ul : 0};
    a->tried = 0;
    a->server = c->preferred % c->nservers;
    return async_start(c);
}

/* Hands libcurl what the epoll set says is ready, and its timer when it is due. */
static void async_drive(alm_client *c)
{
    async_poll *a = c->async;
    struct epoll_event events[16];
    int running = 0;
    int n = epoll_wait(a->epfd, events, 16, 0);
    for (int i = 0; i < n; i++) {
        int mask = (events[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                   (events[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                   (events[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
        curl_multi_socket_action(c->multi, events[i].data.fd, mask, &running);
    }
    /* A timer due at once (after adding a transfer, say) is run now, not on the next call. */
    for (int round = 0; round < 4 && a->timer_at_ms >= 0 && a->timer_at_ms <= monotonic_ms();
         round++) {
        a->timer_at_ms = -1;
        curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
}

int alm__client_async_step(alm_client *c, alm_config **out)
{
    async_poll *a = c->async;
    CURLMsg *msg;
    int left = 0, done = 0;
    CURLcode result = CURLE_OK;
    *out = NULL;
    if (a == NULL || !a->running)
        return alm__error_set(ALM_EINVALID, "no long-poll is running");
    async_drive(c);
    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == c->curl) {
            result = msg->data.result;
            done = 1;
        }
    }
    if (!done)
        return ALM__INPROGRESS;
    curl_multi_remove_handle(c->multi, c->curl);
    a->running = 0;
    a->timer_at_ms = -1;
    int error = request_end(c, result, &a->r, &a->ctx);
    if (error == 0) {
        c->preferred = a->server;
        if (a->r.status == 200)
            error = accept_answer(out, c, &a->r);
        response_dispose(&a->r);
        return error;
    }
    if (round_goes_on(c, &a->t, &a->r, a->server, error, ALM_LOG_DEBUG) &&
        ++a->tried < c->nservers) {
        a->server = (a->server + 1) % c->nservers;
        int start = async_start(c);
        if (start == 0)
            return ALM__INPROGRESS;
        error = start;
    }
    response_dispose(&a->r);
    return error;
}
