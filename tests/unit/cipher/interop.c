/*
 * Interoperability with the openssl command-line tool, at run time with fresh random values:
 * what openssl encrypts in Spring's layouts Almanac decrypts, and what Almanac writes in Spring's
 * formats openssl decrypts. The key derivation is openssl's too (`openssl kdf ... PBKDF2`), so
 * none of Almanac's code is on the other side of the comparison.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cipher_tests.h"

#include "guard/cipher.h"
#include "cipher_format.h"
#include "errors.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET "test-only symmetric key: correct horse battery staple"

static char *tmp;

static int setup(void **state)
{
    (void)state;
    tmp = test_tempdir();
    return tmp == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    test_rmtree(tmp);
    free(tmp);
    tmp = NULL;
    return 0;
}

/* PBKDF2-HMAC-SHA1(password, hexsalt, 1024) as 64 lower-case hex digits, by the openssl CLI. */
static void openssl_pbkdf2(const char *password, const char *hexsalt, char hex[65])
{
    char cmd[512], *out = NULL;
    snprintf(cmd, sizeof(cmd),
             "openssl kdf -keylen 32 -kdfopt digest:SHA1 -kdfopt 'pass:%s' -kdfopt hexsalt:%s "
             "-kdfopt iter:1024 PBKDF2", password, hexsalt);
    assert_int_equal(test_run(cmd, &out, NULL), 0);
    size_t n = 0;
    for (const char *p = out; *p && n < 64; p++)
        if (*p != ':' && *p != '\n')
            hex[n++] = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
    hex[n] = '\0';
    assert_int_equal(n, 64);
    free(out);
}

static void random_text(char *buf, size_t len)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .";
    unsigned char r[256];
    assert_true(len < sizeof(r));
    assert_int_equal(RAND_bytes(r, (int)len), 1);
    for (size_t i = 0; i < len; i++)
        buf[i] = chars[r[i] % (sizeof(chars) - 1)];
    buf[len] = '\0';
}

static void to_hex(const unsigned char *in, size_t len, char *out)
{
    for (size_t i = 0; i < len; i++)
        sprintf(out + 2 * i, "%02x", in[i]);
    out[2 * len] = '\0';
}

/* openssl enc -d over ct with the given key and iv (hex); the plaintext (free()). */
static char *openssl_cbc_decrypt(const char *key_hex, const char *iv_hex,
                                 const unsigned char *ct, size_t len)
{
    char path[600], cmd[1200], *out = NULL;
    snprintf(path, sizeof(path), "%s/ct.bin", tmp);
    assert_int_equal(test_write_file(path, ct, len), 0);
    snprintf(cmd, sizeof(cmd), "openssl enc -d -aes-256-cbc -K %s -iv %s -in %s", key_hex,
             iv_hex, path);
    assert_int_equal(test_run(cmd, &out, NULL), 0);
    return out;
}

static void test_almanac_spring_symmetric_to_openssl(void **state)
{
    (void)state;
    char key_hex[65];
    openssl_pbkdf2(SECRET, "deadbeef", key_hex);
    for (size_t len = 0; len < 40; len += 7) {
        char text[64], *cipher = NULL;
        random_text(text, len);
        assert_int_equal(keyring_encrypt(test_keyring("default"), NULL, KEYRING_FORMAT_SPRING,
                                         text, len, &cipher), 0);
        size_t hex_len = strlen(cipher);
        assert_true(hex_len >= 64 && hex_len % 32 == 0);
        for (const char *p = cipher; *p; p++)
            assert_non_null(strchr("0123456789abcdef", *p)); /* lower-case, as Spring */
        char iv_hex[33];
        memcpy(iv_hex, cipher, 32);
        iv_hex[32] = '\0';
        unsigned char ct[256];
        size_t ct_len = (hex_len - 32) / 2;
        for (size_t i = 0; i < ct_len; i++) {
            unsigned int byte;
            assert_int_equal(sscanf(cipher + 32 + 2 * i, "%2x", &byte), 1);
            ct[i] = (unsigned char)byte;
        }
        char *plain = openssl_cbc_decrypt(key_hex, iv_hex, ct, ct_len);
        assert_string_equal(plain, text);
        free(plain);
        free(cipher);
    }
}

static void test_openssl_symmetric_to_almanac(void **state)
{
    (void)state;
    char key_hex[65];
    openssl_pbkdf2(SECRET, "deadbeef", key_hex);
    for (size_t len = 1; len < 50; len += 12) {
        char text[64], cmd[1024], path[600], *ct = NULL, *iv = NULL;
        size_t ct_len = 0;
        random_text(text, len);
        snprintf(path, sizeof(path), "%s/plain.txt", tmp);
        assert_int_equal(test_write_file(path, text, len), 0);
        assert_int_equal(test_run("openssl rand -hex 16", &iv, NULL), 0);
        iv[32] = '\0';
        snprintf(cmd, sizeof(cmd), "openssl enc -aes-256-cbc -K %s -iv %s -in %s", key_hex, iv,
                 path);
        assert_int_equal(test_run(cmd, &ct, &ct_len), 0);
        char value[600];
        snprintf(value, sizeof(value), "{cipher}%s", iv);
        to_hex((const unsigned char *)ct, ct_len, value + strlen(value));
        char *plain = NULL;
        size_t plain_len = 0;
        assert_int_equal(keyring_decrypt_value(test_keyring("default"), value, &plain,
                                               &plain_len), 0);
        assert_string_equal(plain, text);
        keyring_free_secret(plain, plain_len);
        free(ct);
        free(iv);
    }
}

/* Splits Spring's RSA layout and has openssl undo both layers (CBC only: enc has no GCM). */
static void test_almanac_spring_rsa_to_openssl(void **state)
{
    (void)state;
    static const char *const modes[] = {"pkcs1", "oaep"};
    for (int f = KEYRING_FORMAT_ALMANAC; f <= KEYRING_FORMAT_SPRING; f++) {
        char text[32], *cipher = NULL, path[600], cmd[1400], *random = NULL;
        unsigned char *bin = NULL;
        size_t bin_len = 0, random_len = 0;
        random_text(text, 20);
        assert_int_equal(keyring_encrypt(test_keyring("rsa"), NULL, (keyring_format)f, text, 20,
                                         &cipher), 0);
        assert_int_equal(cipher_base64_decode(cipher, strlen(cipher), &bin, &bin_len), 0);
        assert_int_equal(bin[0] << 8 | bin[1], 256);
        snprintf(path, sizeof(path), "%s/block.bin", tmp);
        assert_int_equal(test_write_file(path, bin + 2, 256), 0);
        /* Almanac's format with an RSA key is OAEP + GCM; Spring's default PKCS#1 + CBC. */
        const char *mode = modes[f == KEYRING_FORMAT_ALMANAC];
        snprintf(cmd, sizeof(cmd), "openssl pkeyutl -decrypt -inkey %s/rsa.pem -in %s "
                 "-pkeyopt rsa_padding_mode:%s%s", KEYS_DIR, path, mode,
                 f == KEYRING_FORMAT_ALMANAC ? " -pkeyopt rsa_oaep_md:sha1" : "");
        assert_int_equal(test_run(cmd, &random, &random_len), 0);
        assert_int_equal(random_len, 16);
        char password[33], key_hex[65];
        to_hex((const unsigned char *)random, 16, password);
        openssl_pbkdf2(password, "deadbeef", key_hex);
        if (f == KEYRING_FORMAT_SPRING) {
            char iv_hex[33];
            to_hex(bin + 258, 16, iv_hex);
            char *plain = openssl_cbc_decrypt(key_hex, iv_hex, bin + 274, bin_len - 274);
            assert_string_equal(plain, text);
            free(plain);
        } else {
            assert_int_equal(bin_len, 2 + 256 + 16 + 20 + 16); /* IV, text, GCM tag */
        }
        free(random);
        free(bin);
        free(cipher);
    }
}

static void test_openssl_rsa_to_almanac(void **state)
{
    (void)state;
    static const char *const paddings[] = {
        "-pkeyopt rsa_padding_mode:pkcs1",
        "-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1 -pkeyopt rsa_mgf1_md:sha1"};
    for (size_t p = 0; p < 2; p++) {
        char text[40], path[600], cmd[1400], *block = NULL, *ct = NULL, *iv = NULL;
        size_t block_len = 0, ct_len = 0;
        unsigned char random[16];
        random_text(text, 33);
        assert_int_equal(RAND_bytes(random, sizeof(random)), 1);
        snprintf(path, sizeof(path), "%s/random.bin", tmp);
        assert_int_equal(test_write_file(path, random, sizeof(random)), 0);
        snprintf(cmd, sizeof(cmd), "openssl pkeyutl -encrypt -pubin -inkey %s/rsa-public.pem "
                 "-in %s %s", KEYS_DIR, path, paddings[p]);
        assert_int_equal(test_run(cmd, &block, &block_len), 0);
        assert_int_equal(block_len, 256);
        char password[33], key_hex[65];
        to_hex(random, sizeof(random), password);
        openssl_pbkdf2(password, "deadbeef", key_hex);
        snprintf(path, sizeof(path), "%s/plain.txt", tmp);
        assert_int_equal(test_write_file(path, text, strlen(text)), 0);
        assert_int_equal(test_run("openssl rand -hex 16", &iv, NULL), 0);
        iv[32] = '\0';
        snprintf(cmd, sizeof(cmd), "openssl enc -aes-256-cbc -K %s -iv %s -in %s", key_hex, iv,
                 path);
        assert_int_equal(test_run(cmd, &ct, &ct_len), 0);

        unsigned char all[1024];
        size_t n = 0;
        all[n++] = (unsigned char)(block_len >> 8);
        all[n++] = (unsigned char)block_len;
        memcpy(all + n, block, block_len);
        n += block_len;
        for (size_t i = 0; i < 16; i++) {
            unsigned int byte;
            assert_int_equal(sscanf(iv + 2 * i, "%2x", &byte), 1);
            all[n++] = (unsigned char)byte;
        }
        memcpy(all + n, ct, ct_len);
        n += ct_len;
        char value[2048] = "{cipher}";
        EVP_EncodeBlock((unsigned char *)value + 8, all, (int)n);
        char *plain = NULL;
        size_t plain_len = 0;
        assert_int_equal(keyring_decrypt_value(test_keyring("rsa"), value, &plain, &plain_len),
                         0);
        assert_string_equal(plain, text);
        keyring_free_secret(plain, plain_len);
        /* The same value under the other RSA key fails cleanly. */
        keyring_options opts = {.rsa_key_file = KEYS_DIR "/other-rsa.pem"};
        keyring *other = NULL;
        assert_int_equal(keyring_load(&other, &opts), 0);
        assert_int_equal(keyring_decrypt_value(other, value, &plain, &plain_len),
                         ERR_INVALID_CIPHER);
        assert_null(plain);
        keyring_free(other);
        free(block);
        free(ct);
        free(iv);
    }
}

int run_interop_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_almanac_spring_symmetric_to_openssl),
        cmocka_unit_test(test_openssl_symmetric_to_almanac),
        cmocka_unit_test(test_almanac_spring_rsa_to_openssl),
        cmocka_unit_test(test_openssl_rsa_to_almanac),
    };
    return cmocka_run_group_tests_name("cipher_interop", tests, setup, teardown);
}
