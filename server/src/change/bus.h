/*
 * bus — Spring Cloud Bus over AMQP 0-9-1 (RabbitMQ), wire-compatible with spring-cloud-bus
 * 3.x–5.x. After a change it publishes one RefreshRemoteApplicationEvent per changed
 * application, named as Spring's /monitor names them, so Spring Boot applications with
 * spring-cloud-starter-bus-amqp refresh; it consumes the exchange on an exclusive auto-delete
 * queue, and a refresh event from any other origin makes this replica fetch at once.
 *
 * The broker is a hint, never a dependency: while it is down, serving and polling go on, the
 * connection is retried with backoff, and events for the outage are counted as failed.
 */
#ifndef ALMANAC_BUS_H
#define ALMANAC_BUS_H

#include "change/announce.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct bus bus;

typedef struct bus_options {
    const char *url;         /* amqp[s]://user:pass@host:port/vhost (copied, wiped on free) */
    const char *destination; /* the exchange, default springCloudBus */
    const char *id;          /* originService of our events */
    const char *ca_file;     /* amqps: CA certificates; NULL: the system's */
    void (*on_refresh)(void *ctx); /* a foreign refresh event arrived */
    void *ctx;
} bus_options;

/* Checks the URL and starts the bus thread (which connects in the background). */
int bus_new(bus **out, const bus_options *opts);
/* Closes the connection and ends the thread; the bus may still be published to (nothing goes
 * out). For shutdown, before the refresher its events call stops. */
void bus_stop(bus *b);
void bus_free(bus *b);

/* Queues one RefreshRemoteApplicationEvent for destination (normalised the way Spring's
 * senders do: `orders` → `orders:**`; NULL → `**`). Never blocks. */
void bus_publish_refresh(bus *b, const char *destination);

/* Change listener (announce.h): one event per changed application; ctx is the bus. */
void bus_on_change(void *ctx, const change_notice *notice);

typedef struct bus_status {
    bool connected;
    char last_error[256];
    char destination[128];
} bus_status;
void bus_get_status(bus *b, bus_status *out);

/* Spring's normalisation of a destination into out (size bytes). */
void bus_normalise_destination(const char *destination, char *out, size_t size);

#endif
