/*
 * events — the Server-Sent Events hub behind GET /events: `refresh` events (commit, changed
 * applications) with ids for Last-Event-ID resume, and heartbeats so proxies keep the stream.
 */
#ifndef ALMANAC_EVENTS_H
#define ALMANAC_EVENTS_H

#include "change/announce.h"
#include "http/request.h"

#include <jansson.h>
#include <stddef.h>

typedef struct event_hub event_hub;

int event_hub_new(event_hub **out, unsigned heartbeat_seconds, size_t max_subscribers);
/* Ends every stream (so no connection stays parked) and stops the heartbeat thread. */
void event_hub_shutdown(event_hub *hub);
void event_hub_free(event_hub *hub);

/* Publishes one refresh event; applications is a JSON array of names, files one of changed
 * plain files or NULL (both borrowed; "files" is written only when there are some). */
int event_hub_publish_refresh(event_hub *hub, const char *commit, const json_t *applications,
                              const json_t *files);
/* The same with the repository that changed ("repository" in the event unless NULL or "", the
 * default one). */
int event_hub_publish_change(event_hub *hub, const char *repository, const char *commit,
                             const json_t *applications, const json_t *files);
/* A change listener (announce.h), ctx the hub: publishes a refresh event naming the changed
 * applications whenever the default label moved. */
void event_hub_on_change(void *ctx, const change_notice *notice);
/* The GET /events handler body: answers with a stream (or an error). */
int event_hub_subscribe(event_hub *hub, request *req, response *res);
size_t event_hub_subscribers(event_hub *hub);

#endif
