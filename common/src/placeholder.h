/*
 * placeholder — Spring's ${key} / ${key:default} resolution against a flat property map.
 *
 * Nested placeholders resolve (${a:${b}}), an unresolvable one is left as written, `\${` yields
 * a literal `${`, and cycles or runaway nesting stop at a fixed depth instead of recursing: the
 * outermost placeholder involved is left as written, the rest of the text still resolves.
 * Numbers and booleans referenced are used in Spring's text form. A value whose resolution
 * would exceed 1 MiB is left entirely as written, and one call does a bounded amount of work.
 */
#ifndef ALMANAC_PLACEHOLDER_H
#define ALMANAC_PLACEHOLDER_H

#include <jansson.h>
#include <stddef.h>

/* Resolves every string value of flat in place, looking keys up in flat itself. -1 on OOM. */
int placeholder_resolve_map(json_t *flat);
/*
 * Resolves text against flat (whose values are resolved in turn; a map that was already
 * resolved is fine, except that a literal `${` produced by an escape would be resolved again).
 * Returns a new NUL-terminated string (caller frees) of *out_len bytes, NULL on OOM. A text over
 * 8 MiB, or one that would grow by more than 4 MiB, is returned unchanged.
 */
char *placeholder_resolve_text(const char *text, size_t len, const json_t *flat, size_t *out_len);

#endif
