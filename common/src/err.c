/*
 * err — the per-thread last error (see err.h). Owns nothing else: how a code is shown to an
 * HTTP client is the server's errors.c, to a library user the client's error.c.
 */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_message[512];
static _Thread_local err_info last = {0, ""};

int err_set(int code, const char *fmt, ...)
{
    va_list ap;
    char message[sizeof(last_message)];
    /* Formatted apart first: a caller may pass err_message() itself as an argument. */
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    snprintf(last_message, sizeof(last_message), "%s", message);
    last.code = code;
    last.message = last_message;
    return code;
}

const err_info *err_last(void)
{
    last.message = last_message;
    return &last;
}

const char *err_message(void)
{
    return last_message;
}

int err_last_code(void)
{
    return last.code;
}

void err_clear(void)
{
    last_message[0] = '\0';
    last.code = 0;
}
