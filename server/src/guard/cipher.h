/*
 * cipher — the server's keyring: the keys that decrypt `{cipher}` values and serve /encrypt,
 * /decrypt and /key. Key material comes only from files or the environment, never from the
 * repository, is wiped when freed, and is never logged. The formats themselves live in
 * common/src/cipher_format.c.
 *
 * A keyring is immutable once loaded and may be shared by any number of threads.
 */
#ifndef ALMANAC_CIPHER_H
#define ALMANAC_CIPHER_H

#include <stdbool.h>
#include <stddef.h>

struct settings;

typedef struct keyring keyring;

/* What /encrypt writes. Both formats are always read. */
typedef enum {
    KEYRING_FORMAT_DEFAULT = 0, /* the keyring's configured format */
    KEYRING_FORMAT_ALMANAC,     /* "alm1:" AES-256-GCM (with an RSA key: Spring RSA, OAEP+GCM) */
    KEYRING_FORMAT_SPRING       /* Spring's hex (symmetric) or RSA PKCS#1 v1.5 + CBC format */
} keyring_format;

typedef struct keyring_options {
    const char *key_file;      /* symmetric secret in a file (trailing newlines ignored) */
    const char *key_secret;    /* or the secret itself (ALMANAC_ENCRYPT_KEY) when no key_file */
    const char *salt;          /* hex; NULL: "deadbeef" */
    const char *rsa_key_file;  /* PEM private key (or public key: encrypt only) */
    const char *keys_dir;      /* named keys: NAME.key (symmetric), NAME.pem (RSA) */
    keyring_format format;     /* DEFAULT means ALMANAC */
} keyring_options;

/*
 * Loads every configured key. 0 with *out (NULL when no key at all is configured), or a
 * negative err_code with a message naming the file and the reason, never the key.
 */
int keyring_load(keyring **out, const keyring_options *opts);
/* The settings hookup: --encrypt-* flags, ALMANAC_ENCRYPT_KEY as the fallback secret. */
int keyring_from_settings(keyring **out, const struct settings *s);
/* Wipes every key. NULL is fine. */
void keyring_free(keyring *k);

/* True when a default key (name NULL) or the named key is installed. k may be NULL. */
bool keyring_has_key(const keyring *k, const char *name);

/*
 * Encrypts with the default key (name NULL) or a named one. *out is the bare ciphertext (no
 * "{cipher}", no "{key:...}"), free(). ERR_NO_KEY when there is no such key.
 */
int keyring_encrypt(const keyring *k, const char *name, keyring_format format,
                    const char *plain, size_t len, char **out);

/*
 * Decrypts one configuration value: the whole string as found in the file, starting with
 * "{cipher}" and optionally "{key:NAME}" / "{secret:...}" prefixes. k may be NULL (no key
 * installed), which fails. 0 with *plain (NUL-terminated, free with keyring_free_secret), or a
 * negative err_code with a message that never contains the value.
 */
int keyring_decrypt_value(const keyring *k, const char *value, char **plain, size_t *plain_len);
/*
 * Decrypts a ciphertext as /decrypt receives it: optional prefixes, no "{cipher}" needed.
 * ERR_NO_KEY without a usable key, ERR_INVALID_CIPHER for anything that does not decrypt.
 */
int keyring_decrypt_text(const keyring *k, const char *text, size_t len, char **plain,
                         size_t *plain_len);
/* Wipes and frees a secret returned by this module. NULL is fine. */
void keyring_free_secret(char *secret, size_t len);

/* The default RSA key's `ssh-rsa AAAA… application` line (free()); ERR_NOT_FOUND without one. */
int keyring_public_key_ssh(const keyring *k, char **out);

/*
 * The offline helper: `almanac-server encrypt|decrypt [--key-file F] [--format almanac|spring]
 * [--salt HEX]`, argv[0] being "encrypt" or "decrypt". Reads stdin, writes the result to stdout
 * (`{cipher}…` for encrypt), one line on stderr and 1 on failure.
 */
int cipher_cli_main(int argc, char **argv);

#endif
