/*
 * router_fuzzer — a request path through everything that runs before the repository is
 * touched: splitting and percent-decoding (http.c), then every validation routes.c applies to
 * names, labels, profiles and resource paths. Whatever the input, a path that passes must
 * never name a parent directory.
 */
#include "errors.h"
#include "http/http.h"
#include "names.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_no_parent(const char *path)
{
    const char *p = path;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.')
            abort();
        if (end == NULL)
            return;
        p = end + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    char *path = malloc(size + 1);
    if (path == NULL)
        return 0;
    memcpy(path, data, size);
    path[size] = '\0';

    char *segments[REQUEST_MAX_SEGMENTS];
    size_t count = 0;
    if (http_split_path(path, segments, REQUEST_MAX_SEGMENTS, &count) == 0) {
        char out[1024];
        for (size_t i = 0; i < count; i++) {
            if (names_decode(segments[i], "name", out, sizeof(out)) == 0) {
                check_no_parent(out);
                if (out[0] == '/')
                    abort();
            }
            names_check_profiles(segments[i]);
        }
        if (count > 0 && names_join_path(segments, count, out, sizeof(out)) == 0) {
            check_no_parent(out);
            if (out[0] == '/' || strchr(out, '\\') != NULL)
                abort();
        }
    }
    free(path);
    return 0;
}
