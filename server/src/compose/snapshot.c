/*
 * snapshot — parses every configuration file of one commit once, and caches the results by
 * commit id.
 *
 * Owns: the parsed files of a commit (documents or parse errors), the directory list used by
 * search paths, reference counting, and the LRU cache with its build-once-per-miss rule. Does
 * not own: reading Git (repo.c), the parsers (yamlconf.c, propfile.c), or which files a request
 * uses (environment.c). A snapshot never changes after snapshot_build returns, so any number of
 * threads read it without locking; the cache's mutex is held only to look up and insert, never
 * while a commit is parsed.
 */
#include "compose/snapshot.h"

#include "errors.h"
#include "log.h"
#include "metrics.h"
#include "profile_expr.h"
#include "propfile.h"
#include "source/repo.h"
#include "yamlconf.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SNAPSHOT_MAX_FILES 100000 /* configuration files in one commit */
#define SNAPSHOT_MAX_DIRS 100000

struct snapshot {
    atomic_uint refs;
    char commit[REPO_COMMIT_HEX];
    snapshot_file *files; /* sorted by path (strcmp), for bsearch */
    size_t nfiles;
    char **dirs; /* depth-first order, see dir_compare */
    size_t ndirs;
    json_t *dirset; /* dir -> true, for snapshot_has_dir */
    size_t reused;  /* files whose parse came from the donor */
};

typedef struct build_ctx {
    snapshot *snap;
    const snapshot *donor;
    size_t files_cap;
    const confdoc_limits *limits;
    int error;
} build_ctx;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static bool is_yaml(const char *path)
{
    return has_suffix(path, ".yml") || has_suffix(path, ".yaml");
}

static bool is_config_file(const char *path)
{
    return is_yaml(path) || has_suffix(path, ".properties");
}

/* Records every directory above path; the walk calls this for every file it sees. */
static bool walk_filter(const char *path, void *payload)
{
    build_ctx *ctx = payload;
    const char *slash;
    char *dir = NULL;

    if (ctx->error != 0)
        return false;
    for (slash = strchr(path, '/'); slash != NULL; slash = strchr(slash + 1, '/')) {
        size_t len = (size_t)(slash - path);
        if (json_object_size(ctx->snap->dirset) >= SNAPSHOT_MAX_DIRS)
            break;
        dir = strndup(path, len);
        if (dir == NULL || json_object_set_new(ctx->snap->dirset, dir, json_true()) < 0) {
            ctx->error = ERR_NOMEM;
            break;
        }
        free(dir);
        dir = NULL;
    }
    free(dir);
    return ctx->error == 0 && is_config_file(path);
}

/* "LINE:COL" of key in doc's origins, into err; left 0 when unknown. */
static void origin_of(const confdoc *doc, const char *key, confdoc_error *err)
{
    const char *origin = json_string_value(json_object_get(doc->origins, key));
    unsigned line = 0, col = 0;

    if (origin != NULL && sscanf(origin, "%u:%u", &line, &col) == 2) {
        err->line = line;
        err->col = col;
    }
}

/* A malformed on-profile expression fails the file the way Spring fails the whole load. */
static void check_profiles(snapshot_file *f)
{
    for (size_t i = 0; i < f->docs.count; i++) {
        const confdoc *doc = &f->docs.docs[i];
        char msg[sizeof(f->error.message)];
        if (doc->on_profile == NULL ||
            profile_expr_validate(doc->on_profile, msg, sizeof(msg)) == 0)
            continue;
        memset(&f->error, 0, sizeof(f->error));
        if (json_object_get(doc->origins, "spring.config.activate.on-profile") != NULL)
            origin_of(doc, "spring.config.activate.on-profile", &f->error);
        else
            origin_of(doc, "spring.profiles", &f->error);
        snprintf(f->error.message, sizeof(f->error.message), "%s", msg);
        confdoc_list_dispose(&f->docs);
        f->failed = true;
        return;
    }
}

/* f takes donor's documents (shared, reference-counted) or its error. -1 on OOM. */
static int share_parse(snapshot_file *f, const snapshot_file *donor)
{
    f->failed = donor->failed;
    f->error = donor->error;
    for (size_t i = 0; i < donor->docs.count; i++) {
        const confdoc *from = &donor->docs.docs[i];
        confdoc *to = confdoc_list_append(&f->docs);
        if (to == NULL)
            return -1;
        json_decref(to->props);
        json_decref(to->origins);
        to->props = json_incref(from->props);
        to->origins = json_incref(from->origins);
        to->index = from->index;
        if (from->on_profile != NULL && (to->on_profile = strdup(from->on_profile)) == NULL)
            return -1;
    }
    return 0;
}

static int walk_file(const char *path, const char *data, size_t len, void *payload)
{
    build_ctx *ctx = payload;
    snapshot *s = ctx->snap;
    snapshot_file *f;
    int rc;

    if (s->nfiles >= SNAPSHOT_MAX_FILES) {
        LOG_WARN("snapshot", "%s: more than %d configuration files; the rest are ignored",
                 s->commit[0] != '\0' ? s->commit : "directory", SNAPSHOT_MAX_FILES);
        return 0;
    }
    if (s->nfiles == ctx->files_cap) {
        size_t cap = ctx->files_cap != 0 ? ctx->files_cap * 2 : 64;
        snapshot_file *grown = realloc(s->files, cap * sizeof(*grown));
        if (grown == NULL)
            return ctx->error = ERR_NOMEM;
        s->files = grown;
        ctx->files_cap = cap;
    }
    f = &s->files[s->nfiles];
    memset(f, 0, sizeof(*f));
    if ((f->path = strdup(path)) == NULL)
        return ctx->error = ERR_NOMEM;
    s->nfiles++;

    if (data == NULL || len > ctx->limits->max_bytes) {
        f->failed = true;
        snprintf(f->error.message, sizeof(f->error.message), "file is larger than %zu bytes",
                 ctx->limits->max_bytes);
        return 0;
    }
    if (EVP_Digest(data, len, f->digest, NULL, EVP_sha256(), NULL) == 1)
        f->hashed = true;
    if (f->hashed && ctx->donor != NULL) {
        const snapshot_file *same = snapshot_find(ctx->donor, path);
        if (same != NULL && same->hashed &&
            memcmp(same->digest, f->digest, SNAPSHOT_DIGEST_LEN) == 0) {
            if (share_parse(f, same) < 0)
                return ctx->error = ERR_NOMEM;
            s->reused++;
            return 0;
        }
    }
    if (is_yaml(path))
        rc = yamlconf_parse(&f->docs, data, len, ctx->limits, &f->error);
    else
        rc = propfile_parse(&f->docs, data, len, ctx->limits, &f->error);
    if (rc < 0) {
        f->failed = true;
        confdoc_list_dispose(&f->docs);
        LOG_DEBUG("snapshot", "%s:%u:%u: %s", path, f->error.line, f->error.col, f->error.message);
        return 0;
    }
    check_profiles(f);
    return 0;
}

static int file_compare(const void *a, const void *b)
{
    return strcmp(((const snapshot_file *)a)->path, ((const snapshot_file *)b)->path);
}

/* Depth-first order with sorted names: a parent before its children, '/' below any byte. */
static int dir_compare(const void *a, const void *b)
{
    const unsigned char *x = *(const unsigned char *const *)a;
    const unsigned char *y = *(const unsigned char *const *)b;

    while (*x != '\0' && *x == *y) {
        x++;
        y++;
    }
    unsigned cx = *x == '/' ? 1u : *x, cy = *y == '/' ? 1u : *y;
    return cx < cy ? -1 : cx > cy ? 1 : 0;
}

static void snapshot_free(snapshot *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nfiles; i++) {
        free(s->files[i].path);
        confdoc_list_dispose(&s->files[i].docs);
    }
    free(s->files);
    for (size_t i = 0; i < s->ndirs; i++)
        free(s->dirs[i]);
    free(s->dirs);
    json_decref(s->dirset);
    free(s);
}

static int collect_dirs(snapshot *s)
{
    const char *dir;
    json_t *value;
    size_t n = json_object_size(s->dirset);

    if (n == 0)
        return 0;
    if ((s->dirs = calloc(n, sizeof(*s->dirs))) == NULL)
        return ERR_NOMEM;
    json_object_foreach(s->dirset, dir, value)
    {
        if ((s->dirs[s->ndirs] = strdup(dir)) == NULL)
            return ERR_NOMEM;
        s->ndirs++;
    }
    qsort(s->dirs, s->ndirs, sizeof(*s->dirs), dir_compare);
    return 0;
}

int snapshot_build(snapshot **out, struct repo *r, const char *commit, const confdoc_limits *limits,
                   const snapshot *donor)
{
    build_ctx ctx = {.limits = limits, .donor = donor};
    confdoc_limits defaults = CONFDOC_LIMITS_DEFAULT;
    snapshot *s = NULL;
    double started = now_seconds();
    int error;

    *out = NULL;
    if (ctx.limits == NULL)
        ctx.limits = &defaults;
    if (commit == NULL || strlen(commit) >= REPO_COMMIT_HEX) {
        error = err_set(ERR_INTERNAL, "snapshot: bad commit id");
        goto out;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL || (s->dirset = json_object()) == NULL) {
        error = err_set(ERR_NOMEM, "out of memory building a snapshot");
        goto out;
    }
    atomic_init(&s->refs, 1);
    memcpy(s->commit, commit, strlen(commit) + 1);
    ctx.snap = s;

    error = repo_walk(r, commit, walk_filter, walk_file, &ctx);
    if (error == 0 && ctx.error != 0)
        error = ctx.error;
    if (error == 0)
        error = collect_dirs(s);
    if (error == ERR_NOMEM)
        err_set(ERR_NOMEM, "out of memory building a snapshot");
    if (error < 0)
        goto out;
    if (s->nfiles > 1)
        qsort(s->files, s->nfiles, sizeof(*s->files), file_compare);
    *out = s;
    s = NULL;

out:
    metrics_snapshot_build(error == 0, now_seconds() - started);
    if (error == 0) {
        LOG_DEBUG("snapshot", "built %s: %zu configuration files, %zu parses reused",
                  commit[0] != '\0' ? commit : "directory", (*out)->nfiles, (*out)->reused);
    }
    snapshot_free(s);
    return error < 0 ? error : 0;
}

snapshot *snapshot_retain(snapshot *s)
{
    if (s != NULL)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void snapshot_release(snapshot *s)
{
    if (s == NULL)
        return;
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        snapshot_free(s);
}

const char *snapshot_commit(const snapshot *s)
{
    return s->commit;
}

const snapshot_file *snapshot_find(const snapshot *s, const char *path)
{
    snapshot_file key = {.path = (char *)(uintptr_t)path};

    if (s->nfiles == 0)
        return NULL;
    return bsearch(&key, s->files, s->nfiles, sizeof(*s->files), file_compare);
}

size_t snapshot_reused_count(const snapshot *s)
{
    return s->reused;
}

size_t snapshot_file_count(const snapshot *s)
{
    return s->nfiles;
}

const snapshot_file *snapshot_file_at(const snapshot *s, size_t i)
{
    return i < s->nfiles ? &s->files[i] : NULL;
}

size_t snapshot_dir_count(const snapshot *s)
{
    return s->ndirs;
}

const char *snapshot_dir_at(const snapshot *s, size_t i)
{
    return i < s->ndirs ? s->dirs[i] : NULL;
}

bool snapshot_has_dir(const snapshot *s, const char *dir)
{
    return dir[0] == '\0' || json_object_get(s->dirset, dir) != NULL;
}

/* ---- the cache ---------------------------------------------------------------------------- */

typedef struct snapentry {
    struct snapentry *prev, *next; /* most recently used first */
    char commit[REPO_COMMIT_HEX];
    snapshot *snap; /* the cache's reference; NULL while building or after a failed build */
    bool building;
    bool stale;       /* invalidated (or failed): handed to its waiters, never found again */
    unsigned waiters; /* threads waiting for this build or not yet woken from waiting */
    int error;        /* a failed build's code and message, for the waiters */
    char message[256];
} snapentry;

struct snapcache {
    pthread_mutex_t lock;
    pthread_cond_t built;
    snapentry *head, *tail;
    size_t entries;
    size_t capacity;
    confdoc_limits limits;
    snapshot *spare; /* the last invalidated snapshot: lends its parses to the rebuild */
};

int snapcache_new(snapcache **out, size_t capacity, const confdoc_limits *limits)
{
    confdoc_limits defaults = CONFDOC_LIMITS_DEFAULT;
    snapcache *c = calloc(1, sizeof(*c));

    *out = NULL;
    if (c == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return err_set(ERR_INTERNAL, "snapshot cache: cannot create a mutex");
    }
    if (pthread_cond_init(&c->built, NULL) != 0) {
        pthread_mutex_destroy(&c->lock);
        free(c);
        return err_set(ERR_INTERNAL, "snapshot cache: cannot create a condition variable");
    }
    c->capacity = capacity != 0 ? capacity : 1;
    c->limits = limits != NULL ? *limits : defaults;
    *out = c;
    return 0;
}

static void entry_unlink(snapcache *c, snapentry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
    c->entries--;
}

static void entry_push_front(snapcache *c, snapentry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head != NULL)
        c->head->prev = e;
    c->head = e;
    if (c->tail == NULL)
        c->tail = e;
    c->entries++;
}

static void entry_free(snapcache *c, snapentry *e)
{
    entry_unlink(c, e);
    snapshot_release(e->snap);
    free(e);
}

/* Frees e now if nobody builds or waits for it, else marks it so the last one out frees it. */
static void entry_drop(snapcache *c, snapentry *e)
{
    if (e->building || e->waiters > 0)
        e->stale = true;
    else
        entry_free(c, e);
}

void snapcache_free(snapcache *c)
{
    if (c == NULL)
        return;
    while (c->head != NULL)
        entry_free(c, c->head);
    snapshot_release(c->spare);
    pthread_cond_destroy(&c->built);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static snapentry *entry_find(snapcache *c, const char *commit)
{
    for (snapentry *e = c->head; e != NULL; e = e->next)
        if (!e->stale && strcmp(e->commit, commit) == 0)
            return e;
    return NULL;
}

/* Drops least recently used snapshots beyond capacity; builds in flight are never dropped. */
static void evict(snapcache *c)
{
    snapentry *e = c->tail;

    while (c->entries > c->capacity && e != NULL) {
        snapentry *prev = e->prev;
        if (!e->building && e->waiters == 0)
            entry_free(c, e);
        e = prev;
    }
}

/* The most recently used snapshot (retained), to lend its parses to a new build; or NULL. */
static snapshot *most_recent(snapcache *c)
{
    for (snapentry *e = c->head; e != NULL; e = e->next)
        if (e->snap != NULL)
            return snapshot_retain(e->snap);
    return snapshot_retain(c->spare);
}

/* Waits (lock held) for e's build; hands out its snapshot or its error. */
static int wait_for_build(snapshot **out, snapcache *c, snapentry *e)
{
    int error = 0;

    e->waiters++;
    while (e->building)
        pthread_cond_wait(&c->built, &c->lock);
    e->waiters--;
    if (e->snap != NULL)
        *out = snapshot_retain(e->snap);
    else
        error = err_set(e->error, "%s", e->message);
    if (e->stale && e->waiters == 0)
        entry_free(c, e);
    return error;
}

int snapcache_get(snapshot **out, snapcache *c, struct repo *r, const char *commit)
{
    snapentry *e;
    snapshot *built = NULL, *donor;
    int error;

    *out = NULL;
    if (strlen(commit) >= REPO_COMMIT_HEX)
        return err_set(ERR_INTERNAL, "snapshot: bad commit id");
    pthread_mutex_lock(&c->lock);
    e = entry_find(c, commit);
    if (e != NULL && !e->building) {
        entry_unlink(c, e);
        entry_push_front(c, e);
        *out = snapshot_retain(e->snap);
        pthread_mutex_unlock(&c->lock);
        return 0;
    }
    if (e != NULL) {
        error = wait_for_build(out, c, e);
        pthread_mutex_unlock(&c->lock);
        return error;
    }
    if ((e = calloc(1, sizeof(*e))) == NULL) {
        pthread_mutex_unlock(&c->lock);
        return err_set(ERR_NOMEM, "out of memory");
    }
    memcpy(e->commit, commit, strlen(commit) + 1);
    e->building = true;
    donor = most_recent(c);
    entry_push_front(c, e);
    pthread_mutex_unlock(&c->lock);

    error = snapshot_build(&built, r, commit, &c->limits, donor);
    snapshot_release(donor);

    pthread_mutex_lock(&c->lock);
    e->building = false;
    if (error == 0) {
        e->snap = built;
        *out = snapshot_retain(built);
    } else {
        e->error = error;
        snprintf(e->message, sizeof(e->message), "%s", err_message());
        e->stale = true; /* the next request tries again */
    }
    pthread_cond_broadcast(&c->built);
    if (e->stale && e->waiters == 0)
        entry_free(c, e);
    evict(c);
    pthread_mutex_unlock(&c->lock);
    return error;
}

void snapcache_invalidate(snapcache *c)
{
    pthread_mutex_lock(&c->lock);
    for (snapentry *e = c->head, *next; e != NULL; e = next) {
        next = e->next;
        if (e->commit[0] != '\0')
            continue;
        if (e->snap != NULL) {
            snapshot_release(c->spare);
            c->spare = snapshot_retain(e->snap);
        }
        entry_drop(c, e);
    }
    pthread_mutex_unlock(&c->lock);
}

size_t snapcache_count(snapcache *c)
{
    size_t n = 0;

    pthread_mutex_lock(&c->lock);
    for (snapentry *e = c->head; e != NULL; e = e->next)
        if (e->snap != NULL && !e->stale)
            n++;
    pthread_mutex_unlock(&c->lock);
    return n;
}
