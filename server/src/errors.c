/*
 * errors — the one table from error code to HTTP status (the codes and the per-thread message
 * are common/src/err.c).
 */
#include "errors.h"

#include <stddef.h>

static const struct {
    int code;
    unsigned status;
} status_table[] = {
    {ERR_NONE, 200},          {ERR_NOT_FOUND, 404},   {ERR_BAD_REQUEST, 400},
    {ERR_UNAUTHORIZED, 401},  {ERR_FORBIDDEN, 403},   {ERR_METHOD, 405},
    {ERR_TOO_LARGE, 413},     {ERR_CONFIG, 500},      {ERR_GIT, 500},
    {ERR_NOMEM, 500},         {ERR_INTERNAL, 500},    {ERR_UNAVAILABLE, 503},
    {ERR_NO_KEY, 404},        {ERR_INVALID_CIPHER, 400}, {ERR_TOO_MANY, 429},
};

unsigned err_http_status(int code)
{
    for (size_t i = 0; i < sizeof(status_table) / sizeof(status_table[0]); i++)
        if (status_table[i].code == code)
            return status_table[i].status;
    return 500;
}

const char *err_http_reason(unsigned status)
{
    switch (status) {
    case 200: return "OK";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}
