/*
 * yamlconf — YAML configuration files read the way Spring Boot reads them (see yamlconf.h).
 *
 * libyaml's event API feeds a small node graph per document (aliases are shared pointers, so a
 * "billion laughs" file costs no more memory than its text); each finished document is then
 * flattened into a confdoc the way Spring's YamlProcessor does it. Scalars are typed like
 * SnakeYAML 2.x's Resolver and SafeConstructor as Spring Boot configures them: timestamps stay
 * strings, duplicate keys are errors, `<<` merge keys follow SnakeYAML's mergeNode. Note that
 * since SnakeYAML 1.29 a float needs a dot or an exponent, so `08080` is the string "08080".
 *
 * Documents are skipped as Spring skips them: one that loads as null, as an empty string or as
 * an empty list. A document whose root is an empty map is kept, with no properties, so that
 * document numbers match Spring's "(document #N)".
 *
 * Every cap in confdoc_limits is enforced while reading, plus two derived ones so that work
 * stays proportional to max_entries: nodes per file (NODES_PER_ENTRY) and node visits and
 * merged keys (WORK_PER_ENTRY); both report as limits, never as a crash or a long stall.
 *
 * Known differences from Spring, on purpose:
 *  - integers beyond 64 bits, and .inf/.nan, are strings holding Java's text of the number
 *    (jansson has no big integers and no non-finite reals); as keys they still read "[...]";
 *  - keys must be scalars and not null (Spring builds odd keys or throws);
 *  - the origin of a value reached through an alias is the position of the anchored value (as
 *    in Spring, where the alias shares the anchored node);
 *  - an alias inside the collection it names is an error (Spring overflows its stack);
 *  - `!!set`, `!!omap`, `!!pairs` and local tags are rejected; `!!binary` and `!!timestamp` are
 *    kept as text.
 *
 * This module does not own the confdoc types (confdoc.c) nor text rendering (scalar.c).
 */
#include "yamlconf.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "scalar.h"

#define TAG_PREFIX "tag:yaml.org,2002:"

/* Work allowed per flattened entry (node visits, merged tuples) before a file counts as hostile. */
#define WORK_PER_ENTRY 8
#define NODES_PER_ENTRY 4

typedef enum { YNODE_SCALAR, YNODE_SEQ, YNODE_MAP } ynode_kind;

typedef struct ynode ynode;
struct ynode {
    ynode_kind kind;
    unsigned line, col;  /* 1-based start of the node */
    json_t *value;       /* scalars: typed value, json null for YAML null */
    bool merge_key;      /* scalars: a plain `<<` or `!!merge` */
    bool number_text;    /* scalars: a number held as text (big integer, infinity, NaN) */
    bool open;           /* collections still being read: an alias to one is recursive */
    ynode **items;       /* collections; maps alternate key, value */
    size_t count, cap;
    ynode **merged;      /* maps: tuples after `<<` merging (NULL when the same as items) */
    size_t merged_count, merged_cap;
};

/*
 * Where the flattened key stands. Spring drops a path made only of whitespace rather than
 * prefixing it, so such a path stays in the buffer (to restore it for the next sibling) but is
 * skipped; first_text remembers whether the visible part holds any non-blank byte.
 */
typedef struct {
    size_t len;
    size_t skip;
    size_t first_text; /* SIZE_MAX: the visible part is blank */
} keypos;

typedef struct {
    const confdoc_limits *limits;
    confdoc_error *err;
    bool failed;

    /* the document being read */
    ynode **nodes; /* every node, for freeing */
    size_t node_count, node_cap;
    json_t *anchors; /* name -> index into nodes */
    ynode **stack;   /* open collections */
    size_t depth;
    ynode *root;

    /* the whole file */
    size_t total_nodes;
    size_t entries;
    size_t work;
    size_t documents;

    /* flattening */
    char *key; /* the flattened key is key + pos.skip, NUL-terminated at pos.len */
    size_t key_cap;
    keypos pos;
    size_t aliases; /* aliases read so far: they are what makes a file expand */
} yparse;

static void fail(yparse *p, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail(yparse *p, unsigned line, unsigned col, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = true;
    p->err->line = line;
    p->err->col = col;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err->message, sizeof(p->err->message), fmt, ap);
    va_end(ap);
}

/* ---- scalar typing (SnakeYAML's Resolver and SafeConstructor) ---- */

static bool is_digit_in(char c, int base)
{
    if (base == 16)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    return c >= '0' && c < '0' + base;
}

/* `first` then any of first/underscore: the [x][x_]* of the resolver's patterns. */
static size_t span_digits(const char *s, size_t len, int base, bool underscores)
{
    size_t i = 0;
    while (i < len && (is_digit_in(s[i], base) || (underscores && i > 0 && s[i] == '_')))
        i++;
    return i;
}

/* (:[0-5]?[0-9])+ starting at s; returns the length matched, 0 if none. */
static size_t span_sexagesimal(const char *s, size_t len)
{
    size_t i = 0, groups = 0;
    while (i < len && s[i] == ':') {
        size_t j = i + 1;
        if (j + 1 < len + 0 && s[j] >= '0' && s[j] <= '5' && s[j + 1] >= '0' && s[j + 1] <= '9')
            j += 2;
        else if (j < len && s[j] >= '0' && s[j] <= '9')
            j += 1;
        else
            break;
        i = j;
        groups++;
    }
    return groups ? i : 0;
}

static bool match_int(const char *s, size_t len)
{
    size_t i = 0;
    if (i < len && (s[i] == '-' || s[i] == '+'))
        i++;
    const char *r = s + i;
    size_t n = len - i;
    if (n == 0)
        return false;
    if (n >= 2 && r[0] == '0' && (r[1] == 'b' || r[1] == 'x')) {
        int base = r[1] == 'b' ? 2 : 16;
        size_t j = 2;
        while (j < n && r[j] == '_')
            j++;
        if (j >= n || !is_digit_in(r[j], base))
            return false;
        while (j < n && (is_digit_in(r[j], base) || r[j] == '_'))
            j++;
        return j == n;
    }
    if (r[0] == '0') {
        if (n == 1)
            return true;
        size_t j = 1;
        while (j < n && r[j] == '_')
            j++;
        if (j >= n || !is_digit_in(r[j], 8))
            return false;
        while (j < n && (is_digit_in(r[j], 8) || r[j] == '_'))
            j++;
        return j == n;
    }
    if (r[0] < '1' || r[0] > '9')
        return false;
    size_t j = span_digits(r, n, 10, true);
    if (j == n)
        return true;
    size_t sexa = span_sexagesimal(r + j, n - j);
    return sexa > 0 && j + sexa == n;
}

/* [eE][-+]?[0-9]+ at s; length matched or 0. */
static size_t span_exponent(const char *s, size_t len)
{
    if (len == 0 || (s[0] != 'e' && s[0] != 'E'))
        return 0;
    size_t i = 1;
    if (i < len && (s[i] == '-' || s[i] == '+'))
        i++;
    size_t digits = span_digits(s + i, len - i, 10, false);
    return digits ? i + digits : 0;
}

static bool match_float(const char *s, size_t len)
{
    if (len == 4 && s[0] == '.' &&
        (!memcmp(s, ".nan", 4) || !memcmp(s, ".NaN", 4) || !memcmp(s, ".NAN", 4)))
        return true;
    size_t i = 0;
    if (i < len && (s[i] == '-' || s[i] == '+'))
        i++;
    const char *r = s + i;
    size_t n = len - i;
    if (n == 4 && (!memcmp(r, ".inf", 4) || !memcmp(r, ".Inf", 4) || !memcmp(r, ".INF", 4)))
        return true;
    if (n >= 2 && r[0] == '.') {
        size_t j = 1;
        while (j < n && ((r[j] >= '0' && r[j] <= '9') || r[j] == '_'))
            j++;
        if (j == 1)
            return false;
        return j + span_exponent(r + j, n - j) == n;
    }
    if (n == 0 || r[0] < '0' || r[0] > '9')
        return false;
    size_t j = span_digits(r, n, 10, true);
    if (j < n && r[j] == ':') {
        size_t sexa = span_sexagesimal(r + j, n - j);
        if (sexa == 0 || j + sexa >= n || r[j + sexa] != '.')
            return false;
        j += sexa + 1;
        while (j < n && ((r[j] >= '0' && r[j] <= '9') || r[j] == '_'))
            j++;
        return j == n;
    }
    if (j < n && r[j] == '.') {
        j++;
        while (j < n && ((r[j] >= '0' && r[j] <= '9') || r[j] == '_'))
            j++;
        return j + span_exponent(r + j, n - j) == n;
    }
    size_t e = span_exponent(r + j, n - j);
    return e > 0 && j + e == n;
}

static int match_bool(const char *s, size_t len)
{
    static const char *const yes[] = {"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"};
    static const char *const no[] = {"no",    "No",    "NO",  "false", "False",
                                     "FALSE", "off",   "Off", "OFF"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strlen(yes[i]) == len && memcmp(yes[i], s, len) == 0)
            return 1;
        if (strlen(no[i]) == len && memcmp(no[i], s, len) == 0)
            return 0;
    }
    return -1;
}

static bool match_null(const char *s, size_t len)
{
    return len == 0 || (len == 1 && s[0] == '~') ||
           (len == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4)));
}

/* Copies s without underscores, NUL-terminated; NULL when too long for buf. */
static char *strip_underscores(char *buf, size_t size, const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '_')
            continue;
        if (n + 1 >= size)
            return NULL;
        buf[n++] = s[i] != '\0' ? s[i] : '?'; /* an embedded NUL is never a digit */
    }
    buf[n] = '\0';
    return buf;
}

/* Digits in base into an unsigned magnitude; false on a bad digit or past 2^64. */
static bool parse_magnitude(const char *s, int base, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if (!is_digit_in(*s, base))
            return false;
        unsigned d = (unsigned)(*s <= '9' ? *s - '0' : (*s | 0x20) - 'a' + 10);
        if (v > (UINT64_MAX - d) / (uint64_t)base)
            return false;
        v = v * (uint64_t)base + d;
    }
    *out = v;
    return true;
}

/*
 * The decimal text of a number too big for 64 bits (Java's BigInteger.toString), from its
 * digits in base. Schoolbook conversion into base-1e9 limbs; inputs are at most ~1 KiB.
 */
static json_t *big_decimal(const char *digits, int base, bool negative)
{
    size_t cap = strlen(digits) + 1, count = 0;
    uint32_t *limbs = calloc(cap, sizeof(*limbs));
    char *text = malloc(cap * 9 + 2);
    json_t *value = NULL;
    if (limbs == NULL || text == NULL)
        goto out;
    for (const char *c = digits; *c != '\0'; c++) {
        uint64_t carry = (uint64_t)(*c <= '9' ? *c - '0' : (*c | 0x20) - 'a' + 10);
        for (size_t i = 0; i < count; i++) {
            uint64_t x = (uint64_t)limbs[i] * (uint64_t)base + carry;
            limbs[i] = (uint32_t)(x % 1000000000u);
            carry = x / 1000000000u;
        }
        if (carry != 0 && count < cap)
            limbs[count++] = (uint32_t)carry;
    }
    size_t n = 0;
    if (negative)
        text[n++] = '-';
    n += (size_t)sprintf(text + n, "%u", count ? limbs[count - 1] : 0u);
    for (size_t i = count > 1 ? count - 1 : 0; i-- > 0;)
        n += (size_t)sprintf(text + n, "%09u", limbs[i]);
    value = json_stringn(text, n);
out:
    free(limbs);
    free(text);
    return value;
}

/*
 * ConstructYamlInt. Returns a json integer, a json string (the decimal text, for values beyond
 * 64 bits), or NULL with *bad set when the text is no integer at all (only with !!int).
 */
static json_t *construct_int(const char *text, size_t len, bool *bad)
{
    char buf[1100];
    char *v = strip_underscores(buf, sizeof(buf), text, len);
    *bad = false;
    if (v == NULL)
        return json_stringn(text, len); /* far past 64 bits: kept as written */
    if (*v == '\0') {
        *bad = true;
        return NULL;
    }
    bool negative = false;
    if (*v == '-' || *v == '+') {
        negative = *v == '-';
        v++;
    }
    int base = 10;
    if (strcmp(v, "0") == 0)
        return json_integer(0);
    if (strncmp(v, "0b", 2) == 0) {
        base = 2;
        v += 2;
    } else if (strncmp(v, "0x", 2) == 0) {
        base = 16;
        v += 2;
    } else if (v[0] == '0') {
        base = 8;
        v += 1;
    } else if (strchr(v, ':') != NULL) {
        /* Java sums the groups into an int, so large values wrap around the way they do there */
        int64_t val = 0, bes = 1;
        char *end = v + strlen(v);
        while (end > v) {
            char *group = end;
            while (group > v && group[-1] != ':')
                group--;
            uint64_t digit;
            char save = *end;
            *end = '\0';
            bool ok = parse_magnitude(group, 10, &digit) && digit <= INT64_MAX;
            *end = save;
            if (!ok) {
                *bad = true;
                return NULL;
            }
            val = (int32_t)(uint32_t)((uint64_t)val + (uint64_t)digit * (uint64_t)bes);
            bes = (int32_t)(uint32_t)((uint64_t)bes * 60u);
            end = group > v ? group - 1 : v;
            if (group == v)
                break;
        }
        if (negative && val < 0) {
            *bad = true;
            return NULL;
        }
        return json_integer(negative ? -val : val);
    }
    if (*v == '\0')
        goto bad;
    for (const char *c = v; *c != '\0'; c++)
        if (!is_digit_in(*c, base))
            goto bad;
    uint64_t magnitude;
    bool fits = parse_magnitude(v, base, &magnitude) &&
                magnitude <= (uint64_t)INT64_MAX + (negative ? 1u : 0u);
    if (!fits)
        return big_decimal(v, base, negative); /* a BigInteger in Java */
    if (negative)
        return json_integer(magnitude == (uint64_t)INT64_MAX + 1 ? INT64_MIN
                                                                  : -(json_int_t)magnitude);
    return json_integer((json_int_t)magnitude);
bad:
    *bad = true;
    return NULL;
}

/* Java's Double.valueOf for the decimal forms: digits, optional fraction, optional exponent. */
static bool parse_java_double(const char *s, double *out)
{
    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    if (strcmp(p, "Infinity") == 0 || strcmp(p, "NaN") == 0) {
        *out = p[0] == 'N' ? (double)NAN : (s[0] == '-' ? -HUGE_VAL : HUGE_VAL);
        return true;
    }
    size_t digits = 0;
    while (*p >= '0' && *p <= '9') {
        p++;
        digits++;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            p++;
            digits++;
        }
    }
    if (digits == 0)
        return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+')
            p++;
        if (*p < '0' || *p > '9')
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p != '\0')
        return false;
    *out = strtod(s, NULL);
    return true;
}

/* A double as json: a real when finite, Spring's JSON text otherwise. */
static json_t *json_double(double d)
{
    if (isfinite(d))
        return json_real(d);
    char text[32];
    scalar_format_double(d, text, sizeof(text));
    return json_string(text);
}

/* ConstructYamlFloat; NULL with *bad when the text is no number (!!float, or "._"). */
static json_t *construct_float(const char *text, size_t len, bool *bad)
{
    char buf[1100];
    char *v = strip_underscores(buf, sizeof(buf), text, len);
    *bad = false;
    if (v == NULL)
        return json_stringn(text, len);
    double sign = 1.0;
    if (*v == '-' || *v == '+') {
        sign = *v == '-' ? -1.0 : 1.0;
        v++;
    }
    if (strcasecmp(v, ".inf") == 0)
        return json_double(sign * HUGE_VAL);
    if (strcasecmp(v, ".nan") == 0)
        return json_double((double)NAN);
    double d;
    if (strchr(v, ':') != NULL) {
        double val = 0.0, bes = 1.0;
        char *end = v + strlen(v);
        for (;;) {
            char *group = end;
            while (group > v && group[-1] != ':')
                group--;
            char save = *end;
            *end = '\0';
            bool ok = parse_java_double(group, &d);
            *end = save;
            if (!ok)
                goto bad;
            val += d * bes;
            bes *= 60.0;
            if (group == v)
                break;
            end = group - 1;
        }
        return json_double(sign * val);
    }
    if (!parse_java_double(v, &d))
        goto bad;
    return json_double(d * sign);
bad:
    *bad = true;
    return NULL;
}

/* ConstructYamlBool: an unknown word gives null, as in SnakeYAML. */
static json_t *construct_bool(const char *text, size_t len)
{
    char lower[8];
    if (len < sizeof(lower)) {
        for (size_t i = 0; i < len; i++)
            lower[i] = (char)((text[i] >= 'A' && text[i] <= 'Z') ? text[i] | 0x20 : text[i]);
        lower[len] = '\0';
        if (!strcmp(lower, "yes") || !strcmp(lower, "true") || !strcmp(lower, "on"))
            return json_true();
        if (!strcmp(lower, "no") || !strcmp(lower, "false") || !strcmp(lower, "off"))
            return json_false();
    }
    return json_null();
}

static json_t *construct_binary(const char *text, size_t len)
{
    char *copy = malloc(len + 1);
    size_t n = 0;
    if (copy == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++)
        if (text[i] != ' ' && text[i] != '\n' && text[i] != '\r' && text[i] != '\t')
            copy[n++] = text[i];
    json_t *value = json_stringn(copy, n);
    free(copy);
    return value;
}

/* SnakeYAML's Resolver for plain scalars (its length limits included, timestamps dropped). */
static json_t *resolve_plain(yparse *p, ynode *node, const char *text, size_t len)
{
    char first = len ? text[0] : '\0';
    bool bad = false;
    json_t *value = NULL;

    if (len <= 10 && first != '\0' && strchr("yYnNtTfFoO", first) != NULL) {
        int b = match_bool(text, len);
        if (b >= 0)
            return json_boolean(b);
    }
    if (len <= 1024 && first != '\0' && strchr("-+0123456789", first) != NULL &&
        match_int(text, len)) {
        value = construct_int(text, len, &bad);
        node->number_text = json_is_string(value);
    } else if (len <= 1024 && first != '\0' && strchr("-+0123456789.", first) != NULL &&
               match_float(text, len)) {
        value = construct_float(text, len, &bad);
        node->number_text = json_is_string(value);
    } else if (len == 2 && !memcmp(text, "<<", 2)) {
        node->merge_key = true;
        return json_stringn(text, len);
    } else if (len <= 10 && match_null(text, len)) {
        return json_null();
    } else {
        return json_stringn(text, len);
    }
    if (bad)
        fail(p, node->line, node->col, "cannot read \"%.*s\" as a number", (int)(len > 64 ? 64 : len),
             text);
    return value;
}

static json_t *resolve_tagged(yparse *p, ynode *node, const char *tag, const char *text,
                              size_t len)
{
    bool bad = false;
    json_t *value = NULL;
    const char *name = strncmp(tag, TAG_PREFIX, strlen(TAG_PREFIX)) == 0
                           ? tag + strlen(TAG_PREFIX)
                           : NULL;

    if (name && (!strcmp(name, "str") || !strcmp(name, "timestamp")))
        return json_stringn(text, len);
    if (name && !strcmp(name, "int"))
        value = construct_int(text, len, &bad);
    else if (name && !strcmp(name, "float"))
        value = construct_float(text, len, &bad);
    else if (name && !strcmp(name, "bool"))
        return construct_bool(text, len);
    else if (name && !strcmp(name, "null"))
        return json_null();
    else if (name && !strcmp(name, "binary"))
        return construct_binary(text, len);
    else if (name && !strcmp(name, "merge")) {
        node->merge_key = true;
        return json_stringn(text, len);
    } else {
        fail(p, node->line, node->col, "unsupported tag %s", tag);
        return NULL;
    }
    node->number_text = value != NULL && json_is_string(value);
    if (bad)
        fail(p, node->line, node->col, "cannot read \"%.*s\" as !!%s", (int)(len > 64 ? 64 : len),
             text, name);
    return value;
}

/* ---- building the node graph from events ---- */

static ynode *node_new(yparse *p, ynode_kind kind, const yaml_mark_t *mark)
{
    size_t max_nodes = p->limits->max_entries * NODES_PER_ENTRY + 64;
    if (p->total_nodes >= max_nodes) {
        fail(p, (unsigned)mark->line + 1, (unsigned)mark->column + 1,
             "more than %zu YAML nodes in one file", max_nodes);
        return NULL;
    }
    if (p->node_count == p->node_cap) {
        size_t cap = p->node_cap ? p->node_cap * 2 : 64;
        ynode **grown = realloc(p->nodes, cap * sizeof(*grown));
        if (grown == NULL)
            goto oom;
        p->nodes = grown;
        p->node_cap = cap;
    }
    ynode *node = calloc(1, sizeof(*node));
    if (node == NULL)
        goto oom;
    node->kind = kind;
    node->line = (unsigned)mark->line + 1;
    node->col = (unsigned)mark->column + 1;
    p->nodes[p->node_count++] = node;
    p->total_nodes++;
    return node;
oom:
    fail(p, 0, 0, "out of memory");
    return NULL;
}

static void nodes_free(yparse *p)
{
    for (size_t i = 0; i < p->node_count; i++) {
        ynode *node = p->nodes[i];
        json_decref(node->value);
        free(node->items);
        free(node->merged);
        free(node);
    }
    p->node_count = 0;
    p->depth = 0;
    p->root = NULL;
    json_object_clear(p->anchors);
}

static bool items_push(yparse *p, ynode ***items, size_t *count, size_t *cap, ynode *item)
{
    if (*count == *cap) {
        size_t grown_cap = *cap ? *cap * 2 : 4;
        ynode **grown = realloc(*items, grown_cap * sizeof(*grown));
        if (grown == NULL) {
            fail(p, 0, 0, "out of memory");
            return false;
        }
        *items = grown;
        *cap = grown_cap;
    }
    (*items)[(*count)++] = item;
    return true;
}

/* Places a finished or opened node in its parent (or as the document's root). */
static bool node_attach(yparse *p, ynode *node)
{
    if (p->depth == 0) {
        p->root = node;
        return true;
    }
    ynode *parent = p->stack[p->depth - 1];
    return items_push(p, &parent->items, &parent->count, &parent->cap, node);
}

static bool anchor_register(yparse *p, const yaml_char_t *anchor)
{
    if (anchor == NULL)
        return true;
    json_t *index = json_integer((json_int_t)(p->node_count - 1));
    if (index == NULL || json_object_set_new(p->anchors, (const char *)anchor, index) < 0) {
        fail(p, 0, 0, "out of memory");
        return false;
    }
    return true;
}

/*
 * The identity of a key as Java's equals() sees it: type letter and text, malloc'd into *out.
 * False (with p failed) for keys Almanac does not accept.
 */
static bool key_identity(yparse *p, const ynode *key, char **out)
{
    *out = NULL;
    if (key->kind != YNODE_SCALAR) {
        fail(p, key->line, key->col, "mapping keys must be scalars");
        return false;
    }
    if (json_is_null(key->value)) {
        fail(p, key->line, key->col, "mapping key is null");
        return false;
    }
    char *text = scalar_to_text(key->value);
    if (text == NULL) {
        fail(p, 0, 0, "out of memory");
        return false;
    }
    if (json_is_string(key->value) && strlen(text) != json_string_length(key->value)) {
        fail(p, key->line, key->col, "mapping key contains a NUL character");
        free(text);
        return false;
    }
    size_t len = strlen(text);
    char *id = malloc(len + 2);
    if (id == NULL) {
        free(text);
        fail(p, 0, 0, "out of memory");
        return false;
    }
    id[0] = key->number_text              ? 'n'
            : json_is_string(key->value)  ? 's'
            : json_is_integer(key->value) ? 'i'
            : json_is_real(key->value)    ? 'f'
                                          : 'b';
    memcpy(id + 1, text, len + 1);
    free(text);
    *out = id;
    return true;
}

/* Merges one source map's tuples after the explicit ones: a key already present wins. */
static bool merge_source(yparse *p, ynode *map, const ynode *source, json_t *seen)
{
    if (source->kind != YNODE_MAP) {
        fail(p, source->line, source->col, "expected a mapping or list of mappings for merging");
        return false;
    }
    ynode *const *tuples = source->merged ? source->merged : source->items;
    size_t count = source->merged ? source->merged_count : source->count;
    for (size_t i = 0; i < count; i += 2) {
        if (++p->work > p->limits->max_entries * WORK_PER_ENTRY) {
            fail(p, source->line, source->col, "alias expansion exceeds %zu entries",
                 p->limits->max_entries);
            return false;
        }
        char *id = NULL;
        if (!key_identity(p, tuples[i], &id))
            return false;
        bool fresh = json_object_get(seen, id) == NULL;
        if (fresh && json_object_set_new(seen, id, json_integer((json_int_t)map->merged_count)) < 0)
            fresh = false;
        free(id);
        if (!fresh)
            continue;
        if (!items_push(p, &map->merged, &map->merged_count, &map->merged_cap, tuples[i]) ||
            !items_push(p, &map->merged, &map->merged_count, &map->merged_cap, tuples[i + 1]))
            return false;
    }
    return true;
}

/*
 * A map is complete: reject duplicate keys (merge keys aside), then resolve `<<` the way
 * SnakeYAML's mergeNode does — tuples in order of first appearance, explicit keys winning.
 */
static bool map_close(yparse *p, ynode *map)
{
    bool ok = false, has_merge = false;
    json_t *seen = json_object();
    if (seen == NULL) {
        fail(p, 0, 0, "out of memory");
        return false;
    }
    for (size_t i = 0; i < map->count; i += 2) {
        const ynode *key = map->items[i];
        if (key->kind == YNODE_SCALAR && key->merge_key) {
            has_merge = true;
            continue;
        }
        char *id = NULL;
        if (!key_identity(p, key, &id))
            goto out;
        if (json_object_get(seen, id) != NULL) {
            char *text = scalar_to_text(key->value);
            fail(p, key->line, key->col, "duplicate key \"%.100s\" (line %u, col %u)",
                 text ? text : "", key->line, key->col);
            free(text);
            free(id);
            goto out;
        }
        int rc = json_object_set_new(seen, id, json_true());
        free(id);
        if (rc < 0) {
            fail(p, 0, 0, "out of memory");
            goto out;
        }
    }
    if (!has_merge) {
        ok = true;
        goto out;
    }

    json_object_clear(seen);
    for (size_t i = 0; i < map->count; i += 2) {
        ynode *key = map->items[i], *value = map->items[i + 1];
        if (key->kind == YNODE_SCALAR && key->merge_key) {
            if (value->kind == YNODE_SEQ) {
                for (size_t j = 0; j < value->count; j++) {
                    if (value->items[j]->kind != YNODE_MAP) {
                        fail(p, value->items[j]->line, value->items[j]->col,
                             "expected a mapping for merging");
                        goto out;
                    }
                    if (!merge_source(p, map, value->items[j], seen))
                        goto out;
                }
            } else if (!merge_source(p, map, value, seen)) {
                goto out;
            }
            continue;
        }
        char *id = NULL;
        if (!key_identity(p, key, &id))
            goto out;
        json_t *at = json_object_get(seen, id);
        if (at != NULL) {
            size_t index = (size_t)json_integer_value(at);
            map->merged[index] = key;
            map->merged[index + 1] = value;
            free(id);
            continue;
        }
        int rc = json_object_set_new(seen, id, json_integer((json_int_t)map->merged_count));
        free(id);
        if (rc < 0 || !items_push(p, &map->merged, &map->merged_count, &map->merged_cap, key) ||
            !items_push(p, &map->merged, &map->merged_count, &map->merged_cap, value))
            goto out;
    }
    if (map->merged == NULL) {
        /* only empty merges: an empty map, not "the same as items" */
        map->merged = malloc(sizeof(*map->merged));
        if (map->merged == NULL) {
            fail(p, 0, 0, "out of memory");
            goto out;
        }
    }
    ok = true;
out:
    json_decref(seen);
    return ok;
}

static bool on_scalar(yparse *p, const yaml_event_t *ev)
{
    ynode *node = node_new(p, YNODE_SCALAR, &ev->start_mark);
    if (node == NULL)
        return false;
    const char *text = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    /* SnakeYAML resolves a scalar tagged "!" as if it were plain, even when quoted */
    if (tag != NULL && strcmp(tag, "!") != 0)
        node->value = resolve_tagged(p, node, tag, text, len);
    else if (tag != NULL || ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
        node->value = resolve_plain(p, node, text, len);
    else
        node->value = json_stringn(text, len);
    if (node->value == NULL) {
        /* libyaml hands out valid UTF-8, so this is memory */
        fail(p, node->line, node->col, "out of memory");
        return false;
    }
    return anchor_register(p, ev->data.scalar.anchor) && node_attach(p, node);
}

static bool on_collection_start(yparse *p, const yaml_event_t *ev, ynode_kind kind)
{
    const char *tag = (const char *)(kind == YNODE_MAP ? ev->data.mapping_start.tag
                                                       : ev->data.sequence_start.tag);
    const yaml_char_t *anchor =
        kind == YNODE_MAP ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
    unsigned line = (unsigned)ev->start_mark.line + 1, col = (unsigned)ev->start_mark.column + 1;

    if (tag != NULL && strcmp(tag, "!") != 0 &&
        strcmp(tag, kind == YNODE_MAP ? TAG_PREFIX "map" : TAG_PREFIX "seq") != 0) {
        fail(p, line, col, "unsupported tag %s", tag);
        return false;
    }
    if (p->depth >= p->limits->max_depth) {
        fail(p, line, col, "nesting deeper than %u", p->limits->max_depth);
        return false;
    }
    ynode *node = node_new(p, kind, &ev->start_mark);
    if (node == NULL || !anchor_register(p, anchor) || !node_attach(p, node))
        return false;
    node->open = true;
    p->stack[p->depth++] = node;
    return true;
}

static bool on_collection_end(yparse *p)
{
    ynode *node = p->stack[--p->depth];
    node->open = false;
    if (node->kind == YNODE_MAP)
        return map_close(p, node);
    return true;
}

static bool on_alias(yparse *p, const yaml_event_t *ev)
{
    const char *name = (const char *)ev->data.alias.anchor;
    unsigned line = (unsigned)ev->start_mark.line + 1, col = (unsigned)ev->start_mark.column + 1;
    json_t *index = json_object_get(p->anchors, name);
    if (index == NULL) {
        fail(p, line, col, "unknown alias *%.100s", name);
        return false;
    }
    ynode *node = p->nodes[json_integer_value(index)];
    if (node->open) {
        fail(p, line, col, "alias *%.100s refers to a collection that contains it", name);
        return false;
    }
    p->aliases++;
    return node_attach(p, node);
}

/* ---- flattening (Spring's YamlProcessor.buildFlattenedMap) ---- */

static bool key_reserve(yparse *p, size_t extra, const ynode *at)
{
    if (p->pos.len - p->pos.skip + extra > p->limits->max_key_len) {
        fail(p, at->line, at->col, "key longer than %zu bytes", p->limits->max_key_len);
        return false;
    }
    if (p->pos.len + extra + 1 > p->key_cap) {
        size_t cap = (p->pos.len + extra + 1) * 2;
        char *grown = realloc(p->key, cap);
        if (grown == NULL) {
            fail(p, 0, 0, "out of memory");
            return false;
        }
        p->key = grown;
        p->key_cap = cap;
    }
    return true;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/*
 * Appends one path segment the way buildFlattenedMap joins keys: "[..]" directly, anything
 * else after a dot, and no prefix at all when the path has no text (StringUtils.hasText).
 */
static bool key_push(yparse *p, const char *segment, size_t len, const ynode *at)
{
    bool has_path = p->pos.first_text != SIZE_MAX;
    if (!has_path)
        p->pos.skip = p->pos.len;
    bool dot = has_path && !(len > 0 && segment[0] == '[');
    if (!key_reserve(p, len + (dot ? 1 : 0), at))
        return false;
    if (dot)
        p->key[p->pos.len++] = '.';
    for (size_t i = 0; i < len && p->pos.first_text == SIZE_MAX; i++)
        if (!is_blank(segment[i]))
            p->pos.first_text = p->pos.len + i;
    memcpy(p->key + p->pos.len, segment, len);
    p->pos.len += len;
    p->key[p->pos.len] = '\0';
    return true;
}

static void key_restore(yparse *p, keypos saved)
{
    p->pos = saved;
    p->key[saved.len] = '\0';
}

static bool emit(yparse *p, confdoc *doc, json_t *value, const ynode *at)
{
    if (++p->entries > p->limits->max_entries) {
        if (p->aliases > 0)
            fail(p, at->line, at->col, "alias expansion exceeds %zu entries",
                 p->limits->max_entries);
        else
            fail(p, at->line, at->col, "more than %zu entries", p->limits->max_entries);
        json_decref(value);
        return false;
    }
    char origin[32];
    snprintf(origin, sizeof(origin), "%u:%u", at->line, at->col);
    const char *key = p->key + p->pos.skip;
    if (json_object_set_new(doc->props, key, value) < 0 ||
        json_object_set_new(doc->origins, key, json_string(origin)) < 0) {
        fail(p, 0, 0, "out of memory");
        return false;
    }
    return true;
}

static bool flatten(yparse *p, confdoc *doc, const ynode *node, unsigned depth);

static bool flatten_map(yparse *p, confdoc *doc, const ynode *map, unsigned depth)
{
    ynode *const *tuples = map->merged ? map->merged : map->items;
    size_t count = map->merged ? map->merged_count : map->count;
    keypos saved = p->pos;
    for (size_t i = 0; i < count; i += 2) {
        const ynode *key = tuples[i];
        char *text = scalar_to_text(key->value);
        if (text == NULL) {
            fail(p, 0, 0, "out of memory");
            return false;
        }
        bool ok;
        if (json_is_string(key->value) && !key->number_text) {
            ok = key_push(p, text, strlen(text), key);
        } else {
            /* Spring's asMap: a non-string key becomes "[key]" */
            size_t len = strlen(text);
            char *bracketed = malloc(len + 3);
            ok = bracketed != NULL;
            if (ok) {
                bracketed[0] = '[';
                memcpy(bracketed + 1, text, len);
                bracketed[len + 1] = ']';
                bracketed[len + 2] = '\0';
                ok = key_push(p, bracketed, len + 2, key);
                free(bracketed);
            } else {
                fail(p, 0, 0, "out of memory");
            }
        }
        free(text);
        if (!ok || !flatten(p, doc, tuples[i + 1], depth + 1))
            return false;
        key_restore(p, saved);
    }
    return true;
}

static bool flatten(yparse *p, confdoc *doc, const ynode *node, unsigned depth)
{
    if (++p->work > p->limits->max_entries * WORK_PER_ENTRY) {
        fail(p, node->line, node->col, "alias expansion exceeds %zu entries",
             p->limits->max_entries);
        return false;
    }
    if (node->kind == YNODE_SCALAR) {
        if (node->merge_key) {
            fail(p, node->line, node->col, "merge key << used as a value");
            return false;
        }
        json_t *value = json_is_null(node->value) ? json_string("") : json_incref(node->value);
        return emit(p, doc, value, node);
    }
    if (depth >= p->limits->max_depth) {
        fail(p, node->line, node->col, "nesting deeper than %u", p->limits->max_depth);
        return false;
    }
    if (node->kind == YNODE_MAP)
        return flatten_map(p, doc, node, depth);
    if (node->count == 0)
        return emit(p, doc, json_string(""), node);
    keypos saved = p->pos;
    for (size_t i = 0; i < node->count; i++) {
        char segment[32];
        int n = snprintf(segment, sizeof(segment), "[%zu]", i);
        if (!key_push(p, segment, (size_t)n, node) || !flatten(p, doc, node->items[i], depth + 1))
            return false;
        key_restore(p, saved);
    }
    return true;
}

/* Joins "k" or "k[0]", "k[1]"… into a comma-separated profile expression; NULL when absent. */
static char *profile_of(const confdoc *doc, const char *key, bool *oom)
{
    json_t *value = json_object_get(doc->props, key);
    if (value != NULL)
        return scalar_to_text(value);
    char *joined = NULL;
    size_t len = 0;
    for (size_t i = 0;; i++) {
        char indexed[80];
        snprintf(indexed, sizeof(indexed), "%s[%zu]", key, i);
        value = json_object_get(doc->props, indexed);
        if (value == NULL)
            break;
        char *text = scalar_to_text(value);
        char *grown = text ? realloc(joined, len + strlen(text) + 2) : NULL;
        if (grown == NULL) {
            free(text);
            free(joined);
            *oom = true;
            return NULL;
        }
        joined = grown;
        if (len > 0)
            joined[len++] = ',';
        memcpy(joined + len, text, strlen(text) + 1);
        len += strlen(text);
        free(text);
    }
    return joined;
}

/* A document is complete: flatten it into a new confdoc, unless Spring would skip it. */
static bool document_close(yparse *p, confdoc_list *list)
{
    const ynode *root = p->root;
    if (root == NULL)
        return true;
    /* Spring drops a document that loads as null or as an empty string (an empty list too) */
    if (root->kind == YNODE_SCALAR && !root->merge_key &&
        (json_is_null(root->value) ||
         (json_is_string(root->value) && json_string_length(root->value) == 0)))
        return true;
    if (root->kind == YNODE_SEQ && root->count == 0)
        return true;

    confdoc *doc = confdoc_list_append(list);
    if (doc == NULL) {
        fail(p, 0, 0, "out of memory");
        return false;
    }
    p->pos = (keypos){0, 0, SIZE_MAX};
    if (!key_reserve(p, 0, root))
        return false;
    p->key[0] = '\0';
    if (root->kind != YNODE_MAP && !key_push(p, "document", 8, root))
        return false;
    if (!flatten(p, doc, root, 0))
        return false;

    bool oom = false;
    doc->on_profile = profile_of(doc, "spring.config.activate.on-profile", &oom);
    if (doc->on_profile == NULL && !oom)
        doc->on_profile = profile_of(doc, "spring.profiles", &oom);
    if (oom) {
        fail(p, 0, 0, "out of memory");
        return false;
    }
    if (doc->on_profile != NULL && doc->on_profile[0] == '\0') {
        free(doc->on_profile);
        doc->on_profile = NULL;
    }
    return true;
}

/* libyaml's own complaint, at its own position. */
static void fail_libyaml(yparse *p, const yaml_parser_t *parser, const char *data)
{
    if (parser->error == YAML_MEMORY_ERROR) {
        fail(p, 0, 0, "out of memory");
        return;
    }
    unsigned line = (unsigned)parser->problem_mark.line + 1;
    unsigned col = (unsigned)parser->problem_mark.column + 1;
    if (parser->error == YAML_READER_ERROR) {
        /* the reader reports a byte offset, not a mark */
        line = 1;
        col = 1;
        for (size_t i = 0; i < parser->problem_offset; i++) {
            if (data[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
    }
    const char *problem = parser->problem ? parser->problem : "invalid YAML";
    if (parser->context != NULL)
        fail(p, line, col, "%s %s", parser->context, problem);
    else
        fail(p, line, col, "%s", problem);
}

int yamlconf_parse(confdoc_list *out, const char *data, size_t len, const confdoc_limits *limits,
                   confdoc_error *err)
{
    static const confdoc_limits defaults = CONFDOC_LIMITS_DEFAULT;
    confdoc_error scratch;
    confdoc_list list = {NULL, 0};
    yaml_parser_t parser;
    bool parser_ready = false, done = false;
    yparse p;

    memset(&p, 0, sizeof(p));
    p.limits = limits ? limits : &defaults;
    p.err = err ? err : &scratch;
    memset(p.err, 0, sizeof(*p.err));

    if (len > p.limits->max_bytes) {
        fail(&p, 0, 0, "file larger than %zu bytes", p.limits->max_bytes);
        goto out;
    }
    p.anchors = json_object();
    p.stack = calloc((size_t)p.limits->max_depth + 1, sizeof(*p.stack));
    if (p.anchors == NULL || p.stack == NULL || !yaml_parser_initialize(&parser)) {
        fail(&p, 0, 0, "out of memory");
        goto out;
    }
    parser_ready = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);

    while (!done && !p.failed) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            fail_libyaml(&p, &parser, data);
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++p.documents > p.limits->max_documents)
                fail(&p, (unsigned)ev.start_mark.line + 1, (unsigned)ev.start_mark.column + 1,
                     "more than %zu documents", p.limits->max_documents);
            break;
        case YAML_DOCUMENT_END_EVENT:
            document_close(&p, &list);
            nodes_free(&p);
            break;
        case YAML_ALIAS_EVENT:
            on_alias(&p, &ev);
            break;
        case YAML_SCALAR_EVENT:
            on_scalar(&p, &ev);
            break;
        case YAML_SEQUENCE_START_EVENT:
            on_collection_start(&p, &ev, YNODE_SEQ);
            break;
        case YAML_MAPPING_START_EVENT:
            on_collection_start(&p, &ev, YNODE_MAP);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            on_collection_end(&p);
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }

out:
    if (parser_ready)
        yaml_parser_delete(&parser);
    if (p.anchors != NULL)
        nodes_free(&p);
    free(p.nodes);
    free(p.stack);
    free(p.key);
    json_decref(p.anchors);
    if (p.failed) {
        confdoc_list_dispose(&list);
        return -1;
    }
    *out = list;
    return 0;
}
