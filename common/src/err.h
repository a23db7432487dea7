/*
 * err — the one error convention of the server and of common/: a function that can fail
 * returns 0 or a negative err_code, and leaves a message for this thread with err_set(), to be
 * read back with err_last() (libgit2's git_error_last(): never NULL, per thread, overwritten
 * by the next failure). Callers pass failures up as they are, or add context with err_set
 * again; nobody hands buffers down for messages.
 *
 * The client library keeps its public alm_error_last() (almanac.h) and translates at its
 * edge. Messages may be shown to callers: never put a secret in one.
 */
#ifndef ALMANAC_ERR_H
#define ALMANAC_ERR_H

typedef enum {
    ERR_NONE = 0,
    ERR_NOT_FOUND = -1,     /* unknown label, file, route: 404 */
    ERR_BAD_REQUEST = -2,   /* malformed name, profile, key, body: 400 */
    ERR_UNAUTHORIZED = -3,  /* 401 */
    ERR_FORBIDDEN = -4,     /* 403 */
    ERR_METHOD = -5,        /* 405 */
    ERR_TOO_LARGE = -6,     /* a body or file over its cap: 413 */
    ERR_CONFIG = -7,        /* a broken file (in the repository, or given to the process): 500 */
    ERR_GIT = -8,           /* the Git layer failed: 500 */
    ERR_NOMEM = -9,         /* 500 */
    ERR_INTERNAL = -10,     /* 500 */
    ERR_UNAVAILABLE = -11,  /* 503 */
    ERR_NO_KEY = -12,       /* encryption requested without a key: 404 (Spring's NO_KEY) */
    ERR_INVALID_CIPHER = -13, /* text not encrypted with this key: 400 (Spring's INVALID) */
    ERR_TOO_MANY = -14        /* a per-client or global limit on concurrent use: 429 */
} err_code;

typedef struct err_info {
    int code;            /* the err_code of the last failure on this thread (0: none) */
    const char *message; /* its message; "" if none; valid until the next err_set on it */
} err_info;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
/* Records code and message for this thread and returns code, so `return err_set(...)` works. */
int err_set(int code, const char *fmt, ...);
/* The last failure on this thread; never NULL. */
const err_info *err_last(void);
/* Shorthands for err_last()->message and ->code. */
const char *err_message(void);
int err_last_code(void);
void err_clear(void);

#endif
