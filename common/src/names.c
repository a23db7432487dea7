/*
 * names — the one place that decides which application names, labels, profiles and resource
 * paths are safe (see names.h). It checks text only: whether the caller may read what a name
 * names is guard/auth's, whether it exists is the source's. Paths are checked again where files
 * are opened (source/repo.c, source/repo_dir.c): defence in depth.
 */
#include "names.h"

#include "err.h"

#include <stdbool.h>
#include <string.h>

static bool has_control_chars(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

int names_decode(const char *segment, const char *what, char *out, size_t outsize)
{
    if (segment[0] == '\0')
        return err_set(ERR_BAD_REQUEST, "empty %s", what);
    if (strncmp(segment, "(_)", 3) == 0)
        return err_set(ERR_BAD_REQUEST, "%s must not start with (_)", what);
    if (strstr(segment, "..") || strchr(segment, '#') || strchr(segment, '\\') ||
        has_control_chars(segment))
        return err_set(ERR_BAD_REQUEST, "invalid %s: must not contain '..', '#', '\\' or control "
                                        "characters", what);
    size_t j = 0;
    for (size_t i = 0; segment[i];) {
        if (j + 1 >= outsize)
            return err_set(ERR_BAD_REQUEST, "%s too long", what);
        if (strncmp(segment + i, "(_)", 3) == 0) {
            out[j++] = '/';
            i += 3;
        } else {
            out[j++] = segment[i++];
        }
    }
    out[j] = '\0';
    /* After "(_)" became "/": no absolute path, no empty or "." segment. */
    if (out[0] == '/' || out[j - 1] == '/' || strstr(out, "//") || strcmp(out, ".") == 0 ||
        strncmp(out, "./", 2) == 0 || strstr(out, "/./") ||
        (j >= 2 && strcmp(out + j - 2, "/.") == 0))
        return err_set(ERR_BAD_REQUEST, "invalid %s", what);
    return 0;
}

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int names_check_profiles(const char *profiles)
{
    const char *p = profiles;
    if (strlen(profiles) > NAMES_MAX_LEN)
        return err_set(ERR_BAD_REQUEST, "profiles too long");
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0)
            return err_set(ERR_BAD_REQUEST, "empty profile in \"%s\"", profiles);
        if (!is_alnum(p[0]) || !is_alnum(p[len - 1]))
            return err_set(ERR_BAD_REQUEST, "invalid profile \"%.*s\": must start and end with a "
                                            "letter or digit", (int)len, p);
        for (size_t i = 0; i < len; i++)
            if (!is_alnum(p[i]) && !strchr("-_.+@", p[i]))
                return err_set(ERR_BAD_REQUEST, "invalid character in profile \"%.*s\"",
                               (int)len, p);
        if (end == NULL)
            return 0;
        p = end + 1;
    }
}

int names_join_path(char *const *segments, size_t count, char *out, size_t outsize)
{
    size_t j = 0;
    if (count == 0)
        return err_set(ERR_BAD_REQUEST, "empty path");
    for (size_t s = 0; s < count; s++) {
        const char *seg = segments[s];
        if (s > 0) {
            if (j + 1 >= outsize)
                return err_set(ERR_BAD_REQUEST, "path too long");
            out[j++] = '/';
        }
        for (size_t i = 0; seg[i];) {
            if (j + 1 >= outsize)
                return err_set(ERR_BAD_REQUEST, "path too long");
            if (strncmp(seg + i, "(_)", 3) == 0) {
                out[j++] = '/';
                i += 3;
            } else {
                out[j++] = seg[i++];
            }
        }
    }
    out[j] = '\0';
    if (has_control_chars(out) || strchr(out, '\\') || strchr(out, '#'))
        return err_set(ERR_BAD_REQUEST, "invalid path");
    /* Check every segment of the final path: "(_)" and %2F may have made new ones. */
    const char *p = out;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return err_set(ERR_BAD_REQUEST, "invalid path");
        if (end == NULL)
            break;
        p = end + 1;
    }
    return 0;
}
