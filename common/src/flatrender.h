/*
 * flatrender — one flat property map (key order = document order) rendered as the documents
 * Spring's /{app}-{profiles}.{properties,yml,json} endpoints return, and as environment
 * variables for the CLI.
 *
 * The map is a jansson object of flattened keys ("a.b[0].c") to scalars. Rendering rebuilds the
 * tree (a key that is both a leaf and a parent keeps the child as a compound key beside the
 * leaf, as Spring does). A malformed key ("a..b", "a[x") makes rendering fail with -1 and a
 * message, which the server answers with 400.
 */
#ifndef ALMANAC_FLATRENDER_H
#define ALMANAC_FLATRENDER_H

#include <jansson.h>
#include <stddef.h>

typedef struct flatrender_buf {
    char *data; /* NUL-terminated; caller frees */
    size_t len;
} flatrender_buf;

/* `key: value` lines joined by "\n", no trailing newline (Spring's .properties endpoint). */
int flatrender_properties(flatrender_buf *out, const json_t *flat, char *errmsg, size_t errsize);
/* Block-style YAML, indent 2, list items at the parent's indentation, ambiguous strings quoted. */
int flatrender_yaml(flatrender_buf *out, const json_t *flat, char *errmsg, size_t errsize);
/* The same tree as compact JSON. */
int flatrender_json(flatrender_buf *out, const json_t *flat, char *errmsg, size_t errsize);
/* The tree itself (new reference), for callers that embed it. NULL with errmsg on failure. */
json_t *flatrender_tree(const json_t *flat, char *errmsg, size_t errsize);
/* `FOO_BAR_BAZ_0=value` lines (foo.bar-baz[0] -> FOO_BAR_BAZ_0), one per key, "\n"-terminated. */
int flatrender_env(flatrender_buf *out, const json_t *flat, char *errmsg, size_t errsize);
/* The environment-variable name for one flattened key; caller frees. */
char *flatrender_env_name(const char *key);

#endif
