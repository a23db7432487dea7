/*
 * errors — the server's internal error codes and the per-thread message that goes with them.
 *
 * Every module returns 0 or a negative err_code and sets a message with err_set(); http.c maps
 * codes to HTTP status through one table (err_http_status), so every handler answers the same
 * way. Messages are shown to callers: never put a secret in one.
 */
#ifndef ALMANAC_ERRORS_H
#define ALMANAC_ERRORS_H

typedef enum {
    ERR_NONE = 0,
    ERR_NOT_FOUND = -1,     /* unknown label, file, route: 404 */
    ERR_BAD_REQUEST = -2,   /* malformed name, profile, key, body: 400 */
    ERR_UNAUTHORIZED = -3,  /* 401 */
    ERR_FORBIDDEN = -4,     /* 403 */
    ERR_METHOD = -5,        /* 405 */
    ERR_TOO_LARGE = -6,     /* a body or file over its cap: 413 */
    ERR_CONFIG = -7,        /* a broken file in the repository that the request needs: 500 */
    ERR_GIT = -8,           /* the Git layer failed: 500 */
    ERR_NOMEM = -9,         /* 500 */
    ERR_INTERNAL = -10,     /* 500 */
    ERR_UNAVAILABLE = -11,  /* 503 */
    ERR_NO_KEY = -12,       /* encryption requested without a key: 404 (Spring's NO_KEY) */
    ERR_INVALID_CIPHER = -13, /* text not encrypted with this key: 400 (Spring's INVALID) */
    ERR_TOO_MANY = -14        /* a per-client or global limit on concurrent use: 429 */
} err_code;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
/* Records code and message for this thread and returns code, so `return err_set(...)` works. */
int err_set(int code, const char *fmt, ...);
/* The message of the last err_set on this thread ("" if none). */
const char *err_message(void);
int err_last_code(void);
void err_clear(void);

/* HTTP status and reason phrase for a code ("Not Found", ...). */
unsigned err_http_status(int code);
const char *err_http_reason(unsigned status);

#endif
