/*
 * propfile — .properties files read the way Spring Boot's OriginTrackedPropertiesLoader reads
 * them (see propfile.h).
 *
 * The reader mirrors Java's character model on purpose, because Spring's quirks live there:
 * input bytes are ISO-8859-1 characters, line terminators (\n, \r, \r\n) are folded into \n and
 * counted the way LineNumberReader counts them, a `\` escape yields one UTF-16 unit (so \uD83D
 * \uDE00 pairs up into one code point when converted to UTF-8), and columns count logical
 * characters. Origins follow Spring's TextResourceOrigin: "LINE:COL", 1-based, taken where the
 * value starts — an empty value at the end of a line therefore reports the next line, column 0,
 * exactly as Spring does.
 *
 * Documents: a line that is exactly `#---` or `!---` (no leading whitespace, optional trailing
 * whitespace) starts a new document, unless the line before it was a comment with the same
 * prefix; a comment right after a separator, before any property, re-opens the previous
 * document (so comment banners made of `#---` lines never split a file). Empty documents are
 * dropped.
 *
 * Where Java would keep something jansson cannot hold, this module decides: a lone surrogate
 * becomes U+FFFD, and a NUL character (\u0000) is refused in keys (it stays in values, which
 * jansson stores with their length).
 *
 * This module does not own profile matching (on_profile is copied, not evaluated) nor merging.
 */
#include "propfile.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROFILE_KEY "spring.config.activate.on-profile"
#define LEGACY_PROFILE_KEY "spring.profiles"

/* A growable run of UTF-16 units: Java's StringBuilder, bounded by the input size. */
typedef struct {
    uint16_t *units;
    size_t len;
    size_t cap;
} u16buf;

typedef struct {
    const unsigned char *data;
    size_t len;
    size_t pos;
    unsigned long line;      /* line terminators read so far (LineNumberReader) */
    long column;             /* logical column of ch, -1 before the first character of a line */
    bool escaped;            /* ch came from a `\` escape */
    int32_t ch;              /* current UTF-16 unit, or -1 at the end of input */
    int32_t last_comment;    /* prefix of the previous line if it was a comment, else -1 */
    bool failed;             /* an error is recorded in err; ch is forced to -1 */
    bool at_end;             /* the end of input has been seen */
    unsigned long mark_line; /* where the construct being read started, for errors (1-based) */
    long mark_col;
    confdoc_error *err;
} reader;

typedef struct {
    json_t *props;
    json_t *origins;
} docmaps;

typedef struct {
    reader rd;
    const confdoc_limits *limits;
    confdoc_list *out;
    docmaps cur;
    size_t entries;
    unsigned long key_line; /* where the current key starts, for errors about it */
    long key_col;
    u16buf key;
    u16buf value;
} loader;

static void set_error(confdoc_error *err, unsigned long line, long col, const char *message)
{
    if (err == NULL)
        return;
    err->line = line > UINT32_MAX ? UINT32_MAX : (unsigned)line;
    err->col = col < 0 ? 0 : (col > (long)UINT32_MAX ? UINT32_MAX : (unsigned)col);
    snprintf(err->message, sizeof(err->message), "%s", message);
}

static void reader_mark(reader *rd)
{
    rd->mark_line = rd->line + 1;
    rd->mark_col = rd->column + 1;
}

static void reader_fail(reader *rd, const char *message)
{
    if (!rd->failed)
        set_error(rd->err, rd->mark_line, rd->mark_col, message);
    rd->failed = true;
    rd->ch = -1;
}

/*
 * One character with line terminators folded into \n, as LineNumberReader.read() does. Like
 * Java 16 and later, the end of a last line without a terminator counts as a line end.
 */
static int32_t raw_read(reader *rd)
{
    if (rd->failed)
        return -1;
    if (rd->pos >= rd->len) {
        if (!rd->at_end && rd->len > 0 && rd->data[rd->len - 1] != '\n' &&
            rd->data[rd->len - 1] != '\r')
            rd->line++;
        rd->at_end = true;
        return -1;
    }
    unsigned char c = rd->data[rd->pos++];
    if (c == '\r') {
        if (rd->pos < rd->len && rd->data[rd->pos] == '\n')
            rd->pos++;
        rd->line++;
        return '\n';
    }
    if (c == '\n')
        rd->line++;
    return c;
}

static bool is_whitespace(const reader *rd)
{
    return !rd->escaped && (rd->ch == ' ' || rd->ch == '\t' || rd->ch == '\f');
}

static bool is_eol(const reader *rd)
{
    return rd->ch == -1 || (!rd->escaped && rd->ch == '\n');
}

static void skip_whitespace(reader *rd)
{
    while (is_whitespace(rd)) {
        rd->ch = raw_read(rd);
        rd->column++;
    }
}

static int hex_digit(int32_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void read_unicode(reader *rd)
{
    int32_t value = 0;
    for (int i = 0; i < 4; i++) {
        int digit = hex_digit(raw_read(rd));
        if (digit < 0) {
            reader_fail(rd, "malformed \\uxxxx encoding");
            return;
        }
        value = (value << 4) + digit;
    }
    rd->ch = value;
}

/*
 * Advances to the next logical character: skips the leading whitespace of a line, decodes an
 * escape, and joins a `\`-continued line with the next one (whose leading whitespace is
 * dropped). A loop rather than recursion, so a file of a million continuation lines cannot
 * exhaust the stack. Returns false at the end of input.
 */
static bool reader_read(reader *rd)
{
    for (;;) {
        rd->escaped = false;
        rd->ch = raw_read(rd);
        rd->column++;
        if (rd->column == 0)
            skip_whitespace(rd);
        if (rd->ch == '\\') {
            reader_mark(rd);
            rd->escaped = true;
            rd->ch = raw_read(rd);
            const char *escapes = "trnf";
            const char *found = rd->ch > 0 ? strchr(escapes, (int)rd->ch) : NULL;
            if (found != NULL) {
                rd->ch = "\t\r\n\f"[found - escapes];
            } else if (rd->ch == '\n') {
                rd->column = -1;
                continue;
            } else if (rd->ch == 'u') {
                read_unicode(rd);
            }
        } else if (rd->ch == '\n') {
            rd->column = -1;
        }
        break;
    }
    return rd->ch != -1;
}

static void skip_comment(reader *rd)
{
    while (rd->ch != '\n' && rd->ch != -1)
        rd->ch = raw_read(rd);
    rd->column = -1;
}

static bool read_expect_hyphen(reader *rd)
{
    reader_read(rd);
    return rd->ch == '-';
}

/* The current `#` or `!` starts a line that is exactly `#---` (plus trailing whitespace). */
static bool is_new_document(reader *rd)
{
    if (rd->last_comment == rd->ch)
        return false;
    bool result = rd->column == 0;
    result = result && read_expect_hyphen(rd);
    result = result && read_expect_hyphen(rd);
    result = result && read_expect_hyphen(rd);
    if (!is_eol(rd)) {
        reader_read(rd);
        skip_whitespace(rd);
    }
    return result && is_eol(rd);
}

static int u16_push(u16buf *b, uint16_t unit)
{
    if (b->len == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        uint16_t *grown = realloc(b->units, cap * sizeof(*grown));
        if (grown == NULL)
            return -1;
        b->units = grown;
        b->cap = cap;
    }
    b->units[b->len++] = unit;
    return 0;
}

/*
 * UTF-16 units to UTF-8, surrogate pairs joined, lone surrogates replaced by U+FFFD. The
 * result holds at most 3 bytes per unit. NULL on OOM.
 */
static char *u16_to_utf8(const uint16_t *units, size_t count, size_t *out_len)
{
    char *out = malloc(count * 3 + 1);
    if (out == NULL)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        uint32_t cp = units[i];
        if (cp >= 0xD800 && cp <= 0xDBFF && i + 1 < count && units[i + 1] >= 0xDC00 &&
            units[i + 1] <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (units[i + 1] - 0xDC00u);
            i++;
        } else if (cp >= 0xD800 && cp <= 0xDFFF) {
            cp = 0xFFFD;
        }
        if (cp < 0x80) {
            out[n++] = (char)cp;
        } else if (cp < 0x800) {
            out[n++] = (char)(0xC0 | (cp >> 6));
            out[n++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out[n++] = (char)(0xE0 | (cp >> 12));
            out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[n++] = (char)(0x80 | (cp & 0x3F));
        } else {
            out[n++] = (char)(0xF0 | (cp >> 18));
            out[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
            out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[n++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    out[n] = '\0';
    *out_len = n;
    return out;
}

/* Reads a key up to its separator; the caller trims it (Java's String.trim). */
static int load_key(loader *ld)
{
    reader *rd = &ld->rd;
    ld->key.len = 0;
    bool previous_whitespace = false;
    while (!is_eol(rd)) {
        if (!rd->escaped && (rd->ch == '=' || rd->ch == ':')) {
            reader_read(rd);
            return 0;
        }
        if (!is_whitespace(rd) && previous_whitespace)
            return 0;
        previous_whitespace = is_whitespace(rd);
        if (u16_push(&ld->key, (uint16_t)rd->ch) < 0)
            return -1;
        reader_read(rd);
    }
    return 0;
}

/* Reads a value (or one element of a `key[]=` list) and where it starts. */
static int load_value(loader *ld, bool split_lists, char origin[48])
{
    reader *rd = &ld->rd;
    ld->value.len = 0;
    while (is_whitespace(rd) && !is_eol(rd))
        reader_read(rd);
    snprintf(origin, 48, "%lu:%ld", rd->line + 1, rd->column + 1);
    while (!is_eol(rd) && !(split_lists && !rd->escaped && rd->ch == ',')) {
        if (u16_push(&ld->value, (uint16_t)rd->ch) < 0)
            return -1;
        reader_read(rd);
    }
    return 0;
}

static int fail(loader *ld, const char *message)
{
    reader_fail(&ld->rd, message);
    return -1;
}

static int fail_limit(loader *ld, const char *what, size_t limit)
{
    char message[128];
    snprintf(message, sizeof(message), "%s (limit %zu)", what, limit);
    return fail(ld, message);
}

/* Document.put: an empty key is ignored; a repeated key keeps its first position. */
static int put(loader *ld, const char *key, size_t key_len, const char *origin)
{
    if (key_len == 0)
        return 0;
    ld->rd.mark_line = ld->key_line;
    ld->rd.mark_col = ld->key_col;
    if (strlen(key) != key_len)
        return fail(ld, "NUL character in a key");
    if (key_len > ld->limits->max_key_len)
        return fail_limit(ld, "key longer than max_key_len", ld->limits->max_key_len);
    if (json_object_get(ld->cur.props, key) == NULL && ++ld->entries > ld->limits->max_entries)
        return fail_limit(ld, "more keys than max_entries", ld->limits->max_entries);

    size_t value_len = 0;
    char *text = u16_to_utf8(ld->value.units, ld->value.len, &value_len);
    json_t *value = text ? json_stringn(text, value_len) : NULL;
    free(text);
    if (value == NULL || json_object_set_new(ld->cur.props, key, value) != 0 ||
        json_object_set_new(ld->cur.origins, key, json_string(origin)) != 0)
        return fail(ld, "out of memory");
    return 0;
}

static bool trim_char(uint16_t unit)
{
    return unit <= ' ';
}

static int load_key_and_value(loader *ld)
{
    reader *rd = &ld->rd;
    char origin[48];
    int error = 0;
    char *key = NULL;
    char *indexed = NULL;

    ld->key_line = rd->line + 1;
    ld->key_col = rd->column + 1;
    if (load_key(ld) < 0)
        return fail(ld, "out of memory");
    size_t start = 0, end = ld->key.len;
    while (start < end && trim_char(ld->key.units[start]))
        start++;
    while (end > start && trim_char(ld->key.units[end - 1]))
        end--;
    size_t key_len = 0;
    key = u16_to_utf8(ld->key.units + start, end - start, &key_len);
    if (key == NULL)
        return fail(ld, "out of memory");

    if (key_len >= 2 && key[key_len - 2] == '[' && key[key_len - 1] == ']') {
        key_len -= 2;
        key[key_len] = '\0';
        size_t index = 0;
        indexed = malloc(key_len + 32);
        if (indexed == NULL) {
            error = fail(ld, "out of memory");
            goto out;
        }
        do {
            if (load_value(ld, true, origin) < 0) {
                error = fail(ld, "out of memory");
                goto out;
            }
            memcpy(indexed, key, key_len);
            int n = snprintf(indexed + key_len, 32, "[%zu]", index++);
            if ((error = put(ld, indexed, key_len + (size_t)n, origin)) < 0)
                goto out;
            if (!is_eol(rd))
                reader_read(rd);
        } while (!is_eol(rd));
    } else {
        if (load_value(ld, false, origin) < 0) {
            error = fail(ld, "out of memory");
            goto out;
        }
        error = put(ld, key, key_len, origin);
    }
out:
    free(key);
    free(indexed);
    return error;
}

static int docmaps_new(docmaps *d)
{
    d->props = json_object();
    d->origins = json_object();
    return d->props && d->origins ? 0 : -1;
}

static void docmaps_release(docmaps *d)
{
    json_decref(d->props);
    json_decref(d->origins);
    d->props = d->origins = NULL;
}

/* Moves the current document into the output list (documents.add). */
static int push_document(loader *ld)
{
    if (ld->out->count >= ld->limits->max_documents)
        return fail_limit(ld, "more documents than max_documents", ld->limits->max_documents);
    confdoc *doc = confdoc_list_append(ld->out);
    if (doc == NULL)
        return fail(ld, "out of memory");
    json_decref(doc->props);
    json_decref(doc->origins);
    doc->props = ld->cur.props;
    doc->origins = ld->cur.origins;
    ld->cur.props = ld->cur.origins = NULL;
    return 0;
}

/* Takes the last document back out of the list to continue it (documents.remove). */
static void pop_document(loader *ld)
{
    confdoc *doc = &ld->out->docs[ld->out->count - 1];
    docmaps_release(&ld->cur);
    ld->cur.props = doc->props;
    ld->cur.origins = doc->origins;
    ld->out->count--;
}

static int set_profiles(confdoc_list *list)
{
    for (size_t i = 0; i < list->count; i++) {
        json_t *v = json_object_get(list->docs[i].props, PROFILE_KEY);
        if (v == NULL)
            v = json_object_get(list->docs[i].props, LEGACY_PROFILE_KEY);
        if (json_is_string(v)) {
            list->docs[i].on_profile = strdup(json_string_value(v));
            if (list->docs[i].on_profile == NULL)
                return -1;
        }
    }
    return 0;
}

static int load(loader *ld)
{
    reader *rd = &ld->rd;
    if (docmaps_new(&ld->cur) < 0)
        return fail(ld, "out of memory");
    while (reader_read(rd)) {
        if (rd->ch == '#' || rd->ch == '!') {
            int32_t prefix = rd->ch;
            if (is_new_document(rd)) {
                if (json_object_size(ld->cur.props) > 0) {
                    if (push_document(ld) < 0)
                        return -1;
                    if (docmaps_new(&ld->cur) < 0)
                        return fail(ld, "out of memory");
                }
            } else {
                if (json_object_size(ld->cur.props) == 0 && ld->out->count > 0)
                    pop_document(ld);
                rd->last_comment = prefix;
                skip_comment(rd);
            }
        } else {
            rd->last_comment = -1;
            if (load_key_and_value(ld) < 0)
                return -1;
        }
    }
    if (rd->failed)
        return -1;
    if (json_object_size(ld->cur.props) > 0 && push_document(ld) < 0)
        return -1;
    if (set_profiles(ld->out) < 0)
        return fail(ld, "out of memory");
    return 0;
}

int propfile_parse(confdoc_list *out, const char *data, size_t len, const confdoc_limits *limits,
                   confdoc_error *err)
{
    static const confdoc_limits defaults = CONFDOC_LIMITS_DEFAULT;
    loader ld;
    memset(&ld, 0, sizeof(ld));
    ld.limits = limits ? limits : &defaults;
    ld.out = out;
    ld.rd.data = (const unsigned char *)data;
    ld.rd.len = data ? len : 0;
    ld.rd.column = -1;
    ld.rd.last_comment = -1;
    ld.rd.err = err;
    if (err != NULL)
        memset(err, 0, sizeof(*err));
    out->docs = NULL;
    out->count = 0;

    int error = 0;
    if (len > ld.limits->max_bytes) {
        char message[96];
        snprintf(message, sizeof(message), "file larger than max_bytes (limit %zu)",
                 ld.limits->max_bytes);
        set_error(err, 0, 0, message);
        error = -1;
        goto out;
    }
    error = load(&ld);
out:
    if (error < 0)
        confdoc_list_dispose(out);
    docmaps_release(&ld.cur);
    free(ld.key.units);
    free(ld.value.units);
    return error;
}
