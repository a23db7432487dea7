/*
 * auth — who may read what: the --auth-file (users with crypt(3) password hashes, bearer tokens
 * stored as SHA-256, per-entry application globs, an admin role), HTTP Basic and Bearer
 * credentials checked against it, and the swap of a reloaded file under running requests.
 *
 * Issuers (OIDC, Kubernetes ServiceAccount tokens) authenticate JWT bearer tokens: signatures
 * and claims by jwt.c, keys by jwks.c; what a subject may read comes from its `subjects:` rule.
 *
 * An authdb is immutable once loaded (apart from its issuers' key sets and caches, which have
 * their own locks) and reference-counted: a request holds one reference from
 * authentication to the end of its handler, so a SIGHUP reload never frees an entry in use.
 */
#ifndef ALMANAC_AUTH_H
#define ALMANAC_AUTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct authdb authdb;
typedef struct auth_principal auth_principal;

/*
 * Parses an auth file held in memory; name is used in error messages. 0, or a negative err_code
 * with a message `name:line:col: reason`. Nothing is kept on failure.
 */
int authdb_parse(authdb **out, const char *data, size_t len, const char *name);
/* Reads and parses path (at most 1 MiB). Errors as authdb_parse. */
int authdb_load(authdb **out, const char *path);
/*
 * Starts the thread that keeps the issuers' keys current (jwks-url fetched at once, files and
 * URLs again on their schedule and on an unknown kid). Parsing never starts threads or touches
 * the network, so tests and fuzzers can parse freely; the server calls this after loading.
 * 0 or ERR_INTERNAL. Nothing to do without issuers. The thread ends with the database.
 */
int authdb_start(authdb *db);
/* Gives fresh the keys old holds for the same jwks-url, before fresh is started. */
void authdb_adopt_keys(authdb *fresh, authdb *old);
/*
 * The issuers' state for /actuator/health: {"status":"UP"|"DEGRADED","details":{NAME:{...}}},
 * DEGRADED when an issuer's last refresh failed or it has no keys yet. NULL without issuers.
 */
json_t *authdb_health(authdb *db);
/*
 * Prometheus text for the issuers: tokens checked by issuer and outcome, keys held, requests
 * by subject (the subjects that presented a valid token; never a token). Caller frees; NULL
 * without issuers.
 */
char *authdb_metrics(authdb *db, size_t *len);
/* Users and tokens in the file. */
size_t authdb_count(const authdb *db);

/*
 * The database in *slot with one more reference (NULL when *slot is NULL: authentication off).
 * Safe against a concurrent authdb_swap on the same slot.
 */
authdb *authdb_acquire(authdb *const *slot);
/* Installs fresh in *slot (taking over the caller's reference) and drops the old one. */
void authdb_swap(authdb **slot, authdb *fresh);
/* Drops one reference; the last one wipes and frees. NULL ok. */
void authdb_release(authdb *db);

/*
 * Checks an Authorization header value ("Basic ...", "Bearer ..."; NULL when absent). 0 with
 * *out set (valid while the caller holds its reference on db), or ERR_UNAUTHORIZED. Never puts
 * the credentials in the error message.
 */
int auth_authenticate(authdb *db, const char *authorization, const auth_principal **out);

/*
 * Online guessing: at most per_minute failed attempts from one client address in each minute
 * (0: no limit, the default). Past it, every attempt from that address — right or wrong — is
 * refused without being checked until the minute ends, which also spares the KDF.
 */
void authdb_limit_failures(authdb *db, unsigned per_minute);
/* Whether peer (an address as text) has used up its failed attempts for this minute. */
bool auth_throttled(authdb *db, const char *peer);
/* Counts one failed attempt from peer. */
void auth_note_failure(authdb *db, const char *peer);

/* "orders-svc", or a token's name ("token #2" when it has none). */
const char *auth_principal_name(const auth_principal *p);
bool auth_principal_is_admin(const auth_principal *p);
/*
 * Whether p may read every application in names, a comma-separated list as in a request path
 * ("orders,billing"). An admin may read everything. Each name is matched against the entry's
 * globs with fnmatch(3) and no flags: `*` also matches `/` and a leading `.`.
 */
bool auth_allows_applications(const auth_principal *p, const char *names);
/*
 * The read check every handler asks: whether the caller (a request's principal; NULL when
 * authentication is off) may read every application in names. The signature is compose/diff's
 * diff_filter_fn, so a diff leaves out what the caller may not read by the same rule.
 */
bool auth_may_read(const void *caller, const char *names);

#endif
