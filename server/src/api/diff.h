/*
 * diff endpoints — the effective change between two labels, for one Environment
 * (GET /diff/{application}/{profiles}?from=&to=) or for every application and profile the
 * repository names (GET /diff?from=&to=). Route handlers; see docs/api.md.
 */
#ifndef ALMANAC_API_DIFF_H
#define ALMANAC_API_DIFF_H

#include "http/request.h"

int diff_handle_environment(request *req, response *res);
int diff_handle_all(request *req, response *res);

#endif
