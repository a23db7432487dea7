/*
 * diff_offline — `almanac diff --repo-dir`: the effective change between two revisions of a
 * local clone, computed by the server's own composition code (compose/ and source/ linked into
 * the CLI), so that a review in CI and the server can never disagree.
 */
#ifndef ALMANAC_CLI_DIFF_OFFLINE_H
#define ALMANAC_CLI_DIFF_OFFLINE_H

#include <jansson.h>

/*
 * *out = {"fromVersion","toVersion","environments":[{"application","profile","counts",
 * "added","removed","changed"}…]} for `applications`/`profiles` (or, with applications NULL,
 * every pair the repository names whose Environment differs). search_paths: comma-separated,
 * as the server's --search-paths, or NULL. `{cipher}` values are compared as written and
 * masked. Returns 0, or prints the error to stderr and returns a CLI exit code.
 */
int diff_offline(json_t **out, const char *repo_dir, const char *applications,
                 const char *profiles, const char *from, const char *to,
                 const char *search_paths);

#endif
