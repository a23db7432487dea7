/*
 * webhook — POST /monitor: push notifications from GitHub, GitLab, Gitea, Gogs, Gitee and
 * Bitbucket (and Spring's plain `path=` form), authenticated by the provider's signature or
 * token when a secret is configured, turned into the application names they concern.
 */
#ifndef ALMANAC_WEBHOOK_H
#define ALMANAC_WEBHOOK_H

#include <jansson.h>
#include <stddef.h>

typedef enum {
    WEBHOOK_UNKNOWN,
    WEBHOOK_GITHUB,
    WEBHOOK_GITLAB,
    WEBHOOK_GITEA,
    WEBHOOK_GOGS,
    WEBHOOK_GITEE,
    WEBHOOK_BITBUCKET,
    WEBHOOK_FORM /* Spring's `path=a.yml&path=b.yml` */
} webhook_provider;

/* Looks up a request header by name (case-insensitive), NULL when absent. */
typedef const char *(*webhook_header_fn)(void *ctx, const char *name);

/* Which provider sent this, from its event header (or the form content type). */
webhook_provider webhook_detect(webhook_header_fn header, void *ctx);
const char *webhook_provider_name(webhook_provider p);

/*
 * Checks the signature or token against secret (NULL or empty: no check configured, passes).
 * GitHub/Bitbucket: X-Hub-Signature-256 / X-Hub-Signature "sha256=<hex HMAC-SHA256>"; Gitea,
 * Gogs: X-Gitea-Signature / X-Gogs-Signature hex HMAC-SHA256; GitLab: X-Gitlab-Token; Gitee:
 * X-Gitee-Token. Comparisons are constant-time. ERR_UNAUTHORIZED with a message on failure.
 */
int webhook_verify(webhook_provider p, webhook_header_fn header, void *ctx, const char *secret,
                   const char *body, size_t len);

/*
 * The application names the notification concerns (a new JSON array, see appnames.h; "*" for
 * everyone), from the changed paths of every commit. ERR_BAD_REQUEST for a malformed body. A
 * push that lists no paths (Bitbucket never does) concerns everyone.
 */
int webhook_applications(json_t **out, webhook_provider p, const char *body, size_t len);

/*
 * The clone and web URLs of the repository the notification is about (a new JSON array, empty
 * when the body names none): GitHub, Gitea, Gogs and Gitee repository.{clone_url, ssh_url,
 * git_url, html_url}; GitLab project.{git_http_url, git_ssh_url, web_url}; Bitbucket
 * repository.links.html.href and links.clone[].href. A malformed body gives an empty array
 * (webhook_applications reports it).
 */
int webhook_repository_urls(json_t **out, webhook_provider p, const char *body, size_t len);

#endif
