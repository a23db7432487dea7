/*
 * scalar — Spring's text form of a typed value: how Java's Double.toString, Long.toString and
 * Boolean.toString would print it. Used wherever a flat value becomes text (.properties and
 * .yml documents, placeholders, environment variables).
 */
#ifndef ALMANAC_SCALAR_H
#define ALMANAC_SCALAR_H

#include <jansson.h>
#include <stddef.h>

/* Java's Double.toString: 1.1 -> "1.1", 1000 -> "1000.0", 1e7 -> "1.0E7", NaN -> "NaN". */
void scalar_format_double(double value, char *buf, size_t size);

/* Text of a string/integer/real/boolean JSON scalar; "" for null. Caller frees. NULL on OOM. */
char *scalar_to_text(const json_t *value);

#endif
