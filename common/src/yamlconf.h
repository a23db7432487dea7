/*
 * yamlconf — YAML configuration files parsed the way Spring Boot reads them (libyaml inside;
 * the only module that includes <yaml.h>).
 *
 * Multi-document streams, anchors, aliases and `<<` merge keys, YAML 1.1 scalar typing, and
 * Spring's flattening (maps a.b.c, lists a[0], non-string keys [k], root scalars/lists under
 * "document"). Empty documents are skipped (they do not count in confdoc.index). The on-profile
 * expression of each document is copied into confdoc.on_profile and also kept in props.
 * Alias expansion is counted against limits->max_entries, so a "billion laughs" file fails fast.
 */
#ifndef ALMANAC_YAMLCONF_H
#define ALMANAC_YAMLCONF_H

#include "confdoc.h"

/* 0 on success (out filled, caller disposes); -1 with *err filled (out left empty). */
int yamlconf_parse(confdoc_list *out, const char *data, size_t len, const confdoc_limits *limits,
                   confdoc_error *err);

#endif
