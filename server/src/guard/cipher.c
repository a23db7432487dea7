/*
 * cipher — the keyring: loads the keys that `{cipher}` values and the /encrypt, /decrypt and
 * /key endpoints use, picks the right one for a value, and hosts the offline encrypt/decrypt
 * helper.
 *
 * Owns: reading key files (--encrypt-key-file, ALMANAC_ENCRYPT_KEY, --encrypt-rsa-key-file, the
 * --encrypt-keys-dir of named keys), deriving each symmetric key once at load, choosing a key
 * from a value's `{key:NAME}` prefix and its format. Does not own the formats (cipher_format.c)
 * or HTTP (routes_cipher.c). Key material is wiped with OPENSSL_cleanse when freed and never
 * appears in a log line or an error message; paths and key names may.
 */
#include "guard/cipher.h"

#include "cipher_format.h"
#include "errors.h"
#include "fileread.h"
#include "keyfile.h"
#include "log.h"
#include "settings.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEYS_DIR_MAX 256

typedef struct keyring_key {
    char *name;                             /* NULL for the default keys */
    bool symmetric;
    unsigned char spring[CIPHER_KEY_LEN];   /* PBKDF2 of the secret (Spring's hex format) */
    unsigned char almanac[CIPHER_KEY_LEN];  /* scrypt+HKDF of the secret (alm1) */
    EVP_PKEY *pkey;                         /* RSA */
    bool can_decrypt;                       /* RSA: the private half is present */
} keyring_key;

struct keyring {
    keyring_key *sym;      /* default symmetric key, or NULL */
    keyring_key *rsa;      /* default RSA key, or NULL */
    keyring_key *named;    /* --encrypt-keys-dir, for {key:NAME} */
    size_t nnamed;
    unsigned char *salt;
    size_t salt_len;
    keyring_format format; /* never DEFAULT */
};

static void key_dispose(keyring_key *key)
{
    if (key == NULL)
        return;
    free(key->name);
    EVP_PKEY_free(key->pkey);
    OPENSSL_cleanse(key, sizeof(*key));
}

void keyring_free(keyring *k)
{
    if (k == NULL)
        return;
    key_dispose(k->sym);
    free(k->sym);
    key_dispose(k->rsa);
    free(k->rsa);
    for (size_t i = 0; i < k->nnamed; i++)
        key_dispose(&k->named[i]);
    free(k->named);
    free(k->salt);
    free(k);
}

void keyring_free_secret(char *secret, size_t len)
{
    cipher_free_secret(secret, len);
}

static void warn_to_log(void *ctx, const char *message)
{
    (void)ctx;
    LOG_WARN("cipher", "%s", message);
}

static int init_symmetric(keyring_key *key, const keyring *k, const char *secret, size_t len,
                          const char *origin)
{
    /* Editors end files with a newline that is no part of the secret. */
    while (len > 0 && (secret[len - 1] == '\n' || secret[len - 1] == '\r'))
        len--;
    if (len == 0)
        return err_set(ERR_CONFIG, "%s: the key is empty", origin);
    key->symmetric = true;
    int error = cipher_spring_derive(key->spring, secret, len, k->salt, k->salt_len);
    if (error == 0)
        error = cipher_almanac_derive(key->almanac, secret, len);
    if (error < 0)
        return err_set(ERR_CONFIG, "%s: cannot derive the key", origin);
    return 0;
}

static int load_symmetric_file(keyring_key *key, const keyring *k, const char *path)
{
    char *secret = NULL;
    size_t len = 0, size = 0;
    int error = keyfile_load_secret(&secret, &len, &size, path, warn_to_log, NULL);
    if (error == 0)
        error = init_symmetric(key, k, secret, len, path);
    cipher_free_secret(secret, size);
    return error;
}

static int load_rsa_file(keyring_key *key, const char *path)
{
    return keyfile_load_rsa(&key->pkey, &key->can_decrypt, path, false, warn_to_log, NULL);
}

static int load_keys_dir(keyring *k, const char *dir_path)
{
    int error = 0;
    DIR *dir = opendir(dir_path);
    struct dirent *entry;
    char path[4096];

    if (dir == NULL)
        return err_set(ERR_CONFIG, "%s: cannot open keys directory: %s", dir_path,
                       strerror(errno));
    if ((k->named = calloc(KEYS_DIR_MAX, sizeof(*k->named))) == NULL) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    while ((entry = readdir(dir)) != NULL) {
        size_t len = strlen(entry->d_name);
        bool sym = len > 4 && strcmp(entry->d_name + len - 4, ".key") == 0;
        bool rsa = len > 4 && strcmp(entry->d_name + len - 4, ".pem") == 0;
        /* Other files (a README, editor backups) are not keys. */
        if ((!sym && !rsa) || !cipher_key_name_valid(entry->d_name, len - 4))
            continue;
        if (k->nnamed == KEYS_DIR_MAX) {
            error = err_set(ERR_CONFIG, "%s: more than %d keys", dir_path, KEYS_DIR_MAX);
            goto out;
        }
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir_path, entry->d_name) >=
            sizeof(path)) {
            error = err_set(ERR_CONFIG, "%s: path too long", dir_path);
            goto out;
        }
        keyring_key *key = &k->named[k->nnamed++];
        if ((key->name = strndup(entry->d_name, len - 4)) == NULL) {
            error = err_set(ERR_NOMEM, "out of memory");
            goto out;
        }
        error = sym ? load_symmetric_file(key, k, path) : load_rsa_file(key, path);
        if (error < 0)
            goto out;
    }
out:
    closedir(dir);
    return error;
}

static keyring_key *new_key(int *error)
{
    keyring_key *key = calloc(1, sizeof(*key));
    if (key == NULL)
        *error = err_set(ERR_NOMEM, "out of memory");
    return key;
}

int keyring_load(keyring **out, const keyring_options *opts)
{
    int error = 0;
    keyring *k = NULL;

    *out = NULL;
    if (opts->key_file == NULL && (opts->key_secret == NULL || opts->key_secret[0] == '\0') &&
        opts->rsa_key_file == NULL && opts->keys_dir == NULL)
        return 0;
    if ((k = calloc(1, sizeof(*k))) == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    k->format = opts->format == KEYRING_FORMAT_SPRING ? KEYRING_FORMAT_SPRING
                                                      : KEYRING_FORMAT_ALMANAC;
    const char *salt = opts->salt ? opts->salt : CIPHER_SPRING_DEFAULT_SALT;
    if ((error = cipher_salt_decode(salt, &k->salt, &k->salt_len)) < 0) {
        if (error != ERR_NOMEM)
            error = err_set(ERR_CONFIG, "encrypt salt: empty or too long");
        goto out;
    }
    if (opts->key_file != NULL || (opts->key_secret != NULL && opts->key_secret[0] != '\0')) {
        if ((k->sym = new_key(&error)) == NULL)
            goto out;
        error = opts->key_file != NULL
                    ? load_symmetric_file(k->sym, k, opts->key_file)
                    : init_symmetric(k->sym, k, opts->key_secret, strlen(opts->key_secret),
                                     "ALMANAC_ENCRYPT_KEY");
        if (error < 0)
            goto out;
    }
    if (opts->rsa_key_file != NULL) {
        if ((k->rsa = new_key(&error)) == NULL ||
            (error = load_rsa_file(k->rsa, opts->rsa_key_file)) < 0)
            goto out;
    }
    if (opts->keys_dir != NULL && (error = load_keys_dir(k, opts->keys_dir)) < 0)
        goto out;
    LOG_INFO("cipher", "keyring: %s%s%zu named key(s)", k->sym ? "symmetric key, " : "",
             k->rsa ? "RSA key, " : "", k->nnamed);
    *out = k;
    k = NULL;
out:
    keyring_free(k);
    return error;
}

int keyring_from_settings(keyring **out, const settings *s)
{
    keyring_options opts = {0};
    opts.key_file = s->encrypt_key_file;
    if (opts.key_file == NULL)
        opts.key_secret = getenv("ALMANAC_ENCRYPT_KEY");
    opts.salt = s->encrypt_salt;
    opts.rsa_key_file = s->encrypt_rsa_key_file;
    opts.keys_dir = s->encrypt_keys_dir;
    if (s->encrypt_format == NULL || strcmp(s->encrypt_format, "almanac") == 0)
        opts.format = KEYRING_FORMAT_ALMANAC;
    else if (strcmp(s->encrypt_format, "spring") == 0)
        opts.format = KEYRING_FORMAT_SPRING;
    else
        return err_set(ERR_CONFIG, "--encrypt-format: expected almanac or spring");
    return keyring_load(out, &opts);
}

/*
 * The named key of the wanted kind (NAME.key when symmetric, NAME.pem otherwise); with any, the
 * other kind will do when that one is missing.
 */
static const keyring_key *find_named(const keyring *k, const char *name, size_t len,
                                     bool symmetric, bool any)
{
    const keyring_key *other = NULL;
    for (size_t i = 0; i < k->nnamed; i++) {
        const keyring_key *key = &k->named[i];
        if (strlen(key->name) != len || memcmp(key->name, name, len) != 0)
            continue;
        if (key->symmetric == symmetric)
            return key;
        other = key;
    }
    return any ? other : NULL;
}

bool keyring_has_key(const keyring *k, const char *name)
{
    if (k == NULL)
        return false;
    if (name == NULL)
        return k->sym != NULL || k->rsa != NULL;
    return find_named(k, name, strlen(name), true, true) != NULL;
}

int keyring_encrypt(const keyring *k, const char *name, keyring_format format,
                    const char *plain, size_t len, char **out)
{
    const keyring_key *key = NULL;
    int error;

    *out = NULL;
    if (k == NULL)
        return err_set(ERR_NO_KEY, "No key was installed for encryption service");
    if (name != NULL)
        key = find_named(k, name, strlen(name), true, true);
    else
        key = k->sym ? k->sym : k->rsa;
    if (key == NULL)
        return err_set(ERR_NO_KEY, "no key named '%s'", name ? name : "(default)");
    if (format == KEYRING_FORMAT_DEFAULT)
        format = k->format;
    const unsigned char *bytes = (const unsigned char *)plain;
    if (key->symmetric && format == KEYRING_FORMAT_SPRING)
        error = cipher_spring_encrypt(key->spring, bytes, len, out);
    else if (key->symmetric)
        error = cipher_almanac_encrypt(key->almanac, bytes, len, out);
    else if (format == KEYRING_FORMAT_SPRING)
        error = cipher_spring_rsa_encrypt(key->pkey, CIPHER_RSA_PKCS1, CIPHER_AES_CBC, k->salt,
                                          k->salt_len, bytes, len, out);
    else
        error = cipher_spring_rsa_encrypt(key->pkey, CIPHER_RSA_OAEP, CIPHER_AES_GCM, k->salt,
                                          k->salt_len, bytes, len, out);
    return error;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int keyring_decrypt_text(const keyring *k, const char *text, size_t len, char **plain,
                         size_t *plain_len)
{
    static const char tag[] = "{cipher}";
    cipher_prefix prefix;
    const keyring_key *key = NULL;
    int error = ERR_INVALID_CIPHER;

    *plain = NULL;
    *plain_len = 0;
    if (k == NULL)
        return err_set(ERR_NO_KEY, "No key was installed for encryption service");
    /* Ciphertexts hold no whitespace: what surrounds one came from a file or a terminal. */
    while (len > 0 && is_space(text[0])) {
        text++;
        len--;
    }
    while (len > 0 && is_space(text[len - 1]))
        len--;
    if (len >= sizeof(tag) - 1 && memcmp(text, tag, sizeof(tag) - 1) == 0) {
        text += sizeof(tag) - 1;
        len -= sizeof(tag) - 1;
    }
    if (len > CIPHER_MAX_TEXT || cipher_parse_prefixes(text, len, &prefix) < 0)
        return err_set(ERR_INVALID_CIPHER, "Text not encrypted with this key");
    cipher_kind kind = cipher_detect(prefix.body, prefix.body_len);
    bool symmetric = kind != CIPHER_KIND_SPRING_RSA;
    if (prefix.key_name != NULL)
        key = find_named(k, prefix.key_name, prefix.key_name_len, symmetric, false);
    else
        key = symmetric ? k->sym : k->rsa;
    if (kind == CIPHER_KIND_UNKNOWN || key == NULL || (!symmetric && !key->can_decrypt))
        return err_set(ERR_INVALID_CIPHER, "Text not encrypted with this key");
    switch (kind) {
    case CIPHER_KIND_ALMANAC:
        error = cipher_almanac_decrypt(key->almanac, prefix.body, prefix.body_len, plain,
                                       plain_len);
        break;
    case CIPHER_KIND_SPRING_SYMMETRIC:
        error = cipher_spring_decrypt(key->spring, prefix.body, prefix.body_len, plain,
                                      plain_len);
        break;
    default:
        error = cipher_spring_rsa_decrypt(key->pkey, k->salt, k->salt_len, prefix.body,
                                          prefix.body_len, plain, plain_len);
        break;
    }
    return error;
}

int keyring_decrypt_value(const keyring *k, const char *value, char **plain, size_t *plain_len)
{
    *plain = NULL;
    *plain_len = 0;
    if (strncmp(value, "{cipher}", 8) != 0)
        return err_set(ERR_INVALID_CIPHER, "not a {cipher} value");
    return keyring_decrypt_text(k, value, strlen(value), plain, plain_len);
}

int keyring_public_key_ssh(const keyring *k, char **out)
{
    *out = NULL;
    if (k == NULL || k->rsa == NULL)
        return err_set(ERR_NOT_FOUND, "No public key available");
    return cipher_ssh_public_key(k->rsa->pkey, "application", out);
}

/* --- offline helper ------------------------------------------------------------------------- */

static int cli_fail(const char *command, const char *message)
{
    fprintf(stderr, "almanac-server %s: %s\n", command, message);
    return 1;
}

int cipher_cli_main(int argc, char **argv)
{
    const char *command = argc > 0 ? argv[0] : "encrypt";
    bool encrypt = strcmp(command, "encrypt") == 0;
    keyring_options opts = {0};
    const char *key_file = NULL;
    keyring *k = NULL;
    char *input = NULL, *result = NULL;
    size_t input_len = 0, input_size = 0, result_len = 0;
    int rc = 1;

    if (!encrypt && strcmp(command, "decrypt") != 0)
        return cli_fail(command, "expected encrypt or decrypt");
    /* stdout is the result: only warnings and errors belong on the terminal. */
    log_configure(LOG_LEVEL_WARN, LOG_FORMAT_TEXT);
    /* Options come in pairs: "--name value". */
    for (int i = 1; i < argc; i += 2) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            printf("usage: almanac-server %s [--key-file FILE] [--format almanac|spring] "
                   "[--salt HEX] < input\n"
                   "  FILE holds the secret, or a PEM RSA key; without it ALMANAC_ENCRYPT_KEY "
                   "is the secret.\n",
                   command);
            return 0;
        }
        if (val == NULL)
            return cli_fail(command, "option needs a value (see --help)");
        if (strcmp(arg, "--key-file") == 0)
            key_file = val;
        else if (strcmp(arg, "--salt") == 0)
            opts.salt = val;
        else if (strcmp(arg, "--format") == 0 && strcmp(val, "almanac") == 0)
            opts.format = KEYRING_FORMAT_ALMANAC;
        else if (strcmp(arg, "--format") == 0 && strcmp(val, "spring") == 0)
            opts.format = KEYRING_FORMAT_SPRING;
        else
            return cli_fail(command, "unknown option or value (see --help)");
    }
    if (key_file != NULL && keyfile_is_pem(key_file))
        opts.rsa_key_file = key_file;
    else if (key_file != NULL)
        opts.key_file = key_file;
    else
        opts.key_secret = getenv("ALMANAC_ENCRYPT_KEY");
    if (keyring_load(&k, &opts) < 0) {
        cli_fail(command, err_message());
        goto out;
    }
    if (k == NULL) {
        cli_fail(command, "no key: give --key-file or set ALMANAC_ENCRYPT_KEY");
        goto out;
    }
    file_contents in = {0};
    int r = file_read_stream(&in, stdin, "standard input", CIPHER_MAX_TEXT, FILE_READ_SECRET);
    input = in.data; /* wiped at out with cipher_free_secret */
    input_len = input_size = in.len;
    if (r < 0) {
        cli_fail(command, r == ERR_TOO_LARGE ? "input too large" : "cannot read standard input");
        goto out;
    }
    if (encrypt) {
        /* `echo secret | almanac-server encrypt` must not encrypt echo's newline. */
        if (input_len > 0 && input[input_len - 1] == '\n')
            input_len--;
        if (input_len > 0 && input[input_len - 1] == '\r')
            input_len--;
        if (keyring_encrypt(k, NULL, KEYRING_FORMAT_DEFAULT, input, input_len, &result) < 0) {
            cli_fail(command, err_message());
            goto out;
        }
        result_len = strlen(result);
        printf("{cipher}%s\n", result);
    } else {
        if (keyring_decrypt_text(k, input, input_len, &result, &result_len) < 0) {
            cli_fail(command, err_message());
            goto out;
        }
        fwrite(result, 1, result_len, stdout);
    }
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    cipher_free_secret(input, input_size);
    cipher_free_secret(result, result_len);
    keyring_free(k);
    return rc;
}
