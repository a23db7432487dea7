/*
 * configdata — Spring Boot's config-data processing (ConfigDataEnvironment), replayed on a
 * snapshot for one request.
 *
 * Spring Cloud Config builds an Environment by running Spring Boot over the repository: the
 * search locations are one "initial import" whose files become a tree of contributors; each
 * document's `spring.config.import` hangs the imported files under it. Boot works in three
 * passes: without any activation context (documents with `spring.config.activate.*` are off),
 * then with the cloud platform known, then with the profiles known. Between the second and the
 * third it works out the active profiles: the requested ones, then every
 * `spring.profiles.include` of the active documents (in precedence order), each expanded
 * depth-first through `spring.profiles.group` (the first definition of a group, in precedence
 * order, wins). The third pass loads the profile variants of the search locations and of every
 * import; variants of an imported file move up beside the profile-specific files (Boot's
 * moveProfileSpecific, one level per pass). The sources are the tree in post-order: children
 * after profile activation, children before it, then the document itself.
 *
 * A request whose first profile is `default` ignores includes and groups (Spring Cloud Config
 * 4.3.1 loads files with IGNORE_PROFILES then).
 *
 * Almanac's departure, on purpose: an import is only ever looked up in the snapshot, relative
 * to the importing file's folder; `file:`, `classpath:`, URLs, absolute paths and `..` that
 * climbs out of the repository are ignored with a log line and never read. Depth and the
 * number of imported files are bounded; a file is loaded once per request, which ends cycles.
 *
 * Owns: the contributor tree, activation, profile expansion, import resolution. Does not own:
 * search locations and names (environment.c), parsing (snapshot.c), source names, decryption.
 */
#include "compose/configdata.h"

#include "errors.h"
#include "log.h"
#include "profile_expr.h"
#include "springconf.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MODULE "environment"
#define CD_MAX_NODES 8192 /* contributors in one request's tree */

static const char *const EXTENSIONS[] = {"properties", "yml", "yaml"}; /* highest first */
#define NEXT (sizeof(EXTENSIONS) / sizeof(*EXTENSIONS))

enum { BEFORE = 0, AFTER = 1 }; /* Boot's ImportPhase */

/* Boot's three passes: no activation context, cloud platform known, profiles known. */
typedef enum { STAGE_INITIAL, STAGE_PLATFORM, STAGE_PROFILES } stage;

typedef struct node node;

typedef struct nodelist {
    node **items;
    size_t count;
    size_t cap;
} nodelist;

struct node {
    const char *path;         /* NULL: the initial import (the search locations) */
    const confdoc *doc;       /* NULL for the initial import */
    bool multi;               /* the file has several documents */
    bool profile_specific;    /* Boot's PROFILE_SPECIFIC option; dropped when moved up */
    bool from_profile_import; /* loaded as a profile variant (kept after a move) */
    unsigned depth;           /* 0: a file of the search locations */
    bool done[2];             /* imports processed in BEFORE / AFTER */
    nodelist children[2];     /* imported in BEFORE / AFTER */
};

typedef struct candidate {
    char *path;
    bool profile;   /* a profile variant */
    bool skippable; /* missing is normal: optional, a variant, a directory lookup */
} candidate;

typedef struct candlist {
    candidate *items;
    size_t count;
    size_t cap;
} candlist;

typedef struct cd_ctx {
    const configdata_request *rq;
    node root; /* the initial import */
    node **arena;
    size_t narena;
    size_t arena_cap;
    json_t *loaded; /* path -> true: a file is loaded once per request */
    stage stage;
    json_t *active; /* array of strings; meaningful in STAGE_PROFILES */
    bool ignore_profiles;
    size_t imported;
    bool warned_limit;
} cd_ctx;

/* ---- lists -------------------------------------------------------------------------------- */

static int nodelist_push(nodelist *l, node *n)
{
    if (l->count == l->cap) {
        size_t cap = l->cap != 0 ? l->cap * 2 : 8;
        node **grown = realloc(l->items, cap * sizeof(*grown));
        if (grown == NULL)
            return err_set(ERR_NOMEM, "out of memory");
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->count++] = n;
    return 0;
}

static int candlist_push(candlist *l, char *path, bool profile, bool skippable)
{
    if (path == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    if (l->count == l->cap) {
        size_t cap = l->cap != 0 ? l->cap * 2 : 16;
        candidate *grown = realloc(l->items, cap * sizeof(*grown));
        if (grown == NULL) {
            free(path);
            return err_set(ERR_NOMEM, "out of memory");
        }
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->count++] = (candidate){path, profile, skippable};
    return 0;
}

static void candlist_dispose(candlist *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i].path);
    free(l->items);
    memset(l, 0, sizeof(*l));
}

static node *node_new(cd_ctx *ctx)
{
    node *n;

    if (ctx->narena >= CD_MAX_NODES) {
        err_set(ERR_CONFIG, "more than %d documents in one request", CD_MAX_NODES);
        return NULL;
    }
    if (ctx->narena == ctx->arena_cap) {
        size_t cap = ctx->arena_cap != 0 ? ctx->arena_cap * 2 : 32;
        node **grown = realloc(ctx->arena, cap * sizeof(*grown));
        if (grown == NULL) {
            err_set(ERR_NOMEM, "out of memory");
            return NULL;
        }
        ctx->arena = grown;
        ctx->arena_cap = cap;
    }
    if ((n = calloc(1, sizeof(*n))) == NULL) {
        err_set(ERR_NOMEM, "out of memory");
        return NULL;
    }
    ctx->arena[ctx->narena++] = n;
    return n;
}

static void ctx_dispose(cd_ctx *ctx)
{
    for (size_t i = 0; i < ctx->narena; i++) {
        free(ctx->arena[i]->children[BEFORE].items);
        free(ctx->arena[i]->children[AFTER].items);
        free(ctx->arena[i]);
    }
    free(ctx->arena);
    free(ctx->root.children[BEFORE].items);
    free(ctx->root.children[AFTER].items);
    json_decref(ctx->loaded);
    json_decref(ctx->active);
}

/* ---- activation --------------------------------------------------------------------------- */

static const char *platform_of(const cd_ctx *ctx)
{
    return ctx->rq->cloud_platform != NULL ? ctx->rq->cloud_platform : "none";
}

/*
 * ConfigDataProperties.Activate: a document with `spring.config.activate.*` is off until its
 * conditions can be judged, then on when the cloud platform and the profiles both match.
 * 1 active, 0 not, <0 error (a malformed expression; the snapshot normally rejects it first).
 */
static int node_active(const cd_ctx *ctx, const node *n)
{
    const json_t *cloud;
    const char *want;

    if (n->doc == NULL)
        return 1;
    cloud = json_object_get(n->doc->props, SPRINGCONF_ON_CLOUD);
    if (cloud == NULL && n->doc->on_profile == NULL)
        return 1;
    if (ctx->stage == STAGE_INITIAL)
        return 0;
    if (cloud != NULL) {
        /* An unknown name matches no platform (Spring would fail to bind it; lint says so). */
        want = springconf_platform(json_string_value(cloud));
        if (want == NULL || strcmp(want, platform_of(ctx)) != 0)
            return 0;
    }
    if (n->doc->on_profile == NULL)
        return 1;
    if (ctx->stage != STAGE_PROFILES)
        return 0;
    {
        const char *items[CONFIGDATA_MAX_ACTIVE];
        size_t count = json_array_size(ctx->active);
        char msg[256];
        int m;
        for (size_t i = 0; i < count && i < CONFIGDATA_MAX_ACTIVE; i++)
            items[i] = json_string_value(json_array_get(ctx->active, i));
        m = profile_expr_match(n->doc->on_profile, items, count, msg, sizeof(msg));
        if (m < 0)
            return err_set(ERR_CONFIG, "%s: %s", n->path, msg);
        return m;
    }
}

/* ---- loading files ------------------------------------------------------------------------ */

/* The snapshot's parse error of f as Almanac reports it: "<path>:<line>:<col>: <reason>". */
static int file_error(const snapshot_file *f)
{
    if (f->error.line > 0)
        return err_set(ERR_CONFIG, "%s:%u:%u: %s", f->path, f->error.line, f->error.col,
                       f->error.message);
    return err_set(ERR_CONFIG, "%s: %s", f->path, f->error.message);
}

/*
 * Loads path (unless missing or already loaded) as contributors appended to out: one per
 * non-empty document, later documents first. 1 loaded, 0 missing or already loaded, <0 error.
 */
static int load_file(cd_ctx *ctx, const char *path, bool profile, unsigned depth, nodelist *out)
{
    const snapshot_file *f = snapshot_find(ctx->rq->snapshot, path);

    if (f == NULL)
        return 0;
    if (json_object_get(ctx->loaded, path) != NULL)
        return 0;
    if (json_object_set_new(ctx->loaded, path, json_true()) < 0)
        return err_set(ERR_NOMEM, "out of memory");
    if (f->failed)
        return file_error(f);
    for (size_t i = f->docs.count; i > 0; i--) {
        const confdoc *doc = &f->docs.docs[i - 1];
        node *n;
        if (json_object_size(doc->props) == 0)
            continue;
        if ((n = node_new(ctx)) == NULL)
            return err_last_code();
        n->path = f->path;
        n->doc = doc;
        n->multi = f->docs.count > 1;
        n->profile_specific = profile;
        n->from_profile_import = profile;
        n->depth = depth;
        if (nodelist_push(out, n) < 0)
            return ERR_NOMEM;
    }
    return 1;
}

/* ---- resolving locations ------------------------------------------------------------------ */

/*
 * Spring's references for the directory dir ("" or ending in "/"): every name, and within a
 * name yaml, yml, properties (lowest first); with profile, the "-profile" variants.
 */
static int add_dir_refs(candlist *l, const char *dir, const configdata_request *rq,
                        const char *profile)
{
    int error = 0;

    for (size_t ni = 0; error == 0 && ni < rq->nnames; ni++) {
        for (size_t ei = NEXT; error == 0 && ei > 0; ei--) {
            char *path = NULL;
            int rc = profile != NULL ? asprintf(&path, "%s%s-%s.%s", dir, rq->names[ni], profile,
                                                EXTENSIONS[ei - 1])
                                     : asprintf(&path, "%s%s.%s", dir, rq->names[ni],
                                                EXTENSIONS[ei - 1]);
            error = candlist_push(l, rc < 0 ? NULL : path, profile != NULL, true);
        }
    }
    return error;
}

/* The search locations as one initial import: every location's plain files, then variants. */
static int initial_candidates(cd_ctx *ctx, candlist *l, int phase)
{
    const configdata_request *rq = ctx->rq;
    int error = 0;

    for (int round = 0; error == 0 && round < (phase == AFTER ? 2 : 1); round++) {
        size_t np = round == 0 ? 1 : json_array_size(ctx->active);
        for (size_t pi = 0; error == 0 && pi < np; pi++) {
            const char *profile =
                round == 0 ? NULL : json_string_value(json_array_get(ctx->active, pi));
            for (size_t li = 0; error == 0 && li < rq->nlocations; li++) {
                char *dir = NULL;
                const char *loc = rq->locations[li];
                if (asprintf(&dir, "%s%s", loc, loc[0] != '\0' ? "/" : "") < 0)
                    return err_set(ERR_NOMEM, "out of memory");
                error = add_dir_refs(l, dir, rq, profile);
                free(dir);
            }
        }
    }
    return error;
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/*
 * One location of a `spring.config.import` item made into a repository path: relative to the
 * importing file's folder, `.` and empty segments dropped, `..` resolved inside the
 * repository. NULL (with why) when it points outside the repository or uses what Almanac
 * does not read; *is_dir when it names a folder (ends in "/").
 */
static char *import_path(const char *from, const char *loc, bool *is_dir, const char **why)
{
    size_t cap = strlen(from) + strlen(loc) + 2, used = 0;
    const char *slash = strrchr(from, '/');
    char *joined = NULL, *out = NULL;

    *is_dir = false;
    if ((*why = springconf_import_problem(loc)) != NULL)
        return NULL;
    if (asprintf(&joined, "%.*s%s%s", slash != NULL ? (int)(slash - from) : 0, from,
                 slash != NULL ? "/" : "", loc) < 0 ||
        (out = malloc(cap + strlen(joined))) == NULL) {
        free(joined);
        *why = NULL;
        return NULL;
    }
    *is_dir = has_suffix(loc, "/");
    for (char *seg = joined, *next; seg != NULL; seg = next) {
        size_t len;
        next = strchr(seg, '/');
        len = next != NULL ? (size_t)(next - seg) : strlen(seg);
        if (next != NULL)
            next++;
        if (len == 0 || (len == 1 && seg[0] == '.'))
            continue;
        if (len == 2 && seg[0] == '.' && seg[1] == '.') {
            if (used == 0) {
                *why = "'..' leads out of the repository";
                free(joined);
                free(out);
                return NULL;
            }
            while (used > 0 && out[used - 1] != '/')
                used--;
            if (used > 0)
                used--; /* the slash before the dropped segment */
            continue;
        }
        if (used > 0)
            out[used++] = '/';
        memcpy(out + used, seg, len);
        used += len;
    }
    out[used] = '\0';
    free(joined);
    if (used == 0)
        *is_dir = true; /* "./" or "shared/..": the importing file's folder or the root */
    if (*is_dir && used > 0) {
        out[used++] = '/';
        out[used] = '\0';
    }
    return out;
}

/* The extension of a file location among ours, or NULL. */
static const char *known_extension(const char *path)
{
    for (size_t i = 0; i < NEXT; i++) {
        size_t n = strlen(path), m = strlen(EXTENSIONS[i]);
        if (n > m + 1 && path[n - m - 1] == '.' && strcmp(path + n - m, EXTENSIONS[i]) == 0)
            return EXTENSIONS[i];
    }
    return NULL;
}

/*
 * Spring's resolution of one import item ("a.yml", "optional:b/", "x.yml;y.yml"): the plain
 * references of its locations, then (in AFTER) each active profile's variants.
 */
static int import_candidates(cd_ctx *ctx, const node *n, const char *item, candlist *l, int phase)
{
    char *copy = strdup(item), *save = NULL;
    char *paths[16];
    bool dirs[16], optional[16];
    size_t count = 0;
    int error = 0;

    if (copy == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    for (char *loc = strtok_r(copy, ";", &save); loc != NULL && count < 16;
         loc = strtok_r(NULL, ";", &save)) {
        const char *why = NULL;
        bool opt = false;
        while (*loc == ' ' || *loc == '\t')
            loc++;
        for (size_t len = strlen(loc); len > 0 && (loc[len - 1] == ' ' || loc[len - 1] == '\t');)
            loc[--len] = '\0';
        if (strncmp(loc, "optional:", 9) == 0) {
            opt = true;
            loc += 9;
        }
        if (*loc == '\0')
            continue;
        paths[count] = import_path(n->path, loc, &dirs[count], &why);
        if (paths[count] == NULL) {
            if (why == NULL) {
                error = err_set(ERR_NOMEM, "out of memory");
                break;
            }
            LOG_WARN(MODULE, "%s: spring.config.import '%s' ignored: %s", n->path, loc, why);
            continue;
        }
        if (!dirs[count] && known_extension(paths[count]) == NULL) {
            LOG_WARN(MODULE,
                     "%s: spring.config.import '%s' ignored: only .properties, .yml and .yaml "
                     "files (or folders ending in '/') can be imported",
                     n->path, loc);
            free(paths[count]);
            continue;
        }
        optional[count++] = opt;
    }
    for (size_t i = 0; error == 0 && i < count; i++)
        error = dirs[i] ? add_dir_refs(l, paths[i], ctx->rq, NULL)
                        : candlist_push(l, strdup(paths[i]), false, optional[i]);
    for (size_t pi = 0; error == 0 && phase == AFTER && pi < json_array_size(ctx->active); pi++) {
        const char *profile = json_string_value(json_array_get(ctx->active, pi));
        for (size_t i = 0; error == 0 && i < count; i++) {
            const char *ext = known_extension(paths[i]);
            char *path = NULL;
            if (dirs[i]) {
                error = add_dir_refs(l, paths[i], ctx->rq, profile);
                continue;
            }
            if (asprintf(&path, "%.*s-%s.%s", (int)(strlen(paths[i]) - strlen(ext) - 1),
                         paths[i], profile, ext) < 0)
                path = NULL;
            error = candlist_push(l, path, true, true);
        }
    }
    for (size_t i = 0; i < count; i++)
        free(paths[i]);
    free(copy);
    return error;
}

/* ---- processing --------------------------------------------------------------------------- */

/* Boot's moveProfileSpecific: variants imported below n's children move up to n's AFTER. */
static int move_profile_specific(node *n)
{
    nodelist moved = {0};
    nodelist *after = &n->children[AFTER];
    int error = 0;

    for (size_t i = 0; error == 0 && i < n->children[BEFORE].count; i++) {
        node *c = n->children[BEFORE].items[i];
        for (int ph = BEFORE; error == 0 && ph <= AFTER; ph++) {
            nodelist *l = &c->children[ph];
            size_t kept = 0;
            for (size_t j = 0; j < l->count; j++) {
                node *g = l->items[j];
                if (g->profile_specific) {
                    g->profile_specific = false;
                    if ((error = nodelist_push(&moved, g)) < 0)
                        break;
                } else {
                    l->items[kept++] = g;
                }
            }
            if (error == 0)
                l->count = kept;
        }
    }
    for (size_t i = 0; error == 0 && i < after->count; i++)
        error = nodelist_push(&moved, after->items[i]);
    if (error == 0) {
        free(after->items);
        *after = moved;
    } else {
        free(moved.items);
    }
    return error;
}

/* Loads the imports of n for phase; the new contributors become n's children for it. */
static int process_node(cd_ctx *ctx, node *n, int phase)
{
    candlist cands = {0};
    nodelist *out = &n->children[phase];
    json_t *items = NULL;
    int error = 0;

    n->done[phase] = true;
    if (n->doc == NULL) {
        error = initial_candidates(ctx, &cands, phase);
    } else if (n->depth >= CONFIGDATA_MAX_DEPTH) {
        LOG_WARN(MODULE, "%s: spring.config.import ignored: imports nested deeper than %d",
                 n->path, CONFIGDATA_MAX_DEPTH);
    } else if ((items = springconf_list(n->doc->props, SPRINGCONF_IMPORT)) == NULL) {
        error = err_set(ERR_NOMEM, "out of memory");
    } else {
        for (size_t i = 0; error == 0 && i < json_array_size(items); i++)
            error = import_candidates(ctx, n, json_string_value(json_array_get(items, i)),
                                      &cands, phase);
    }
    /* Boot loads the resolved list from the end: later references rank higher. */
    for (size_t i = cands.count; error == 0 && i > 0; i--) {
        const candidate *c = &cands.items[i - 1];
        int rc;
        if (n->doc != NULL && ctx->imported >= CONFIGDATA_MAX_IMPORTS) {
            if (!ctx->warned_limit)
                LOG_WARN(MODULE, "more than %d imported files for '%s'; the rest are ignored",
                         CONFIGDATA_MAX_IMPORTS, ctx->rq->applications);
            ctx->warned_limit = true;
            break;
        }
        rc = load_file(ctx, c->path, c->profile, n->doc != NULL ? n->depth + 1 : 0, out);
        if (rc < 0)
            error = rc;
        else if (rc > 0 && n->doc != NULL)
            ctx->imported++;
        else if (rc == 0 && !c->skippable && snapshot_find(ctx->rq->snapshot, c->path) == NULL)
            LOG_WARN(MODULE, "%s: spring.config.import: no file %s in the repository; skipped",
                     n->path, c->path);
    }
    if (error == 0 && phase == AFTER)
        error = move_profile_specific(n);
    json_decref(items);
    candlist_dispose(&cands);
    return error;
}

static bool has_imports(const node *n)
{
    if (n->doc == NULL)
        return true;
    return json_object_get(n->doc->props, SPRINGCONF_IMPORT) != NULL ||
           json_object_get(n->doc->props, SPRINGCONF_IMPORT "[0]") != NULL;
}

/* Post-order walk (AFTER children, BEFORE children, the node), as Boot iterates contributors. */
typedef int (*visit_fn)(cd_ctx *ctx, node *n, void *arg);

static int walk(cd_ctx *ctx, node *n, visit_fn fn, void *arg)
{
    int rc;
    for (int ph = AFTER; ph >= BEFORE; ph--)
        for (size_t i = 0; i < n->children[ph].count; i++)
            if ((rc = walk(ctx, n->children[ph].items[i], fn, arg)) != 0)
                return rc;
    return fn(ctx, n, arg);
}

typedef struct next_arg {
    int phase;
    node *found;
} next_arg;

static int find_next(cd_ctx *ctx, node *n, void *arg)
{
    next_arg *a = arg;
    int active;
    if (n->done[a->phase] || !has_imports(n))
        return 0;
    if ((active = node_active(ctx, n)) < 0)
        return active;
    if (active == 0)
        return 0;
    a->found = n;
    return 1;
}

/* Boot's withProcessedImports: the first active contributor with imports left, until none. */
static int process_stage(cd_ctx *ctx)
{
    int phase = ctx->stage == STAGE_PROFILES ? AFTER : BEFORE;
    for (;;) {
        next_arg a = {phase, NULL};
        int rc = walk(ctx, &ctx->root, find_next, &a);
        if (rc < 0)
            return rc;
        if (a.found == NULL)
            return 0;
        if ((rc = process_node(ctx, a.found, phase)) < 0)
            return rc;
    }
}

/* ---- profiles ----------------------------------------------------------------------------- */

/* Appends name unless list has it (*added says which). 0, or an error. */
static int add_profile(json_t *list, const char *name, bool *added)
{
    size_t i;
    json_t *v;

    if (added != NULL)
        *added = false;
    json_array_foreach(list, i, v)
    {
        if (strcmp(json_string_value(v), name) == 0)
            return 0;
    }
    if (json_array_size(list) >= CONFIGDATA_MAX_ACTIVE)
        return err_set(ERR_CONFIG, "more than %d active profiles", CONFIGDATA_MAX_ACTIVE);
    if (json_array_append_new(list, json_string(name)) < 0)
        return err_set(ERR_NOMEM, "out of memory");
    if (added != NULL)
        *added = true;
    return 0;
}

static int check_names(const node *n, const char *key, const json_t *names)
{
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v)
    {
        if (!springconf_valid_profile(json_string_value(v)))
            return err_set(ERR_CONFIG,
                           "%s: %s: invalid profile '%s': a profile is made of letters, digits "
                           "and '-_.+@', starting and ending with a letter or digit",
                           n->path, key, json_string_value(v));
    }
    return 0;
}

typedef struct profiles_arg {
    json_t *included; /* array */
    json_t *groups;   /* name -> array, the first definition in precedence order */
} profiles_arg;

/* Collects includes and groups from the active documents (Boot's withProfiles). */
static int collect_profiles(cd_ctx *ctx, node *n, void *arg)
{
    profiles_arg *a = arg;
    const char *key;
    json_t *value, *list = NULL;
    int active, error = 0;

    if (n->doc == NULL)
        return 0;
    if ((active = node_active(ctx, n)) < 0)
        return active;
    if (active == 0) {
        const char *bad = springconf_profile_key(n->doc->props, true);
        if (bad != NULL && n->doc->on_profile != NULL)
            LOG_WARN(MODULE,
                     "%s: '%s' in a document with spring.config.activate.on-profile is ignored "
                     "(Spring Boot rejects it: an inactive property source cannot contain it)",
                     n->path, bad);
        return 0;
    }
    if ((list = springconf_list(n->doc->props, SPRINGCONF_INCLUDE)) == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    error = check_names(n, SPRINGCONF_INCLUDE, list);
    for (size_t i = 0; error == 0 && i < json_array_size(list); i++)
        error = add_profile(a->included, json_string_value(json_array_get(list, i)), NULL);
    json_decref(list);
    list = NULL;
    json_object_foreach((json_t *)(uintptr_t)n->doc->props, key, value)
    {
        size_t plen = strlen(SPRINGCONF_GROUP_PREFIX), nlen;
        char *group = NULL;
        (void)value;
        if (error < 0)
            break;
        if (strncmp(key, SPRINGCONF_GROUP_PREFIX, plen) != 0)
            continue;
        nlen = strcspn(key + plen, "[");
        if (nlen == 0 || (group = strndup(key + plen, nlen)) == NULL) {
            error = nlen == 0 ? 0 : err_set(ERR_NOMEM, "out of memory");
            continue;
        }
        if (json_object_get(a->groups, group) == NULL) {
            char *full = NULL;
            if (asprintf(&full, "%s%s", SPRINGCONF_GROUP_PREFIX, group) < 0 ||
                (list = springconf_list(n->doc->props, full)) == NULL)
                error = err_set(ERR_NOMEM, "out of memory");
            if (error == 0)
                error = check_names(n, full, list);
            if (error == 0 && json_object_set_new(a->groups, group, list) < 0)
                error = err_set(ERR_NOMEM, "out of memory");
            else if (error < 0)
                json_decref(list);
            list = NULL;
            free(full);
        }
        free(group);
    }
    return error < 0 ? error : 0;
}

/* Boot's Profiles.expandProfiles: depth-first through groups, each profile once. */
static int expand_profiles(json_t *out, const json_t *start, const json_t *groups)
{
    json_t *stack = json_array();
    int error = 0;

    if (stack == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    for (size_t i = json_array_size(start); error == 0 && i > 0; i--)
        if (json_array_append(stack, json_array_get(start, i - 1)) < 0)
            error = err_set(ERR_NOMEM, "out of memory");
    while (error == 0 && json_array_size(stack) > 0) {
        size_t top = json_array_size(stack) - 1;
        json_t *current = json_incref(json_array_get(stack, top));
        const json_t *members;
        bool added = false;
        json_array_remove(stack, top);
        error = add_profile(out, json_string_value(current), &added);
        members = json_object_get(groups, json_string_value(current));
        json_decref(current);
        if (error < 0 || !added)
            continue;
        for (size_t i = json_array_size(members); error == 0 && i > 0; i--)
            if (json_array_size(stack) > 4 * CONFIGDATA_MAX_ACTIVE)
                error = err_set(ERR_CONFIG, "spring.profiles.group expands too far");
            else if (json_array_append(stack, json_array_get(members, i - 1)) < 0)
                error = err_set(ERR_NOMEM, "out of memory");
    }
    json_decref(stack);
    return error < 0 ? error : 0;
}

static int compute_active(cd_ctx *ctx)
{
    profiles_arg a = {json_array(), json_object()};
    int error = 0;

    if (a.included == NULL || a.groups == NULL || (ctx->active = json_array()) == NULL) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; error == 0 && i < ctx->rq->nprofiles; i++)
        error = add_profile(a.included, ctx->rq->profiles[i], NULL);
    if (error < 0)
        goto out;
    if (!ctx->ignore_profiles && (error = walk(ctx, &ctx->root, collect_profiles, &a)) < 0)
        goto out;
    error = expand_profiles(ctx->active, a.included, a.groups);
out:
    json_decref(a.included);
    json_decref(a.groups);
    return error < 0 ? error : 0;
}

/* ---- the result --------------------------------------------------------------------------- */

static int collect_docs(cd_ctx *ctx, node *n, void *arg)
{
    configdata_result *r = arg;
    const char *bad;
    int active;

    if (n->doc == NULL)
        return 0;
    if ((bad = springconf_legacy_key(n->doc->props)) != NULL)
        LOG_WARN(MODULE,
                 "%s: '%s' is served as an on-profile condition, but Spring Boot rejects it: "
                 "use spring.config.activate.on-profile",
                 n->path, bad);
    if ((active = node_active(ctx, n)) <= 0)
        return active;
    if (n->from_profile_import && !ctx->ignore_profiles &&
        (bad = springconf_profile_key(n->doc->props, false)) != NULL)
        LOG_WARN(MODULE,
                 "%s: '%s' in a profile-specific file is ignored (Spring Boot rejects it: "
                 "invalid in a profile specific resource)",
                 n->path, bad);
    if (r->count % 16 == 0) {
        configdata_doc *grown = realloc(r->docs, (r->count + 16) * sizeof(*grown));
        if (grown == NULL)
            return err_set(ERR_NOMEM, "out of memory");
        r->docs = grown;
    }
    r->docs[r->count++] = (configdata_doc){n->path, n->doc, n->multi};
    return 0;
}

int configdata_compose(configdata_result *out, const configdata_request *rq)
{
    cd_ctx ctx = {.rq = rq};
    int error;

    memset(out, 0, sizeof(*out));
    /* Spring Cloud Config: "Unless the request from the client includes profiles" (the first
     * one being default), files load with IGNORE_PROFILES: no include, no group. */
    ctx.ignore_profiles = rq->nprofiles == 0 || strcasecmp(rq->profiles[0], "default") == 0;
    if ((ctx.loaded = json_object()) == NULL) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    ctx.stage = STAGE_INITIAL;
    if ((error = process_stage(&ctx)) < 0)
        goto out;
    ctx.stage = STAGE_PLATFORM;
    if ((error = process_stage(&ctx)) < 0)
        goto out;
    if ((error = compute_active(&ctx)) < 0)
        goto out;
    ctx.stage = STAGE_PROFILES;
    if ((error = process_stage(&ctx)) < 0)
        goto out;
    if ((error = walk(&ctx, &ctx.root, collect_docs, out)) < 0)
        goto out;
    out->nactive = json_array_size(ctx.active);
    if ((out->active = calloc(out->nactive + 1, sizeof(char *))) == NULL) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < out->nactive; i++)
        if ((out->active[i] = strdup(json_string_value(json_array_get(ctx.active, i)))) ==
            NULL) {
            error = err_set(ERR_NOMEM, "out of memory");
            goto out;
        }
out:
    if (error < 0)
        configdata_result_dispose(out);
    ctx_dispose(&ctx);
    return error < 0 ? error : 0;
}

void configdata_result_dispose(configdata_result *r)
{
    if (r == NULL)
        return;
    free(r->docs);
    for (size_t i = 0; r->active != NULL && i < r->nactive; i++)
        free(r->active[i]);
    free(r->active);
    memset(r, 0, sizeof(*r));
}
