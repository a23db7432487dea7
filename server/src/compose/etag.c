/*
 * etag — computing, matching and normalising entity tags (see etag.h).
 */
#include "compose/etag.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static void digest_to_etag(const unsigned char *md, char etag[ETAG_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    etag[0] = '"';
    for (size_t i = 0; i < 16; i++) {
        etag[1 + 2 * i] = hex[md[i] >> 4];
        etag[2 + 2 * i] = hex[md[i] & 15];
    }
    etag[33] = '"';
    etag[34] = '\0';
}

void etag_of_bytes(const char *kind, const char *data, size_t len, char etag[ETAG_SIZE])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, kind, strlen(kind) + 1) != 1 ||
        EVP_DigestUpdate(ctx, data, len) != 1 || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
        memset(md, 0, sizeof(md));
    EVP_MD_CTX_free(ctx);
    digest_to_etag(md, etag);
}

bool etag_matches(const char *if_none_match, const char *etag)
{
    if (if_none_match == NULL)
        return false;
    if (strcmp(if_none_match, "*") == 0)
        return true;
    /* A list of (possibly weak) tags; ours is quoted, so a substring match is exact enough. */
    return strstr(if_none_match, etag) != NULL;
}

void etag_normalise(const char *given, char out[ETAG_SIZE])
{
    if (strncmp(given, "W/", 2) == 0)
        given += 2;
    size_t len = strlen(given);
    if (len >= 2 && given[0] == '"' && given[len - 1] == '"') {
        given++;
        len -= 2;
    }
    if (len > ETAG_SIZE - 3)
        len = ETAG_SIZE - 3;
    snprintf(out, ETAG_SIZE, "\"%.*s\"", (int)len, given);
}
