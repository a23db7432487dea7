/*
 * jwks — JSON Web Key Sets and the sources they are loaded from (see jwks.h).
 *
 * Keys are built with OpenSSL 3's EVP_PKEY_fromdata from the JWK members (RSA n and e; EC crv,
 * x and y, the point checked to be on the curve); the JSON is read by jansson; base64url goes
 * through OpenSSL's base64 decoder after the two alphabet differences are mapped and padding is
 * added back. URLs are fetched with libcurl, HTTPS only, with a size cap and a timeout.
 *
 * This module does not decide when to refresh, nor check tokens (jwt.c does).
 */
#include "guard/jwks.h"

#include "errors.h"
#include "fileread.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KID_MAX 256
#define TOKEN_FILE_MAX 16384

typedef struct jwk {
    char *kid;
    bool is_rsa;     /* else EC P-256 */
    char alg[8];     /* the JWK's own alg, "" when absent */
    EVP_PKEY *pkey;
} jwk;

struct jwks {
    atomic_int refs;
    jwk *keys;
    size_t count;
};

/* ---- base64url --------------------------------------------------------------------------- */

int b64url_decode(unsigned char **out, size_t *out_len, const char *in, size_t len, size_t max)
{
    int result = -1;
    char *std = NULL;
    unsigned char *plain = NULL;
    *out = NULL;
    *out_len = 0;
    /* A remainder of 1 is never produced by an encoder: 6 bits cannot make a byte. */
    if (len > max || len % 4 == 1)
        goto out;
    size_t padded = (len + 3) / 4 * 4;
    if ((std = malloc(padded + 1)) == NULL || (plain = malloc(padded / 4 * 3 + 1)) == NULL)
        goto out;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            goto out;
        std[i] = c;
    }
    size_t pad = padded - len;
    memset(std + len, '=', pad);
    std[padded] = '\0';
    int n = padded ? EVP_DecodeBlock(plain, (const unsigned char *)std, (int)padded) : 0;
    if (n < 0 || (size_t)n < pad)
        goto out;
    /* EVP_DecodeBlock counts the bytes the padding stands for. */
    *out_len = (size_t)n - pad;
    plain[*out_len] = '\0';
    *out = plain;
    plain = NULL;
    result = 0;
out:
    free(std);
    free(plain);
    return result;
}

/* ---- key sets ---------------------------------------------------------------------------- */

jwks *jwks_retain(jwks *keys)
{
    if (keys != NULL)
        atomic_fetch_add_explicit(&keys->refs, 1, memory_order_relaxed);
    return keys;
}

void jwks_release(jwks *keys)
{
    if (keys == NULL || atomic_fetch_sub_explicit(&keys->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < keys->count; i++) {
        free(keys->keys[i].kid);
        EVP_PKEY_free(keys->keys[i].pkey);
    }
    free(keys->keys);
    free(keys);
}

size_t jwks_count(const jwks *keys)
{
    return keys ? keys->count : 0;
}

EVP_PKEY *jwks_find(const jwks *keys, const char *kid, const char *alg)
{
    if (keys == NULL || kid == NULL || alg == NULL)
        return NULL;
    bool want_rsa = strcmp(alg, "RS256") == 0;
    if (!want_rsa && strcmp(alg, "ES256") != 0)
        return NULL;
    for (size_t i = 0; i < keys->count; i++) {
        const jwk *k = &keys->keys[i];
        if (strcmp(k->kid, kid) == 0 && k->is_rsa == want_rsa &&
            (k->alg[0] == '\0' || strcmp(k->alg, alg) == 0))
            return k->pkey;
    }
    return NULL;
}

/* A base64url member as a big-endian number; NULL when absent or malformed. */
static BIGNUM *member_bn(const json_t *key, const char *name, size_t *bytes)
{
    const char *text = json_string_value(json_object_get(key, name));
    unsigned char *raw = NULL;
    size_t len = 0;
    BIGNUM *bn = NULL;
    if (text == NULL || b64url_decode(&raw, &len, text, strlen(text), 4096) < 0 || len == 0)
        goto out;
    bn = BN_bin2bn(raw, (int)len, NULL);
    if (bytes != NULL)
        *bytes = len;
out:
    free(raw);
    return bn;
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *rsa_key(const json_t *key, const char **why)
{
    EVP_PKEY *pkey = NULL;
    size_t n_bytes = 0;
    BIGNUM *n = member_bn(key, "n", &n_bytes), *e = member_bn(key, "e", NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (n == NULL || e == NULL) {
        *why = "an RSA key needs n and e (base64url)";
        goto out;
    }
    if (BN_num_bits(n) < 2048 || BN_num_bits(n) > 16384) {
        *why = "an RSA key must have 2048 to 16384 bits";
        goto out;
    }
    if (bld == NULL || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
        (pkey = from_params("RSA", bld)) == NULL)
        *why = "OpenSSL refused the RSA key";
out:
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return pkey;
}

static EVP_PKEY *ec_key(const json_t *key, const char **why)
{
    EVP_PKEY *pkey = NULL;
    unsigned char *x = NULL, *y = NULL;
    size_t x_len = 0, y_len = 0;
    OSSL_PARAM_BLD *bld = NULL;
    EVP_PKEY_CTX *check = NULL;
    const char *xs = json_string_value(json_object_get(key, "x"));
    const char *ys = json_string_value(json_object_get(key, "y"));
    if (xs == NULL || ys == NULL || b64url_decode(&x, &x_len, xs, strlen(xs), 64) < 0 ||
        b64url_decode(&y, &y_len, ys, strlen(ys), 64) < 0 || x_len != 32 || y_len != 32) {
        *why = "a P-256 key needs x and y of 32 bytes each (base64url)";
        goto out;
    }
    unsigned char point[65];
    point[0] = 0x04; /* uncompressed */
    memcpy(point + 1, x, 32);
    memcpy(point + 33, y, 32);
    if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)) ||
        (pkey = from_params("EC", bld)) == NULL) {
        *why = "OpenSSL refused the P-256 key";
        goto out;
    }
    /* A point off the curve would let a crafted key leak nothing here (we only verify), but
     * it is never a key an issuer published: refuse it. */
    if ((check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL ||
        EVP_PKEY_public_check(check) != 1) {
        *why = "the P-256 point is not on the curve";
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
out:
    EVP_PKEY_CTX_free(check);
    OSSL_PARAM_BLD_free(bld);
    free(x);
    free(y);
    return pkey;
}

int jwks_parse(jwks **out, const char *json, size_t len)
{
    int error = 0;
    json_error_t jerr;
    json_t *doc = NULL;
    jwks *set = NULL;
    *out = NULL;
    if (len > JWKS_MAX_BYTES) {
        error = err_set(ERR_CONFIG, "larger than %u bytes", JWKS_MAX_BYTES);
        goto out;
    }
    doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        error = err_set(ERR_CONFIG, "not JSON: line %d: %s", jerr.line, jerr.text);
        goto out;
    }
    json_t *keys = json_object_get(doc, "keys");
    if (!json_is_array(keys)) {
        error = err_set(ERR_CONFIG, "not a JWKS document (no \"keys\" array)");
        goto out;
    }
    if (json_array_size(keys) > JWKS_MAX_KEYS) {
        error = err_set(ERR_CONFIG, "more than %d keys", JWKS_MAX_KEYS);
        goto out;
    }
    if ((set = calloc(1, sizeof(*set))) == NULL ||
        (json_array_size(keys) && (set->keys = calloc(json_array_size(keys), sizeof(jwk))) == NULL)) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    atomic_init(&set->refs, 1);
    size_t i;
    json_t *key;
    json_array_foreach(keys, i, key)
    {
        const char *kty = json_string_value(json_object_get(key, "kty"));
        const char *kid = json_string_value(json_object_get(key, "kid"));
        const char *use = json_string_value(json_object_get(key, "use"));
        const char *alg = json_string_value(json_object_get(key, "alg"));
        const char *crv = json_string_value(json_object_get(key, "crv"));
        if (!json_is_object(key)) {
            error = err_set(ERR_CONFIG, "keys[%zu] is not an object", i);
            goto out;
        }
        /* Keys this server cannot use for RS256/ES256 signatures are someone else's. */
        bool rsa = kty != NULL && strcmp(kty, "RSA") == 0;
        bool ec = kty != NULL && strcmp(kty, "EC") == 0 && crv != NULL && strcmp(crv, "P-256") == 0;
        if ((!rsa && !ec) || kid == NULL || kid[0] == '\0' || strlen(kid) > KID_MAX ||
            (use != NULL && strcmp(use, "sig") != 0) ||
            (alg != NULL && strcmp(alg, rsa ? "RS256" : "ES256") != 0))
            continue;
        for (size_t j = 0; j < set->count; j++)
            if (strcmp(set->keys[j].kid, kid) == 0) {
                error = err_set(ERR_CONFIG, "keys[%zu]: kid \"%s\" appears twice", i, kid);
                goto out;
            }
        const char *why = NULL;
        EVP_PKEY *pkey = rsa ? rsa_key(key, &why) : ec_key(key, &why);
        if (pkey == NULL) {
            error = err_set(ERR_CONFIG, "keys[%zu] (kid \"%s\"): %s", i, kid, why);
            goto out;
        }
        jwk *k = &set->keys[set->count++];
        k->pkey = pkey;
        k->is_rsa = rsa;
        if (alg != NULL)
            snprintf(k->alg, sizeof(k->alg), "%s", alg);
        if ((k->kid = strdup(kid)) == NULL) {
            error = err_set(ERR_NOMEM, "out of memory");
            goto out;
        }
    }
    *out = set;
    set = NULL;
out:
    jwks_release(set);
    json_decref(doc);
    return error;
}

/* ---- sources ----------------------------------------------------------------------------- */

struct jwks_source {
    char *file, *url, *inline_doc, *ca_file, *token_file;
    long timeout;
    pthread_mutex_t lock;
    jwks *keys;
    unsigned long generation;
    unsigned char digest[SHA256_DIGEST_LENGTH]; /* of the installed document */
    time_t last_ok, last_attempt;
    bool failing;
    char last_error[256];
};

int jwks_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK
               ? 0
               : err_set(ERR_INTERNAL, "libcurl could not be initialised");
}

static int dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    if (src != NULL && (*dst = strdup(src)) == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    return 0;
}

int jwks_source_new(jwks_source **out, const jwks_source_options *opts)
{
    int error = 0;
    jwks_source *src = calloc(1, sizeof(*src));
    *out = NULL;
    if (src == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    pthread_mutex_init(&src->lock, NULL);
    src->timeout = opts->timeout_seconds > 0 ? opts->timeout_seconds : 10;
    if ((error = dup_opt(&src->file, opts->file)) < 0 ||
        (error = dup_opt(&src->url, opts->url)) < 0 ||
        (error = dup_opt(&src->inline_doc, opts->inline_doc)) < 0 ||
        (error = dup_opt(&src->ca_file, opts->ca_file)) < 0 ||
        (error = dup_opt(&src->token_file, opts->token_file)) < 0) {
        jwks_source_free(src);
        return error;
    }
    *out = src;
    return 0;
}

void jwks_source_free(jwks_source *src)
{
    if (src == NULL)
        return;
    free(src->file);
    free(src->url);
    free(src->inline_doc);
    free(src->ca_file);
    free(src->token_file);
    jwks_release(src->keys);
    pthread_mutex_destroy(&src->lock);
    free(src);
}

bool jwks_source_is_remote(const jwks_source *src)
{
    return src != NULL && src->url != NULL;
}

typedef struct buffer {
    char *data;
    size_t len;
    size_t max;
    bool too_big;
} buffer;

static int buffer_add(buffer *b, const void *bytes, size_t n)
{
    if (b->len + n > b->max) {
        b->too_big = true;
        return -1;
    }
    char *grown = realloc(b->data, b->len + n + 1);
    if (grown == NULL)
        return -1;
    b->data = grown;
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

/* The whole file into an empty b, under b->max (common/'s reader; messages say what it is). */
static int read_file(buffer *b, const char *path, const char *what)
{
    file_contents file = {0};
    int error = file_read(&file, path, b->max, 0);
    if (error < 0)
        return err_set(error == ERR_NOMEM ? ERR_NOMEM : ERR_CONFIG, "%s %s", what, err_message());
    free(b->data);
    b->data = file.data;
    b->len = file.len;
    return 0;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    buffer *b = userdata;
    return buffer_add(b, ptr, size * nmemb) < 0 ? 0 : size * nmemb;
}

static int fetch_url(jwks_source *src, buffer *body)
{
    int error = 0;
    char *header = NULL;
    buffer token = {.max = TOKEN_FILE_MAX};
    struct curl_slist *headers = NULL;
    char curl_error[CURL_ERROR_SIZE] = "";
    CURL *h = curl_easy_init();
    if (h == NULL) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    if (src->token_file != NULL) {
        /* Re-read at every fetch: the kubelet rotates the token it projects. */
        if ((error = read_file(&token, src->token_file, "jwks-token-file")) < 0)
            goto out;
        size_t n = token.len;
        while (n > 0 && (token.data[n - 1] == '\n' || token.data[n - 1] == '\r' ||
                         token.data[n - 1] == ' '))
            n--;
        if (n == 0 || memchr(token.data, '\n', n) || memchr(token.data, '\r', n)) {
            error = err_set(ERR_CONFIG, "jwks-token-file %s: not one token", src->token_file);
            goto out;
        }
        if ((header = malloc(n + 32)) == NULL) {
            error = err_set(ERR_NOMEM, "out of memory");
            goto out;
        }
        snprintf(header, n + 32, "Authorization: Bearer %.*s", (int)n, token.data);
        headers = curl_slist_append(NULL, header);
    }
    headers = curl_slist_append(headers, "Accept: application/json, application/jwk-set+json");
    curl_easy_setopt(h, CURLOPT_URL, src->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, src->timeout);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, src->timeout);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_error);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "almanac-server");
    if (src->ca_file != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, src->ca_file);
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        error = err_set(ERR_UNAVAILABLE, "%s: %s", src->url,
                        body->too_big ? "answer larger than 1 MiB"
                        : curl_error[0] ? curl_error
                                        : curl_easy_strerror(rc));
        goto out;
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200)
        error = err_set(ERR_UNAVAILABLE, "%s: HTTP %ld", src->url, status);
out:
    curl_slist_free_all(headers);
    if (header != NULL) {
        OPENSSL_cleanse(header, strlen(header));
        free(header);
    }
    if (token.data != NULL) {
        OPENSSL_cleanse(token.data, token.len);
        free(token.data);
    }
    if (h != NULL)
        curl_easy_cleanup(h);
    return error;
}

int jwks_source_refresh(jwks_source *src)
{
    int error = 0;
    buffer body = {.max = JWKS_MAX_BYTES};
    jwks *fresh = NULL;
    const char *what = src->url ? src->url : src->file ? src->file : "inline jwks";
    if (src->url != NULL)
        error = fetch_url(src, &body);
    else if (src->file != NULL)
        error = read_file(&body, src->file, "jwks-file");
    else if (src->inline_doc != NULL)
        error = buffer_add(&body, src->inline_doc, strlen(src->inline_doc)) < 0
                    ? err_set(ERR_CONFIG, "inline jwks larger than %u bytes", JWKS_MAX_BYTES)
                    : 0;
    if (error == 0 && (error = jwks_parse(&fresh, body.data ? body.data : "", body.len)) < 0) {
        /* err_message() is the buffer err_set writes: copy it before formatting into it. */
        char why[256];
        snprintf(why, sizeof(why), "%s", err_message());
        error = err_set(error, "%s: %s", what, why);
    }
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)(body.data ? body.data : ""), body.len, digest);

    pthread_mutex_lock(&src->lock);
    time_t now = time(NULL);
    src->last_attempt = now;
    if (error < 0) {
        src->failing = true;
        snprintf(src->last_error, sizeof(src->last_error), "%s", err_message());
    } else {
        src->failing = false;
        src->last_error[0] = '\0';
        src->last_ok = now;
        /* The same document again keeps the generation, so verified tokens stay cached. */
        if (src->keys == NULL || memcmp(digest, src->digest, sizeof(digest)) != 0) {
            jwks *old = src->keys;
            src->keys = fresh;
            fresh = old;
            memcpy(src->digest, digest, sizeof(digest));
            src->generation++;
        }
    }
    pthread_mutex_unlock(&src->lock);
    jwks_release(fresh);
    free(body.data);
    return error;
}

jwks *jwks_source_keys(jwks_source *src, unsigned long *generation)
{
    pthread_mutex_lock(&src->lock);
    jwks *keys = jwks_retain(src->keys);
    if (generation != NULL)
        *generation = src->generation;
    pthread_mutex_unlock(&src->lock);
    return keys;
}

unsigned long jwks_source_generation(jwks_source *src)
{
    pthread_mutex_lock(&src->lock);
    unsigned long generation = src->generation;
    pthread_mutex_unlock(&src->lock);
    return generation;
}

void jwks_source_adopt(jwks_source *dst, jwks_source *src)
{
    pthread_mutex_lock(&src->lock);
    jwks *keys = jwks_retain(src->keys);
    unsigned char digest[SHA256_DIGEST_LENGTH];
    memcpy(digest, src->digest, sizeof(digest));
    time_t last_ok = src->last_ok;
    pthread_mutex_unlock(&src->lock);
    if (keys == NULL)
        return;
    pthread_mutex_lock(&dst->lock);
    jwks_release(dst->keys);
    dst->keys = keys;
    memcpy(dst->digest, digest, sizeof(digest));
    dst->last_ok = last_ok;
    dst->generation++;
    pthread_mutex_unlock(&dst->lock);
}

void jwks_source_status(jwks_source *src, jwks_status *st)
{
    memset(st, 0, sizeof(*st));
    pthread_mutex_lock(&src->lock);
    st->keys = jwks_count(src->keys);
    st->last_ok = src->last_ok;
    st->last_attempt = src->last_attempt;
    st->failing = src->failing;
    snprintf(st->last_error, sizeof(st->last_error), "%s", src->last_error);
    pthread_mutex_unlock(&src->lock);
}
