/*
 * propfile — Java .properties files parsed the way Spring Boot's OriginTrackedPropertiesLoader
 * reads them: ISO-8859-1 input converted to UTF-8, \uXXXX and other escapes, `=`/`:`/whitespace
 * separators, `#`/`!` comments, line continuations, `key[]=a,b` lists, the last duplicate wins
 * (at the position of the first), and `#---` / `!---` document separators. Values are strings.
 */
#ifndef ALMANAC_PROPFILE_H
#define ALMANAC_PROPFILE_H

#include "confdoc.h"

/* 0 on success (out filled, caller disposes); -1 with *err filled (out left empty). */
int propfile_parse(confdoc_list *out, const char *data, size_t len, const confdoc_limits *limits,
                   confdoc_error *err);

#endif
