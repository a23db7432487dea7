/*
 * error — the calling thread's last error, error code names and the library version.
 *
 * Each thread has one fixed buffer, so recording an error never allocates and can report
 * ALM_ENOMEM itself. This module owns nothing else.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#define ALM__ERROR_MESSAGE_MAX 1024

static _Thread_local char error_message[ALM__ERROR_MESSAGE_MAX] = "no error";
static _Thread_local alm_error last_error = {ALM_OK, NULL};

const alm_error *alm_error_last(void)
{
    /* A thread-local initialiser cannot point into another thread-local, so bind it here. */
    last_error.message = error_message;
    return &last_error;
}

void alm_error_clear(void)
{
    last_error.code = ALM_OK;
    snprintf(error_message, sizeof(error_message), "no error");
}

int alm__error_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, sizeof(error_message), fmt, ap);
    va_end(ap);
    last_error.code = code;
    return code;
}

int alm__error_wrap(int code, const char *fmt, ...)
{
    char prefix[ALM__ERROR_MESSAGE_MAX];
    char old[ALM__ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, error_message, sizeof(old));
    /* Truncating a long message is fine; the check only tells the compiler we know. */
    if (snprintf(error_message, sizeof(error_message), "%s: %s", prefix, old) < 0)
        error_message[0] = '\0';
    last_error.code = code;
    return code;
}

const char *alm_strerror(int code)
{
    switch (code) {
    case ALM_OK:
        return "no error";
    case ALM_ENOMEM:
        return "out of memory";
    case ALM_EINVALID:
        return "invalid argument";
    case ALM_ENOTFOUND:
        return "not found";
    case ALM_EAUTH:
        return "authentication failed";
    case ALM_ETIMEOUT:
        return "timed out";
    case ALM_ENETWORK:
        return "server unreachable";
    case ALM_ESERVER:
        return "server error";
    case ALM_EPROTOCOL:
        return "protocol error";
    case ALM_ETOOBIG:
        return "response too large";
    case ALM_ECACHE:
        return "cache file unusable";
    case ALM_ETYPE:
        return "wrong type";
    case ALM_ERANGE:
        return "out of range";
    case ALM_ETLS:
        return "TLS verification failed";
    default:
        return "error";
    }
}

const char *alm_version(int *major, int *minor, int *patch)
{
    if (major != NULL)
        *major = ALM_VERSION_MAJOR;
    if (minor != NULL)
        *minor = ALM_VERSION_MINOR;
    if (patch != NULL)
        *patch = ALM_VERSION_PATCH;
    return ALM_VERSION;
}
