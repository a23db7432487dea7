/*
 * springconf — Spring Boot's config-data keys of a parsed document, and cloud platforms (see
 * springconf.h). Reads flat maps and the environment only; owns no state.
 */
#include "springconf.h"

#include "scalar.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Appends s[0..len) trimmed, unless empty. -1 on OOM. */
static int append_trimmed(json_t *out, const char *s, size_t len)
{
    while (len > 0 && is_space(*s)) {
        s++;
        len--;
    }
    while (len > 0 && is_space(s[len - 1]))
        len--;
    if (len == 0 || json_array_size(out) >= SPRINGCONF_MAX_LIST)
        return 0;
    return json_array_append_new(out, json_stringn(s, len));
}

json_t *springconf_list(const json_t *props, const char *key)
{
    json_t *out = json_array();
    const json_t *value = json_object_get(props, key);
    char *text = NULL;

    if (out == NULL)
        return NULL;
    if (value != NULL) {
        /* One value: Spring's converter splits it at commas and trims each item. */
        if ((text = scalar_to_text(value)) == NULL)
            goto oom;
        for (const char *s = text; s != NULL;) {
            const char *comma = strchr(s, ',');
            size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
            if (append_trimmed(out, s, len) < 0)
                goto oom;
            s = comma != NULL ? comma + 1 : NULL;
        }
        free(text);
        return out;
    }
    for (size_t i = 0; i < SPRINGCONF_MAX_LIST; i++) {
        char indexed[512];
        if ((size_t)snprintf(indexed, sizeof(indexed), "%s[%zu]", key, i) >= sizeof(indexed))
            break;
        if ((value = json_object_get(props, indexed)) == NULL)
            break;
        if ((text = scalar_to_text(value)) == NULL)
            goto oom;
        if (text[0] != '\0' && json_array_append_new(out, json_string(text)) < 0)
            goto oom;
        free(text);
        text = NULL;
    }
    return out;
oom:
    free(text);
    json_decref(out);
    return NULL;
}

static const char *first_present(const json_t *props, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (json_object_get(props, keys[i]) != NULL)
            return keys[i];
    return NULL;
}

const char *springconf_profile_key(const json_t *props, bool on_profile_doc)
{
    /* InvalidConfigDataPropertyException's list for profile-specific resources; an on-profile
     * document is an inactive source while profiles are worked out, and Spring fails when one
     * holds what that step binds (include, and active, which the request itself sets). */
    static const char *const keys[] = {
        SPRINGCONF_INCLUDE, SPRINGCONF_INCLUDE "[0]", SPRINGCONF_ACTIVE,
        SPRINGCONF_ACTIVE "[0]", SPRINGCONF_DEFAULT, SPRINGCONF_DEFAULT "[0]",
    };
    return first_present(props, keys, on_profile_doc ? 4 : 6);
}

const char *springconf_legacy_key(const json_t *props)
{
    static const char *const keys[] = {SPRINGCONF_LEGACY_PROFILES,
                                       SPRINGCONF_LEGACY_PROFILES "[0]"};
    return first_present(props, keys, 2);
}

const char *springconf_import_problem(const char *loc)
{
    /* Spring's URL_PREFIX: a scheme (file:, classpath:, https:, configtree:, …). */
    size_t scheme = strspn(loc, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789*");

    if (scheme > 0 && loc[scheme] == ':')
        return "only files of the repository can be imported (no file:, classpath: or URLs)";
    if (loc[0] == '/')
        return "an absolute path is outside the repository";
    if (strpbrk(loc, "\\*?[]{}$") != NULL)
        return "backslashes, wildcards, file hints and placeholders are not supported";
    return NULL;
}

bool springconf_valid_profile(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || !isalnum((unsigned char)name[0]) || !isalnum((unsigned char)name[len - 1]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)name[i]) && strchr("-_.+@", name[i]) == NULL)
            return false;
    return true;
}

static const char *const PLATFORMS[] = {"none",  "cloud_foundry", "heroku",  "sap",
                                        "nomad", "kubernetes",    "azure_app_service",
                                        "aws_ecs"};

/* Lower-case letters and digits only: Spring's lenient enum comparison. */
static void canonical_form(const char *s, char *out, size_t size)
{
    size_t n = 0;
    for (; *s != '\0' && n + 1 < size; s++)
        if (isalnum((unsigned char)*s))
            out[n++] = (char)tolower((unsigned char)*s);
    out[n] = '\0';
}

const char *springconf_platform(const char *spelling)
{
    char want[64], have[64];

    if (spelling == NULL || strlen(spelling) >= sizeof(want))
        return NULL;
    canonical_form(spelling, want, sizeof(want));
    for (size_t i = 0; i < sizeof(PLATFORMS) / sizeof(*PLATFORMS); i++) {
        canonical_form(PLATFORMS[i], have, sizeof(have));
        if (want[0] != '\0' && strcmp(want, have) == 0)
            return PLATFORMS[i];
    }
    return NULL;
}

/* The value of name in envp, or NULL. */
static const char *env_get(char *const *envp, const char *name, size_t len)
{
    for (char *const *e = envp; e != NULL && *e != NULL; e++)
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
            return *e + len + 1;
    return NULL;
}

static bool has(char *const *envp, const char *name)
{
    return env_get(envp, name, strlen(name)) != NULL;
}

/* Any X_SERVICE_HOST with an X_SERVICE_PORT beside it (the variables Kubernetes injects). */
static bool kubernetes_services(char *const *envp)
{
    static const char suffix[] = "_SERVICE_HOST";
    const size_t slen = sizeof(suffix) - 1;

    for (char *const *e = envp; e != NULL && *e != NULL; e++) {
        const char *eq = strchr(*e, '=');
        char port[512];
        size_t nlen = eq != NULL ? (size_t)(eq - *e) : 0;
        if (nlen <= slen || strncmp(*e + nlen - slen, suffix, slen) != 0)
            continue;
        int n = snprintf(port, sizeof(port), "%.*s_SERVICE_PORT", (int)(nlen - slen), *e);
        if (n > 0 && (size_t)n < sizeof(port) && env_get(envp, port, (size_t)n) != NULL)
            return true;
    }
    return false;
}

const char *springconf_detect_platform(char *const *envp)
{
    const char *aws = env_get(envp, "AWS_EXECUTION_ENV", 17);

    if (has(envp, "VCAP_APPLICATION") || has(envp, "VCAP_SERVICES"))
        return "cloud_foundry";
    if (has(envp, "DYNO"))
        return "heroku";
    if (has(envp, "HC_LANDSCAPE"))
        return "sap";
    if (has(envp, "NOMAD_ALLOC_ID"))
        return "nomad";
    if ((has(envp, "KUBERNETES_SERVICE_HOST") && has(envp, "KUBERNETES_SERVICE_PORT")) ||
        kubernetes_services(envp))
        return "kubernetes";
    if (has(envp, "WEBSITE_SITE_NAME") && has(envp, "WEBSITE_INSTANCE_ID") &&
        has(envp, "WEBSITE_RESOURCE_GROUP") && has(envp, "WEBSITE_SKU"))
        return "azure_app_service";
    if (aws != NULL && strncmp(aws, "AWS_ECS", 7) == 0)
        return "aws_ecs";
    return "none";
}

char **springconf_search_paths(const char *value)
{
    size_t count = 0;
    char **paths = calloc(1, sizeof(*paths));
    if (paths == NULL || value == NULL || value[0] == '\0')
        return paths;
    char *copy = strdup(value);
    char *save = NULL;
    for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        size_t len = strlen(tok);
        while (len > 0 && tok[len - 1] == ' ')
            tok[--len] = '\0';
        while (len > 0 && tok[len - 1] == '/')
            tok[--len] = '\0';
        if (len == 0)
            continue;
        char **grown = realloc(paths, (count + 2) * sizeof(*paths));
        if (grown == NULL)
            break;
        paths = grown;
        paths[count] = strdup(tok[0] == '/' ? tok + 1 : tok);
        if (paths[count] != NULL)
            count++;
        paths[count] = NULL;
    }
    free(copy);
    return paths;
}

void springconf_search_paths_free(char **paths)
{
    for (size_t i = 0; paths && paths[i]; i++)
        free(paths[i]);
    free(paths);
}
