/*
 * repo_dir — serves a plain directory (dir:PATH) the way repo.c serves a commit.
 *
 * Owns: walking and reading below the root without ever leaving it. Symlinks are never
 * followed (listing uses lstat semantics and skips them; reads go segment by segment with
 * openat(O_NOFOLLOW)), only regular files are read (FIFOs and devices are skipped, and opened
 * with O_NONBLOCK so none can block a reader), and dotfiles and dot-directories (.git, .env)
 * are neither listed nor served. Does not own: path validation (repo.c) or parsing.
 */
#include "source/repo_dir.h"

#include "errors.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MODULE "repo"
#define DIR_ENTRIES_MAX 100000 /* entries read from one directory */

typedef struct dir_walk {
    const char *root;
    size_t max;
    repo_filter_fn filter;
    repo_file_fn fn;
    void *payload;
    char path[REPO_PATH_MAX + 1];
} dir_walk;

bool repo_path_append(char *path, size_t len, const char *name, size_t *newlen)
{
    size_t n = strlen(name), extra = len ? 1 : 0;
    if (len + extra + n > REPO_PATH_MAX)
        return false;
    if (extra)
        path[len] = '/';
    memcpy(path + len + extra, name, n + 1);
    *newlen = len + extra + n;
    return true;
}

typedef struct dir_entry {
    char *name;
    bool is_dir;
    size_t size;
} dir_entry;

/* Git's tree order: a directory sorts as if its name ended in '/'. Walks in both modes then
 * come out in the same order, which is plain byte order of the full paths. */
static int dir_entry_cmp(const void *pa, const void *pb)
{
    const dir_entry *a = pa, *b = pb;
    size_t la = strlen(a->name), lb = strlen(b->name), n = la < lb ? la : lb;
    int c = memcmp(a->name, b->name, n);
    unsigned char ca, cb;

    if (c)
        return c;
    ca = la > n ? (unsigned char)a->name[n] : (a->is_dir ? '/' : 0);
    cb = lb > n ? (unsigned char)b->name[n] : (b->is_dir ? '/' : 0);
    return (int)ca - (int)cb;
}

/* Reads an open regular file, at most max bytes (ERR_TOO_LARGE beyond). */
static int read_fd(int fd, size_t max, const char *what, char **data, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    int error = 0;

    if (!buf)
        return err_set(ERR_NOMEM, "out of memory");
    for (;;) {
        ssize_t got;
        if (n == cap) {
            char *grown;
            if (cap > max) {
                error = err_set(ERR_TOO_LARGE, "%s is larger than %zu bytes", what, max);
                goto out;
            }
            cap *= 2;
            if (!(grown = realloc(buf, cap + 1))) {
                error = err_set(ERR_NOMEM, "out of memory");
                goto out;
            }
            buf = grown;
        }
        got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            error = err_set(ERR_INTERNAL, "cannot read %s: %s", what, strerror(errno));
            goto out;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    if (n > max) {
        error = err_set(ERR_TOO_LARGE, "%s is larger than %zu bytes", what, max);
        goto out;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    buf = NULL;
out:
    free(buf);
    return error;
}

/* Opens name under dirfd as a regular file, never through a symlink, never blocking on a FIFO. */
static int open_regular(int dirfd, const char *name, struct stat *st)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        errno = ENOENT;
        return -1;
    }
    return fd;
}

static int walk_dir(dir_walk *w, int fd, size_t len, int depth)
{
    DIR *d = NULL;
    dir_entry *entries = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int error = 0;

    if (depth > REPO_DEPTH_MAX) {
        LOG_WARN(MODULE, "not walking below %s: nested too deep", w->path);
        close(fd);
        return 0;
    }
    if (!(d = fdopendir(fd))) {
        close(fd);
        return err_set(ERR_INTERNAL, "cannot list %s: %s", w->path, strerror(errno));
    }
    while ((de = readdir(d))) {
        struct stat st;
        if (n == DIR_ENTRIES_MAX) {
            LOG_WARN(MODULE, "more than %d entries in %s/%s: the rest are ignored", DIR_ENTRIES_MAX,
                     w->root, w->path);
            break;
        }
        if (de->d_name[0] == '.')
            continue; /* ".", "..", .git and other hidden files are not configuration */
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
            continue; /* symlinks (which might leave the root), devices, FIFOs */
        if (n == cap) {
            dir_entry *grown;
            cap = cap ? cap * 2 : 32;
            if (!(grown = realloc(entries, cap * sizeof(*entries)))) {
                error = err_set(ERR_NOMEM, "out of memory");
                goto out;
            }
            entries = grown;
        }
        if (!(entries[n].name = strdup(de->d_name))) {
            error = err_set(ERR_NOMEM, "out of memory");
            goto out;
        }
        entries[n].is_dir = S_ISDIR(st.st_mode);
        entries[n].size = (size_t)st.st_size;
        n++;
    }
    if (n)
        qsort(entries, n, sizeof(*entries), dir_entry_cmp);

    for (size_t i = 0; i < n && error == 0; i++) {
        size_t newlen;
        if (!repo_path_append(w->path, len, entries[i].name, &newlen))
            continue;
        if (entries[i].is_dir) {
            int sub =
                openat(dirfd(d), entries[i].name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                error = walk_dir(w, sub, newlen, depth + 1);
        } else if (!w->filter || w->filter(w->path, w->payload)) {
            struct stat st;
            char *data = NULL;
            size_t size = 0;
            int ffd = open_regular(dirfd(d), entries[i].name, &st);
            if (ffd < 0) {
                /* vanished or replaced since listing: as if absent */
            } else if ((size_t)st.st_size > w->max) {
                error = w->fn(w->path, NULL, (size_t)st.st_size, w->payload);
            } else if ((error = read_fd(ffd, w->max, w->path, &data, &size)) == ERR_TOO_LARGE) {
                /* grew while reading: report its size now */
                size = fstat(ffd, &st) == 0 ? (size_t)st.st_size : w->max + 1;
                error = w->fn(w->path, NULL, size, w->payload);
            } else if (error == 0) {
                error = w->fn(w->path, data, size, w->payload);
            }
            if (ffd >= 0)
                close(ffd);
            free(data);
        }
        w->path[len] = '\0';
    }
out:
    for (size_t i = 0; i < n; i++)
        free(entries[i].name);
    free(entries);
    closedir(d);
    return error;
}

int repo_dir_walk(const char *root, size_t max, repo_filter_fn filter, repo_file_fn fn,
                  void *payload)
{
    dir_walk *w = NULL;
    int fd, error;

    if ((fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return err_set(ERR_UNAVAILABLE, "cannot open %s: %s", root, strerror(errno));
    if (!(w = calloc(1, sizeof(*w)))) {
        close(fd);
        return err_set(ERR_NOMEM, "out of memory");
    }
    w->root = root;
    w->max = max;
    w->filter = filter;
    w->fn = fn;
    w->payload = payload;
    error = walk_dir(w, fd, 0, 0); /* takes fd */
    free(w);
    return error;
}

int repo_dir_read(const char *root, size_t max, const char *path, char **data, size_t *len)
{
    char seg[NAME_MAX + 1];
    const char *p = path;
    struct stat st;
    int dfd, fd = -1, error = 0;

    if ((dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return err_set(ERR_UNAVAILABLE, "cannot open %s: %s", root, strerror(errno));
    for (;;) {
        size_t n = strcspn(p, "/");
        if (n > NAME_MAX || p[0] == '.') {
            /* hidden entries are not served, as the walk does not list them */
            error = err_set(ERR_NOT_FOUND, "no such file: %s", path);
            goto out;
        }
        memcpy(seg, p, n);
        seg[n] = '\0';
        if (!p[n])
            break;
        int sub = openat(dfd, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(dfd);
        dfd = sub;
        if (dfd < 0) {
            error = err_set(ERR_NOT_FOUND, "no such file: %s", path);
            goto out;
        }
        p += n + 1;
    }
    if ((fd = open_regular(dfd, seg, &st)) < 0) {
        error = err_set(ERR_NOT_FOUND, "no such file: %s", path);
        goto out;
    }
    if ((size_t)st.st_size > max) {
        error = err_set(ERR_CONFIG, "%s is larger than %zu bytes", path, max);
        goto out;
    }
    error = read_fd(fd, max, path, data, len);
out:
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    return error;
}
