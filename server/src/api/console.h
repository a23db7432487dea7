/*
 * console — the read-only web console at /ui/ (off with --no-ui): its compiled-in files and
 * the read models only it uses. Route handlers; see docs/console.md.
 */
#ifndef ALMANAC_API_CONSOLE_H
#define ALMANAC_API_CONSOLE_H

#include "http/request.h"

int console_handle_asset(request *req, response *res);       /* /ui, /ui/, /ui/{file} */
int console_handle_overview(request *req, response *res);    /* /ui/api/overview */
int console_handle_environment(request *req, response *res); /* /ui/api/environment/{a}/{p} */

#endif
