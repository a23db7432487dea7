/*
 * reposet — the `repos:` section of the server's --config file: named repositories, each with
 * application[/profile] patterns, and which of them serves a request. Shared by the server (which
 * opens the repositories) and `almanac lint --config` (which only tells who serves whom), so
 * both read the section and match names the same way.
 *
 * Matching follows Spring Cloud Config's MultipleJGitEnvironmentRepository: repositories are
 * tried in file order and the first that matches serves the request; a pattern is matched
 * against "application/profiles" with `*` as the only wildcard; a pattern without `/` matches
 * any profile; a pattern naming one profile also matches requests that list more after it
 * ("app/dev" serves "dev,prod" but not "prod,dev"). Nothing matching: the default repository.
 */
#ifndef ALMANAC_REPOSET_H
#define ALMANAC_REPOSET_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define REPOSET_NAME_MAX 64 /* letters, digits, '-' and '_' */

typedef struct repo_spec {
    char *name;              /* the key under repos: */
    char **patterns;         /* as written, NULL-terminated; never empty */
    char **expanded;         /* Spring's expansion of them, NULL-terminated */
    char *uri;               /* may hold {application}, {profile}, {label} */
    char *search_paths;      /* comma-joined; NULL: the server's --search-paths */
    char *default_label;     /* NULL: the server's --default-label */
    long refresh_interval;   /* seconds; -1: the server's --refresh-interval */
    /* The Git transport, each NULL for the server's --git-… setting of the same name. */
    char *git_ca_file, *git_proxy, *git_known_hosts, *git_ssh_key_file;
    unsigned line;           /* where the entry starts in the file (0: unknown) */
} repo_spec;

typedef struct repo_specs {
    repo_spec *items;
    size_t count;
} repo_specs;

/*
 * Reads every `repos.NAME.FIELD` key of props (a flat confdoc object, keys in file order) into
 * out, in file order; other keys are ignored. origins (may be NULL) maps keys to "LINE:COL".
 * Fields: pattern (text or list; a text may list several separated by commas, as Spring's
 * binder reads it), uri (required), search-paths (text or list), default-label,
 * refresh-interval, git-ca-file, git-proxy, git-known-hosts, git-ssh-key-file. On a bad entry:
 * ERR_CONFIG (ERR_NOMEM) with "KEY: reason" in err_message() (err.h), and the key's origin in
 * *origin (or NULL). out is left empty then.
 */
int reposet_parse(repo_specs *out, const json_t *props, const json_t *origins,
                  const char **origin);
void reposet_dispose(repo_specs *s);

/* Whether key belongs to the repos: section. */
bool reposet_is_key(const char *key);

/*
 * The repository serving (applications, profiles) as written in the request ("a,b", "dev,db"):
 * the index of the first matching spec, or -1 for the default repository.
 */
int reposet_match(const repo_specs *s, const char *applications, const char *profiles);

/* Spring's PatternMatchUtils.simpleMatch: `*` matches any run of characters, nothing else is
 * special. */
bool reposet_simple_match(const char *pattern, const char *text);

/* Whether uri holds a placeholder ({application}, {profile} or {label}). */
bool reposet_is_template(const char *uri);

/*
 * uri with {application}, {profile} and {label} replaced (NULL values leave their placeholder
 * empty). A new string; NULL when out of memory.
 */
char *reposet_expand(const char *uri, const char *application, const char *profile,
                     const char *label);

#endif
