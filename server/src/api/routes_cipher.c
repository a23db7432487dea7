/*
 * routes_cipher — the encryption service's HTTP handlers (/encrypt, /decrypt, /encrypt/status,
 * /key), answering with Spring's exact bodies and status codes (SPRING-COMPAT.md, "Secrets").
 *
 * Owns: reading the body the way Spring's EncryptionController does (form-encoded bodies,
 * `{key:NAME}` prefixes carried over to the ciphertext), and the JSON bodies of the encryption
 * errors. Does not own keys or formats (cipher.c, cipher_format.c) nor who may call (routes.c).
 * The `{name}/{profiles}` forms are validated like any application name and profile list but do
 * not select a key: keys are chosen by `{key:NAME}` only. Plaintexts are never logged.
 */
#include "api/routes_cipher.h"

#include "guard/cipher.h"
#include "cipher_format.h"
#include "errors.h"
#include "log.h"
#include "names.h"
#include "server.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <openssl/crypto.h>
#include <string.h>
#include <strings.h>

#define MODULE "cipher"
#define TEXT_PLAIN "text/plain;charset=UTF-8"

/* Spring's {"description": ..., "status": ...} bodies of the encryption controller. */
static int answer_state(response *res, unsigned status, const char *description,
                        const char *state)
{
    return response_json(res, status,
                         json_pack("{s:s, s:s}", "description", description, "status", state));
}

static int answer_no_key(response *res)
{
    return answer_state(res, 404, "No key was installed for encryption service", "NO_KEY");
}

static int answer_invalid(response *res)
{
    return answer_state(res, 400, "Text not encrypted with this key", "INVALID");
}

/* The optional /{name}/{profiles} segments: validated, then ignored (they select no key). */
static int check_location(const request *req, response *res, bool *ok)
{
    char name[512];
    *ok = true;
    if (req->nsegments == 1)
        return 0;
    if (req->nsegments != 3 ||
        names_decode(req->segments[1], "application name", name, sizeof(name)) < 0 ||
        names_check_profiles(req->segments[2]) < 0) {
        *ok = false;
        return response_error(res, req, ERR_BAD_REQUEST, "Invalid request");
    }
    return 0;
}

/* Exactly "text/plain" with no parameters: the only type Spring leaves alone. */
static bool is_text_plain(const char *type)
{
    if (type == NULL)
        return true; /* no Content-Type: take the body as sent */
    while (*type == ' ')
        type++;
    size_t len = strlen(type);
    while (len > 0 && type[len - 1] == ' ')
        len--;
    return len == 10 && strncasecmp(type, "text/plain", 10) == 0;
}

static int hex_digit(char c)
{
    return OPENSSL_hexchar2int((unsigned char)c);
}

static bool all_hex(const char *s, size_t len)
{
    if (len % 2 != 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (hex_digit(s[i]) < 0)
            return false;
    return true;
}

int routes_cipher_strip_form(const char *body, size_t len, const char *content_type, int cipher,
                             char **out, size_t *out_len)
{
    char *text = malloc(len + 1);
    size_t n = 0;

    *out = NULL;
    *out_len = 0;
    if (text == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    if (len == 0 || body[len - 1] != '=' || is_text_plain(content_type)) {
        memcpy(text, body, len);
        text[len] = '\0';
        *out = text;
        *out_len = len;
        return 0;
    }
    /* URLDecoder: '+' is a space, %XX a byte, anything else broken is an error. */
    for (size_t i = 0; i < len; i++) {
        if (body[i] == '+') {
            text[n++] = ' ';
        } else if (body[i] == '%') {
            int hi = i + 2 < len ? hex_digit(body[i + 1]) : -1;
            int lo = hi >= 0 ? hex_digit(body[i + 2]) : -1;
            if (lo < 0) {
                keyring_free_secret(text, len + 1);
                return err_set(ERR_BAD_REQUEST, "malformed %%-escape in form body");
            }
            text[n++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            text[n++] = body[i];
        }
    }
    text[n] = '\0';
    if (!cipher) {
        /* "User posted data with content type form but meant it to be text/plain". */
        text[--n] = '\0';
    } else {
        for (size_t i = 0; i < n; i++)
            if (text[i] == ' ')
                text[i] = '+';
        /* Drop the '=' only when the rest is a ciphertext on its own (odd length). */
        if (n % 2 == 1 && text[n - 1] == '=') {
            unsigned char *bytes = NULL;
            size_t bytes_len = 0;
            bool strip = all_hex(text, n - 1) ||
                         cipher_base64_decode(text, n - 1, &bytes, &bytes_len) == 0;
            free(bytes);
            if (strip)
                text[--n] = '\0';
        }
    }
    *out = text;
    *out_len = n;
    return 0;
}

static int body_or_error(const request *req, response *res, bool *ok)
{
    *ok = req->body != NULL && req->body_len > 0;
    if (!*ok)
        return response_error(res, req, ERR_BAD_REQUEST, "Required request body is missing");
    if (req->body_len > CIPHER_MAX_TEXT) {
        *ok = false;
        return response_error(res, req, ERR_TOO_LARGE, "request body too large");
    }
    return 0;
}

int route_encrypt(request *req, response *res)
{
    const keyring *k = req->server->keyring;
    char *input = NULL, *cipher = NULL, *name = NULL, *body = NULL;
    size_t input_len = 0;
    cipher_prefix prefix;
    bool ok;
    int rc = check_location(req, res, &ok);

    if (!ok)
        goto out;
    if (k == NULL) {
        rc = answer_no_key(res);
        goto out;
    }
    if ((rc = body_or_error(req, res, &ok)) != 0 || !ok)
        goto out;
    if ((rc = routes_cipher_strip_form(req->body, req->body_len,
                                       request_header(req, "Content-Type"), 0, &input,
                                       &input_len)) < 0) {
        rc = response_error(res, req, rc, NULL);
        goto out;
    }
    if (cipher_parse_prefixes(input, input_len, &prefix) < 0) {
        rc = response_error(res, req, ERR_BAD_REQUEST, "invalid {key:NAME} prefix");
        goto out;
    }
    if (prefix.key_name != NULL &&
        (name = strndup(prefix.key_name, prefix.key_name_len)) == NULL) {
        rc = response_error(res, req, ERR_NOMEM, NULL);
        goto out;
    }
    int error = keyring_encrypt(k, name, KEYRING_FORMAT_DEFAULT, prefix.body, prefix.body_len,
                                &cipher);
    if (error == ERR_NO_KEY) {
        rc = answer_no_key(res);
        goto out;
    } else if (error < 0) {
        rc = response_error(res, req, error, NULL);
        goto out;
    }
    /* As Spring, the key's name goes back on the ciphertext so the value names its key. */
    size_t len = strlen(cipher) + (name ? strlen(name) + 6 : 0);
    if ((body = malloc(len + 1)) == NULL) {
        rc = response_error(res, req, ERR_NOMEM, NULL);
        goto out;
    }
    snprintf(body, len + 1, "%s%s%s%s", name ? "{key:" : "", name ? name : "", name ? "}" : "",
             cipher);
    LOG_INFO(MODULE, "encrypted a value%s%s", name ? " with key " : "", name ? name : "");
    rc = response_set(res, 200, TEXT_PLAIN, body, len);
    body = NULL;
out:
    keyring_free_secret(input, input_len);
    free(cipher);
    free(name);
    free(body);
    return rc;
}

int route_decrypt(request *req, response *res)
{
    const keyring *k = req->server->keyring;
    char *stripped = NULL, *joined = NULL, *plain = NULL;
    size_t stripped_len = 0, joined_len = 0, plain_len = 0;
    cipher_prefix prefix;
    bool ok;
    int rc = check_location(req, res, &ok);

    if (!ok)
        goto out;
    if (k == NULL) {
        rc = answer_no_key(res);
        goto out;
    }
    if ((rc = body_or_error(req, res, &ok)) != 0 || !ok)
        goto out;
    /* Spring strips the {key:...} prefixes first, then undoes the form encoding of the rest. */
    if (cipher_parse_prefixes(req->body, req->body_len, &prefix) < 0) {
        rc = answer_invalid(res);
        goto out;
    }
    size_t prefix_len = req->body_len - prefix.body_len;
    if (routes_cipher_strip_form(prefix.body, prefix.body_len,
                                 request_header(req, "Content-Type"), 1, &stripped,
                                 &stripped_len) < 0) {
        rc = answer_invalid(res);
        goto out;
    }
    joined_len = prefix_len + stripped_len;
    if ((joined = malloc(joined_len + 1)) == NULL) {
        rc = response_error(res, req, ERR_NOMEM, NULL);
        goto out;
    }
    memcpy(joined, req->body, prefix_len);
    memcpy(joined + prefix_len, stripped, stripped_len + 1);
    int error = keyring_decrypt_text(k, joined, joined_len, &plain, &plain_len);
    if (error == ERR_NO_KEY) {
        rc = answer_no_key(res);
    } else if (error == ERR_INVALID_CIPHER) {
        LOG_WARN(MODULE, "cannot decrypt a value posted to %s (wrong key or damaged text)",
                 req->url);
        rc = answer_invalid(res);
    } else if (error < 0) {
        rc = response_error(res, req, error, NULL);
    } else {
        LOG_INFO(MODULE, "decrypted a value");
        rc = response_set_copy(res, 200, TEXT_PLAIN, plain, plain_len);
    }
out:
    keyring_free_secret(stripped, stripped_len);
    keyring_free_secret(joined, joined_len);
    keyring_free_secret(plain, plain_len);
    return rc;
}

int route_encrypt_status(request *req, response *res)
{
    if (!keyring_has_key(req->server->keyring, NULL))
        return answer_no_key(res);
    return response_json(res, 200, json_pack("{s:s}", "status", "OK"));
}

int route_key(request *req, response *res)
{
    char *line = NULL;
    bool ok;
    int rc = check_location(req, res, &ok);
    if (!ok)
        return rc;
    if (!keyring_has_key(req->server->keyring, NULL))
        return answer_no_key(res);
    if (keyring_public_key_ssh(req->server->keyring, &line) < 0)
        return answer_state(res, 404, "No public key available", "NOT_FOUND");
    return response_set(res, 200, TEXT_PLAIN, line, strlen(line));
}
