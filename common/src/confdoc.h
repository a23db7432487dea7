/*
 * confdoc — the parsed, flattened form of one configuration file, shared by every parser.
 *
 * A file parses into a list of documents (YAML's `---`, .properties' `#---`). Each document is
 * a flat map in file order, "a.b[0].c" -> scalar, kept as a jansson object because jansson
 * already gives an ordered hash map with JSON rendering for free. Values are JSON strings,
 * integers, reals or booleans, typed the way Spring types them (YAML 1.1 scalars; .properties
 * values are always strings). A parallel object maps each key to the "LINE:COL" (1-based) of
 * its value, for Spring's v2 media type.
 *
 * This module owns only the types and their lifetime; yamlconf.c and propfile.c fill them.
 */
#ifndef ALMANAC_CONFDOC_H
#define ALMANAC_CONFDOC_H

#include <jansson.h>
#include <stddef.h>

typedef struct confdoc {
    json_t *props;     /* object: flattened key -> string/integer/real/true/false, file order */
    json_t *origins;   /* object: key -> "LINE:COL" string of the value's position */
    char *on_profile;  /* spring.config.activate.on-profile (or legacy spring.profiles), or NULL */
    unsigned index;    /* 0-based index among the file's non-empty documents */
} confdoc;

typedef struct confdoc_list {
    confdoc *docs;
    size_t count;
} confdoc_list;

/* What a parser reports when it rejects its input. */
typedef struct confdoc_error {
    unsigned line; /* 1-based; 0 when unknown */
    unsigned col;  /* 1-based; 0 when unknown */
    char message[256];
} confdoc_error;

/*
 * Caps on everything the author of a file controls. A parser that hits one fails with a
 * message naming the limit; it never allocates in proportion to a hostile expansion.
 */
typedef struct confdoc_limits {
    size_t max_bytes;      /* size of the whole file */
    unsigned max_depth;    /* nesting of maps and lists */
    size_t max_key_len;    /* length of one flattened key */
    size_t max_entries;    /* flattened keys in one file, aliases expanded (billion laughs) */
    size_t max_documents;  /* documents in one file */
} confdoc_limits;

#define CONFDOC_LIMITS_DEFAULT                                                                     \
    {                                                                                              \
        .max_bytes = 4u << 20, .max_depth = 64, .max_key_len = 4096, .max_entries = 100000,        \
        .max_documents = 1000                                                                      \
    }

/* Appends an empty document (props and origins allocated) and returns it, or NULL on OOM. */
confdoc *confdoc_list_append(confdoc_list *list);
/* Frees every document and resets the list to empty. Accepts an empty or zeroed list. */
void confdoc_list_dispose(confdoc_list *list);

#endif
