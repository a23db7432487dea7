/*
 * ui_assets — the console's files (server/ui/), compiled into the binary by cmake/Embed.cmake so
 * that the console needs nothing from outside.
 */
#ifndef ALMANAC_UI_ASSETS_H
#define ALMANAC_UI_ASSETS_H

#include <stddef.h>

typedef struct ui_asset {
    const char *name; /* "index.html" */
    const char *content_type;
    const unsigned char *data;
    size_t size;
} ui_asset;

extern const ui_asset ui_assets[];
extern const size_t ui_asset_count;

#endif
