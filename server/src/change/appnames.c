/*
 * appnames — changed file path to application names (see appnames.h). Used by the webhook
 * answer and by refresh events.
 */
#include "change/appnames.h"

#include <stdlib.h>
#include <string.h>

static int add_unique(json_t *names, const char *name, size_t len)
{
    size_t i;
    json_t *value;
    json_array_foreach(names, i, value)
    {
        const char *existing = json_string_value(value);
        if (existing && strlen(existing) == len && memcmp(existing, name, len) == 0)
            return 0;
    }
    return json_array_append_new(names, json_stringn(name, len));
}

int appnames_add_from_path(json_t *names, const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t stem_len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    if (stem_len == 0)
        return 0;
    if ((stem_len == 11 && memcmp(base, "application", 11) == 0) ||
        (stem_len > 11 && memcmp(base, "application-", 12) == 0))
        return add_unique(names, "*", 1);
    /* The whole stem, then each prefix before a '-', longest first. */
    if (add_unique(names, base, stem_len) != 0)
        return -1;
    for (size_t i = stem_len; i-- > 1;)
        if (base[i] == '-' && add_unique(names, base, i) != 0)
            return -1;
    return 0;
}
