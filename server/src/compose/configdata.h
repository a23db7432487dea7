/*
 * configdata — Spring Boot's config-data processing over one snapshot: which documents of
 * which files a request reads, in which order, once `spring.profiles.include`,
 * `spring.profiles.group`, `spring.config.import` and `spring.config.activate.*` (on-profile
 * and on-cloud-platform) have had their say. environment.c turns the result into property
 * sources.
 */
#ifndef ALMANAC_CONFIGDATA_H
#define ALMANAC_CONFIGDATA_H

#include "compose/snapshot.h"

#include <stdbool.h>
#include <stddef.h>

#define CONFIGDATA_MAX_DEPTH 8      /* imports of imports of … */
#define CONFIGDATA_MAX_IMPORTS 256  /* files loaded through imports, per request */
#define CONFIGDATA_MAX_ACTIVE 64    /* active profiles after include and group expansion */

typedef struct configdata_request {
    const snapshot *snapshot;
    const char *const *locations; /* search locations, lowest first; "" is the root */
    size_t nlocations;
    const char *const *names; /* "application" then the applications: lowest first */
    size_t nnames;
    const char *const *profiles; /* as requested, without duplicates */
    size_t nprofiles;
    const char *cloud_platform; /* springconf's canonical name; NULL: "none" */
    const char *applications;   /* for log lines */
} configdata_request;

typedef struct configdata_doc {
    const char *path;   /* borrowed from the snapshot */
    const confdoc *doc; /* borrowed */
    bool multi;         /* the file has several documents: names carry "(document #N)" */
} configdata_doc;

typedef struct configdata_result {
    configdata_doc *docs; /* most specific first */
    size_t count;
    char **active; /* the active profiles: requested, included, then group members */
    size_t nactive;
} configdata_result;

/*
 * Works out the documents for rq. Errors: ERR_CONFIG "<path>:<line>:<col>: <reason>" when a
 * file the request reads failed to parse, or names an invalid profile; ERR_NOMEM. On failure
 * *out is empty (configdata_result_dispose is still safe).
 */
int configdata_compose(configdata_result *out, const configdata_request *rq);
void configdata_result_dispose(configdata_result *r);

#endif
