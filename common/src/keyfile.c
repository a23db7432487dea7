/*
 * keyfile — key files to keys (see keyfile.h). It reads and checks files only: deriving keys
 * and the cipher formats are cipher_format.c, holding keys for requests is the server's
 * keyring (guard/cipher.c).
 */
#include "keyfile.h"

#include "cipher_format.h"
#include "err.h"
#include "fileread.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* file_read's failure, said as a key file's; codes narrowed to ERR_CONFIG and ERR_NOMEM. */
static int read_failed(int error, const char *path)
{
    if (error == ERR_NOMEM)
        return error;
    if (error == ERR_NOT_FOUND)
        return err_set(ERR_CONFIG, "%s: cannot open key file: no such file", path);
    return err_set(ERR_CONFIG, "%s", err_message());
}

static void warn_open_mode(const file_contents *file, const char *path, keyfile_warn_fn warn,
                           void *ctx)
{
    char message[600];
    if (warn == NULL || (file->mode & (S_IRWXG | S_IRWXO)) == 0)
        return;
    snprintf(message, sizeof(message),
             "%s: key file is accessible to group or others (chmod 600 it)", path);
    warn(ctx, message);
}

int keyfile_load_secret(char **secret, size_t *len, size_t *size, const char *path,
                        keyfile_warn_fn warn, void *ctx)
{
    file_contents file = {0};
    int error = file_read(&file, path, KEYFILE_MAX, FILE_READ_SECRET | FILE_READ_REGULAR_ONLY);

    *secret = NULL;
    *len = *size = 0;
    if (error < 0) {
        error = read_failed(error, path);
        goto out;
    }
    warn_open_mode(&file, path, warn, ctx);
    size_t n = file.len;
    while (n > 0 && (file.data[n - 1] == '\n' || file.data[n - 1] == '\r'))
        n--;
    if (n == 0) {
        error = err_set(ERR_CONFIG, "%s: the key is empty", path);
        goto out;
    }
    *secret = file.data;
    *len = n;
    *size = file.len + 1;
    file.data = NULL;
out:
    file_contents_dispose(&file);
    return error;
}

/* Never prompts: a server has no terminal to ask on, and the CLI refuses as the server does. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

int keyfile_load_rsa(EVP_PKEY **out, bool *has_private, const char *path, bool need_private,
                     keyfile_warn_fn warn, void *ctx)
{
    file_contents file = {0};
    BIO *bio = NULL;
    EVP_PKEY *pkey = NULL;
    char message[600];
    int error = file_read(&file, path, KEYFILE_MAX, FILE_READ_SECRET | FILE_READ_REGULAR_ONLY);

    *out = NULL;
    *has_private = false;
    if (error < 0) {
        error = read_failed(error, path);
        goto out;
    }
    if ((bio = BIO_new_mem_buf(file.data, (int)file.len)) == NULL)
        goto nomem;
    pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    *has_private = pkey != NULL;
    if (pkey == NULL && !need_private) {
        BIO_free(bio);
        if ((bio = BIO_new_mem_buf(file.data, (int)file.len)) == NULL)
            goto nomem;
        pkey = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
    }
    if (pkey == NULL || !EVP_PKEY_is_a(pkey, "RSA")) {
        error = err_set(ERR_CONFIG, "%s: not an unencrypted PEM RSA %s key", path,
                        need_private ? "private" : "public or private");
        goto out;
    }
    /* A public key may be read by anyone; a private one may not. */
    if (*has_private)
        warn_open_mode(&file, path, warn, ctx);
    if (warn != NULL && EVP_PKEY_get_bits(pkey) < KEYFILE_MIN_RSA_BITS) {
        snprintf(message, sizeof(message), "%s: RSA key of %d bits; use %d or more", path,
                 EVP_PKEY_get_bits(pkey), KEYFILE_MIN_RSA_BITS);
        warn(ctx, message);
    }
    *out = pkey;
    pkey = NULL;
    goto out;
nomem:
    error = err_set(ERR_NOMEM, "out of memory");
out:
    ERR_clear_error();
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    file_contents_dispose(&file);
    return error;
}

bool keyfile_is_pem(const char *path)
{
    char head[11] = {0};
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    size_t n = fread(head, 1, sizeof(head) - 1, f);
    fclose(f);
    return n == 10 && memcmp(head, "-----BEGIN", 10) == 0;
}
