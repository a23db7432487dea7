/*
 * snapshot — the parse of one commit: every `.yml`, `.yaml` and `.properties` file parsed once
 * into flat documents (or the error that stopped its parser), plus the set of directories, for
 * search paths. A snapshot is immutable once built and reference-counted, so request threads
 * share it without locks, and a refresh can replace the one in the cache while requests finish
 * on the old one.
 *
 * snapcache keeps the snapshots of the most recently used commits (a bounded LRU). A miss builds
 * the snapshot outside the cache's lock; concurrent misses on the same commit wait for that one
 * build, which reuses the parsed files of the most recently used snapshot where their content
 * did not change. In dir mode (commit "") the snapshot is built once and kept until
 * snapcache_invalidate() (which the refresh paths call); files edited in the directory are seen
 * after the next refresh, not on every request.
 */
#ifndef ALMANAC_SNAPSHOT_H
#define ALMANAC_SNAPSHOT_H

#include "confdoc.h"

#include <stdbool.h>
#include <stddef.h>

struct repo;

typedef struct snapshot snapshot;   /* immutable, reference-counted parse of one commit */
typedef struct snapcache snapcache; /* bounded LRU of snapshots by commit id */

#define SNAPSHOT_DIGEST_LEN 32 /* SHA-256 */

/* One configuration file of a snapshot: its documents, or why it could not be parsed. */
typedef struct snapshot_file {
    char *path;        /* "sub/foo.yml", no leading slash */
    confdoc_list docs; /* empty when failed */
    bool failed;
    confdoc_error error; /* when failed: line/col (0 when unknown) and message */
    bool hashed;         /* digest is set (false for files over the size limit) */
    unsigned char digest[SNAPSHOT_DIGEST_LEN]; /* of the content, to reuse a parse */
} snapshot_file;

/* capacity: snapshots kept (0 counts as 1); limits: the parsers' caps (NULL: defaults). */
int snapcache_new(snapcache **out, size_t capacity, const confdoc_limits *limits);
/* NULL ok. No other thread may be using c; snapshots handed out stay valid until released. */
void snapcache_free(snapcache *c);
/*
 * The snapshot of commit (built from r on a miss; concurrent misses on the same commit build
 * once); retained for the caller. Dir mode (commit ""): built once, rebuilt after
 * snapcache_invalidate(). Errors: those of repo_walk (ERR_NOT_FOUND, ERR_GIT), ERR_NOMEM.
 */
int snapcache_get(snapshot **out, snapcache *c, struct repo *r, const char *commit);
/* Drops the dir-mode snapshot (on refresh); the next build still reuses its unchanged files. */
void snapcache_invalidate(snapcache *c);
/* Number of snapshots held by the cache (for tests and metrics). */
size_t snapcache_count(snapcache *c);

/*
 * Builds a snapshot without a cache (the caller owns the one reference). donor (may be NULL) is
 * a snapshot built with the same limits: a file whose path and content digest match one of
 * donor's shares donor's parsed documents instead of being parsed again (the documents are
 * immutable and reference-counted), so a new commit costs only its changed files.
 */
int snapshot_build(snapshot **out, struct repo *r, const char *commit, const confdoc_limits *limits,
                   const snapshot *donor);
/* Files of s whose parse was shared from the donor (for tests and logs). */
size_t snapshot_reused_count(const snapshot *s);
snapshot *snapshot_retain(snapshot *s);
void snapshot_release(snapshot *s); /* NULL ok */
const char *snapshot_commit(const snapshot *s);

/* The configuration file at path ("a/b.yml"), or NULL when the commit has none. */
const snapshot_file *snapshot_find(const snapshot *s, const char *path);
/* Files in path order (for listing and tests). */
size_t snapshot_file_count(const snapshot *s);
const snapshot_file *snapshot_file_at(const snapshot *s, size_t i);
/*
 * Directories holding at least one file (of any kind) at any depth, without the root, in the
 * order a depth-first walk with sorted names visits them ("a", "a/b", "a-c").
 */
size_t snapshot_dir_count(const snapshot *s);
const char *snapshot_dir_at(const snapshot *s, size_t i);
/* Whether dir ("" for the root, "a/b" otherwise) exists in the snapshot. */
bool snapshot_has_dir(const snapshot *s, const char *dir);

#endif
