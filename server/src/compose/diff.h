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

/*
 * [{"application","profile"}…]: every application named by a configuration file of a or b
 * (either may be NULL) with each profile its files or documents name, plus "default".
 * New reference; NULL on OOM.
 */
json_t *diff_named_pairs(const snapshot *a, const snapshot *b);

#endif
