/*
 * Unit tests for the capped whole-file reader and the key file loader of common/: real files
 * in a temporary directory, real RSA keys made by the openssl command.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cipher_format.h"
#include "err.h"
#include "fileread.h"
#include "keyfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "%s/almanac-fileread-XXXXXX",
             getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    char cmd[512];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const char *content, mode_t mode)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, strlen(content), f), strlen(content));
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

static void reads_up_to_the_cap_and_refuses_one_byte_more(void **state)
{
    file_contents c = {0};
    (void)state;
    const char *path = write_file("ten", "0123456789", 0600);
    assert_int_equal(file_read(&c, path, 10, 0), 0);
    assert_int_equal(c.len, 10);
    assert_string_equal(c.data, "0123456789");
    assert_true(S_ISREG(c.mode));
    file_contents_dispose(&c);
    assert_int_equal(file_read(&c, path, 9, FILE_READ_SECRET), ERR_TOO_LARGE);
    assert_non_null(strstr(err_last()->message, "larger than 9 bytes"));
    assert_null(c.data);
    /* Empty files are files. */
    path = write_file("empty", "", 0600);
    assert_int_equal(file_read(&c, path, 9, 0), 0);
    assert_int_equal(c.len, 0);
    assert_string_equal(c.data, "");
    file_contents_dispose(&c);
}

static void says_what_went_wrong(void **state)
{
    file_contents c = {0};
    char path[512];
    (void)state;
    snprintf(path, sizeof(path), "%s/missing", dir);
    assert_int_equal(file_read(&c, path, 100, 0), ERR_NOT_FOUND);
    assert_int_equal(err_last()->code, ERR_NOT_FOUND);
    assert_non_null(strstr(err_last()->message, "cannot open"));
    assert_int_equal(file_read(&c, dir, 100, FILE_READ_REGULAR_ONLY), ERR_CONFIG);
    assert_non_null(strstr(err_message(), "not a regular file"));
}

static void reads_streams_larger_than_a_chunk(void **state)
{
    file_contents c = {0};
    (void)state;
    char *big = malloc(10001);
    assert_non_null(big);
    memset(big, 'x', 10000);
    big[10000] = '\0';
    const char *path = write_file("big", big, 0600);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(file_read_stream(&c, f, "input", 10000, FILE_READ_SECRET), 0);
    assert_int_equal(c.len, 10000);
    assert_memory_equal(c.data, big, 10000);
    file_contents_dispose(&c);
    rewind(f);
    assert_int_equal(file_read_stream(&c, f, "input", 9999, 0), ERR_TOO_LARGE);
    fclose(f);
    free(big);
}

typedef struct warnings {
    int count;
    char last[600];
} warnings;

static void collect(void *ctx, const char *message)
{
    warnings *w = ctx;
    w->count++;
    snprintf(w->last, sizeof(w->last), "%s", message);
}

static void secrets_lose_their_newline_and_warn_when_others_can_read(void **state)
{
    char *secret = NULL;
    size_t len = 0, size = 0;
    warnings w = {0};
    (void)state;
    const char *path = write_file("secret", "s3cret\r\n", 0600);
    assert_int_equal(keyfile_load_secret(&secret, &len, &size, path, collect, &w), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(secret, "s3cret", 6);
    assert_int_equal(w.count, 0);
    cipher_free_secret(secret, size);
    path = write_file("loose", "s3cret\n", 0644);
    assert_int_equal(keyfile_load_secret(&secret, &len, &size, path, collect, &w), 0);
    assert_int_equal(w.count, 1);
    assert_non_null(strstr(w.last, "chmod 600"));
    cipher_free_secret(secret, size);
    path = write_file("blank", "\n", 0600);
    assert_int_equal(keyfile_load_secret(&secret, &len, &size, path, collect, &w), ERR_CONFIG);
    assert_non_null(strstr(err_message(), "the key is empty"));
    assert_null(secret);
}

static void make_rsa(const char *name, unsigned bits, char *priv, char *pub, size_t size)
{
    char cmd[2048];
    snprintf(priv, size, "%s/%s.pem", dir, name);
    snprintf(pub, size, "%s/%s.pub.pem", dir, name);
    snprintf(cmd, sizeof(cmd),
             "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:%u -out '%s' 2>/dev/null "
             "&& openssl pkey -in '%s' -pubout -out '%s' && chmod 600 '%s' && chmod 644 '%s'",
             bits, priv, priv, pub, priv, pub);
    assert_int_equal(system(cmd), 0);
}

/* The server's keyring and the CLI once disagreed here: both now warn about short keys. */
static void rsa_keys_short_or_readable_by_others_are_warned_about(void **state)
{
    char priv[512], pub[512];
    EVP_PKEY *pkey = NULL;
    bool has_private = true;
    warnings w = {0};
    (void)state;

    make_rsa("short", 1024, priv, pub, sizeof(priv));
    assert_int_equal(keyfile_load_rsa(&pkey, &has_private, priv, true, collect, &w), 0);
    assert_true(has_private);
    assert_int_equal(w.count, 1);
    assert_non_null(strstr(w.last, "RSA key of 1024 bits; use 2048 or more"));
    EVP_PKEY_free(pkey);

    make_rsa("long", 2048, priv, pub, sizeof(priv));
    w.count = 0;
    /* A public key may be read by anyone: no warning about its mode. */
    assert_int_equal(keyfile_load_rsa(&pkey, &has_private, pub, false, collect, &w), 0);
    assert_false(has_private);
    assert_int_equal(w.count, 0);
    EVP_PKEY_free(pkey);
    /* Decrypting needs the private half. */
    assert_int_equal(keyfile_load_rsa(&pkey, &has_private, pub, true, collect, &w), ERR_CONFIG);
    assert_non_null(strstr(err_message(), "not an unencrypted PEM RSA private key"));
    assert_null(pkey);
    /* A private key others can read is. */
    assert_int_equal(chmod(priv, 0640), 0);
    assert_int_equal(keyfile_load_rsa(&pkey, &has_private, priv, false, collect, &w), 0);
    assert_int_equal(w.count, 1);
    assert_non_null(strstr(w.last, "accessible to group or others"));
    EVP_PKEY_free(pkey);
    assert_true(keyfile_is_pem(priv));
    assert_false(keyfile_is_pem(write_file("notpem", "secret", 0600)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reads_up_to_the_cap_and_refuses_one_byte_more),
        cmocka_unit_test(says_what_went_wrong),
        cmocka_unit_test(reads_streams_larger_than_a_chunk),
        cmocka_unit_test(secrets_lose_their_newline_and_warn_when_others_can_read),
        cmocka_unit_test(rsa_keys_short_or_readable_by_others_are_warned_about),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
