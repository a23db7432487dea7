/*
 * plainfile — finding a plain file in the search locations and resolving its placeholders (see
 * plainfile.h). It does not cache, tag or watch the result: render.c gives it an ETag and a
 * place in the response cache, watch.c parks callers on it.
 */
#include "compose/plainfile.h"

#include "errors.h"
#include "placeholder.h"
#include "source/repo.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CANDIDATE_MAX 1600

/* Writes "dir/stem-profile.ext" for path "stem.ext" in location dir ("" = root). */
static bool candidate_path(char *out, size_t size, const char *location, const char *path,
                           const char *profile, size_t profile_len)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    const char *sep = location[0] ? "/" : "";
    int n;
    if (profile == NULL)
        n = snprintf(out, size, "%s%s%s", location, sep, path);
    else if (dot != NULL && dot != (slash ? slash + 1 : path))
        n = snprintf(out, size, "%s%s%.*s-%.*s%s", location, sep, (int)(dot - path), path,
                     (int)profile_len, profile, dot);
    else
        n = snprintf(out, size, "%s%s%s-%.*s", location, sep, path, (int)profile_len, profile);
    return n > 0 && (size_t)n < size;
}

/*
 * Spring's resource lookup: the search locations from the last (most specific) to the root;
 * in each, `stem-{profile}.ext` for each profile in the order given (`default` meaning the
 * plain name), then the plain name. The first file that exists wins.
 */
static int find_file(struct repo *source, const environment *env, const char *profiles,
                     const char *path, char **data, size_t *len)
{
    char candidate[CANDIDATE_MAX];
    for (size_t i = env->nlocations; i-- > 0;) {
        const char *location = env->locations[i];
        for (const char *p = profiles;;) {
            size_t plen = strcspn(p, ",");
            bool is_default = plen == 7 && strncmp(p, "default", 7) == 0;
            if (candidate_path(candidate, sizeof(candidate), location, path,
                               is_default ? NULL : p, plen)) {
                int error = repo_read_file(source, env->version, candidate, data, len);
                if (error != ERR_NOT_FOUND)
                    return error;
            }
            if (p[plen] == '\0')
                break;
            p += plen + 1;
        }
        if (candidate_path(candidate, sizeof(candidate), location, path, NULL, 0)) {
            int error = repo_read_file(source, env->version, candidate, data, len);
            if (error != ERR_NOT_FOUND)
                return error;
        }
    }
    return ERR_NOT_FOUND;
}

int plainfile_render(char **text, size_t *len, struct repo *source, const environment *env,
                     const char *profiles, const char *path)
{
    int error = 0;
    char *data = NULL;
    size_t data_len = 0;
    json_t *merged = NULL;
    *text = NULL;
    *len = 0;

    if ((error = find_file(source, env, profiles, path, &data, &data_len)) < 0) {
        if (error == ERR_NOT_FOUND)
            err_set(ERR_NOT_FOUND, "no file %s", path);
        goto out;
    }
    /* Unresolved on purpose: placeholder_resolve_text resolves the values it looks up, and an
     * escaped "\${" in a value must not be resolved a second time. */
    if ((merged = environment_merge(env)) == NULL ||
        (*text = placeholder_resolve_text(data, data_len, merged, len)) == NULL)
        error = err_set(ERR_NOMEM, "out of memory");
out:
    json_decref(merged);
    free(data);
    return error;
}
