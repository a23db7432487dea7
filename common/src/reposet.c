/*
 * reposet — reading the `repos:` section and matching requests to it (see reposet.h).
 */
#include "reposet.h"

#include "err.h"

#include "scalar.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "repos."
#define PREFIX_LEN 6
#define MAX_PATTERNS 256
#define FIELD_MAX 4096

static const char *const fields[] = {"pattern",         "uri",         "search-paths",
                                     "default-label",   "refresh-interval",
                                     "git-ca-file",     "git-proxy",   "git-known-hosts",
                                     "git-ssh-key-file", NULL};

bool reposet_is_key(const char *key)
{
    return strncmp(key, PREFIX, PREFIX_LEN) == 0 || strcmp(key, "repos") == 0;
}

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static int fail(const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    return err_set(ERR_CONFIG, "%s", message);
}

static void free_list(char **list)
{
    for (size_t i = 0; list != NULL && list[i] != NULL; i++)
        free(list[i]);
    free(list);
}

static void spec_dispose(repo_spec *s)
{
    free(s->name);
    free_list(s->patterns);
    free_list(s->expanded);
    free(s->uri);
    free(s->search_paths);
    free(s->default_label);
    free(s->git_ca_file);
    free(s->git_proxy);
    free(s->git_known_hosts);
    free(s->git_ssh_key_file);
}

void reposet_dispose(repo_specs *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->count; i++)
        spec_dispose(&s->items[i]);
    free(s->items);
    s->items = NULL;
    s->count = 0;
}

static size_t list_len(char **list)
{
    size_t n = 0;
    while (list != NULL && list[n] != NULL)
        n++;
    return n;
}

static bool list_has(char **list, const char *item)
{
    for (size_t i = 0; list != NULL && list[i] != NULL; i++)
        if (strcmp(list[i], item) == 0)
            return true;
    return false;
}

/* Appends a copy of item (trimmed; empty ones are skipped); -1 when out of memory or full. */
static int list_add(char ***list, const char *item, size_t len)
{
    while (len > 0 && isspace((unsigned char)*item)) {
        item++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)item[len - 1]))
        len--;
    if (len == 0)
        return 0;
    size_t n = list_len(*list);
    if (n >= MAX_PATTERNS)
        return -1;
    char **grown = realloc(*list, (n + 2) * sizeof(*grown));
    if (grown == NULL)
        return -1;
    *list = grown;
    if ((grown[n] = strndup(item, len)) == NULL) {
        grown[n] = NULL;
        return -1;
    }
    grown[n + 1] = NULL;
    return 0;
}

/* "payments*, billing-x" -> two items, as Spring's binder splits a String[] property. */
static int list_add_split(char ***list, const char *text)
{
    for (const char *p = text;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (list_add(list, p, len) < 0)
            return -1;
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

/* Spring's PatternMatchingJGitEnvironmentRepository.setPattern. */
static int expand_patterns(repo_spec *s)
{
    char **expanded = NULL, **others = NULL;
    char buf[FIELD_MAX + 8];
    int error = 0;
    for (size_t i = 0; error == 0 && s->patterns[i] != NULL; i++) {
        const char *p = s->patterns[i];
        if (strchr(p, '/') == NULL) {
            snprintf(buf, sizeof(buf), "%s/*", p);
            if (!list_has(expanded, buf))
                error = list_add(&expanded, buf, strlen(buf));
        }
        if (error == 0 && p[strlen(p) - 1] != '*') {
            snprintf(buf, sizeof(buf), "%s,*", p);
            if (!list_has(others, buf))
                error = list_add(&others, buf, strlen(buf));
        }
        if (error == 0 && !list_has(expanded, p))
            error = list_add(&expanded, p, strlen(p));
    }
    for (size_t i = 0; error == 0 && others != NULL && others[i] != NULL; i++)
        if (!list_has(expanded, others[i]))
            error = list_add(&expanded, others[i], strlen(others[i]));
    free_list(others);
    if (error < 0) {
        free_list(expanded);
        return -1;
    }
    s->expanded = expanded;
    return 0;
}

static repo_spec *find_or_add(repo_specs *out, const char *name, size_t len)
{
    for (size_t i = 0; i < out->count; i++)
        if (strlen(out->items[i].name) == len && strncmp(out->items[i].name, name, len) == 0)
            return &out->items[i];
    repo_spec *grown = realloc(out->items, (out->count + 1) * sizeof(*grown));
    if (grown == NULL)
        return NULL;
    out->items = grown;
    repo_spec *s = &grown[out->count];
    memset(s, 0, sizeof(*s));
    s->refresh_interval = -1;
    if ((s->name = strndup(name, len)) == NULL)
        return NULL;
    out->count++;
    return s;
}

static bool valid_name(const char *name, size_t len)
{
    if (len == 0 || len > REPOSET_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)name[i]) && name[i] != '-' && name[i] != '_')
            return false;
    return true;
}

static int set_once(char **field, const char *text, const char *key)
{
    if (*field != NULL)
        return fail("%s: given twice", key);
    if ((*field = strdup(text)) == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    return 0;
}

/* Joins a list field's items with commas, as the server's --search-paths reads them. */
static int join(char **field, const char *text)
{
    size_t old = *field ? strlen(*field) : 0, add = strlen(text);
    char *grown = realloc(*field, old + add + 2);
    if (grown == NULL)
        return -1;
    if (old > 0)
        grown[old++] = ',';
    memcpy(grown + old, text, add + 1);
    *field = grown;
    return 0;
}

static int apply_field(repo_spec *s, const char *key, const char *field, size_t flen,
                       bool item, const char *text)
{
    if (strlen(text) > FIELD_MAX)
        return fail("%s: longer than %d bytes", key, FIELD_MAX);
    if (flen == 7 && strncmp(field, "pattern", 7) == 0) {
        if (list_add_split(&s->patterns, text) < 0)
            return fail("%s: more than %d patterns", key, MAX_PATTERNS);
        return 0;
    }
    if (flen == 12 && strncmp(field, "search-paths", 12) == 0) {
        if (!item && s->search_paths != NULL)
            return fail("%s: given twice", key);
        return join(&s->search_paths, text) < 0 ? err_set(ERR_NOMEM, "out of memory") : 0;
    }
    if (item)
        return fail("%s: takes one value, not a list", key);
    if (flen == 3 && strncmp(field, "uri", 3) == 0) {
        if (text[0] == '\0')
            return fail("%s: empty", key);
        return set_once(&s->uri, text, key);
    }
    struct {
        const char *name;
        char **field;
    } transport[] = {{"git-ca-file", &s->git_ca_file},
                     {"git-proxy", &s->git_proxy},
                     {"git-known-hosts", &s->git_known_hosts},
                     {"git-ssh-key-file", &s->git_ssh_key_file}};
    for (size_t i = 0; i < sizeof(transport) / sizeof(transport[0]); i++)
        if (flen == strlen(transport[i].name) && strncmp(field, transport[i].name, flen) == 0)
            return text[0] == '\0' ? 0 : set_once(transport[i].field, text, key);
    if (flen == 13 && strncmp(field, "default-label", 13) == 0)
        return text[0] == '\0' ? 0 : set_once(&s->default_label, text, key);
    if (flen == 16 && strncmp(field, "refresh-interval", 16) == 0) {
        char *end = NULL;
        unsigned long v = strtoul(text, &end, 10);
        if (text[0] < '0' || text[0] > '9' || *end != '\0' || v > 86400)
            return fail("%s: seconds from 0 to 86400 expected", key);
        s->refresh_interval = (long)v;
        return 0;
    }
    char known[256] = "";
    for (size_t i = 0; fields[i] != NULL; i++) {
        strncat(known, i ? ", " : "", sizeof(known) - strlen(known) - 1);
        strncat(known, fields[i], sizeof(known) - strlen(known) - 1);
    }
    return fail("%s: unknown field (known: %s)", key, known);
}

int reposet_parse(repo_specs *out, const json_t *props, const json_t *origins,
                  const char **origin)
{
    const char *key;
    json_t *value;
    memset(out, 0, sizeof(*out));
    if (origin != NULL)
        *origin = NULL;
    json_object_foreach((json_t *)(uintptr_t)props, key, value)
    {
        if (!reposet_is_key(key))
            continue;
        if (origin != NULL)
            *origin = origins ? json_string_value(json_object_get(origins, key)) : NULL;
        if (strcmp(key, "repos") == 0) {
            /* `repos:` with nothing under it */
            if (json_is_null(value) || (json_is_string(value) && json_string_length(value) == 0))
                continue;
            goto bad_shape;
        }
        const char *name = key + PREFIX_LEN;
        const char *dot = strchr(name, '.');
        if (dot == NULL || !valid_name(name, (size_t)(dot - name))) {
            size_t nlen = dot ? (size_t)(dot - name) : strcspn(name, "[");
            if (!valid_name(name, nlen)) {
                fail("%s: a repository name is 1 to %d letters, digits, '-' or '_'", key,
                     REPOSET_NAME_MAX);
                goto bad;
            }
            goto bad_shape;
        }
        const char *field = dot + 1;
        const char *bracket = strchr(field, '[');
        size_t flen = bracket ? (size_t)(bracket - field) : strlen(field);
        if (bracket != NULL) {
            const char *close = strchr(bracket, ']');
            if (close == NULL || close[1] != '\0' || close == bracket + 1)
                goto bad_shape;
            for (const char *d = bracket + 1; d < close; d++)
                if (*d < '0' || *d > '9')
                    goto bad_shape;
        }
        if (memchr(field, '.', flen) != NULL)
            goto bad_shape;
        repo_spec *s = find_or_add(out, name, (size_t)(dot - name));
        if (s == NULL) {
            err_set(ERR_NOMEM, "out of memory");
            goto bad;
        }
        const char *o = origins ? json_string_value(json_object_get(origins, key)) : NULL;
        if (s->line == 0 && o != NULL)
            s->line = (unsigned)strtoul(o, NULL, 10);
        char *text = scalar_to_text(value);
        if (text == NULL) {
            err_set(ERR_NOMEM, "out of memory");
            goto bad;
        }
        int error = apply_field(s, key, field, flen, bracket != NULL, text);
        free(text);
        if (error < 0)
            goto bad;
    }
    for (size_t i = 0; i < out->count; i++) {
        repo_spec *s = &out->items[i];
        if (origin != NULL)
            *origin = NULL;
        if (s->uri == NULL) {
            fail("repos.%s: no uri", s->name);
            goto bad;
        }
        if (s->patterns == NULL) {
            fail("repos.%s: no pattern (it would never serve anything)", s->name);
            goto bad;
        }
        if (expand_patterns(s) < 0) {
            err_set(ERR_NOMEM, "out of memory");
            goto bad;
        }
    }
    return 0;
bad_shape:
    fail("%s: expected repos.NAME.FIELD (a map of repositories)", key);
bad:
    reposet_dispose(out);
    return err_last_code();
}

bool reposet_simple_match(const char *pattern, const char *text)
{
    /* Iterative glob with backtracking to the last star: linear in practice, never recursive. */
    const char *star = NULL, *resume = NULL;
    while (*text != '\0') {
        if (*pattern == '*') {
            star = pattern++;
            resume = text;
        } else if (*pattern == *text) {
            pattern++;
            text++;
        } else if (star != NULL) {
            pattern = star + 1;
            text = ++resume;
        } else {
            return false;
        }
    }
    while (*pattern == '*')
        pattern++;
    return *pattern == '\0';
}

static bool any_match(char **patterns, const char *text)
{
    for (size_t i = 0; patterns != NULL && patterns[i] != NULL; i++)
        if (reposet_simple_match(patterns[i], text))
            return true;
    return false;
}

/*
 * Spring asks matches() (some single profile of the list matches, "app/p") and then the
 * repository's own findOne (the whole list matches, "app/p1,p2"); both must hold.
 */
static bool spec_matches(const repo_spec *s, const char *applications, const char *profiles)
{
    size_t alen = strlen(applications);
    size_t plen = strlen(profiles);
    char *text = malloc(alen + plen + 2);
    if (text == NULL)
        return false;
    memcpy(text, applications, alen);
    text[alen] = '/';
    bool one = false;
    for (const char *p = profiles;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        memcpy(text + alen + 1, p, len);
        text[alen + 1 + len] = '\0';
        if (len > 0 && any_match(s->expanded, text)) {
            one = true;
            break;
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    bool all = false;
    if (one) {
        memcpy(text + alen + 1, profiles, plen + 1);
        all = any_match(s->expanded, text);
    }
    free(text);
    return one && all;
}

int reposet_match(const repo_specs *s, const char *applications, const char *profiles)
{
    if (s == NULL || applications == NULL)
        return -1;
    if (profiles == NULL || profiles[0] == '\0')
        profiles = "default";
    for (size_t i = 0; i < s->count; i++)
        if (spec_matches(&s->items[i], applications, profiles))
            return (int)i;
    return -1;
}

bool reposet_is_template(const char *uri)
{
    return uri != NULL && (strstr(uri, "{application}") != NULL ||
                           strstr(uri, "{profile}") != NULL || strstr(uri, "{label}") != NULL);
}

char *reposet_expand(const char *uri, const char *application, const char *profile,
                     const char *label)
{
    static const char *const names[] = {"{application}", "{profile}", "{label}"};
    const char *values[] = {application ? application : "", profile ? profile : "",
                            label ? label : ""};
    size_t cap = strlen(uri) + 1, len = 0;
    for (size_t i = 0; i < 3; i++)
        for (const char *p = strstr(uri, names[i]); p; p = strstr(p + 1, names[i]))
            cap += strlen(values[i]);
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    for (const char *p = uri; *p != '\0';) {
        size_t k = 0;
        while (k < 3 && strncmp(p, names[k], strlen(names[k])) != 0)
            k++;
        if (k < 3) {
            memcpy(out + len, values[k], strlen(values[k]));
            len += strlen(values[k]);
            p += strlen(names[k]);
        } else {
            out[len++] = *p++;
        }
    }
    out[len] = '\0';
    return out;
}
