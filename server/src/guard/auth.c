/*
 * auth — the --auth-file and the credentials checked against it (see auth.h).
 *
 * The file is YAML, read through yamlconf, so its keys arrive flattened in file order
 * (`users.orders-svc.password`, `tokens[0].applications[1]`) with the line and column of each
 * value; every key is recognised here or rejected with `file:line:col`. Password hashes are
 * verified by the system's libcrypt (crypt_r: yescrypt, SHA-512 and SHA-256 crypt, bcrypt), bearer
 * tokens by their SHA-256; every comparison of secret material is constant-time (CRYPTO_memcmp).
 *
 * A password KDF costs milliseconds on purpose, and a client sends the same credentials on
 * every request: a successful verification is remembered for a short time, keyed by the entry
 * and an HMAC of the password under a random per-load key. Failures are never remembered, so
 * guessing always pays the full price. A reload starts with an empty cache.
 *
 * This module does not decide which routes need what (routes.c does) and never logs a
 * credential.
 */
#include "guard/auth.h"

#include "confdoc.h"
#include "errors.h"
#include "fileread.h"
#include "guard/jwt.h"
#include "log.h"
#include "yamlconf.h"

#include <crypt.h>
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#define MODULE "auth"
#define AUTH_FILE_MAX (1u << 20)
#define AUTH_ENTRIES_MAX 10000
#define AUTH_GLOBS_MAX 1000
#define AUTH_NAME_MAX 128
#define AUTH_GLOB_MAX 512
#define AUTH_HEADER_MAX (JWT_MAX_BYTES + 64)
#define AUTH_PASSWORD_MAX 1024
#define CACHE_SLOTS 256
#define CACHE_TTL_SECONDS 60
#define ISSUERS_MAX 64
#define SUBJECTS_MAX 1000
#define AUDIENCES_MAX 32
#define SUBJECT_MAX 512
#define JWT_CACHE_MAX 65536      /* verified tokens remembered */
#define JWT_PRINCIPALS_MAX 65536 /* distinct subjects remembered */
#define JWT_REFRESH_DEFAULT 300
#define JWT_MIN_REFRESH_DEFAULT 30
#define JWT_REFRESH_WAIT_SECONDS 5
#define JWT_RESULTS 11 /* JWT_OK .. -JWT_CLAIMS */

struct auth_principal {
    char *key;  /* "users.NAME" or "tokens[N]": groups the flattened keys */
    char *name; /* user name, or the token's name */
    char *hash; /* users: the crypt(3) hash */
    unsigned char digest[SHA256_DIGEST_LENGTH]; /* tokens: SHA-256 of the token */
    bool has_digest;
    bool is_token;
    bool admin;
    bool borrowed; /* a JWT subject: globs belong to its subject rule */
    size_t issuer; /* a JWT subject: index of its issuer */
    atomic_uint_least64_t uses; /* a JWT subject: requests it authenticated, for /metrics */
    char **globs;
    size_t nglobs;
    unsigned line, col; /* where the entry starts, for "has no password" errors */
};

/* One `subjects:` item of an issuer: which tokens it covers, and what they may read. */
typedef struct subject_rule {
    unsigned index; /* N of subjects[N] */
    char *match;    /* glob on sub */
    char *ns;       /* glob on kubernetes.io.namespace */
    char *sa;       /* glob on kubernetes.io.serviceaccount.name */
    auth_principal grant; /* applications and admin */
    unsigned line, col;
} subject_rule;

/* One `issuers:` item: an OIDC issuer (a Kubernetes API server, a CI system) and its keys. */
typedef struct issuer {
    unsigned index; /* N of issuers[N] */
    char *name, *issuer;
    char **audiences;
    size_t naudiences;
    char *jwks_file, *jwks_url, *jwks_inline, *ca_file, *token_file;
    unsigned refresh_seconds, min_refresh_seconds;
    subject_rule *subjects;
    size_t nsubjects;
    jwks_source *source;
    /* Refresher bookkeeping, under authdb.refresh_lock. */
    time_t next_due;     /* CLOCK_MONOTONIC seconds */
    time_t last_try;     /* CLOCK_MONOTONIC seconds, 0: never */
    unsigned long tries; /* completed refreshes, for callers waiting on one */
    bool wanted;         /* an unknown kid arrived */
    atomic_uint_least64_t results[JWT_RESULTS]; /* tokens checked, by -jwt_result */
    unsigned line, col;
} issuer;

typedef struct cache_slot {
    const auth_principal *who;
    unsigned char mac[SHA256_DIGEST_LENGTH];
    time_t expires; /* CLOCK_MONOTONIC seconds */
} cache_slot;

struct authdb {
    atomic_int refs;
    auth_principal *entries;
    size_t count, cap;
    unsigned char cache_key[32];
    pthread_mutex_t cache_lock;
    cache_slot cache[CACHE_SLOTS];
    size_t cache_next;
    pthread_mutex_t failures_lock;
    json_t *failures;        /* address -> failed attempts in the current minute */
    time_t failures_minute;  /* CLOCK_MONOTONIC seconds / 60 of that minute */
    unsigned failures_limit; /* per address and minute; 0: none */

    issuer *issuers;
    size_t nissuers;
    pthread_mutex_t jwt_lock;
    json_t *jwt_cache;  /* hex SHA-256 of a token -> [principal, exp, issuer, generation] */
    json_t *jwt_names;  /* "issuer rule sub" -> index in jwt_principals */
    auth_principal **jwt_principals;
    size_t njwt, capjwt;
    pthread_mutex_t refresh_lock;
    pthread_cond_t refresh_wake; /* the refresher: work to do or stop */
    pthread_cond_t refresh_done; /* requests waiting for a refresh */
    pthread_t refresher;
    bool refresher_running, stopping;
};

/* Guards the load-and-retain of a slot against a concurrent swap. */
static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- lifetime ---------------------------------------------------------------------------- */

static void wipe_string(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static void entry_dispose(auth_principal *e)
{
    free(e->key);
    free(e->name);
    wipe_string(e->hash);
    if (!e->borrowed) {
        for (size_t i = 0; i < e->nglobs; i++)
            free(e->globs[i]);
        free(e->globs);
    }
    OPENSSL_cleanse(e->digest, sizeof(e->digest));
}

static void free_strings(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

static void issuer_dispose(issuer *is)
{
    free(is->name);
    free(is->issuer);
    free_strings(is->audiences, is->naudiences);
    free(is->jwks_file);
    free(is->jwks_url);
    free(is->jwks_inline);
    free(is->ca_file);
    free(is->token_file);
    for (size_t i = 0; i < is->nsubjects; i++) {
        subject_rule *r = &is->subjects[i];
        free(r->match);
        free(r->ns);
        free(r->sa);
        entry_dispose(&r->grant);
    }
    free(is->subjects);
    jwks_source_free(is->source);
}

static void refresher_stop(authdb *db);

static void authdb_free(authdb *db)
{
    if (db == NULL)
        return;
    refresher_stop(db);
    for (size_t i = 0; i < db->count; i++)
        entry_dispose(&db->entries[i]);
    free(db->entries);
    for (size_t i = 0; i < db->njwt; i++) {
        entry_dispose(db->jwt_principals[i]);
        free(db->jwt_principals[i]);
    }
    free(db->jwt_principals);
    for (size_t i = 0; i < db->nissuers; i++)
        issuer_dispose(&db->issuers[i]);
    free(db->issuers);
    json_decref(db->jwt_cache);
    json_decref(db->jwt_names);
    pthread_mutex_destroy(&db->jwt_lock);
    pthread_mutex_destroy(&db->refresh_lock);
    pthread_cond_destroy(&db->refresh_wake);
    pthread_cond_destroy(&db->refresh_done);
    json_decref(db->failures);
    pthread_mutex_destroy(&db->cache_lock);
    pthread_mutex_destroy(&db->failures_lock);
    OPENSSL_cleanse(db, sizeof(*db));
    free(db);
}

void authdb_release(authdb *db)
{
    if (db != NULL && atomic_fetch_sub_explicit(&db->refs, 1, memory_order_acq_rel) == 1)
        authdb_free(db);
}

authdb *authdb_acquire(authdb *const *slot)
{
    /* Authentication off: no lock on the path of every request. */
    if (__atomic_load_n(slot, __ATOMIC_ACQUIRE) == NULL)
        return NULL;
    pthread_mutex_lock(&slot_lock);
    authdb *db = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (db != NULL)
        atomic_fetch_add_explicit(&db->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&slot_lock);
    return db;
}

void authdb_swap(authdb **slot, authdb *fresh)
{
    pthread_mutex_lock(&slot_lock);
    authdb *old = *slot;
    __atomic_store_n(slot, fresh, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&slot_lock);
    authdb_release(old);
}

size_t authdb_count(const authdb *db)
{
    return db ? db->count : 0;
}

/* ---- parsing ----------------------------------------------------------------------------- */

typedef struct parse_ctx {
    authdb *db;
    const char *file;
    unsigned line, col; /* of the value being read */
} parse_ctx;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int
fail(const parse_ctx *ctx, const char *fmt, ...)
{
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    return err_set(ERR_CONFIG, "%s:%u:%u: %s", ctx->file, ctx->line, ctx->col, reason);
}

static bool is_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '@';
}

static auth_principal *find_or_add(parse_ctx *ctx, const char *key, size_t key_len)
{
    authdb *db = ctx->db;
    for (size_t i = 0; i < db->count; i++)
        if (strlen(db->entries[i].key) == key_len && memcmp(db->entries[i].key, key, key_len) == 0)
            return &db->entries[i];
    if (db->count >= AUTH_ENTRIES_MAX) {
        fail(ctx, "more than %d users and tokens", AUTH_ENTRIES_MAX);
        return NULL;
    }
    if (db->count == db->cap) {
        size_t cap = db->cap ? db->cap * 2 : 8;
        auth_principal *grown = realloc(db->entries, cap * sizeof(*grown));
        if (grown == NULL) {
            err_set(ERR_NOMEM, "out of memory");
            return NULL;
        }
        db->entries = grown;
        db->cap = cap;
    }
    auth_principal *e = &db->entries[db->count];
    memset(e, 0, sizeof(*e));
    e->key = strndup(key, key_len);
    if (e->key == NULL) {
        err_set(ERR_NOMEM, "out of memory");
        return NULL;
    }
    e->line = ctx->line;
    e->col = ctx->col;
    db->count++;
    return e;
}

static int set_string(const parse_ctx *ctx, const char *field, const json_t *value, size_t max,
                      const char **out)
{
    if (!json_is_string(value))
        return fail(ctx, "%s must be a string (quote it)", field);
    const char *s = json_string_value(value);
    size_t len = json_string_length(value);
    if (len == 0 || len > max || strlen(s) != len)
        return fail(ctx, "%s must be 1 to %zu characters", field, max);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return fail(ctx, "%s must not contain control characters", field);
    *out = s;
    return 0;
}

static bool crypt_verify(const char *password, const char *hash);

/*
 * Whether hashing something with hash's own setting gives a string of hash's shape: the only
 * way to notice a hash cut short or mangled when copied, which would lock its user out. Costs
 * one KDF per user at every load.
 */
static bool hash_is_well_formed(const char *hash)
{
    struct crypt_data *data = calloc(1, sizeof(*data));
    if (data == NULL)
        return false;
    const char *result = crypt_r("", hash, data);
    const char *last = strrchr(hash, '$');
    size_t setting_len = last ? (size_t)(last - hash) : 0;
    bool ok = result != NULL && result[0] != '*' && strlen(result) == strlen(hash) &&
              setting_len > 0 && strncmp(result, hash, setting_len) == 0;
    OPENSSL_cleanse(data, sizeof(*data));
    free(data);
    return ok;
}

static int set_password(const parse_ctx *ctx, auth_principal *e, const json_t *value)
{
    const char *hash;
    int error = set_string(ctx, "password", value, 512, &hash);
    if (error < 0)
        return error;
    /*
     * Only salted, iterated methods: never DES, MD5 or NT hashes, nor a plain password.
     * libxcrypt files SHA-256 crypt under "legacy" though it is as strong as SHA-512 crypt.
     */
    static const char *const modern[] = {"$y$",  "$gy$", "$7$", "$2b$",
                                         "$2y$", "$2a$", "$6$", "$5$"};
    bool known = false;
    for (size_t i = 0; i < sizeof(modern) / sizeof(modern[0]); i++)
        known = known || strncmp(hash, modern[i], strlen(modern[i])) == 0;
    if (!known)
        return fail(ctx, "password must be a crypt(3) hash ($y$, $6$, $5$, $2b$, ...), made "
                         "with `mkpasswd -m yescrypt` or `openssl passwd -6`");
    if (crypt_checksalt(hash) == CRYPT_SALT_INVALID || !hash_is_well_formed(hash))
        return fail(ctx, "password is not a hash this system's crypt(3) can verify (cut short "
                         "when copied?)");
    if ((e->hash = strdup(hash)) == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    return 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int set_digest(const parse_ctx *ctx, auth_principal *e, const json_t *value)
{
    const char *hex;
    int error = set_string(ctx, "sha256", value, 64, &hex);
    if (error < 0)
        return error;
    if (strlen(hex) != 2 * SHA256_DIGEST_LENGTH)
        return fail(ctx, "sha256 must be 64 hexadecimal digits (`printf %%s TOKEN | sha256sum`)");
    for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return fail(ctx, "sha256 must be 64 hexadecimal digits");
        e->digest[i] = (unsigned char)(hi << 4 | lo);
    }
    for (size_t i = 0; i < ctx->db->count; i++) {
        const auth_principal *other = &ctx->db->entries[i];
        if (other != e && other->has_digest &&
            CRYPTO_memcmp(other->digest, e->digest, sizeof(e->digest)) == 0)
            return fail(ctx, "the same token is listed twice");
    }
    e->has_digest = true;
    return 0;
}

static int add_glob(const parse_ctx *ctx, auth_principal *e, const json_t *value)
{
    const char *glob;
    int error = set_string(ctx, "an application", value, AUTH_GLOB_MAX, &glob);
    if (error < 0)
        return error;
    if (strchr(glob, ','))
        return fail(ctx, "an application pattern must not contain ','");
    if (e->nglobs >= AUTH_GLOBS_MAX)
        return fail(ctx, "more than %d applications", AUTH_GLOBS_MAX);
    char **grown = realloc(e->globs, (e->nglobs + 1) * sizeof(*grown));
    if (grown == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    e->globs = grown;
    if ((e->globs[e->nglobs] = strdup(glob)) == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    e->nglobs++;
    return 0;
}

/* "applications[12]" -> true; the index itself does not matter (file order is kept). */
static bool is_list_item(const char *field, const char *list)
{
    size_t n = strlen(list);
    if (strncmp(field, list, n) != 0 || field[n] != '[')
        return false;
    const char *p = field + n + 1;
    if (!isdigit((unsigned char)*p))
        return false;
    while (isdigit((unsigned char)*p))
        p++;
    return p[0] == ']' && p[1] == '\0';
}

/* One field of an entry: what follows "users.NAME." or "tokens[N].". */
static int set_field(parse_ctx *ctx, auth_principal *e, const char *field, const json_t *value)
{
    if (!e->is_token && strcmp(field, "password") == 0)
        return set_password(ctx, e, value);
    if (e->is_token && strcmp(field, "sha256") == 0)
        return set_digest(ctx, e, value);
    if (e->is_token && strcmp(field, "name") == 0) {
        const char *name;
        int error = set_string(ctx, "name", value, AUTH_NAME_MAX, &name);
        if (error < 0)
            return error;
        free(e->name);
        return (e->name = strdup(name)) != NULL ? 0 : err_set(ERR_NOMEM, "out of memory");
    }
    if (strcmp(field, "admin") == 0) {
        if (!json_is_boolean(value))
            return fail(ctx, "admin must be true or false");
        e->admin = json_is_true(value);
        return 0;
    }
    if (strcmp(field, "applications") == 0) {
        /* `applications: []` flattens to an empty string. */
        if (json_is_string(value) && json_string_length(value) == 0)
            return 0;
        return fail(ctx, "applications must be a list");
    }
    if (is_list_item(field, "applications"))
        return add_glob(ctx, e, value);
    return fail(ctx, "unknown key \"%s\" in %s", field,
                e->is_token ? "a token (sha256, name, applications, admin)"
                            : "a user (password, applications, admin)");
}

static bool is_empty_string(const json_t *value)
{
    return json_is_string(value) && json_string_length(value) == 0;
}

/* "[12]rest" -> 12 and *rest; false when key does not start with an index. */
static bool take_index(const char *key, unsigned *index, const char **rest)
{
    if (key[0] != '[' || !isdigit((unsigned char)key[1]))
        return false;
    char *end = NULL;
    unsigned long n = strtoul(key + 1, &end, 10);
    if (end == NULL || *end != ']' || n > 1000000)
        return false;
    *index = (unsigned)n;
    *rest = end + 1;
    return true;
}

static int set_owned(const parse_ctx *ctx, const char *field, const json_t *value, size_t max,
                     char **slot)
{
    const char *text;
    int error = set_string(ctx, field, value, max, &text);
    if (error < 0)
        return error;
    if (*slot != NULL)
        return fail(ctx, "%s given twice", field);
    return (*slot = strdup(text)) != NULL ? 0 : err_set(ERR_NOMEM, "out of memory");
}

static int set_seconds(const parse_ctx *ctx, const char *field, const json_t *value,
                       unsigned min, unsigned max, unsigned *out)
{
    if (!json_is_integer(value) || json_integer_value(value) < (json_int_t)min ||
        json_integer_value(value) > (json_int_t)max)
        return fail(ctx, "%s must be a number of seconds from %u to %u", field, min, max);
    *out = (unsigned)json_integer_value(value);
    return 0;
}

static subject_rule *find_or_add_rule(parse_ctx *ctx, issuer *is, unsigned index)
{
    for (size_t i = 0; i < is->nsubjects; i++)
        if (is->subjects[i].index == index)
            return &is->subjects[i];
    if (is->nsubjects >= SUBJECTS_MAX) {
        fail(ctx, "more than %d subjects in one issuer", SUBJECTS_MAX);
        return NULL;
    }
    subject_rule *grown = realloc(is->subjects, (is->nsubjects + 1) * sizeof(*grown));
    if (grown == NULL) {
        err_set(ERR_NOMEM, "out of memory");
        return NULL;
    }
    is->subjects = grown;
    subject_rule *r = &is->subjects[is->nsubjects++];
    memset(r, 0, sizeof(*r));
    r->index = index;
    r->line = ctx->line;
    r->col = ctx->col;
    return r;
}

static int set_rule_field(parse_ctx *ctx, subject_rule *r, const char *field, const json_t *value)
{
    if (strcmp(field, "match") == 0)
        return set_owned(ctx, "match", value, SUBJECT_MAX, &r->match);
    if (strcmp(field, "namespace") == 0)
        return set_owned(ctx, "namespace", value, SUBJECT_MAX, &r->ns);
    if (strcmp(field, "serviceaccount") == 0)
        return set_owned(ctx, "serviceaccount", value, SUBJECT_MAX, &r->sa);
    if (strcmp(field, "admin") == 0) {
        if (!json_is_boolean(value))
            return fail(ctx, "admin must be true or false");
        r->grant.admin = json_is_true(value);
        return 0;
    }
    if (strcmp(field, "applications") == 0)
        return is_empty_string(value) ? 0 : fail(ctx, "applications must be a list");
    if (is_list_item(field, "applications"))
        return add_glob(ctx, &r->grant, value);
    return fail(ctx, "unknown key \"%s\" in a subject (match, namespace, serviceaccount, "
                     "applications, admin)",
                field);
}

static issuer *find_or_add_issuer(parse_ctx *ctx, unsigned index)
{
    authdb *db = ctx->db;
    for (size_t i = 0; i < db->nissuers; i++)
        if (db->issuers[i].index == index)
            return &db->issuers[i];
    if (db->nissuers >= ISSUERS_MAX) {
        fail(ctx, "more than %d issuers", ISSUERS_MAX);
        return NULL;
    }
    issuer *grown = realloc(db->issuers, (db->nissuers + 1) * sizeof(*grown));
    if (grown == NULL) {
        err_set(ERR_NOMEM, "out of memory");
        return NULL;
    }
    db->issuers = grown;
    issuer *is = &db->issuers[db->nissuers++];
    memset(is, 0, sizeof(*is));
    is->index = index;
    is->refresh_seconds = JWT_REFRESH_DEFAULT;
    is->min_refresh_seconds = JWT_MIN_REFRESH_DEFAULT;
    is->line = ctx->line;
    is->col = ctx->col;
    return is;
}

/* "issuers[N].FIELD..." */
static int parse_issuer_property(parse_ctx *ctx, const char *key, const json_t *value)
{
    unsigned index;
    const char *p;
    if (!take_index(key + strlen("issuers"), &index, &p) || (*p != '.' && *p != '\0'))
        return fail(ctx, "unknown key \"%s\" (issuers: is a list)", key);
    issuer *is = find_or_add_issuer(ctx, index);
    if (is == NULL)
        return err_last_code();
    if (*p == '\0')
        return fail(ctx, "an issuer must be a map (name, issuer, audiences, jwks-file, ...)");
    const char *field = p + 1;
    if (strcmp(field, "name") == 0) {
        int error = set_owned(ctx, "name", value, AUTH_NAME_MAX, &is->name);
        if (error == 0)
            for (const char *c = is->name; *c; c++)
                if (!is_name_char(*c) && *c != '.')
                    return fail(ctx, "an issuer name may hold only letters, digits, '-', '_', "
                                     "'.' and '@'");
        return error;
    }
    if (strcmp(field, "issuer") == 0)
        return set_owned(ctx, "issuer", value, 1024, &is->issuer);
    if (strcmp(field, "jwks-file") == 0)
        return set_owned(ctx, "jwks-file", value, 4096, &is->jwks_file);
    if (strcmp(field, "jwks-url") == 0) {
        int error = set_owned(ctx, "jwks-url", value, 4096, &is->jwks_url);
        if (error == 0 && strncmp(is->jwks_url, "https://", 8) != 0)
            return fail(ctx, "jwks-url must be an https:// URL");
        return error;
    }
    if (strcmp(field, "jwks") == 0)
        return set_owned(ctx, "jwks", value, JWKS_MAX_BYTES, &is->jwks_inline);
    if (strcmp(field, "jwks-ca-file") == 0)
        return set_owned(ctx, "jwks-ca-file", value, 4096, &is->ca_file);
    if (strcmp(field, "jwks-token-file") == 0)
        return set_owned(ctx, "jwks-token-file", value, 4096, &is->token_file);
    if (strcmp(field, "jwks-refresh-seconds") == 0)
        return set_seconds(ctx, field, value, 1, 86400, &is->refresh_seconds);
    if (strcmp(field, "jwks-min-refresh-seconds") == 0)
        return set_seconds(ctx, field, value, 0, 3600, &is->min_refresh_seconds);
    if (strcmp(field, "audiences") == 0)
        return is_empty_string(value) ? 0 : fail(ctx, "audiences must be a list");
    if (is_list_item(field, "audiences")) {
        const char *aud;
        int error = set_string(ctx, "an audience", value, 1024, &aud);
        if (error < 0)
            return error;
        if (is->naudiences >= AUDIENCES_MAX)
            return fail(ctx, "more than %d audiences", AUDIENCES_MAX);
        char **grown = realloc(is->audiences, (is->naudiences + 1) * sizeof(*grown));
        if (grown == NULL)
            return err_set(ERR_NOMEM, "out of memory");
        is->audiences = grown;
        if ((is->audiences[is->naudiences] = strdup(aud)) == NULL)
            return err_set(ERR_NOMEM, "out of memory");
        is->naudiences++;
        return 0;
    }
    if (strcmp(field, "subjects") == 0)
        return is_empty_string(value) ? 0 : fail(ctx, "subjects must be a list");
    if (strncmp(field, "subjects[", 9) == 0) {
        unsigned rule_index;
        const char *rest;
        if (!take_index(field + 8, &rule_index, &rest) || *rest != '.')
            return fail(ctx, "a subject must be a map (match, applications, ...)");
        subject_rule *r = find_or_add_rule(ctx, is, rule_index);
        if (r == NULL)
            return err_last_code();
        return set_rule_field(ctx, r, rest + 1, value);
    }
    return fail(ctx, "unknown key \"%s\" in an issuer (name, issuer, audiences, jwks-file, "
                     "jwks-url, jwks, jwks-ca-file, jwks-token-file, jwks-refresh-seconds, "
                     "jwks-min-refresh-seconds, subjects)",
                field);
}

/* What a complete issuer needs, checked once the whole file is read; loads file keys. */
static int check_issuer(parse_ctx *ctx, issuer *is)
{
    ctx->line = is->line;
    ctx->col = is->col;
    if (is->name == NULL)
        return fail(ctx, "an issuer needs a name");
    if (is->issuer == NULL)
        return fail(ctx, "issuer %s needs issuer: (the iss its tokens carry)", is->name);
    if (is->naudiences == 0)
        return fail(ctx, "issuer %s needs audiences: (e.g. [almanac])", is->name);
    int sources = (is->jwks_file != NULL) + (is->jwks_url != NULL) + (is->jwks_inline != NULL);
    if (sources != 1)
        return fail(ctx, "issuer %s needs exactly one of jwks-file, jwks-url and jwks",
                    is->name);
    if ((is->ca_file || is->token_file) && is->jwks_url == NULL)
        return fail(ctx, "issuer %s: jwks-ca-file and jwks-token-file go with jwks-url",
                    is->name);
    /* Compared with the issuers above it, so the error points at the second of a pair. */
    for (const issuer *other = ctx->db->issuers; other < is; other++) {
        if (strcmp(other->name, is->name) == 0)
            return fail(ctx, "two issuers are named %s", is->name);
        if (strcmp(other->issuer, is->issuer) == 0)
            return fail(ctx, "two issuers have the issuer %s", is->issuer);
    }
    for (size_t i = 0; i < is->nsubjects; i++) {
        subject_rule *r = &is->subjects[i];
        ctx->line = r->line;
        ctx->col = r->col;
        if (r->match == NULL && r->ns == NULL && r->sa == NULL)
            return fail(ctx, "a subject of issuer %s needs match, namespace or serviceaccount",
                        is->name);
    }
    ctx->line = is->line;
    ctx->col = is->col;
    jwks_source_options opts = {
        .file = is->jwks_file,
        .url = is->jwks_url,
        .inline_doc = is->jwks_inline,
        .ca_file = is->ca_file,
        .token_file = is->token_file,
    };
    int error = jwks_source_new(&is->source, &opts);
    if (error < 0)
        return error;
    /* A file or inline set must load now: a typo should stop the start, not lock everyone
     * out later. A URL is fetched by the refresher once the server runs (authdb_start). */
    if (is->jwks_url == NULL && jwks_source_refresh(is->source) < 0)
        return fail(ctx, "issuer %s: %s", is->name, err_message());
    return 0;
}

static int parse_property(parse_ctx *ctx, const char *key, const json_t *value)
{
    /* `users: {}` and `tokens: []` say "none". */
    if ((strcmp(key, "users") == 0 || strcmp(key, "tokens") == 0 ||
         strcmp(key, "issuers") == 0) &&
        is_empty_string(value))
        return 0;
    if (strncmp(key, "issuers[", 8) == 0)
        return parse_issuer_property(ctx, key, value);
    const char *p;
    bool is_token;
    if (strncmp(key, "users.", 6) == 0) {
        p = key + 6;
        while (is_name_char(*p))
            p++;
        if (p == key + 6 || (*p != '.' && *p != '\0'))
            return fail(ctx, "a user name may hold only letters, digits, '-', '_' and '@'");
        if ((size_t)(p - (key + 6)) > AUTH_NAME_MAX)
            return fail(ctx, "user name longer than %d characters", AUTH_NAME_MAX);
        is_token = false;
    } else if (strncmp(key, "tokens[", 7) == 0 && isdigit((unsigned char)key[7])) {
        p = key + 7;
        while (isdigit((unsigned char)*p))
            p++;
        if (*p != ']')
            return fail(ctx, "unknown key \"%s\"", key);
        p++;
        if (*p != '.' && *p != '\0')
            return fail(ctx, "unknown key \"%s\"", key);
        is_token = true;
    } else {
        return fail(ctx, "unknown key \"%s\" (the file holds users:, tokens: and issuers:)",
                    key);
    }
    auth_principal *e = find_or_add(ctx, key, (size_t)(p - key));
    if (e == NULL)
        return err_last_code();
    e->is_token = is_token;
    if (e->name == NULL) {
        if (is_token) {
            char name[32];
            snprintf(name, sizeof(name), "token #%.*s", (int)(p - key - 8), key + 7);
            e->name = strdup(name);
        } else {
            e->name = strndup(key + 6, (size_t)(p - key - 6));
        }
        if (e->name == NULL)
            return err_set(ERR_NOMEM, "out of memory");
    }
    if (*p == '\0') /* `orders-svc:` with nothing under it */
        return is_empty_string(value) ? 0 : fail(ctx, "%s must be a map", e->name);
    return set_field(ctx, e, p + 1, value);
}

static void origin_of(const confdoc *doc, const char *key, unsigned *line, unsigned *col)
{
    const char *origin = json_string_value(json_object_get(doc->origins, key));
    *line = *col = 0;
    if (origin != NULL && sscanf(origin, "%u:%u", line, col) != 2)
        *line = *col = 0;
}

int authdb_parse(authdb **out, const char *data, size_t len, const char *name)
{
    confdoc_limits limits = CONFDOC_LIMITS_DEFAULT;
    confdoc_list docs = {0};
    confdoc_error perr = {0};
    parse_ctx ctx = {.file = name, .line = 0, .col = 0};
    authdb *db = NULL;
    int error = 0;

    *out = NULL;
    limits.max_bytes = AUTH_FILE_MAX;
    limits.max_depth = 8;
    if (yamlconf_parse(&docs, data, len, &limits, &perr) < 0) {
        ctx.line = perr.line;
        ctx.col = perr.col;
        error = fail(&ctx, "%s", perr.message);
        goto out;
    }
    if ((db = calloc(1, sizeof(*db))) == NULL) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    atomic_init(&db->refs, 1);
    pthread_mutex_init(&db->cache_lock, NULL);
    pthread_mutex_init(&db->failures_lock, NULL);
    pthread_mutex_init(&db->jwt_lock, NULL);
    pthread_mutex_init(&db->refresh_lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&db->refresh_wake, &attr);
    pthread_cond_init(&db->refresh_done, &attr);
    pthread_condattr_destroy(&attr);
    if ((db->failures = json_object()) == NULL || (db->jwt_cache = json_object()) == NULL ||
        (db->jwt_names = json_object()) == NULL) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    ctx.db = db;
    if (RAND_bytes(db->cache_key, sizeof(db->cache_key)) != 1) {
        error = err_set(ERR_INTERNAL, "no randomness for the credential cache");
        goto out;
    }
    if (docs.count > 1) {
        ctx.line = ctx.col = 1;
        error = fail(&ctx, "the file must hold one YAML document, not %zu", docs.count);
        goto out;
    }
    if (docs.count == 1) {
        const char *key;
        json_t *value;
        json_object_foreach(docs.docs[0].props, key, value)
        {
            origin_of(&docs.docs[0], key, &ctx.line, &ctx.col);
            if ((error = parse_property(&ctx, key, value)) < 0)
                goto out;
        }
    }
    for (size_t i = 0; i < db->count; i++) {
        const auth_principal *e = &db->entries[i];
        ctx.line = e->line;
        ctx.col = e->col;
        if (!e->is_token && e->hash == NULL) {
            error = fail(&ctx, "user %s has no password", e->name);
            goto out;
        }
        if (e->is_token && !e->has_digest) {
            error = fail(&ctx, "%s has no sha256", e->name);
            goto out;
        }
    }
    for (size_t i = 0; i < db->nissuers; i++)
        if ((error = check_issuer(&ctx, &db->issuers[i])) < 0)
            goto out;
    *out = db;
    db = NULL;
out:
    authdb_free(db);
    confdoc_list_dispose(&docs);
    return error;
}

int authdb_load(authdb **out, const char *path)
{
    file_contents file = {0};
    int error;

    *out = NULL;
    error = file_read(&file, path, AUTH_FILE_MAX, FILE_READ_SECRET);
    if (error < 0) {
        /* Whatever kept the file from being read, it is a broken setting. */
        if (error != ERR_NOMEM)
            error = err_set(ERR_CONFIG, "%s", err_message());
        goto out;
    }
    if (file.mode & S_IROTH)
        LOG_WARN(MODULE, "%s is readable by every user of this machine (chmod 600 it)", path);
    error = authdb_parse(out, file.data, file.len, path);
out:
    file_contents_dispose(&file);
    return error;
}

/* ---- credentials ------------------------------------------------------------------------- */

static time_t now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static bool crypt_verify(const char *password, const char *hash)
{
    /* struct crypt_data is tens of kilobytes: too much for a worker thread's stack. */
    struct crypt_data *data = calloc(1, sizeof(*data));
    if (data == NULL)
        return false;
    const char *result = crypt_r(password, hash, data);
    size_t n = strlen(hash);
    bool ok = result != NULL && result[0] != '*' && strlen(result) == n &&
              CRYPTO_memcmp(result, hash, n) == 0;
    OPENSSL_cleanse(data, sizeof(*data));
    free(data);
    return ok;
}

static bool cache_lookup(authdb *db, const auth_principal *who, const unsigned char *mac)
{
    bool hit = false;
    time_t now = now_seconds();
    pthread_mutex_lock(&db->cache_lock);
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        const cache_slot *s = &db->cache[i];
        if (s->who == who && s->expires > now &&
            CRYPTO_memcmp(s->mac, mac, SHA256_DIGEST_LENGTH) == 0)
            hit = true;
    }
    pthread_mutex_unlock(&db->cache_lock);
    return hit;
}

static void cache_store(authdb *db, const auth_principal *who, const unsigned char *mac)
{
    time_t now = now_seconds();
    pthread_mutex_lock(&db->cache_lock);
    cache_slot *slot = NULL;
    for (size_t i = 0; i < CACHE_SLOTS && slot == NULL; i++)
        if (db->cache[i].who == NULL || db->cache[i].expires <= now)
            slot = &db->cache[i];
    if (slot == NULL) {
        slot = &db->cache[db->cache_next];
        db->cache_next = (db->cache_next + 1) % CACHE_SLOTS;
    }
    slot->who = who;
    memcpy(slot->mac, mac, SHA256_DIGEST_LENGTH);
    slot->expires = now + CACHE_TTL_SECONDS;
    pthread_mutex_unlock(&db->cache_lock);
}

static const auth_principal *find_user(const authdb *db, const char *name)
{
    for (size_t i = 0; i < db->count; i++)
        if (!db->entries[i].is_token && strcmp(db->entries[i].name, name) == 0)
            return &db->entries[i];
    return NULL;
}

static int check_basic(authdb *db, const char *b64, const auth_principal **out)
{
    int error = err_set(ERR_UNAUTHORIZED, "invalid credentials");
    size_t len = strlen(b64);
    while (len > 0 && (b64[len - 1] == ' ' || b64[len - 1] == '\t'))
        len--;
    unsigned char *plain = NULL;
    size_t plain_cap = len / 4 * 3 + 1;
    if (len == 0 || len % 4 != 0 || (plain = calloc(1, plain_cap)) == NULL)
        goto out;
    int n = EVP_DecodeBlock(plain, (const unsigned char *)b64, (int)len);
    if (n < 0)
        goto out;
    /* EVP_DecodeBlock counts the bytes that padding stands for. */
    size_t plain_len = (size_t)n - (b64[len - 1] == '=') - (b64[len - 2] == '=');
    char *colon = memchr(plain, ':', plain_len);
    if (colon == NULL || colon == (char *)plain || memchr(plain, '\0', plain_len) ||
        plain_len - (size_t)(colon + 1 - (char *)plain) > AUTH_PASSWORD_MAX)
        goto out;
    *colon = '\0';
    const char *user = (const char *)plain;
    const char *password = colon + 1;
    const auth_principal *who = find_user(db, user);
    if (who == NULL) {
        /* Pay a KDF anyway, so an unknown name answers no faster than a wrong password. */
        for (size_t i = 0; i < db->count; i++)
            if (!db->entries[i].is_token) {
                crypt_verify(password, db->entries[i].hash);
                break;
            }
        goto out;
    }
    unsigned char mac[SHA256_DIGEST_LENGTH];
    unsigned mac_len = 0;
    if (HMAC(EVP_sha256(), db->cache_key, sizeof(db->cache_key), (const unsigned char *)password,
             strlen(password), mac, &mac_len) == NULL)
        goto out;
    bool ok = cache_lookup(db, who, mac);
    if (!ok && crypt_verify(password, who->hash)) {
        cache_store(db, who, mac);
        ok = true;
    }
    OPENSSL_cleanse(mac, sizeof(mac));
    if (ok) {
        *out = who;
        error = 0;
        err_clear();
    }
out:
    if (plain != NULL) {
        OPENSSL_cleanse(plain, plain_cap);
        free(plain);
    }
    return error;
}

/* ---- JWT bearer tokens ------------------------------------------------------------------- */

static bool glob_ok(const char *glob, const char *value)
{
    return glob == NULL || (value != NULL && fnmatch(glob, value, 0) == 0);
}

/* The first subject rule of is covering t, or NULL. */
static const subject_rule *find_rule(const issuer *is, const jwt *t, size_t *index)
{
    const json_t *k8s = json_object_get(t->claims, "kubernetes.io");
    const char *ns = json_string_value(json_object_get(k8s, "namespace"));
    const char *sa =
        json_string_value(json_object_get(json_object_get(k8s, "serviceaccount"), "name"));
    for (size_t i = 0; i < is->nsubjects; i++) {
        const subject_rule *r = &is->subjects[i];
        if (glob_ok(r->match, t->sub) && glob_ok(r->ns, ns) && glob_ok(r->sa, sa)) {
            *index = i;
            return r;
        }
    }
    return NULL;
}

/*
 * The principal of subject sub under rule r of issuer is: one per (issuer, rule, subject),
 * kept until the database is dropped, so a principal handed out stays valid while the caller
 * holds its reference (the contract of auth_authenticate). Caller holds jwt_lock.
 */
static auth_principal *intern_principal(authdb *db, size_t is_index, size_t rule_index,
                                              const subject_rule *r, const char *sub,
                                              size_t *index)
{
    char key[SUBJECT_MAX + 64];
    snprintf(key, sizeof(key), "%zu %zu %s", is_index, rule_index, sub);
    json_t *known = json_object_get(db->jwt_names, key);
    if (known != NULL) {
        *index = (size_t)json_integer_value(known);
        return db->jwt_principals[*index];
    }
    if (db->njwt >= JWT_PRINCIPALS_MAX)
        return NULL;
    if (db->njwt == db->capjwt) {
        size_t cap = db->capjwt ? db->capjwt * 2 : 16;
        auth_principal **grown = realloc(db->jwt_principals, cap * sizeof(*grown));
        if (grown == NULL)
            return NULL;
        db->jwt_principals = grown;
        db->capjwt = cap;
    }
    auth_principal *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->name = strdup(sub)) == NULL) {
        free(p);
        return NULL;
    }
    p->borrowed = true;
    p->is_token = true;
    p->issuer = is_index;
    p->admin = r->grant.admin;
    p->globs = r->grant.globs;
    p->nglobs = r->grant.nglobs;
    if (json_object_set_new(db->jwt_names, key, json_integer((json_int_t)db->njwt)) < 0) {
        entry_dispose(p);
        free(p);
        return NULL;
    }
    *index = db->njwt;
    db->jwt_principals[db->njwt++] = p;
    return p;
}

static void hex_digest(const unsigned char *digest, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[2 * SHA256_DIGEST_LENGTH] = '\0';
}

/* A token verified before, still unexpired, under the same keys: its principal, or NULL. */
static auth_principal *jwt_cache_lookup(authdb *db, const char *hex)
{
    auth_principal *who = NULL;
    time_t now = time(NULL);
    pthread_mutex_lock(&db->jwt_lock);
    json_t *hit = json_object_get(db->jwt_cache, hex);
    if (hit != NULL) {
        size_t principal = (size_t)json_integer_value(json_array_get(hit, 0));
        json_int_t exp = json_integer_value(json_array_get(hit, 1));
        size_t is_index = (size_t)json_integer_value(json_array_get(hit, 2));
        unsigned long generation = (unsigned long)json_integer_value(json_array_get(hit, 3));
        /* A changed key set may have dropped the signing key: verify again. */
        if (exp > (json_int_t)now &&
            generation == jwks_source_generation(db->issuers[is_index].source))
            who = db->jwt_principals[principal];
        else
            json_object_del(db->jwt_cache, hex);
    }
    pthread_mutex_unlock(&db->jwt_lock);
    return who;
}

/* Caller holds jwt_lock. Full: expired entries go; still full, everything goes. */
static void jwt_cache_store(authdb *db, const char *hex, size_t principal, json_int_t exp,
                            size_t is_index, unsigned long generation)
{
    if (json_object_size(db->jwt_cache) >= JWT_CACHE_MAX) {
        time_t now = time(NULL);
        const char *key;
        json_t *entry;
        void *tmp;
        json_object_foreach_safe(db->jwt_cache, tmp, key, entry)
        {
            if (json_integer_value(json_array_get(entry, 1)) <= (json_int_t)now)
                json_object_del(db->jwt_cache, key);
        }
        if (json_object_size(db->jwt_cache) >= JWT_CACHE_MAX)
            json_object_clear(db->jwt_cache);
    }
    json_object_set_new(db->jwt_cache, hex,
                        json_pack("[I, I, I, I]", (json_int_t)principal, exp,
                                  (json_int_t)is_index, (json_int_t)generation));
}

/*
 * A token named a kid the issuer's current set lacks: ask the refresher for a new set (at most
 * once per min_refresh_seconds) and wait a little for it. Whether it came or not, the caller
 * checks again with whatever set is current. false when no refresh was asked for.
 */
static bool refresh_for_unknown_kid(authdb *db, issuer *is)
{
    bool asked = false;
    pthread_mutex_lock(&db->refresh_lock);
    time_t now = now_seconds();
    if (db->refresher_running && !db->stopping &&
        (is->last_try == 0 || now - is->last_try >= (time_t)is->min_refresh_seconds)) {
        unsigned long target = is->tries + 1;
        is->wanted = true;
        asked = true;
        pthread_cond_signal(&db->refresh_wake);
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += JWT_REFRESH_WAIT_SECONDS;
        while (is->tries < target && !db->stopping &&
               pthread_cond_timedwait(&db->refresh_done, &db->refresh_lock, &deadline) == 0) {
        }
    }
    pthread_mutex_unlock(&db->refresh_lock);
    return asked;
}

/* Counts one checked token for /metrics. */
static void count_jwt(issuer *is, int result)
{
    if (is != NULL && result <= 0 && result > -JWT_RESULTS)
        atomic_fetch_add_explicit(&is->results[-result], 1, memory_order_relaxed);
}

static void count_use(authdb *db, auth_principal *who)
{
    atomic_fetch_add_explicit(&who->uses, 1, memory_order_relaxed);
    count_jwt(&db->issuers[who->issuer], JWT_OK);
}

static int refuse_jwt(int why, issuer *is)
{
    count_jwt(is, why);
    /* Only what the caller may see: the reason and, once known, which issuer. Never the token,
     * and never an unverified claim (it could carry anything into the log). */
    if (is != NULL)
        return err_set(ERR_UNAUTHORIZED, "invalid token: %s (issuer %s)", jwt_result_text(why),
                       is->name);
    return err_set(ERR_UNAUTHORIZED, "invalid token: %s", jwt_result_text(why));
}

static int check_jwt(authdb *db, const char *token, size_t len, const char *hex,
                     const auth_principal **out)
{
    int error = 0;
    jwt t;
    jwks *keys = NULL;
    issuer *is = NULL;
    auth_principal *who = jwt_cache_lookup(db, hex);
    if (who != NULL) {
        count_use(db, who);
        *out = who;
        return 0;
    }
    int r = jwt_decode(&t, token, len);
    if (r < 0) {
        error = refuse_jwt(r, NULL);
        goto out;
    }
    size_t is_index = 0;
    for (size_t i = 0; i < db->nissuers && is == NULL; i++)
        if (t.iss != NULL && strcmp(db->issuers[i].issuer, t.iss) == 0) {
            is = &db->issuers[i];
            is_index = i;
        }
    if (is == NULL) {
        error = refuse_jwt(JWT_ISSUER, NULL);
        goto out;
    }
    unsigned long generation = 0;
    keys = jwks_source_keys(is->source, &generation);
    r = jwt_verify_signature(&t, keys);
    if (r == JWT_UNKNOWN_KEY && t.kid != NULL && refresh_for_unknown_kid(db, is)) {
        jwks_release(keys);
        keys = jwks_source_keys(is->source, &generation);
        r = jwt_verify_signature(&t, keys);
    }
    if (r == JWT_OK) {
        jwt_expect expect = {
            .issuer = is->issuer,
            .audiences = (const char *const *)is->audiences,
            .naudiences = is->naudiences,
            .now = time(NULL),
            .skew = JWT_SKEW_SECONDS,
        };
        r = jwt_check_claims(&t, &expect);
    }
    if (r < 0) {
        error = refuse_jwt(r, is);
        goto out;
    }
    if (strlen(t.sub) > SUBJECT_MAX) {
        error = refuse_jwt(JWT_CLAIMS, is);
        goto out;
    }
    size_t rule_index = 0;
    const subject_rule *rule = find_rule(is, &t, &rule_index);
    if (rule == NULL) {
        count_jwt(is, JWT_CLAIMS);
        error = err_set(ERR_UNAUTHORIZED, "valid token of issuer %s, but its subject is not "
                                          "listed in the auth file",
                        is->name);
        LOG_INFO(MODULE, "issuer %s: no subject rule covers %s", is->name, t.sub);
        goto out;
    }
    pthread_mutex_lock(&db->jwt_lock);
    size_t principal = 0;
    who = intern_principal(db, is_index, rule_index, rule, t.sub, &principal);
    if (who != NULL) {
        /* Cached no longer than the token lives (with the same skew the check allows). */
        json_int_t exp = (json_int_t)t.exp + JWT_SKEW_SECONDS;
        jwt_cache_store(db, hex, principal, exp, is_index, generation);
    }
    pthread_mutex_unlock(&db->jwt_lock);
    if (who == NULL) {
        error = err_set(ERR_UNAUTHORIZED, "too many distinct subjects (reload the auth file)");
        LOG_WARN(MODULE, "more than %d distinct token subjects since the auth file was loaded",
                 JWT_PRINCIPALS_MAX);
        goto out;
    }
    count_use(db, who);
    *out = who;
out:
    jwks_release(keys);
    jwt_dispose(&t);
    return error;
}

static int check_bearer(authdb *db, const char *token, const auth_principal **out)
{
    int error = 0;
    size_t len = strlen(token);
    while (len > 0 && (token[len - 1] == ' ' || token[len - 1] == '\t'))
        len--;
    if (len == 0)
        return err_set(ERR_UNAUTHORIZED, "invalid credentials");
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, len, digest);
    /* Compare with every token, not stopping at a match. */
    const auth_principal *found = NULL;
    for (size_t i = 0; i < db->count; i++) {
        const auth_principal *e = &db->entries[i];
        if (e->is_token && CRYPTO_memcmp(e->digest, digest, sizeof(digest)) == 0)
            found = e;
    }
    if (found != NULL) {
        *out = found;
    } else if (db->nissuers > 0 && memchr(token, '.', len) != NULL) {
        /* The same digest keys the cache of verified JWTs. */
        char hex[2 * SHA256_DIGEST_LENGTH + 1];
        hex_digest(digest, hex);
        error = check_jwt(db, token, len, hex, out);
        OPENSSL_cleanse(hex, sizeof(hex));
    } else {
        error = err_set(ERR_UNAUTHORIZED, "invalid credentials");
    }
    OPENSSL_cleanse(digest, sizeof(digest));
    return error;
}

int auth_authenticate(authdb *db, const char *authorization, const auth_principal **out)
{
    *out = NULL;
    if (db == NULL)
        return err_set(ERR_UNAUTHORIZED, "authentication required");
    if (authorization == NULL || authorization[0] == '\0')
        return err_set(ERR_UNAUTHORIZED, "authentication required");
    if (strlen(authorization) > AUTH_HEADER_MAX)
        return err_set(ERR_UNAUTHORIZED, "invalid credentials");
    const char *p = authorization;
    while (*p == ' ')
        p++;
    if (strncasecmp(p, "Basic ", 6) == 0 || strncasecmp(p, "Bearer ", 7) == 0) {
        bool basic = (p[1] | 0x20) == 'a';
        p += basic ? 6 : 7;
        while (*p == ' ')
            p++;
        return basic ? check_basic(db, p, out) : check_bearer(db, p, out);
    }
    return err_set(ERR_UNAUTHORIZED, "unsupported authentication scheme (use Basic or Bearer)");
}

/* ---- key refresher ----------------------------------------------------------------------- */

/*
 * One thread per database with issuers: each issuer's keys are read again every
 * jwks-refresh-seconds, and sooner when a request met an unknown kid (no more often than
 * jwks-min-refresh-seconds). Refreshes run without the lock; a failed one keeps the keys.
 */
static void *refresher_main(void *arg)
{
    authdb *db = arg;
    pthread_mutex_lock(&db->refresh_lock);
    while (!db->stopping) {
        time_t now = now_seconds();
        issuer *due = NULL;
        for (size_t i = 0; i < db->nissuers && due == NULL; i++) {
            issuer *is = &db->issuers[i];
            bool asked = is->wanted && (is->last_try == 0 ||
                                        now - is->last_try >= (time_t)is->min_refresh_seconds);
            if (now >= is->next_due || asked)
                due = is;
        }
        if (due == NULL) {
            struct timespec deadline;
            clock_gettime(CLOCK_MONOTONIC, &deadline);
            deadline.tv_sec += 1;
            pthread_cond_timedwait(&db->refresh_wake, &db->refresh_lock, &deadline);
            continue;
        }
        due->wanted = false;
        pthread_mutex_unlock(&db->refresh_lock);
        unsigned long before = jwks_source_generation(due->source);
        int error = jwks_source_refresh(due->source);
        if (error < 0)
            LOG_WARN(MODULE, "issuer %s: keys not refreshed, the cached ones stay in use: %s",
                     due->name, err_message());
        else if (jwks_source_generation(due->source) != before) {
            jwks_status st;
            jwks_source_status(due->source, &st);
            LOG_INFO(MODULE, "issuer %s: new key set (%zu usable keys)", due->name, st.keys);
        }
        pthread_mutex_lock(&db->refresh_lock);
        due->last_try = now_seconds();
        /* After a failure, try again within half a minute: health should recover soon after
         * the issuer does, without waiting for a token with an unknown kid. */
        unsigned wait = error < 0 && due->refresh_seconds > 30 ? 30 : due->refresh_seconds;
        due->next_due = due->last_try + (time_t)wait;
        due->tries++;
        pthread_cond_broadcast(&db->refresh_done);
    }
    pthread_mutex_unlock(&db->refresh_lock);
    return NULL;
}

int authdb_start(authdb *db)
{
    if (db == NULL || db->nissuers == 0 || db->refresher_running)
        return 0;
    time_t now = now_seconds();
    for (size_t i = 0; i < db->nissuers; i++) {
        issuer *is = &db->issuers[i];
        /* Files were read at load; a URL is fetched at once, unless keys were adopted. */
        bool have = jwks_source_generation(is->source) > 0;
        is->next_due = have ? now + (time_t)is->refresh_seconds : now;
        if (have && jwks_source_is_remote(is->source))
            is->last_try = now;
    }
    if (pthread_create(&db->refresher, NULL, refresher_main, db) != 0)
        return err_set(ERR_INTERNAL, "cannot start the key refresher thread");
    db->refresher_running = true;
    return 0;
}

static void refresher_stop(authdb *db)
{
    if (!db->refresher_running)
        return;
    pthread_mutex_lock(&db->refresh_lock);
    db->stopping = true;
    pthread_cond_broadcast(&db->refresh_wake);
    pthread_cond_broadcast(&db->refresh_done);
    pthread_mutex_unlock(&db->refresh_lock);
    pthread_join(db->refresher, NULL);
    db->refresher_running = false;
}

void authdb_adopt_keys(authdb *fresh, authdb *old)
{
    if (fresh == NULL || old == NULL)
        return;
    for (size_t i = 0; i < fresh->nissuers; i++) {
        issuer *is = &fresh->issuers[i];
        for (size_t j = 0; is->jwks_url != NULL && j < old->nissuers; j++)
            if (old->issuers[j].jwks_url != NULL &&
                strcmp(old->issuers[j].jwks_url, is->jwks_url) == 0)
                jwks_source_adopt(is->source, old->issuers[j].source);
    }
}

json_t *authdb_health(authdb *db)
{
    if (db == NULL || db->nissuers == 0)
        return NULL;
    bool degraded = false;
    json_t *details = json_object();
    time_t now = time(NULL);
    for (size_t i = 0; i < db->nissuers; i++) {
        issuer *is = &db->issuers[i];
        jwks_status st;
        jwks_source_status(is->source, &st);
        bool bad = st.failing || st.last_ok == 0;
        degraded = degraded || bad;
        json_t *one = json_pack("{s:s, s:s, s:I}", "status", bad ? "DEGRADED" : "UP", "issuer",
                                is->issuer, "keys", (json_int_t)st.keys);
        if (one == NULL)
            continue;
        if (st.last_ok)
            json_object_set_new(one, "lastRefreshAgeSeconds",
                                json_integer((json_int_t)(now - st.last_ok)));
        if (st.last_error[0])
            json_object_set_new(one, "lastError", json_string(st.last_error));
        json_object_set_new(details, is->name, one);
    }
    return json_pack("{s:s, s:o}", "status", degraded ? "DEGRADED" : "UP", "details", details);
}

/* A Prometheus label value: backslash, quote and newline escaped. */
static void print_label(FILE *f, const char *value)
{
    for (const char *c = value; *c; c++) {
        if (*c == '\\' || *c == '"')
            fputc('\\', f);
        if (*c == '\n')
            fputs("\\n", f);
        else
            fputc(*c, f);
    }
}

char *authdb_metrics(authdb *db, size_t *len)
{
    static const char *const results[JWT_RESULTS] = {
        "ok",      "malformed", "too_big", "algorithm", "unknown_key", "signature",
        "expired", "not_yet",   "issuer",  "audience",  "claims"};
    char *text = NULL;
    *len = 0;
    if (db == NULL || db->nissuers == 0)
        return NULL;
    FILE *f = open_memstream(&text, len);
    if (f == NULL)
        return NULL;
    fputs("# HELP almanac_auth_jwt_total Bearer JWTs checked, by issuer and outcome (subject "
          "not listed counts as claims).\n# TYPE almanac_auth_jwt_total counter\n",
          f);
    for (size_t i = 0; i < db->nissuers; i++)
        for (size_t r = 0; r < JWT_RESULTS; r++) {
            fputs("almanac_auth_jwt_total{issuer=\"", f);
            print_label(f, db->issuers[i].name);
            fprintf(f, "\",result=\"%s\"} %llu\n", results[r],
                    (unsigned long long)atomic_load_explicit(&db->issuers[i].results[r],
                                                             memory_order_relaxed));
        }
    fputs("# HELP almanac_auth_issuer_keys Usable keys held for each issuer.\n"
          "# TYPE almanac_auth_issuer_keys gauge\n",
          f);
    for (size_t i = 0; i < db->nissuers; i++) {
        jwks_status st;
        jwks_source_status(db->issuers[i].source, &st);
        fputs("almanac_auth_issuer_keys{issuer=\"", f);
        print_label(f, db->issuers[i].name);
        fprintf(f, "\"} %zu\n", st.keys);
    }
    fputs("# HELP almanac_auth_subject_requests_total Requests authenticated by a JWT, by issuer "
          "and subject (since the auth file was loaded).\n"
          "# TYPE almanac_auth_subject_requests_total counter\n",
          f);
    pthread_mutex_lock(&db->jwt_lock);
    for (size_t i = 0; i < db->njwt; i++) {
        auth_principal *p = db->jwt_principals[i];
        fputs("almanac_auth_subject_requests_total{issuer=\"", f);
        print_label(f, db->issuers[p->issuer].name);
        fputs("\",subject=\"", f);
        print_label(f, p->name);
        fprintf(f, "\"} %llu\n",
                (unsigned long long)atomic_load_explicit(&p->uses,
                                                         memory_order_relaxed));
    }
    pthread_mutex_unlock(&db->jwt_lock);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* ---- online guessing --------------------------------------------------------------------- */

#define FAILURES_MAX_ADDRESSES 65536

void authdb_limit_failures(authdb *db, unsigned per_minute)
{
    if (db != NULL)
        db->failures_limit = per_minute;
}

/* Starts a new minute's count when the minute has changed. Caller holds failures_lock. */
static void failures_roll(authdb *db)
{
    time_t minute = now_seconds() / 60;
    if (minute != db->failures_minute) {
        json_object_clear(db->failures);
        db->failures_minute = minute;
    }
}

bool auth_throttled(authdb *db, const char *peer)
{
    if (db == NULL || db->failures_limit == 0 || peer == NULL)
        return false;
    pthread_mutex_lock(&db->failures_lock);
    failures_roll(db);
    json_int_t count = json_integer_value(json_object_get(db->failures, peer));
    pthread_mutex_unlock(&db->failures_lock);
    return count >= (json_int_t)db->failures_limit;
}

void auth_note_failure(authdb *db, const char *peer)
{
    if (db == NULL || db->failures_limit == 0 || peer == NULL)
        return;
    pthread_mutex_lock(&db->failures_lock);
    failures_roll(db);
    json_t *count = json_object_get(db->failures, peer);
    if (count != NULL)
        json_integer_set(count, json_integer_value(count) + 1);
    else if (json_object_size(db->failures) < FAILURES_MAX_ADDRESSES)
        json_object_set_new(db->failures, peer, json_integer(1));
    /* Past the cap on addresses a new one is not counted: a flood of spoofed-looking sources
     * cannot grow the table, and the KDF cost per attempt still applies. */
    pthread_mutex_unlock(&db->failures_lock);
}

/* ---- decisions --------------------------------------------------------------------------- */

const char *auth_principal_name(const auth_principal *p)
{
    return p ? p->name : "";
}

bool auth_principal_is_admin(const auth_principal *p)
{
    return p != NULL && p->admin;
}

static bool allows_one(const auth_principal *p, const char *name, size_t len)
{
    char copy[AUTH_GLOB_MAX + 1];
    if (len > AUTH_GLOB_MAX)
        return false;
    memcpy(copy, name, len);
    copy[len] = '\0';
    for (size_t i = 0; i < p->nglobs; i++)
        if (fnmatch(p->globs[i], copy, 0) == 0)
            return true;
    return false;
}

bool auth_may_read(const void *caller, const char *names)
{
    return caller == NULL || auth_allows_applications(caller, names);
}

bool auth_allows_applications(const auth_principal *p, const char *names)
{
    if (p == NULL || names == NULL)
        return false;
    if (p->admin)
        return true;
    for (const char *s = names;;) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        if (!allows_one(p, s, len))
            return false;
        if (end == NULL)
            return true;
        s = end + 1;
    }
}
