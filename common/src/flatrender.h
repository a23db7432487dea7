/*
 * flatrender — one flat property map (key order = document order) rendered as the documents
 * Spring's /{app}-{profiles}.{properties,yml,json} endpoints return, and as environment
 * variables for the CLI.
 *
 * The map is a jansson object of flattened keys ("a.b[0].c") to scalars. Rendering rebuilds the
 * tree (a key that is both a leaf and a parent keeps the child as a compound key beside the
 * leaf, as Spring does). A malformed key ("a..b", ".a", "a.", "a[x", "a[", "a[]", "a[0]b",
 * "a[-1]") makes rendering fail with -1 and a message, which the server answers with 400; so do
 * lists padded far beyond the number of keys ("a[99999]" alone). A bracket whose content is not
 * a number is part of the name: "level[org.example]" is one key, dots and all.
 *
 * Every renderer lists keys without `[` first, then keys with `[` grouped by the text before
 * their first `[` (Spring's "lists come after scalars"); already merged maps keep their order.
 * Only the tree renderers (yaml, json, tree) look inside keys; properties and env never fail on
 * a key.
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
/*
 * `FOO_BAR_BAZ_0=value` lines (foo.bar-baz[0] -> FOO_BAR_BAZ_0), one per key, "\n"-terminated.
 * A value made only of [A-Za-z0-9_./:,@%+=-] is written as is; any other (empty, spaces, `$`,
 * quotes, newlines...) in POSIX shell single quotes with ' written as '\'', so the output can
 * be sourced by sh and read by dotenv parsers. Numbers and booleans as Spring prints them.
 */
int flatrender_env(flatrender_buf *out, const json_t *flat, char *errmsg, size_t errsize);
/*
 * The environment-variable name for one flattened key; caller frees, NULL on OOM. ASCII letters
 * upper-cased, digits kept, every other byte (`.`, `-`, `[`, `]`, non-ASCII...) becomes `_`;
 * runs of `_` collapse to one and leading/trailing ones go (a[0].b -> A_0_B). A name that would
 * start with a digit gets a leading `_`; an empty one is "_". Distinct keys can map to one name
 * (foo.bar and foo-bar): each still gets its own line, the later one winning when sourced.
 */
char *flatrender_env_name(const char *key);

#endif
