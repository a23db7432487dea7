/*
 * almanac.h — the public API of libalmanac, the C client of the Almanac configuration server.
 *
 * A service creates one client with its application name and profiles, fetches its
 * configuration when it boots, and reads values from the immutable snapshot it got back:
 *
 *     alm_client_options opts = ALM_CLIENT_OPTIONS_INIT;
 *     opts.server = "http://config:8888";
 *     opts.application = "orders";
 *     opts.profiles = "prod";
 *     opts.cache_file = "/var/cache/orders/almanac.json";
 *
 *     alm_client *client = NULL;
 *     alm_config *config = NULL;
 *     if (alm_client_new(&client, &opts) < 0 || alm_client_fetch(&config, client) < 0)
 *         die(alm_error_last()->message);
 *     int64_t pool = 10;
 *     alm_config_get_int64(&pool, config, "db.pool.size");
 *     ...
 *     alm_config_free(config);
 *     alm_client_free(client);
 *
 * Conventions (the same for every function below):
 * - Functions that can fail return `int`: 0 on success, a negative `ALM_E*` code on failure.
 *   The calling thread's `alm_error_last()` then describes the failure in one sentence.
 * - What the library allocates, the library frees: every `_new` has a `_free`, every `_free`
 *   accepts NULL. Strings handed out are owned by the object they came from and stay valid for
 *   that object's lifetime; callers never `free()` them.
 * - Nothing is printed, nothing exits or aborts: diagnostics go to the log callback set in the
 *   client options.
 *
 * Threading: an `alm_config` is immutable; any number of threads may read it and retain or free
 * references to it concurrently. An `alm_client` may be used by one thread at a time (calls on
 * one client must not overlap); distinct clients are independent. `alm_error_last()` is per
 * thread. The library initialises libcurl itself, once, in a thread-safe way.
 */
#ifndef ALMANAC_H
#define ALMANAC_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define ALM_EXTERN __attribute__((visibility("default")))
#else
#define ALM_EXTERN
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Version
 * ------------------------------------------------------------------------------------------- */

/* The version of this header. The build checks that it matches the project's version. */
#define ALM_VERSION_MAJOR 0
#define ALM_VERSION_MINOR 1
#define ALM_VERSION_PATCH 0
#define ALM_VERSION "0.1.0"
/* One number for comparisons: 0xMMmmpp. */
#define ALM_VERSION_NUM ((ALM_VERSION_MAJOR << 16) | (ALM_VERSION_MINOR << 8) | ALM_VERSION_PATCH)

/*
 * The version of the library actually loaded, which can differ from the header's when the
 * shared library was upgraded. Any out pointer may be NULL. Returns the version as a static
 * string ("0.1.0"); never fails.
 */
ALM_EXTERN const char *alm_version(int *major, int *minor, int *patch);

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

/* What a failing function returns. New codes may be added; treat unknown ones as ALM_ERROR. */
typedef enum alm_error_code {
    ALM_OK = 0,
    ALM_ERROR = -1,     /* a failure with no more specific code */
    ALM_ENOMEM = -2,    /* out of memory */
    ALM_EINVALID = -3,  /* an argument or option is invalid (NULL, empty, out of range) */
    ALM_ENOTFOUND = -4, /* no such key; or the server answered 404 (unknown label) */
    ALM_EAUTH = -5,     /* the server answered 401 or 403: credentials missing or refused */
    ALM_ETIMEOUT = -6,  /* the server did not answer within the configured timeouts */
    ALM_ENETWORK = -7,  /* the server could not be reached (DNS, connection, TLS handshake) */
    ALM_ESERVER = -8,   /* the server answered with a 5xx error */
    ALM_EPROTOCOL = -9, /* the server's answer is not what the protocol says it should be */
    ALM_ETOOBIG = -10,  /* the answer exceeds the configured size limit */
    ALM_ECACHE = -11,   /* the cache file was needed and is damaged, foreign or newer */
    ALM_ETYPE = -12,    /* the value exists but cannot be converted to the requested type */
    ALM_ERANGE = -13,   /* the value is a number outside the requested type's range */
    ALM_ETLS = -14      /* the server's TLS certificate could not be verified (see ca_file) */
} alm_error_code;

typedef struct alm_error {
    int code;            /* the alm_error_code of the last failure, ALM_OK when there was none */
    const char *message; /* one sentence, never NULL ("no error" when there was none) */
} alm_error;

/*
 * The last error raised on the calling thread. Never NULL. The struct and its message are
 * owned by the library and stay valid until the next call into the library on this thread.
 * Successful calls do not clear it; use alm_error_clear() for that.
 */
ALM_EXTERN const alm_error *alm_error_last(void);

/* Resets the calling thread's last error to ALM_OK / "no error". */
ALM_EXTERN void alm_error_clear(void);

/* A short static description of an error code ("not found"); never NULL. */
ALM_EXTERN const char *alm_strerror(int code);

/* ---------------------------------------------------------------------------------------------
 * Client options
 * ------------------------------------------------------------------------------------------- */

/*
 * Severity of a diagnostic. Zero is not a level: in the options it means "the default", INFO,
 * so a zeroed options struct does not ask for debug chatter. (Options of versions 1 and 2 used
 * the older numbering, DEBUG = 0 … ERROR = 3; the library still reads and calls back that way
 * for a caller that says version 1 or 2.)
 */
typedef enum alm_log_level {
    ALM_LOG_DEFAULT = 0, /* options only: ALM_LOG_INFO */
    ALM_LOG_DEBUG = 1,   /* each request and each attempt */
    ALM_LOG_INFO = 2,    /* a change of configuration, an outage ending */
    ALM_LOG_WARN = 3,    /* an outage beginning, a fallback to the cache, a cache not written */
    ALM_LOG_ERROR = 4    /* a failure the library cannot ride out by itself */
} alm_log_level;

/*
 * Receives the library's diagnostics (retries, fallbacks to the cache, cache write failures).
 * `message` is one line without a trailing newline, valid only during the call. It must not
 * call back into the same client or watch. Called on the thread that called into the library;
 * a watch's own diagnostics come from the watch thread, or, with manual_dispatch, from
 * alm_watch_dispatch() on the caller's thread (see alm_watch_options).
 */
typedef void (*alm_log_cb)(alm_log_level level, const char *message, void *payload);

/*
 * Retry of a failed request, for the boot fetch (`retry` in the options) and, separately, for
 * the watch (`watch_retry`): pauses that start at `initial_backoff_ms`, grow by `multiplier`
 * after each failed round and are capped at `max_backoff_ms`, each moved at random by up to
 * `jitter` (a fraction, 0.0–1.0) of itself. A server's `Retry-After` (on 429 and 503) is a
 * floor under the pause.
 *
 * Boot fetch: up to `max_attempts` rounds over all servers. Only failures that may pass are
 * retried: network errors, timeouts, 429 and 5xx answers; a 401, 403 or 404, a certificate that
 * cannot be verified, a malformed or oversized answer are returned at once, and so is a
 * Retry-After longer than `max_backoff_ms` (the server asks for more patience than a boot has).
 * A zero field takes its default: 6 attempts, 1000 ms, ×1.1, 2000 ms (Spring Cloud Config's
 * client defaults), jitter 0.1. Set max_attempts to 1 for no retry.
 *
 * Watch: never gives up (`max_attempts` is ignored). Defaults 1000 ms, ×2, 300000 ms (five
 * minutes), jitter 0.2. Answers that waiting will not fix soon (401, 403, 404) start at ten
 * times `initial_backoff_ms`, so that a watch with rotated-away credentials does not use up a
 * server's allowance of failed logins for its address.
 *
 * This struct is frozen (it is embedded by value in the options): new retry settings will come as
 * new fields of the options, never as fields here.
 */
typedef struct alm_retry_policy {
    unsigned int max_attempts;
    unsigned int initial_backoff_ms;
    unsigned int max_backoff_ms;
    double multiplier; /* >= 1.0, or 0 for the default */
    double jitter;     /* 0.0–1.0; negative for none */
} alm_retry_policy;

#define ALM_CLIENT_OPTIONS_VERSION 3

/*
 * Options of alm_client_new(). Initialise with ALM_CLIENT_OPTIONS_INIT (or
 * alm_client_options_init()) and set what you need; a NULL or zero field takes its default.
 * Fields are only ever appended, and `version` tells the library which fields the caller knows.
 * The library copies every string; the caller may free them once alm_client_new() returns.
 */
typedef struct alm_client_options {
    unsigned int version; /* ALM_CLIENT_OPTIONS_VERSION */

    /*
     * The servers, tried in turn until one answers. Either `servers`, a NULL-terminated array
     * of base URLs, or `server`, one URL or a comma-separated list; `servers` wins when both
     * are set. Default "http://127.0.0.1:8888". Only http:// and https:// are accepted.
     */
    const char *const *servers;
    const char *server;

    const char *application; /* required: the application name, e.g. "orders" */
    const char *profiles;    /* comma-separated profiles; default "default" */
    const char *label;       /* branch, tag or commit; NULL for the server's default label */

    /* HTTP Basic credentials, or a bearer token (not both). Wiped from memory when freed. */
    const char *username;
    const char *password;
    const char *token;

    const char *ca_file; /* PEM bundle to verify https servers with; NULL for the system's */

    unsigned int connect_timeout_ms; /* per connection attempt; default 5000 */
    unsigned int request_timeout_ms; /* whole request, long-poll time excluded; default 30000 */

    alm_retry_policy retry; /* boot: fetch, fetch_file, encrypt, decrypt */

    /*
     * When every attempt failed: nonzero returns the error; zero falls back to `cache_file`
     * (if set and usable) and hands back a configuration marked stale.
     */
    int fail_fast;

    /*
     * The last good configuration is written here after each successful fetch (atomically,
     * mode 0600) and read back when the servers cannot be reached. NULL for no cache.
     */
    const char *cache_file;

    size_t max_response_bytes; /* cap on one answer's body; default 16 MiB */

    alm_log_cb log_cb;       /* NULL: diagnostics are dropped */
    void *log_payload;       /* passed to log_cb as is */
    alm_log_level log_level; /* least severe level passed to log_cb; ALM_LOG_DEFAULT: INFO */

    /* Version 2. */

    /*
     * A file holding a bearer token (instead of `token`, `username` and `password`), read
     * before each request when it changed: a Kubernetes projected ServiceAccount token, which
     * the kubelet rotates, or a CI system's OIDC token. Trailing newlines are ignored. If the
     * file cannot be read later on, the last token read is sent.
     */
    const char *token_file;

    /* Version 3. */

    /* The watch's retry policy (see alm_retry_policy); NULL for the watch defaults. Copied. */
    const alm_retry_policy *watch_retry;

    /*
     * Nonzero: values as the property sources hold them, `${…}` placeholders left as written.
     * By default every string value of the merged view has its placeholders resolved against
     * the merged view, the way the server resolves them for its `.yml`/`.properties`/`.json`
     * documents and Spring's Environment does (`${key}`, `${key:default}`, nested, `\${` for a
     * literal `${`; one that cannot be resolved, or is part of a cycle, stays as written).
     */
    int keep_placeholders;
} alm_client_options;

/*
 * Every field spelled out so that callers compiled with -Wextra (C or C++) get no
 * missing-field-initializers warning. Extended together with the struct.
 */
#define ALM_CLIENT_OPTIONS_INIT                                                                    \
    {                                                                                              \
        ALM_CLIENT_OPTIONS_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, {0, 0, 0, 0.0, 0.0}, 0, 0, 0, \
            0, 0, ALM_LOG_DEFAULT, 0, 0, 0                                                         \
    }

/*
 * Fills `opts` the way ALM_CLIENT_OPTIONS_INIT does, for languages without the macro.
 * Returns 0, or ALM_EINVALID when `opts` is NULL or `version` is one this library does not know.
 */
ALM_EXTERN int alm_client_options_init(alm_client_options *opts, unsigned int version);

/* ---------------------------------------------------------------------------------------------
 * Configuration snapshots
 * ------------------------------------------------------------------------------------------- */

/*
 * One Environment as the server composed it: an ordered list of property sources (most
 * specific first) and the merged view of them. Immutable and reference-counted.
 *
 * The merged view's string values have their `${key}` / `${key:default}` placeholders resolved
 * against the merged view, as the server's `.yml`/`.properties` documents and Spring's
 * Environment resolve them (the Environment JSON itself carries them as written); a client
 * with keep_placeholders keeps them raw. alm_config_parse() always resolves.
 *
 * The merged view follows Spring: a key takes its value from the most specific source that
 * defines it, except that a list (keys `name[0]`, `name[1].x`, …) is taken whole from the most
 * specific source that defines any element of it, so a shorter list in a profile file replaces
 * a longer one below instead of being padded by it.
 */
typedef struct alm_config alm_config;

/* The type a value had in the server's JSON. */
typedef enum alm_value_type {
    ALM_TYPE_STRING = 0,
    ALM_TYPE_INTEGER = 1,
    ALM_TYPE_DOUBLE = 2,
    ALM_TYPE_BOOLEAN = 3,
    ALM_TYPE_NULL = 4
} alm_value_type;

/* One merged key. All pointers are owned by the alm_config it came from. */
typedef struct alm_config_entry {
    const char *key;    /* flattened key, "db.hosts[0]" */
    const char *value;  /* text form, as Spring would print it ("1000.0", "true"; "" for null) */
    const char *source; /* name of the property source the value came from */
    alm_value_type type;
} alm_config_entry;

/*
 * Parses an Environment JSON document (what `GET /{app}/{profiles}` answers; values may also be
 * `{"value":…,"origin":…}` objects, as in the server's v2 media type) into a new snapshot with
 * one reference, owned by the caller. `json` need not be NUL-terminated.
 * Errors: ALM_EINVALID (NULL argument), ALM_EPROTOCOL (not an Environment), ALM_ENOMEM.
 */
ALM_EXTERN int alm_config_parse(alm_config **out, const char *json, size_t len);

/*
 * Takes one more reference to `cfg` (NULL is ignored) and returns `cfg`. Accepts a const
 * pointer, as a watch callback receives, since a snapshot is immutable whatever the pointer.
 */
ALM_EXTERN alm_config *alm_config_retain(const alm_config *cfg);

/* Drops one reference; the last one frees the snapshot. Accepts NULL. */
ALM_EXTERN void alm_config_free(alm_config *cfg);

/*
 * The merged value of `key` as text: strings as they are (placeholders resolved, unless the
 * client's keep_placeholders option is set), other types in Spring's text form.
 * `*out` is owned by `cfg`. Errors: ALM_ENOTFOUND, ALM_EINVALID.
 */
ALM_EXTERN int alm_config_get_string(const char **out, const alm_config *cfg, const char *key);

/*
 * The merged value of `key` as a 64-bit integer: an integer as is; a double with no fractional
 * part; a string converted as Spring does (surrounding whitespace ignored, decimal, or hex with
 * `0x`, `0X` or `#`, optional sign). `*out` is left alone on failure.
 * Errors: ALM_ENOTFOUND, ALM_ETYPE (boolean, fraction, not a number), ALM_ERANGE, ALM_EINVALID.
 */
ALM_EXTERN int alm_config_get_int64(int64_t *out, const alm_config *cfg, const char *key);

/*
 * The merged value of `key` as a double: numbers as they are, strings as Java's
 * Double.parseDouble reads them (whitespace ignored, "NaN", "Infinity").
 * Errors: ALM_ENOTFOUND, ALM_ETYPE, ALM_ERANGE (overflows a double), ALM_EINVALID.
 */
ALM_EXTERN int alm_config_get_double(double *out, const alm_config *cfg, const char *key);

/*
 * The merged value of `key` as a boolean (0 or 1): booleans as they are; strings with Spring's
 * relaxed conversion, case-insensitive, whitespace ignored: true/on/yes/1 and false/off/no/0.
 * Errors: ALM_ENOTFOUND, ALM_ETYPE (anything else, numbers included), ALM_EINVALID.
 */
ALM_EXTERN int alm_config_get_bool(int *out, const alm_config *cfg, const char *key);

/*
 * Why `key` has its value: every property source that sets it, most specific first, each with
 * its value (text form), its origin in the file ("LINE:COL"; NULL unless the snapshot came from
 * alm_client_fetch_explained() or another v2 answer) and whether it is the one the merged value
 * came from. All pointers are owned by `cfg` and valid during the call. A nonzero return from
 * `cb` stops the walk and is returned. Errors: ALM_ENOTFOUND (no such key), ALM_EINVALID.
 */
typedef struct alm_config_layer {
    const char *source;
    const char *value;
    const char *origin;
    int wins;
} alm_config_layer;
typedef int (*alm_config_layer_cb)(const alm_config_layer *layer, void *payload);
ALM_EXTERN int alm_config_layers(const alm_config *cfg, const char *key, alm_config_layer_cb cb,
                                 void *payload);

/* 1 when the merged view has `key`, 0 when not (or when an argument is NULL). */
ALM_EXTERN int alm_config_has(const alm_config *cfg, const char *key);

/*
 * The name of the property source the merged value of `key` came from
 * ("<repo>/orders-prod.yml"); `*out` owned by `cfg`. Errors: ALM_ENOTFOUND, ALM_EINVALID.
 */
ALM_EXTERN int alm_config_source_of(const char **out, const alm_config *cfg, const char *key);

/*
 * The merged keys in precedence order: first the keys of the most specific source in that
 * source's order, then the keys the next source adds, and so on. Indexes run from 0 to
 * alm_config_entrycount() - 1; alm_config_entry_byindex() returns NULL past the end.
 */
ALM_EXTERN size_t alm_config_entrycount(const alm_config *cfg);
ALM_EXTERN const alm_config_entry *alm_config_entry_byindex(const alm_config *cfg, size_t idx);

/*
 * Calls `cb` for each merged entry in precedence order. A nonzero return from `cb` stops the
 * walk and is returned as is; otherwise returns 0 (ALM_EINVALID for a NULL argument).
 */
typedef int (*alm_config_foreach_cb)(const alm_config_entry *entry, void *payload);
ALM_EXTERN int alm_config_foreach(const alm_config *cfg, alm_config_foreach_cb cb, void *payload);

/*
 * Structured access. The server flattens a YAML or JSON tree, and a properties file is flat to
 * begin with, so a list arrives as keys `hosts[0]`, `hosts[1]`, … (or `servers[0].name`, … for
 * a list of maps) and a map as keys `orders.pool.size`, `orders.pool.max-idle`, …; these
 * functions read such keys back as lists and subtrees. They read the merged view, so a list is
 * the one list its most specific source defines (see alm_config).
 *
 * Key order, where it matters below: byte order of the keys, except that list indexes compare
 * as numbers (`hosts[2]` before `hosts[10]`), so a list's elements come in index order.
 */

/*
 * Calls `cb` for each merged entry in the subtree `prefix`, in key order: the key `prefix`
 * itself if it has a value, and every key that continues it with "." or "[" (`orders.pool`
 * visits `orders.pool.size` and `orders.pool[0]`, not `orders.poolside`). A trailing ".*" or
 * "." is the same subtree (`orders.pool.*`); "" or "*" visits every key. A nonzero return from
 * `cb` stops the walk and is returned; otherwise 0. Errors: ALM_EINVALID (NULL argument).
 */
ALM_EXTERN int alm_config_foreach_under(const alm_config *cfg, const char *prefix,
                                        alm_config_foreach_cb cb, void *payload);

/*
 * The number of elements of list `key` (`hosts` for `hosts[0]`, `hosts[1]`; an element may be
 * a map, `servers[0].name`). A key holding an empty value (`hosts: []` in YAML) is an empty list.
 * Errors: ALM_ENOTFOUND (no element and no such key), ALM_ETYPE (the key holds one non-empty
 * value; or an index is missing, `hosts[0]` and `hosts[2]` without `hosts[1]`, which Spring
 * refuses to bind too), ALM_EINVALID.
 */
ALM_EXTERN int alm_config_list_len(size_t *out, const alm_config *cfg, const char *key);

/*
 * Element `index` of list `key`, typed: the same as alm_config_get_string() (…_int64, …_double,
 * …_bool) of the key `key[index]`, with the same conversions, ownership and errors
 * (ALM_ENOTFOUND past the end of the list, or for an element that is a map).
 */
ALM_EXTERN int alm_config_list_get_string(const char **out, const alm_config *cfg,
                                          const char *key, size_t index);
ALM_EXTERN int alm_config_list_get_int64(int64_t *out, const alm_config *cfg, const char *key,
                                         size_t index);
ALM_EXTERN int alm_config_list_get_double(double *out, const alm_config *cfg, const char *key,
                                          size_t index);
ALM_EXTERN int alm_config_list_get_bool(int *out, const alm_config *cfg, const char *key,
                                        size_t index);

/*
 * A list of strings copied out for the caller, who owns the struct and releases what it holds
 * with alm_strarray_dispose() (as libgit2's git_strarray). `strings[count]` is NULL.
 */
typedef struct alm_strarray {
    char **strings;
    size_t count;
} alm_strarray;

/* Frees the strings and resets the struct to {NULL, 0}. Accepts NULL and a disposed array. */
ALM_EXTERN void alm_strarray_dispose(alm_strarray *array);

/*
 * List `key` as strings (text form, as alm_config_get_string), copied into `*out`: the elements
 * `key[0]`, `key[1]`, …; or, when `key` holds one value, that value split at commas with blanks
 * around each part dropped, as Spring converts a String to a List ("a, b" is two elements, ""
 * none). On error `*out` is {NULL, 0}.
 * Errors: those of alm_config_list_len(), ALM_ETYPE (an element is a map), ALM_ENOMEM.
 */
ALM_EXTERN int alm_config_get_strarray(alm_strarray *out, const alm_config *cfg, const char *key);

/*
 * Finds the merged key that `name` designates under Spring Boot's relaxed binding, and sets
 * `*key` to it (owned by `cfg`; pass it to any getter). Forms, all found from any of the others:
 * - the key as written: `orders.pool-size` (kebab case, Spring's canonical form);
 * - `orders.poolSize`, `orders.pool_size`, `Orders.Pool-Size`: letters compared without case,
 *   "-" and "_" ignored inside an element ("." separates elements and is never ignored);
 * - `ORDERS_POOL_SIZE`, `orders_pool_size` (a name without "." or "[" is read as an environment
 *   variable's): "_" separates elements or joins the words of one, so it finds
 *   `orders.pool-size` and `orders.pool.size`; a word of digits is a list index
 *   (`HOSTS_0` is `hosts[0]`, `SERVERS_1_NAME` is `servers[1].name`).
 * An exact key always wins. Otherwise, when several keys match (`orders.pool-size` and
 * `orders.pool.size` both exist for `ORDERS_POOL_SIZE`), the first in precedence order wins
 * (alm_config_entry_byindex order: the most specific source first), as Spring takes the first
 * property source holding any form of the name.
 * Errors: ALM_ENOTFOUND (no form matches), ALM_EINVALID (NULL or empty), ALM_ENOMEM.
 */
ALM_EXTERN int alm_config_relaxed_key(const char **key, const alm_config *cfg, const char *name);

/*
 * The raw property sources, most specific first: their count, and the name of source `idx`
 * (NULL past the end).
 */
ALM_EXTERN size_t alm_config_source_count(const alm_config *cfg);
ALM_EXTERN const char *alm_config_source_name(const alm_config *cfg, size_t idx);

/*
 * Calls `cb` with each key of raw property source `source` (0 is the most specific), in the
 * order the server sent them; `key` is owned by `cfg`. What each source contributes is how a
 * program rebuilds the server's document order (the CLI does, to print what the server's
 * `/{app}-{profiles}.yml` prints). A nonzero return from `cb` stops the walk and is returned;
 * otherwise 0. Errors: ALM_EINVALID (NULL argument, no such source).
 */
typedef int (*alm_config_key_cb)(const char *key, void *payload);
ALM_EXTERN int alm_config_source_keys(const alm_config *cfg, size_t source, alm_config_key_cb cb,
                                      void *payload);

/*
 * What the server said about this snapshot; each is owned by `cfg` and NULL when the server
 * did not say (or `cfg` is NULL):
 * - version: the Environment's `version`, the commit id of the configuration repository;
 * - etag: the answer's ETag without quotes, a digest of the content (used for watching);
 * - application, profiles, label: the Environment's `name`, profiles (comma-joined), `label`.
 */
ALM_EXTERN const char *alm_config_version(const alm_config *cfg);
ALM_EXTERN const char *alm_config_etag(const alm_config *cfg);
ALM_EXTERN const char *alm_config_application(const alm_config *cfg);
ALM_EXTERN const char *alm_config_profiles(const alm_config *cfg);
ALM_EXTERN const char *alm_config_label(const alm_config *cfg);

/*
 * 1 when the snapshot was loaded from the cache file because no server could be reached (the
 * configuration may be out of date), 0 when it came from a server.
 */
ALM_EXTERN int alm_config_is_stale(const alm_config *cfg);

/* When the snapshot was received from a server, in seconds since the Epoch (0 if unknown). */
ALM_EXTERN int64_t alm_config_fetched_at(const alm_config *cfg);

/* ---------------------------------------------------------------------------------------------
 * Client
 * ------------------------------------------------------------------------------------------- */

typedef struct alm_client alm_client;

/*
 * Bytes the library allocated for the caller, who owns the struct and releases the bytes with
 * alm_buf_dispose(). `ptr` is NUL-terminated (not counted in `size`) for convenience; the
 * bytes may contain NULs of their own.
 */
typedef struct alm_buf {
    char *ptr;
    size_t size;
} alm_buf;

/* Frees the bytes and resets the struct to {NULL, 0}. Accepts NULL and a disposed buffer. */
ALM_EXTERN void alm_buf_dispose(alm_buf *buf);

/*
 * Creates a client. `opts` is copied; NULL is not allowed because `application` is required.
 * Nothing is sent to the network yet. Profiles are normalised: blanks around each name are
 * dropped ("prod, eu" is "prod,eu"). Errors: ALM_EINVALID, with a message naming the option, for
 * no application; an application or profile with a "/" or a control character;
 * an empty profile ("prod,,eu"); a server URL that is not http(s)://, has no host, a bad port,
 * credentials, a query or a fragment; a username without a password; both credentials and a
 * token; a retry multiplier below 1 or jitter over 1; an unknown options version. ALM_ENOMEM.
 */
ALM_EXTERN int alm_client_new(alm_client **out, const alm_client_options *opts);

/* Frees the client and wipes the credentials it held. Accepts NULL. */
ALM_EXTERN void alm_client_free(alm_client *client);

/*
 * Fetches the configuration: `GET {server}/{application}/{profiles}[/{label}]` on each server in
 * turn, with the retry policy. On success writes the cache file (if set; a failure to write it is
 * logged, not returned) and hands back a fresh snapshot with one reference in `*out`.
 *
 * When no server could be used (ALM_ENETWORK, ALM_ETIMEOUT, ALM_ESERVER after every attempt,
 * or ALM_ETLS), a client without fail_fast and with a cache file loads the cache and hands
 * back a snapshot for which alm_config_is_stale() is 1 (returning 0). Otherwise the error is
 * returned: that code, or at once ALM_EAUTH, ALM_ENOTFOUND, ALM_EPROTOCOL or ALM_ETOOBIG (a
 * server that answers "no" is not stood in for), or ALM_ECACHE when the cache was needed and
 * is damaged or holds another application's configuration. `*out` is NULL on error.
 * Blocks for up to the retry policy's total time.
 */
ALM_EXTERN int alm_client_fetch(alm_config **out, alm_client *client);

/*
 * Fetches a plain file from the configuration repository, with the server's placeholders
 * resolved: `GET {server}/{application}/{profiles}/{label}/{path}`, or `…/{path}?useDefaultLabel`
 * without a label (each segment percent-encoded, the slashes of `path` sent as "(_)", as
 * Spring reads them). Retried like a
 * fetch; never served from the cache file. On success `*out` holds the bytes (release with
 * alm_buf_dispose); on error it is {NULL, 0}.
 * Errors: ALM_EINVALID (NULL, empty or absolute path, an empty, "." or ".." segment), ALM_ENOTFOUND
 * (no such file), and those of alm_client_fetch() but ALM_ECACHE.
 */
ALM_EXTERN int alm_client_fetch_file(alm_buf *out, alm_client *client, const char *path);

/*
 * Like alm_client_fetch(), asking for the server's v2 media type so that every value keeps its
 * origin (file line and column) for alm_config_layers(). Never reads or writes the cache file.
 * Errors: those of alm_client_fetch() but ALM_ECACHE.
 */
ALM_EXTERN int alm_client_fetch_explained(alm_config **out, alm_client *client);

/*
 * The effective change of this client's application and profiles between two labels (commit
 * ids, tags or branches): `GET {server}/diff/{application}/{profiles}?from=&to=`, answered as
 * JSON (docs/api.md, "Diff"): keys added, removed and changed, each with the value and the
 * property source that set it; secrets masked unless the caller is an admin. Retried like a
 * fetch; never served from the cache file. `*out` holds the JSON (alm_buf_dispose).
 * Errors: ALM_EINVALID (NULL or empty label), ALM_ENOTFOUND (no such label), and those of
 * alm_client_fetch() but ALM_ECACHE.
 */
ALM_EXTERN int alm_client_diff(alm_buf *out, alm_client *client, const char *from,
                               const char *to);

/*
 * The server's encryption service: `POST {server}/encrypt` with `plaintext` gives the ciphertext
 * to store in a configuration file after "{cipher}"; `POST {server}/decrypt` gives the
 * plaintext back (a leading "{cipher}" in `ciphertext` is dropped). Both usually need admin
 * credentials. Retried like a fetch. On success `*out` holds the answer (alm_buf_dispose; for
 * decrypt it is a secret: wipe it before disposing if that matters to you).
 * Errors: ALM_EINVALID (NULL or empty text; or the server cannot decrypt this text with its
 * key), ALM_ENOTFOUND (no key installed on the server), and those of alm_client_fetch() but
 * ALM_ECACHE.
 */
ALM_EXTERN int alm_client_encrypt(alm_buf *out, alm_client *client, const char *plaintext,
                                  size_t len);
ALM_EXTERN int alm_client_decrypt(alm_buf *out, alm_client *client, const char *ciphertext,
                                  size_t len);

/*
 * One long-poll: asks the servers for the configuration if it differs from `etag` (the value of
 * alm_config_etag(), or NULL to get it at once), waiting up to `timeout_s` seconds (1–3600) for a
 * change. Sets `*out` to a new snapshot (written to the cache file like a fetch) when the
 * configuration changed, or to NULL when it did not change before the timeout; returns 0 in both
 * cases. A single attempt over the servers, no retry and no cache fallback: the caller loops.
 * Errors: as alm_client_fetch() (but never ALM_ECACHE), ALM_EINVALID.
 */
ALM_EXTERN int alm_client_poll(alm_config **out, alm_client *client, const char *etag,
                               unsigned int timeout_s);

/*
 * One long-poll of a plain file, the way alm_client_poll() follows the configuration: asks the
 * servers for `path` (same rules and URL as alm_client_fetch_file()) if its rendered bytes
 * differ from `etag` (the tag an earlier call wrote to `etag_out`; NULL to get the file at
 * once), waiting up to `timeout_s` seconds (1-3600) for a change. The file's tag is a digest of
 * the bytes after the server filled its placeholders, so a change of a value the file uses
 * counts as a change of the file. When it changed, `*out` holds the bytes and `*etag_out` the
 * new tag without quotes (release both with alm_buf_dispose); when it did not change before the
 * timeout, both are {NULL, 0}. Returns 0 in both cases. A single attempt over the servers, no
 * retry, no cache: the caller loops.
 * Errors: as alm_client_fetch_file(), ALM_EINVALID (timeout), ALM_EPROTOCOL (a server too old
 * to tag plain files).
 */
ALM_EXTERN int alm_client_poll_file(alm_buf *out, alm_buf *etag_out, alm_client *client,
                                    const char *path, const char *etag, unsigned int timeout_s);

/* ---------------------------------------------------------------------------------------------
 * Watching: following the configuration's changes, on a thread of the library's
 * (alm_watch_start) or driven by the caller's event loop (alm_watch_new)
 * ------------------------------------------------------------------------------------------- */

typedef struct alm_watch alm_watch;

/*
 * What changed between two snapshots, by key of the merged view. `added` and `changed` point
 * into the new snapshot, `removed` into the old one; all are valid during the callback only
 * (retain a snapshot to keep its keys). Each list is in the precedence order of its snapshot.
 */
typedef struct alm_diff {
    const char *const *added;
    size_t added_count;
    const char *const *changed; /* present in both, with another value or type */
    size_t changed_count;
    const char *const *removed;
    size_t removed_count;
} alm_diff;

/*
 * Called after each change, with no lock of the library held: on the watch thread, or with
 * manual_dispatch on the thread calling alm_watch_dispatch(), or for a watch made by
 * alm_watch_new() inside alm_watch_perform() (or alm_watch_wait_fresh()) on its caller's thread. It may call alm_watch_current()
 * (which returns `new_cfg` or a later snapshot) and any alm_config function, retain either
 * snapshot, and take its own locks. It must not call alm_watch_stop() or alm_watch_free() on
 * its own watch, nor use the client. `old_cfg` is the snapshot replaced, `new_cfg` the one now
 * current.
 */
typedef void (*alm_watch_cb)(const alm_config *old_cfg, const alm_config *new_cfg,
                             const alm_diff *diff, void *payload);

/*
 * The health of a watch, as its last exchange with the servers left it. Reported to
 * `on_status` each time it changes and readable at any time with alm_watch_status().
 */
typedef enum alm_watch_status {
    ALM_WATCH_FRESH = 0,        /* a server answered within the heartbeat deadline */
    ALM_WATCH_STALE = 1,        /* no server answered within the heartbeat deadline, or the
                                   watch started on a snapshot from the cache and no server has
                                   answered yet */
    ALM_WATCH_UNREACHABLE = 2,  /* the last attempt failed: network, timeout, TLS, 429 or 5xx */
    ALM_WATCH_AUTH_REFUSED = 3, /* the last attempt was answered 401 or 403 */
    ALM_WATCH_REFUSED = 4       /* the last attempt was answered otherwise not usable (404: the
                                   label is gone; a malformed or oversized answer) */
} alm_watch_status;

/*
 * Called when the watch's status changes, with the new status and one sentence saying why
 * (valid during the call only). Same thread and the same rules as on_change (see there). Also
 * called when a heartbeat expires during a long-poll the server holds without answering.
 */
typedef void (*alm_watch_status_cb)(alm_watch_status status, const char *reason, void *payload);

#define ALM_WATCH_OPTIONS_VERSION 2

/*
 * Options of alm_watch_start(); zero fields take their defaults. Fields are only appended;
 * `version` says which the caller knows.
 */
typedef struct alm_watch_options {
    unsigned int version;        /* ALM_WATCH_OPTIONS_VERSION */
    alm_watch_cb on_change;      /* required */
    void *payload;               /* passed to on_change and on_status as is */
    unsigned int poll_timeout_s; /* how long one long-poll waits on the server; default 60 */
    /*
     * The watch turns ALM_WATCH_STALE when no server has answered for this long; default three
     * poll timeouts. A healthy server answers each long-poll by its timeout, even unchanged.
     */
    unsigned int heartbeat_ms;
    /*
     * Nonzero: for programs with their own event loop. Nothing is called on the watch thread:
     * alm_watch_fd() becomes readable when changes, status changes or log lines of the watch
     * are waiting, and the caller runs them on its own thread with alm_watch_dispatch(), in the
     * order they happened. alm_watch_current() moves to a new snapshot only when its change is
     * dispatched.
     */
    int manual_dispatch;

    /* ---- version 2 ---- */

    alm_watch_status_cb on_status; /* NULL: no status calls */
} alm_watch_options;

#define ALM_WATCH_OPTIONS_INIT                                                                     \
    {                                                                                              \
        ALM_WATCH_OPTIONS_VERSION, 0, 0, 0, 0, 0, 0                                                \
    }

/*
 * Starts a thread that long-polls the servers for changes to `initial` (normally the snapshot
 * alm_client_fetch() returned; a stale one is fine) and calls `opts->on_change` with each new
 * snapshot. Outages are ridden out with the client's watch retry policy (`watch_retry`, see
 * alm_retry_policy), never ending the watch, and honouring Retry-After; the log gets one line
 * when an outage begins or changes kind (warning), one when it ends with its length and number
 * of attempts (info), and each attempt only at debug level. After any failure, and when
 * `initial` is stale, the next request asks for the configuration at once instead of
 * long-polling, so the watch is fresh again as soon as a server answers. Each new snapshot is
 * also written to the client's cache file.
 *
 * The watch takes a reference to `initial` and uses `client` exclusively until it is stopped:
 * the caller must not use the client meanwhile, and frees it only after alm_watch_free().
 * Errors: ALM_EINVALID (NULL argument, no on_change, unknown options version), ALM_ENOMEM,
 * ALM_ERROR (the thread could not be started).
 */
ALM_EXTERN int alm_watch_start(alm_watch **out, alm_client *client, alm_config *initial,
                               const alm_watch_options *opts);

/*
 * The same watch without a thread, for a program with its own event loop (poll, epoll, libuv,
 * libevent), in the manner of libcurl's multi interface: the program polls alm_watch_fd() for
 * reading, with the timeout alm_watch_timeout_ms() gives, and calls alm_watch_perform() when
 * the descriptor is readable or the timeout has passed. Every callback (on_change, on_status and
 * the client's log_cb) runs inside alm_watch_perform() on the caller's thread, and nothing of
 * the watch runs anywhere else; no lock is needed around the program's configuration.
 * Failover across servers, the watch retry policy, Retry-After and the heartbeat work as with
 * alm_watch_start(), whose thread does nothing but this loop. The first poll is due at once
 * (alm_watch_timeout_ms() is 0). The client is the watch's until alm_watch_stop() or
 * alm_watch_free(), as with alm_watch_start(). Errors: those of alm_watch_start(), and
 * ALM_EINVALID with manual_dispatch set (it has no use here).
 */
ALM_EXTERN int alm_watch_new(alm_watch **out, alm_client *client, alm_config *initial,
                             const alm_watch_options *opts);

/*
 * For a watch made by alm_watch_new(): how long the caller's loop may wait on alm_watch_fd()
 * before calling alm_watch_perform() anyway, in milliseconds; 0 means now. -1 for a watch
 * started with alm_watch_start(), or after alm_watch_stop() (nothing will be due). Changes after
 * each alm_watch_perform(): ask again each time round the loop.
 */
ALM_EXTERN long alm_watch_timeout_ms(alm_watch *watch);

/*
 * For a watch made by alm_watch_new(): does what is due, without blocking — reads what the
 * server sent, finishes or retries a poll, starts the next one when its pause is over, turns
 * the watch stale when the heartbeat expires — and runs the callbacks that result, on the
 * calling thread. Harmless when nothing is due (a spurious wake-up). Returns the number of
 * changes delivered to on_change (0 is normal), or ALM_EINVALID for NULL or a watch started
 * with alm_watch_start(). Failures of the exchange with the servers are not returned: they are
 * the watch's status (on_status, alm_watch_get_status) and its log. Call it from one thread at
 * a time; not from the watch's own callbacks.
 */
ALM_EXTERN int alm_watch_perform(alm_watch *watch);

/*
 * The current snapshot, with a new reference the caller drops with alm_config_free(). Callable
 * from any thread at any time until alm_watch_free(); never NULL for a valid watch.
 */
ALM_EXTERN alm_config *alm_watch_current(alm_watch *watch);

/*
 * The watch's status now (ALM_WATCH_FRESH for NULL). Any thread. The heartbeat deadline is
 * checked at the call, so this can turn ALM_WATCH_STALE before on_status hears of it.
 */
ALM_EXTERN alm_watch_status alm_watch_get_status(alm_watch *watch);

/* 1 when alm_watch_get_status() is anything but ALM_WATCH_FRESH, 0 otherwise. Any thread. */
ALM_EXTERN int alm_watch_is_stale(alm_watch *watch);

/*
 * Blocks until the watch is fresh (a server has answered), for up to `timeout_ms`. Returns 0
 * when it is fresh, ALM_ETIMEOUT when it is not by then (the error says what the watch last
 * saw), ALM_EINVALID for NULL. Any thread but the watch's callbacks; it needs no dispatch. For a
 * watch made by alm_watch_new() it drives the watch itself meanwhile (poll and perform, so its
 * callbacks run inside this call): call it from the thread that calls alm_watch_perform().
 */
ALM_EXTERN int alm_watch_wait_fresh(alm_watch *watch, unsigned int timeout_ms);

/*
 * A descriptor to watch for reading (POLLIN, EPOLLIN, EV_READ, UV_READABLE; never for writing)
 * with poll, epoll, select or an event library. Owned by the watch: do not read or close it.
 * - For a watch made by alm_watch_new(): readable when alm_watch_perform() has work (it is an
 *   epoll descriptor gathering the watch's sockets); the same descriptor for the watch's life,
 *   -1 after alm_watch_stop().
 * - With manual_dispatch: readable while changes wait for alm_watch_dispatch().
 * - Otherwise -1.
 */
ALM_EXTERN int alm_watch_fd(alm_watch *watch);

/*
 * With manual_dispatch: runs on the calling thread what the watch has queued, oldest first:
 * each change (alm_watch_current() moves to its snapshot, then on_change with its own old/new
 * snapshots and diff), each status change (on_status) and each diagnostic (the client's
 * log_cb), and empties alm_watch_fd(). Never blocks. Returns the number of changes dispatched
 * (0 is fine: a spurious wake-up, or only status and log), or ALM_EINVALID for a watch without
 * manual_dispatch. Call it from one thread at a time.
 */
ALM_EXTERN int alm_watch_dispatch(alm_watch *watch);

/*
 * Stops the thread, interrupting a long-poll in flight, and waits for it; the callback is not
 * called after this returns. For a watch made by alm_watch_new(), drops the poll in flight and
 * closes alm_watch_fd() (take it out of the event loop first); alm_watch_perform() then does
 * nothing. The client is then free for the caller again. Idempotent; NULL is ignored. Not from
 * the callback.
 */
ALM_EXTERN void alm_watch_stop(alm_watch *watch);

/*
 * Stops the watch if it runs and frees it, dropping its snapshot reference and any changes not
 * yet dispatched. Accepts NULL.
 */
ALM_EXTERN void alm_watch_free(alm_watch *watch);

#ifdef __cplusplus
}
#endif

#endif /* ALMANAC_H */
