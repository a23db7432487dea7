/*
 * bus — Spring Cloud Bus over AMQP with rabbitmq-c (see bus.h). Only this module includes
 * <amqp.h>. It owns the broker connection, one thread that both publishes and consumes (a
 * rabbitmq-c connection is not to be shared between threads), the outgoing event queue and
 * the wire format, which follows docs/refresh-and-watch.md and Spring's:
 *
 *   exchange   <destination>, topic, durable, not auto-delete, not internal, no arguments
 *   publish    routing key <destination>, content_type application/json, delivery_mode 2
 *   consume    queue <destination>.anonymous.<22 base64url>, exclusive, auto-delete, bound '#'
 *   body       {"type":"RefreshRemoteApplicationEvent","timestamp":…,"originService":…,
 *               "destinationService":…,"id":"<uuid>"} and nothing else
 *
 * It does not fetch: a foreign refresh event calls the on_refresh callback (the refresher).
 */
#include "change/bus.h"

#include "errors.h"
#include "log.h"
#include "metrics.h"

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define MODULE "bus"
#define CHANNEL 1
#define QUEUE_MAX 256         /* events waiting for the thread; more are counted as failed */
#define DEST_MAX 160
#define BACKOFF_MAX_SECONDS 30
#define IO_TIMEOUT_SECONDS 5  /* connect, handshake and each RPC */
#define HEARTBEAT_SECONDS 30
#define DEFAULT_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

struct bus {
    char *url;
    char destination[128];
    char id[128];
    char *ca_file;
    void (*on_refresh)(void *ctx);
    void *ctx;

    pthread_t thread;
    bool running;
    int wake_fd;

    pthread_mutex_t lock; /* everything below */
    bool stopping;
    char queue[QUEUE_MAX][DEST_MAX];
    size_t queued;
    bool connected;
    char last_error[256];
};

void bus_normalise_destination(const char *destination, char *out, size_t size)
{
    if (destination == NULL || destination[0] == '\0') {
        snprintf(out, size, "**");
        return;
    }
    size_t colons = 0, len = strlen(destination);
    for (const char *p = destination; *p; p++)
        colons += *p == ':';
    bool ends_any = len >= 3 && strcmp(destination + len - 3, ":**") == 0;
    if (colons <= 1 && !ends_any && strcmp(destination, "**") != 0)
        snprintf(out, size, "%s:**", destination);
    else
        snprintf(out, size, "%s", destination);
}

static void set_error(bus *b, const char *what, const char *detail)
{
    pthread_mutex_lock(&b->lock);
    snprintf(b->last_error, sizeof(b->last_error), "%s%s", what, detail);
    b->connected = false;
    pthread_mutex_unlock(&b->lock);
}

static const char *reply_error(amqp_rpc_reply_t r)
{
    static __thread char text[160];
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return "ok";
    case AMQP_RESPONSE_NONE:
        return "no reply";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        return amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_t *m = r.reply.decoded;
            snprintf(text, sizeof(text), "broker closed the connection: %u %.*s", m->reply_code,
                     (int)m->reply_text.len, (const char *)m->reply_text.bytes);
        } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_t *m = r.reply.decoded;
            snprintf(text, sizeof(text), "broker closed the channel: %u %.*s", m->reply_code,
                     (int)m->reply_text.len, (const char *)m->reply_text.bytes);
        } else {
            snprintf(text, sizeof(text), "broker error (method 0x%08x)", r.reply.id);
        }
        return text;
    }
    return "unknown error";
}

/* `<destination>.anonymous.<22 base64url chars>`, the shape of Spring's anonymous queues. */
static void queue_name(const bus *b, char *out, size_t size)
{
    unsigned char random[16] = {0}, text[32] = {0};
    RAND_bytes(random, sizeof(random));
    EVP_EncodeBlock(text, random, sizeof(random)); /* 24 chars, the last two '=' */
    text[22] = '\0';
    for (unsigned char *p = text; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    snprintf(out, size, "%s.anonymous.%s", b->destination, (const char *)text);
}

/* Connects, declares and subscribes. NULL with last_error set on failure. */
static amqp_connection_state_t connect_broker(bus *b)
{
    amqp_connection_state_t conn = NULL;
    char *url = strdup(b->url);
    struct amqp_connection_info info;
    amqp_rpc_reply_t r;
    const char *failure = NULL;
    char qname[200];
    if (url == NULL || amqp_parse_url(url, &info) != AMQP_STATUS_OK) {
        failure = "cannot parse the broker URL";
        goto out;
    }
    if ((conn = amqp_new_connection()) == NULL) {
        failure = "out of memory";
        goto out;
    }
    amqp_socket_t *sock = info.ssl ? amqp_ssl_socket_new(conn) : amqp_tcp_socket_new(conn);
    if (sock == NULL) {
        failure = "cannot create a socket";
        goto out;
    }
    if (info.ssl) {
        const char *ca = b->ca_file ? b->ca_file : DEFAULT_CA_FILE;
        amqp_ssl_socket_set_verify_peer(sock, 1);
        amqp_ssl_socket_set_verify_hostname(sock, 1);
        if (amqp_ssl_socket_set_cacert(sock, ca) != AMQP_STATUS_OK) {
            failure = "cannot read the CA file";
            goto out;
        }
    }
    struct timeval timeout = {.tv_sec = IO_TIMEOUT_SECONDS};
    amqp_set_handshake_timeout(conn, &timeout);
    amqp_set_rpc_timeout(conn, &timeout);
    int status = amqp_socket_open_noblock(sock, info.host, info.port, &timeout);
    if (status != AMQP_STATUS_OK) {
        set_error(b, "cannot connect: ", amqp_error_string2(status));
        goto fail;
    }
    /* `amqp://host/` names the empty vhost by the letter of the URI spec; everyone means "/". */
    r = amqp_login(conn, info.vhost[0] ? info.vhost : "/", 0, 131072, HEARTBEAT_SECONDS, AMQP_SASL_METHOD_PLAIN,
                   info.user, info.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        set_error(b, "login refused: ", reply_error(r));
        goto fail;
    }
    amqp_channel_open(conn, CHANNEL);
    amqp_bytes_t exchange = amqp_cstring_bytes(b->destination);
    /* Exactly Spring's flags: a mismatch makes the broker close the channel (406). */
    amqp_exchange_declare(conn, CHANNEL, exchange, amqp_cstring_bytes("topic"), 0, 1, 0, 0,
                          amqp_empty_table);
    queue_name(b, qname, sizeof(qname));
    amqp_queue_declare(conn, CHANNEL, amqp_cstring_bytes(qname), 0, 0, 1, 1, amqp_empty_table);
    amqp_queue_bind(conn, CHANNEL, amqp_cstring_bytes(qname), exchange, amqp_cstring_bytes("#"),
                    amqp_empty_table);
    amqp_basic_consume(conn, CHANNEL, amqp_cstring_bytes(qname), amqp_empty_bytes, 0, 1, 0,
                       amqp_empty_table);
    r = amqp_get_rpc_reply(conn);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        set_error(b, "cannot subscribe: ", reply_error(r));
        goto fail;
    }
    pthread_mutex_lock(&b->lock);
    b->connected = true;
    b->last_error[0] = '\0';
    pthread_mutex_unlock(&b->lock);
    LOG_INFO(MODULE, "connected to %s:%d, exchange %s, queue %s", info.host, info.port,
             b->destination, qname);
    goto done;
fail:
    amqp_destroy_connection(conn);
    conn = NULL;
    goto done;
out:
    set_error(b, "", failure);
    if (conn != NULL)
        amqp_destroy_connection(conn);
    conn = NULL;
done:
    if (url != NULL) {
        OPENSSL_cleanse(url, strlen(url));
        free(url);
    }
    return conn;
}

static void uuid4(char out[37])
{
    unsigned char r[16] = {0};
    RAND_bytes(r, sizeof(r));
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
             r[13], r[14], r[15]);
}

static int publish_one(bus *b, amqp_connection_state_t conn, const char *destination)
{
    char id[37];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uuid4(id);
    json_t *event = json_pack("{s:s, s:I, s:s, s:s, s:s}", "type",
                              "RefreshRemoteApplicationEvent", "timestamp",
                              (json_int_t)now.tv_sec * 1000 + now.tv_nsec / 1000000,
                              "originService", b->id, "destinationService", destination, "id", id);
    char *body = event ? json_dumps(event, JSON_COMPACT) : NULL;
    json_decref(event);
    if (body == NULL)
        return -1;
    amqp_basic_properties_t props = {
        ._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG,
        .content_type = amqp_cstring_bytes("application/json"),
        .delivery_mode = AMQP_DELIVERY_PERSISTENT,
    };
    int status = amqp_basic_publish(conn, CHANNEL, amqp_cstring_bytes(b->destination),
                                    amqp_cstring_bytes(b->destination), 0, 0, &props,
                                    amqp_cstring_bytes(body));
    free(body);
    if (status != AMQP_STATUS_OK) {
        set_error(b, "publish failed: ", amqp_error_string2(status));
        return -1;
    }
    LOG_DEBUG(MODULE, "published RefreshRemoteApplicationEvent for %s", destination);
    return 0;
}

static void handle_delivery(bus *b, const amqp_envelope_t *env)
{
    const amqp_basic_properties_t *p = &env->message.properties;
    if ((p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) &&
        !(p->content_type.len >= 16 &&
          strncmp(p->content_type.bytes, "application/json", 16) == 0))
        return; /* Spring drops a message with a wrong content type too */
    json_t *doc = json_loadb(env->message.body.bytes, env->message.body.len, 0, NULL);
    const char *type = NULL, *origin = NULL;
    if (doc != NULL &&
        json_unpack(doc, "{s:s, s?:s}", "type", &type, "originService", &origin) == 0 &&
        strcmp(type, "RefreshRemoteApplicationEvent") == 0 &&
        (origin == NULL || strcmp(origin, b->id) != 0)) {
        metrics_bus(METRICS_BUS_RECEIVED);
        LOG_INFO(MODULE, "refresh event from %s: fetching", origin ? origin : "(no origin)");
        if (b->on_refresh != NULL)
            b->on_refresh(b->ctx);
    }
    json_decref(doc);
}

static void close_broker(amqp_connection_state_t conn, bool polite)
{
    if (conn == NULL)
        return;
    if (polite) {
        amqp_channel_close(conn, CHANNEL, AMQP_REPLY_SUCCESS);
        amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(conn);
}

/* Takes the queued destinations; while disconnected they count as failed. */
static size_t take_queue(bus *b, char out[][DEST_MAX])
{
    pthread_mutex_lock(&b->lock);
    size_t n = b->queued;
    memcpy(out, b->queue, n * DEST_MAX);
    b->queued = 0;
    pthread_mutex_unlock(&b->lock);
    return n;
}

static void drain_wake(bus *b)
{
    uint64_t n;
    ssize_t got = read(b->wake_fd, &n, sizeof(n));
    (void)got;
}

static void *bus_thread(void *arg)
{
    bus *b = arg;
    static __thread char batch[QUEUE_MAX][DEST_MAX];
    amqp_connection_state_t conn = NULL;
    unsigned backoff = 1;
    struct timespec next_attempt = {0};
    for (;;) {
        pthread_mutex_lock(&b->lock);
        bool stopping = b->stopping;
        pthread_mutex_unlock(&b->lock);
        if (stopping)
            break;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (conn == NULL && now.tv_sec >= next_attempt.tv_sec) {
            conn = connect_broker(b);
            if (conn == NULL) {
                bus_status st;
                bus_get_status(b, &st);
                LOG_WARN(MODULE, "broker unavailable (retry in %us): %s", backoff, st.last_error);
                next_attempt.tv_sec = now.tv_sec + backoff;
                backoff = backoff * 2 > BACKOFF_MAX_SECONDS ? BACKOFF_MAX_SECONDS : backoff * 2;
            } else {
                backoff = 1;
            }
        }
        size_t n = take_queue(b, batch);
        for (size_t i = 0; i < n; i++) {
            if (conn != NULL && publish_one(b, conn, batch[i]) == 0) {
                metrics_bus(METRICS_BUS_PUBLISHED);
                continue;
            }
            metrics_bus(METRICS_BUS_FAILED);
            if (conn != NULL) {
                close_broker(conn, false);
                conn = NULL;
            }
        }
        /* Wait for a delivery, an event to publish, or the next reconnection attempt. */
        int wait_ms = 1000;
        if (conn == NULL) {
            long left = (long)(next_attempt.tv_sec - now.tv_sec) * 1000;
            wait_ms = left < 0 ? 0 : left > 1000 ? 1000 : (int)left;
        }
        bool buffered = conn != NULL && (amqp_data_in_buffer(conn) || amqp_frames_enqueued(conn));
        struct pollfd fds[2] = {{.fd = b->wake_fd, .events = POLLIN},
                                {.fd = conn ? amqp_get_sockfd(conn) : -1, .events = POLLIN}};
        if (!buffered && poll(fds, 2, wait_ms) > 0 && (fds[0].revents & POLLIN))
            drain_wake(b);
        if (conn == NULL)
            continue;
        /* Read what arrived without blocking; the zero-timeout call also keeps heartbeats. */
        for (;;) {
            amqp_envelope_t env;
            struct timeval zero = {0};
            amqp_maybe_release_buffers(conn);
            amqp_rpc_reply_t r = amqp_consume_message(conn, &env, &zero, 0);
            if (r.reply_type == AMQP_RESPONSE_NORMAL) {
                handle_delivery(b, &env);
                amqp_destroy_envelope(&env);
                continue;
            }
            if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                r.library_error == AMQP_STATUS_TIMEOUT)
                break;
            set_error(b, "connection lost: ", reply_error(r));
            LOG_WARN(MODULE, "connection to the broker lost: %s", reply_error(r));
            close_broker(conn, false);
            conn = NULL;
            clock_gettime(CLOCK_MONOTONIC, &now);
            next_attempt.tv_sec = now.tv_sec + backoff;
            break;
        }
    }
    close_broker(conn, true);
    return NULL;
}

int bus_new(bus **out, const bus_options *opts)
{
    int error = 0;
    bus *b = calloc(1, sizeof(*b));
    *out = NULL;
    if (b == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    b->wake_fd = -1;
    pthread_mutex_init(&b->lock, NULL);
    snprintf(b->destination, sizeof(b->destination), "%s",
             opts->destination ? opts->destination : "springCloudBus");
    snprintf(b->id, sizeof(b->id), "%s", opts->id);
    b->on_refresh = opts->on_refresh;
    b->ctx = opts->ctx;
    snprintf(b->last_error, sizeof(b->last_error), "not connected yet");
    b->url = strdup(opts->url);
    b->ca_file = opts->ca_file ? strdup(opts->ca_file) : NULL;
    if (b->url == NULL || (opts->ca_file && b->ca_file == NULL)) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    /* Check the URL now: a typo should stop the start, not become a warning every 30 s. */
    char *probe = strdup(opts->url);
    struct amqp_connection_info info;
    int parsed = probe ? amqp_parse_url(probe, &info) : AMQP_STATUS_NO_MEMORY;
    if (probe != NULL) {
        OPENSSL_cleanse(probe, strlen(probe));
        free(probe);
    }
    if (parsed != AMQP_STATUS_OK) {
        error = err_set(ERR_CONFIG, "--bus-amqp-url: not an amqp:// or amqps:// URL");
        goto out;
    }
    if ((b->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        error = err_set(ERR_INTERNAL, "eventfd: %s", strerror(errno));
        goto out;
    }
    if (pthread_create(&b->thread, NULL, bus_thread, b) != 0) {
        error = err_set(ERR_INTERNAL, "cannot start the bus thread");
        goto out;
    }
    b->running = true;
out:
    if (error < 0)
        bus_free(b);
    else
        *out = b;
    return error;
}

static void wake(bus *b)
{
    uint64_t one = 1;
    ssize_t put = write(b->wake_fd, &one, sizeof(one));
    (void)put;
}

void bus_stop(bus *b)
{
    if (b == NULL || !b->running)
        return;
    pthread_mutex_lock(&b->lock);
    b->stopping = true;
    pthread_mutex_unlock(&b->lock);
    wake(b);
    pthread_join(b->thread, NULL);
    b->running = false;
}

void bus_free(bus *b)
{
    if (b == NULL)
        return;
    bus_stop(b);
    if (b->wake_fd >= 0)
        close(b->wake_fd);
    pthread_mutex_destroy(&b->lock);
    if (b->url != NULL) {
        OPENSSL_cleanse(b->url, strlen(b->url));
        free(b->url);
    }
    free(b->ca_file);
    free(b);
}

void bus_publish_refresh(bus *b, const char *destination)
{
    if (b == NULL)
        return;
    char normal[DEST_MAX];
    bus_normalise_destination(destination, normal, sizeof(normal));
    pthread_mutex_lock(&b->lock);
    bool full = b->queued == QUEUE_MAX;
    if (!full)
        memcpy(b->queue[b->queued++], normal, DEST_MAX);
    pthread_mutex_unlock(&b->lock);
    if (full)
        metrics_bus(METRICS_BUS_FAILED);
    else
        wake(b);
}

void bus_on_change(void *ctx, const change_notice *notice)
{
    /* Spring's /monitor: one event per name, `application` (here "*") meaning everyone. */
    size_t i;
    json_t *name;
    /* Every node on the exchange took the event that asked for this fetch. Announcing its change
     * again made the first node fetch once more, and that extra fetch put its next real push
     * inside the refresher's one-second gap: wake-ups across replicas went from milliseconds to
     * most of a second. */
    if (notice->label != NULL || notice->applications == NULL || notice->heard_elsewhere)
        return;
    json_array_foreach(notice->applications, i, name)
    {
        const char *app = json_string_value(name);
        if (app != NULL && app[0] != '\0')
            bus_publish_refresh(ctx, app);
    }
}

void bus_get_status(bus *b, bus_status *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&b->lock);
    out->connected = b->connected;
    snprintf(out->last_error, sizeof(out->last_error), "%s", b->last_error);
    snprintf(out->destination, sizeof(out->destination), "%s", b->destination);
    pthread_mutex_unlock(&b->lock);
}
