/*
 * server — the state every handler shares: settings, the configuration source, the snapshot
 * and response caches, the keyring. Created by main.c, read-only for handlers except through
 * the thread-safe module APIs.
 */
#ifndef ALMANAC_SERVER_H
#define ALMANAC_SERVER_H

#include "settings.h"

#include <stdbool.h>

struct repo;
struct repo_set;
struct snapcache;
struct respcache;
struct keyring;
struct authdb;
struct watch_registry;
struct overrides;
struct event_hub;
struct refresher;
struct peers;
struct bus;
struct change_announcer;

typedef struct server {
    const settings *settings;
    struct repo *repo;                   /* the default repository (repos' first) */
    struct repo_set *repos;              /* every repository; see source/repos.h */
    struct snapcache *snapshots;
    struct respcache *responses;
    struct keyring *keyring;             /* NULL: no key installed */
    struct authdb *auth;                 /* NULL: authentication off */
    struct watch_registry *watches;
    struct overrides *overrides;         /* NULL: none */
    struct event_hub *events;            /* GET /events subscribers */
    struct refresher *refresher;         /* polls, and runs what webhooks ask for */
    struct change_announcer *changes;    /* refresh announces here; see main.c for who listens */
    struct bus *bus;                     /* --bus-amqp-url: Spring Cloud Bus; NULL: off */
    struct peers *peers;                 /* --peer-secret: notices to and from replicas */
    char instance_id[80];                /* almanac:PORT:<random hex>, or --bus-id */
    char *webhook_secret;                /* from --webhook-secret's file; NULL: unchecked */
    char **search_paths;                 /* the default repository's (--search-paths) */
    const char *cloud_platform;          /* --cloud-platform or detected; NULL: none */
    volatile bool stopping;
} server;

#endif
