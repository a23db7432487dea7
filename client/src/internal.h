/*
 * internal.h — what the modules of libalmanac share with each other and nothing else sees.
 *
 * Internal functions are prefixed `alm__` (never exported: the build hides every symbol not
 * marked ALM_EXTERN), so they cannot clash with a program that links the static library.
 */
#ifndef ALMANAC_CLIENT_INTERNAL_H
#define ALMANAC_CLIENT_INTERNAL_H

#include "almanac.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Hard limits on what a server or a cache file can make the library hold. */
#define ALM__DEFAULT_MAX_RESPONSE ((size_t)16 << 20)
#define ALM__MAX_CACHE_FILE ((size_t)80 << 20) /* payload escaped in JSON plus a header */

/* error.c: records the calling thread's last error and returns `code`, for `return alm__error…`. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
int alm__error_set(int code, const char *fmt, ...);
/* Prepends "context: " to the calling thread's current message and sets its code to `code`. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
int alm__error_wrap(int code, const char *fmt, ...);

/* client.c */

/* Not public: alm__client_async_step's "not finished yet". */
#define ALM__INPROGRESS 1

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void alm__client_log(const alm_client *c, alm_log_level level, const char *fmt, ...);
/* Sends one formatted line to the caller's log_cb, in the numbering the caller's options use. */
void alm__client_log_deliver(const alm_client *c, alm_log_level level, const char *line);
/*
 * While set, the client's diagnostics (above its log level) go to `sink` instead of log_cb: a
 * watch with manual dispatch queues them for the caller's thread. Set and cleared only while no
 * request runs on another thread.
 */
typedef void (*alm__log_sink)(void *arg, alm_log_level level, const char *line);
void alm__client_set_log_sink(alm_client *c, alm__log_sink sink, void *arg);
/* Whether a failure may pass by itself: network errors, timeouts, 429 and 5xx. */
int alm__retryable(int error);
/* The client's boot retry policy with defaults filled in. */
void alm__client_retry_policy(const alm_client *c, alm_retry_policy *out);
/* 1 once after a long poll ended because its server went away (shutting down, connection
 * lost): the caller should poll the next server soon, after a small random pause. */
int alm__client_server_left(alm_client *c);
/* The watch's retry policy with defaults filled in. */
void alm__client_watch_policy(const alm_client *c, alm_retry_policy *out);
/*
 * The Retry-After of the last answer the client received, in milliseconds (delta-seconds or an
 * HTTP date), 0 when it had none; at most ALM__MAX_RETRY_AFTER_MS.
 */
#define ALM__MAX_RETRY_AFTER_MS (3600ul * 1000ul)
unsigned long alm__client_retry_after(const alm_client *c);
/* The HTTP status of the last answer (0 when no answer came). */
long alm__client_last_status(const alm_client *c);
/*
 * The pause before round `round` + 1 (from 1) under policy `p`: exponential from
 * `initial_ms`, capped at p->max_backoff_ms, moved by up to ±jitter.
 */
unsigned long alm__backoff_ms(const alm_retry_policy *p, unsigned long initial_ms,
                              unsigned int round);
/*
 * The long-poll without blocking, for a watch (one at a time per client). _open creates the
 * epoll descriptor that gathers libcurl's sockets and returns it (the same one again while
 * open); _poll_begin starts asking the servers from `etag` as alm_client_poll() does;
 * _step does what the descriptor and libcurl's timer say is ready and returns ALM__INPROGRESS
 * while the round over the servers goes on, then what alm_client_poll() would have returned;
 * _timeout_ms says when _step is due without activity on the descriptor (-1: not before);
 * _abort drops a poll in flight; _close also closes the descriptor (alm_client_free does).
 */
int alm__client_async_open(alm_client *c);
int alm__client_async_poll_begin(alm_client *c, const char *etag, unsigned int timeout_s);
int alm__client_async_step(alm_client *c, alm_config **out);
long alm__client_async_timeout_ms(const alm_client *c);
void alm__client_async_abort(alm_client *c);
void alm__client_async_close(alm_client *c);

/* token_file.c */

#include <sys/types.h>
#include <time.h>

/* A bearer token read from a file and read again when the file changes. */
typedef struct alm__token_file {
    char *path; /* NULL: no token file */
    char *token;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} alm__token_file;

/* Copies path (NULL or "": none) and reads the token once. 0, ALM_EINVALID, ALM_ENOMEM. */
int alm__token_file_init(alm__token_file *tf, const char *path);
void alm__token_file_dispose(alm__token_file *tf);
/*
 * The token to send now (NULL without a token file), read again if the file changed. A file
 * that cannot be read after a first success keeps the last token (the next request tries
 * again); before any success it is an error.
 */
int alm__token_file_current(alm__token_file *tf, const char **token);

/* config.c */

/*
 * Parses an Environment like alm_config_parse() and stamps it with what came with it: the
 * answer's ETag (may be NULL), the time it was received and whether it came from the cache.
 */
int alm__config_from_json(alm_config **out, const char *json, size_t len, const char *etag,
                          int64_t fetched_at, int stale);

/*
 * Resolves the `${…}` placeholders of the merged view's string values against the merged view
 * (common/'s resolver, as the server's documents). Only before the snapshot is shared.
 */
int alm__config_resolve(alm_config *cfg);

/* The merged entry of `key`, or NULL; sets no error (for lookups where absence is normal). */
const alm_config_entry *alm__config_entry_bykey(const alm_config *cfg, const char *key);

/* cache.c */

/* The identity of a request; a cache file is only good for the request that wrote it. */
typedef struct alm__cache_key {
    const char *application;
    const char *profiles;
    const char *label; /* NULL for the default label */
} alm__cache_key;

/*
 * Writes `payload` (the Environment exactly as received) to `path` atomically: a temporary file
 * in the same directory, mode 0600, fsync, rename over `path`, fsync of the directory.
 * Errors: ALM_ECACHE (with the system's reason), ALM_ENOMEM.
 */
int alm__cache_write(const char *path, const alm__cache_key *key, const char *payload, size_t len,
                     const char *etag, int64_t fetched_at);

/*
 * Reads a cache file back into a stale snapshot after checking its format version, its
 * checksum and that it was written for `key`. Errors: ALM_ENOTFOUND (no such file), ALM_ECACHE
 * (unreadable, damaged, newer format, another request's), ALM_ENOMEM.
 */
int alm__cache_read(alm_config **out, const char *path, const alm__cache_key *key);

/* alm__cache_read() on the file's contents already in memory; `path` is for messages only. */
int alm__cache_parse(alm_config **out, const char *text, size_t len, const char *path,
                     const alm__cache_key *key);

/* SHA-256 of `data` as 64 lower-case hex digits plus NUL. */
int alm__sha256_hex(char out[65], const void *data, size_t len);

#endif
