/*
 * profile_expr — evaluates Spring profile expressions against a set of active profiles.
 *
 * The grammar and its quirks follow Spring Framework's ProfilesParser, because a repository
 * written for Spring must select the same documents here: tokens are split at `(`, `)`, `&`,
 * `|` and `!` and trimmed; a run of one operator joins its operands; mixing `&` and `|` at one
 * level is an error; `!` applies to the next name or parenthesised group. The expression is
 * evaluated while it is parsed (Spring builds a predicate first; the result is the same).
 * This module owns no state; it does not know where expressions come from.
 */
#include "profile_expr.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

typedef enum { CTX_NONE, CTX_PAREN, CTX_NEGATE } parse_context;
typedef enum { OP_NONE, OP_AND, OP_OR } parse_op;

typedef struct parser {
    const char *expr; /* the whole expression, for messages */
    const char *pos;
    const char *end;
    const char *const *active;
    size_t nactive;
    unsigned depth;
    char *errmsg;
    size_t errsize;
    bool failed;
} parser;

/* One token: a delimiter character, or the trimmed text up to the next delimiter. */
typedef struct token {
    const char *start;
    size_t len;
    bool delim;
} token;

static bool is_delim(char c)
{
    return c == '(' || c == ')' || c == '&' || c == '|' || c == '!';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool next_token(parser *p, token *t)
{
    for (;;) {
        if (p->pos >= p->end)
            return false;
        if (is_delim(*p->pos)) {
            t->start = p->pos++;
            t->len = 1;
            t->delim = true;
            return true;
        }
        const char *s = p->pos;
        while (p->pos < p->end && !is_delim(*p->pos))
            p->pos++;
        const char *e = p->pos;
        while (s < e && is_space(*s))
            s++;
        while (e > s && is_space(e[-1]))
            e--;
        if (e > s) {
            t->start = s;
            t->len = (size_t)(e - s);
            t->delim = false;
            return true;
        }
    }
}

static int fail(parser *p, const char *reason)
{
    if (!p->failed && p->errmsg != NULL && p->errsize > 0)
        snprintf(p->errmsg, p->errsize, "malformed profile expression [%.*s]: %s",
                 (int)(p->end - p->expr), p->expr, reason);
    p->failed = true;
    return -1;
}

static bool is_active(const parser *p, const char *name, size_t len)
{
    for (size_t i = 0; i < p->nactive; i++)
        if (strlen(p->active[i]) == len && memcmp(p->active[i], name, len) == 0)
            return true;
    return false;
}

/* The elements seen so far at one level, joined by that level's operator. */
typedef struct level {
    size_t count;
    bool all; /* AND of the elements */
    bool any; /* OR of the elements */
    parse_op op;
} level;

static void level_reset(level *l)
{
    l->count = 0;
    l->all = true;
    l->any = false;
    l->op = OP_NONE;
}

static void level_add(level *l, bool value)
{
    l->count++;
    l->all = l->all && value;
    l->any = l->any || value;
}

/* 0/1, or -1 when the level is empty (an operator without operands, "()", a lone "!"). */
static int level_merge(parser *p, const level *l)
{
    if (l->count == 0)
        return fail(p, "an operator or parenthesis without an operand");
    if (l->count == 1)
        return l->any ? 1 : 0;
    return (l->op == OP_AND ? l->all : l->any) ? 1 : 0;
}

static int parse_tokens(parser *p, parse_context context)
{
    level l;
    token t;
    int v;

    if (++p->depth > PROFILE_EXPR_MAX_DEPTH)
        return fail(p, "nested too deeply");
    level_reset(&l);
    while (next_token(p, &t)) {
        if (!t.delim) {
            bool value = is_active(p, t.start, t.len);
            if (context == CTX_NEGATE) {
                p->depth--;
                return value ? 1 : 0;
            }
            level_add(&l, value);
            continue;
        }
        switch (*t.start) {
        case '(':
            if ((v = parse_tokens(p, CTX_PAREN)) < 0)
                return -1;
            if (context == CTX_NEGATE) {
                p->depth--;
                return v;
            }
            level_add(&l, v == 1);
            break;
        case '&':
        case '|': {
            parse_op op = *t.start == '&' ? OP_AND : OP_OR;
            if (l.op != OP_NONE && l.op != op)
                return fail(p, "'&' and '|' mixed without parentheses");
            l.op = op;
            break;
        }
        case '!':
            if ((v = parse_tokens(p, CTX_NEGATE)) < 0)
                return -1;
            level_add(&l, v == 0);
            break;
        default: /* ')' */
            if ((v = level_merge(p, &l)) < 0)
                return -1;
            if (context == CTX_PAREN) {
                p->depth--;
                return v;
            }
            level_reset(&l);
            level_add(&l, v == 1);
            break;
        }
    }
    p->depth--;
    return level_merge(p, &l);
}

/* Evaluates one expression of a comma-separated list. */
static int eval_one(const char *expr, size_t len, const char *const *active, size_t nactive,
                    char *errmsg, size_t errsize)
{
    parser p = {.expr = expr,
                .pos = expr,
                .end = expr + len,
                .active = active,
                .nactive = nactive,
                .errmsg = errmsg,
                .errsize = errsize};
    const char *s = expr;
    while (s < p.end && is_space(*s))
        s++;
    if (s == p.end)
        return fail(&p, "must contain text");
    return parse_tokens(&p, CTX_NONE);
}

int profile_expr_match(const char *expr, const char *const *active, size_t nactive, char *errmsg,
                       size_t errsize)
{
    bool matched = false;
    size_t total;

    if (expr == NULL)
        return 1;
    total = strlen(expr);
    if (total > PROFILE_EXPR_MAX_LEN) {
        if (errmsg != NULL && errsize > 0)
            snprintf(errmsg, errsize, "profile expression longer than %d bytes",
                     PROFILE_EXPR_MAX_LEN);
        return -1;
    }
    /* Every element is evaluated, even after a match, so a malformed one is always reported. */
    for (const char *s = expr;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
        int v = eval_one(s, len, active, nactive, errmsg, errsize);
        if (v < 0)
            return -1;
        matched = matched || v == 1;
        if (comma == NULL)
            break;
        s = comma + 1;
    }
    return matched ? 1 : 0;
}

int profile_expr_validate(const char *expr, char *errmsg, size_t errsize)
{
    return profile_expr_match(expr, NULL, 0, errmsg, errsize) < 0 ? -1 : 0;
}
