/*
 * etag — the one home of Almanac's entity tags: how one is computed (a digest of the bytes that
 * decide the answer), how a client's `If-None-Match` is matched against it, and how a tag a
 * watcher sends back (`?watch=`) is normalised before it is compared. Every rendered answer
 * (compose/render.c), the router's 304s (api/routes.c) and the long polls (change/watch.c) go
 * through here, so a tag means the same thing on every path.
 */
#ifndef ALMANAC_ETAG_H
#define ALMANAC_ETAG_H

#include <stdbool.h>
#include <stddef.h>

#define ETAG_SIZE 40 /* a quoted 32-hex-digit digest and NUL, with room to spare */

/* The tag of data under kind (a format name: the same bytes as v1 and as YAML differ):
 * SHA-256 of kind, a NUL and data, first 128 bits as quoted lower-case hex. */
void etag_of_bytes(const char *kind, const char *data, size_t len, char etag[ETAG_SIZE]);

/* `If-None-Match` (NULL: absent) against our quoted tag: `*`, or ours among the listed (weak or
 * strong) tags. RFC 9110's weak comparison, which is what a GET needs. */
bool etag_matches(const char *if_none_match, const char *etag);

/* A tag as a watcher sent it (`"abc"`, `abc` or `W/"abc"`), in our quoted form. */
void etag_normalise(const char *given, char out[ETAG_SIZE]);

#endif
