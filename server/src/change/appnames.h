/*
 * appnames — which applications a changed file concerns, the way Spring's /monitor guesses it:
 * strip directory and extension, then the whole stem and every prefix ending before a '-',
 * longest first (`sub/foo-bar-dev.yml` -> foo-bar-dev, foo-bar, foo). `application*` files
 * concern every application, written "*".
 */
#ifndef ALMANAC_APPNAMES_H
#define ALMANAC_APPNAMES_H

#include <jansson.h>

/* Appends the names for path to names (a JSON array of strings), skipping ones already in it.
 * 0, or -1 on OOM. */
int appnames_add_from_path(json_t *names, const char *path);

#endif
