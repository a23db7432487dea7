/*
 * cipher_format — the ciphertext formats of `{cipher}` values, as pure functions over keys the
 * caller holds. Shared by the server's keyring and the CLI.
 *
 * Three formats are read and written:
 *   - Spring's symmetric format: lower-case hex of IV(16) || AES-256-CBC-PKCS7(text), the AES
 *     key being PBKDF2-HMAC-SHA1(password, salt, 1024 iterations, 32 bytes).
 *   - Spring's RSA format: Base64(u16 BE length || RSA(16 random bytes) || AES part), the AES
 *     part being the symmetric format in binary (CBC, or GCM with a 16-byte IV and the tag
 *     appended) keyed by the hex of the random bytes. PKCS#1 v1.5 or OAEP-SHA1; decryption
 *     accepts all four combinations without being told which.
 *   - Almanac's own format: "alm1:" base64url(version || nonce(12) || AES-256-GCM(text) ||
 *     tag(16)), the key derived from the secret with scrypt then HKDF-SHA256.
 *
 * Every decryption validates its input completely and fails with ERR_INVALID_CIPHER rather than
 * returning garbage; nothing here logs, and no error path reveals the key or the plaintext.
 * Plaintexts come back NUL-terminated in buffers released with cipher_free_secret(), which
 * wipes them. This module does not read files, parse `{cipher}`, or choose between keys: that is
 * the keyring's job (server/src/cipher.c).
 */
#ifndef ALMANAC_CIPHER_FORMAT_H
#define ALMANAC_CIPHER_FORMAT_H

#include <openssl/types.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * Errors follow err.h: 0, or a negative err_code with its message in err_message():
 * ERR_INVALID_CIPHER (not a ciphertext of this format and key: damaged, wrong key, ...; also a
 * malformed prefix, salt or base64), ERR_TOO_LARGE (a plaintext over CIPHER_MAX_TEXT to
 * encrypt), ERR_NOMEM, ERR_INTERNAL (the crypto library failed on valid input).
 */

/* Largest plaintext or ciphertext text handled; anything bigger is rejected up front. */
#define CIPHER_MAX_TEXT (1u << 20)
#define CIPHER_KEY_LEN 32
/* The salt Spring uses when none is configured, hex-encoded. */
#define CIPHER_SPRING_DEFAULT_SALT "deadbeef"
#define CIPHER_ALMANAC_PREFIX "alm1:"

typedef enum {
    CIPHER_KIND_UNKNOWN = 0,
    CIPHER_KIND_ALMANAC,          /* "alm1:..." */
    CIPHER_KIND_SPRING_SYMMETRIC, /* hex */
    CIPHER_KIND_SPRING_RSA        /* standard base64 */
} cipher_kind;

typedef enum { CIPHER_RSA_PKCS1 = 0, CIPHER_RSA_OAEP } cipher_rsa_padding;
typedef enum { CIPHER_AES_CBC = 0, CIPHER_AES_GCM } cipher_aes_mode;

/* What precedes the ciphertext proper: `{key:NAME}`, `{secret:...}`, `{plain}`, ... */
typedef struct cipher_prefix {
    const char *key_name; /* points into the text; NULL when there is no {key:NAME} */
    size_t key_name_len;
    bool has_secret;      /* a {secret:...} was given (Almanac never takes secrets from values) */
    const char *body;     /* the ciphertext after the prefixes */
    size_t body_len;
} cipher_prefix;

/*
 * Splits text (without "{cipher}") into its `{name:value}` prefixes and the ciphertext, the
 * way Spring does: `{key:NAME}` names a key, `{secret:...}` is noted, other pairs are ignored,
 * `{plain}` ends the prefixes. ERR_INVALID_CIPHER for a key name that is not [A-Za-z0-9._-]{1,64}
 * (not starting with '.') or a prefix over 256 bytes.
 */
int cipher_parse_prefixes(const char *text, size_t len, cipher_prefix *out);

/* Which format text (prefixes removed) is in, by its shape alone; no key involved. */
cipher_kind cipher_detect(const char *text, size_t len);

/* True when name is a valid key name: [A-Za-z0-9._-]{1,64}, not starting with '.'. */
bool cipher_key_name_valid(const char *name, size_t len);

/*
 * Decodes a salt as Spring's RsaSecretEncryptor does: hex when it is valid hex, otherwise its
 * bytes. Empty salt or over 256 bytes is ERR_INVALID_CIPHER. *out is freed with free().
 */
int cipher_salt_decode(const char *salt, unsigned char **out, size_t *out_len);

/* Spring's symmetric key: PBKDF2-HMAC-SHA1(password, salt, 1024, 32 bytes). */
int cipher_spring_derive(unsigned char key[CIPHER_KEY_LEN], const char *password,
                         size_t password_len, const unsigned char *salt, size_t salt_len);
/* Spring's symmetric format, *out a NUL-terminated lower-case hex string (free()). */
int cipher_spring_encrypt(const unsigned char key[CIPHER_KEY_LEN], const unsigned char *plain,
                          size_t plain_len, char **out);
int cipher_spring_decrypt(const unsigned char key[CIPHER_KEY_LEN], const char *hex,
                          size_t hex_len, char **plain, size_t *plain_len);

/*
 * Spring's RSA format with pkey's public key. salt is the decoded salt (cipher_salt_decode).
 * *out is a NUL-terminated base64 string (free()).
 */
int cipher_spring_rsa_encrypt(EVP_PKEY *pkey, cipher_rsa_padding padding, cipher_aes_mode mode,
                              const unsigned char *salt, size_t salt_len,
                              const unsigned char *plain, size_t plain_len, char **out);
/*
 * Decrypts any of the four RSA variants with pkey's private key. Certain checks come first:
 * OAEP before PKCS#1 v1.5 (which can "succeed" on garbage under implicit rejection), GCM before
 * CBC; a CBC result must also be valid UTF-8, as Spring could only ever have served text.
 */
int cipher_spring_rsa_decrypt(EVP_PKEY *pkey, const unsigned char *salt, size_t salt_len,
                              const char *b64, size_t b64_len, char **plain, size_t *plain_len);

/*
 * Almanac's key: scrypt(secret, "almanac.alm1", N=2^15, r=8, p=1) then HKDF-SHA256 with info
 * "almanac alm1 aes-256-gcm". Slow on purpose (the secret may be a passphrase): derive once
 * per key and keep the result.
 */
int cipher_almanac_derive(unsigned char key[CIPHER_KEY_LEN], const char *secret,
                          size_t secret_len);
/* Almanac's format, *out "alm1:..." NUL-terminated (free()). */
int cipher_almanac_encrypt(const unsigned char key[CIPHER_KEY_LEN], const unsigned char *plain,
                           size_t plain_len, char **out);
int cipher_almanac_decrypt(const unsigned char key[CIPHER_KEY_LEN], const char *text,
                           size_t text_len, char **plain, size_t *plain_len);

/* The `ssh-rsa BASE64 comment` line of pkey's public key, as Spring's /key (free()). */
int cipher_ssh_public_key(EVP_PKEY *pkey, const char *comment, char **out);

/* Wipes and frees a plaintext returned here. NULL is fine. */
void cipher_free_secret(char *secret, size_t len);

/* Strict base64 (standard alphabet, padding optional as Java's decoder), for the keyring too. */
int cipher_base64_decode(const char *text, size_t len, unsigned char **out, size_t *out_len);

#endif
