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
#include <limits.h>
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
    size_t *sorted;        /* entry indexes in key order (key_order), for subtrees and lists */
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
    free(cfg->sorted);
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

/*
 * The order of keys for subtrees and lists: byte order, except that list indexes compare as
 * numbers, so that hosts[2] comes before hosts[10] and a subtree's keys are contiguous.
 */
static int key_order(const char *a, const char *b)
{
    while (*a != '\0' && *a == *b) {
        if (*a == '[' && isdigit((unsigned char)a[1]) && isdigit((unsigned char)b[1])) {
            char *end_a, *end_b;
            unsigned long long ia = strtoull(a + 1, &end_a, 10), ib = strtoull(b + 1, &end_b, 10);
            if (ia != ib)
                return ia < ib ? -1 : 1;
            a = end_a;
            b = end_b;
            continue;
        }
        a++;
        b++;
    }
    return (unsigned char)*a - (unsigned char)*b;
}

static int compare_entries(const void *x, const void *y, void *arg)
{
    const alm_config *cfg = arg;
    return key_order(cfg->entries[*(const size_t *)x].key, cfg->entries[*(const size_t *)y].key);
}

static int sort_keys(alm_config *cfg)
{
    cfg->sorted = calloc(cfg->count ? cfg->count : 1, sizeof(*cfg->sorted));
    if (cfg->sorted == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    for (size_t i = 0; i < cfg->count; i++)
        cfg->sorted[i] = i;
    qsort_r(cfg->sorted, cfg->count, sizeof(*cfg->sorted), compare_entries, cfg);
    return 0;
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
        (error = merge(cfg, nkeys)) < 0 || (error = sort_keys(cfg)) < 0)
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

/* ---- structured access: subtrees, lists, relaxed names ---------------------------------- */

/* Whether `key` is `root` itself or lies under it (`root.…`, `root[…`); "" is the root of all. */
static int in_subtree(const char *key, const char *root, size_t root_len)
{
    if (root_len == 0)
        return 1;
    return strncmp(key, root, root_len) == 0 &&
           (key[root_len] == '\0' || key[root_len] == '.' || key[root_len] == '[');
}

int alm_config_foreach_under(const alm_config *cfg, const char *prefix, alm_config_foreach_cb cb,
                             void *payload)
{
    if (cfg == NULL || prefix == NULL || cb == NULL)
        return alm__error_set(ALM_EINVALID, "alm_config_foreach_under: NULL argument");
    size_t len = strlen(prefix);
    /* "orders.pool.*" and "orders.pool." name the same subtree as "orders.pool". */
    if (len >= 2 && strcmp(prefix + len - 2, ".*") == 0)
        len -= 2;
    else if (len == 1 && prefix[0] == '*')
        len = 0;
    else if (len >= 1 && prefix[len - 1] == '.')
        len -= 1;
    for (size_t i = 0; i < cfg->count; i++) {
        const alm_config_entry *e = &cfg->entries[cfg->sorted[i]];
        if (!in_subtree(e->key, prefix, len))
            continue;
        int rc = cb(e, payload);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/*
 * The index of the list element `key` is in, when `key` is `root[N]`, `root[N].…` or
 * `root[N][…`; -1 otherwise.
 */
static long long element_index(const char *key, const char *root, size_t root_len)
{
    if (strncmp(key, root, root_len) != 0 || key[root_len] != '[' ||
        !isdigit((unsigned char)key[root_len + 1]))
        return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(key + root_len + 1, &end, 10);
    if (errno == ERANGE || n > (unsigned long long)LLONG_MAX || *end != ']' ||
        (end[1] != '\0' && end[1] != '.' && end[1] != '['))
        return -1;
    return (long long)n;
}

int alm_config_list_len(size_t *out, const alm_config *cfg, const char *key)
{
    if (out == NULL || cfg == NULL || key == NULL)
        return alm__error_set(ALM_EINVALID, "alm_config_list_len: NULL argument");
    size_t root_len = strlen(key);
    long long next = 0; /* the index expected next, in key order */
    for (size_t i = 0; i < cfg->count; i++) {
        long long at = element_index(cfg->entries[cfg->sorted[i]].key, key, root_len);
        if (at < 0 || at == next - 1)
            continue;
        if (at != next)
            return alm__error_set(ALM_ETYPE, "list '%s' has [%lld] but no [%lld]", key, at, next);
        next++;
    }
    if (next > 0) {
        *out = (size_t)next;
        return 0;
    }
    const alm_config_entry *e = alm__config_entry_bykey(cfg, key);
    if (e == NULL)
        return alm__error_set(ALM_ENOTFOUND, "no list '%s' in the configuration", key);
    /* `hosts: []` arrives as an empty value, as Spring flattens it. */
    if (e->value[0] == '\0') {
        *out = 0;
        return 0;
    }
    return alm__error_set(ALM_ETYPE,
                          "'%s' is a single value, not a list (alm_config_get_strarray splits "
                          "a comma-separated value)",
                          key);
}

/* "key[index]", allocated; NULL with the error set. */
static char *element_key(const char *key, size_t index)
{
    char *name = NULL;
    if (key == NULL) {
        alm__error_set(ALM_EINVALID, "NULL list key");
        return NULL;
    }
    if (asprintf(&name, "%s[%zu]", key, index) < 0) {
        alm__error_set(ALM_ENOMEM, "out of memory");
        return NULL;
    }
    return name;
}

int alm_config_list_get_string(const char **out, const alm_config *cfg, const char *key,
                               size_t index)
{
    char *name = element_key(key, index);
    if (name == NULL)
        return alm_error_last()->code;
    int error = alm_config_get_string(out, cfg, name);
    free(name);
    return error;
}

int alm_config_list_get_int64(int64_t *out, const alm_config *cfg, const char *key, size_t index)
{
    char *name = element_key(key, index);
    if (name == NULL)
        return alm_error_last()->code;
    int error = alm_config_get_int64(out, cfg, name);
    free(name);
    return error;
}

int alm_config_list_get_double(double *out, const alm_config *cfg, const char *key, size_t index)
{
    char *name = element_key(key, index);
    if (name == NULL)
        return alm_error_last()->code;
    int error = alm_config_get_double(out, cfg, name);
    free(name);
    return error;
}

int alm_config_list_get_bool(int *out, const alm_config *cfg, const char *key, size_t index)
{
    char *name = element_key(key, index);
    if (name == NULL)
        return alm_error_last()->code;
    int error = alm_config_get_bool(out, cfg, name);
    free(name);
    return error;
}

void alm_strarray_dispose(alm_strarray *array)
{
    if (array == NULL)
        return;
    if (array->strings != NULL) {
        for (size_t i = 0; i < array->count; i++)
            free(array->strings[i]);
        free(array->strings);
    }
    array->strings = NULL;
    array->count = 0;
}

/* Appends a copy of `len` bytes of `text` to `array` (whose strings hold count + 1 slots). */
static int strarray_push(alm_strarray *array, const char *text, size_t len)
{
    char **grown = realloc(array->strings, (array->count + 2) * sizeof(*grown));
    if (grown == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    array->strings = grown;
    if ((grown[array->count] = strndup(text, len)) == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    grown[++array->count] = NULL;
    return 0;
}

int alm_config_get_strarray(alm_strarray *out, const alm_config *cfg, const char *key)
{
    size_t n = 0;
    int error;
    if (out == NULL)
        return alm__error_set(ALM_EINVALID, "alm_config_get_strarray: NULL out");
    out->strings = NULL;
    out->count = 0;
    if ((out->strings = calloc(1, sizeof(*out->strings))) == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    error = alm_config_list_len(&n, cfg, key);
    const alm_config_entry *single = error == ALM_ETYPE ? alm__config_entry_bykey(cfg, key) : NULL;
    if (single != NULL) {
        /* One value: Spring's conversion of a String to a collection splits it at commas and
         * trims each part. */
        const char *text = single->value;
        for (;;) {
            const char *comma = strchr(text, ',');
            const char *end = comma != NULL ? comma : text + strlen(text);
            const char *start = text;
            while (start < end && isspace((unsigned char)*start))
                start++;
            while (end > start && isspace((unsigned char)end[-1]))
                end--;
            if ((error = strarray_push(out, start, (size_t)(end - start))) < 0 || comma == NULL)
                break;
            text = comma + 1;
        }
    } else {
        for (size_t i = 0; i < n && error == 0; i++) {
            const char *value = NULL;
            if ((error = alm_config_list_get_string(&value, cfg, key, i)) == ALM_ENOTFOUND)
                error = alm__error_set(ALM_ETYPE, "'%s[%zu]' is not a single value (a map?)",
                                       key, i);
            else if (error == 0)
                error = strarray_push(out, value, strlen(value));
        }
    }
    if (error < 0)
        alm_strarray_dispose(out);
    return error;
}

/*
 * A name in Spring's uniform form: elements separated by ".", each lower-cased with everything
 * but letters and digits dropped ("pool-size", "poolSize", "pool_size" are all "poolsize"),
 * list indexes kept as "[N]". Allocated; NULL on OOM.
 */
static char *uniform_name(const char *name)
{
    char *out = malloc(strlen(name) + 1), *w = out;
    if (out == NULL)
        return NULL;
    for (const char *p = name; *p; p++) {
        if (*p == '[') {
            const char *close = strchr(p, ']');
            size_t n = close != NULL ? (size_t)(close - p) + 1 : strlen(p);
            memcpy(w, p, n);
            w += n;
            p += n - 1;
        } else if (*p == '.') {
            *w++ = '.';
        } else if (isalnum((unsigned char)*p)) {
            *w++ = (char)tolower((unsigned char)*p);
        }
    }
    *w = '\0';
    return out;
}

/*
 * Whether the words of an environment-variable name (lower-cased, split at "_") spell the
 * uniform name `u`: each element of `u` is one or more consecutive words joined ("POOL_SIZE"
 * spells "pool.size" and "poolsize"), an index "[N]" is the word "N".
 */
static int words_spell(char *const *words, size_t nwords, const char *u)
{
    if (*u == '\0')
        return nwords == 0;
    if (nwords == 0)
        return 0;
    const char *end = u;
    if (*u == '[') {
        end = strchr(u, ']');
        if (end == NULL)
            return 0;
        size_t n = (size_t)(end - u - 1);
        if (strlen(words[0]) != n || strncmp(words[0], u + 1, n) != 0)
            return 0;
        end++;
    } else {
        while (*end != '\0' && *end != '.' && *end != '[')
            end++;
        size_t want = (size_t)(end - u), used = 0, i = 0;
        while (i < nwords && used < want) {
            size_t n = strlen(words[i]);
            if (used + n > want || strncmp(u + used, words[i], n) != 0)
                return 0;
            used += n;
            i++;
            if (used == want) {
                const char *rest = *end == '.' ? end + 1 : end;
                if (words_spell(words + i, nwords - i, rest))
                    return 1;
            }
        }
        return 0;
    }
    return words_spell(words + 1, nwords - 1, *end == '.' ? end + 1 : end);
}

int alm_config_relaxed_key(const char **out, const alm_config *cfg, const char *name)
{
    int error = 0;
    char *query = NULL, *copy = NULL, **words = NULL;
    size_t nwords = 0;
    if (out == NULL || cfg == NULL || name == NULL || *name == '\0')
        return alm__error_set(ALM_EINVALID, "alm_config_relaxed_key: NULL or empty argument");
    const alm_config_entry *exact = alm__config_entry_bykey(cfg, name);
    if (exact != NULL) {
        *out = exact->key;
        return 0;
    }
    /* Without "." or "[", a name is read as an environment variable's: "_" separates. */
    int env_form = strpbrk(name, ".[") == NULL;
    if (env_form) {
        if ((copy = strdup(name)) == NULL ||
            (words = calloc(strlen(name) + 1, sizeof(*words))) == NULL)
            goto oom;
        char *save = NULL;
        for (char *word = strtok_r(copy, "_", &save); word != NULL;
             word = strtok_r(NULL, "_", &save)) {
            char *w = word;
            for (char *p = word; *p; p++)
                if (isalnum((unsigned char)*p))
                    *w++ = (char)tolower((unsigned char)*p);
            *w = '\0';
            if (*word != '\0')
                words[nwords++] = word;
        }
    } else if ((query = uniform_name(name)) == NULL) {
        goto oom;
    }
    /* The first match in precedence order wins, as Spring takes the first property source
     * that has any form of the name. */
    error = alm__error_set(ALM_ENOTFOUND, "no key '%s' in the configuration, in any relaxed form",
                           name);
    for (size_t i = 0; i < cfg->count; i++) {
        char *u = uniform_name(cfg->entries[i].key);
        if (u == NULL)
            goto oom;
        int match = env_form ? words_spell(words, nwords, u) : strcmp(u, query) == 0;
        free(u);
        if (match) {
            *out = cfg->entries[i].key;
            error = 0;
            break;
        }
    }
    goto out;
oom:
    error = alm__error_set(ALM_ENOMEM, "out of memory");
out:
    free(query);
    free(words);
    free(copy);
    return error;
}
