/*
 * errors — the server's side of the error convention (common/src/err.h): every module returns
 * 0 or a negative err_code and sets a message with err_set(); http.c maps codes to HTTP status
 * through one table (err_http_status), so every handler answers the same way.
 */
#ifndef ALMANAC_ERRORS_H
#define ALMANAC_ERRORS_H

#include "err.h" /* the codes and the per-thread message */

/* HTTP status and reason phrase for a code ("Not Found", ...). */
unsigned err_http_status(int code);
const char *err_http_reason(unsigned status);

#endif
