/*
 * cipher_format — Spring's symmetric and RSA ciphertext formats and Almanac's own, as pure
 * functions over keys the caller holds (see cipher_format.h for the layouts).
 *
 * Owns: encoding (hex, base64), key derivation, the AES and RSA layers, input validation.
 * Does not own: key files, `{cipher}` values in documents, the choice of key, logging. All the
 * cryptography is OpenSSL 3 EVP; every temporary that held key material or plaintext is wiped
 * with OPENSSL_cleanse, and the OpenSSL error queue is cleared on failure so that a failed
 * attempt leaves no trace for the next caller to trip over.
 */
#include "cipher_format.h"

#include "err.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AES_BLOCK 16
#define SPRING_IV_LEN 16
#define SPRING_RANDOM_LEN 16
#define SPRING_PBKDF2_ITERATIONS 1024
#define GCM_TAG_LEN 16
#define ALMANAC_NONCE_LEN 12
#define ALMANAC_VERSION 1
#define ALMANAC_SCRYPT_SALT "almanac.alm1"
#define ALMANAC_HKDF_INFO "almanac alm1 aes-256-gcm"
#define MAX_PREFIX_LEN 256
#define MAX_KEY_NAME_LEN 64
#define MAX_SALT_LEN 256
/* RSA keys up to 16384 bits: the block length must fit Spring's u16 and stay reasonable. */
#define MAX_RSA_BLOCK 2048

void cipher_free_secret(char *secret, size_t len)
{
    if (secret == NULL)
        return;
    OPENSSL_cleanse(secret, len);
    free(secret);
}

static void wipe_free(unsigned char *buf, size_t len)
{
    if (buf == NULL)
        return;
    OPENSSL_cleanse(buf, len);
    free(buf);
}

/*
 * Every failure leaves through here: OpenSSL's own error queue is dropped (its messages could
 * say more about a key than a caller should show), and err.h's message says what went wrong
 * in words that reveal neither key nor text.
 */
static int fail(int code)
{
    ERR_clear_error();
    switch (code) {
    case ERR_NOMEM:
        return err_set(code, "out of memory");
    case ERR_INVALID_CIPHER:
        return err_set(code, "Text not encrypted with this key");
    case ERR_TOO_LARGE:
        return err_set(code, "text too large to encrypt");
    default:
        return err_set(ERR_INTERNAL, "the cryptographic library failed");
    }
}

/* --- encodings ------------------------------------------------------------------------------ */

static int hex_value(char c)
{
    return OPENSSL_hexchar2int((unsigned char)c);
}

static bool is_hex(const char *text, size_t len)
{
    if (len == 0 || len % 2 != 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (hex_value(text[i]) < 0)
            return false;
    return true;
}

/* Caller checked is_hex(). */
static void hex_decode(const char *text, size_t len, unsigned char *out)
{
    for (size_t i = 0; i < len / 2; i++)
        out[i] = (unsigned char)(hex_value(text[2 * i]) << 4 | hex_value(text[2 * i + 1]));
}

/* out must hold 2 * len + 1 bytes. */
static void hex_encode(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xf];
    }
    out[2 * len] = '\0';
}

static bool is_b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

/*
 * Base64 as Java's basic decoder reads it: the standard alphabet, '=' padding accepted but not
 * required, nothing else (no whitespace). url selects the URL-safe alphabet without padding.
 */
static int b64_decode(const char *text, size_t len, bool url, unsigned char **out,
                      size_t *out_len)
{
    int error = ERR_INVALID_CIPHER;
    char *padded = NULL;
    unsigned char *bytes = NULL;
    size_t data = len;

    *out = NULL;
    *out_len = 0;
    if (len == 0 || len > CIPHER_MAX_TEXT)
        goto out;
    if (!url) {
        while (data > 0 && len - data < 2 && text[data - 1] == '=')
            data--;
        if (data != len && len % 4 != 0)
            goto out;
    }
    if (data % 4 == 1)
        goto out;
    size_t padded_len = (data + 3) / 4 * 4;
    error = ERR_NOMEM;
    padded = malloc(padded_len + 1);
    bytes = malloc(padded_len / 4 * 3 + 1);
    if (padded == NULL || bytes == NULL)
        goto out;
    error = ERR_INVALID_CIPHER;
    for (size_t i = 0; i < data; i++) {
        char c = text[i];
        if (url) {
            if (c == '+' || c == '/')
                goto out;
            c = c == '-' ? '+' : c == '_' ? '/' : c;
        }
        if (!is_b64_char(c))
            goto out;
        padded[i] = c;
    }
    /* Zero bits stand in for the padding: the bytes they produce are dropped below. */
    for (size_t i = data; i < padded_len; i++)
        padded[i] = 'A';
    padded[padded_len] = '\0';
    if (padded_len > 0 && EVP_DecodeBlock(bytes, (const unsigned char *)padded,
                                          (int)padded_len) < 0)
        goto out;
    *out_len = data / 4 * 3 + (data % 4 == 0 ? 0 : data % 4 - 1);
    *out = bytes;
    bytes = NULL;
    error = 0;
out:
    free(padded);
    free(bytes);
    return error == 0 ? 0 : fail(error);
}

int cipher_base64_decode(const char *text, size_t len, unsigned char **out, size_t *out_len)
{
    return b64_decode(text, len, false, out, out_len);
}

static int b64_encode(const unsigned char *in, size_t len, bool url, char **out)
{
    *out = NULL;
    if (len > CIPHER_MAX_TEXT)
        return fail(ERR_TOO_LARGE);
    char *text = malloc((len + 2) / 3 * 4 + 1);
    if (text == NULL)
        return fail(ERR_NOMEM);
    int n = EVP_EncodeBlock((unsigned char *)text, in, (int)len);
    if (n < 0) {
        free(text);
        return fail(ERR_INTERNAL);
    }
    size_t tlen = (size_t)n;
    if (url) {
        while (tlen > 0 && text[tlen - 1] == '=')
            tlen--;
        for (size_t i = 0; i < tlen; i++)
            text[i] = text[i] == '+' ? '-' : text[i] == '/' ? '_' : text[i];
    }
    text[tlen] = '\0';
    *out = text;
    return 0;
}

/* RFC 3629 UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1fu;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0fu;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07u;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t j = 1; j <= n; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + j] & 0x3fu);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

/* --- prefixes and detection ----------------------------------------------------------------- */

bool cipher_key_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > MAX_KEY_NAME_LEN || name[0] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

int cipher_parse_prefixes(const char *text, size_t len, cipher_prefix *out)
{
    memset(out, 0, sizeof(*out));
    size_t pos = 0;
    while (pos < len && text[pos] == '{') {
        const char *close = memchr(text + pos, '}', len - pos);
        if (close == NULL)
            break;
        const char *token = text + pos + 1;
        size_t token_len = (size_t)(close - token);
        if (token_len + 2 > MAX_PREFIX_LEN)
            return fail(ERR_INVALID_CIPHER);
        if (token_len == 5 && memcmp(token, "plain", 5) == 0) {
            pos += token_len + 2;
            break;
        }
        const char *colon = memchr(token, ':', token_len);
        if (colon == NULL)
            break; /* not a prefix, as Spring's stripPrefix: part of the (invalid) body */
        size_t name_len = (size_t)(colon - token);
        const char *value = colon + 1;
        size_t value_len = token_len - name_len - 1;
        if (name_len == 3 && memcmp(token, "key", 3) == 0) {
            if (!cipher_key_name_valid(value, value_len))
                return fail(ERR_INVALID_CIPHER);
            out->key_name = value;
            out->key_name_len = value_len;
        } else if (name_len == 6 && memcmp(token, "secret", 6) == 0) {
            out->has_secret = true;
        }
        pos += token_len + 2;
    }
    out->body = text + pos;
    out->body_len = len - pos;
    return 0;
}

cipher_kind cipher_detect(const char *text, size_t len)
{
    size_t plen = sizeof(CIPHER_ALMANAC_PREFIX) - 1;
    if (len == 0 || len > CIPHER_MAX_TEXT)
        return CIPHER_KIND_UNKNOWN;
    if (len > plen && memcmp(text, CIPHER_ALMANAC_PREFIX, plen) == 0)
        return CIPHER_KIND_ALMANAC;
    if (is_hex(text, len))
        return CIPHER_KIND_SPRING_SYMMETRIC;
    for (size_t i = 0; i < len; i++)
        if (!is_b64_char(text[i]) && text[i] != '=')
            return CIPHER_KIND_UNKNOWN;
    return CIPHER_KIND_SPRING_RSA;
}

int cipher_salt_decode(const char *salt, unsigned char **out, size_t *out_len)
{
    size_t len = strlen(salt);
    *out = NULL;
    *out_len = 0;
    if (len == 0 || len > MAX_SALT_LEN)
        return fail(ERR_INVALID_CIPHER);
    unsigned char *bytes = malloc(len);
    if (bytes == NULL)
        return fail(ERR_NOMEM);
    if (is_hex(salt, len)) {
        hex_decode(salt, len, bytes);
        *out_len = len / 2;
    } else {
        memcpy(bytes, salt, len);
        *out_len = len;
    }
    *out = bytes;
    return 0;
}

/* --- AES layers ------------------------------------------------------------------------------ */

/* out = iv || AES-256-CBC-PKCS7(plain). */
static int aes_cbc_encrypt(const unsigned char *key, const unsigned char *plain, size_t len,
                           unsigned char **out, size_t *out_len)
{
    int error = ERR_NOMEM;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    size_t cap = SPRING_IV_LEN + len + AES_BLOCK;
    unsigned char *buf = malloc(cap);
    int n1 = 0, n2 = 0;

    if (ctx == NULL || buf == NULL)
        goto out;
    error = ERR_INTERNAL;
    if (RAND_bytes(buf, SPRING_IV_LEN) != 1 ||
        EVP_EncryptInit_ex2(ctx, EVP_aes_256_cbc(), key, buf, NULL) != 1 ||
        EVP_EncryptUpdate(ctx, buf + SPRING_IV_LEN, &n1, plain, (int)len) != 1 ||
        EVP_EncryptFinal_ex(ctx, buf + SPRING_IV_LEN + n1, &n2) != 1)
        goto out;
    *out_len = SPRING_IV_LEN + (size_t)n1 + (size_t)n2;
    *out = buf;
    buf = NULL;
    error = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    wipe_free(buf, cap);
    return error == 0 ? 0 : fail(error);
}

/* in = iv || ciphertext; the PKCS#7 padding is checked in full by EVP_DecryptFinal_ex. */
static int aes_cbc_decrypt(const unsigned char *key, const unsigned char *in, size_t len,
                           char **plain, size_t *plain_len)
{
    int error = ERR_INVALID_CIPHER;
    EVP_CIPHER_CTX *ctx = NULL;
    unsigned char *buf = NULL;
    size_t cap = len + 1;
    int n1 = 0, n2 = 0;

    if (len < SPRING_IV_LEN + AES_BLOCK || (len - SPRING_IV_LEN) % AES_BLOCK != 0 ||
        len > CIPHER_MAX_TEXT)
        goto out;
    error = ERR_NOMEM;
    ctx = EVP_CIPHER_CTX_new();
    buf = malloc(cap);
    if (ctx == NULL || buf == NULL)
        goto out;
    error = ERR_INTERNAL;
    if (EVP_DecryptInit_ex2(ctx, EVP_aes_256_cbc(), key, in, NULL) != 1 ||
        EVP_DecryptUpdate(ctx, buf, &n1, in + SPRING_IV_LEN, (int)(len - SPRING_IV_LEN)) != 1)
        goto out;
    error = ERR_INVALID_CIPHER;
    if (EVP_DecryptFinal_ex(ctx, buf + n1, &n2) != 1)
        goto out;
    *plain_len = (size_t)n1 + (size_t)n2;
    buf[*plain_len] = '\0';
    *plain = (char *)buf;
    buf = NULL;
    error = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    wipe_free(buf, cap);
    return error == 0 ? 0 : fail(error);
}

/* out = iv || AES-256-GCM(plain) || tag, aad optional. */
static int aes_gcm_encrypt(const unsigned char *key, size_t iv_len, const unsigned char *aad,
                           size_t aad_len, const unsigned char *plain, size_t len,
                           unsigned char **out, size_t *out_len)
{
    int error = ERR_NOMEM;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    size_t cap = iv_len + len + GCM_TAG_LEN;
    unsigned char *buf = malloc(cap);
    int n1 = 0, n2 = 0, na = 0;
    size_t ivl = iv_len;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_CIPHER_PARAM_AEAD_IVLEN, &ivl),
                           OSSL_PARAM_construct_end()};

    if (ctx == NULL || buf == NULL)
        goto out;
    error = ERR_INTERNAL;
    if (RAND_bytes(buf, (int)iv_len) != 1 ||
        EVP_EncryptInit_ex2(ctx, EVP_aes_256_gcm(), NULL, NULL, params) != 1 ||
        EVP_EncryptInit_ex2(ctx, NULL, key, buf, NULL) != 1)
        goto out;
    if (aad_len > 0 && EVP_EncryptUpdate(ctx, NULL, &na, aad, (int)aad_len) != 1)
        goto out;
    if (EVP_EncryptUpdate(ctx, buf + iv_len, &n1, plain, (int)len) != 1 ||
        EVP_EncryptFinal_ex(ctx, buf + iv_len + n1, &n2) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, GCM_TAG_LEN,
                            buf + iv_len + n1 + n2) != 1)
        goto out;
    *out_len = iv_len + (size_t)n1 + (size_t)n2 + GCM_TAG_LEN;
    *out = buf;
    buf = NULL;
    error = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    wipe_free(buf, cap);
    return error == 0 ? 0 : fail(error);
}

static int aes_gcm_decrypt(const unsigned char *key, size_t iv_len, const unsigned char *aad,
                           size_t aad_len, const unsigned char *in, size_t len, char **plain,
                           size_t *plain_len)
{
    int error = ERR_INVALID_CIPHER;
    EVP_CIPHER_CTX *ctx = NULL;
    unsigned char *buf = NULL;
    unsigned char tag[GCM_TAG_LEN];
    size_t cap = len + 1, ct_len;
    int n1 = 0, n2 = 0, na = 0;
    size_t ivl = iv_len;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_CIPHER_PARAM_AEAD_IVLEN, &ivl),
                           OSSL_PARAM_construct_end()};

    if (len < iv_len + GCM_TAG_LEN || len > CIPHER_MAX_TEXT)
        goto out;
    ct_len = len - iv_len - GCM_TAG_LEN;
    memcpy(tag, in + len - GCM_TAG_LEN, GCM_TAG_LEN);
    error = ERR_NOMEM;
    ctx = EVP_CIPHER_CTX_new();
    buf = malloc(cap);
    if (ctx == NULL || buf == NULL)
        goto out;
    error = ERR_INTERNAL;
    if (EVP_DecryptInit_ex2(ctx, EVP_aes_256_gcm(), NULL, NULL, params) != 1 ||
        EVP_DecryptInit_ex2(ctx, NULL, key, in, NULL) != 1)
        goto out;
    if (aad_len > 0 && EVP_DecryptUpdate(ctx, NULL, &na, aad, (int)aad_len) != 1)
        goto out;
    if (EVP_DecryptUpdate(ctx, buf, &n1, in + iv_len, (int)ct_len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, GCM_TAG_LEN, tag) != 1)
        goto out;
    error = ERR_INVALID_CIPHER;
    if (EVP_DecryptFinal_ex(ctx, buf + n1, &n2) != 1)
        goto out;
    *plain_len = (size_t)n1 + (size_t)n2;
    buf[*plain_len] = '\0';
    *plain = (char *)buf;
    buf = NULL;
    error = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    wipe_free(buf, cap);
    return error == 0 ? 0 : fail(error);
}

/* --- Spring symmetric ------------------------------------------------------------------------ */

int cipher_spring_derive(unsigned char key[CIPHER_KEY_LEN], const char *password,
                         size_t password_len, const unsigned char *salt, size_t salt_len)
{
    if (password_len > CIPHER_MAX_TEXT || salt_len == 0 || salt_len > MAX_SALT_LEN)
        return fail(ERR_INVALID_CIPHER);
    if (PKCS5_PBKDF2_HMAC(password, (int)password_len, salt, (int)salt_len,
                          SPRING_PBKDF2_ITERATIONS, EVP_sha1(), CIPHER_KEY_LEN, key) != 1)
        return fail(ERR_INTERNAL);
    return 0;
}

int cipher_spring_encrypt(const unsigned char key[CIPHER_KEY_LEN], const unsigned char *plain,
                          size_t plain_len, char **out)
{
    unsigned char *bin = NULL;
    size_t bin_len = 0;
    char *hex = NULL;

    *out = NULL;
    if (plain_len > CIPHER_MAX_TEXT)
        return fail(ERR_TOO_LARGE);
    int error = aes_cbc_encrypt(key, plain, plain_len, &bin, &bin_len);
    if (error < 0)
        goto out;
    error = ERR_NOMEM;
    hex = malloc(2 * bin_len + 1);
    if (hex == NULL)
        goto out;
    hex_encode(bin, bin_len, hex);
    *out = hex;
    error = 0;
out:
    free(bin);
    return error == 0 ? 0 : fail(error);
}

int cipher_spring_decrypt(const unsigned char key[CIPHER_KEY_LEN], const char *hex,
                          size_t hex_len, char **plain, size_t *plain_len)
{
    unsigned char *bin = NULL;
    char *text = NULL;
    size_t text_len = 0;
    int error = ERR_INVALID_CIPHER;

    *plain = NULL;
    *plain_len = 0;
    if (hex_len > CIPHER_MAX_TEXT || !is_hex(hex, hex_len))
        goto out;
    error = ERR_NOMEM;
    bin = malloc(hex_len / 2);
    if (bin == NULL)
        goto out;
    hex_decode(hex, hex_len, bin);
    error = aes_cbc_decrypt(key, bin, hex_len / 2, &text, &text_len);
    if (error < 0)
        goto out;
    /* A wrong key passes the padding check about once in 256 tries; garbage is rarely UTF-8. */
    if (!utf8_valid((const unsigned char *)text, text_len)) {
        error = ERR_INVALID_CIPHER;
        goto out;
    }
    *plain = text;
    *plain_len = text_len;
    text = NULL;
out:
    free(bin);
    cipher_free_secret(text, text_len);
    return error == 0 ? 0 : fail(error);
}

/* --- Spring RSA ------------------------------------------------------------------------------ */

static int rsa_ctx_padding(EVP_PKEY_CTX *ctx, cipher_rsa_padding padding)
{
    if (padding == CIPHER_RSA_OAEP)
        return EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
               EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha1()) == 1 &&
               EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha1()) == 1;
    return EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1;
}

/* The AES key the random secret stands for: PBKDF2 over its lower-case hex. */
static int rsa_secret_key(unsigned char key[CIPHER_KEY_LEN], const unsigned char *random,
                          const unsigned char *salt, size_t salt_len)
{
    char password[2 * SPRING_RANDOM_LEN + 1];
    hex_encode(random, SPRING_RANDOM_LEN, password);
    int error = cipher_spring_derive(key, password, 2 * SPRING_RANDOM_LEN, salt, salt_len);
    OPENSSL_cleanse(password, sizeof(password));
    return error;
}

int cipher_spring_rsa_encrypt(EVP_PKEY *pkey, cipher_rsa_padding padding, cipher_aes_mode mode,
                              const unsigned char *salt, size_t salt_len,
                              const unsigned char *plain, size_t plain_len, char **out)
{
    int error = ERR_INVALID_CIPHER;
    EVP_PKEY_CTX *ctx = NULL;
    unsigned char random[SPRING_RANDOM_LEN];
    unsigned char key[CIPHER_KEY_LEN];
    unsigned char *block = NULL, *aes = NULL, *all = NULL;
    size_t block_len = 0, aes_len = 0, all_len = 0;

    *out = NULL;
    if (plain_len > CIPHER_MAX_TEXT) {
        error = ERR_TOO_LARGE;
        goto out;
    }
    if (pkey == NULL || !EVP_PKEY_is_a(pkey, "RSA"))
        goto out;
    int size = EVP_PKEY_get_size(pkey);
    if (size <= 0 || size > MAX_RSA_BLOCK)
        goto out;
    error = ERR_NOMEM;
    block_len = (size_t)size;
    block = malloc(block_len);
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (block == NULL || ctx == NULL)
        goto out;
    error = ERR_INTERNAL;
    if (RAND_bytes(random, sizeof(random)) != 1 || EVP_PKEY_encrypt_init(ctx) != 1 ||
        !rsa_ctx_padding(ctx, padding) ||
        EVP_PKEY_encrypt(ctx, block, &block_len, random, sizeof(random)) != 1)
        goto out;
    if ((error = rsa_secret_key(key, random, salt, salt_len)) < 0)
        goto out;
    error = mode == CIPHER_AES_GCM
                ? aes_gcm_encrypt(key, SPRING_IV_LEN, NULL, 0, plain, plain_len, &aes, &aes_len)
                : aes_cbc_encrypt(key, plain, plain_len, &aes, &aes_len);
    if (error < 0)
        goto out;
    error = ERR_NOMEM;
    all_len = 2 + block_len + aes_len;
    all = malloc(all_len);
    if (all == NULL)
        goto out;
    all[0] = (unsigned char)(block_len >> 8);
    all[1] = (unsigned char)(block_len & 0xff);
    memcpy(all + 2, block, block_len);
    memcpy(all + 2 + block_len, aes, aes_len);
    error = b64_encode(all, all_len, false, out);
out:
    OPENSSL_cleanse(random, sizeof(random));
    OPENSSL_cleanse(key, sizeof(key));
    EVP_PKEY_CTX_free(ctx);
    free(block);
    free(aes);
    free(all);
    return error == 0 ? 0 : fail(error);
}

/* The 16 random bytes in block under the given padding, or ERR_INVALID_CIPHER. */
static int rsa_unwrap(EVP_PKEY *pkey, cipher_rsa_padding padding, const unsigned char *block,
                      size_t block_len, unsigned char random[SPRING_RANDOM_LEN])
{
    int error = ERR_NOMEM;
    unsigned char *buf = malloc(block_len);
    size_t len = block_len;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);

    if (buf == NULL || ctx == NULL)
        goto out;
    error = ERR_INTERNAL;
    if (EVP_PKEY_decrypt_init(ctx) != 1 || !rsa_ctx_padding(ctx, padding))
        goto out;
    error = ERR_INVALID_CIPHER;
    if (EVP_PKEY_decrypt(ctx, buf, &len, block, block_len) != 1 || len != SPRING_RANDOM_LEN)
        goto out;
    memcpy(random, buf, SPRING_RANDOM_LEN);
    error = 0;
out:
    EVP_PKEY_CTX_free(ctx);
    wipe_free(buf, block_len);
    return error == 0 ? 0 : fail(error);
}

int cipher_spring_rsa_decrypt(EVP_PKEY *pkey, const unsigned char *salt, size_t salt_len,
                              const char *b64, size_t b64_len, char **plain, size_t *plain_len)
{
    static const cipher_rsa_padding paddings[] = {CIPHER_RSA_OAEP, CIPHER_RSA_PKCS1};
    int error = ERR_INVALID_CIPHER;
    unsigned char *bin = NULL;
    size_t bin_len = 0;
    unsigned char random[SPRING_RANDOM_LEN];
    unsigned char key[CIPHER_KEY_LEN];
    char *text = NULL;
    size_t text_len = 0;

    *plain = NULL;
    *plain_len = 0;
    if (pkey == NULL || !EVP_PKEY_is_a(pkey, "RSA"))
        goto out;
    if ((error = b64_decode(b64, b64_len, false, &bin, &bin_len)) < 0)
        goto out;
    error = ERR_INVALID_CIPHER;
    if (bin_len < 2)
        goto out;
    size_t block_len = (size_t)bin[0] << 8 | bin[1];
    int size = EVP_PKEY_get_size(pkey);
    if (size <= 0 || block_len != (size_t)size || bin_len - 2 < block_len)
        goto out;
    const unsigned char *aes = bin + 2 + block_len;
    size_t aes_len = bin_len - 2 - block_len;

    for (size_t i = 0; i < sizeof(paddings) / sizeof(paddings[0]); i++) {
        error = rsa_unwrap(pkey, paddings[i], bin + 2, block_len, random);
        if (error == ERR_INVALID_CIPHER)
            continue;
        if (error < 0 || (error = rsa_secret_key(key, random, salt, salt_len)) < 0)
            goto out;
        error = aes_gcm_decrypt(key, SPRING_IV_LEN, NULL, 0, aes, aes_len, &text, &text_len);
        if (error != ERR_INVALID_CIPHER)
            goto out;
        error = aes_cbc_decrypt(key, aes, aes_len, &text, &text_len);
        if (error == 0 && !utf8_valid((const unsigned char *)text, text_len)) {
            cipher_free_secret(text, text_len);
            text = NULL;
            error = ERR_INVALID_CIPHER;
        }
        /* OAEP cannot succeed by chance: its secret is right, so the AES part decides. */
        if (error != ERR_INVALID_CIPHER || paddings[i] == CIPHER_RSA_OAEP)
            goto out;
    }
out:
    OPENSSL_cleanse(random, sizeof(random));
    OPENSSL_cleanse(key, sizeof(key));
    free(bin);
    if (error == 0) {
        *plain = text;
        *plain_len = text_len;
        return error;
    }
    cipher_free_secret(text, text_len);
    return fail(error);
}

/* --- Almanac --------------------------------------------------------------------------------- */

int cipher_almanac_derive(unsigned char key[CIPHER_KEY_LEN], const char *secret,
                          size_t secret_len)
{
    int error = ERR_INTERNAL;
    unsigned char master[CIPHER_KEY_LEN];
    EVP_KDF *scrypt = NULL, *hkdf = NULL;
    EVP_KDF_CTX *sctx = NULL, *hctx = NULL;
    uint64_t n = 1u << 15;
    uint32_t r = 8, p = 1;
    uint64_t maxmem = 64u << 20;

    if (secret_len == 0 || secret_len > CIPHER_MAX_TEXT)
        return fail(ERR_INVALID_CIPHER);
    OSSL_PARAM sparams[] = {
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)(uintptr_t)secret,
                                          secret_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)(uintptr_t)
                                          ALMANAC_SCRYPT_SALT, sizeof(ALMANAC_SCRYPT_SALT) - 1),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
        OSSL_PARAM_construct_end()};
    OSSL_PARAM hparams[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)(uintptr_t)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, master, sizeof(master)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)(uintptr_t)
                                          ALMANAC_HKDF_INFO, sizeof(ALMANAC_HKDF_INFO) - 1),
        OSSL_PARAM_construct_end()};

    scrypt = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    if (scrypt == NULL || hkdf == NULL)
        goto out;
    sctx = EVP_KDF_CTX_new(scrypt);
    hctx = EVP_KDF_CTX_new(hkdf);
    if (sctx == NULL || hctx == NULL)
        goto out;
    if (EVP_KDF_derive(sctx, master, sizeof(master), sparams) != 1 ||
        EVP_KDF_derive(hctx, key, CIPHER_KEY_LEN, hparams) != 1)
        goto out;
    error = 0;
out:
    OPENSSL_cleanse(master, sizeof(master));
    EVP_KDF_CTX_free(sctx);
    EVP_KDF_CTX_free(hctx);
    EVP_KDF_free(scrypt);
    EVP_KDF_free(hkdf);
    return error == 0 ? 0 : fail(error);
}

int cipher_almanac_encrypt(const unsigned char key[CIPHER_KEY_LEN], const unsigned char *plain,
                           size_t plain_len, char **out)
{
    static const unsigned char version = ALMANAC_VERSION;
    int error = ERR_TOO_LARGE;
    unsigned char *sealed = NULL, *all = NULL;
    size_t sealed_len = 0;
    char *b64 = NULL, *text = NULL;
    size_t plen = sizeof(CIPHER_ALMANAC_PREFIX) - 1;

    *out = NULL;
    if (plain_len > CIPHER_MAX_TEXT)
        goto out;
    error = aes_gcm_encrypt(key, ALMANAC_NONCE_LEN, &version, 1, plain, plain_len, &sealed,
                            &sealed_len);
    if (error < 0)
        goto out;
    error = ERR_NOMEM;
    all = malloc(1 + sealed_len);
    if (all == NULL)
        goto out;
    all[0] = version;
    memcpy(all + 1, sealed, sealed_len);
    if ((error = b64_encode(all, 1 + sealed_len, true, &b64)) < 0)
        goto out;
    error = ERR_NOMEM;
    size_t blen = strlen(b64);
    text = malloc(plen + blen + 1);
    if (text == NULL)
        goto out;
    memcpy(text, CIPHER_ALMANAC_PREFIX, plen);
    memcpy(text + plen, b64, blen + 1);
    *out = text;
    error = 0;
out:
    free(sealed);
    free(all);
    free(b64);
    return error == 0 ? 0 : fail(error);
}

int cipher_almanac_decrypt(const unsigned char key[CIPHER_KEY_LEN], const char *text,
                           size_t text_len, char **plain, size_t *plain_len)
{
    int error = ERR_INVALID_CIPHER;
    unsigned char *bin = NULL;
    size_t bin_len = 0;
    size_t plen = sizeof(CIPHER_ALMANAC_PREFIX) - 1;

    *plain = NULL;
    *plain_len = 0;
    if (text_len <= plen || text_len > CIPHER_MAX_TEXT ||
        memcmp(text, CIPHER_ALMANAC_PREFIX, plen) != 0)
        goto out;
    if ((error = b64_decode(text + plen, text_len - plen, true, &bin, &bin_len)) < 0)
        goto out;
    error = ERR_INVALID_CIPHER;
    if (bin_len < 1 + ALMANAC_NONCE_LEN + GCM_TAG_LEN || bin[0] != ALMANAC_VERSION)
        goto out;
    /* The version byte is authenticated too, so it cannot be swapped for a future format's. */
    error = aes_gcm_decrypt(key, ALMANAC_NONCE_LEN, bin, 1, bin + 1, bin_len - 1, plain,
                            plain_len);
out:
    free(bin);
    return error == 0 ? 0 : fail(error);
}

/* --- public key ------------------------------------------------------------------------------ */

/* Appends SSH's mpint (u32 length, two's complement big-endian) of the named RSA parameter. */
static int ssh_put_mpint(EVP_PKEY *pkey, const char *param, unsigned char *buf, size_t cap,
                         size_t *pos)
{
    BIGNUM *bn = NULL;
    int error = ERR_INTERNAL;
    if (EVP_PKEY_get_bn_param(pkey, param, &bn) != 1)
        goto out;
    int need = BN_bn2mpi(bn, NULL);
    if (need <= 0 || (size_t)need > cap - *pos)
        goto out;
    BN_bn2mpi(bn, buf + *pos);
    *pos += (size_t)need;
    error = 0;
out:
    BN_free(bn);
    return error;
}

int cipher_ssh_public_key(EVP_PKEY *pkey, const char *comment, char **out)
{
    static const unsigned char prefix[] = {0, 0, 0, 7, 's', 's', 'h', '-', 'r', 's', 'a'};
    int error = ERR_INVALID_CIPHER;
    unsigned char *blob = NULL;
    char *b64 = NULL, *line = NULL;
    size_t pos = sizeof(prefix), cap;

    *out = NULL;
    if (pkey == NULL || !EVP_PKEY_is_a(pkey, "RSA") || EVP_PKEY_get_size(pkey) <= 0)
        goto out;
    cap = sizeof(prefix) + 2 * ((size_t)EVP_PKEY_get_size(pkey) + 16);
    error = ERR_NOMEM;
    if ((blob = malloc(cap)) == NULL)
        goto out;
    memcpy(blob, prefix, sizeof(prefix));
    if ((error = ssh_put_mpint(pkey, OSSL_PKEY_PARAM_RSA_E, blob, cap, &pos)) < 0 ||
        (error = ssh_put_mpint(pkey, OSSL_PKEY_PARAM_RSA_N, blob, cap, &pos)) < 0 ||
        (error = b64_encode(blob, pos, false, &b64)) < 0)
        goto out;
    error = ERR_NOMEM;
    size_t len = strlen("ssh-rsa ") + strlen(b64) + 1 + strlen(comment) + 1;
    if ((line = malloc(len)) == NULL)
        goto out;
    strcpy(line, "ssh-rsa ");
    strcat(line, b64);
    strcat(line, " ");
    strcat(line, comment);
    *out = line;
    error = 0;
out:
    free(blob);
    free(b64);
    return error == 0 ? 0 : fail(error);
}
