/*
 * token_file — a bearer token kept in a file that someone else replaces: the kubelet rotates a
 * projected ServiceAccount token (by swapping the `..data` link of the volume), a CI runner
 * writes a fresh OIDC token. The file is stat()ed before each request and read again when its
 * identity, size or modification time changed, so a rotated token is used from the next
 * request on without a restart.
 *
 * This module does not decide how the token is sent (client.c does).
 */
#include "internal.h"

#include "err.h"
#include "fileread.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TOKEN_FILE_MAX 16384

static void wipe(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

int alm__token_file_init(alm__token_file *tf, const char *path)
{
    memset(tf, 0, sizeof(*tf));
    if (path == NULL || *path == '\0')
        return 0;
    if ((tf->path = strdup(path)) == NULL)
        return alm__error_set(ALM_ENOMEM, "out of memory");
    const char *token;
    return alm__token_file_current(tf, &token);
}

void alm__token_file_dispose(alm__token_file *tf)
{
    free(tf->path);
    wipe(tf->token);
    memset(tf, 0, sizeof(*tf));
}

static int read_token(const char *path, char **out)
{
    int error = 0;
    file_contents file = {0};
    *out = NULL;
    if (file_read(&file, path, TOKEN_FILE_MAX, FILE_READ_SECRET) < 0) {
        error = err_last_code() == ERR_NOMEM
                    ? alm__error_set(ALM_ENOMEM, "out of memory")
                    : alm__error_set(ALM_EINVALID, "token file %s", err_message());
        goto out;
    }
    char *buf = file.data;
    size_t n = file.len;
    /* Editors and `echo` add a newline; it is not part of the token. */
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
                     buf[n - 1] == '\t'))
        n--;
    buf[n] = '\0';
    if (n == 0 || strlen(buf) != n || strpbrk(buf, "\r\n") != NULL) {
        error = alm__error_set(ALM_EINVALID, "token file %s: does not hold one token", path);
        goto out;
    }
    *out = buf;
    file.data = NULL;
out:
    file_contents_dispose(&file);
    return error;
}

int alm__token_file_current(alm__token_file *tf, const char **token)
{
    struct stat st;
    *token = tf->token;
    if (tf->path == NULL)
        return 0;
    if (stat(tf->path, &st) != 0) {
        /* Mid-rotation, or gone: the token read last is still the best guess. */
        if (tf->token != NULL)
            return 0;
        return alm__error_set(ALM_EINVALID, "token file %s: %s", tf->path, strerror(errno));
    }
    if (tf->token != NULL && st.st_dev == tf->dev && st.st_ino == tf->ino &&
        st.st_size == tf->size && st.st_mtim.tv_sec == tf->mtime.tv_sec &&
        st.st_mtim.tv_nsec == tf->mtime.tv_nsec)
        return 0;
    char *fresh = NULL;
    int error = read_token(tf->path, &fresh);
    if (error < 0)
        return tf->token != NULL ? 0 : error;
    wipe(tf->token);
    tf->token = fresh;
    tf->dev = st.st_dev;
    tf->ino = st.st_ino;
    tf->size = st.st_size;
    tf->mtime = st.st_mtim;
    *token = tf->token;
    return 0;
}
