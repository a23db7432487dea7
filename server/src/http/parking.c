/*
 * parking — long-poll requests held outside libmicrohttpd while they wait (see parking.h).
 *
 * One epoll set and one thread. A waiting socket is registered for EPOLLRDHUP only: a client
 * that hangs up is noticed and its descriptor closed at once, while bytes a client sends early
 * stay in the kernel until the answer is out (they are dropped before the close). An answer is
 * queued by whichever thread produces it and written by the lot's thread, which alone does I/O
 * on parked sockets; a socket whose send buffer fills is switched to EPOLLOUT until it drains.
 * Once sent, the connection is closed: handing it back to libmicrohttpd (MHD_add_connection)
 * for a next request was tried, and under connection churn it made libmicrohttpd 0.9.75's
 * thread pool reset unrelated new connections now and then (see docs/architecture.md).
 *
 * The lock covers the queue and each socket's released/answered/gone flags, never I/O.
 */
#include "http/parking.h"

#include "errors.h"
#include "http/internal.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MODULE "parking"
#define EVENTS_PER_WAIT 256

/* The bytes of an answer: head owned (wiped and freed when done), body lent until body_done. */
typedef struct wire_answer {
    char *head;
    size_t head_len;
    const char *body;
    size_t body_len;
    void (*body_done)(void *body_cls);
    void *body_cls;
} wire_answer;

struct parked_request {
    struct request_handle handle; /* {.parked = itself} */
    parking_record record;        /* its strings point into text */
    bool head_only;
    parking_lot *lot;
    int fd;        /* -1 once closed */
    bool released; /* the HTTP server dropped its descriptor: ours to watch */
    bool answered; /* parking_answer ran */
    bool writing;  /* the lot's thread is sending the answer (lot thread only) */
    wire_answer answer;
    size_t written; /* bytes of head, then body, already sent */
    parked_request *next_ready;
    parked_request *prev, *next; /* every socket the lot holds, for stop */
    char text[]; /* request id, method, url, user: each NUL-terminated */
};

struct parking_lot {
    parking_handlers handlers;
    int epoll_fd;
    int wake_fd;
    pthread_t thread;
    pthread_mutex_t lock;
    bool stopping;
    parked_request *ready_head, *ready_tail; /* answered and released, not yet written */
    parked_request *all;
};

static void wake_thread(parking_lot *lot)
{
    uint64_t one = 1;
    ssize_t n = write(lot->wake_fd, &one, sizeof(one));
    (void)n; /* a full counter already means "wake up" */
}

/* Lock held. */
static void queue_ready(parking_lot *lot, parked_request *s)
{
    bool was_empty = lot->ready_head == NULL;
    s->next_ready = NULL;
    if (lot->ready_tail)
        lot->ready_tail->next_ready = s;
    else
        lot->ready_head = s;
    lot->ready_tail = s;
    if (was_empty)
        wake_thread(lot);
}

static void close_socket(parked_request *s)
{
    if (s->fd < 0)
        return;
    /* Explicitly: the HTTP server may still hold its own descriptor of the same socket for a
     * moment, and epoll forgets a registration only when every descriptor is closed. */
    epoll_ctl(s->lot->epoll_fd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    s->fd = -1;
}

static void release_answer(wire_answer *a)
{
    if (a->head != NULL) {
        OPENSSL_cleanse(a->head, a->head_len);
        free(a->head);
        a->head = NULL;
    }
    if (a->body_done != NULL) {
        a->body_done(a->body_cls);
        a->body_done = NULL;
    }
}

/* Bytes the client sent while it waited would turn the close into a reset, which can destroy
 * the answer before the client has read it: read and drop them first. */
static void discard_unread(int fd)
{
    char scratch[4096];
    for (int i = 0; i < 16; i++)
        if (recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT) <= 0)
            return;
}

/* Lot thread: the exchange is over, one way or the other. */
static void finish(parked_request *s, bool sent)
{
    parking_lot *lot = s->lot;
    pthread_mutex_lock(&lot->lock);
    if (s->prev)
        s->prev->next = s->next;
    else
        lot->all = s->next;
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&lot->lock);

    if (sent && s->fd >= 0)
        discard_unread(s->fd);
    close_socket(s);
    release_answer(&s->answer);
    lot->handlers.done(lot->handlers.ctx, &s->record, sent);
    free(s);
}

/* 1: all sent, 0: the socket is full (wait for EPOLLOUT), -1: the client is gone. */
static int send_some(parked_request *s)
{
    const wire_answer *a = &s->answer;
    size_t total = a->head_len + a->body_len;
    while (s->written < total) {
        struct iovec iov[2];
        size_t n = 0;
        if (s->written < a->head_len) {
            iov[n].iov_base = a->head + s->written;
            iov[n++].iov_len = a->head_len - s->written;
            if (a->body_len > 0) {
                iov[n].iov_base = (void *)(uintptr_t)a->body;
                iov[n++].iov_len = a->body_len;
            }
        } else {
            size_t done = s->written - a->head_len;
            iov[n].iov_base = (void *)(uintptr_t)(a->body + done);
            iov[n++].iov_len = a->body_len - done;
        }
        struct msghdr msg;
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = iov;
        msg.msg_iovlen = n;
        ssize_t sent = sendmsg(s->fd, &msg, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        s->written += (size_t)sent;
    }
    return 1;
}

/* Lot thread: write what the socket takes; finish when all of it went out or the client left. */
static void advance(parked_request *s)
{
    int state = s->fd < 0 ? -1 : send_some(s);
    if (state != 0) {
        finish(s, state > 0);
        return;
    }
    if (!s->writing) {
        s->writing = true;
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = s};
        if (epoll_ctl(s->lot->epoll_fd, EPOLL_CTL_MOD, s->fd, &ev) != 0)
            finish(s, false);
    }
}

static void drain_ready(parking_lot *lot)
{
    uint64_t count;
    ssize_t n = read(lot->wake_fd, &count, sizeof(count));
    (void)n;
    pthread_mutex_lock(&lot->lock);
    parked_request *list = lot->ready_head;
    lot->ready_head = lot->ready_tail = NULL;
    pthread_mutex_unlock(&lot->lock);
    while (list != NULL) {
        parked_request *s = list;
        list = s->next_ready;
        advance(s);
    }
}

/* Lot thread: an event on a socket still waiting for its answer, or being written. */
static void on_socket_event(parked_request *s, uint32_t events)
{
    if (s->writing) {
        if (events & (EPOLLERR | EPOLLHUP))
            finish(s, false);
        else
            advance(s);
        return;
    }
    parking_lot *lot = s->lot;
    pthread_mutex_lock(&lot->lock);
    /* An answered socket is in the ready queue and will be seen there. */
    if (!s->answered)
        close_socket(s); /* the client hung up: keep the record until watch.c answers it */
    pthread_mutex_unlock(&lot->lock);
}

static void *lot_thread(void *arg)
{
    parking_lot *lot = arg;
    struct epoll_event events[EVENTS_PER_WAIT];
    for (;;) {
        int n = epoll_wait(lot->epoll_fd, events, EVENTS_PER_WAIT, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            LOG_ERROR(MODULE, "epoll_wait: %s", strerror(errno));
            break;
        }
        bool woken = false;
        /* Each socket appears at most once per batch, and only its own event frees it. */
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL)
                woken = true;
            else
                on_socket_event(events[i].data.ptr, events[i].events);
        }
        if (woken) {
            drain_ready(lot);
            pthread_mutex_lock(&lot->lock);
            bool stopping = lot->stopping;
            pthread_mutex_unlock(&lot->lock);
            if (stopping)
                break;
        }
    }
    return NULL;
}

int parking_lot_start(parking_lot **out, const parking_handlers *handlers)
{
    parking_lot *lot = calloc(1, sizeof(*lot));
    if (lot == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    lot->handlers = *handlers;
    lot->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    lot->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (lot->epoll_fd < 0 || lot->wake_fd < 0 ||
        epoll_ctl(lot->epoll_fd, EPOLL_CTL_ADD, lot->wake_fd, &ev) != 0 ||
        pthread_mutex_init(&lot->lock, NULL) != 0) {
        int saved = errno;
        if (lot->epoll_fd >= 0)
            close(lot->epoll_fd);
        if (lot->wake_fd >= 0)
            close(lot->wake_fd);
        free(lot);
        return err_set(ERR_INTERNAL, "cannot set up the parking lot: %s", strerror(saved));
    }
    if (pthread_create(&lot->thread, NULL, lot_thread, lot) != 0) {
        pthread_mutex_destroy(&lot->lock);
        close(lot->epoll_fd);
        close(lot->wake_fd);
        free(lot);
        return err_set(ERR_INTERNAL, "cannot start the parking thread");
    }
    *out = lot;
    return 0;
}

void parking_lot_stop(parking_lot *lot)
{
    if (lot == NULL)
        return;
    pthread_mutex_lock(&lot->lock);
    lot->stopping = true;
    wake_thread(lot);
    pthread_mutex_unlock(&lot->lock);
    pthread_join(lot->thread, NULL);
    /* The thread is gone: what is still held was never answered or could not be written. */
    drain_ready(lot);
    while (lot->all != NULL) {
        finish(lot->all, false);
    }
    pthread_mutex_destroy(&lot->lock);
    close(lot->epoll_fd);
    close(lot->wake_fd);
    free(lot);
}

parked_request *parking_detach(parking_lot *lot, int fd, const parking_record *record)
{
    size_t id_len = strlen(record->request_id) + 1, method_len = strlen(record->method) + 1;
    size_t url_len = strlen(record->url) + 1, user_len = strlen(record->user) + 1;
    parked_request *s = calloc(1, sizeof(*s) + id_len + method_len + url_len + user_len);
    if (s == NULL)
        return NULL;
    s->lot = lot;
    s->handle.parked = s;
    s->record = *record;
    s->record.status = 0;
    s->record.bytes_out = 0;
    char *text = s->text;
    s->record.request_id = memcpy(text, record->request_id, id_len);
    s->record.method = memcpy(text += id_len, record->method, method_len);
    s->record.url = memcpy(text += method_len, record->url, url_len);
    s->record.user = memcpy(text + url_len, record->user, user_len);
    s->head_only = strcmp(record->method, "HEAD") == 0;
    s->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (s->fd < 0) {
        free(s);
        return NULL;
    }
    /* The answer goes out in one write: nothing to gain from holding it back. */
    int on = 1, off = 0;
    setsockopt(s->fd, IPPROTO_TCP, TCP_CORK, &off, sizeof(off));
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));

    pthread_mutex_lock(&lot->lock);
    if (lot->stopping) {
        pthread_mutex_unlock(&lot->lock);
        close(s->fd);
        free(s);
        return NULL;
    }
    s->next = lot->all;
    if (lot->all)
        lot->all->prev = s;
    lot->all = s;
    pthread_mutex_unlock(&lot->lock);
    return s;
}

request_handle *parking_handle(parked_request *p)
{
    return &p->handle;
}

void parking_set_route(parked_request *p, int metrics_route)
{
    p->record.metrics_route = metrics_route;
}

void parking_release(parked_request *s)
{
    parking_lot *lot = s->lot;
    pthread_mutex_lock(&lot->lock);
    s->released = true;
    /* Registered even when already answered: a partial write switches it to EPOLLOUT. */
    struct epoll_event ev = {.events = s->answered ? 0 : EPOLLRDHUP, .data.ptr = s};
    if (epoll_ctl(lot->epoll_fd, EPOLL_CTL_ADD, s->fd, &ev) != 0) {
        LOG_WARN(MODULE, "cannot watch a parked socket: %s", strerror(errno));
        close(s->fd);
        s->fd = -1; /* finished as gone once answered */
    }
    if (s->answered)
        queue_ready(lot, s);
    pthread_mutex_unlock(&lot->lock);
}

static void send_answer(parked_request *s, const wire_answer *answer)
{
    parking_lot *lot = s->lot;
    pthread_mutex_lock(&lot->lock);
    s->answer = *answer;
    s->answered = true;
    if (s->released) {
        if (s->fd >= 0) {
            /* Stop listening for hang-ups: the lot's thread takes it from the queue. */
            struct epoll_event ev = {.events = 0, .data.ptr = s};
            epoll_ctl(lot->epoll_fd, EPOLL_CTL_MOD, s->fd, &ev);
        }
        queue_ready(lot, s);
    }
    pthread_mutex_unlock(&lot->lock);
}

static void prepared_body_done(void *cls)
{
    prepared_response_release(cls);
}

void parking_answer(parked_request *s, response *res)
{
    prepared_response *p = res->prepared;
    unsigned status = p ? p->status : (res->status ? res->status : 200);
    const char *body = p ? p->body : res->body;
    size_t body_len = p ? p->size : res->body_len;
    bool has_length = status >= 200 && status != 204 && status != 304;
    bool send_body = has_length && !s->head_only && body_len > 0;

    char date[40];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);

    wire_answer answer;
    memset(&answer, 0, sizeof(answer));
    FILE *head = open_memstream(&answer.head, &answer.head_len);
    if (head != NULL) {
        fprintf(head, "HTTP/1.1 %u %s\r\nDate: %s\r\n", status, http_reason_phrase(status), date);
        if (p != NULL) {
            fputs(p->fields, head);
        } else {
            if (res->content_type != NULL)
                fprintf(head, "Content-Type: %s\r\n", res->content_type);
            for (size_t i = 0; i < res->nheaders; i++)
                fprintf(head, "%s: %s\r\n", res->headers[i].name, res->headers[i].value);
        }
        if (has_length)
            fprintf(head, "Content-Length: %zu\r\n", body_len);
        fputs("Connection: close\r\n\r\n", head);
        if (send_body && p == NULL)
            fwrite(body, 1, body_len, head);
        if (fclose(head) != 0) {
            free(answer.head);
            answer.head = NULL;
        }
    }
    if (answer.head == NULL) {
        /* Out of memory: the client gets a closed connection rather than a wrong answer. */
        answer.head_len = 0;
        send_body = false;
    }
    if (send_body && p != NULL) {
        answer.body = body;
        answer.body_len = body_len;
    }
    if (p != NULL) {
        res->prepared = NULL; /* the answer holds the reference until the body is sent */
        answer.body_done = prepared_body_done;
        answer.body_cls = p;
    }
    s->record.status = status;
    s->record.bytes_out = send_body ? body_len : 0;
    response_dispose(res);
    send_answer(s, &answer);
}
