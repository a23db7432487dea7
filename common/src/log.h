/*
 * log — one logging facility for the server and the CLI: text or JSON lines on stderr.
 *
 * The level is checked before anything is formatted. Each line carries the module that wrote it
 * and, on request threads, the request id (log_set_request_id). It never writes files: a
 * 12-factor process leaves routing of its logs to whoever runs it. The client library does not
 * use this (it reports through the caller's callback instead).
 */
#ifndef ALMANAC_LOG_H
#define ALMANAC_LOG_H

#include <stdbool.h>

typedef enum { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR } log_level;
typedef enum { LOG_FORMAT_TEXT, LOG_FORMAT_JSON } log_format;

void log_configure(log_level min_level, log_format format);
bool log_enabled(log_level level);
/* The id of the request this thread is serving, or NULL; copied into thread-local storage. */
void log_set_request_id(const char *request_id);
const char *log_request_id(void);

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void log_write(log_level level, const char *module, const char *fmt, ...);

#define LOG_AT(level, module, ...)                                                                 \
    do {                                                                                           \
        if (log_enabled(level))                                                                    \
            log_write(level, module, __VA_ARGS__);                                                 \
    } while (0)
#define LOG_DEBUG(module, ...) LOG_AT(LOG_LEVEL_DEBUG, module, __VA_ARGS__)
#define LOG_INFO(module, ...) LOG_AT(LOG_LEVEL_INFO, module, __VA_ARGS__)
#define LOG_WARN(module, ...) LOG_AT(LOG_LEVEL_WARN, module, __VA_ARGS__)
#define LOG_ERROR(module, ...) LOG_AT(LOG_LEVEL_ERROR, module, __VA_ARGS__)

#endif
