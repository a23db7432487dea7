/*
 * jwks — the public keys an issuer signs its tokens with (JSON Web Key Sets, RFC 7517), and
 * where they come from: a file, an inline document, or an HTTPS URL (libcurl, a CA file, an
 * optional bearer token read from a file at each fetch: in a pod, the API server's
 * /openid/v1/jwks with the mounted service-account CA and token).
 *
 * A key set is immutable and reference-counted; a source swaps in a new one when a refresh
 * brings a different document, and keeps the old one when the refresh fails, so the keys that
 * worked go on working while the issuer is unreachable. When and how often to refresh is the
 * caller's decision (auth.c's refresher thread); this module only does one refresh when asked.
 */
#ifndef ALMANAC_JWKS_H
#define ALMANAC_JWKS_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define JWKS_MAX_BYTES (1u << 20)
#define JWKS_MAX_KEYS 100

typedef struct jwks jwks;

/*
 * Parses a JWKS document ({"keys":[...]}). RSA keys of at least 2048 bits and EC P-256 keys
 * with a kid are kept; other keys (other types and curves, encryption keys, keys without kid)
 * are skipped. 0, or ERR_CONFIG with a message saying what is wrong. A set with no usable key
 * is valid (an issuer may publish one while it rotates).
 */
int jwks_parse(jwks **out, const char *json, size_t len);
jwks *jwks_retain(jwks *keys);
void jwks_release(jwks *keys); /* NULL ok */
size_t jwks_count(const jwks *keys);
/*
 * The key with this kid whose type fits alg ("RS256": RSA, "ES256": EC P-256), or NULL.
 * Borrowed from keys.
 */
EVP_PKEY *jwks_find(const jwks *keys, const char *kid, const char *alg);

/*
 * Decodes base64url without padding (RFC 7515 section 2) into a fresh buffer of *out_len
 * bytes (plus a NUL). -1 for a character outside the alphabet, padding, a length no encoder
 * gives, or more than max input bytes. Uses OpenSSL's decoder after mapping the alphabet.
 */
int b64url_decode(unsigned char **out, size_t *out_len, const char *in, size_t len, size_t max);

/* ---- sources ----------------------------------------------------------------------------- */

typedef struct jwks_source jwks_source;

typedef struct jwks_source_options {
    const char *file;       /* a JWKS file, or */
    const char *url;        /* an https:// URL, or */
    const char *inline_doc; /* the document itself */
    const char *ca_file;    /* for url: trust only this CA bundle (NULL: the system's) */
    const char *token_file; /* for url: send its content as a bearer token (NULL: none) */
    long timeout_seconds;   /* for url; 0: 10 */
} jwks_source_options;

/* Copies the options; loads nothing yet. 0 or ERR_NOMEM. */
int jwks_source_new(jwks_source **out, const jwks_source_options *opts);
void jwks_source_free(jwks_source *src); /* NULL ok */
bool jwks_source_is_remote(const jwks_source *src);

/*
 * Reads the file, parses the inline document, or fetches the URL, once. On success the new
 * set replaces the current one (the generation moves only if the document changed); on failure
 * the current set stays and the error is remembered for jwks_source_status. 0 or ERR_CONFIG /
 * ERR_UNAVAILABLE with the message.
 */
int jwks_source_refresh(jwks_source *src);

/* The current set with one more reference (NULL before the first success); *generation is
 * bumped each time a different set is installed. */
jwks *jwks_source_keys(jwks_source *src, unsigned long *generation);
unsigned long jwks_source_generation(jwks_source *src);

/*
 * Starts dst with src's current keys (an auth file reloaded while the issuer is unreachable
 * keeps working). Nothing happens when src has none.
 */
void jwks_source_adopt(jwks_source *dst, jwks_source *src);

typedef struct jwks_status {
    size_t keys;           /* usable keys in the current set */
    time_t last_ok;        /* wall clock of the last successful refresh, 0: never */
    time_t last_attempt;   /* wall clock of the last refresh, 0: never */
    bool failing;          /* the last refresh failed */
    char last_error[256];  /* its message */
} jwks_status;
void jwks_source_status(jwks_source *src, jwks_status *st);

/* Process-wide setup for the URL fetcher (curl_global_init); call once before threads start. */
int jwks_global_init(void);

#endif
