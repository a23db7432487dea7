/*
 * jwt — JSON Web Tokens in compact JWS form (RFC 7515/7519) as OIDC issuers and the Kubernetes
 * API server mint them: decoding, the RS256/ES256 signature check, and the registered claims
 * (iss, aud, exp, nbf, iat).
 * The keys come from jwks.c.
 *
 * Only asymmetric algorithms exist here: `none` and the HMAC family are refused before any key
 * is looked at, so a public key can never be used as an HMAC secret. Which issuer a token
 * belongs to, which of its keys to use and what the subject may read is auth.c's business.
 */
#ifndef ALMANAC_JWT_H
#define ALMANAC_JWT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "guard/jwks.h"

/* A compact token longer than this is refused unread. A Kubernetes token is about 1 KiB. */
#define JWT_MAX_BYTES 8192
/* Seconds of clock difference tolerated on exp, nbf and iat. */
#define JWT_SKEW_SECONDS 60

/* Why a token was refused; 0 when it was not. Never says anything about the token's bytes. */
typedef enum {
    JWT_OK = 0,
    JWT_MALFORMED = -1,   /* not three base64url parts of JSON objects */
    JWT_TOO_BIG = -2,
    JWT_ALGORITHM = -3,   /* alg other than RS256 and ES256 (none, HS256, ...) or crit */
    JWT_UNKNOWN_KEY = -4, /* no kid, or no key of the issuer with that kid */
    JWT_SIGNATURE = -5,   /* the signature does not verify with that key */
    JWT_EXPIRED = -6,
    JWT_NOT_YET = -7,     /* nbf or iat in the future */
    JWT_ISSUER = -8,
    JWT_AUDIENCE = -9,
    JWT_CLAIMS = -10      /* exp or sub missing or of the wrong type */
} jwt_result;

const char *jwt_result_text(int result);

/* A decoded but not yet trusted token. */
typedef struct jwt {
    json_t *header;
    json_t *claims;
    const char *alg; /* "RS256" or "ES256" once decoded */
    const char *kid; /* NULL when absent */
    const char *iss; /* NULL when absent */
    const char *sub; /* NULL when absent */
    double exp;      /* seconds since the epoch; 0 when absent */
    unsigned char *signature;
    size_t signature_len;
    const char *signing_input; /* "header.payload", not NUL-terminated: the token itself */
    size_t signing_input_len;
} jwt;

/*
 * Decodes token (len bytes, no terminator needed). 0, or a jwt_result below 0; *out is always
 * safe to jwt_dispose. The token must outlive *out (signing_input points into it).
 */
int jwt_decode(jwt *out, const char *token, size_t len);
void jwt_dispose(jwt *t);

/*
 * Checks t's signature with the key of keys whose kid is t->kid and whose type fits t->alg.
 * JWT_OK, JWT_UNKNOWN_KEY or JWT_SIGNATURE.
 */
int jwt_verify_signature(const jwt *t, const jwks *keys);

/* What the claims must say. */
typedef struct jwt_expect {
    const char *issuer;
    const char *const *audiences; /* at least one must be in aud */
    size_t naudiences;
    time_t now; /* wall clock, seconds since the epoch */
    unsigned skew;
} jwt_expect;

/* iss, aud, exp (required), nbf, iat, sub (required). JWT_OK or the first failure. */
int jwt_check_claims(const jwt *t, const jwt_expect *expect);

#endif
