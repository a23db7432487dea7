/*
 * names — validation of the names a request carries, Spring's rules made strict (SPRING-COMPAT.md,
 * "Routes" and "Past vulnerabilities"): the CVE guard. Shared by every handler that takes a name
 * (the router, the cipher endpoints, the diff endpoints). Each returns 0 or ERR_BAD_REQUEST
 * with a message (err.h).
 */
#ifndef ALMANAC_NAMES_H
#define ALMANAC_NAMES_H

#include <stddef.h>

#define NAMES_MAX_LEN 512 /* an application list, a label, a profile list */

/*
 * A decoded application name (list) or label; "(_)" becomes "/". Rejects a leading "(_)",
 * "..", "#", a backslash, control characters, a leading "/" and empty or "." segments. The
 * result is written to out (size outsize). what names the thing in messages ("label").
 */
int names_decode(const char *segment, const char *what, char *out, size_t outsize);
/* Comma-separated profiles, each [A-Za-z0-9-_.+@], starting and ending with a letter/digit. */
int names_check_profiles(const char *profiles);
/* A repository-relative file path from segments ("(_)" -> "/"): no "..", ".", empty segments,
 * backslashes or control characters. Joined into out. */
int names_join_path(char *const *segments, size_t count, char *out, size_t outsize);

#endif
