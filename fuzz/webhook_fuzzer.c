/*
 * webhook_fuzzer — a hostile POST /monitor: the first byte picks the provider, the next ones
 * the header values the signature check reads, the rest is the body that is verified and
 * parsed for changed paths.
 */
#include "api/webhook.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct headers {
    char signature[80];
    char token[40];
} headers;

static const char *header(void *ctx, const char *name)
{
    headers *h = ctx;
    if (strstr(name, "Signature") != NULL)
        return h->signature;
    if (strstr(name, "Token") != NULL || strcmp(name, "Authorization") == 0)
        return h->token;
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const webhook_provider providers[] = {WEBHOOK_GITHUB, WEBHOOK_GITLAB,
                                                 WEBHOOK_GITEA,  WEBHOOK_GOGS,
                                                 WEBHOOK_GITEE,  WEBHOOK_BITBUCKET,
                                                 WEBHOOK_FORM,   WEBHOOK_UNKNOWN};
    webhook_provider provider = providers[data[0] % 8];
    data++;
    size--;

    headers h;
    memset(&h, 0, sizeof(h));
    size_t sig_len = size < 71 ? size : 71;
    memcpy(h.signature, "sha256=", 7);
    memcpy(h.signature + 7, data, sig_len > 7 ? sig_len - 7 : 0);
    size_t token_len = size < 32 ? size : 32;
    memcpy(h.token, data, token_len);

    webhook_verify(provider, header, &h, "fuzz-secret", (const char *)data, size);
    json_t *names = NULL;
    if (webhook_applications(&names, provider, (const char *)data, size) == 0) {
        if (!json_is_array(names) || json_array_size(names) == 0)
            abort(); /* a push always concerns someone, "*" at least */
        json_decref(names);
    }
    json_t *urls = NULL;
    if (webhook_repository_urls(&urls, provider, (const char *)data, size) == 0) {
        if (!json_is_array(urls) || json_array_size(urls) > 64)
            abort(); /* at most 64, each a string */
        size_t i;
        json_t *url;
        json_array_foreach(urls, i, url)
            if (!json_is_string(url))
                abort();
        json_decref(urls);
    }
    return 0;
}
