/*
 * routes_cipher — the HTTP handlers of the encryption service, with Spring's bodies and status
 * codes: POST /encrypt[/{name}/{profiles}], POST /decrypt[/{name}/{profiles}],
 * GET /encrypt/status, GET /key[/{name}/{profiles}]. The route table in routes.c decides who may
 * call them; these read the keyring from req->server->keyring.
 */
#ifndef ALMANAC_ROUTES_CIPHER_H
#define ALMANAC_ROUTES_CIPHER_H

#include "http/request.h"

#include <stddef.h>

int route_encrypt(request *req, response *res);
int route_decrypt(request *req, response *res);
int route_encrypt_status(request *req, response *res);
int route_key(request *req, response *res);

/*
 * What Spring's EncryptionController makes of a body posted with a Content-Type other than
 * exactly text/plain and ending in '=' (`curl -d secret` sends "secret="): URL-decoded and the
 * '=' dropped; for a ciphertext (cipher true) the '=' is kept unless dropping it leaves valid
 * hex or base64, and spaces go back to '+'. Otherwise the body as is. *out is NUL-terminated
 * (free with keyring_free_secret(*out, *out_len)); ERR_BAD_REQUEST for broken %-escapes.
 */
int routes_cipher_strip_form(const char *body, size_t len, const char *content_type, int cipher,
                             char **out, size_t *out_len);

#endif
