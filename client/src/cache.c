/*
 * cache — the last good configuration on disk, for booting while the servers are down.
 *
 * The file is one JSON object: a format name and version, the request it answers (application,
 * profiles, label), the ETag and time of the answer, and the Environment exactly as the server
 * sent it, as a string, with a SHA-256. Keeping the server's bytes (rather than a re-encoding)
 * means the checksum covers precisely what is parsed back. Version 1 summed the Environment
 * alone, so an edited fetched_at (how old the copy looks) or ETag was accepted; version 2 sums
 * every field read back (see digest_v2). Version 1 files are still read, and replaced by
 * version 2 at the next write. Writes are atomic: a reader, even after a crash, sees the old
 * file or the new one, never a mix; the temporary files of writes that were killed are removed
 * by the next write.
 *
 * This module owns the file format and the file; it does not decide when the cache is used
 * (client.c does).
 */
#include "internal.h"

#include "err.h"
#include "fileread.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CACHE_FORMAT "almanac-cache"
#define CACHE_FORMAT_VERSION 2
#define CACHE_FORMAT_OLDEST 1    /* still read */
#define STALE_TEMP_SECONDS 60    /* a temporary file this old belongs to no running write */
#define TEMP_SUFFIX ".tmp-XXXXXX" /* mkostemp's pattern after the cache file's name */

int alm__sha256_hex(char out[65], const void *data, size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return alm__error_set(ALM_ERROR, "SHA-256 failed");
    for (unsigned int i = 0; i < mdlen; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

static int digest_field(EVP_MD_CTX *ctx, const char *value, size_t len)
{
    char head[32];
    /* length first, so that no bytes can move from one field into the next */
    int n = value != NULL ? snprintf(head, sizeof(head), "%zu:", len) : snprintf(head, sizeof(head), "-");
    return EVP_DigestUpdate(ctx, head, (size_t)n) == 1 &&
           (value == NULL || EVP_DigestUpdate(ctx, value, len) == 1) &&
           EVP_DigestUpdate(ctx, ";", 1) == 1;
}

/* Version 2's checksum: every field that is read back, the Environment last. */
static int digest_v2(char out[65], const alm__cache_key *key, const char *etag, int64_t fetched_at,
                     const char *env, size_t env_len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char at[32];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;

    snprintf(at, sizeof(at), "%lld", (long long)fetched_at);
    ok = ok && digest_field(ctx, CACHE_FORMAT "/2", strlen(CACHE_FORMAT "/2"));
    ok = ok && digest_field(ctx, key->application, key->application ? strlen(key->application) : 0);
    ok = ok && digest_field(ctx, key->profiles, key->profiles ? strlen(key->profiles) : 0);
    ok = ok && digest_field(ctx, key->label, key->label ? strlen(key->label) : 0);
    ok = ok && digest_field(ctx, etag, etag ? strlen(etag) : 0);
    ok = ok && digest_field(ctx, at, strlen(at));
    ok = ok && digest_field(ctx, env, env_len);
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return alm__error_set(ALM_ERROR, "SHA-256 failed");
    for (unsigned int i = 0; i < mdlen; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/*
 * Removes "<cache file>.tmp-XXXXXX" files (mkostemp's pattern, nothing else) older than
 * STALE_TEMP_SECONDS: what writes killed between creating and renaming their temporary file
 * left. A younger one may be another process's write in progress and is left alone.
 */
static void remove_stale_temps(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t base_len = strlen(base), suffix_len = strlen(TEMP_SUFFIX);
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    DIR *d = dir ? opendir(dir) : NULL;
    struct dirent *de;
    time_t now = time(NULL);

    while (d && (de = readdir(d)) != NULL) {
        struct stat st;
        if (strlen(de->d_name) != base_len + suffix_len ||
            strncmp(de->d_name, base, base_len) != 0 ||
            strncmp(de->d_name + base_len, TEMP_SUFFIX, suffix_len - 6) != 0 ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
            now - st.st_mtime < STALE_TEMP_SECONDS)
            continue;
        unlinkat(dirfd(d), de->d_name, 0);
    }
    if (d)
        closedir(d);
    free(dir);
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Flushes the directory holding `path`, so that the rename itself survives a crash. */
static int sync_parent_dir(const char *path)
{
    char *dir = strdup(path);
    if (dir == NULL)
        return -1;
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int rc = -1;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        rc = fsync(fd);
        close(fd);
    }
    free(dir);
    return rc;
}

int alm__cache_write(const char *path, const alm__cache_key *key, const char *payload, size_t len,
                     const char *etag, int64_t fetched_at)
{
    int error = 0, fd = -1;
    char *text = NULL, *tmp = NULL;
    json_t *doc = NULL;
    char digest[65];

    if ((error = digest_v2(digest, key, etag, fetched_at, payload, len)) < 0)
        goto out;
    doc = json_pack("{s:s, s:i, s:s, s:s, s:s*, s:s*, s:I, s:s, s:s%}", "format", CACHE_FORMAT,
                    "format_version", CACHE_FORMAT_VERSION, "application", key->application,
                    "profiles", key->profiles, "label", key->label, "etag", etag, "fetched_at",
                    (json_int_t)fetched_at, "sha256", digest, "environment", payload, len);
    text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    size_t tmplen = strlen(path) + sizeof(TEMP_SUFFIX);
    tmp = malloc(tmplen);
    if (text == NULL || tmp == NULL) {
        error = alm__error_set(ALM_ENOMEM, "out of memory writing the cache file");
        goto out;
    }
    snprintf(tmp, tmplen, "%s" TEMP_SUFFIX, path);
    remove_stale_temps(path);
    /* mkstemp creates the file 0600 whatever the umask: the cache may hold secrets. */
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        error = alm__error_set(ALM_ECACHE,
                               "cannot create a temporary file beside cache file %s: "
                               "%s",
                               path, strerror(errno));
        free(tmp);
        tmp = NULL;
        goto out;
    }
    if (write_all(fd, text, strlen(text)) < 0 || write_all(fd, "\n", 1) < 0 || fsync(fd) < 0) {
        error = alm__error_set(ALM_ECACHE, "cannot write cache file %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (close(fd) < 0) {
        fd = -1;
        error = alm__error_set(ALM_ECACHE, "cannot write cache file %s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        error =
            alm__error_set(ALM_ECACHE, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto out;
    }
    free(tmp);
    tmp = NULL;
    if (sync_parent_dir(path) < 0)
        error = alm__error_set(ALM_ECACHE, "cannot sync the directory of cache file %s: %s", path,
                               strerror(errno));
out:
    if (fd >= 0)
        close(fd);
    if (tmp != NULL)
        unlink(tmp);
    free(tmp);
    free(text);
    json_decref(doc);
    return error;
}

/* Reads at most `max` bytes of `path` into a new buffer (common/'s reader, its error said in
 * the library's terms). */
static int read_file(char **out, size_t *len, const char *path, size_t max)
{
    file_contents file = {0};
    int error = file_read(&file, path, max, FILE_READ_REGULAR_ONLY);
    if (error == ERR_NOT_FOUND)
        return alm__error_set(ALM_ENOTFOUND, "no cache file at %s", path);
    if (error == ERR_NOMEM)
        return alm__error_set(ALM_ENOMEM, "out of memory reading cache file %s", path);
    if (error < 0)
        return alm__error_set(ALM_ECACHE, "cache file %s", err_message());
    *out = file.data;
    *len = file.len;
    return 0;
}

static int same_string(const json_t *v, const char *expected)
{
    if (expected == NULL)
        return v == NULL || json_is_null(v);
    return json_is_string(v) && strcmp(json_string_value(v), expected) == 0;
}

int alm__cache_parse(alm_config **out, const char *text, size_t len, const char *path,
                     const alm__cache_key *key)
{
    int error = 0;
    json_t *doc = NULL;
    json_error_t jerr;
    char digest[65];

    *out = NULL;
    doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(doc)) {
        error = alm__error_set(ALM_ECACHE,
                               "cache file %s is damaged (not a JSON object: %s); "
                               "delete it and fetch again",
                               path, jerr.text);
        goto out;
    }
    const json_t *format = json_object_get(doc, "format");
    const json_t *version = json_object_get(doc, "format_version");
    if (!json_is_string(format) || strcmp(json_string_value(format), CACHE_FORMAT) != 0 ||
        !json_is_integer(version)) {
        error = alm__error_set(ALM_ECACHE, "%s is not an almanac cache file", path);
        goto out;
    }
    json_int_t format_version = json_integer_value(version);
    if (format_version < CACHE_FORMAT_OLDEST || format_version > CACHE_FORMAT_VERSION) {
        error = alm__error_set(ALM_ECACHE,
                               "cache file %s has format version %" JSON_INTEGER_FORMAT
                               ", this library reads versions %d to %d; delete it",
                               path, format_version, CACHE_FORMAT_OLDEST, CACHE_FORMAT_VERSION);
        goto out;
    }
    const json_t *env = json_object_get(doc, "environment");
    const json_t *sum = json_object_get(doc, "sha256");
    const json_t *etag = json_object_get(doc, "etag");
    const json_t *at = json_object_get(doc, "fetched_at");
    if (!json_is_string(env) || !json_is_string(sum) || !json_is_integer(at) ||
        (etag != NULL && !json_is_string(etag) && !json_is_null(etag))) {
        error = alm__error_set(ALM_ECACHE,
                               "cache file %s is damaged (fields missing); delete "
                               "it and fetch again",
                               path);
        goto out;
    }
    /* the key is checked below against the file's own fields: version 2 sums what the file says */
    alm__cache_key stored = {json_string_value(json_object_get(doc, "application")),
                             json_string_value(json_object_get(doc, "profiles")),
                             json_string_value(json_object_get(doc, "label"))};
    if (format_version == 1)
        error = alm__sha256_hex(digest, json_string_value(env), json_string_length(env));
    else
        error = digest_v2(digest, &stored, json_is_string(etag) ? json_string_value(etag) : NULL,
                          (int64_t)json_integer_value(at), json_string_value(env),
                          json_string_length(env));
    if (error < 0)
        goto out;
    if (strcmp(digest, json_string_value(sum)) != 0) {
        error = alm__error_set(ALM_ECACHE,
                               "cache file %s is damaged (checksum mismatch); delete "
                               "it and fetch again",
                               path);
        goto out;
    }
    if (!same_string(json_object_get(doc, "application"), key->application) ||
        !same_string(json_object_get(doc, "profiles"), key->profiles) ||
        !same_string(json_object_get(doc, "label"), key->label)) {
        error = alm__error_set(ALM_ECACHE,
                               "cache file %s holds another application, profiles "
                               "or label; give each client its own cache file",
                               path);
        goto out;
    }
    error = alm__config_from_json(out, json_string_value(env), json_string_length(env),
                                  json_is_string(etag) ? json_string_value(etag) : NULL,
                                  (int64_t)json_integer_value(at), 1);
    if (error == ALM_EPROTOCOL)
        error = alm__error_wrap(ALM_ECACHE, "cache file %s is damaged", path);
out:
    json_decref(doc);
    return error;
}

int alm__cache_read(alm_config **out, const char *path, const alm__cache_key *key)
{
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    int error = read_file(&text, &len, path, ALM__MAX_CACHE_FILE);
    if (error == 0)
        error = alm__cache_parse(out, text, len, path, key);
    free(text);
    return error;
}
