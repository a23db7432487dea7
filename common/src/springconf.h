/*
 * springconf — the Spring Boot config-data keys of one parsed document, read the way Spring
 * Boot binds them: `spring.config.import`, `spring.profiles.include`, `spring.profiles.group.*`,
 * `spring.config.activate.on-cloud-platform`, and the keys Spring rejects in some places
 * (`spring.profiles.include`/`active`/`default` in profile-specific files or on-profile
 * documents, the legacy `spring.profiles`). Also the cloud platform names and Spring's
 * detection of the platform a process runs on.
 *
 * Shared by the server (composition) and the CLI (lint), so both judge a file alike. This
 * module only reads documents and the process environment; it decides nothing about which
 * files a request reads (server/src/compose/configdata.c does).
 */
#ifndef ALMANAC_SPRINGCONF_H
#define ALMANAC_SPRINGCONF_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define SPRINGCONF_IMPORT "spring.config.import"
#define SPRINGCONF_INCLUDE "spring.profiles.include"
#define SPRINGCONF_ACTIVE "spring.profiles.active"
#define SPRINGCONF_DEFAULT "spring.profiles.default"
#define SPRINGCONF_GROUP_PREFIX "spring.profiles.group."
#define SPRINGCONF_ON_CLOUD "spring.config.activate.on-cloud-platform"
#define SPRINGCONF_ON_PROFILE "spring.config.activate.on-profile"
#define SPRINGCONF_LEGACY_PROFILES "spring.profiles"

#define SPRINGCONF_MAX_LIST 256 /* items read from one list-valued key */

/*
 * The string list bound to key in props, as Spring binds a List<String>: `key` itself split at
 * commas (items trimmed, empty ones dropped), else `key[0]`, `key[1]`, … (each item as it is).
 * Returns a new JSON array of strings (empty when the key is absent), or NULL on OOM.
 */
json_t *springconf_list(const json_t *props, const char *key);

/*
 * The key (as written in props, e.g. "spring.profiles.include[0]") that Spring rejects in a
 * profile-specific file (`include`, `active`, `default`) or, with on_profile_doc, in a document
 * activated by on-profile (`include`, `active`); NULL when there is none.
 */
const char *springconf_profile_key(const json_t *props, bool on_profile_doc);
/* "spring.profiles" or "spring.profiles[0]" when the document uses the legacy key, else NULL. */
const char *springconf_legacy_key(const json_t *props);

/*
 * Why Almanac will not read the import location loc (after any `optional:`), or NULL when it
 * is a relative path of the repository (which may still climb out with `..`: the caller, who
 * knows the importing file's folder, checks that).
 */
const char *springconf_import_problem(const char *loc);

/* Spring's profile name rule: letters, digits, `-_.+@`, starting and ending alphanumeric. */
bool springconf_valid_profile(const char *name);

/*
 * Spring's CloudPlatform names, canonical form: "none", "cloud_foundry", "heroku", "sap",
 * "nomad", "kubernetes", "azure_app_service", "aws_ecs". springconf_platform() maps a spelling
 * the way Spring's lenient enum binding does (case, `-` and `_` ignored) to the canonical
 * name; NULL when it names no platform.
 */
const char *springconf_platform(const char *spelling);
/*
 * The platform Spring Boot would detect from environment variables (envp: NULL-terminated
 * "NAME=value" strings), in Spring's order: Cloud Foundry (VCAP_APPLICATION or VCAP_SERVICES),
 * Heroku (DYNO), SAP (HC_LANDSCAPE), Nomad (NOMAD_ALLOC_ID), Kubernetes
 * (KUBERNETES_SERVICE_HOST and _PORT, or any X_SERVICE_HOST with X_SERVICE_PORT), Azure App
 * Service (its four WEBSITE_* variables), AWS ECS (AWS_EXECUTION_ENV starting AWS_ECS);
 * "none" when none matches.
 */
const char *springconf_detect_platform(char *const *envp);

/*
 * --search-paths (the server) and `almanac diff --search-paths` (offline): "a, {application}/b/"
 * as a NULL-terminated array of entries, each trimmed of spaces and of slashes at its end, and
 * of one leading slash (paths are relative to the repository); empty entries dropped. NULL or ""
 * gives an empty array; NULL only when out of memory. Free with springconf_search_paths_free.
 */
char **springconf_search_paths(const char *value);
void springconf_search_paths_free(char **paths);

#endif
