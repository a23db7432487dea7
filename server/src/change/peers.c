/*
 * peers — signed "fetch now" notices between replicas (see peers.h). It owns the target list,
 * the sender thread and the notice format; it does not fetch (the route handler asks the
 * refresher) and does not decide who is a replica (the operator's --peers does, and a notice
 * that comes back to its sender is recognised by its origin and ignored).
 *
 * The sender resolves every target with getaddrinfo for every notice, so pods that come and go
 * behind a headless Service are followed without a restart, and sends to every address at once
 * through one libcurl multi handle with short timeouts. A peer that is down costs a warning.
 */
#include "change/peers.h"

#include "errors.h"
#include "log.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define MODULE "peers"
#define PEERS_PATH "/actuator/peer-refresh"
#define MAX_TARGETS 64
#define MAX_ADDRESSES 256     /* per notice, all targets together */
#define CONNECT_TIMEOUT_MS 1000L
#define TOTAL_TIMEOUT_MS 2000L

typedef struct target {
    char host[256];
    char port[8];
} target;

struct peers {
    target targets[MAX_TARGETS];
    size_t ntargets;
    bool https;
    char *secret;
    char self_id[80];

    pthread_t thread;
    bool running;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
    bool pending;
    bool pending_unconditional; /* some queued notice named no commit */
    char pending_commit[41];
};

static int parse_targets(peers *p, const char *spec, unsigned default_port)
{
    char *copy = strdup(spec);
    char *save = NULL;
    int error = 0;
    if (copy == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        size_t len = strlen(tok);
        while (len > 0 && tok[len - 1] == ' ')
            tok[--len] = '\0';
        if (len == 0)
            continue;
        if (p->ntargets == MAX_TARGETS) {
            error = err_set(ERR_CONFIG, "--peers: more than %d entries", MAX_TARGETS);
            goto out;
        }
        target *t = &p->targets[p->ntargets];
        /* [v6]:port, host:port, host */
        char *host = tok, *port = NULL;
        if (tok[0] == '[') {
            char *close = strchr(tok, ']');
            if (close == NULL || (close[1] != '\0' && close[1] != ':')) {
                error = err_set(ERR_CONFIG, "--peers: bad address '%.64s'", tok);
                goto out;
            }
            *close = '\0';
            host = tok + 1;
            port = close[1] == ':' ? close + 2 : NULL;
        } else if ((port = strchr(tok, ':')) != NULL) {
            *port++ = '\0';
        }
        char *end = NULL;
        unsigned long n = port ? strtoul(port, &end, 10) : default_port;
        if (host[0] == '\0' || strlen(host) >= sizeof(t->host) ||
            (port != NULL && (port[0] == '\0' || *end != '\0')) || n == 0 || n > 65535) {
            error = err_set(ERR_CONFIG, "--peers: bad entry '%.64s' (NAME[:PORT])", tok);
            goto out;
        }
        strcpy(t->host, host);
        snprintf(t->port, sizeof(t->port), "%lu", n);
        p->ntargets++;
    }
out:
    free(copy);
    return error;
}

int peers_sign(const char *secret, const char *body, size_t len, char out[72])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, len, mac,
             &mac_len) == NULL ||
        mac_len != 32)
        return err_set(ERR_INTERNAL, "HMAC failed");
    memcpy(out, "sha256=", 7);
    for (unsigned i = 0; i < mac_len; i++)
        snprintf(out + 7 + 2 * i, 3, "%02x", mac[i]);
    return 0;
}

int peers_accept(const peers *p, const char *signature, const char *body, size_t len,
                 peer_notice *out)
{
    int error = 0;
    json_t *doc = NULL;
    memset(out, 0, sizeof(*out));
    char expected[72];
    const char *hex = signature;
    if (hex != NULL && strncasecmp(hex, "sha256=", 7) == 0)
        hex += 7;
    if (hex == NULL || strlen(hex) != 64 || peers_sign(p->secret, body, len, expected) < 0 ||
        CRYPTO_memcmp(expected + 7, hex, 64) != 0) {
        error = err_set(ERR_UNAUTHORIZED, "peer notice without a valid " PEERS_SIGNATURE_HEADER);
        goto out;
    }
    json_error_t jerr;
    doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *origin = NULL, *commit = NULL;
    json_t *commit_value = NULL;
    if (doc == NULL ||
        json_unpack(doc, "{s:s, s?o}", "origin", &origin, "commit", &commit_value) != 0 ||
        strlen(origin) >= sizeof(out->origin) ||
        (commit_value != NULL && !json_is_null(commit_value) &&
         ((commit = json_string_value(commit_value)) == NULL || strlen(commit) > 40))) {
        error = err_set(ERR_BAD_REQUEST, "peer notice: expected {\"origin\":…,\"commit\":…}");
        goto out;
    }
    strcpy(out->origin, origin);
    if (commit != NULL)
        strcpy(out->commit, commit);
    out->from_self = strcmp(origin, p->self_id) == 0;
out:
    json_decref(doc);
    return error;
}

static char *notice_body(const peers *p, const char *commit)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    json_int_t ms = (json_int_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    json_t *doc = json_pack("{s:s, s:s?, s:I}", "origin", p->self_id, "commit",
                            commit && commit[0] ? commit : NULL, "timestamp", ms);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return text;
}

/* Every address of every target, as URLs, de-duplicated. */
static size_t resolve_urls(const peers *p, char urls[][128], size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < p->ntargets; i++) {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        int rc = getaddrinfo(p->targets[i].host, p->targets[i].port, &hints, &res);
        if (rc != 0) {
            LOG_WARN(MODULE, "peer %s: cannot resolve: %s", p->targets[i].host, gai_strerror(rc));
            continue;
        }
        for (struct addrinfo *a = res; a != NULL && n < max; a = a->ai_next) {
            char ip[INET6_ADDRSTRLEN] = "";
            const void *where = a->ai_family == AF_INET6
                                    ? (const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr
                                    : (const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr;
            if (inet_ntop(a->ai_family, where, ip, sizeof(ip)) == NULL)
                continue;
            char url[128];
            snprintf(url, sizeof(url), "%s://%s%s%s:%s" PEERS_PATH, p->https ? "https" : "http",
                     a->ai_family == AF_INET6 ? "[" : "", ip, a->ai_family == AF_INET6 ? "]" : "",
                     p->targets[i].port);
            bool seen = false;
            for (size_t j = 0; j < n && !seen; j++)
                seen = strcmp(urls[j], url) == 0;
            if (!seen)
                strcpy(urls[n++], url);
        }
        freeaddrinfo(res);
    }
    return n;
}

static size_t discard_body(char *data, size_t size, size_t nmemb, void *ctx)
{
    (void)data;
    (void)ctx;
    return size * nmemb;
}

static void send_notice(peers *p, const char *commit)
{
    static char urls[MAX_ADDRESSES][128]; /* the sender thread's alone */
    CURL *easy[MAX_ADDRESSES] = {0};
    struct curl_slist *headers = NULL;
    CURLM *multi = NULL;
    char *body = notice_body(p, commit);
    char signature[72], header[128];
    size_t n = 0;
    if (body == NULL || peers_sign(p->secret, body, strlen(body), signature) < 0) {
        LOG_WARN(MODULE, "cannot build a notice: %s", body ? err_message() : "out of memory");
        goto out;
    }
    snprintf(header, sizeof(header), PEERS_SIGNATURE_HEADER ": %s", signature);
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = headers ? curl_slist_append(headers, header) : NULL;
    n = resolve_urls(p, urls, MAX_ADDRESSES);
    multi = curl_multi_init();
    if (headers == NULL || multi == NULL)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if ((easy[i] = curl_easy_init()) == NULL)
            continue;
        curl_easy_setopt(easy[i], CURLOPT_URL, urls[i]);
        curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(easy[i], CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy[i], CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
        curl_easy_setopt(easy[i], CURLOPT_TIMEOUT_MS, TOTAL_TIMEOUT_MS);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, discard_body);
        curl_easy_setopt(easy[i], CURLOPT_PRIVATE, urls[i]);
        curl_easy_setopt(easy[i], CURLOPT_PROXY, ""); /* replicas talk directly */
        if (p->https) {
            /* Peers are addressed by IP, which their certificates do not name; the notice is
             * authenticated by its signature and carries nothing secret. */
            curl_easy_setopt(easy[i], CURLOPT_SSL_VERIFYPEER, 0L);
            curl_easy_setopt(easy[i], CURLOPT_SSL_VERIFYHOST, 0L);
        }
        curl_multi_add_handle(multi, easy[i]);
    }
    int running = 1;
    while (running > 0) {
        if (curl_multi_perform(multi, &running) != CURLM_OK)
            break;
        if (running > 0)
            curl_multi_poll(multi, NULL, 0, 200, NULL);
    }
    CURLMsg *msg;
    int left = 0;
    while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        char *url = NULL;
        long status = 0;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &url);
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        if (msg->data.result != CURLE_OK)
            LOG_WARN(MODULE, "peer %s not told: %s", url, curl_easy_strerror(msg->data.result));
        else if (status != 200)
            LOG_WARN(MODULE, "peer %s refused the notice: HTTP %ld", url, status);
        else
            LOG_DEBUG(MODULE, "peer %s told", url);
    }
out:
    for (size_t i = 0; i < n; i++) {
        if (easy[i] != NULL) {
            curl_multi_remove_handle(multi, easy[i]);
            curl_easy_cleanup(easy[i]);
        }
    }
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    free(body);
}

static void *sender_thread(void *arg)
{
    peers *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->stopping) {
        if (!p->pending) {
            pthread_cond_wait(&p->wake, &p->lock);
            continue;
        }
        char commit[41] = "";
        if (!p->pending_unconditional)
            memcpy(commit, p->pending_commit, sizeof(commit));
        p->pending = false;
        p->pending_unconditional = false;
        pthread_mutex_unlock(&p->lock);
        send_notice(p, commit);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int peers_new(peers **out, const peers_options *opts)
{
    int error = 0;
    peers *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->https = opts->https;
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread uses libcurl */
    snprintf(p->self_id, sizeof(p->self_id), "%s", opts->self_id);
    if ((p->secret = strdup(opts->secret)) == NULL) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    if (opts->targets != NULL && (error = parse_targets(p, opts->targets, opts->default_port)) < 0)
        goto out;
    if (p->ntargets > 0) {
        if (pthread_create(&p->thread, NULL, sender_thread, p) != 0) {
            error = err_set(ERR_INTERNAL, "cannot start the peers thread");
            goto out;
        }
        p->running = true;
    }
out:
    if (error < 0) {
        peers_free(p);
        p = NULL;
    }
    *out = p;
    return error;
}

void peers_free(peers *p)
{
    if (p == NULL)
        return;
    if (p->running) {
        pthread_mutex_lock(&p->lock);
        p->stopping = true;
        pthread_cond_signal(&p->wake);
        pthread_mutex_unlock(&p->lock);
        pthread_join(p->thread, NULL);
    }
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    if (p->secret != NULL) {
        OPENSSL_cleanse(p->secret, strlen(p->secret));
        free(p->secret);
    }
    free(p);
    curl_global_cleanup();
}

void peers_notify(peers *p, const char *commit)
{
    if (p == NULL || !p->running)
        return;
    pthread_mutex_lock(&p->lock);
    p->pending = true;
    if (commit == NULL || commit[0] == '\0')
        p->pending_unconditional = true;
    else
        snprintf(p->pending_commit, sizeof(p->pending_commit), "%s", commit);
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

void peers_on_change(void *ctx, const change_notice *notice)
{
    /* Only the default label's move is worth a notice: peers compare it with their own. */
    /* A commit names the default repository's label; another repository's change names none,
     * and a replica told so fetches every repository. */
    if (notice->label == NULL && notice->applications != NULL)
        peers_notify(ctx, notice->versioned && notice->repository[0] == '\0' ? notice->to : NULL);
}
