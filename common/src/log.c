/*
 * log — formats and writes log lines to stderr (see log.h). One write(2) per line so lines
 * from concurrent threads never interleave.
 */
#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static log_level min_level = LOG_LEVEL_INFO;
static log_format out_format = LOG_FORMAT_TEXT;
static _Thread_local char request_id[64];

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_configure(log_level level, log_format format)
{
    min_level = level;
    out_format = format;
}

bool log_enabled(log_level level)
{
    return level >= min_level;
}

void log_set_request_id(const char *id)
{
    if (id == NULL) {
        request_id[0] = '\0';
        return;
    }
    snprintf(request_id, sizeof(request_id), "%s", id);
}

const char *log_request_id(void)
{
    return request_id[0] ? request_id : NULL;
}

static void format_timestamp(char *buf, size_t size)
{
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03ldZ", now.tv_nsec / 1000000L);
}

static void write_all(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, buf, len);
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

void log_write(log_level level, const char *module, const char *fmt, ...)
{
    char message[2048];
    char stamp[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    format_timestamp(stamp, sizeof(stamp));

    if (out_format == LOG_FORMAT_JSON) {
        json_t *line = json_pack("{s:s, s:s, s:s, s:s}", "time", stamp, "level",
                                 level_names[level], "module", module, "message", message);
        if (line == NULL)
            return;
        if (request_id[0])
            json_object_set_new(line, "request_id", json_string(request_id));
        char *text = json_dumps(line, JSON_COMPACT);
        json_decref(line);
        if (text == NULL)
            return;
        size_t len = strlen(text);
        text[len] = '\0';
        char *with_newline = NULL;
        if (asprintf(&with_newline, "%s\n", text) >= 0) {
            write_all(with_newline, len + 1);
            free(with_newline);
        }
        free(text);
        return;
    }

    char line[2300];
    int n;
    if (request_id[0])
        n = snprintf(line, sizeof(line), "%s %-5s [%s] req=%s %s\n", stamp, level_names[level],
                     module, request_id, message);
    else
        n = snprintf(line, sizeof(line), "%s %-5s [%s] %s\n", stamp, level_names[level], module,
                     message);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    if ((size_t)n >= sizeof(line))
        line[len - 1] = '\n';
    write_all(line, len);
}
