/*
 * profile_expr — Spring's profile expressions (`Profiles.of`), as found in a document's
 * `spring.config.activate.on-profile`: names, `!`, `&`, `|` and parentheses, `&` and `|` not
 * mixed without parentheses; a comma-separated list matches when any of its expressions does.
 */
#ifndef ALMANAC_PROFILE_EXPR_H
#define ALMANAC_PROFILE_EXPR_H

#include <stddef.h>

#define PROFILE_EXPR_MAX_LEN 4096
#define PROFILE_EXPR_MAX_DEPTH 32

/*
 * 1 when expr matches the active profiles, 0 when it does not, -1 when expr is malformed (then
 * errmsg, if not NULL, says why; it quotes the expression, which comes from a file, not a
 * secret).
 */
int profile_expr_match(const char *expr, const char *const *active, size_t nactive, char *errmsg,
                       size_t errsize);

/* 0 when expr is well formed, -1 with errmsg otherwise. */
int profile_expr_validate(const char *expr, char *errmsg, size_t errsize);

#endif
