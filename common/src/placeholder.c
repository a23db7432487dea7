/*
 * placeholder — ${key} / ${key:default} resolution against a flat property map (see
 * placeholder.h), with Spring's parsing rules:
 *
 * - A placeholder runs from `${` to the `}` that balances it, every `{` in between counting
 *   (Spring's PlaceholderParser does the same); an unbalanced `${` is plain text.
 * - The default starts at the first `:` outside nested placeholders: `${a:b:c}` is key `a`,
 *   default `b:c`. The key is itself resolved (`${${name}.url}`) and trimmed of whitespace; the
 *   default is resolved only when the key is missing. A value found is resolved in turn, and a
 *   number or boolean is used in the text form Spring prints (scalar_to_text).
 * - `\${` (and `\\${`, which is how a backslash arrives from JSON) is a literal `${`: the
 *   backslashes go, the rest of the text is still scanned.
 * - A placeholder that cannot be resolved stays exactly as written, nested parts included.
 *
 * Where Spring throws (a cycle such as a=${b}, b=${a}; nesting deeper than
 * PLACEHOLDER_MAX_DEPTH), the outermost placeholder of the text being resolved is left as
 * written instead and the rest of the text still resolves. Where Spring would run out of memory
 * (${a}${a}... chains), a value that would grow beyond PLACEHOLDER_MAX_VALUE is left entirely
 * as written, and one call copies at most PLACEHOLDER_MAX_WORK bytes in total: once that is
 * spent, the values not yet resolved stay as written.
 *
 * Each key is resolved at most once per call (a memo of results and failures), so the cost is
 * linear in the size of the results, not exponential in the nesting.
 *
 * This module does not own which map is used (the caller merges the sources first).
 */
#include "placeholder.h"

#include "scalar.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PLACEHOLDER_MAX_DEPTH 32
#define PLACEHOLDER_MAX_VALUE ((size_t)1 << 20)
#define PLACEHOLDER_MAX_TEXT ((size_t)8 << 20) /* scanning costs 8 bytes per input byte */
#define PLACEHOLDER_MAX_TEXT_GROWTH ((size_t)4 << 20)
#define PLACEHOLDER_MAX_TOTAL ((size_t)64 << 20)
#define PLACEHOLDER_MAX_WORK ((size_t)256 << 20)
#define NO_MATCH UINT32_MAX

typedef enum {
    ST_OK = 0,
    ST_OOM = -1,
    ST_CYCLE = 1, /* part of a cycle: the outermost placeholder stays as written */
    ST_DEPTH = 2, /* nested too deep: the same, but not a property of the key */
    ST_SIZE = 3   /* too big: the whole value stays as written */
} status;

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} obuf;

typedef struct {
    const json_t *flat;
    json_t *memo;   /* key -> resolved string; false: too big; null: part of a cycle */
    json_t *active; /* keys whose resolution is under way */
    size_t limit;   /* largest result of one key */
    size_t total;   /* bytes kept in memo */
    size_t work;    /* bytes copied so far */
} resolver;

/* One text being scanned, with the position of the `}` balancing each `{`. */
typedef struct {
    const char *s;
    size_t len;
    uint32_t *match;
} text;

static status ob_add(resolver *r, obuf *b, const char *s, size_t n, size_t limit)
{
    if (b->len + n > limit)
        return ST_SIZE;
    r->work += n;
    if (r->work > PLACEHOLDER_MAX_WORK)
        return ST_SIZE;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (grown == NULL)
            return ST_OOM;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return ST_OK;
}

static bool has_placeholder(const char *s, size_t len)
{
    return len >= 2 && memmem(s, len, "${", 2) != NULL;
}

/* Balancing `}` of every `{` (NO_MATCH when there is none). NULL on OOM. */
static uint32_t *compute_matches(const char *s, size_t len)
{
    uint32_t *match = malloc((len ? len : 1) * sizeof(*match));
    uint32_t *stack = malloc((len ? len : 1) * sizeof(*stack));
    size_t depth = 0;
    if (match == NULL || stack == NULL) {
        free(match);
        free(stack);
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        match[i] = NO_MATCH;
        if (s[i] == '{') {
            stack[depth++] = (uint32_t)i;
        } else if (s[i] == '}' && depth > 0) {
            match[stack[--depth]] = (uint32_t)i;
        }
    }
    free(stack);
    return match;
}

/* Length of an escape `\${` or `\\${` at i (within [i, hi)), else 0. */
static size_t escape_at(const text *t, size_t i, size_t hi)
{
    if (t->s[i] != '\\')
        return 0;
    if (i + 3 <= hi && t->s[i + 1] == '$' && t->s[i + 2] == '{')
        return 3;
    if (i + 4 <= hi && t->s[i + 1] == '\\' && t->s[i + 2] == '$' && t->s[i + 3] == '{')
        return 4;
    return 0;
}

/* Position of the `}` closing a `${` at i, if it closes before hi. */
static bool placeholder_at(const text *t, size_t i, size_t hi, size_t *end)
{
    if (i + 1 >= hi || t->s[i] != '$' || t->s[i + 1] != '{')
        return false;
    uint32_t m = t->match[i + 1];
    if (m == NO_MATCH || m >= hi)
        return false;
    *end = m;
    return true;
}

static status resolve_range(resolver *r, const text *t, size_t lo, size_t hi, unsigned depth,
                            obuf *out, size_t limit);

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* The resolved text of key (found in the map as value), from the memo or computed once. */
static status resolve_key(resolver *r, const char *key, const json_t *value, unsigned depth,
                          obuf *out, size_t limit)
{
    json_t *memo = json_object_get(r->memo, key);
    if (json_is_string(memo))
        return ob_add(r, out, json_string_value(memo), json_string_length(memo), limit);
    if (json_is_false(memo))
        return ST_SIZE;
    if (json_is_null(memo) || json_object_get(r->active, key) != NULL)
        return ST_CYCLE;
    if (depth >= PLACEHOLDER_MAX_DEPTH)
        return ST_DEPTH;

    char *scalar = NULL;
    const char *s;
    size_t len;
    if (json_is_string(value)) {
        s = json_string_value(value);
        len = json_string_length(value);
    } else {
        scalar = scalar_to_text(value);
        if (scalar == NULL)
            return ST_OOM;
        s = scalar;
        len = strlen(scalar);
    }

    obuf own = {NULL, 0, 0};
    text t = {s, len, NULL};
    status st = ST_OK;
    if (!has_placeholder(s, len)) {
        st = ob_add(r, &own, s, len, r->limit);
    } else if (len > r->limit) {
        st = ST_SIZE;
    } else if ((t.match = compute_matches(s, len)) == NULL) {
        st = ST_OOM;
    } else if (json_object_set_new(r->active, key, json_true()) != 0) {
        st = ST_OOM;
    } else {
        st = resolve_range(r, &t, 0, len, depth + 1, &own, r->limit);
        json_object_del(r->active, key);
    }
    free(t.match);
    free(scalar);

    if (st == ST_OK) {
        r->total += own.len;
        if (r->total > PLACEHOLDER_MAX_TOTAL)
            st = ST_SIZE;
    }
    if (st == ST_OK) {
        json_t *result = json_stringn(own.data ? own.data : "", own.len);
        if (result == NULL || json_object_set_new(r->memo, key, result) != 0)
            st = ST_OOM;
        else
            st = ob_add(r, out, own.data ? own.data : "", own.len, limit);
    } else if (st == ST_CYCLE) {
        /* Whatever reaches a cycle fails wherever it is used; running out of depth does not. */
        if (json_object_set_new(r->memo, key, json_null()) != 0)
            st = ST_OOM;
    } else if (st == ST_SIZE) {
        if (json_object_set_new(r->memo, key, json_false()) != 0)
            st = ST_OOM;
    }
    free(own.data);
    return st;
}

/* The placeholder whose inside is [lo, hi) (between `${` and `}`), appended to out. */
static status resolve_placeholder(resolver *r, const text *t, size_t lo, size_t hi, unsigned depth,
                                  obuf *out, size_t limit)
{
    if (depth >= PLACEHOLDER_MAX_DEPTH)
        return ST_DEPTH;

    /* The default starts at the first ':' outside nested placeholders and escapes. */
    size_t sep = hi;
    for (size_t i = lo; i < hi;) {
        size_t end, esc = escape_at(t, i, hi);
        if (esc > 0) {
            i += esc;
        } else if (placeholder_at(t, i, hi, &end)) {
            i = end + 1;
        } else if (t->s[i] == ':') {
            sep = i;
            break;
        } else {
            i++;
        }
    }

    obuf key = {NULL, 0, 0};
    status st = resolve_range(r, t, lo, sep, depth + 1, &key, r->limit);
    if (st != ST_OK)
        goto out;
    size_t ks = 0, ke = key.len;
    while (ks < ke && is_space(key.data[ks]))
        ks++;
    while (ke > ks && is_space(key.data[ke - 1]))
        ke--;
    const json_t *value = NULL;
    if (key.data != NULL && memchr(key.data + ks, '\0', ke - ks) == NULL) {
        key.data[ke] = '\0';
        value = json_object_get(r->flat, key.data + ks);
    }

    if (value != NULL && !json_is_null(value))
        st = resolve_key(r, key.data + ks, value, depth + 1, out, limit);
    else if (sep < hi)
        st = resolve_range(r, t, sep + 1, hi, depth + 1, out, limit);
    else
        st = ob_add(r, out, t->s + lo - 2, hi - lo + 3, limit); /* as written, `${` to `}` */
out:
    free(key.data);
    return st;
}

/*
 * Resolves [lo, hi) of t into out. At depth 0 (the text the caller asked for) a placeholder
 * that fails on a cycle or on depth is kept as written; deeper, the failure goes up to it.
 */
static status resolve_range(resolver *r, const text *t, size_t lo, size_t hi, unsigned depth,
                            obuf *out, size_t limit)
{
    status st = ST_OK;
    size_t i = lo, plain = lo; /* [plain, i) is text not yet copied */
    while (i < hi && st == ST_OK) {
        size_t end, esc = escape_at(t, i, hi);
        if (esc > 0) {
            if ((st = ob_add(r, out, t->s + plain, i - plain, limit)) != ST_OK ||
                (st = ob_add(r, out, "${", 2, limit)) != ST_OK)
                break;
            i += esc;
            plain = i;
        } else if (placeholder_at(t, i, hi, &end)) {
            if ((st = ob_add(r, out, t->s + plain, i - plain, limit)) != ST_OK)
                break;
            size_t mark = out->len;
            st = resolve_placeholder(r, t, i + 2, end, depth, out, limit);
            if ((st == ST_CYCLE || st == ST_DEPTH) && depth == 0) {
                out->len = mark;
                st = ob_add(r, out, t->s + i, end + 1 - i, limit);
            }
            i = end + 1;
            plain = i;
        } else {
            i++;
        }
    }
    if (st == ST_OK)
        st = ob_add(r, out, t->s + plain, hi - plain, limit);
    return st;
}

static int resolver_init(resolver *r, const json_t *flat)
{
    r->flat = flat;
    r->memo = json_object();
    r->active = json_object();
    r->limit = PLACEHOLDER_MAX_VALUE;
    r->total = 0;
    r->work = 0;
    return r->memo && r->active ? 0 : -1;
}

static void resolver_dispose(resolver *r)
{
    json_decref(r->memo);
    json_decref(r->active);
}

/* Resolves one whole text at depth 0. ST_SIZE: the caller keeps the original. */
static status resolve_top(resolver *r, const char *s, size_t len, size_t limit, obuf *out)
{
    text t = {s, len, NULL};
    if (len > limit)
        return ST_SIZE;
    t.match = compute_matches(s, len);
    if (t.match == NULL)
        return ST_OOM;
    status st = resolve_range(r, &t, 0, len, 0, out, limit);
    free(t.match);
    return st;
}

int placeholder_resolve_map(json_t *flat)
{
    resolver r;
    json_t *results = json_object();
    int error = -1;
    const char *key;
    json_t *value;
    if (resolver_init(&r, flat) < 0 || results == NULL || !json_is_object(flat))
        goto out;

    json_object_foreach(flat, key, value)
    {
        const char *s = json_string_value(value);
        size_t len = json_string_length(value);
        if (s == NULL || !has_placeholder(s, len))
            continue;
        obuf own = {NULL, 0, 0};
        status st = ST_OK;
        if (json_object_set_new(r.active, key, json_true()) != 0)
            st = ST_OOM;
        else
            st = resolve_top(&r, s, len, r.limit, &own);
        json_object_del(r.active, key);
        if (st == ST_OK) {
            json_t *resolved = json_stringn(own.data ? own.data : "", own.len);
            if (resolved == NULL || json_object_set_new(results, key, resolved) != 0)
                st = ST_OOM;
        }
        free(own.data);
        if (st == ST_OOM)
            goto out;
    }
    /* Written back only now: every lookup above saw the original values. */
    json_object_foreach(results, key, value)
    {
        if (json_object_set(flat, key, value) != 0)
            goto out;
    }
    error = 0;
out:
    json_decref(results);
    resolver_dispose(&r);
    return error;
}

char *placeholder_resolve_text(const char *s, size_t len, const json_t *flat, size_t *out_len)
{
    resolver r;
    obuf own = {NULL, 0, 0};
    char *result = NULL;
    if (resolver_init(&r, flat) < 0)
        goto out;
    status st = ST_SIZE;
    if (len <= PLACEHOLDER_MAX_TEXT && has_placeholder(s, len) && json_is_object(flat))
        st = resolve_top(&r, s, len, len + PLACEHOLDER_MAX_TEXT_GROWTH, &own);
    if (st == ST_OOM)
        goto out;
    if (st != ST_OK) {
        /* Nothing to do, or too big: the text as it is. */
        free(own.data);
        own.data = malloc(len + 1);
        if (own.data == NULL)
            goto out;
        memcpy(own.data, s, len);
        own.data[len] = '\0';
        own.len = len;
    } else if (own.data == NULL) {
        own.data = calloc(1, 1);
        if (own.data == NULL)
            goto out;
    }
    result = own.data;
    own.data = NULL;
    if (out_len != NULL)
        *out_len = own.len;
out:
    free(own.data);
    resolver_dispose(&r);
    return result;
}
