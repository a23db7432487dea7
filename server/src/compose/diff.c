/*
 * diff — the effective change between two composed Environments: which keys a client would see
 * added, removed or changed, with the old and new value and the property source (file, line,
 * column) that set each. Values are the merged map the document endpoints serve
 * (environment_merge), so a list replaced as a whole by a higher source diffs the way a client
 * binds it.
 *
 * Owns: the key-by-key comparison, secret masking, and the list of (application, profile)
 * pairs a repository names. Does not own: composition (environment.c) or labels (the caller
 * composes both sides from snapshots it holds).
 */
#include "compose/diff.h"

#include "errors.h"

#include <stdio.h>

#include <stdlib.h>
#include <string.h>

#define CIPHER_PREFIX "{cipher}"
#define MASK "******"

bool diff_is_cipher(const json_t *value)
{
    return json_is_string(value) &&
           strncmp(json_string_value(value), CIPHER_PREFIX, strlen(CIPHER_PREFIX)) == 0;
}

/* The highest source that holds key: where the served value comes from. */
static const env_source *winning_source(const environment *env, const char *key)
{
    for (size_t i = 0; i < env->count; i++)
        if (json_object_get(env->sources[i].props, key) != NULL)
            return &env->sources[i];
    return NULL;
}

/* {"value", "source", "origin"} for key in env, masked when the value is a secret and
 * the caller may not see secrets. New reference, NULL on OOM. */
static json_t *side(const environment *env, const json_t *merged, const char *key,
                    const env_diff_options *opts, bool *secret)
{
    json_t *value = json_object_get(merged, key);
    const env_source *src = winning_source(env, key);
    bool masked = opts->mask_secrets && diff_is_cipher(value);
    *secret = *secret || diff_is_cipher(value);
    json_t *out = json_object();
    if (out == NULL ||
        json_object_set_new(out, "value", masked ? json_string(MASK) : json_deep_copy(value)) < 0)
        goto fail;
    if (src != NULL) {
        json_t *origin = src->origins ? json_object_get(src->origins, key) : NULL;
        if (json_object_set_new(out, "source", json_string(src->name)) < 0 ||
            (json_is_string(origin) && json_object_set(out, "origin", origin) < 0))
            goto fail;
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

/* The sorted keys of both maps, each once. */
static int compare_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const char **union_keys(json_t *a, json_t *b, size_t *count)
{
    size_t cap = json_object_size(a) + json_object_size(b), n = 0;
    const char **keys = calloc(cap ? cap : 1, sizeof(*keys));
    const char *key;
    json_t *value;
    if (keys == NULL)
        return NULL;
    json_object_foreach(a, key, value) keys[n++] = key;
    json_object_foreach(b, key, value)
    {
        if (json_object_get(a, key) == NULL)
            keys[n++] = key;
    }
    qsort(keys, n, sizeof(*keys), compare_keys);
    *count = n;
    return keys;
}

int environment_diff(json_t **out, const environment *from, const environment *to,
                     const env_diff_options *opts)
{
    int error = ERR_NOMEM;
    json_t *old_map = environment_merge(from), *new_map = environment_merge(to);
    json_t *added = json_array(), *removed = json_array(), *changed = json_array();
    json_t *result = NULL;
    const char **keys = NULL;
    size_t nkeys = 0;
    *out = NULL;
    if (old_map == NULL || new_map == NULL || added == NULL || removed == NULL || changed == NULL)
        goto out;
    json_object_del(old_map, "spring.profiles");
    json_object_del(new_map, "spring.profiles");
    if ((keys = union_keys(old_map, new_map, &nkeys)) == NULL)
        goto out;
    for (size_t i = 0; i < nkeys; i++) {
        const char *key = keys[i];
        json_t *a = json_object_get(old_map, key), *b = json_object_get(new_map, key);
        if (a != NULL && b != NULL && json_equal(a, b))
            continue;
        bool secret = false;
        json_t *entry = json_pack("{s:s}", "key", key);
        json_t *before = a ? side(from, old_map, key, opts, &secret) : NULL;
        json_t *after = b ? side(to, new_map, key, opts, &secret) : NULL;
        json_t *list = a == NULL ? added : b == NULL ? removed : changed;
        if (entry == NULL || (a != NULL && before == NULL) || (b != NULL && after == NULL) ||
            (before && json_object_set_new(entry, "from", before) < 0) ||
            (after && json_object_set_new(entry, "to", after) < 0) ||
            (secret && json_object_set_new(entry, "secret", json_true()) < 0) ||
            json_array_append_new(list, entry) < 0) {
            if (entry == NULL || json_object_get(entry, "from") != before)
                json_decref(before);
            if (entry == NULL || json_object_get(entry, "to") != after)
                json_decref(after);
            json_decref(entry);
            goto out;
        }
    }
    result = json_pack("{s:s, s:s, s:{s:I, s:I, s:I}, s:O, s:O, s:O}", "fromVersion",
                       from->version, "toVersion", to->version, "counts", "added",
                       (json_int_t)json_array_size(added), "removed",
                       (json_int_t)json_array_size(removed), "changed",
                       (json_int_t)json_array_size(changed), "added", added, "removed", removed,
                       "changed", changed);
    if (result == NULL)
        goto out;
    *out = result;
    error = 0;
out:
    free(keys);
    json_decref(old_map);
    json_decref(new_map);
    json_decref(added);
    json_decref(removed);
    json_decref(changed);
    return error;
}

bool environment_diff_is_empty(const json_t *diff)
{
    return json_array_size(json_object_get(diff, "added")) == 0 &&
           json_array_size(json_object_get(diff, "removed")) == 0 &&
           json_array_size(json_object_get(diff, "changed")) == 0;
}

/* ---- which (application, profile) pairs a repository names ------------------------------- */

static bool is_config_ext(const char *ext)
{
    return strcmp(ext, "yml") == 0 || strcmp(ext, "yaml") == 0 || strcmp(ext, "properties") == 0;
}

/* The file name without folder and extension ("sub/orders-prod.yml" -> "orders-prod"), or
 * NULL when it is not a configuration file. New string. */
static char *stem_of(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    if (dot == NULL || dot == base || !is_config_ext(dot + 1))
        return NULL;
    return strndup(base, (size_t)(dot - base));
}

static int add_unique(json_t *set, const char *name)
{
    return json_object_get(set, name) ? 0 : json_object_set_new(set, name, json_true());
}

/* A plain profile name from an on-profile expression that names exactly one ("prod"). */
static bool simple_profile(const char *expr)
{
    if (expr == NULL || *expr == '\0')
        return false;
    for (const char *c = expr; *c; c++)
        if (!(*c == '-' || *c == '_' || *c == '.' || (*c >= '0' && *c <= '9') ||
              (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z')))
            return false;
    return true;
}

static int collect_from(const snapshot *s, json_t *stems, json_t *doc_profiles)
{
    for (size_t i = 0; s && i < snapshot_file_count(s); i++) {
        const snapshot_file *f = snapshot_file_at(s, i);
        char *stem = stem_of(f->path);
        if (stem == NULL)
            continue;
        int error = add_unique(stems, stem);
        for (size_t d = 0; error == 0 && d < f->docs.count; d++)
            if (simple_profile(f->docs.docs[d].on_profile))
                error = add_unique(doc_profiles, f->docs.docs[d].on_profile);
        free(stem);
        if (error < 0)
            return ERR_NOMEM;
    }
    return 0;
}

/*
 * Applications are the stems with no shorter stem in front of a '-' ("orders-prod" is a profile
 * of "orders" when orders.yml exists anywhere); their profiles are what follows that '-', the
 * profiles of application-*.yml, single-name on-profile documents, and "default".
 */
json_t *diff_named_pairs(const snapshot *a, const snapshot *b)
{
    json_t *stems = json_object(), *doc_profiles = json_object(), *shared = json_object();
    json_t *apps = json_object(), *pairs = NULL;
    const char *stem;
    json_t *unused;
    if (stems == NULL || doc_profiles == NULL || shared == NULL || apps == NULL ||
        collect_from(a, stems, doc_profiles) < 0 || collect_from(b, stems, doc_profiles) < 0)
        goto out;
    if (add_unique(shared, "default") < 0)
        goto out;
    json_object_foreach(doc_profiles, stem, unused)
    {
        if (add_unique(shared, stem) < 0)
            goto out;
    }
    json_object_foreach(stems, stem, unused)
    {
        if (strncmp(stem, "application-", 12) == 0) {
            if (add_unique(shared, stem + 12) < 0)
                goto out;
            continue;
        }
        if (strcmp(stem, "application") == 0)
            continue;
        /* The shortest prefix before a '-' that is a stem of its own is the application. */
        const char *app_end = NULL;
        for (const char *dash = strchr(stem, '-'); dash && !app_end; dash = strchr(dash + 1, '-')) {
            char *prefix = strndup(stem, (size_t)(dash - stem));
            if (prefix == NULL)
                goto out;
            if (json_object_get(stems, prefix) != NULL)
                app_end = dash;
            free(prefix);
        }
        char *app = app_end ? strndup(stem, (size_t)(app_end - stem)) : strdup(stem);
        json_t *profiles = app ? json_object_get(apps, app) : NULL;
        if (app != NULL && profiles == NULL &&
            json_object_set_new(apps, app, profiles = json_object()) < 0)
            profiles = NULL;
        int error = (app == NULL || profiles == NULL)                ? -1
                    : app_end != NULL ? add_unique(profiles, app_end + 1)
                                      : 0;
        free(app);
        if (error < 0)
            goto out;
    }
    if ((pairs = json_array()) == NULL)
        goto out;
    json_t *own;
    json_object_foreach(apps, stem, own)
    {
        const char *profile;
        json_object_foreach(shared, profile, unused)
        {
            if (add_unique(own, profile) < 0)
                goto fail;
        }
        json_object_foreach(own, profile, unused)
        {
            if (json_array_append_new(pairs, json_pack("{s:s, s:s}", "application", stem,
                                                       "profile", profile)) < 0)
                goto fail;
        }
    }
    goto out;
fail:
    json_decref(pairs);
    pairs = NULL;
out:
    json_decref(stems);
    json_decref(doc_profiles);
    json_decref(shared);
    json_decref(apps);
    return pairs;
}

/* ---- whole jobs ---------------------------------------------------------------------------- */

int diff_environment(json_t **out, const diff_job *job, const char *applications,
                     const char *profiles)
{
    environment a = {0}, b = {0};
    env_query q = {.applications = applications, .profiles = profiles, .decrypt = job->decrypt};
    int error = environment_compose_snapshot(&a, job->from, &q);
    if (error == 0)
        error = environment_compose_snapshot(&b, job->to, &q);
    if (error == 0)
        error = environment_diff(out, &a, &b, &job->opts);
    environment_dispose(&a);
    environment_dispose(&b);
    return error;
}

int diff_repository(json_t **out, const diff_job *job)
{
    int error = ERR_NOMEM;
    json_t *pairs = diff_named_pairs(job->from->snapshot, job->to->snapshot);
    json_t *changed = json_array(), *result = NULL;
    *out = NULL;
    if (pairs == NULL || changed == NULL)
        goto out;
    if (json_array_size(pairs) > DIFF_MAX_PAIRS) {
        error = err_set(ERR_TOO_LARGE, "the repository names %zu (application, profile) pairs; "
                                       "at most %d are compared at once",
                        json_array_size(pairs), DIFF_MAX_PAIRS);
        goto out;
    }
    size_t i;
    json_t *pair;
    json_array_foreach(pairs, i, pair)
    {
        const char *app = json_string_value(json_object_get(pair, "application"));
        const char *profile = json_string_value(json_object_get(pair, "profile"));
        json_t *diff = NULL;
        if (job->may_read != NULL && !job->may_read(job->caller, app))
            continue;
        if ((error = diff_environment(&diff, job, app, profile)) < 0)
            goto out;
        error = 0;
        if (!environment_diff_is_empty(diff) &&
            json_array_append_new(changed, json_pack("{s:s, s:s, s:O}", "application", app,
                                                     "profile", profile, "counts",
                                                     json_object_get(diff, "counts"))) < 0)
            error = ERR_NOMEM;
        json_decref(diff);
        if (error < 0)
            goto out;
    }
    result = json_pack("{s:s, s:s, s:O}", "fromVersion", snapshot_commit(job->from->snapshot),
                       "toVersion", snapshot_commit(job->to->snapshot), "changed", changed);
    error = result ? 0 : ERR_NOMEM;
    *out = result;
out:
    json_decref(pairs);
    json_decref(changed);
    return error;
}
