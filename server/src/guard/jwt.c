/*
 * jwt — compact JWS tokens: decoding, RS256/ES256 signatures, registered claims (see jwt.h).
 *
 * Each part is base64url (jwks.c's decoder, OpenSSL underneath), each JSON part is read by
 * jansson with duplicate keys refused (two "alg" or two "sub" members must not let two readers
 * see two different tokens). Signatures are checked with OpenSSL's EVP_DigestVerify; an ES256
 * signature arrives as the raw 64-byte r||s of RFC 7518 and is turned into the DER
 * ECDSA-Sig-Value OpenSSL expects.
 *
 * This module does not pick the issuer, fetch keys or decide what a subject may read.
 */
#include "guard/jwt.h"

#include <math.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PART_MAX JWT_MAX_BYTES

const char *jwt_result_text(int result)
{
    switch (result) {
    case JWT_OK:
        return "valid";
    case JWT_MALFORMED:
        return "malformed token";
    case JWT_TOO_BIG:
        return "token too large";
    case JWT_ALGORITHM:
        return "algorithm not accepted (RS256 and ES256 only)";
    case JWT_UNKNOWN_KEY:
        return "no key of the issuer has this kid";
    case JWT_SIGNATURE:
        return "bad signature";
    case JWT_EXPIRED:
        return "token expired";
    case JWT_NOT_YET:
        return "token not yet valid";
    case JWT_ISSUER:
        return "unknown issuer";
    case JWT_AUDIENCE:
        return "audience not accepted";
    case JWT_CLAIMS:
        return "required claim missing or of the wrong type";
    default:
        return "invalid token";
    }
}

void jwt_dispose(jwt *t)
{
    json_decref(t->header);
    json_decref(t->claims);
    free(t->signature);
    memset(t, 0, sizeof(*t));
}

static json_t *decode_object(const char *part, size_t len)
{
    unsigned char *raw = NULL;
    size_t raw_len = 0;
    json_t *obj = NULL;
    if (b64url_decode(&raw, &raw_len, part, len, PART_MAX) < 0)
        return NULL;
    obj = json_loadb((const char *)raw, raw_len, JSON_REJECT_DUPLICATES, NULL);
    if (obj != NULL && !json_is_object(obj)) {
        json_decref(obj);
        obj = NULL;
    }
    free(raw);
    return obj;
}

/* A NumericDate: a finite JSON number. */
static bool numeric_date(const json_t *v, double *out)
{
    if (!json_is_number(v))
        return false;
    double d = json_number_value(v);
    if (!isfinite(d))
        return false;
    *out = d;
    return true;
}

int jwt_decode(jwt *out, const char *token, size_t len)
{
    memset(out, 0, sizeof(*out));
    if (len > JWT_MAX_BYTES)
        return JWT_TOO_BIG;
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (dot1 == NULL || dot2 == NULL || dot1 == token ||
        memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
        return JWT_MALFORMED;
    const char *sig = dot2 + 1;
    size_t sig_len = len - (size_t)(sig - token);
    if ((out->header = decode_object(token, (size_t)(dot1 - token))) == NULL ||
        (out->claims = decode_object(dot1 + 1, (size_t)(dot2 - dot1 - 1))) == NULL)
        goto malformed;
    out->alg = json_string_value(json_object_get(out->header, "alg"));
    if (out->alg == NULL)
        goto malformed;
    /* Only the two asymmetric algorithms issuers use; never none, never HS*. An extension we
     * would have to understand (crit) cannot be honoured, so it is refused. */
    if ((strcmp(out->alg, "RS256") != 0 && strcmp(out->alg, "ES256") != 0) ||
        json_object_get(out->header, "crit") != NULL) {
        jwt_dispose(out);
        return JWT_ALGORITHM;
    }
    json_t *typ = json_object_get(out->header, "typ");
    if (typ != NULL && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0))
        goto malformed;
    json_t *kid = json_object_get(out->header, "kid");
    if (kid != NULL && !json_is_string(kid))
        goto malformed;
    out->kid = json_string_value(kid);
    out->iss = json_string_value(json_object_get(out->claims, "iss"));
    out->sub = json_string_value(json_object_get(out->claims, "sub"));
    if (!numeric_date(json_object_get(out->claims, "exp"), &out->exp))
        out->exp = 0;
    if (sig_len == 0 || b64url_decode(&out->signature, &out->signature_len, sig, sig_len,
                                      PART_MAX) < 0)
        goto malformed;
    out->signing_input = token;
    out->signing_input_len = (size_t)(dot2 - token);
    return JWT_OK;
malformed:
    jwt_dispose(out);
    return JWT_MALFORMED;
}

/* RFC 7518 3.4: r||s, 32 bytes each for P-256, into the DER form OpenSSL verifies. */
static unsigned char *es256_to_der(const unsigned char *raw, size_t raw_len, size_t *der_len)
{
    unsigned char *der = NULL;
    ECDSA_SIG *sig = NULL;
    BIGNUM *r = NULL, *s = NULL;
    if (raw_len != 64)
        return NULL;
    if ((sig = ECDSA_SIG_new()) == NULL || (r = BN_bin2bn(raw, 32, NULL)) == NULL ||
        (s = BN_bin2bn(raw + 32, 32, NULL)) == NULL || !ECDSA_SIG_set0(sig, r, s))
        goto out;
    r = s = NULL; /* owned by sig now */
    int n = i2d_ECDSA_SIG(sig, &der);
    if (n <= 0) {
        der = NULL;
        goto out;
    }
    *der_len = (size_t)n;
out:
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return der;
}

int jwt_verify_signature(const jwt *t, const jwks *keys)
{
    int result = JWT_SIGNATURE;
    unsigned char *der = NULL;
    EVP_MD_CTX *md = NULL;
    EVP_PKEY *key = jwks_find(keys, t->kid, t->alg);
    if (key == NULL)
        return JWT_UNKNOWN_KEY;
    const unsigned char *sig = t->signature;
    size_t sig_len = t->signature_len;
    if (strcmp(t->alg, "ES256") == 0) {
        if ((der = es256_to_der(t->signature, t->signature_len, &sig_len)) == NULL)
            goto out;
        sig = der;
    } else if (sig_len != (size_t)EVP_PKEY_get_size(key)) {
        goto out;
    }
    if ((md = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) != 1)
        goto out;
    if (EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)t->signing_input,
                         t->signing_input_len) == 1)
        result = JWT_OK;
out:
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    return result;
}

static bool audience_listed(const char *aud, const jwt_expect *expect)
{
    for (size_t i = 0; aud != NULL && i < expect->naudiences; i++)
        if (strcmp(aud, expect->audiences[i]) == 0)
            return true;
    return false;
}

/* aud is one string or an array of them (RFC 7519 4.1.3); one accepted value is enough. */
static bool audience_ok(const json_t *aud, const jwt_expect *expect)
{
    if (json_is_string(aud))
        return audience_listed(json_string_value(aud), expect);
    size_t i;
    json_t *one;
    json_array_foreach(aud, i, one)
    {
        if (audience_listed(json_string_value(one), expect))
            return true;
    }
    return false;
}

int jwt_check_claims(const jwt *t, const jwt_expect *expect)
{
    double exp = 0, nbf = 0, iat = 0;
    double now = (double)expect->now, skew = (double)expect->skew;
    if (t->iss == NULL || expect->issuer == NULL || strcmp(t->iss, expect->issuer) != 0)
        return JWT_ISSUER;
    if (!audience_ok(json_object_get(t->claims, "aud"), expect))
        return JWT_AUDIENCE;
    if (!numeric_date(json_object_get(t->claims, "exp"), &exp) || t->sub == NULL ||
        t->sub[0] == '\0')
        return JWT_CLAIMS;
    if (exp + skew <= now)
        return JWT_EXPIRED;
    json_t *v = json_object_get(t->claims, "nbf");
    if (v != NULL && !numeric_date(v, &nbf))
        return JWT_CLAIMS;
    if (v != NULL && nbf - skew > now)
        return JWT_NOT_YET;
    v = json_object_get(t->claims, "iat");
    if (v != NULL && !numeric_date(v, &iat))
        return JWT_CLAIMS;
    if (v != NULL && iat - skew > now)
        return JWT_NOT_YET;
    return JWT_OK;
}
