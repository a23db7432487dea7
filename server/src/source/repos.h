/*
 * repos — the set of repositories a server serves: the default one (--repo) and those of the
 * `repos:` section of --config (common/reposet.h says which serves a request). A server with no
 * `repos:` is the set with only the default repository, served as before.
 *
 * Each repository has its own bare mirror under the cache directory, search paths, default
 * label and refresh interval. A repository whose uri holds {application}, {profile} or
 * {label} is a template: one mirror per expanded uri, cloned on the first request that needs
 * it, at most max_mirrors of them (the least recently used one not in use is removed from disk
 * past that); a clone that fails is remembered for miss_seconds, during which requests for it
 * get the empty source (an Environment without property sources) without asking the remote.
 */
#ifndef ALMANAC_REPOS_H
#define ALMANAC_REPOS_H

#include "reposet.h"
#include "source/repo.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* One repository requests are served from: a configured one, or one mirror of a template. */
typedef struct repo_source {
    const char *name;          /* "" for the default repository, else its key under repos: */
    const char *uri;           /* as configured (a mirror: expanded) */
    repo *repo;                /* NULL for a template: its mirrors have one each */
    char **search_paths;       /* NULL-terminated */
    unsigned refresh_interval; /* seconds, 0: never polled */
    bool is_template;
    bool is_empty;             /* the stand-in for a template mirror that does not exist */
    pthread_mutex_t refresh_lock; /* serialises the refreshes of this repository */
    void *owner_data;          /* the server's per-repository state (its refresher) */
    /* Counted by whoever fetches (refresh.c), for /metrics; a template's mirrors count on it. */
    atomic_ulong fetches_ok, fetches_failed;
    atomic_ulong clone_attempts; /* a template: clones of new mirrors tried */
} repo_source;

typedef struct repo_set repo_set;

typedef struct repo_set_options {
    const repo_options *base;      /* the default repository's options; the others copy them */
    const char *search_paths;      /* --search-paths, comma-separated, for those that give none */
    unsigned refresh_interval;     /* --refresh-interval, for those that give none */
    const repo_specs *specs;       /* the repos: section (NULL or empty: the default alone) */
    unsigned max_mirrors;          /* template mirrors kept at most (0 counts as 1) */
    unsigned miss_seconds;         /* how long a failed template clone is remembered */
} repo_set_options;

/* Opens the default repository, then each configured one (not the templates' mirrors). */
int repo_set_open(repo_set **out, const repo_set_options *opts);
void repo_set_free(repo_set *s);
/* The set of one repository opened elsewhere (both r and search_paths stay the caller's). */
int repo_set_single(repo_set **out, repo *r, char **search_paths);

/* The configured repositories: 0 is the default, then the repos: section in file order. */
size_t repo_set_count(const repo_set *s);
repo_source *repo_set_at(repo_set *s, size_t i);

/* The configured repository (or the default) that serves (applications, profiles). Cheap. */
repo_source *repo_set_match(repo_set *s, const char *applications, const char *profiles);

/*
 * The source that serves a request: the matching configured repository, or for a template the
 * mirror of its expanded uri (cloned now when needed; a known or new failure gives the empty
 * source). Never fails for lack of a remote; ERR_NOMEM only. Release with repo_set_release.
 */
int repo_set_pick(repo_set *s, const char *applications, const char *profiles, const char *label,
                  repo_source **out);
void repo_set_release(repo_set *s, repo_source *src);

/* Retained copies of a template's current mirrors (release each; free the array). */
size_t repo_set_mirrors(repo_set *s, const repo_source *tmpl, repo_source ***out);

/* Whether two URIs name the same repository: scheme, user, port, case of the host, a trailing
 * "/" or ".git" aside (a webhook's clone_url against a configured uri). */
bool repo_set_same_uri(const char *a, const char *b);
/* Whether src (for a template: one of its mirrors) is the repository at uri. */
bool repo_set_serves_uri(repo_set *s, repo_source *src, const char *uri);

/* Mirrors of templates held now. */
size_t repo_set_mirror_count(repo_set *s);

/* Prometheus text of the per-repository series (almanac_repository_*); caller frees. */
char *repo_set_metrics(repo_set *s, size_t *len);

/* The template a mirror belongs to (itself for a configured repository). */
repo_source *repo_set_owner(repo_source *src);

#endif
