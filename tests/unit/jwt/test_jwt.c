/*
 * test_jwt — the token verifier (guard/jwt.c) and key sets (guard/jwks.c), driven by the cases
 * in tests/resources/jwt/: each NAME.json says how to build a token (header, claims, which key
 * signs it, what is done to it afterwards) and which result the verifier must give at a fixed
 * time. Keys are made fresh with OpenSSL at each run; the tokens are minted here the way an
 * issuer does (ES256 signatures as raw r||s).
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/x509.h>

#include "guard/jwks.h"
#include "guard/jwt.h"
#include "test_files.h"

#define NOW 1700000000
#define CASES ALMANAC_TEST_RESOURCES "/jwt"

static EVP_PKEY *rsa_key, *ec_key, *stranger_key;
static jwks *keys;

static char *b64url(const unsigned char *data, size_t len)
{
    char *out = malloc(len / 3 * 4 + 8);
    assert_non_null(out);
    int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    for (char *p = out; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    return out;
}

static json_t *rsa_jwk(EVP_PKEY *key, const char *kid)
{
    BIGNUM *n = NULL, *e = NULL;
    assert_true(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n));
    assert_true(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &e));
    unsigned char nb[1024], eb[16];
    int nl = BN_bn2bin(n, nb), el = BN_bn2bin(e, eb);
    char *ns = b64url(nb, (size_t)nl), *es = b64url(eb, (size_t)el);
    json_t *jwk = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "kid", kid, "use",
                            "sig", "alg", "RS256", "n", ns, "e", es);
    free(ns);
    free(es);
    BN_free(n);
    BN_free(e);
    return jwk;
}

static json_t *ec_jwk(EVP_PKEY *key, const char *kid)
{
    unsigned char pub[65];
    size_t len = 0;
    assert_true(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub),
                                                &len));
    assert_int_equal(len, 65);
    char *x = b64url(pub + 1, 32), *y = b64url(pub + 33, 32);
    json_t *jwk = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "kid", kid, "crv", "P-256",
                            "x", x, "y", y);
    free(x);
    free(y);
    return jwk;
}

static int setup(void **state)
{
    (void)state;
    rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    stranger_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (rsa_key == NULL || ec_key == NULL || stranger_key == NULL)
        return -1;
    json_t *doc = json_pack("{s:[o, o, {s:s, s:s, s:s}]}", "keys", rsa_jwk(rsa_key, "rsa-1"),
                            ec_jwk(ec_key, "ec-1"), "kty", "oct", "kid", "hmac", "k", "c2VjcmV0");
    char *text = json_dumps(doc, JSON_COMPACT);
    int rc = jwks_parse(&keys, text, strlen(text));
    free(text);
    json_decref(doc);
    return rc;
}

static int teardown(void **state)
{
    (void)state;
    jwks_release(keys);
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(ec_key);
    EVP_PKEY_free(stranger_key);
    return 0;
}

static char *json_part(const json_t *obj)
{
    char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    char *part = b64url((const unsigned char *)text, strlen(text));
    free(text);
    return part;
}

/* Signs input as `how` says: "rsa", "ec", "stranger", "hs256-public", "none". */
static char *sign(const char *how, const char *input)
{
    unsigned char sig[1024];
    size_t len = sizeof(sig);
    if (strcmp(how, "none") == 0)
        return strdup("");
    if (strcmp(how, "hs256-public") == 0) {
        /* The confusion attack: the RSA public key (DER) as an HMAC secret. */
        unsigned char *der = NULL;
        int der_len = i2d_PUBKEY(rsa_key, &der);
        unsigned mac_len = 0;
        HMAC(EVP_sha256(), der, der_len, (const unsigned char *)input, strlen(input), sig,
             &mac_len);
        OPENSSL_free(der);
        return b64url(sig, mac_len);
    }
    EVP_PKEY *key = strcmp(how, "ec") == 0 ? ec_key : strcmp(how, "rsa") == 0 ? rsa_key
                                                                            : stranger_key;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_DigestSign(md, sig, &len, (const unsigned char *)input, strlen(input)),
                     1);
    EVP_MD_CTX_free(md);
    if (key == ec_key) {
        const unsigned char *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)len);
        assert_non_null(es);
        unsigned char raw[64];
        BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32);
        BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32);
        ECDSA_SIG_free(es);
        return b64url(raw, 64);
    }
    return b64url(sig, len);
}

static int result_code(const char *name)
{
    static const struct {
        const char *name;
        int code;
    } names[] = {{"OK", JWT_OK},           {"MALFORMED", JWT_MALFORMED},
                 {"TOO_BIG", JWT_TOO_BIG}, {"ALGORITHM", JWT_ALGORITHM},
                 {"UNKNOWN_KEY", JWT_UNKNOWN_KEY}, {"SIGNATURE", JWT_SIGNATURE},
                 {"EXPIRED", JWT_EXPIRED}, {"NOT_YET", JWT_NOT_YET},
                 {"ISSUER", JWT_ISSUER},   {"AUDIENCE", JWT_AUDIENCE},
                 {"CLAIMS", JWT_CLAIMS}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(names[i].name, name) == 0)
            return names[i].code;
    fail_msg("unknown expected result %s", name);
    return 1;
}

/* The whole check, as auth.c runs it. */
static int verify(const char *token)
{
    static const char *const audiences[] = {"almanac", "other"};
    jwt t;
    int r = jwt_decode(&t, token, strlen(token));
    if (r == JWT_OK)
        r = jwt_verify_signature(&t, keys);
    if (r == JWT_OK) {
        jwt_expect expect = {.issuer = "https://kubernetes.default.svc.cluster.local",
                             .audiences = audiences,
                             .naudiences = 2,
                             .now = NOW,
                             .skew = JWT_SKEW_SECONDS};
        r = jwt_check_claims(&t, &expect);
    }
    jwt_dispose(&t);
    return r;
}

static void run_case(const char *name, const json_t *c)
{
    char *token = NULL;
    const char *literal = json_string_value(json_object_get(c, "token"));
    if (literal != NULL) {
        token = strdup(literal);
    } else {
        json_t *claims = json_object_get(c, "claims");
        json_t *padding = json_object_get(c, "pad_claims");
        json_t *copy = json_deep_copy(claims);
        if (json_is_integer(padding)) {
            size_t n = (size_t)json_integer_value(padding);
            char *pad = malloc(n + 1);
            memset(pad, 'x', n);
            pad[n] = '\0';
            json_object_set_new(copy, "padding", json_string(pad));
            free(pad);
        }
        char *head = json_part(json_object_get(c, "header"));
        char *body = json_part(copy);
        json_decref(copy);
        size_t input_len = strlen(head) + strlen(body) + 2;
        char *input = malloc(input_len);
        snprintf(input, input_len, "%s.%s", head, body);
        char *sig = sign(json_string_value(json_object_get(c, "sign")), input);
        json_t *swap = json_object_get(c, "claims_after_signing");
        char *swapped = swap ? json_part(swap) : NULL;
        size_t len = input_len + strlen(sig) + 2 + (swapped ? strlen(swapped) : 0);
        token = malloc(len);
        if (swapped)
            snprintf(token, len, "%s.%s.%s", head, swapped, sig);
        else
            snprintf(token, len, "%s.%s", input, sig);
        json_int_t cut = json_integer_value(json_object_get(c, "truncate"));
        if (cut > 0 && (size_t)cut < strlen(token))
            token[strlen(token) - (size_t)cut] = '\0';
        free(head);
        free(body);
        free(input);
        free(sig);
        free(swapped);
    }
    int expected = result_code(json_string_value(json_object_get(c, "expect")));
    int got = verify(token);
    if (got != expected)
        fail_msg("%s: expected %s, got %s", name, jwt_result_text(expected), jwt_result_text(got));
    free(token);
}

static void test_cases(void **state)
{
    (void)state;
    DIR *dir = opendir(CASES);
    assert_non_null(dir);
    size_t count = 0;
    struct dirent *d;
    while ((d = readdir(dir)) != NULL) {
        size_t n = strlen(d->d_name);
        if (n < 6 || strcmp(d->d_name + n - 5, ".json") != 0)
            continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", CASES, d->d_name);
        json_error_t err;
        json_t *c = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
        if (c == NULL)
            fail_msg("%s: %s", path, err.text);
        run_case(d->d_name, c);
        json_decref(c);
        count++;
    }
    closedir(dir);
    assert_true(count >= 20);
}

static void test_key_sets(void **state)
{
    (void)state;
    /* The oct key of the fixture is skipped, not an error. */
    assert_int_equal(jwks_count(keys), 2);
    assert_non_null(jwks_find(keys, "rsa-1", "RS256"));
    assert_null(jwks_find(keys, "rsa-1", "ES256"));
    assert_null(jwks_find(keys, "hmac", "HS256"));
    assert_null(jwks_find(keys, NULL, "RS256"));

    jwks *set = NULL;
    static const char *const bad[] = {
        "", "[]", "{\"keys\":{}}", "{\"keys\":[1]}",
        /* 512-bit RSA */
        "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"a\",\"n\":\"AMq3Aqh1mPM6nE-ZS1qIFTXBw3S8hIGqW2yKI"
        "NpRbxUp6HvmexSnsi27kIZtC-5AC_IJhGsdCCVCKbqB1xVlD10\",\"e\":\"AQAB\"}]}",
        /* a point off the curve */
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"b\",\"x\":\"AAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAAAAAAAAAAAAAAAE\",\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\"}]}",
        /* x and y of the wrong length */
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"c\",\"x\":\"AAAA\",\"y\":\"AAAA\"}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (jwks_parse(&set, bad[i], strlen(bad[i])) == 0)
            fail_msg("key set %zu accepted", i);
        assert_null(set);
    }
    /* Keys nobody here can use are skipped: encryption keys, other curves, no kid. */
    const char *skipped = "{\"keys\":[{\"kty\":\"RSA\",\"use\":\"enc\",\"kid\":\"x\",\"n\":\"AQ\","
                          "\"e\":\"AQ\"},{\"kty\":\"EC\",\"crv\":\"P-384\",\"kid\":\"y\"},"
                          "{\"kty\":\"RSA\",\"n\":\"AQ\",\"e\":\"AQ\"}]}";
    assert_int_equal(jwks_parse(&set, skipped, strlen(skipped)), 0);
    assert_int_equal(jwks_count(set), 0);
    jwks_release(set);
}

static void test_base64url(void **state)
{
    (void)state;
    unsigned char *out = NULL;
    size_t len = 0;
    assert_int_equal(b64url_decode(&out, &len, "-_8", 3, 16), 0);
    assert_int_equal(len, 2);
    assert_int_equal(out[0], 0xfb);
    assert_int_equal(out[1], 0xff);
    free(out);
    assert_int_equal(b64url_decode(&out, &len, "", 0, 16), 0);
    assert_int_equal(len, 0);
    free(out);
    static const char *const bad[] = {"+/8", "AA==", "A", "AAAAA", "A A", "AB\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(b64url_decode(&out, &len, bad[i], strlen(bad[i]), 16), -1);
    assert_int_equal(b64url_decode(&out, &len, "AAAAAAAA", 8, 4), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_key_sets),
        cmocka_unit_test(test_base64url),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
