/*
 * plainfile — a plain file of the repository as `GET /{app}/{profile}/{label}/{path}` serves it:
 * found in the search locations the way Spring's resource repository finds it (a
 * profile-specific variant `stem-{profile}.ext` first), placeholders resolved from the
 * application's merged Environment.
 */
#ifndef ALMANAC_PLAINFILE_H
#define ALMANAC_PLAINFILE_H

#include "compose/environment.h"

#include <stddef.h>

struct repo;

/*
 * The rendered bytes of `path` (validated, slashes as "/") for env, which the caller composed
 * for (applications, profiles). On success *text is malloc'd (the caller frees it) and NUL
 * terminated. Errors: ERR_NOT_FOUND (no such file in any location), those of repo_read_file,
 * ERR_NOMEM.
 */
int plainfile_render(char **text, size_t *len, struct repo *source, const environment *env,
                     const char *profiles, const char *path);

#endif
