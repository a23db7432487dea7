/*
 * routes — the route table (method, path shape, handler, permission) and the checks every
 * name, profile, label and resource path passes before anything reads the repository.
 */
#ifndef ALMANAC_ROUTES_H
#define ALMANAC_ROUTES_H

#include "http/request.h"

#include <stdbool.h>
#include <stddef.h>

/* Registers route names with metrics; call once before serving. */
void routes_init(void);
/* http_dispatch_fn: picks the route for req and runs it. */
int routes_dispatch(request *req, response *res, int *metrics_route);

/*
 * Validation, Spring's rules made strict (SPRING-COMPAT.md, "Routes" and "Past
 * vulnerabilities"). Each returns 0 or ERR_BAD_REQUEST with a message.
 *
 * routes_decode_name: a decoded application name or label; "(_)" becomes "/". Rejects a
 * leading "(_)", "..", "#", a backslash, control characters, a leading "/" and empty segments.
 * The result is written to out (size outsize).
 */
int routes_decode_name(const char *segment, const char *what, char *out, size_t outsize);
/* Comma-separated profiles, each [A-Za-z0-9-_.+@], starting and ending with a letter/digit. */
int routes_check_profiles(const char *profiles);
/* A repository-relative file path from segments ("(_)" -> "/"): no "..", ".", empty segments,
 * backslashes or control characters. Joined into out. */
int routes_join_path(char *const *segments, size_t count, char *out, size_t outsize);

#endif
