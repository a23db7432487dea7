/*
 * config — alm_config, one Environment as an immutable, reference-counted snapshot.
 *
 * Parsing keeps the server's JSON (jansson) as the owner of every key, source name and string
 * value, and builds beside it the merged view: an array of entries in precedence order and a
 * jansson object used as the hash index from key to entry. Nothing is modified after
 * alm__config_from_json() returns, which is what makes sharing across threads safe; only the
 * reference count changes, atomically. Fetching and caching live in client.c and cache.c.
 *
 * Placeholders (`${key}`, `${key:default}`) are resolved against the merged view by common/'s
 * resolver, the one the server uses for its documents, so both sides agree on every value; the
 * resolved strings live in a map of their own beside the original JSON.
 */
#include "internal.h"
#include "placeholder.h"
#include "scalar.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct alm__source {
    const char *name;
    json_t *props; /* owned by the config's root */
} alm__source;

struct alm_config {
    atomic_uint refcount;
    json_t *root;  /* the Environment as received; owns the strings below */
    json_t *index; /* merged key -> integer index into entries */
    json_t *resolved; /* key -> value with placeholders resolved; owns those strings */
    alm_config_entry *entries;
    char **owned_text;     /* per entry: the text form when the value is not a JSON string */
    const json_t **values; /* per entry: the JSON scalar, for the typed getters */
    size_t count;
    alm__source *sources;
    size_t nsources;
    const char *application;
    const char *label;
    const char *version;
    char *profiles; /* the Environment's profiles array joined with "," */
    char *etag;
    int64_t fetched_at;
    int stale;
};

static void config_destroy(alm_config *cfg)
{
    if (cfg == NULL)
        return;
    if (cfg->owned_text != NULL) {
        for (size_t i = 0; i < cfg->count; i++)
            free(cfg->owned_text[i]);
    }
    free(cfg->owned_text);
    free(cfg->values);
    free(cfg->entries);
    free(cfg->sources);
    free(cfg->profiles);
    free(cfg->etag);
    json_decref(cfg->index);
    json_decref(cfg->resolved);
    json_decref(cfg->root);
    free(cfg);
}

alm_config *alm_config_retain(const alm_config *cfg)
{
    /* Only the atomic count changes; everything a reader sees stays immutable. */
    alm_config *mutable_cfg = (alm_config *)(uintptr_t)cfg;
    if (mutable_cfg != NULL)
        atomic_fetch_add_explicit(&mutable_cfg->refcount, 1, memory_order_relaxed);
    return mutable_cfg;
}

void alm_config_free(alm_config *cfg)
{
    if (cfg == NULL)
        return;
    /* acq_rel: the thread dropping the last reference must see every other thread's reads. */
    if (atomic_fetch_sub_explicit(&cfg->refcount, 1, memory_order_acq_rel) == 1)
        config_destroy(cfg);
}

/* The Spring text of a scalar; NULL with *borrowed set when it can point into the JSON. */
static char *value_text(const json_t *value, const char **borrowed)
{
    char buf[64];
    *borrowed = NULL;
    switch (json_typeof(value)) {
    case JSON_STRING:
        *borrowed = json_string_value(value);
        return NULL;
    case JSON_INTEGER:
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        return strdup(buf);
    case JSON_REAL:
        scalar_format_double(json_real_value(value), buf, sizeof(buf));
        return strdup(buf);
    case JSON_TRUE:
        *borrowed = "true";
        return NULL;
    case JSON_FALSE:
        *borrowed = "false";
        return NULL;
    default:
        *borrowed = "";
        return NULL;
    }
}

static alm_value_type value_type(const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_STRING:
        return ALM_TYPE_STRING;
    case JSON_INTEGER:
        return ALM_TYPE_INTEGER;
    case JSON_REAL:
        return ALM_TYPE_DOUBLE;
    case JSON_TRUE:
    case JSON_FALSE:
        return ALM_TYPE_BOOLEAN;
    default:
        return ALM_TYPE_NULL;
    }
}

/* Reads the header fields (name, profiles, label, version) the Environment may carry. */
static int read_header(alm_config *cfg)
{
    const json_t *v = json_object_get(cfg->root, "name");
    if (json_is_string(v))
        cfg->application = json_string_value(v);
    v = json_object_get(cfg->root, "label");
    if (json_is_string(v))
        cfg->label = json_string_value(v);
    v = json_object_get(cfg->root, "version");
    if (json_is_string(v))
        cfg->version = json_string_value(v);

    v = json_object_get(cfg->root, "profiles");
    if (!json_is_array(v))
        return 0;
    size_t total = 1, i;
    const json_t *p;
    json_array_foreach(v, i, p)
    {
        if (!json_is_string(p))
            return alm__error_set(ALM_EPROTOCOL, "environment: profiles[%zu] is not a string", i);
        total += json_string_length(p) + 1;
    }
    cfg->profiles = malloc(total);
    if (cfg->profiles == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    cfg->profiles[0] = '\0';
    size_t used = 0;
    json_array_foreach(v, i, p)
    {
        size_t n = json_string_length(p);
        if (i > 0)
            cfg->profiles[used++] = ',';
        memcpy(cfg->profiles + used, json_string_value(p), n);
        used += n;
        cfg->profiles[used] = '\0';
    }
    return 0;
}

/* Checks the property sources and counts their keys, for a single allocation of the entries. */
static int read_sources(alm_config *cfg, size_t *nkeys)
{
    const json_t *list = json_object_get(cfg->root, "propertySources");
    if (!json_is_array(list))
        return alm__error_set(ALM_EPROTOCOL, "environment: propertySources is missing or not "
                                             "an array");
    cfg->nsources = json_array_size(list);
    cfg->sources = calloc(cfg->nsources ? cfg->nsources : 1, sizeof(*cfg->sources));
    if (cfg->sources == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    *nkeys = 0;
    size_t i;
    json_t *src;
    json_array_foreach(list, i, src)
    {
        const json_t *name = json_object_get(src, "name");
        json_t *props = json_object_get(src, "source");
        if (!json_is_string(name) || !json_is_object(props))
            return alm__error_set(ALM_EPROTOCOL,
                                  "environment: propertySources[%zu] lacks a "
                                  "string name or a source object",
                                  i);
        cfg->sources[i].name = json_string_value(name);
        cfg->sources[i].props = props;
        *nkeys += json_object_size(props);
    }
    return 0;
}

/*
 * Whether `key` may enter the merged view from source `src`: a list belongs to the most specific
 * source that has any element of it (Spring Boot binds lists that way).
 */
static int list_owned_elsewhere(json_t *claims, const char *key, size_t src, int *error)
{
    const char *bracket = strchr(key, '[');
    *error = 0;
    if (bracket == NULL)
        return 0;
    char *root = strndup(key, (size_t)(bracket - key));
    if (root == NULL) {
        *error = alm__error_set(ALM_ENOMEM, "out of memory");
        return 0;
    }
    int elsewhere = 0;
    const json_t *claim = json_object_get(claims, root);
    if (claim != NULL)
        elsewhere = (size_t)json_integer_value(claim) != src;
    else if (json_object_set_new(claims, root, json_integer((json_int_t)src)) < 0)
        *error = alm__error_set(ALM_ENOMEM, "out of memory");
    free(root);
    return elsewhere;
}

static int merge(alm_config *cfg, size_t nkeys)
{
    int error = 0;
    json_t *claims = json_object();
    cfg->index = json_object();
    cfg->entries = calloc(nkeys ? nkeys : 1, sizeof(*cfg->entries));
    cfg->owned_text = calloc(nkeys ? nkeys : 1, sizeof(*cfg->owned_text));
    cfg->values = calloc(nkeys ? nkeys : 1, sizeof(*cfg->values));
    if (claims == NULL || cfg->index == NULL || cfg->entries == NULL || cfg->owned_text == NULL ||
        cfg->values == NULL) {
        error = alm__error_set(ALM_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t s = 0; s < cfg->nsources; s++) {
        const char *key;
        json_t *value;
        json_object_foreach(cfg->sources[s].props, key, value)
        {
            /* The v2 media type wraps each value as {"value":…,"origin":…}. */
            if (json_is_object(value))
                value = json_object_get(value, "value");
            if (value == NULL || json_is_object(value) || json_is_array(value)) {
                error = alm__error_set(ALM_EPROTOCOL,
                                       "environment: value of '%s' in source "
                                       "'%s' is not a scalar",
                                       key, cfg->sources[s].name);
                goto out;
            }
            if (list_owned_elsewhere(claims, key, s, &error) || error < 0) {
                if (error < 0)
                    goto out;
                continue;
            }
            if (json_object_get(cfg->index, key) != NULL)
                continue;
            size_t at = cfg->count;
            alm_config_entry *e = &cfg->entries[at];
            e->key = key;
            e->source = cfg->sources[s].name;
            e->type = value_type(value);
            cfg->values[at] = value;
            cfg->owned_text[at] = value_text(value, &e->value);
            if (cfg->owned_text[at] != NULL)
                e->value = cfg->owned_text[at];
            else if (e->value == NULL) {
                error = alm__error_set(ALM_ENOMEM, "out of memory");
                goto out;
            }
            if (json_object_set_new(cfg->index, key, json_integer((json_int_t)at)) < 0) {
                error = alm__error_set(ALM_ENOMEM, "out of memory");
                goto out;
            }
            cfg->count++;
        }
    }
out:
    json_decref(claims);
    return error;
}

int alm__config_from_json(alm_config **out, const char *json, size_t len, const char *etag,
                          int64_t fetched_at, int stale)
{
    int error = 0;
    alm_config *cfg = NULL;
    json_error_t jerr;
    size_t nkeys = 0;

    if (out == NULL || json == NULL)
        return alm__error_set(ALM_EINVALID, "alm_config_parse: NULL argument");
    *out = NULL;
    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    atomic_init(&cfg->refcount, 1);
    cfg->fetched_at = fetched_at;
    cfg->stale = stale != 0;

    cfg->root = json_loadb(json, len, 0, &jerr);
    if (cfg->root == NULL) {
        error = alm__error_set(ALM_EPROTOCOL, "environment is not valid JSON: line %d: %s",
                               jerr.line, jerr.text);
        goto out;
    }
    if (!json_is_object(cfg->root)) {
        error = alm__error_set(ALM_EPROTOCOL, "environment is not a JSON object");
        goto out;
    }
    if (etag != NULL && (cfg->etag = strdup(etag)) == NULL) {
        error = alm__error_set(ALM_ENOMEM, "out of memory");
        goto out;
    }
    if ((error = read_header(cfg)) < 0 || (error = read_sources(cfg, &nkeys)) < 0 ||
        (error = merge(cfg, nkeys)) < 0)
        goto out;
    *out = cfg;
    cfg = NULL;
out:
    config_destroy(cfg);
    return error;
}

int alm__config_resolve(alm_config *cfg)
{
    int error = 0;
    json_t *flat = json_object();
    if (flat == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    for (size_t i = 0; i < cfg->count; i++) {
        if (json_object_set(flat, cfg->entries[i].key, (json_t *)(uintptr_t)cfg->values[i]) < 0) {
            error = alm__error_set(ALM_ENOMEM, "out of memory");
            goto out;
        }
    }
    if (placeholder_resolve_map(flat) < 0) {
        error = alm__error_set(ALM_ENOMEM, "out of memory resolving placeholders");
        goto out;
    }
    /* Only strings with a placeholder were replaced; the rest are the same JSON values. */
    for (size_t i = 0; i < cfg->count; i++) {
        const json_t *v = json_object_get(flat, cfg->entries[i].key);
        if (v == NULL || v == cfg->values[i])
            continue;
        cfg->values[i] = v;
        cfg->entries[i].value = json_string_value(v);
    }
    json_decref(cfg->resolved);
    cfg->resolved = flat;
    flat = NULL;
out:
    json_decref(flat);
    return error;
}

int alm_config_parse(alm_config **out, const char *json, size_t len)
{
    int error = alm__config_from_json(out, json, len, NULL, 0, 0);
    if (error == 0 && (error = alm__config_resolve(*out)) < 0) {
        alm_config_free(*out);
        *out = NULL;
    }
    return error;
}

static const alm_config_entry *lookup(const alm_config *cfg, const char *key, int *error)
{
    if (cfg == NULL || key == NULL) {
        *error = alm__error_set(ALM_EINVALID, "NULL configuration or key");
        return NULL;
    }
    const json_t *at = json_object_get(cfg->index, key);
    if (at == NULL) {
        *error = alm__error_set(ALM_ENOTFOUND, "no key '%s' in the configuration", key);
        return NULL;
    }
    *error = 0;
    return &cfg->entries[json_integer_value(at)];
}

/* The value of `key` as JSON, for the typed getters. */
static const json_t *lookup_json(const alm_config *cfg, const char *key, int *error)
{
    const alm_config_entry *e = lookup(cfg, key, error);
    return e != NULL ? cfg->values[e - cfg->entries] : NULL;
}

const alm_config_entry *alm__config_entry_bykey(const alm_config *cfg, const char *key)
{
    const json_t *at = cfg != NULL && key != NULL ? json_object_get(cfg->index, key) : NULL;
    return at != NULL ? &cfg->entries[json_integer_value(at)] : NULL;
}

int alm_config_get_string(const char **out, const alm_config *cfg, const char *key)
{
    int error;
    if (out == NULL)
        return alm__error_set(ALM_EINVALID, "alm_config_get_string: NULL out");
    const alm_config_entry *e = lookup(cfg, key, &error);
    if (e == NULL)
        return error;
    *out = e->value;
    return 0;
}

int alm_config_source_of(const char **out, const alm_config *cfg, const char *key)
{
    int error;
    if (out == NULL)
        return alm__error_set(ALM_EINVALID, "alm_config_source_of: NULL out");
    const alm_config_entry *e = lookup(cfg, key, &error);
    if (e == NULL)
        return error;
    *out = e->source;
    return 0;
}

int alm_config_layers(const alm_config *cfg, const char *key, alm_config_layer_cb cb,
                      void *payload)
{
    int error;
    const alm_config_entry *winner = lookup(cfg, key, &error);
    if (cb == NULL)
        return alm__error_set(ALM_EINVALID, "alm_config_layers: NULL callback");
    if (winner == NULL)
        return error;
    for (size_t s = 0; s < cfg->nsources; s++) {
        const json_t *value = json_object_get(cfg->sources[s].props, key);
        const json_t *origin = NULL;
        if (value == NULL)
            continue;
        if (json_is_object(value)) {
            origin = json_object_get(value, "origin");
            value = json_object_get(value, "value");
        }
        alm_config_layer layer = {
            .source = cfg->sources[s].name,
            .origin = json_is_string(origin) ? json_string_value(origin) : NULL,
            .wins = winner->source == cfg->sources[s].name,
        };
        char *owned = value ? value_text(value, &layer.value) : NULL;
        if (owned != NULL)
            layer.value = owned;
        if (layer.value == NULL)
            layer.value = "";
        int stop = cb(&layer, payload);
        free(owned);
        if (stop != 0)
            return stop;
    }
    return 0;
}

int alm_config_has(const alm_config *cfg, const char *key)
{
    return cfg != NULL && key != NULL && json_object_get(cfg->index, key) != NULL;
}

/* Copies `text` without surrounding whitespace into `buf`; 0, or -1 when it does not fit. */
static int trim_copy(char *buf, size_t size, const char *text)
{
    while (isspace((unsigned char)*text))
        text++;
    size_t n = strlen(text);
    while (n > 0 && isspace((unsigned char)text[n - 1]))
        n--;
    if (n >= size)
        return -1;
    memcpy(buf, text, n);
    buf[n] = '\0';
    return 0;
}

/* Spring's NumberUtils.parseNumber for Long: decimal, or hex after 0x / 0X / #, signed. */
static int parse_int64(int64_t *out, const char *text, const char *key)
{
    char buf[128];
    if (trim_copy(buf, sizeof(buf), text) < 0)
        return alm__error_set(ALM_ETYPE, "'%s' is not an integer", key);
    const char *p = buf;
    int negative = 0;
    if (*p == '+' || *p == '-')
        negative = *p++ == '-';
    int base = 10;
    if (p[0] == '#') {
        base = 16;
        p++;
    } else if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    }
    if (!isxdigit((unsigned char)*p) || (base == 10 && !isdigit((unsigned char)*p)))
        return alm__error_set(ALM_ETYPE, "'%s' is not an integer: \"%s\"", key, text);
    char *end = NULL;
    errno = 0;
    unsigned long long mag = strtoull(p, &end, base);
    if (*end != '\0')
        return alm__error_set(ALM_ETYPE, "'%s' is not an integer: \"%s\"", key, text);
    if (errno == ERANGE || mag > (unsigned long long)INT64_MAX + (negative ? 1u : 0u))
        return alm__error_set(ALM_ERANGE, "'%s' is out of the range of a 64-bit integer", key);
    if (negative)
        *out = mag == (unsigned long long)INT64_MAX + 1u ? INT64_MIN : -(int64_t)mag;
    else
        *out = (int64_t)mag;
    return 0;
}

int alm_config_get_int64(int64_t *out, const alm_config *cfg, const char *key)
{
    int error;
    if (out == NULL)
        return alm__error_set(ALM_EINVALID, "alm_config_get_int64: NULL out");
    const json_t *v = lookup_json(cfg, key, &error);
    if (v == NULL)
        return error;
    switch (json_typeof(v)) {
    case JSON_INTEGER:
        *out = (int64_t)json_integer_value(v);
        return 0;
    case JSON_REAL: {
        double d = json_real_value(v);
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
            return alm__error_set(ALM_ERANGE, "'%s' is out of the range of a 64-bit integer", key);
        if ((double)(int64_t)d != d)
            return alm__error_set(ALM_ETYPE, "'%s' has a fractional part", key);
        *out = (int64_t)d;
        return 0;
    }
    case JSON_STRING:
        return parse_int64(out, json_string_value(v), key);
    default:
        return alm__error_set(ALM_ETYPE, "'%s' is not an integer", key);
    }
}

int alm_config_get_double(double *out, const alm_config *cfg, const char *key)
{
    int error;
    char buf[512];
    if (out == NULL)
        return alm__error_set(ALM_EINVALID, "alm_config_get_double: NULL out");
    const json_t *v = lookup_json(cfg, key, &error);
    if (v == NULL)
        return error;
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return 0;
    }
    if (!json_is_string(v) || trim_copy(buf, sizeof(buf), json_string_value(v)) < 0)
        return alm__error_set(ALM_ETYPE, "'%s' is not a number", key);
    /* Java spells the specials NaN and Infinity; strtod would also take "nan" and "inf". */
    const char *p = buf + (buf[0] == '+' || buf[0] == '-');
    if (strcmp(p, "NaN") != 0 && strcmp(p, "Infinity") != 0 && !isdigit((unsigned char)*p) &&
        *p != '.')
        return alm__error_set(ALM_ETYPE, "'%s' is not a number: \"%s\"", key, buf);
    char *end = NULL;
    errno = 0;
    double d = strcmp(p, "NaN") == 0 ? (double)NAN : strtod(buf, &end);
    if (end != NULL && *end != '\0')
        return alm__error_set(ALM_ETYPE, "'%s' is not a number: \"%s\"", key, buf);
    if (errno == ERANGE && (d > 1.0 || d < -1.0))
        return alm__error_set(ALM_ERANGE, "'%s' is out of the range of a double", key);
    *out = d;
    return 0;
}

int alm_config_get_bool(int *out, const alm_config *cfg, const char *key)
{
    static const char *const truthy[] = {"true", "on", "yes", "1"};
    static const char *const falsy[] = {"false", "off", "no", "0"};
    int error;
    char buf[16];
    if (out == NULL)
        return alm__error_set(ALM_EINVALID, "alm_config_get_bool: NULL out");
    const json_t *v = lookup_json(cfg, key, &error);
    if (v == NULL)
        return error;
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return 0;
    }
    if (json_is_string(v) && trim_copy(buf, sizeof(buf), json_string_value(v)) == 0) {
        for (size_t i = 0; i < sizeof(truthy) / sizeof(truthy[0]); i++) {
            if (strcasecmp(buf, truthy[i]) == 0) {
                *out = 1;
                return 0;
            }
            if (strcasecmp(buf, falsy[i]) == 0) {
                *out = 0;
                return 0;
            }
        }
    }
    return alm__error_set(ALM_ETYPE, "'%s' is not a boolean (true/false, yes/no, on/off, 1/0)",
                          key);
}

size_t alm_config_entrycount(const alm_config *cfg)
{
    return cfg != NULL ? cfg->count : 0;
}

const alm_config_entry *alm_config_entry_byindex(const alm_config *cfg, size_t idx)
{
    return cfg != NULL && idx < cfg->count ? &cfg->entries[idx] : NULL;
}

int alm_config_foreach(const alm_config *cfg, alm_config_foreach_cb cb, void *payload)
{
    if (cfg == NULL || cb == NULL)
        return alm__error_set(ALM_EINVALID, "alm_config_foreach: NULL argument");
    for (size_t i = 0; i < cfg->count; i++) {
        int rc = cb(&cfg->entries[i], payload);
        if (rc != 0)
            return rc;
    }
    return 0;
}

size_t alm_config_source_count(const alm_config *cfg)
{
    return cfg != NULL ? cfg->nsources : 0;
}

const char *alm_config_source_name(const alm_config *cfg, size_t idx)
{
    return cfg != NULL && idx < cfg->nsources ? cfg->sources[idx].name : NULL;
}

int alm_config_source_keys(const alm_config *cfg, size_t source, alm_config_key_cb cb,
                           void *payload)
{
    const char *key;
    json_t *value;
    if (cfg == NULL || cb == NULL)
        return alm__error_set(ALM_EINVALID, "alm_config_source_keys: NULL argument");
    if (source >= cfg->nsources)
        return alm__error_set(ALM_EINVALID, "alm_config_source_keys: no source %zu", source);
    json_object_foreach(cfg->sources[source].props, key, value)
    {
        int rc = cb(key, payload);
        if (rc != 0)
            return rc;
    }
    return 0;
}

const char *alm_config_version(const alm_config *cfg)
{
    return cfg != NULL ? cfg->version : NULL;
}

const char *alm_config_etag(const alm_config *cfg)
{
    return cfg != NULL ? cfg->etag : NULL;
}

const char *alm_config_application(const alm_config *cfg)
{
    return cfg != NULL ? cfg->application : NULL;
}

const char *alm_config_profiles(const alm_config *cfg)
{
    return cfg != NULL ? cfg->profiles : NULL;
}

const char *alm_config_label(const alm_config *cfg)
{
    return cfg != NULL ? cfg->label : NULL;
}

int alm_config_is_stale(const alm_config *cfg)
{
    return cfg != NULL && cfg->stale;
}

int64_t alm_config_fetched_at(const alm_config *cfg)
{
    return cfg != NULL ? cfg->fetched_at : 0;
}
