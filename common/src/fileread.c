/*
 * fileread — whole files under a cap (see fileread.h). It reads bytes only: what they mean
 * (settings, keys, users) is each caller's.
 */
#include "fileread.h"

#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIRST_CHUNK 4096

/* Reads f to its end into out->data, growing by doubling; never more than max bytes. */
static int read_all(file_contents *out, FILE *f, const char *name, size_t max, size_t hint,
                    bool secret)
{
    char *buf = NULL;
    size_t cap = 0, len = 0;
    int error = 0;

    for (;;) {
        if (len == cap) {
            /* One byte beyond max is asked for, so that a larger file is noticed. */
            size_t want = cap == 0 ? (hint > 0 ? hint + 1 : FIRST_CHUNK) : cap * 2;
            if (cap > max) {
                error = err_set(ERR_TOO_LARGE, "%s: larger than %zu bytes", name, max);
                goto out;
            }
            if (want > max + 1)
                want = max + 1;
            char *grown = malloc(want + 1);
            if (grown == NULL) {
                error = err_set(ERR_NOMEM, "out of memory");
                goto out;
            }
            if (buf != NULL) {
                memcpy(grown, buf, len);
                if (secret)
                    OPENSSL_cleanse(buf, cap);
                free(buf);
            }
            buf = grown;
            cap = want;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (len > max) {
            error = err_set(ERR_TOO_LARGE, "%s: larger than %zu bytes", name, max);
            goto out;
        }
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        error = err_set(ERR_CONFIG, "%s: cannot read: %s", name, strerror(errno));
        goto out;
    }
    buf[len] = '\0';
    out->data = buf;
    out->len = len;
    out->secret = secret;
    buf = NULL;
out:
    if (buf != NULL && secret)
        OPENSSL_cleanse(buf, cap);
    free(buf);
    return error;
}

int file_read(file_contents *out, const char *path, size_t max, unsigned flags)
{
    struct stat st;
    FILE *f = NULL;
    int error = 0;
    /* O_NONBLOCK: opening a FIFO without it waits for a writer, for ever if none comes. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

    memset(out, 0, sizeof(*out));
    if (fd < 0) {
        error = err_set(errno == ENOENT ? ERR_NOT_FOUND : ERR_CONFIG, "%s: cannot open: %s", path,
                        strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) < 0) {
        error = err_set(ERR_CONFIG, "%s: cannot open: %s", path, strerror(errno));
        goto out;
    }
    if ((flags & FILE_READ_REGULAR_ONLY) && !S_ISREG(st.st_mode)) {
        error = err_set(ERR_CONFIG, "%s: not a regular file", path);
        goto out;
    }
    /* What may be read that is not a file (stdin as /dev/stdin, a pipe) is read blocking. */
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
        error = err_set(ERR_CONFIG, "%s: cannot read: %s", path, strerror(errno));
        goto out;
    }
    if (S_ISREG(st.st_mode) && st.st_size > (off_t)max) {
        error = err_set(ERR_TOO_LARGE, "%s: larger than %zu bytes", path, max);
        goto out;
    }
    if ((f = fdopen(fd, "rb")) == NULL) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    fd = -1;
    error = read_all(out, f, path, max, S_ISREG(st.st_mode) ? (size_t)st.st_size : 0,
                     (flags & FILE_READ_SECRET) != 0);
    if (error == 0)
        out->mode = st.st_mode;
out:
    if (f != NULL)
        fclose(f);
    if (fd >= 0)
        close(fd);
    return error;
}

int file_read_stream(file_contents *out, FILE *f, const char *name, size_t max, unsigned flags)
{
    memset(out, 0, sizeof(*out));
    return read_all(out, f, name, max, 0, (flags & FILE_READ_SECRET) != 0);
}

void file_contents_dispose(file_contents *c)
{
    if (c == NULL)
        return;
    if (c->data != NULL && c->secret)
        OPENSSL_cleanse(c->data, c->len + 1);
    free(c->data);
    c->data = NULL;
    c->len = 0;
}
