/*
 * placeholder — Spring's ${key} / ${key:default} resolution against a flat property map.
 *
 * Nested placeholders resolve (${a:${b}}), an unresolvable one is left as written, `\${` yields
 * a literal `${`, and cycles or runaway nesting stop at a fixed depth instead of recursing.
 */
#ifndef ALMANAC_PLACEHOLDER_H
#define ALMANAC_PLACEHOLDER_H

#include <jansson.h>
#include <stddef.h>

/* Resolves every string value of flat in place, looking keys up in flat itself. -1 on OOM. */
int placeholder_resolve_map(json_t *flat);
/* Resolves text against flat. Returns a new NUL-terminated string (caller frees), NULL on OOM. */
char *placeholder_resolve_text(const char *text, size_t len, const json_t *flat, size_t *out_len);

#endif
