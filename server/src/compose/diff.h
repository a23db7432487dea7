/*
 * diff — the effective change between two Environments (what GET /diff and `almanac diff`
 * report), and the (application, profile) pairs a repository names.
 */
#ifndef ALMANAC_DIFF_H
#define ALMANAC_DIFF_H

#include "compose/environment.h"

#include <jansson.h>
#include <stdbool.h>

typedef struct env_diff_options {
    bool mask_secrets; /* `{cipher}` values shown as "******" (callers that are not admin) */
} env_diff_options;

/*
 * *out = {"fromVersion","toVersion","counts":{"added","removed","changed"},
 *         "added":[{"key","to":{"value","source","origin"}}],
 *         "removed":[{"key","from":{…}}], "changed":[{"key","from":{…},"to":{…}}]}
 * keys sorted; an entry whose value is a secret on either side has "secret": true. The values
 * are the merged map of the document endpoints. 0 or ERR_NOMEM.
 */
int environment_diff(json_t **out, const environment *from, const environment *to,
                     const env_diff_options *opts);
bool environment_diff_is_empty(const json_t *diff);
/* A `{cipher}` value as written in the repository: a secret to mask. */
bool diff_is_cipher(const json_t *value);

/* Two labels to compare, each as the composition parameters of its snapshot. */
typedef bool (*diff_filter_fn)(const void *caller, const char *applications);
typedef struct diff_job {
    const env_compose_params *from, *to;
    bool decrypt;            /* compose with {cipher} values decrypted (admins) */
    env_diff_options opts;
    diff_filter_fn may_read; /* NULL: every application; else pairs it refuses are left out */
    const void *caller;      /* for may_read: who asks (guard/auth.h's principal) */
} diff_job;

/* environment_diff of (applications, profiles) composed at both sides. Errors: composition's. */
int diff_environment(json_t **out, const diff_job *job, const char *applications,
                     const char *profiles);

/*
 * Every (application, profile) that diff_named_pairs finds in the two snapshots and whose
 * Environment differs: {"fromVersion","toVersion","changed":[{"application","profile",
 * "counts"}]}. ERR_TOO_LARGE past DIFF_MAX_PAIRS pairs.
 */
#define DIFF_MAX_PAIRS 20000
int diff_repository(json_t **out, const diff_job *job);

/*
 * [{"application","profile"}…]: every application named by a configuration file of a or b
 * (either may be NULL) with each profile its files or documents name, plus "default".
 * New reference; NULL on OOM.
 */
json_t *diff_named_pairs(const snapshot *a, const snapshot *b);

#endif
