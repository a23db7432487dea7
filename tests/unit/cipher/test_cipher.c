/*
 * Unit tests of the keyring and the ciphertext formats: the vectors in
 * tests/resources/cipher/vectors (made with the openssl CLI and Python's cryptography package,
 * see make-vectors.py there), round trips in every format, damage, wrong keys, key loading and
 * the offline helper. interop.c checks against the openssl CLI at run time, routes.c the HTTP
 * handlers' pieces.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cipher_tests.h"

#include "guard/cipher.h"
#include "cipher_format.h"
#include "errors.h"
#include "settings.h"

#include <dirent.h>
#include <ftw.h>
#include <jansson.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SYMMETRIC_SECRET "test-only symmetric key: correct horse battery staple"

/* --- helpers shared with the other files ---------------------------------------------------- */

int test_run(const char *cmd, char **out, size_t *out_len)
{
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    size_t cap = 1024, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf != NULL && len + 1 >= cap) {
            char *grown = realloc(buf, cap * 2);
            if (grown == NULL) {
                free(buf);
                buf = NULL;
            } else {
                buf = grown;
                cap *= 2;
            }
        }
        if (buf == NULL)
            break;
        size_t n = fread(buf + len, 1, cap - len - 1, p);
        if (n == 0)
            break;
        len += n;
    }
    int status = pclose(p);
    if (buf != NULL)
        buf[len] = '\0';
    if (out != NULL) {
        *out = buf;
        if (out_len != NULL)
            *out_len = len;
    } else {
        free(buf);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int test_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    size_t n = fwrite(data, 1, len, f);
    return fclose(f) == 0 && n == len ? 0 : -1;
}

char *test_tempdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof(tmpl), "%s/almanac-cipher-XXXXXX", base ? base : "/tmp");
    if (mkdtemp(tmpl) == NULL)
        return NULL;
    return strdup(tmpl);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void test_rmtree(const char *dir)
{
    if (dir != NULL)
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (buf != NULL)
        buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

/* --- keyrings ------------------------------------------------------------------------------- */

static const char *keyring_names[] = {"default", "salt", "rotation", "rsa", "public", "pkcs1"};
static keyring *keyrings[sizeof(keyring_names) / sizeof(keyring_names[0])];

keyring *test_keyring(const char *name)
{
    for (size_t i = 0; i < sizeof(keyring_names) / sizeof(keyring_names[0]); i++) {
        if (strcmp(name, keyring_names[i]) != 0)
            continue;
        if (keyrings[i] != NULL)
            return keyrings[i];
        keyring_options opts = {0};
        if (i <= 1) {
            opts.key_file = KEYS_DIR "/symmetric.key";
            opts.rsa_key_file = KEYS_DIR "/rsa.pem";
            opts.salt = i == 1 ? "cafebabe" : NULL;
        } else if (i == 2) {
            opts.keys_dir = KEYS_DIR "/rotation";
        } else {
            opts.rsa_key_file = i == 3   ? KEYS_DIR "/rsa.pem"
                                : i == 4 ? KEYS_DIR "/rsa-public.pem"
                                         : KEYS_DIR "/rsa-pkcs1.pem";
        }
        int error = keyring_load(&keyrings[i], &opts);
        if (error < 0)
            fprintf(stderr, "keyring %s: %s\n", name, err_message());
        assert_int_equal(error, 0);
        assert_non_null(keyrings[i]);
        return keyrings[i];
    }
    assert_string_equal(name, "none");
    return NULL;
}

void test_keyrings_free(void)
{
    for (size_t i = 0; i < sizeof(keyrings) / sizeof(keyrings[0]); i++) {
        keyring_free(keyrings[i]);
        keyrings[i] = NULL;
    }
}

/* --- the vectors ---------------------------------------------------------------------------- */

static void check_vector(const char *dir, const char *name, int *failures)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s.cipher", dir, name);
    size_t value_len = 0;
    char *value = read_text(path, &value_len);
    assert_non_null(value);
    snprintf(path, sizeof(path), "%s/%s.expect.json", dir, name);
    json_error_t jerr;
    json_t *expect = json_load_file(path, 0, &jerr);
    assert_non_null(expect);
    const char *ring = json_string_value(json_object_get(expect, "keyring"));
    const json_t *want = json_object_get(expect, "plain");
    assert_non_null(ring);

    char *plain = NULL;
    size_t plain_len = 0;
    err_clear();
    int error = keyring_decrypt_value(test_keyring(ring), value, &plain, &plain_len);
    if (want != NULL) {
        if (error != 0 || plain_len != json_string_length(want) ||
            memcmp(plain, json_string_value(want), plain_len) != 0 || plain[plain_len] != '\0') {
            fprintf(stderr, "vector %s: expected its plaintext, got error %d (%s)\n", name, error,
                    err_message());
            (*failures)++;
        }
    } else {
        if (error != ERR_INVALID_CIPHER && error != ERR_NO_KEY) {
            fprintf(stderr, "vector %s: expected a failure, got %d\n", name, error);
            (*failures)++;
        }
        if (plain != NULL) {
            fprintf(stderr, "vector %s: failure left a plaintext behind\n", name);
            (*failures)++;
        }
        /* Nothing of the value or the key may reach a message that is logged or served. */
        const char *body = strstr(value, "}") ? strrchr(value, '}') + 1 : value;
        if ((strlen(body) >= 8 && strstr(err_message(), body) != NULL) ||
            strstr(err_message(), "horse") != NULL) {
            fprintf(stderr, "vector %s: the error message leaks: %s\n", name, err_message());
            (*failures)++;
        }
    }
    keyring_free_secret(plain, plain_len);
    json_decref(expect);
    free(value);
}

static void test_vectors(void **state)
{
    (void)state;
    const char *dir = CIPHER_RES "/vectors";
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    int count = 0, failures = 0;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 8 || strcmp(e->d_name + len - 7, ".cipher") != 0)
            continue;
        char name[256];
        snprintf(name, sizeof(name), "%.*s", (int)(len - 7), e->d_name);
        check_vector(dir, name, &failures);
        count++;
    }
    closedir(d);
    assert_true(count >= 80);
    assert_int_equal(failures, 0);
}

/* --- round trips ---------------------------------------------------------------------------- */

static const char *const samples[] = {"s3cr3t", "", "0123456789abcdef", "pässwörd ☃",
                                      "with\nnewline and {braces} and {key:x}"};

static void round_trip(const keyring *k, const char *name, keyring_format format,
                       const char *expect_prefix)
{
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        char *cipher = NULL, *plain = NULL;
        size_t plain_len = 0;
        assert_int_equal(keyring_encrypt(k, name, format, samples[i], strlen(samples[i]),
                                         &cipher), 0);
        assert_non_null(cipher);
        if (expect_prefix != NULL)
            assert_memory_equal(cipher, expect_prefix, strlen(expect_prefix));
        /* As a config value would hold it. */
        char value[8192];
        snprintf(value, sizeof(value), "{cipher}%s%s%s%s", name ? "{key:" : "", name ? name : "",
                 name ? "}" : "", cipher);
        assert_int_equal(keyring_decrypt_value(k, value, &plain, &plain_len), 0);
        assert_int_equal(plain_len, strlen(samples[i]));
        assert_string_equal(plain, samples[i]);
        keyring_free_secret(plain, plain_len);
        /* And as /decrypt receives it. */
        assert_int_equal(keyring_decrypt_text(k, value + 8, strlen(value + 8), &plain,
                                              &plain_len), 0);
        assert_string_equal(plain, samples[i]);
        keyring_free_secret(plain, plain_len);
        free(cipher);
    }
}

static void test_round_trip_symmetric(void **state)
{
    (void)state;
    keyring *k = test_keyring("default");
    round_trip(k, NULL, KEYRING_FORMAT_DEFAULT, "alm1:");
    round_trip(k, NULL, KEYRING_FORMAT_ALMANAC, "alm1:");
    round_trip(k, NULL, KEYRING_FORMAT_SPRING, NULL);
    round_trip(test_keyring("salt"), NULL, KEYRING_FORMAT_SPRING, NULL);
}

static void test_round_trip_rsa(void **state)
{
    (void)state;
    round_trip(test_keyring("rsa"), NULL, KEYRING_FORMAT_ALMANAC, NULL);
    round_trip(test_keyring("rsa"), NULL, KEYRING_FORMAT_SPRING, NULL);
    round_trip(test_keyring("pkcs1"), NULL, KEYRING_FORMAT_SPRING, NULL);
}

static void test_round_trip_named(void **state)
{
    (void)state;
    keyring *k = test_keyring("rotation");
    round_trip(k, "old", KEYRING_FORMAT_SPRING, NULL);
    round_trip(k, "new", KEYRING_FORMAT_ALMANAC, "alm1:");
    round_trip(k, "legacy", KEYRING_FORMAT_SPRING, NULL);
    char *out = NULL;
    assert_int_equal(keyring_encrypt(k, "missing", KEYRING_FORMAT_DEFAULT, "x", 1, &out),
                     ERR_NO_KEY);
    assert_null(out);
    /* Only named keys: nothing to encrypt with by default. */
    assert_int_equal(keyring_encrypt(k, NULL, KEYRING_FORMAT_DEFAULT, "x", 1, &out), ERR_NO_KEY);
    assert_false(keyring_has_key(k, NULL));
    assert_true(keyring_has_key(k, "old"));
    assert_true(keyring_has_key(k, "legacy"));
    assert_false(keyring_has_key(k, "README"));
}

static EVP_PKEY *load_pem(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(pkey);
    return pkey;
}

/* All four RSA variants through the format functions, each read back without being told. */
static void test_rsa_variants(void **state)
{
    (void)state;
    EVP_PKEY *pkey = load_pem(KEYS_DIR "/rsa.pem");
    EVP_PKEY *other = load_pem(KEYS_DIR "/other-rsa.pem");
    const unsigned char salt[] = {0xde, 0xad, 0xbe, 0xef};
    const char *text = "rsa variant";
    for (int pad = 0; pad < 2; pad++) {
        for (int mode = 0; mode < 2; mode++) {
            char *b64 = NULL, *plain = NULL;
            size_t plain_len = 0;
            assert_int_equal(cipher_spring_rsa_encrypt(pkey, (cipher_rsa_padding)pad,
                                                       (cipher_aes_mode)mode, salt, sizeof(salt),
                                                       (const unsigned char *)text, strlen(text),
                                                       &b64), 0);
            assert_int_equal(cipher_detect(b64, strlen(b64)), CIPHER_KIND_SPRING_RSA);
            assert_int_equal(cipher_spring_rsa_decrypt(pkey, salt, sizeof(salt), b64,
                                                       strlen(b64), &plain, &plain_len), 0);
            assert_string_equal(plain, text);
            cipher_free_secret(plain, plain_len);
            plain = NULL;
            assert_int_equal(cipher_spring_rsa_decrypt(other, salt, sizeof(salt), b64,
                                                       strlen(b64), &plain, &plain_len),
                             ERR_INVALID_CIPHER);
            assert_null(plain);
            /* The other salt derives another AES key: GCM cannot pass, CBC hardly ever. */
            const unsigned char salt2[] = {0xca, 0xfe};
            if (mode == CIPHER_AES_GCM)
                assert_int_equal(cipher_spring_rsa_decrypt(pkey, salt2, sizeof(salt2), b64,
                                                           strlen(b64), &plain, &plain_len),
                                 ERR_INVALID_CIPHER);
            cipher_free_secret(plain, plain_len);
            free(b64);
        }
    }
    EVP_PKEY_free(pkey);
    EVP_PKEY_free(other);
}

/* --- damage --------------------------------------------------------------------------------- */

static void test_almanac_every_change_fails(void **state)
{
    (void)state;
    keyring *k = test_keyring("default");
    char *cipher = NULL;
    const char *text = "an authenticated value";
    assert_int_equal(keyring_encrypt(k, NULL, KEYRING_FORMAT_ALMANAC, text, strlen(text),
                                     &cipher), 0);
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t len = strlen(cipher);
    for (size_t i = 5; i < len; i++) {
        char *copy = strdup(cipher);
        /* Flip the top bit of the 6 a character carries: always a bit the decoder uses. */
        size_t idx = (size_t)(strchr(alphabet, copy[i]) - alphabet);
        copy[i] = alphabet[idx ^ 32];
        char *plain = NULL;
        size_t plain_len = 0;
        assert_int_equal(keyring_decrypt_text(k, copy, len, &plain, &plain_len),
                         ERR_INVALID_CIPHER);
        assert_null(plain);
        free(copy);
    }
    for (size_t cut = 0; cut < len; cut++) {
        char *plain = NULL;
        size_t plain_len = 0;
        assert_int_not_equal(keyring_decrypt_text(k, cipher, cut, &plain, &plain_len), 0);
        assert_null(plain);
    }
    free(cipher);
}

static void test_spring_truncations_fail(void **state)
{
    (void)state;
    keyring *k = test_keyring("default");
    char *cipher = NULL;
    /* ASCII letters: no block of it can pass for padding, so every cut must fail. */
    const char *text = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    assert_int_equal(keyring_encrypt(k, NULL, KEYRING_FORMAT_SPRING, text, strlen(text),
                                     &cipher), 0);
    size_t len = strlen(cipher);
    assert_int_equal(len, 2 * (16 + 64));
    for (size_t cut = 0; cut < len; cut++) {
        char *plain = NULL;
        size_t plain_len = 0;
        assert_int_not_equal(keyring_decrypt_text(k, cipher, cut, &plain, &plain_len), 0);
        assert_null(plain);
    }
    free(cipher);
}

static void test_rsa_truncations_fail(void **state)
{
    (void)state;
    keyring *k = test_keyring("rsa");
    char *cipher = NULL;
    const char *text = "abcdefghijklmnopqrstuvwxyz";
    for (int f = KEYRING_FORMAT_ALMANAC; f <= KEYRING_FORMAT_SPRING; f++) {
        assert_int_equal(keyring_encrypt(k, NULL, (keyring_format)f, text, strlen(text), &cipher),
                         0);
        size_t len = strlen(cipher);
        for (size_t cut = 0; cut < len; cut += 3) {
            char *plain = NULL;
            size_t plain_len = 0;
            assert_int_not_equal(keyring_decrypt_text(k, cipher, cut, &plain, &plain_len), 0);
            assert_null(plain);
        }
        free(cipher);
    }
}

static void test_no_key(void **state)
{
    (void)state;
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(keyring_decrypt_value(NULL, "{cipher}abcd", &out, &len), ERR_NO_KEY);
    assert_null(out);
    assert_int_equal(keyring_decrypt_text(NULL, "abcd", 4, &out, &len), ERR_NO_KEY);
    assert_int_equal(keyring_encrypt(NULL, NULL, KEYRING_FORMAT_DEFAULT, "x", 1, &out),
                     ERR_NO_KEY);
    assert_int_equal(keyring_public_key_ssh(NULL, &out), ERR_NOT_FOUND);
    assert_false(keyring_has_key(NULL, NULL));
    /* Nothing configured at all: no keyring, and that is not an error. */
    keyring *k = (keyring *)1;
    keyring_options opts = {0};
    assert_int_equal(keyring_load(&k, &opts), 0);
    assert_null(k);
    opts.key_secret = "";
    assert_int_equal(keyring_load(&k, &opts), 0);
    assert_null(k);
    keyring_free(NULL);
    keyring_free_secret(NULL, 0);
}

/* --- loading -------------------------------------------------------------------------------- */

static void expect_load_error(const keyring_options *opts, const char *must_mention)
{
    keyring *k = NULL;
    err_clear();
    assert_int_equal(keyring_load(&k, opts), ERR_CONFIG);
    assert_null(k);
    if (must_mention != NULL && strstr(err_message(), must_mention) == NULL)
        fail_msg("message '%s' does not mention '%s'", err_message(), must_mention);
}

static void test_load_errors(void **state)
{
    (void)state;
    char *dir = test_tempdir();
    char path[600], cmd[1400];
    assert_non_null(dir);
    keyring_options opts = {0};

    opts.key_file = KEYS_DIR "/does-not-exist.key";
    expect_load_error(&opts, "does-not-exist.key");
    opts.key_file = KEYS_DIR; /* a directory */
    expect_load_error(&opts, "regular file");

    snprintf(path, sizeof(path), "%s/empty.key", dir);
    assert_int_equal(test_write_file(path, "\n\r\n", 3), 0);
    opts.key_file = path;
    expect_load_error(&opts, "empty");

    snprintf(path, sizeof(path), "%s/huge.key", dir);
    char *huge = calloc(1, 65 * 1024);
    memset(huge, 'k', 65 * 1024);
    assert_int_equal(test_write_file(path, huge, 65 * 1024), 0);
    free(huge);
    expect_load_error(&opts, "huge.key");

    opts.key_file = KEYS_DIR "/symmetric.key";
    opts.salt = "";
    expect_load_error(&opts, "salt");
    opts = (keyring_options){0};

    opts.rsa_key_file = KEYS_DIR "/symmetric.key"; /* not PEM */
    expect_load_error(&opts, "symmetric.key");
    snprintf(path, sizeof(path), "%s/ec.pem", dir);
    snprintf(cmd, sizeof(cmd), "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
             "-out %s 2>/dev/null", path);
    assert_int_equal(test_run(cmd, NULL, NULL), 0);
    opts.rsa_key_file = path;
    expect_load_error(&opts, "RSA");
    /* A passphrase-protected key fails at once: a server has no terminal to prompt on. */
    snprintf(path, sizeof(path), "%s/locked.pem", dir);
    snprintf(cmd, sizeof(cmd), "openssl pkey -in %s/rsa.pem -aes256 -passout pass:locked "
             "-out %s 2>/dev/null", KEYS_DIR, path);
    assert_int_equal(test_run(cmd, NULL, NULL), 0);
    opts.rsa_key_file = path;
    expect_load_error(&opts, "locked.pem");
    opts = (keyring_options){0};

    opts.keys_dir = KEYS_DIR "/no-such-dir";
    expect_load_error(&opts, "no-such-dir");
    /* One broken key in the directory fails the whole load: all or nothing. */
    snprintf(path, sizeof(path), "%s/keys", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(cmd, sizeof(cmd), "%s/keys/good.key", dir);
    assert_int_equal(test_write_file(cmd, "good", 4), 0);
    snprintf(cmd, sizeof(cmd), "%s/keys/bad.pem", dir);
    assert_int_equal(test_write_file(cmd, "-----BEGIN nothing", 18), 0);
    opts.keys_dir = path;
    expect_load_error(&opts, "bad.pem");

    test_rmtree(dir);
    free(dir);
}

static void test_from_settings(void **state)
{
    (void)state;
    settings s;
    memset(&s, 0, sizeof(s));
    keyring *k = (keyring *)1;
    unsetenv("ALMANAC_ENCRYPT_KEY");
    assert_int_equal(keyring_from_settings(&k, &s), 0);
    assert_null(k);

    /* The secret itself from the environment, when no key file is given. */
    setenv("ALMANAC_ENCRYPT_KEY", SYMMETRIC_SECRET, 1);
    assert_int_equal(keyring_from_settings(&k, &s), 0);
    assert_non_null(k);
    size_t len = 0;
    char *value = read_text(CIPHER_RES "/vectors/spring-sym-word.cipher", &len);
    char *plain = NULL;
    size_t plain_len = 0;
    assert_int_equal(keyring_decrypt_value(k, value, &plain, &plain_len), 0);
    assert_string_equal(plain, "s3cr3t");
    keyring_free_secret(plain, plain_len);
    free(value);
    keyring_free(k);

    /* The key file wins over the environment. */
    s.encrypt_key_file = (char *)(uintptr_t)KEYS_DIR "/other.key";
    s.encrypt_format = (char *)(uintptr_t)"spring";
    assert_int_equal(keyring_from_settings(&k, &s), 0);
    char *cipher = NULL;
    assert_int_equal(keyring_encrypt(k, NULL, KEYRING_FORMAT_DEFAULT, "v", 1, &cipher), 0);
    assert_int_equal(cipher_detect(cipher, strlen(cipher)), CIPHER_KIND_SPRING_SYMMETRIC);
    free(cipher);
    value = read_text(CIPHER_RES "/vectors/spring-sym-word.cipher", &len);
    assert_int_equal(keyring_decrypt_value(k, value, &plain, &plain_len), ERR_INVALID_CIPHER);
    free(value);
    keyring_free(k);

    s.encrypt_format = (char *)(uintptr_t)"rot13";
    assert_int_equal(keyring_from_settings(&k, &s), ERR_CONFIG);
    unsetenv("ALMANAC_ENCRYPT_KEY");
}

static void test_public_key(void **state)
{
    (void)state;
    char *line = NULL;
    assert_int_equal(keyring_public_key_ssh(test_keyring("rsa"), &line), 0);
    /* ssh-keygen -y wrote the reference: same key blob, Spring's "application" comment. */
    char *ref = read_text(KEYS_DIR "/rsa.ssh.pub", NULL);
    assert_non_null(ref);
    char *end = strpbrk(ref + 8, " \n");
    assert_non_null(end);
    *end = '\0';
    size_t n = strlen(ref);
    assert_memory_equal(line, ref, n);
    assert_string_equal(line + n, " application");
    free(ref);
    free(line);
    line = NULL;
    assert_int_equal(keyring_public_key_ssh(test_keyring("public"), &line), 0);
    free(line);
    line = NULL;
    /* A symmetric key has no public half. */
    keyring_options opts = {.key_file = KEYS_DIR "/symmetric.key"};
    keyring *k = NULL;
    assert_int_equal(keyring_load(&k, &opts), 0);
    assert_int_equal(keyring_public_key_ssh(k, &line), ERR_NOT_FOUND);
    assert_null(line);
    keyring_free(k);
}

static void test_public_only_encrypts(void **state)
{
    (void)state;
    char *cipher = NULL, *plain = NULL;
    size_t plain_len = 0;
    assert_int_equal(keyring_encrypt(test_keyring("public"), NULL, KEYRING_FORMAT_SPRING, "pub",
                                     3, &cipher), 0);
    assert_int_equal(keyring_decrypt_text(test_keyring("public"), cipher, strlen(cipher), &plain,
                                          &plain_len), ERR_INVALID_CIPHER);
    assert_int_equal(keyring_decrypt_text(test_keyring("rsa"), cipher, strlen(cipher), &plain,
                                          &plain_len), 0);
    assert_string_equal(plain, "pub");
    keyring_free_secret(plain, plain_len);
    free(cipher);
}

/* --- pure helpers --------------------------------------------------------------------------- */

static void test_prefixes(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        const char *key;
        int secret;
        const char *body;
    } cases[] = {
        {"abcd", 0, NULL, 0, "abcd"},
        {"{key:k1}abcd", 0, "k1", 0, "abcd"},
        {"{key:k1}{secret:s}abcd", 0, "k1", 1, "abcd"},
        {"{secret:s}{key:k.2-x_y}abcd", 0, "k.2-x_y", 1, "abcd"},
        {"{name:app}{profiles:dev}abcd", 0, NULL, 0, "abcd"},
        {"{plain}{key:k}abcd", 0, NULL, 0, "{key:k}abcd"},
        {"{key:k}{plain}{x}", 0, "k", 0, "{x}"},
        {"{nocolon}abcd", 0, NULL, 0, "{nocolon}abcd"},
        {"{key:k}{unterminated", 0, "k", 0, "{unterminated"},
        {"{key:}abcd", ERR_INVALID_CIPHER, NULL, 0, NULL},
        {"{key:../etc}abcd", ERR_INVALID_CIPHER, NULL, 0, NULL},
        {"{key:.hidden}abcd", ERR_INVALID_CIPHER, NULL, 0, NULL},
        {"{key:a b}abcd", ERR_INVALID_CIPHER, NULL, 0, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cipher_prefix p;
        int rc = cipher_parse_prefixes(cases[i].text, strlen(cases[i].text), &p);
        assert_int_equal(rc, cases[i].rc);
        if (rc != 0)
            continue;
        if (cases[i].key == NULL) {
            assert_null(p.key_name);
        } else {
            assert_int_equal(p.key_name_len, strlen(cases[i].key));
            assert_memory_equal(p.key_name, cases[i].key, p.key_name_len);
        }
        assert_int_equal(p.has_secret, cases[i].secret);
        assert_int_equal(p.body_len, strlen(cases[i].body));
        assert_memory_equal(p.body, cases[i].body, p.body_len);
    }
    char longkey[400];
    snprintf(longkey, sizeof(longkey), "{key:%0300d}x", 0);
    cipher_prefix p;
    assert_int_equal(cipher_parse_prefixes(longkey, strlen(longkey), &p), ERR_INVALID_CIPHER);
}

static void test_detect(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        cipher_kind kind;
    } cases[] = {
        {"alm1:AQID", CIPHER_KIND_ALMANAC},   {"alm1:", CIPHER_KIND_UNKNOWN},
        {"00ff", CIPHER_KIND_SPRING_SYMMETRIC}, {"00FF", CIPHER_KIND_SPRING_SYMMETRIC},
        {"0ff", CIPHER_KIND_SPRING_RSA},      {"AQIDBA==", CIPHER_KIND_SPRING_RSA},
        {"", CIPHER_KIND_UNKNOWN},            {"ab cd", CIPHER_KIND_UNKNOWN},
        {"ab\ncd", CIPHER_KIND_UNKNOWN},      {"{key:x}ab", CIPHER_KIND_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(cipher_detect(cases[i].text, strlen(cases[i].text)), cases[i].kind);
}

static void test_base64(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        const char *bytes;
    } cases[] = {
        {"YWJj", 0, "abc"},   {"YWI=", 0, "ab"},    {"YWI", 0, "ab"},   {"YQ==", 0, "a"},
        {"YQ", 0, "a"},       {"YQ=", ERR_INVALID_CIPHER, NULL},          {"Y", ERR_INVALID_CIPHER, NULL},
        {"YWJjZ", ERR_INVALID_CIPHER, NULL},           {"YW Jj", ERR_INVALID_CIPHER, NULL},
        {"YW=j", ERR_INVALID_CIPHER, NULL},            {"YQ===", ERR_INVALID_CIPHER, NULL},
        {"YW-j", ERR_INVALID_CIPHER, NULL},            {"", ERR_INVALID_CIPHER, NULL},
        {"+/+/", 0, "\xfb\xff\xbf"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char *out = NULL;
        size_t len = 0;
        err_clear();
        int rc = cipher_base64_decode(cases[i].text, strlen(cases[i].text), &out, &len);
        if (rc != cases[i].rc)
            fail_msg("base64 '%s': %d, expected %d", cases[i].text, rc, cases[i].rc);
        /* A failure is this thread's last error (err.h), as everywhere else. */
        assert_int_equal(err_last()->code, rc);
        if (rc < 0)
            assert_string_equal(err_last()->message, "Text not encrypted with this key");
        if (rc == 0) {
            assert_int_equal(len, strlen(cases[i].bytes));
            assert_memory_equal(out, cases[i].bytes, len);
        }
        free(out);
    }
}

/* --- the offline helper --------------------------------------------------------------------- */

/* Runs cipher_cli_main in a child with stdin from in_path; stdout and stderr to files. */
static int run_cli(const char *dir, const char *const *argv, int argc, const char *input,
                   char **out, char **err)
{
    char in_path[600], out_path[600], err_path[600];
    snprintf(in_path, sizeof(in_path), "%s/cli.in", dir);
    snprintf(out_path, sizeof(out_path), "%s/cli.out", dir);
    snprintf(err_path, sizeof(err_path), "%s/cli.err", dir);
    assert_int_equal(test_write_file(in_path, input, strlen(input)), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (freopen(in_path, "rb", stdin) == NULL || freopen(out_path, "wb", stdout) == NULL ||
            freopen(err_path, "wb", stderr) == NULL)
            _exit(99);
        /* main()'s argv is writable; this one is never written to. */
        int rc = cipher_cli_main(argc, (char **)(uintptr_t)argv);
        fflush(stdout);
        fflush(stderr);
        _exit(rc);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    *out = read_text(out_path, NULL);
    *err = read_text(err_path, NULL);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_cli(void **state)
{
    (void)state;
    char *dir = test_tempdir();
    char *out = NULL, *err = NULL;
    const char *enc[] = {"encrypt", "--key-file", KEYS_DIR "/symmetric.key", NULL};
    const char *enc_spring[] = {"encrypt", "--key-file", KEYS_DIR "/symmetric.key", "--format",
                          "spring", NULL};
    const char *dec[] = {"decrypt", "--key-file", KEYS_DIR "/symmetric.key", NULL};
    const char *dec_rsa[] = {"decrypt", "--key-file", KEYS_DIR "/rsa.pem", NULL};
    const char *dec_wrong[] = {"decrypt", "--key-file", KEYS_DIR "/other.key", NULL};
    const char *bad_opt[] = {"encrypt", "--frobnicate", "x", NULL};
    const char *no_key[] = {"encrypt", NULL};

    assert_int_equal(run_cli(dir, enc, 3, "cli secret\n", &out, &err), 0);
    assert_memory_equal(out, "{cipher}alm1:", 13);
    char *cipher = strdup(out);
    free(out);
    free(err);
    /* The newline echo adds is no part of the secret; the output carries none either. */
    assert_int_equal(run_cli(dir, dec, 3, cipher, &out, &err), 0);
    assert_string_equal(out, "cli secret");
    free(out);
    free(err);
    assert_int_equal(run_cli(dir, dec_wrong, 3, cipher, &out, &err), 1);
    assert_string_equal(out, "");
    assert_non_null(strstr(err, "Text not encrypted with this key"));
    assert_null(strstr(err, "cli secret"));
    /* One line, the last (a warning about the key file's mode may precede it). */
    assert_non_null(strstr(err, "almanac-server decrypt: "));
    assert_ptr_equal(strchr(strstr(err, "almanac-server decrypt: "), '\n'), err + strlen(err) - 1);
    free(out);
    free(err);
    free(cipher);

    assert_int_equal(run_cli(dir, enc_spring, 5, "spring cli", &out, &err), 0);
    assert_int_equal(cipher_detect(out + 8, strlen(out + 8) - 1), CIPHER_KIND_SPRING_SYMMETRIC);
    free(out);
    free(err);

    char *rsa_value = read_text(CIPHER_RES "/vectors/spring-rsa-oaep-gcm-word.cipher", NULL);
    assert_int_equal(run_cli(dir, dec_rsa, 3, rsa_value, &out, &err), 0);
    assert_string_equal(out, "s3cr3t");
    free(out);
    free(err);
    free(rsa_value);

    assert_int_equal(run_cli(dir, bad_opt, 3, "", &out, &err), 1);
    assert_non_null(strstr(err, "unknown option"));
    free(out);
    free(err);
    unsetenv("ALMANAC_ENCRYPT_KEY");
    assert_int_equal(run_cli(dir, no_key, 1, "x", &out, &err), 1);
    assert_non_null(strstr(err, "no key"));
    free(out);
    free(err);
    setenv("ALMANAC_ENCRYPT_KEY", "from the environment", 1);
    assert_int_equal(run_cli(dir, no_key, 1, "x", &out, &err), 0);
    assert_memory_equal(out, "{cipher}alm1:", 13);
    unsetenv("ALMANAC_ENCRYPT_KEY");
    free(out);
    free(err);

    test_rmtree(dir);
    free(dir);
}

/* Kubernetes mounts a Secret as NAME -> ..data/NAME symlinks beside dot-directories. */
static void test_keys_dir_kubernetes_layout(void **state)
{
    (void)state;
    char *dir = test_tempdir();
    char path[700], target[700];
    snprintf(path, sizeof(path), "%s/..2026_11_22", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/..2026_11_22/app.key", dir);
    assert_int_equal(test_write_file(path, "mounted secret\n", 15), 0);
    snprintf(path, sizeof(path), "%s/..data", dir);
    assert_int_equal(symlink("..2026_11_22", path), 0);
    snprintf(path, sizeof(path), "%s/app.key", dir);
    snprintf(target, sizeof(target), "..data/app.key");
    assert_int_equal(symlink(target, path), 0);
    keyring_options opts = {.keys_dir = dir};
    keyring *k = NULL;
    assert_int_equal(keyring_load(&k, &opts), 0);
    assert_true(keyring_has_key(k, "app"));
    assert_false(keyring_has_key(k, "..data"));
    char *cipher = NULL, *plain = NULL;
    size_t plain_len = 0;
    assert_int_equal(keyring_encrypt(k, "app", KEYRING_FORMAT_DEFAULT, "k8s", 3, &cipher), 0);
    char value[512];
    snprintf(value, sizeof(value), "{cipher}{key:app}%s", cipher);
    assert_int_equal(keyring_decrypt_value(k, value, &plain, &plain_len), 0);
    assert_string_equal(plain, "k8s");
    keyring_free_secret(plain, plain_len);
    free(cipher);
    keyring_free(k);
    test_rmtree(dir);
    free(dir);
}

static void test_size_caps(void **state)
{
    (void)state;
    size_t big = CIPHER_MAX_TEXT + 1;
    char *text = malloc(big + 1);
    assert_non_null(text);
    memset(text, 'a', big);
    text[big] = '\0';
    char *cipher = NULL, *plain = NULL;
    size_t plain_len = 0;
    assert_int_equal(keyring_encrypt(test_keyring("default"), NULL, KEYRING_FORMAT_ALMANAC, text,
                                     big, &cipher), ERR_TOO_LARGE);
    assert_null(cipher);
    assert_string_equal(err_message(), "text too large to encrypt");
    /* The formats themselves say so, without the keyring translating. */
    unsigned char key[CIPHER_KEY_LEN] = {0};
    assert_int_equal(cipher_spring_encrypt(key, (const unsigned char *)text, big, &cipher),
                     ERR_TOO_LARGE);
    assert_int_equal(err_last()->code, ERR_TOO_LARGE);
    assert_int_equal(cipher_almanac_encrypt(key, (const unsigned char *)text, big, &cipher),
                     ERR_TOO_LARGE);
    assert_null(cipher);
    assert_int_equal(keyring_encrypt(test_keyring("rsa"), NULL, KEYRING_FORMAT_SPRING, text, big,
                                     &cipher), ERR_TOO_LARGE);
    assert_int_equal(keyring_decrypt_text(test_keyring("default"), text, big, &plain,
                                          &plain_len), ERR_INVALID_CIPHER);
    /* The largest plaintext allowed goes through. */
    assert_int_equal(keyring_encrypt(test_keyring("default"), NULL, KEYRING_FORMAT_SPRING, text,
                                     CIPHER_MAX_TEXT / 4, &cipher), 0);
    assert_int_equal(keyring_decrypt_text(test_keyring("default"), cipher, strlen(cipher),
                                          &plain, &plain_len), 0);
    assert_int_equal(plain_len, CIPHER_MAX_TEXT / 4);
    keyring_free_secret(plain, plain_len);
    free(cipher);
    free(text);
}

/* Spring's RSA layout with a 3072-bit key: a 384-byte block behind the length prefix. */
static void test_rsa_3072(void **state)
{
    (void)state;
    char *dir = test_tempdir(), path[600], cmd[800];
    snprintf(path, sizeof(path), "%s/rsa3072.pem", dir);
    snprintf(cmd, sizeof(cmd), "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 "
             "-out %s 2>/dev/null", path);
    assert_int_equal(test_run(cmd, NULL, NULL), 0);
    keyring_options opts = {.rsa_key_file = path};
    keyring *k = NULL;
    assert_int_equal(keyring_load(&k, &opts), 0);
    round_trip(k, NULL, KEYRING_FORMAT_SPRING, "AY"); /* 0x01 0x80: 384 */
    round_trip(k, NULL, KEYRING_FORMAT_ALMANAC, "AY");
    keyring_free(k);
    test_rmtree(dir);
    free(dir);
}

/* A keyring is shared by every request thread. */
typedef struct {
    const char *value;
    const char *plain;
    int failures;
} thread_job;

static void *decrypt_many(void *arg)
{
    thread_job *job = arg;
    for (int i = 0; i < 40; i++) {
        char *plain = NULL;
        size_t plain_len = 0;
        if (keyring_decrypt_value(test_keyring("default"), job->value, &plain, &plain_len) != 0 ||
            strcmp(plain, job->plain) != 0)
            job->failures++;
        keyring_free_secret(plain, plain_len);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    static const char *const names[] = {"spring-rsa-pkcs1-cbc-word", "spring-rsa-oaep-gcm-word",
                                        "almanac-word", "spring-sym-word"};
    char *values[4];
    pthread_t threads[4];
    thread_job jobs[4];
    test_keyring("default"); /* loaded before the threads start, as the server does */
    for (int i = 0; i < 4; i++) {
        char path[600];
        snprintf(path, sizeof(path), "%s/vectors/%s.cipher", CIPHER_RES, names[i]);
        values[i] = read_text(path, NULL);
        assert_non_null(values[i]);
        jobs[i] = (thread_job){values[i], "s3cr3t", 0};
        assert_int_equal(pthread_create(&threads[i], NULL, decrypt_many, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(jobs[i].failures, 0);
        free(values[i]);
    }
}

static int teardown(void **state)
{
    (void)state;
    test_keyrings_free();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_round_trip_symmetric),
        cmocka_unit_test(test_round_trip_rsa),
        cmocka_unit_test(test_round_trip_named),
        cmocka_unit_test(test_rsa_variants),
        cmocka_unit_test(test_almanac_every_change_fails),
        cmocka_unit_test(test_spring_truncations_fail),
        cmocka_unit_test(test_rsa_truncations_fail),
        cmocka_unit_test(test_no_key),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_from_settings),
        cmocka_unit_test(test_public_key),
        cmocka_unit_test(test_public_only_encrypts),
        cmocka_unit_test(test_prefixes),
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_keys_dir_kubernetes_layout),
        cmocka_unit_test(test_size_caps),
        cmocka_unit_test(test_rsa_3072),
        cmocka_unit_test(test_threads),
    };
    int failed = cmocka_run_group_tests_name("cipher", tests, NULL, teardown);
    failed += run_interop_tests();
    failed += run_route_tests();
    test_keyrings_free();
    return failed;
}
