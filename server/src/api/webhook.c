/*
 * webhook — provider detection, signature checks and changed-path extraction for POST /monitor
 * (see webhook.h). Bodies are parsed by jansson with a depth cap; signatures are HMAC-SHA256
 * from OpenSSL compared with CRYPTO_memcmp. It does not refresh anything: the route handler
 * asks the refresher (refresh.c) once the request is known to be genuine.
 */
#include "api/webhook.h"

#include "change/appnames.h"
#include "errors.h"
#include "http/http.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_PATHS 100000 /* changed paths looked at in one notification */

static const struct {
    webhook_provider provider;
    const char *header;
    const char *value; /* NULL: any value */
    const char *name;
} providers[] = {
    {WEBHOOK_GITHUB, "X-GitHub-Event", "push", "github"},
    {WEBHOOK_GITLAB, "X-Gitlab-Event", "Push Hook", "gitlab"},
    {WEBHOOK_GITEA, "X-Gitea-Event", "push", "gitea"},
    {WEBHOOK_GOGS, "X-Gogs-Event", "push", "gogs"},
    {WEBHOOK_GITEE, "X-Gitee-Event", "Push Hook", "gitee"},
    {WEBHOOK_BITBUCKET, "X-Event-Key", "repo:push", "bitbucket"},
};

webhook_provider webhook_detect(webhook_header_fn header, void *ctx)
{
    for (size_t i = 0; i < sizeof(providers) / sizeof(providers[0]); i++) {
        const char *value = header(ctx, providers[i].header);
        if (value != NULL && strcasecmp(value, providers[i].value) == 0)
            return providers[i].provider;
    }
    const char *type = header(ctx, "Content-Type");
    if (type != NULL && strncasecmp(type, "application/x-www-form-urlencoded", 33) == 0)
        return WEBHOOK_FORM;
    return WEBHOOK_UNKNOWN;
}

const char *webhook_provider_name(webhook_provider p)
{
    for (size_t i = 0; i < sizeof(providers) / sizeof(providers[0]); i++)
        if (providers[i].provider == p)
            return providers[i].name;
    return p == WEBHOOK_FORM ? "form" : "unknown";
}

static bool signature_matches(const char *given_hex, const char *secret, const char *body,
                              size_t len)
{
    unsigned char expected[EVP_MAX_MD_SIZE];
    unsigned char given[32];
    unsigned int expected_len = 0;
    size_t given_len = 0;
    if (given_hex == NULL ||
        OPENSSL_hexstr2buf_ex(given, sizeof(given), &given_len, given_hex, '\0') != 1 ||
        given_len != sizeof(given)) {
        ERR_clear_error(); /* a forged header is not an OpenSSL failure worth keeping */
        return false;
    }
    if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, len,
             expected, &expected_len) == NULL ||
        expected_len != sizeof(given))
        return false;
    return CRYPTO_memcmp(expected, given, sizeof(given)) == 0;
}

static bool token_matches(const char *given, const char *secret)
{
    size_t len = strlen(secret);
    if (given == NULL || strlen(given) != len)
        return false;
    return CRYPTO_memcmp(given, secret, len) == 0;
}

static const char *strip_prefix(const char *value, const char *prefix)
{
    size_t n = strlen(prefix);
    return value != NULL && strncasecmp(value, prefix, n) == 0 ? value + n : NULL;
}

int webhook_verify(webhook_provider p, webhook_header_fn header, void *ctx, const char *secret,
                   const char *body, size_t len)
{
    if (secret == NULL || secret[0] == '\0')
        return 0;
    bool ok = false;
    switch (p) {
    case WEBHOOK_GITHUB:
        ok = signature_matches(strip_prefix(header(ctx, "X-Hub-Signature-256"), "sha256="),
                               secret, body, len);
        break;
    case WEBHOOK_BITBUCKET:
        ok = signature_matches(strip_prefix(header(ctx, "X-Hub-Signature"), "sha256="), secret,
                               body, len);
        break;
    case WEBHOOK_GITEA:
        ok = signature_matches(header(ctx, "X-Gitea-Signature"), secret, body, len);
        break;
    case WEBHOOK_GOGS:
        ok = signature_matches(header(ctx, "X-Gogs-Signature"), secret, body, len);
        break;
    case WEBHOOK_GITLAB:
        ok = token_matches(header(ctx, "X-Gitlab-Token"), secret);
        break;
    case WEBHOOK_GITEE:
        ok = token_matches(header(ctx, "X-Gitee-Token"), secret);
        break;
    case WEBHOOK_FORM:
    case WEBHOOK_UNKNOWN:
        /* These carry no signature: with a secret configured, only a bearer of it may post. */
        ok = token_matches(strip_prefix(header(ctx, "Authorization"), "Bearer "), secret);
        break;
    }
    if (!ok)
        return err_set(ERR_UNAUTHORIZED, "webhook signature or token missing or wrong (%s)",
                       webhook_provider_name(p));
    return 0;
}

static int add_paths(json_t *names, const json_t *paths, size_t *seen)
{
    size_t i;
    json_t *path;
    json_array_foreach(paths, i, path)
    {
        if (++*seen > MAX_PATHS)
            return err_set(ERR_TOO_LARGE, "more than %d changed paths", MAX_PATHS);
        if (json_is_string(path) && appnames_add_from_path(names, json_string_value(path)) < 0)
            return err_set(ERR_NOMEM, "out of memory");
    }
    return 0;
}

/* GitHub, GitLab, Gitea, Gogs and Gitee all send commits[].{added,modified,removed}. */
static int commits_paths(json_t *names, const json_t *doc)
{
    static const char *const kinds[] = {"added", "modified", "removed"};
    size_t seen = 0, i;
    json_t *commit;
    const json_t *commits = json_object_get(doc, "commits");
    if (commits != NULL && !json_is_array(commits))
        return err_set(ERR_BAD_REQUEST, "\"commits\" is not an array");
    json_array_foreach(commits, i, commit)
    {
        for (size_t k = 0; k < 3; k++) {
            int error = add_paths(names, json_object_get(commit, kinds[k]), &seen);
            if (error < 0)
                return error;
        }
    }
    return 0;
}

/* Spring's form: path=a.yml&path=b.yml (percent-encoded). */
static int form_paths(json_t *names, const char *body, size_t len)
{
    char *copy = strndup(body, len);
    if (copy == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    int error = 0;
    char *save = NULL;
    for (char *pair = strtok_r(copy, "&", &save); pair; pair = strtok_r(NULL, "&", &save)) {
        if (strncmp(pair, "path=", 5) != 0)
            continue;
        char *value = pair + 5;
        http_form_decode(value);
        if (strlen(value) > 0 && appnames_add_from_path(names, value) < 0) {
            error = err_set(ERR_NOMEM, "out of memory");
            break;
        }
    }
    free(copy);
    return error;
}

int webhook_applications(json_t **out, webhook_provider p, const char *body, size_t len)
{
    int error = 0;
    json_t *doc = NULL;
    json_t *names = json_array();
    if (names == NULL)
        return err_set(ERR_NOMEM, "out of memory");

    if (p == WEBHOOK_FORM) {
        error = form_paths(names, body ? body : "", len);
    } else if (p != WEBHOOK_BITBUCKET) {
        json_error_t jerr;
        doc = body ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
        if (doc == NULL || !json_is_object(doc)) {
            error = err_set(ERR_BAD_REQUEST, "webhook body is not a JSON object%s%s",
                            doc ? "" : ": ", doc ? "" : jerr.text);
            goto out;
        }
        error = commits_paths(names, doc);
    }
    if (error == 0 && json_array_size(names) == 0)
        json_array_append_new(names, json_string("*"));
out:
    json_decref(doc);
    if (error < 0) {
        json_decref(names);
        return error;
    }
    *out = names;
    return 0;
}

/* Where each provider says which repository was pushed to. */
static const char *const url_fields[][3] = {
    {"repository", "clone_url", NULL}, /* GitHub, Gitea, Gogs, Gitee */
    {"repository", "ssh_url", NULL},
    {"repository", "git_url", NULL},
    {"repository", "html_url", NULL},
    {"repository", "git_http_url", NULL}, /* GitLab's older repository object */
    {"repository", "git_ssh_url", NULL},
    {"repository", "url", NULL},
    {"project", "git_http_url", NULL}, /* GitLab */
    {"project", "git_ssh_url", NULL},
    {"project", "web_url", NULL},
};

static void add_url(json_t *urls, const json_t *value)
{
    if (json_is_string(value) && json_string_length(value) > 0 &&
        json_string_length(value) < 4096 && json_array_size(urls) < 64)
        json_array_append(urls, (json_t *)(uintptr_t)value);
}

int webhook_repository_urls(json_t **out, webhook_provider p, const char *body, size_t len)
{
    json_t *urls = json_array();
    if (urls == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    *out = urls;
    if (p == WEBHOOK_FORM || p == WEBHOOK_UNKNOWN || body == NULL)
        return 0;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return 0;
    }
    for (size_t i = 0; i < sizeof(url_fields) / sizeof(url_fields[0]); i++)
        add_url(urls, json_object_get(json_object_get(doc, url_fields[i][0]), url_fields[i][1]));
    /* Bitbucket: repository.links.html.href (Cloud) and repository.links.clone[].href (Server) */
    const json_t *links = json_object_get(json_object_get(doc, "repository"), "links");
    add_url(urls, json_object_get(json_object_get(links, "html"), "href"));
    size_t i;
    json_t *clone;
    json_array_foreach(json_object_get(links, "clone"), i, clone)
        add_url(urls, json_object_get(clone, "href"));
    json_decref(doc);
    return 0;
}
