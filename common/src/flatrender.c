/*
 * flatrender — a flat property map rendered as Spring's merged documents (see flatrender.h).
 *
 * Order: keys without `[` come first in map order, then keys with `[` grouped by the text before
 * their first `[` (groups in order of first appearance), which is how Spring's merge lays a
 * merged map out ("lists come after scalars"). On a map that is already in that order this
 * changes nothing.
 *
 * Key grammar (what the tree is rebuilt from): names separated by `.`; `[digits]` right after a
 * name or another index is a list index; a bracket whose content is not all digits (`b[hello]`,
 * `level[org.foo]`) is part of the name, dots inside it included, so the tree re-flattens to the
 * same keys. Malformed, and refused: an empty name (`.a`, `a..b`, `a.`, `a.[0]`, `[0]` at the
 * root), an unclosed `[`, empty `[]`, a signed index, text right after an index (`a[0]b`), an
 * index above FLATRENDER_MAX_INDEX, more than FLATRENDER_MAX_SEGMENTS levels (which bounds the
 * recursion of the writers), or lists padded beyond a budget proportional to the number of keys
 * (`a[99999]` alone would otherwise allocate a huge list of nulls).
 *
 * Conflicts: where a key needs to descend through a scalar or through the wrong kind of
 * container, the rest of the key is kept as one compound key in the map at that point
 * (`org: {springframework: WARN, springframework.cloud: ERROR}`); a leaf arriving where a map
 * already is takes the map's place and the map's leaves become compound keys beside it, so the
 * result does not depend on key order. Inside a list there is no room for a compound key, so a
 * conflict there (`a[0]=x` with `a[0].b=y`) is an error.
 *
 * YAML is written here, not with libyaml (the only module allowed <yaml.h> is the parser):
 * SnakeYAML's block style as Spring prints it — indent 2, sequences at their key's indentation,
 * scalars plain unless plain would be misread (as a bool, number, null or timestamp by the YAML
 * 1.1 rules SnakeYAML uses, or because of indicators and surrounding spaces), then single-
 * quoted; multi-line text as a literal block where that is exact, double-quoted with escapes
 * otherwise. Unlike SnakeYAML, long lines are never folded and control characters are escaped
 * instead of turning the value into !!binary. A map that is only `document` (a file whose root
 * was a list or a scalar) is printed as that root, as Spring does.
 *
 * This module does not merge sources, drop keys such as spring.profiles, or resolve
 * placeholders: callers hand it the final flat map.
 */
#include "flatrender.h"

#include "scalar.h"

#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLATRENDER_MAX_INDEX 100000u
/* Names and indexes in one key: bounds the recursion of every writer below. */
#define FLATRENDER_MAX_SEGMENTS 256u
/* Padding budget: list slots allowed in the whole tree, per key, plus a floor. */
#define SLOTS_PER_KEY 8u
#define SLOTS_FLOOR 1024u
/* Longest key YAML allows as an implicit key is 1024 characters; longer ones use `? key`. */
#define YAML_MAX_SIMPLE_KEY 1000u
/* SnakeYAML's resolver does not try its patterns on longer scalars: they stay strings. */
#define RESOLVE_MAX_LEN 1024u

/* ---- text buffer -------------------------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (grown == NULL) {
            b->oom = true;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_char(sbuf *b, char c)
{
    sb_add(b, &c, 1);
}

static void sb_spaces(sbuf *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sb_char(b, ' ');
}

/* Hands the text to out (an empty string rather than NULL), or fails on OOM. */
static int sb_finish(sbuf *b, flatrender_buf *out, char *errmsg, size_t errsize)
{
    if (!b->oom && b->data == NULL)
        sb_add(b, "", 0);
    if (b->oom) {
        free(b->data);
        snprintf(errmsg, errsize, "out of memory");
        return -1;
    }
    out->data = b->data;
    out->len = b->len;
    return 0;
}

static void set_errmsg(char *errmsg, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_errmsg(char *errmsg, size_t errsize, const char *fmt, ...)
{
    if (errmsg == NULL || errsize == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, errsize, fmt, ap);
    va_end(ap);
}

/* jansson's iteration macros take a mutable object; reading through them changes nothing. */
static json_t *unconst(const json_t *json)
{
    union {
        const json_t *c;
        json_t *m;
    } u = {json};
    return u.m;
}

/* ---- order -------------------------------------------------------------------------------- */

typedef struct {
    const char *key;
    json_t *value;
} entry;

/* The map's entries in Spring's merged order (see the top of this file). NULL on OOM. */
static entry *ordered_entries(const json_t *flat, size_t *count)
{
    size_t n = json_object_size(flat);
    entry *all = calloc(n ? n : 1, sizeof(*all));
    entry *out = calloc(n ? n : 1, sizeof(*out));
    size_t *group_of = calloc(n ? n : 1, sizeof(*group_of));
    size_t *group_start = NULL;
    json_t *groups = json_object();
    size_t i = 0, plain = 0, ngroups = 0;
    const char *key;
    json_t *value;
    bool ok = all && out && group_of && groups;

    json_object_foreach(unconst(flat), key, value)
    {
        if (!ok)
            break;
        all[i].key = key;
        all[i].value = value;
        const char *bracket = strchr(key, '[');
        if (bracket == NULL) {
            out[plain++] = all[i];
        } else {
            char *prefix = strndup(key, (size_t)(bracket - key));
            json_t *id = prefix ? json_object_get(groups, prefix) : NULL;
            if (prefix != NULL && id == NULL) {
                id = json_integer((json_int_t)ngroups++);
                if (id == NULL || json_object_set_new(groups, prefix, id) != 0)
                    ok = false;
            }
            ok = ok && prefix != NULL;
            if (ok)
                group_of[i] = (size_t)json_integer_value(id) + 1; /* 0 means no bracket */
            free(prefix);
        }
        i++;
    }
    if (ok) {
        /* Counting sort of the bracketed keys by group, stable within a group. */
        group_start = calloc(ngroups + 2, sizeof(*group_start));
        ok = group_start != NULL;
    }
    if (ok) {
        for (size_t k = 0; k < n; k++)
            if (group_of[k] > 0)
                group_start[group_of[k] + 1]++;
        group_start[1] = plain;
        for (size_t g = 2; g < ngroups + 2; g++)
            group_start[g] += group_start[g - 1];
        for (size_t k = 0; k < n; k++)
            if (group_of[k] > 0)
                out[group_start[group_of[k]]++] = all[k];
        *count = n;
    }
    free(all);
    free(group_of);
    free(group_start);
    json_decref(groups);
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

/* ---- tree --------------------------------------------------------------------------------- */

typedef struct {
    bool is_index;
    size_t offset; /* where the segment starts in the key (the name, or the `[`) */
    size_t len;    /* of the name */
    size_t index;
} segment;

typedef struct {
    size_t slots;     /* list slots created so far */
    size_t max_slots; /* budget */
    char *errmsg;
    size_t errsize;
} builder;

static bool all_digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static int key_error(builder *b, const char *key, const char *why)
{
    set_errmsg(b->errmsg, b->errsize, "malformed key '%.100s%s': %s", key,
               strlen(key) > 100 ? "..." : "", why);
    return -1;
}

/* Splits key into segments (caller frees *out). -1 with a message when the key is malformed. */
static int parse_key(builder *b, const char *key, segment **out, size_t *count)
{
    size_t klen = strlen(key);
    segment *segs = malloc((klen / 2 + 2) * sizeof(*segs));
    size_t n = 0;
    size_t p = 0;
    if (segs == NULL) {
        set_errmsg(b->errmsg, b->errsize, "out of memory");
        return -1;
    }
    for (;;) {
        size_t start = p;
        while (key[p] != '\0' && key[p] != '.') {
            if (key[p] != '[') {
                p++;
                continue;
            }
            const char *close = strchr(key + p + 1, ']');
            if (close == NULL)
                goto unclosed;
            size_t content = (size_t)(close - (key + p + 1));
            if (content == 0)
                goto empty_brackets;
            if (all_digits(key + p + 1, content))
                break; /* an index ends the name */
            if ((key[p + 1] == '-' || key[p + 1] == '+') && all_digits(key + p + 2, content - 1))
                goto bad_index;
            p += content + 2; /* a bracketed name part, dots and all */
        }
        if (p == start)
            goto empty_name;
        segs[n++] = (segment){false, start, p - start, 0};
        while (key[p] == '[') {
            const char *close = strchr(key + p + 1, ']');
            if (close == NULL)
                goto unclosed;
            size_t content = (size_t)(close - (key + p + 1));
            if (content == 0)
                goto empty_brackets;
            if (!all_digits(key + p + 1, content))
                goto bad_index;
            size_t index = 0;
            for (size_t i = 0; i < content; i++) {
                index = index * 10 + (size_t)(key[p + 1 + i] - '0');
                if (index > FLATRENDER_MAX_INDEX) {
                    free(segs);
                    set_errmsg(b->errmsg, b->errsize, "list index in '%.100s' above %u", key,
                               FLATRENDER_MAX_INDEX);
                    return -1;
                }
            }
            segs[n++] = (segment){true, p, 0, index};
            p += content + 2;
            if (key[p] != '\0' && key[p] != '.' && key[p] != '[')
                goto after_index;
        }
        if (n > FLATRENDER_MAX_SEGMENTS) {
            free(segs);
            set_errmsg(b->errmsg, b->errsize, "key '%.100s...' nested deeper than %u levels", key,
                       FLATRENDER_MAX_SEGMENTS);
            return -1;
        }
        if (key[p] == '\0')
            break;
        p++; /* the dot */
    }
    *out = segs;
    *count = n;
    return 0;

unclosed:
    free(segs);
    return key_error(b, key, "'[' without ']'");
empty_brackets:
    free(segs);
    return key_error(b, key, "empty '[]'");
bad_index:
    free(segs);
    return key_error(b, key, "list index is not a number");
empty_name:
    free(segs);
    return key_error(b, key, "empty name");
after_index:
    free(segs);
    return key_error(b, key, "text after a list index");
}

static int set_or_oom(builder *b, int rc)
{
    if (rc != 0)
        set_errmsg(b->errmsg, b->errsize, "out of memory");
    return rc != 0 ? -1 : 0;
}

/* Leaves of node as (compound key, value) pairs, prefix included; list padding skipped. */
static int collect_leaves(json_t *pairs, json_t *node, const char *prefix)
{
    int rc = 0;
    if (json_is_object(node)) {
        const char *k;
        json_t *v;
        json_object_foreach(node, k, v)
        {
            char *child = NULL;
            if (asprintf(&child, "%s.%s", prefix, k) < 0)
                return -1;
            rc = collect_leaves(pairs, v, child);
            free(child);
            if (rc < 0)
                return -1;
        }
    } else if (json_is_array(node)) {
        for (size_t i = 0; i < json_array_size(node); i++) {
            json_t *v = json_array_get(node, i);
            if (json_is_null(v))
                continue;
            char *child = NULL;
            if (asprintf(&child, "%s[%zu]", prefix, i) < 0)
                return -1;
            rc = collect_leaves(pairs, v, child);
            free(child);
            if (rc < 0)
                return -1;
        }
    } else {
        rc = json_object_set(pairs, prefix, node);
    }
    return rc;
}

/* A leaf lands where a container already is: the leaf takes its place, its leaves go beside. */
static int demote(builder *b, json_t *map, const char *name, json_t *value)
{
    json_t *pairs = json_object();
    json_t *existing = json_incref(json_object_get(map, name));
    int error = -1;
    if (pairs == NULL || collect_leaves(pairs, existing, name) < 0 ||
        json_object_set(map, name, value) != 0)
        goto out;
    const char *k;
    json_t *v;
    json_object_foreach(pairs, k, v)
    {
        if (json_object_set(map, k, v) != 0)
            goto out;
    }
    error = 0;
out:
    json_decref(existing);
    json_decref(pairs);
    if (error < 0)
        set_errmsg(b->errmsg, b->errsize, "out of memory");
    return error;
}

static json_t *new_container(const segment *next)
{
    return next->is_index ? json_array() : json_object();
}

static bool fits(const json_t *node, const segment *next)
{
    return next->is_index ? json_is_array(node) : json_is_object(node);
}

static int insert(builder *b, json_t *root, const char *key, json_t *value)
{
    segment *segs = NULL;
    size_t n = 0;
    char *name = NULL;
    int error = parse_key(b, key, &segs, &n);
    if (error < 0)
        return -1;
    if (segs[0].is_index) {
        free(segs);
        return key_error(b, key, "empty name");
    }

    json_t *container = root;
    for (size_t i = 0; i < n; i++) {
        const segment *seg = &segs[i];
        bool last = i + 1 == n;
        json_t *existing;
        if (!seg->is_index) {
            free(name);
            name = strndup(key + seg->offset, seg->len);
            if (name == NULL) {
                error = set_or_oom(b, -1);
                goto out;
            }
            existing = json_object_get(container, name);
            if (last) {
                if (json_is_object(existing) || json_is_array(existing))
                    error = demote(b, container, name, value);
                else
                    error = set_or_oom(b, json_object_set(container, name, value));
                goto out;
            }
            if (existing != NULL && !fits(existing, &segs[i + 1])) {
                error = set_or_oom(b, json_object_set(container, key + seg->offset, value));
                goto out;
            }
            if (existing == NULL) {
                existing = new_container(&segs[i + 1]);
                if (set_or_oom(b, json_object_set_new(container, name, existing)) < 0) {
                    error = -1;
                    goto out;
                }
            }
            container = existing;
            continue;
        }

        /* An index into the list container. */
        while (json_array_size(container) <= seg->index) {
            if (++b->slots > b->max_slots) {
                set_errmsg(b->errmsg, b->errsize,
                           "lists too sparse at '%.100s' (%zu slots for the whole document)", key,
                           b->max_slots);
                error = -1;
                goto out;
            }
            if (set_or_oom(b, json_array_append(container, json_null())) < 0) {
                error = -1;
                goto out;
            }
        }
        existing = json_array_get(container, seg->index);
        if (last) {
            if (json_is_object(existing) || json_is_array(existing)) {
                error = key_error(b, key, "a list element is both a value and a container");
                goto out;
            }
            error = set_or_oom(b, json_array_set(container, seg->index, value));
            goto out;
        }
        if (json_is_null(existing)) {
            existing = new_container(&segs[i + 1]);
            if (set_or_oom(b, json_array_set_new(container, seg->index, existing)) < 0) {
                error = -1;
                goto out;
            }
        } else if (!fits(existing, &segs[i + 1])) {
            error = key_error(b, key, "a list element is both a value and a container");
            goto out;
        }
        container = existing;
    }
out:
    free(name);
    free(segs);
    return error;
}

json_t *flatrender_tree(const json_t *flat, char *errmsg, size_t errsize)
{
    size_t count = 0;
    entry *entries = NULL;
    json_t *root = json_object();
    builder b = {0, 0, errmsg, errsize};
    if (errmsg != NULL && errsize > 0)
        errmsg[0] = '\0';
    if (!json_is_object(flat)) {
        set_errmsg(errmsg, errsize, "not a property map");
        goto fail;
    }
    entries = ordered_entries(flat, &count);
    if (root == NULL || entries == NULL) {
        set_errmsg(errmsg, errsize, "out of memory");
        goto fail;
    }
    b.max_slots = count * SLOTS_PER_KEY + SLOTS_FLOOR;
    for (size_t i = 0; i < count; i++)
        if (insert(&b, root, entries[i].key, entries[i].value) < 0)
            goto fail;
    free(entries);
    return root;
fail:
    free(entries);
    json_decref(root);
    return NULL;
}

/* ---- scalar text -------------------------------------------------------------------------- */

/* Text of a scalar the way Spring's String.valueOf prints it. NULL on OOM. */
static char *scalar_text(const json_t *value, size_t *len)
{
    if (json_is_string(value)) {
        size_t n = json_string_length(value);
        char *copy = malloc(n + 1);
        if (copy != NULL) {
            memcpy(copy, json_string_value(value), n);
            copy[n] = '\0';
            *len = n;
        }
        return copy;
    }
    char *text = scalar_to_text(value);
    if (text != NULL)
        *len = strlen(text);
    return text;
}

/* ---- YAML scalars ------------------------------------------------------------------------- */

enum { RX_BOOL, RX_INT, RX_FLOAT, RX_TIMESTAMP, RX_COUNT };

/* SnakeYAML's implicit resolvers (YAML 1.1 as it implements them), as POSIX EREs. */
static const char *const resolver_patterns[RX_COUNT] = {
    "^(yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$",
    "^([-+]?0b_*[0-1][0-1_]*|[-+]?0_*[0-7][0-7_]*|[-+]?(0|[1-9][0-9_]*)"
    "|[-+]?0x_*[0-9a-fA-F][0-9a-fA-F_]*|[-+]?[1-9][0-9_]*(:[0-5]?[0-9])+)$",
    "^([-+]?[0-9][0-9_]*\\.[0-9_]*([eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
    "|[-+]?\\.[0-9_]+([eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\\.[0-9_]*"
    "|[-+]?\\.(inf|Inf|INF)|\\.(nan|NaN|NAN))$",
    "^([0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?"
    "([Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](\\.[0-9]*)?([ \t]*(Z|[-+][0-9][0-9]?(:[0-9]"
    "[0-9])?))?)$",
};

static regex_t resolvers[RX_COUNT];
static bool resolvers_ok;
static pthread_once_t resolvers_once = PTHREAD_ONCE_INIT;

static void compile_resolvers(void)
{
    resolvers_ok = true;
    for (int i = 0; i < RX_COUNT; i++)
        if (regcomp(&resolvers[i], resolver_patterns[i], REG_EXTENDED | REG_NOSUB) != 0)
            resolvers_ok = false;
}

static bool rx_match(int which, const char *s)
{
    return regexec(&resolvers[which], s, 0, NULL, 0) == 0;
}

/* Would a YAML 1.1 reader (SnakeYAML's resolver) take this plain scalar for a non-string? */
static bool resolves_to_other_type(const char *s, size_t len)
{
    if (len == 0)
        return true; /* null */
    if (len > RESOLVE_MAX_LEN || strlen(s) != len)
        return false;
    char c = s[0];
    if (strchr("yYnNtTfFoO", c) && len <= 10 && rx_match(RX_BOOL, s))
        return true;
    if (strchr("-+0123456789", c) && rx_match(RX_INT, s))
        return true;
    if (c == '0' && len > 2 && s[1] == 'o' && strspn(s + 2, "01234567") == len - 2)
        return true; /* YAML 1.2 octal: SnakeYAML leaves it plain, 1.2 readers would not */
    if (strchr("-+0123456789.", c) && rx_match(RX_FLOAT, s))
        return true;
    if ((c == '<' && strcmp(s, "<<") == 0) || strcmp(s, "=") == 0)
        return true; /* a merge key; `=` is PyYAML's "value" tag, quoted to be safe */
    if (strchr("~nN", c) &&
        (!strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL")))
        return true;
    if (c >= '0' && c <= '9' && len <= 50 && rx_match(RX_TIMESTAMP, s))
        return true;
    return false;
}

/* Next code point of valid UTF-8 (jansson guarantees validity); advances *i. */
static uint32_t next_cp(const char *s, size_t len, size_t *i)
{
    const unsigned char *u = (const unsigned char *)s;
    uint32_t c = u[*i];
    size_t extra = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    if (extra > 0)
        c &= extra == 1 ? 0x1F : extra == 2 ? 0x0F : 0x07;
    (*i)++;
    for (size_t k = 0; k < extra && *i < len; k++)
        c = (c << 6) | (u[(*i)++] & 0x3F);
    return c;
}

static bool is_break(uint32_t c)
{
    return c == '\n' || c == 0x85 || c == 0x2028 || c == 0x2029;
}

static bool is_blank_or_nul(uint32_t c)
{
    return c == 0 || c == ' ' || c == '\t';
}

static bool is_printable_unicode(uint32_t c)
{
    return c == 0x85 || (c >= 0xA0 && c <= 0xD7FF) || (c >= 0xE000 && c <= 0xFFFD && c != 0xFEFF) ||
           (c >= 0x10000 && c <= 0x10FFFF);
}

typedef struct {
    bool multiline;
    bool other_breaks; /* NEL, LS or PS: never in a literal block here */
    bool allow_plain;  /* block context */
    bool allow_single;
    bool allow_block;
    bool needs_indicator; /* starts with a space or a break: literal would need |2 */
} analysis;

/* SnakeYAML's Emitter.analyzeScalar for the block context (flow style is never used). */
static analysis analyze(const char *s, size_t len)
{
    analysis a = {false, false, true, true, true, false};
    if (len == 0)
        return a;
    bool block_ind = false, special = false;
    bool leading_space = false, leading_break = false, trailing_space = false;
    bool trailing_break = false, break_space = false, space_break = false;
    bool leading_zero = false;

    if (len > 1 && s[0] == '0') {
        leading_zero = true;
        for (size_t i = 1; i < len; i++)
            if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
                leading_zero = false;
    }
    if (len >= 3 && (strncmp(s, "---", 3) == 0 || strncmp(s, "...", 3) == 0))
        block_ind = true;

    /* Decode once so "followed by whitespace" can look ahead. */
    size_t ncp = 0, i = 0;
    uint32_t *cps = malloc(len * sizeof(*cps));
    if (cps == NULL) {
        a.allow_plain = a.allow_single = a.allow_block = false; /* double quotes always work */
        return a;
    }
    while (i < len)
        cps[ncp++] = next_cp(s, len, &i);

    bool preceded_ws = true;
    bool followed_ws = ncp == 1 || is_blank_or_nul(cps[1]) || is_break(cps[1]);
    bool prev_space = false, prev_break = false;
    for (size_t k = 0; k < ncp; k++) {
        uint32_t c = cps[k];
        if (k == 0) {
            if (c < 0x80 && c != 0 && strchr("#,[]{}&*!|>'\"%@`", (int)c))
                block_ind = true;
            if ((c == '?' || c == ':') && followed_ws)
                block_ind = true;
            if (c == '-' && followed_ws)
                block_ind = true;
        } else {
            if (c == ':' && followed_ws)
                block_ind = true;
            if (c == '#' && preceded_ws)
                block_ind = true;
        }
        bool brk = is_break(c);
        if (brk) {
            a.multiline = true;
            if (c != '\n')
                a.other_breaks = true;
        }
        if (!(c == '\n' || (c >= 0x20 && c <= 0x7E)) && !is_printable_unicode(c))
            special = true;
        if (c == ' ') {
            if (k == 0)
                leading_space = true;
            if (k == ncp - 1)
                trailing_space = true;
            if (prev_break)
                break_space = true;
            prev_space = true;
            prev_break = false;
        } else if (brk) {
            if (k == 0)
                leading_break = true;
            if (k == ncp - 1)
                trailing_break = true;
            if (prev_space)
                space_break = true;
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = prev_break = false;
        }
        preceded_ws = is_blank_or_nul(c) || brk;
        followed_ws = k + 2 >= ncp || is_blank_or_nul(cps[k + 2]) || brk;
    }
    free(cps);

    if (leading_space || leading_break || trailing_space || trailing_break || leading_zero)
        a.allow_plain = false;
    if (trailing_space)
        a.allow_block = false;
    if (break_space)
        a.allow_plain = a.allow_single = false;
    if (space_break || special)
        a.allow_plain = a.allow_single = a.allow_block = false;
    if (block_ind)
        a.allow_plain = false;
    a.needs_indicator = leading_space || leading_break;
    return a;
}

typedef enum { STYLE_PLAIN, STYLE_SINGLE, STYLE_DOUBLE, STYLE_LITERAL } scalar_style;

static scalar_style choose_style(const char *s, size_t len, bool key, bool literal_ok)
{
    analysis a = analyze(s, len);
    bool other_type = resolves_to_other_type(s, len);
    if (key) {
        if (!other_type && len > 0 && !a.multiline && a.allow_plain)
            return STYLE_PLAIN;
        if (a.allow_single && !a.multiline)
            return STYLE_SINGLE;
        return STYLE_DOUBLE;
    }
    if (!a.multiline) {
        if (!other_type && a.allow_plain)
            return STYLE_PLAIN;
        return a.allow_single ? STYLE_SINGLE : STYLE_DOUBLE;
    }
    if (literal_ok && a.allow_block && !a.other_breaks && !a.needs_indicator)
        return STYLE_LITERAL;
    return STYLE_DOUBLE;
}

static void write_single(sbuf *b, const char *s, size_t len)
{
    sb_char(b, '\'');
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\'')
            sb_char(b, '\'');
        sb_char(b, s[i]);
    }
    sb_char(b, '\'');
}

/* The short escapes SnakeYAML uses in double-quoted scalars. */
static const struct {
    uint32_t cp;
    const char *text;
} yaml_escapes[] = {
    {0, "\\0"},     {0x07, "\\a"}, {0x08, "\\b"}, {'\t', "\\t"},   {'\n', "\\n"},
    {0x0B, "\\v"},  {0x0C, "\\f"}, {'\r', "\\r"}, {0x1B, "\\e"},   {'"', "\\\""},
    {'\\', "\\\\"}, {0x85, "\\N"}, {0xA0, "\\_"}, {0x2028, "\\L"}, {0x2029, "\\P"},
};

static void write_double(sbuf *b, const char *s, size_t len)
{
    sb_char(b, '"');
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        uint32_t c = next_cp(s, len, &i);
        const char *esc = NULL;
        for (size_t k = 0; k < sizeof(yaml_escapes) / sizeof(yaml_escapes[0]); k++)
            if (yaml_escapes[k].cp == c)
                esc = yaml_escapes[k].text;
        if (esc != NULL) {
            sb_str(b, esc);
        } else if ((c >= 0x20 && c <= 0x7E) || is_printable_unicode(c)) {
            sb_add(b, s + start, i - start);
        } else {
            char hex[16];
            if (c <= 0xFF)
                snprintf(hex, sizeof(hex), "\\x%02X", c);
            else if (c <= 0xFFFF)
                snprintf(hex, sizeof(hex), "\\u%04X", c);
            else
                snprintf(hex, sizeof(hex), "\\U%08X", c);
            sb_str(b, hex);
        }
    }
    sb_char(b, '"');
}

/* A literal block: `|`, `|-` or `|+`, then each line at indent (empty lines left empty). */
static void write_literal(sbuf *b, const char *s, size_t len, size_t indent)
{
    bool ends_break = s[len - 1] == '\n';
    bool keep = ends_break && len >= 2 && s[len - 2] == '\n';
    sb_str(b, ends_break ? (keep ? "|+" : "|") : "|-");
    sb_char(b, '\n');
    size_t end = ends_break ? len - 1 : len;
    size_t start = 0;
    for (;;) {
        const char *nl = memchr(s + start, '\n', end - start);
        size_t stop = nl ? (size_t)(nl - s) : end;
        if (stop > start) {
            sb_spaces(b, indent);
            sb_add(b, s + start, stop - start);
        }
        sb_char(b, '\n');
        if (nl == NULL)
            break;
        start = stop + 1;
    }
}

/* A scalar on one line, keys and values alike: plain, or quoted as `style` says. */
static void write_inline(sbuf *b, const char *s, size_t len, scalar_style style)
{
    if (style == STYLE_PLAIN)
        sb_add(b, s, len);
    else if (style == STYLE_SINGLE)
        write_single(b, s, len);
    else
        write_double(b, s, len);
}

/* A scalar as a value, ending its line. indent: where a literal block's lines go. */
static void write_value(sbuf *b, const json_t *value, size_t indent, bool literal_ok)
{
    if (json_is_null(value)) {
        sb_str(b, "null\n");
        return;
    }
    size_t len = 0;
    char *text = scalar_text(value, &len);
    if (text == NULL) {
        b->oom = true;
        return;
    }
    if (!json_is_string(value)) {
        sb_add(b, text, len); /* numbers and booleans read back as themselves */
        sb_char(b, '\n');
        free(text);
        return;
    }
    scalar_style style = choose_style(text, len, false, literal_ok);
    if (style == STYLE_LITERAL) {
        write_literal(b, text, len, indent);
    } else {
        write_inline(b, text, len, style);
        sb_char(b, '\n');
    }
    free(text);
}

static void write_key(sbuf *b, const char *key, size_t indent)
{
    size_t len = strlen(key);
    bool explicit_key = len > YAML_MAX_SIMPLE_KEY;
    if (explicit_key)
        sb_str(b, "? ");
    write_inline(b, key, len, choose_style(key, len, true, false));
    if (explicit_key) {
        sb_char(b, '\n');
        sb_spaces(b, indent);
    }
}

static void write_seq(sbuf *b, const json_t *list, size_t indent, bool first_inline);

static void write_map(sbuf *b, const json_t *map, size_t indent, bool first_inline)
{
    const char *key;
    json_t *value;
    bool first = true;
    json_object_foreach(unconst(map), key, value)
    {
        if (!(first && first_inline))
            sb_spaces(b, indent);
        first = false;
        write_key(b, key, indent);
        if (json_is_object(value) && json_object_size(value) > 0) {
            sb_str(b, ":\n");
            write_map(b, value, indent + 2, false);
        } else if (json_is_array(value) && json_array_size(value) > 0) {
            sb_str(b, ":\n");
            write_seq(b, value, indent, false);
        } else if (json_is_object(value)) {
            sb_str(b, ": {}\n");
        } else if (json_is_array(value)) {
            sb_str(b, ": []\n");
        } else {
            sb_str(b, ": ");
            write_value(b, value, indent + 2, true);
        }
    }
}

static void write_seq(sbuf *b, const json_t *list, size_t indent, bool first_inline)
{
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *item = json_array_get(list, i);
        if (!(i == 0 && first_inline))
            sb_spaces(b, indent);
        sb_str(b, "- ");
        if (json_is_object(item) && json_object_size(item) > 0)
            write_map(b, item, indent + 2, true);
        else if (json_is_array(item) && json_array_size(item) > 0)
            write_seq(b, item, indent + 2, true);
        else if (json_is_object(item))
            sb_str(b, "{}\n");
        else if (json_is_array(item))
            sb_str(b, "[]\n");
        else
            write_value(b, item, indent + 2, true);
    }
}

int flatrender_yaml(flatrender_buf *out, const json_t *flat, char *errmsg, size_t errsize)
{
    sbuf b = {NULL, 0, 0, false};
    out->data = NULL;
    out->len = 0;
    pthread_once(&resolvers_once, compile_resolvers);
    if (!resolvers_ok) {
        set_errmsg(errmsg, errsize, "cannot compile YAML resolvers");
        return -1;
    }
    json_t *tree = flatrender_tree(flat, errmsg, errsize);
    if (tree == NULL)
        return -1;
    json_t *document = json_object_size(tree) == 1 ? json_object_get(tree, "document") : NULL;
    if (json_object_size(tree) == 0)
        sb_str(&b, "{}\n");
    else if (json_is_array(document) && json_array_size(document) > 0)
        write_seq(&b, document, 0, false);
    else if (document != NULL && !json_is_object(document) && !json_is_array(document))
        write_value(&b, document, 0, false);
    else
        write_map(&b, tree, 0, false);
    json_decref(tree);
    return sb_finish(&b, out, errmsg, errsize);
}

/* ---- JSON --------------------------------------------------------------------------------- */

/*
 * Significant digits to print v with: the fewest that read back as v (1..17), and for whole
 * numbers below 1e15 at least all their digits, so 1000.0 prints as 1000.0 rather than 1e3.
 */
static int real_digits(double v)
{
    char text[40];
    int p = 1;
    for (; p < 17; p++) {
        snprintf(text, sizeof(text), "%.*g", p, v);
        if (strtod(text, NULL) == v)
            break;
    }
    double whole = fabs(v);
    if (whole < 1e15 && whole == floor(whole)) {
        int digits = 1;
        for (; whole >= 10; whole /= 10)
            digits++;
        p = digits > p ? digits : p;
    }
    return p;
}

static int max_real_digits(const json_t *node)
{
    int best = 1;
    if (json_is_real(node)) {
        double v = json_real_value(node);
        return isfinite(v) ? real_digits(v) : 1;
    }
    if (json_is_object(node)) {
        const char *k;
        json_t *v;
        json_object_foreach(unconst(node), k, v)
        {
            int d = max_real_digits(v);
            best = d > best ? d : best;
        }
    } else if (json_is_array(node)) {
        for (size_t i = 0; i < json_array_size(node); i++) {
            int d = max_real_digits(json_array_get(node, i));
            best = d > best ? d : best;
        }
    }
    return best;
}

int flatrender_json(flatrender_buf *out, const json_t *flat, char *errmsg, size_t errsize)
{
    out->data = NULL;
    out->len = 0;
    json_t *tree = flatrender_tree(flat, errmsg, errsize);
    if (tree == NULL)
        return -1;
    /*
     * jansson prints every real with one precision (%.*g). The largest precision any value
     * needs loses nothing, and up to 15 digits it prints every value in its shortest form too
     * (0.1 as 0.1, not 0.10000000000000001); values needing 16 or 17 digits are rare.
     */
    size_t flags = (size_t)JSON_COMPACT | (size_t)JSON_REAL_PRECISION(max_real_digits(tree));
    char *text = json_dumps(tree, flags);
    json_decref(tree);
    if (text == NULL) {
        set_errmsg(errmsg, errsize, "out of memory");
        return -1;
    }
    out->data = text;
    out->len = strlen(text);
    return 0;
}

/* ---- properties and environment ------------------------------------------------------------ */

/* Appends one entry's line; false when out of memory. */
typedef bool (*line_writer)(sbuf *b, size_t index, const char *key, const char *text,
                            size_t len);

/* The line-per-entry formats: each entry of the flat map, in merged order, through `write`. */
static int render_lines(flatrender_buf *out, const json_t *flat, line_writer write, char *errmsg,
                        size_t errsize)
{
    sbuf b = {NULL, 0, 0, false};
    size_t count = 0;
    out->data = NULL;
    out->len = 0;
    if (!json_is_object(flat)) {
        set_errmsg(errmsg, errsize, "not a property map");
        return -1;
    }
    entry *entries = ordered_entries(flat, &count);
    if (entries == NULL)
        b.oom = true;
    for (size_t i = 0; entries != NULL && i < count; i++) {
        size_t len = 0;
        char *text = scalar_text(entries[i].value, &len);
        bool written = text != NULL && write(&b, i, entries[i].key, text, len);
        free(text);
        if (!written) {
            b.oom = true;
            break;
        }
    }
    free(entries);
    return sb_finish(&b, out, errmsg, errsize);
}

static bool properties_line(sbuf *b, size_t index, const char *key, const char *text, size_t len)
{
    if (index > 0)
        sb_char(b, '\n');
    sb_str(b, key);
    sb_str(b, ": ");
    sb_add(b, text, len);
    return true;
}

int flatrender_properties(flatrender_buf *out, const json_t *flat, char *errmsg, size_t errsize)
{
    return render_lines(out, flat, properties_line, errmsg, errsize);
}

char *flatrender_env_name(const char *key)
{
    size_t len = strlen(key);
    char *name = malloc(len + 2);
    if (name == NULL)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        else if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            c = '_';
        if (c == '_' && (n == 0 || name[n - 1] == '_'))
            continue; /* no leading underscore, no runs */
        name[n++] = c;
    }
    while (n > 0 && name[n - 1] == '_')
        n--;
    if (n == 0 || (name[0] >= '0' && name[0] <= '9')) {
        memmove(name + 1, name, n);
        name[0] = '_';
        n++;
    }
    name[n] = '\0';
    return name;
}

static bool env_safe(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("_./:,@%+=-", c) != NULL) ||
            c == '\0')
            return false;
    }
    return true;
}

static bool env_line(sbuf *b, size_t index, const char *key, const char *text, size_t len)
{
    (void)index;
    char *name = flatrender_env_name(key);
    if (name == NULL)
        return false;
    sb_str(b, name);
    free(name);
    sb_char(b, '=');
    if (env_safe(text, len)) {
        sb_add(b, text, len);
    } else {
        /* POSIX shell single quotes: nothing is special inside but the quote itself. */
        sb_char(b, '\'');
        for (size_t k = 0; k < len; k++) {
            if (text[k] == '\'')
                sb_str(b, "'\\''");
            else if (text[k] != '\0')
                sb_char(b, text[k]);
        }
        sb_char(b, '\'');
    }
    sb_char(b, '\n');
    return true;
}

int flatrender_env(flatrender_buf *out, const json_t *flat, char *errmsg, size_t errsize)
{
    return render_lines(out, flat, env_line, errmsg, errsize);
}
