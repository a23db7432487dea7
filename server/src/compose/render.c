/*
 * render — Environment JSON and merged documents, their ETags, and the response cache.
 *
 * The cache maps a key string to a slot in a fixed array through a jansson object (the hash map
 * we already have), with CLOCK eviction under a byte budget. Readers take the read side of a
 * rwlock for the lookup only, so cached reads run in parallel; composing and rendering happen
 * outside any lock. It does not compose environments (environment.c) nor send bytes (http.c).
 */
#include "compose/render.h"

#include "compose/plainfile.h"
#include "errors.h"
#include "flatrender.h"
#include "log.h"
#include "metrics.h"
#include "placeholder.h"
#include "source/repo.h"
#include "source/repos.h"
#include "server.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MODULE "render"

typedef struct cache_slot {
    char *key; /* NULL: free */
    prepared_response *ok;
    prepared_response *not_modified;
    char etag[ETAG_SIZE];
    char version[41];
    size_t bytes;
    atomic_bool referenced;
} cache_slot;

struct respcache {
    pthread_rwlock_t lock;
    json_t *index; /* key -> slot number */
    cache_slot *slots;
    size_t nslots;
    size_t hand;
    size_t used_bytes;
    size_t max_bytes;
};

int respcache_new(respcache **out, size_t max_bytes, size_t max_entries)
{
    respcache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    c->nslots = max_entries ? max_entries : 1;
    c->slots = calloc(c->nslots, sizeof(*c->slots));
    c->index = json_object();
    if (c->slots == NULL || c->index == NULL || pthread_rwlock_init(&c->lock, NULL) != 0) {
        free(c->slots);
        json_decref(c->index);
        free(c);
        return err_set(ERR_NOMEM, "out of memory");
    }
    c->max_bytes = max_bytes;
    *out = c;
    return 0;
}

static void slot_clear(respcache *c, cache_slot *s)
{
    if (s->key == NULL)
        return;
    json_object_del(c->index, s->key);
    free(s->key);
    s->key = NULL;
    prepared_response_release(s->ok);
    prepared_response_release(s->not_modified);
    s->ok = s->not_modified = NULL;
    c->used_bytes -= s->bytes;
    s->bytes = 0;
}

void respcache_clear(respcache *c)
{
    if (c == NULL)
        return;
    pthread_rwlock_wrlock(&c->lock);
    for (size_t i = 0; i < c->nslots; i++)
        slot_clear(c, &c->slots[i]);
    pthread_rwlock_unlock(&c->lock);
}

void respcache_on_change(void *ctx, const change_notice *notice)
{
    if (!notice->versioned)
        respcache_clear(ctx);
}

void respcache_free(respcache *c)
{
    if (c == NULL)
        return;
    respcache_clear(c);
    pthread_rwlock_destroy(&c->lock);
    json_decref(c->index);
    free(c->slots);
    free(c);
}

static bool cache_lookup(respcache *c, const char *key, render_result *out)
{
    bool found = false;
    pthread_rwlock_rdlock(&c->lock);
    json_t *index = json_object_get(c->index, key);
    if (index != NULL) {
        cache_slot *s = &c->slots[json_integer_value(index)];
        out->ok = prepared_response_retain(s->ok);
        out->not_modified = prepared_response_retain(s->not_modified);
        memcpy(out->etag, s->etag, sizeof(out->etag));
        memcpy(out->version, s->version, sizeof(out->version));
        atomic_store_explicit(&s->referenced, true, memory_order_relaxed);
        found = true;
    }
    pthread_rwlock_unlock(&c->lock);
    return found;
}

/*
 * CLOCK: skip recently used slots once, take the first one not used since the last pass.
 * want_occupied: only an entry can be evicted to free bytes; a free slot frees nothing.
 */
static cache_slot *pick_victim(respcache *c, bool want_occupied)
{
    for (size_t step = 0; step < 2 * c->nslots + 1; step++) {
        cache_slot *s = &c->slots[c->hand];
        c->hand = (c->hand + 1) % c->nslots;
        if (s->key == NULL) {
            if (!want_occupied)
                return s;
            continue;
        }
        if (!atomic_exchange_explicit(&s->referenced, false, memory_order_relaxed))
            return s;
    }
    return NULL; /* want_occupied and the cache is empty */
}

static void cache_insert(respcache *c, const char *key, const render_result *r)
{
    size_t bytes = prepared_response_size(r->ok) + strlen(key) + sizeof(cache_slot);
    if (bytes > c->max_bytes / 4)
        return; /* one huge answer must not flush everything else */
    char *key_copy = strdup(key);
    if (key_copy == NULL)
        return;
    pthread_rwlock_wrlock(&c->lock);
    json_t *existing = json_object_get(c->index, key);
    if (existing != NULL)
        slot_clear(c, &c->slots[json_integer_value(existing)]);
    while (c->used_bytes + bytes > c->max_bytes) {
        cache_slot *victim = pick_victim(c, true);
        if (victim == NULL)
            break;
        slot_clear(c, victim);
    }
    /* Two passes over the slots always find one: every referenced bit is cleared in the first. */
    cache_slot *s = pick_victim(c, false);
    if (s == NULL) {
        pthread_rwlock_unlock(&c->lock);
        free(key_copy);
        return;
    }
    slot_clear(c, s);
    if (json_object_set_new(c->index, key_copy, json_integer(s - c->slots)) == 0) {
        s->key = key_copy;
        key_copy = NULL;
        s->ok = prepared_response_retain(r->ok);
        s->not_modified = prepared_response_retain(r->not_modified);
        memcpy(s->etag, r->etag, sizeof(s->etag));
        memcpy(s->version, r->version, sizeof(s->version));
        s->bytes = bytes;
        atomic_store_explicit(&s->referenced, false, memory_order_relaxed);
        c->used_bytes += bytes;
    }
    pthread_rwlock_unlock(&c->lock);
    free(key_copy);
}

static const char *format_tag(render_format fmt)
{
    switch (fmt) {
    case RENDER_ENV_V1: return "env-v1";
    case RENDER_ENV_V2: return "env-v2";
    case RENDER_DOC_YAML: return "yml";
    case RENDER_DOC_PROPERTIES: return "properties";
    case RENDER_DOC_JSON: return "json";
    case RENDER_PLAIN_FILE: return "file";
    }
    return "?";
}

/* One source's map as v1 shows it, or v2 with {"value","origin"} where an origin is known. */
static json_t *source_json(const env_source *src, render_format fmt)
{
    if (fmt != RENDER_ENV_V2 || src->origins == NULL)
        return json_incref(src->props);
    json_t *out = json_object();
    const char *key;
    json_t *value;
    json_object_foreach(src->props, key, value)
    {
        json_t *origin = json_object_get(src->origins, key);
        if (origin != NULL)
            json_object_set_new(out, key, json_pack("{s:O, s:O}", "value", value, "origin", origin));
        else
            json_object_set(out, key, value);
    }
    return out;
}

static json_t *property_sources_json(const environment *env, render_format fmt)
{
    json_t *sources = json_array();
    for (size_t i = 0; sources != NULL && i < env->count; i++) {
        json_t *entry = json_pack("{s:s, s:o}", "name", env->sources[i].name, "source",
                                  source_json(&env->sources[i], fmt));
        if (entry == NULL || json_array_append_new(sources, entry) != 0) {
            json_decref(sources);
            return NULL;
        }
    }
    return sources;
}

void render_environment_etag(const environment *env, render_format fmt,
                             char etag[ETAG_SIZE])
{
    json_t *sources = property_sources_json(env, fmt);
    char *text = sources ? json_dumps(sources, JSON_COMPACT) : NULL;
    etag_of_bytes(format_tag(fmt), text ? text : "", text ? strlen(text) : 0, etag);
    free(text);
    json_decref(sources);
}

/*
 * jansson prints reals with one fixed precision. 17 digits always round-trip but show 0.21 as
 * 0.20999999999999999; 15 digits read back exactly whatever a person wrote with 15 or fewer.
 * Use 15 when every real of the Environment survives it, else 17: exact and readable.
 */
static bool reals_survive_15_digits(const json_t *value)
{
    const char *key;
    json_t *child;
    size_t i;
    switch (json_typeof(value)) {
    case JSON_REAL: {
        char text[40];
        double real = json_real_value(value);
        snprintf(text, sizeof(text), "%.15g", real);
        return strtod(text, NULL) == real;
    }
    case JSON_OBJECT:
        json_object_foreach((json_t *)(uintptr_t)value, key, child)
        {
            if (!reals_survive_15_digits(child))
                return false;
        }
        return true;
    case JSON_ARRAY:
        json_array_foreach(value, i, child)
        {
            if (!reals_survive_15_digits(child))
                return false;
        }
        return true;
    default:
        return true;
    }
}

size_t render_json_flags(const json_t *value)
{
    size_t precision = reals_survive_15_digits(value) ? 15 : 17;
    return JSON_COMPACT | JSON_REAL_PRECISION(precision);
}

static bool has_reals(const json_t *value)
{
    const char *key;
    json_t *child;
    size_t i;
    switch (json_typeof(value)) {
    case JSON_REAL: return true;
    case JSON_OBJECT:
        json_object_foreach((json_t *)(uintptr_t)value, key, child)
        {
            if (has_reals(child))
                return true;
        }
        return false;
    case JSON_ARRAY:
        json_array_foreach(value, i, child)
        {
            if (has_reals(child))
                return true;
        }
        return false;
    default: return false;
    }
}

/*
 * The body and, when etag is not NULL, the ETag from one tree and mostly one dump. The ETag
 * hashes the compact dump of the property sources at jansson's default precision; without a
 * real number anywhere, those bytes are exactly the body's "propertySources" value, so they are
 * hashed in place instead of dumped a second time. A wake-up after a commit to application.yml
 * renders every watched Environment, and the second dump was a third of each render.
 */
static char *environment_answer(const environment *env, const env_query *q, render_format fmt,
                                size_t *len, char *etag)
{
    json_t *sources = property_sources_json(env, fmt);
    /* Spring's key order: name, profiles, label, version, state, propertySources. */
    json_t *doc = sources == NULL ? NULL
                                  : json_pack("{s:s, s:[s], s:s?, s:s?, s:s, s:O}", "name",
                                              q->applications, "profiles", q->profiles, "label",
                                              q->label_echo, "version",
                                              env->version[0] ? env->version : NULL, "state", "",
                                              "propertySources", sources);
    char *text = doc ? json_dumps(doc, render_json_flags(doc)) : NULL;
    if (text != NULL) {
        *len = strlen(text);
        static const char marker[] = "\"propertySources\":[";
        /* Quotes inside string values are escaped, so the first unescaped marker is the key. */
        const char *at = etag && !has_reals(sources) ? strstr(text, marker) : NULL;
        if (at != NULL && *len >= 2 && text[*len - 1] == '}') {
            const char *start = at + sizeof(marker) - 2; /* at the '[' */
            etag_of_bytes(format_tag(fmt), start, (size_t)(text + *len - 1 - start), etag);
        } else if (etag != NULL) {
            render_environment_etag(env, fmt, etag);
        }
    }
    json_decref(doc);
    json_decref(sources);
    return text;
}

char *render_environment_json(const environment *env, const env_query *q, render_format fmt,
                              size_t *len)
{
    return environment_answer(env, q, fmt, len, NULL);
}

static int render_document(char **body, size_t *len, const environment *env, render_format fmt,
                           bool resolve_placeholders)
{
    int error = 0;
    char message[256] = "";
    flatrender_buf buf = {NULL, 0};
    json_t *merged = environment_merge(env);
    if (merged == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    if (resolve_placeholders && placeholder_resolve_map(merged) < 0) {
        error = err_set(ERR_NOMEM, "out of memory resolving placeholders");
        goto out;
    }
    int rc;
    if (fmt == RENDER_DOC_YAML)
        rc = flatrender_yaml(&buf, merged, message, sizeof(message));
    else if (fmt == RENDER_DOC_PROPERTIES)
        rc = flatrender_properties(&buf, merged, message, sizeof(message));
    else
        rc = flatrender_json(&buf, merged, message, sizeof(message));
    if (rc < 0) {
        error = err_set(ERR_BAD_REQUEST, "%s", message[0] ? message : "cannot render document");
        goto out;
    }
    *body = buf.data;
    *len = buf.len;
out:
    json_decref(merged);
    return error;
}

static const char *content_type(render_format fmt)
{
    switch (fmt) {
    case RENDER_ENV_V1: return "application/json";
    case RENDER_ENV_V2: return "application/vnd.spring-cloud.config-server.v2+json";
    case RENDER_DOC_JSON: return "application/json";
    case RENDER_DOC_YAML:
    case RENDER_DOC_PROPERTIES:
    case RENDER_PLAIN_FILE: return "text/plain;charset=UTF-8";
    }
    return "application/octet-stream";
}

static char *cache_key(const env_query *q, render_format fmt, bool resolve)
{
    /* \x1f cannot appear in validated names, profiles or labels: no two keys collide. */
    char *key = NULL;
    if (asprintf(&key, "%s\x1f%d\x1f%s\x1f%s\x1f%s\x1f%s\x1f%d", format_tag(fmt), resolve,
                 q->applications, q->profiles, q->label_echo ? q->label_echo : "\x1e", q->commit,
                 q->decrypt) < 0)
        return NULL;
    return key;
}

/*
 * A broken file (--broken-file last-good). A commit with a file that does not parse must not
 * take down the Environments that need it: pods restarting while the repository is being fixed
 * would crash-loop. Instead the Environment is composed from the nearest first-parent ancestor
 * at which it composes, and the answer says so in X-Almanac-Stale. Branches and tags get this;
 * a request naming the broken commit by its id asked about that commit, and gets the error.
 */
#define LAST_GOOD_DEPTH 100 /* ancestors tried before giving up and answering the error */
#define STALE_HEADER "X-Almanac-Stale"

static bool wants_last_good(const struct server *srv, const env_query *q)
{
    const char *mode = srv->settings ? srv->settings->broken_file : NULL;
    if (mode != NULL && strcmp(mode, "error") == 0)
        return false;
    if (q->label == NULL || q->label[0] == '\0')
        return true;
    size_t n = strlen(q->label);
    if (n < 4 || n > 40 || strspn(q->label, "0123456789abcdefABCDEF") != n)
        return true;
    return strncasecmp(q->label, q->commit, n) != 0; /* a branch that happens to look like hex */
}

/* "path:line:col: reason" at commit, as a header value: printable ASCII, bounded. */
static void stale_note(char *out, size_t size, const char *why, const char *bad,
                       const char *good)
{
    snprintf(out, size, "%.300s (commit %s); serving %s", why, bad, good);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
}

/* The repository q was resolved in. */
static struct repo *source_of(const struct server *srv, const env_query *q)
{
    return q->source != NULL ? q->source->repo : srv->repo;
}

/* Composes q from the nearest ancestor of commit at which it composes; note says what broke. */
static int compose_last_good(environment *env, struct server *srv, const env_query *q,
                             char *note, size_t note_size)
{
    char why[512], cur[REPO_COMMIT_HEX], parent[REPO_COMMIT_HEX];
    env_compose_params p;
    int error;

    snprintf(why, sizeof(why), "%s", err_message());
    if ((error = environment_params(&p, srv, q)) < 0)
        return error;
    memcpy(cur, q->commit, sizeof(cur));
    error = ERR_CONFIG;
    for (int depth = 0; depth < LAST_GOOD_DEPTH && error == ERR_CONFIG; depth++) {
        snapshot *older = NULL;
        if (repo_first_parent(source_of(srv, q), cur, parent) < 0 ||
            snapcache_get(&older, srv->snapshots, source_of(srv, q), parent) < 0)
            break;
        snapshot_release(p.snapshot);
        p.snapshot = older;
        memset(env, 0, sizeof(*env));
        error = environment_compose_snapshot(env, &p, q);
        memcpy(cur, parent, sizeof(cur));
    }
    snapshot_release(p.snapshot);
    if (error < 0) {
        memset(env, 0, sizeof(*env));
        return err_set(ERR_CONFIG, "%s", why); /* the first failure is the one to fix */
    }
    stale_note(note, note_size, why, q->commit, env->version);
    LOG_WARN(MODULE, "%s %s: %s", q->applications, q->profiles, note);
    metrics_stale_answer();
    return 0;
}

int render_get(render_result *out, struct server *srv, const env_query *q, render_format fmt,
               bool resolve_placeholders)
{
    char stale[512] = "";
    int error = 0;
    char *key = NULL;
    char *body = NULL;
    size_t len = 0;
    environment env;
    bool composed = false;
    memset(out, 0, sizeof(*out));

    if (fmt == RENDER_PLAIN_FILE)
        return err_set(ERR_INTERNAL, "render_get cannot render a plain file");
    if (!q->resolved)
        return err_set(ERR_INTERNAL, "a query reached rendering without its commit");
    key = cache_key(q, fmt, resolve_placeholders);
    if (key == NULL) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    if (srv->responses != NULL && cache_lookup(srv->responses, key, out)) {
        metrics_response_cache(true);
        goto out;
    }
    metrics_response_cache(false);

    if ((error = environment_compose(&env, srv, q)) < 0) {
        if (error != ERR_CONFIG || !wants_last_good(srv, q) ||
            (error = compose_last_good(&env, srv, q, stale, sizeof(stale))) < 0)
            goto out;
    }
    composed = true;
    if (fmt == RENDER_ENV_V1 || fmt == RENDER_ENV_V2) {
        body = environment_answer(&env, q, fmt, &len, out->etag);
        if (body == NULL) {
            error = err_set(ERR_NOMEM, "out of memory rendering the environment");
            goto out;
        }
    } else {
        if ((error = render_document(&body, &len, &env, fmt, resolve_placeholders)) < 0)
            goto out;
        etag_of_bytes(format_tag(fmt), body, len, out->etag);
    }
    memcpy(out->version, env.version, sizeof(out->version));
    out->ok = prepared_response_new(200, content_type(fmt), out->etag, body, len);
    body = NULL;
    out->not_modified = prepared_response_new(304, NULL, out->etag, NULL, 0);
    if (out->ok == NULL || out->not_modified == NULL ||
        (stale[0] && (prepared_response_add_header(out->ok, STALE_HEADER, stale) < 0 ||
                      prepared_response_add_header(out->not_modified, STALE_HEADER, stale) < 0))) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    /* Composed at the query's own commit, so the key is right as it is; a stale answer stands
     * for the broken commit, and is kept under its key. */
    if (srv->responses != NULL)
        cache_insert(srv->responses, key, out);
out:
    if (error < 0)
        render_result_dispose(out);
    if (composed)
        environment_dispose(&env);
    free(body);
    free(key);
    return error;
}

int render_plain_file(render_result *out, struct server *srv, const env_query *q,
                      const char *path)
{
    int error = 0;
    char *key = NULL;
    char *body = NULL;
    size_t len = 0;
    environment env;
    bool composed = false;
    memset(out, 0, sizeof(*out));

    if (!q->resolved)
        return err_set(ERR_INTERNAL, "a query reached rendering without its commit");
    /* As cache_key: \x1f appears in no validated name, profile, label or path. */
    if (asprintf(&key, "file\x1f%s\x1f%s\x1f%s\x1f%s\x1f%d\x1f%s", q->applications, q->profiles,
                 q->label_echo ? q->label_echo : "\x1e", q->commit, q->decrypt, path) < 0) {
        key = NULL;
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    if (srv->responses != NULL && cache_lookup(srv->responses, key, out)) {
        metrics_response_cache(true);
        goto out;
    }
    metrics_response_cache(false);
    if ((error = environment_compose(&env, srv, q)) < 0)
        goto out;
    composed = true;
    if ((error = plainfile_render(&body, &len, source_of(srv, q), &env, q->profiles, path)) < 0)
        goto out;
    etag_of_bytes(format_tag(RENDER_PLAIN_FILE), body, len, out->etag);
    memcpy(out->version, env.version, sizeof(out->version));
    out->ok = prepared_response_new(200, content_type(RENDER_PLAIN_FILE), out->etag, body, len);
    body = NULL;
    out->not_modified = prepared_response_new(304, NULL, out->etag, NULL, 0);
    if (out->ok == NULL || out->not_modified == NULL) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    if (srv->responses != NULL)
        cache_insert(srv->responses, key, out);
out:
    if (error < 0)
        render_result_dispose(out);
    if (composed)
        environment_dispose(&env);
    free(body);
    free(key);
    return error;
}

int render_latest(void *srv, render_result *out, const env_query *asked, render_format fmt,
                  const char *path)
{
    env_query q = *asked;
    int error = env_query_resolve_served(&q, srv);
    if (error == 0)
        error = fmt == RENDER_PLAIN_FILE ? render_plain_file(out, srv, &q, path)
                                         : render_get(out, srv, &q, fmt, true);
    env_query_done(&q, srv);
    return error;
}

void render_result_dispose(render_result *r)
{
    prepared_response_release(r->ok);
    prepared_response_release(r->not_modified);
    r->ok = r->not_modified = NULL;
}
