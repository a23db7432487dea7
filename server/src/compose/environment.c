/*
 * environment — composes Spring's Environment from a snapshot: which files a request for
 * (applications, profiles, label) reads, in which order, which of their documents apply, the
 * server-wide overrides on top, and `{cipher}` values decrypted on a private copy.
 *
 * Owns: search locations (placeholders, wildcards, and the rule that no substituted value may
 * leave the repository), source names, decryption while composing, the merged map of the
 * document endpoints, and the overrides file. Does not own: which documents of which files a
 * request reads and in which order (configdata.c: profiles, include, group, import,
 * activation), parsing (snapshot.c and the parsers), keys and cipher formats (cipher.c),
 * rendering (render.c). Snapshots are shared and immutable: nothing here writes to their maps.
 */
#include "compose/environment.h"

#include "compose/configdata.h"

#include "guard/cipher.h"
#include "errors.h"
#include "fileread.h"
#include "log.h"
#include "propfile.h"
#include "source/repo.h"
#include "source/repos.h"
#include "scalar.h"
#include "server.h"
#include "yamlconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENV_MAX_LOCATIONS 1024  /* search locations after placeholders and wildcards */
#define ENV_MAX_SOURCES 4096    /* property sources in one environment */
#define ENV_MAX_PATTERN_SEGS 32 /* segments of one search path */
#define CIPHER_PREFIX "{cipher}"

struct overrides {
    json_t *props;
    json_t *origins; /* every key -> "Config server overrides", Spring's v2 origin */
};

#define OVERRIDES_ORIGIN "Config server overrides"

/* A list of borrowed or owned strings, in order, without duplicates. */
typedef struct strlist {
    char **items;
    size_t count;
    size_t cap;
    size_t max;
} strlist;

typedef struct compose_ctx {
    const env_compose_params *p;
    const env_query *q;
    environment *env;
    size_t sources_cap;
    strlist apps;      /* as requested, duplicates dropped */
    strlist names;     /* "application" then apps: lowest precedence first */
    strlist profiles;  /* duplicates dropped */
    strlist locations; /* "" (root) first, then the search paths: lowest first */
} compose_ctx;

/* ---- small helpers ------------------------------------------------------------------------ */

static bool strlist_contains(const strlist *l, const char *s)
{
    for (size_t i = 0; i < l->count; i++)
        if (strcmp(l->items[i], s) == 0)
            return true;
    return false;
}

/* Takes ownership of s (freed when already present or on failure). 0, or ERR_NOMEM/TOO_LARGE. */
static int strlist_add_owned(strlist *l, char *s)
{
    if (s == NULL)
        return ERR_NOMEM;
    if (strlist_contains(l, s)) {
        free(s);
        return 0;
    }
    if (l->max != 0 && l->count >= l->max) {
        free(s);
        return ERR_TOO_LARGE;
    }
    if (l->count == l->cap) {
        size_t cap = l->cap != 0 ? l->cap * 2 : 8;
        char **grown = realloc(l->items, cap * sizeof(*grown));
        if (grown == NULL) {
            free(s);
            return ERR_NOMEM;
        }
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->count++] = s;
    return 0;
}

static void strlist_dispose(strlist *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof(*l));
}

/* Splits "a,b" into l (empty elements skipped). */
static int split_list(strlist *l, const char *csv)
{
    int error = 0;

    for (const char *s = csv; error == 0 && s != NULL && *s != '\0';) {
        const char *comma = strchr(s, ',');
        size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
        if (len > 0)
            error = strlist_add_owned(l, strndup(s, len));
        s = comma != NULL ? comma + 1 : NULL;
    }
    return error;
}

/* ---- search locations --------------------------------------------------------------------- */

/*
 * A value substituted for {application}, {profile} or {label} must stay one harmless piece of
 * a path inside the repository: no "..", no absolute path, no backslash, no wildcard, no
 * placeholder of its own. (Spring's CVE-2026-22739: a profile reaching the search locations.)
 */
static bool value_is_safe(const char *v)
{
    return v[0] != '\0' && v[0] != '/' && strstr(v, "..") == NULL && strpbrk(v, "\\*?{}") == NULL &&
           strcmp(v, ".") != 0 && strncmp(v, "./", 2) != 0 && strstr(v, "/./") == NULL &&
           !(strlen(v) >= 2 && strcmp(v + strlen(v) - 2, "/.") == 0);
}

/* Replaces every occurrence of token in s by value; s is freed. NULL on OOM. */
static char *replace_all(char *s, const char *token, const char *value)
{
    size_t tlen = strlen(token), vlen = strlen(value), n = 0;
    const char *p;
    char *out, *w;

    if (s == NULL)
        return NULL;
    for (p = strstr(s, token); p != NULL; p = strstr(p + tlen, token))
        n++;
    if (n == 0)
        return s;
    out = malloc(strlen(s) - n * tlen + n * vlen + 1);
    if (out != NULL) {
        w = out;
        for (const char *r = s; (p = strstr(r, token)) != NULL || *r != '\0';) {
            if (p == NULL) {
                strcpy(w, r);
                w += strlen(r);
                break;
            }
            memcpy(w, r, (size_t)(p - r));
            w += p - r;
            memcpy(w, value, vlen);
            w += vlen;
            r = p + tlen;
        }
        *w = '\0';
    }
    free(s);
    return out;
}

/* Ant-style match of one path segment: `*` any run of characters, `?` one character. */
static bool segment_match(const char *pat, size_t plen, const char *s, size_t slen)
{
    size_t pi = 0, si = 0, star_p = (size_t)-1, star_s = 0;

    while (si < slen) {
        if (pi < plen && (pat[pi] == '?' || pat[pi] == s[si])) {
            pi++;
            si++;
        } else if (pi < plen && pat[pi] == '*') {
            star_p = pi++;
            star_s = si;
        } else if (star_p != (size_t)-1) {
            pi = star_p + 1;
            si = ++star_s;
        } else {
            return false;
        }
    }
    while (pi < plen && pat[pi] == '*')
        pi++;
    return pi == plen;
}

typedef struct seg {
    const char *s;
    size_t len;
} seg;

static size_t split_segments(const char *path, seg *out, size_t max)
{
    size_t n = 0;

    for (const char *s = path; *s != '\0' && n < max;) {
        const char *slash = strchr(s, '/');
        size_t len = slash != NULL ? (size_t)(slash - s) : strlen(s);
        if (len > 0) {
            out[n].s = s;
            out[n].len = len;
            n++;
        }
        if (slash == NULL)
            break;
        s = slash + 1;
    }
    return n;
}

/* `**` matches any number of whole segments, including none. */
static bool path_match(const seg *pat, size_t np, const seg *dir, size_t nd)
{
    if (np == 0)
        return nd == 0;
    if (pat[0].len == 2 && memcmp(pat[0].s, "**", 2) == 0) {
        for (size_t k = 0; k <= nd; k++)
            if (path_match(pat + 1, np - 1, dir + k, nd - k))
                return true;
        return false;
    }
    return nd > 0 && segment_match(pat[0].s, pat[0].len, dir[0].s, dir[0].len) &&
           path_match(pat + 1, np - 1, dir + 1, nd - 1);
}

/*
 * Normalises a substituted search path ("/sub/./x/" -> "sub/x", collapsing "**" runs) into
 * buf. -1 when it names a parent directory or is too deep.
 */
static int normalise_location(const char *value, char *buf, size_t size, bool *wild)
{
    seg segs[ENV_MAX_PATTERN_SEGS + 1];
    size_t n = split_segments(value, segs, ENV_MAX_PATTERN_SEGS + 1), used = 0;
    bool prev_globstar = false;

    if (n > ENV_MAX_PATTERN_SEGS)
        return -1;
    *wild = false;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        bool globstar = segs[i].len == 2 && memcmp(segs[i].s, "**", 2) == 0;
        if (segs[i].len == 1 && segs[i].s[0] == '.')
            continue;
        if (segs[i].len == 2 && memcmp(segs[i].s, "..", 2) == 0)
            return -1;
        if (globstar && prev_globstar)
            continue;
        prev_globstar = globstar;
        if (memchr(segs[i].s, '*', segs[i].len) != NULL ||
            memchr(segs[i].s, '?', segs[i].len) != NULL)
            *wild = true;
        if (used + segs[i].len + 2 > size)
            return -1;
        if (used > 0)
            buf[used++] = '/';
        memcpy(buf + used, segs[i].s, segs[i].len);
        used += segs[i].len;
        buf[used] = '\0';
    }
    return 0;
}

static int add_matching_dirs(compose_ctx *ctx, const char *value)
{
    char norm[1024];
    bool wild;
    seg pat[ENV_MAX_PATTERN_SEGS] = {{0}}, dir[ENV_MAX_PATTERN_SEGS + 1] = {{0}};
    size_t np, nd;
    const snapshot *s = ctx->p->snapshot;
    int error = 0;

    if (normalise_location(value, norm, sizeof(norm), &wild) < 0) {
        LOG_WARN("environment", "search path '%s' ignored: it leaves the repository or is too deep",
                 value);
        return 0;
    }
    if (!wild)
        return snapshot_has_dir(s, norm) ? strlist_add_owned(&ctx->locations, strdup(norm)) : 0;
    np = split_segments(norm, pat, ENV_MAX_PATTERN_SEGS);
    if (path_match(pat, np, dir, 0))
        error = strlist_add_owned(&ctx->locations, strdup(""));
    for (size_t i = 0; error == 0 && i < snapshot_dir_count(s); i++) {
        const char *d = snapshot_dir_at(s, i);
        nd = split_segments(d, dir, ENV_MAX_PATTERN_SEGS + 1);
        if (nd <= ENV_MAX_PATTERN_SEGS && path_match(pat, np, dir, nd))
            error = strlist_add_owned(&ctx->locations, strdup(d));
    }
    return error;
}

/* "" (the root), then each search path for each profile and application, as Spring orders. */
static int build_locations(compose_ctx *ctx)
{
    const char *label = ctx->p->label_name;
    int error = strlist_add_owned(&ctx->locations, strdup(""));

    if (label != NULL && !value_is_safe(label)) {
        LOG_WARN("environment", "label '%s' not substituted into search paths", label);
        label = NULL;
    }
    for (const char *const *sp = ctx->p->search_paths; error == 0 && sp != NULL && *sp != NULL;
         sp++) {
        bool per_profile = strstr(*sp, "{profile}") != NULL;
        bool per_app = strstr(*sp, "{application}") != NULL;
        /* Spring's order: profiles outer, applications inner; a path without the placeholder
         * gives the same location each time, so it is matched once. */
        size_t np = per_profile ? ctx->profiles.count : 1, na = per_app ? ctx->apps.count : 1;
        for (size_t pi = 0; error == 0 && pi < np; pi++) {
            const char *prof = ctx->profiles.items[pi];
            for (size_t ai = 0; error == 0 && ai < na; ai++) {
                const char *app = ctx->apps.items[ai];
                char *value;
                if ((per_profile && !value_is_safe(prof)) || (per_app && !value_is_safe(app))) {
                    LOG_WARN("environment", "search path '%s' skipped for an unsafe name", *sp);
                    continue;
                }
                if (strstr(*sp, "{label}") != NULL && label == NULL)
                    continue; /* no label to put there: the location cannot exist */
                value = replace_all(strdup(*sp), "{application}", app);
                value = replace_all(value, "{profile}", prof);
                if (label != NULL)
                    value = replace_all(value, "{label}", label);
                if (value == NULL)
                    return ERR_NOMEM;
                error = add_matching_dirs(ctx, value);
                free(value);
            }
        }
    }
    if (error == ERR_TOO_LARGE)
        error = err_set(ERR_CONFIG, "the search paths name more than %d directories",
                        ENV_MAX_LOCATIONS);
    return error;
}

/* ---- sources ------------------------------------------------------------------------------ */

static env_source *new_source(compose_ctx *ctx)
{
    environment *env = ctx->env;

    if (env->count >= ENV_MAX_SOURCES) {
        err_set(ERR_CONFIG, "more than %d property sources", ENV_MAX_SOURCES);
        return NULL;
    }
    if (env->count == ctx->sources_cap) {
        size_t cap = ctx->sources_cap != 0 ? ctx->sources_cap * 2 : 16;
        env_source *grown = realloc(env->sources, cap * sizeof(*grown));
        if (grown == NULL) {
            err_set(ERR_NOMEM, "out of memory");
            return NULL;
        }
        env->sources = grown;
        ctx->sources_cap = cap;
    }
    env_source *src = &env->sources[env->count++];
    memset(src, 0, sizeof(*src));
    return src;
}

static bool is_cipher(const json_t *value)
{
    const char *s = json_string_value(value);
    return s != NULL && strncmp(s, CIPHER_PREFIX, strlen(CIPHER_PREFIX)) == 0;
}

/*
 * Spring's decryption on a copy: plain keys keep their places, each {cipher} key moves to the
 * end decrypted, or becomes invalid.<key> = "<n/a>" when it cannot be decrypted.
 */
static int decrypt_source(compose_ctx *ctx, env_source *src, const char *path)
{
    json_t *props = json_object(), *origins = json_object();
    const char *key;
    json_t *value;
    int error = ERR_NOMEM;

    if (props == NULL || origins == NULL)
        goto out;
    json_object_foreach(src->props, key, value)
    {
        json_t *origin = json_object_get(src->origins, key);
        if (is_cipher(value))
            continue;
        if (json_object_set(props, key, value) < 0 ||
            (origin != NULL && json_object_set(origins, key, origin) < 0))
            goto out;
    }
    json_object_foreach(src->props, key, value)
    {
        char *plain = NULL, *invalid = NULL;
        size_t plain_len = 0;
        json_t *text = NULL;
        int rc;
        if (!is_cipher(value))
            continue;
        rc = keyring_decrypt_value(ctx->p->keyring, json_string_value(value), &plain, &plain_len);
        if (rc == 0) {
            text = json_stringn(plain, plain_len);
            keyring_free_secret(plain, plain_len);
            if (text == NULL)
                err_set(ERR_INVALID_CIPHER, "the plaintext is not valid UTF-8");
        }
        if (text != NULL) {
            json_object_del(origins, key);
            rc = json_object_set_new(props, key, text);
        } else {
            LOG_WARN("environment", "cannot decrypt key '%s' of %s for application '%s': %s", key,
                     path, ctx->q->applications, err_message());
            if (asprintf(&invalid, "invalid.%s", key) < 0)
                goto out;
            json_object_del(origins, invalid);
            rc = json_object_set_new(props, invalid, json_string("<n/a>"));
            free(invalid);
        }
        if (rc < 0)
            goto out;
    }
    json_decref(src->props);
    json_decref(src->origins);
    src->props = props;
    src->origins = origins;
    props = origins = NULL;
    error = 0;
out:
    json_decref(props);
    json_decref(origins);
    if (error == ERR_NOMEM)
        err_set(ERR_NOMEM, "out of memory");
    return error;
}

static bool has_cipher(const json_t *props)
{
    const char *key;
    json_t *value;

    json_object_foreach((json_t *)(uintptr_t)props, key, value)
    {
        if (is_cipher(value))
            return true;
    }
    return false;
}

static int add_document(compose_ctx *ctx, const char *path, const confdoc *doc, bool multi)
{
    const char *uri = ctx->p->display_uri != NULL ? ctx->p->display_uri : "";
    size_t ulen = strlen(uri);
    const char *sep = ulen > 0 && uri[ulen - 1] == '/' ? "" : "/";
    env_source *src = new_source(ctx);
    int rc;

    if (src == NULL)
        return err_last_code();
    if (multi)
        rc = asprintf(&src->name, "%s%s%s (document #%u)", uri, sep, path, doc->index);
    else
        rc = asprintf(&src->name, "%s%s%s", uri, sep, path);
    if (rc < 0) {
        src->name = NULL;
        return err_set(ERR_NOMEM, "out of memory");
    }
    src->props = json_incref(doc->props);
    src->origins = json_incref(doc->origins);
    if (ctx->q->decrypt && has_cipher(src->props))
        return decrypt_source(ctx, src, path);
    return 0;
}

/* The documents configdata worked out, in its order, as property sources. */
static int add_documents(compose_ctx *ctx)
{
    configdata_request rq = {
        .snapshot = ctx->p->snapshot,
        .locations = (const char *const *)ctx->locations.items,
        .nlocations = ctx->locations.count,
        .names = (const char *const *)ctx->names.items,
        .nnames = ctx->names.count,
        .profiles = (const char *const *)ctx->profiles.items,
        .nprofiles = ctx->profiles.count,
        .cloud_platform = ctx->p->cloud_platform,
        .applications = ctx->q->applications,
    };
    configdata_result r;
    int error = configdata_compose(&r, &rq);

    for (size_t i = 0; error == 0 && i < r.count; i++)
        error = add_document(ctx, r.docs[i].path, r.docs[i].doc, r.docs[i].multi);
    configdata_result_dispose(&r);
    return error;
}

static int add_overrides(compose_ctx *ctx)
{
    const json_t *props = ctx->p->overrides != NULL ? overrides_props(ctx->p->overrides) : NULL;
    env_source *src;

    if (props == NULL || json_object_size(props) == 0)
        return 0;
    if ((src = new_source(ctx)) == NULL)
        return err_last_code();
    src->name = strdup("overrides");
    src->props = json_incref((json_t *)(uintptr_t)props);
    src->origins = json_incref(ctx->p->overrides->origins);
    return src->name != NULL ? 0 : err_set(ERR_NOMEM, "out of memory");
}

int environment_compose_snapshot(environment *out, const env_compose_params *p, const env_query *q)
{
    compose_ctx ctx = {.p = p, .q = q, .env = out};
    int error;

    memset(out, 0, sizeof(*out));
    ctx.apps.max = ENV_MAX_APPLICATIONS;
    ctx.profiles.max = ENV_MAX_PROFILES;
    ctx.locations.max = ENV_MAX_LOCATIONS;
    out->snapshot = snapshot_retain(p->snapshot);
    snprintf(out->version, sizeof(out->version), "%s", snapshot_commit(p->snapshot));

    error = split_list(&ctx.apps, q->applications);
    if (error == 0)
        error = split_list(&ctx.profiles, q->profiles);
    if (error == ERR_TOO_LARGE) {
        error =
            err_set(ERR_BAD_REQUEST, "more than %d applications or profiles", ENV_MAX_APPLICATIONS);
        goto out;
    }
    if (error == 0 && (ctx.apps.count == 0 || ctx.profiles.count == 0))
        error = err_set(ERR_BAD_REQUEST, "no application or no profile");
    if (error == 0)
        error = strlist_add_owned(&ctx.names, strdup("application"));
    for (size_t i = 0; error == 0 && i < ctx.apps.count; i++)
        error = strlist_add_owned(&ctx.names, strdup(ctx.apps.items[i]));
    if (error == 0)
        error = build_locations(&ctx);
    if (error == ERR_NOMEM)
        err_set(ERR_NOMEM, "out of memory");
    if (error == 0)
        error = add_overrides(&ctx);
    /* Profile-specific files above every plain one, imports, includes and groups. */
    if (error == 0)
        error = add_documents(&ctx);

    if (error == 0) {
        /* The plain-file endpoint searches the same locations. */
        out->locations = ctx.locations.items;
        out->nlocations = ctx.locations.count;
        memset(&ctx.locations, 0, sizeof(ctx.locations));
    }
out:
    if (error < 0)
        environment_dispose(out);
    strlist_dispose(&ctx.apps);
    strlist_dispose(&ctx.names);
    strlist_dispose(&ctx.profiles);
    strlist_dispose(&ctx.locations);
    return error < 0 ? error : 0;
}

static bool uses_label(const char *const *search_paths)
{
    for (const char *const *sp = search_paths; sp != NULL && *sp != NULL; sp++)
        if (strstr(*sp, "{label}") != NULL)
            return true;
    return false;
}

int env_query_resolve(env_query *q, struct repo *source)
{
    int error = repo_resolve(source, q->label, q->commit);
    q->resolved = error == 0;
    return error;
}

int env_query_resolve_served(env_query *q, struct server *srv)
{
    q->source = NULL;
    q->resolved = false;
    if (srv->repos == NULL)
        return env_query_resolve(q, srv->repo);
    int error = repo_set_pick(srv->repos, q->applications, q->profiles, q->label, &q->source);
    if (error < 0)
        return error;
    return env_query_resolve(q, q->source->repo);
}

void env_query_done(env_query *q, struct server *srv)
{
    if (q->source != NULL && srv->repos != NULL)
        repo_set_release(srv->repos, q->source);
    q->source = NULL;
}

int environment_params(env_compose_params *p, struct server *srv, const env_query *q)
{
    repo_status status;
    snapshot *snap = NULL;
    const char *label = q->label;
    int error;

    memset(p, 0, sizeof(*p));
    if (!q->resolved)
        return err_set(ERR_INTERNAL, "a query reached composition without its commit");
    struct repo *source = q->source != NULL ? q->source->repo : srv->repo;
    char **search_paths = q->source != NULL ? q->source->search_paths : srv->search_paths;
    if ((error = snapcache_get(&snap, srv->snapshots, source, q->commit)) < 0)
        return error;
    p->snapshot = snap;
    p->display_uri = repo_display_uri(source);
    p->search_paths = (const char *const *)search_paths;
    p->overrides = srv->overrides;
    p->keyring = srv->keyring;
    p->cloud_platform = srv->cloud_platform;
    if (label != NULL && label[0] != '\0') {
        p->label_name = label;
    } else if (uses_label(p->search_paths)) {
        repo_get_status(source, &status);
        snprintf(p->label_storage, sizeof(p->label_storage), "%s", status.default_label);
        p->label_name = p->label_storage[0] != '\0' ? p->label_storage : NULL;
    }
    return 0;
}

int environment_compose(environment *out, struct server *srv, const env_query *q)
{
    env_compose_params p;
    int error;

    memset(out, 0, sizeof(*out));
    if ((error = environment_params(&p, srv, q)) < 0)
        return error;
    error = environment_compose_snapshot(out, &p, q);
    snapshot_release(p.snapshot);
    return error;
}

void environment_dispose(environment *env)
{
    if (env == NULL)
        return;
    for (size_t i = 0; i < env->count; i++) {
        free(env->sources[i].name);
        json_decref(env->sources[i].props);
        json_decref(env->sources[i].origins);
    }
    free(env->sources);
    for (size_t i = 0; i < env->nlocations; i++)
        free(env->locations[i]);
    free(env->locations);
    snapshot_release(env->snapshot);
    memset(env, 0, sizeof(*env));
}

/* ---- the merged map ----------------------------------------------------------------------- */

json_t *environment_merge(const environment *env)
{
    json_t *combined = json_object(), *lists = json_object(), *current = NULL;
    const char *key;
    json_t *value, *group;
    char *prefix = NULL;
    bool ok = combined != NULL && lists != NULL;

    for (size_t i = env->count; ok && i > 0; i--) {
        const env_source *src = &env->sources[i - 1];
        ok = (current = json_object()) != NULL;
        json_object_foreach(src->props, key, value)
        {
            const char *bracket = strchr(key, '[');
            if (!ok)
                break;
            if (bracket == NULL) {
                ok = json_object_set(combined, key, value) == 0;
                continue;
            }
            /* A list from this source replaces the whole list of that name from below. */
            ok = (prefix = strndup(key, (size_t)(bracket - key))) != NULL;
            if (ok && (group = json_object_get(current, prefix)) == NULL)
                ok = json_object_set_new(current, prefix, group = json_object()) == 0 &&
                     group != NULL;
            ok = ok && json_object_set(group, key, value) == 0;
            free(prefix);
            prefix = NULL;
        }
        json_object_foreach(current, key, group)
        {
            if (ok)
                ok = json_object_set(lists, key, group) == 0;
        }
        json_decref(current);
        current = NULL;
    }
    json_object_foreach(lists, key, group)
    {
        const char *k;
        json_object_foreach(group, k, value)
        {
            if (ok)
                ok = json_object_set(combined, k, value) == 0;
        }
    }
    if (ok)
        json_object_del(combined, "spring.profiles");
    json_decref(lists);
    if (!ok) {
        json_decref(combined);
        return NULL;
    }
    return combined;
}

/* ---- overrides ---------------------------------------------------------------------------- */

/*
 * Spring's unescaping of override values: "\${" -> "${", else "\{" -> "{" (when a value holds
 * both, Spring's second replacement wins over the first; so here). New string or NULL (OOM).
 */
static char *unescape_override(const char *value)
{
    char *out = strdup(value);
    if (out == NULL)
        return NULL;
    if (strstr(value, "\\${") != NULL)
        return replace_all(out, "\\${", "${");
    if (strstr(value, "\\{") != NULL)
        return replace_all(out, "\\{", "{");
    return out;
}

#define OVERRIDES_MAX_BYTES (4u << 20)

int overrides_load(overrides **out, const char *path)
{
    confdoc_limits limits = CONFDOC_LIMITS_DEFAULT;
    confdoc_list docs = {0};
    confdoc_error perr = {0};
    overrides *o = NULL;
    file_contents file = {0};
    size_t plen = strlen(path);
    bool props_file = plen >= 11 && strcmp(path + plen - 11, ".properties") == 0;
    bool yaml_file = (plen >= 4 && strcmp(path + plen - 4, ".yml") == 0) ||
                     (plen >= 5 && strcmp(path + plen - 5, ".yaml") == 0);
    int error;

    *out = NULL;
    if (!props_file && !yaml_file) {
        error = err_set(ERR_CONFIG, "%s: must end with .yml, .yaml or .properties", path);
        goto out;
    }
    if ((error = file_read(&file, path, OVERRIDES_MAX_BYTES, 0)) < 0) {
        if (error != ERR_NOMEM)
            error = err_set(ERR_CONFIG, "%s", err_message());
        goto out;
    }
    if ((props_file ? propfile_parse : yamlconf_parse)(&docs, file.data, file.len, &limits,
                                                        &perr) < 0) {
        error = err_set(ERR_CONFIG, "%s:%u:%u: %s", path, perr.line, perr.col, perr.message);
        goto out;
    }
    if ((o = calloc(1, sizeof(*o))) == NULL || (o->props = json_object()) == NULL ||
        (o->origins = json_object()) == NULL) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    /* Spring binds overrides as a map of strings: typed YAML values become their text. */
    for (size_t i = 0; i < docs.count; i++) {
        const char *key;
        json_t *value;
        json_object_foreach(docs.docs[i].props, key, value)
        {
            char *text = scalar_to_text(value);
            char *unescaped = text != NULL ? unescape_override(text) : NULL;
            json_t *s = unescaped != NULL ? json_string(unescaped) : NULL;
            free(text);
            free(unescaped);
            if (s == NULL || json_object_set_new(o->props, key, s) < 0 ||
                json_object_set_new(o->origins, key, json_string(OVERRIDES_ORIGIN)) < 0) {
                error = err_set(ERR_NOMEM, "out of memory");
                goto out;
            }
        }
    }
    *out = o;
    o = NULL;
out:
    overrides_free(o);
    confdoc_list_dispose(&docs);
    file_contents_dispose(&file);
    return error;
}

void overrides_free(overrides *o)
{
    if (o == NULL)
        return;
    json_decref(o->props);
    json_decref(o->origins);
    free(o);
}

const json_t *overrides_props(const overrides *o)
{
    return o->props;
}
