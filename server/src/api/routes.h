/*
 * routes — the route table (method, path shape, handler, permission). Names, profiles, labels
 * and resource paths are checked by common/src/names.h before anything reads the repository.
 */
#ifndef ALMANAC_ROUTES_H
#define ALMANAC_ROUTES_H

#include "http/request.h"

#include <stdbool.h>
#include <stddef.h>

/* Registers route names with metrics; call once before serving. */
void routes_init(void);
/* http_dispatch_fn: picks the route for req and runs it. */
int routes_dispatch(request *req, response *res, int *metrics_route);

#endif
