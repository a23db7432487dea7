/*
 * keyfile — loading encryption keys from files, the same way for the server's keyring and for
 * the CLI's offline `almanac encrypt/decrypt --key-file`, so both accept the same files and warn
 * about the same things: a file holding secret material (a symmetric secret, a private key)
 * that group or others may read, and an RSA key shorter than 2048 bits. Errors follow err.h
 * (ERR_CONFIG with "PATH: reason", ERR_NOMEM); warnings go to the caller's callback.
 */
#ifndef ALMANAC_KEYFILE_H
#define ALMANAC_KEYFILE_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>

#define KEYFILE_MAX (64u * 1024u)
#define KEYFILE_MIN_RSA_BITS 2048

/* Receives one warning at a time; message names the file. */
typedef void (*keyfile_warn_fn)(void *ctx, const char *message);

/*
 * The symmetric secret in path, final newlines dropped (editors add them). *secret is wiped and
 * freed by the caller with cipher_free_secret(*secret, *size); *len is the secret's length.
 * An empty secret is an error.
 */
int keyfile_load_secret(char **secret, size_t *len, size_t *size, const char *path,
                        keyfile_warn_fn warn, void *ctx);

/*
 * The RSA key of an unencrypted PEM file (never prompts for a passphrase): the private key,
 * or when need_private is false a public key alone (a site may keep the private half
 * elsewhere). *has_private says which was found. The caller frees *out with EVP_PKEY_free.
 */
int keyfile_load_rsa(EVP_PKEY **out, bool *has_private, const char *path, bool need_private,
                     keyfile_warn_fn warn, void *ctx);

/* True when path starts like a PEM document (-----BEGIN); false if it cannot be read. */
bool keyfile_is_pem(const char *path);

#endif
