/*
 * render_dir — version folders, the ..data swap, stable names and the status file of
 * `almanac render` (see render_dir.h).
 *
 * A reader that resolves ..data once and reads every file through it sees one version; each
 * file is complete and synced before ..data ever points at it. With the files layout each
 * stable name is a hard link to the folder's file, renamed into place: every file is replaced
 * atomically, but a reader of two files may see them from two versions (that layout is for
 * consumers that cannot follow links at all).
 */
#include "render_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DATA_TMP_LINK "..data_tmp"
#define STATUS_TMP "..status_tmp"

/* snprintf into a path buffer; -1 (with a message) when the path does not fit. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
path_fmt(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size) {
        fprintf(stderr, "almanac: path too long under --out-dir\n");
        return -1;
    }
    return 0;
}

static int fail_errno(const char *what, const char *path)
{
    fprintf(stderr, "almanac: %s %s: %s\n", what, path, strerror(errno));
    return -1;
}

static int sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* A regular file is almanac's when it is the very file ..data holds under that name (the
 * files layout hard-links them). */
static bool file_is_ours(const char *dir, const char *name, const struct stat *st)
{
    char path[RDIR_PATH_MAX];
    struct stat data;
    return path_fmt(path, sizeof(path), "%s/%s/%s", dir, RDIR_DATA_LINK, name) == 0 &&
           stat(path, &data) == 0 && data.st_dev == st->st_dev && data.st_ino == st->st_ino;
}

int rdir_check_names(const char *dir, const rdir_item *items, size_t count)
{
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return fail_errno("cannot create", dir);
    for (size_t i = 0; i < count; i++) {
        char path[RDIR_PATH_MAX];
        struct stat st;
        if (path_fmt(path, sizeof(path), "%s/%s", dir, items[i].name) < 0)
            return -1;
        if (lstat(path, &st) < 0 || S_ISLNK(st.st_mode) ||
            (S_ISREG(st.st_mode) && file_is_ours(dir, items[i].name, &st)))
            continue;
        fprintf(stderr,
                "almanac: %s exists and is not a link; give --out-dir a directory only almanac "
                "writes to\n",
                path);
        return -1;
    }
    return 0;
}

static int write_item(const char *folder, const rdir_item *item, mode_t mode)
{
    char path[RDIR_PATH_MAX];
    int rc = 0;
    if (path_fmt(path, sizeof(path), "%s/%s", folder, item->name) < 0)
        return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return fail_errno("cannot create", path);
    fchmod(fd, mode); /* whatever the umask says */
    size_t done = 0;
    while (done < item->len && rc == 0) {
        ssize_t n = write(fd, item->data + done, item->len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = fail_errno("cannot write", path);
        else
            done += (size_t)n;
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = fail_errno("cannot sync", path);
    close(fd);
    return rc;
}

int rdir_stage(char *folder, const char *dir, const rdir_item *items, size_t count, mode_t mode)
{
    char stamp[64];
    struct timespec now;
    struct tm tm;
    int rc = 0;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "..%Y_%m_%d_%H_%M_%S", &tm);
    if (path_fmt(folder, RDIR_PATH_MAX, "%s/%s.XXXXXX", dir, stamp) < 0)
        return -1;
    if (mkdtemp(folder) == NULL)
        return fail_errno("cannot create a version folder in", dir);
    /* mkdtemp makes it 0700: give it the files' mode, with search wherever read is allowed, so
     * --mode 0644 files can be read by another user, as with a ConfigMap volume. */
    mode_t folder_mode = mode | ((mode & 0444) >> 2);
    if (chmod(folder, folder_mode) < 0)
        rc = fail_errno("cannot set the permissions of", folder);
    for (size_t i = 0; i < count && rc == 0; i++)
        rc = write_item(folder, &items[i], mode);
    if (rc == 0 && sync_dir(folder) < 0)
        rc = fail_errno("cannot sync", folder);
    if (rc != 0)
        rdir_remove_folder(folder);
    return rc;
}

void rdir_current(char *folder_name, const char *dir)
{
    char path[RDIR_PATH_MAX];
    folder_name[0] = '\0';
    if (path_fmt(path, sizeof(path), "%s/%s", dir, RDIR_DATA_LINK) < 0)
        return;
    ssize_t n = readlink(path, folder_name, RDIR_NAME_MAX - 1);
    folder_name[n > 0 ? n : 0] = '\0';
}

/* Puts `target` at `path` with one rename: a symbolic link, or (hard) a link to a file. */
static int replace_with(const char *dir, const char *path, const char *target, bool hard)
{
    char tmp[RDIR_PATH_MAX];
    if (path_fmt(tmp, sizeof(tmp), "%s/%s", dir, DATA_TMP_LINK) < 0)
        return -1;
    unlink(tmp);
    if ((hard ? link(target, tmp) : symlink(target, tmp)) < 0 || rename(tmp, path) < 0) {
        int rc = fail_errno("cannot replace", path);
        unlink(tmp);
        return rc;
    }
    return 0;
}

int rdir_publish(const char *dir, const char *folder_name, const rdir_item *items, size_t count,
                 rdir_layout layout)
{
    char data[RDIR_PATH_MAX];
    if (path_fmt(data, sizeof(data), "%s/%s", dir, RDIR_DATA_LINK) < 0 ||
        replace_with(dir, data, folder_name, false) < 0)
        return -1;
    for (size_t i = 0; i < count; i++) {
        char path[RDIR_PATH_MAX], target[RDIR_PATH_MAX];
        struct stat st;
        if (path_fmt(path, sizeof(path), "%s/%s", dir, items[i].name) < 0)
            return -1;
        if (layout == RDIR_LAYOUT_FILES) {
            if (path_fmt(target, sizeof(target), "%s/%s/%s", dir, folder_name, items[i].name) < 0 ||
                replace_with(dir, path, target, true) < 0)
                return -1;
            continue;
        }
        if (path_fmt(target, sizeof(target), "%s/%s", RDIR_DATA_LINK, items[i].name) < 0)
            return -1;
        /* A link made by an earlier run resolves through ..data already; a file of the files
         * layout is replaced. */
        if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
            continue;
        if (replace_with(dir, path, target, false) < 0)
            return -1;
    }
    sync_dir(dir);
    return 0;
}

void rdir_remove_folder(const char *folder)
{
    DIR *d = opendir(folder);
    if (d != NULL) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char sub[RDIR_PATH_MAX];
            if (path_fmt(sub, sizeof(sub), "%s/%s", folder, de->d_name) == 0)
                unlink(sub); /* version folders hold only regular files */
        }
        closedir(d);
    }
    rmdir(folder);
}

void rdir_remove_old(const char *dir, const char *keep)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        /* Version folders only: "..YYYY_…", never ..data, ..status or their temporaries. */
        if (strncmp(de->d_name, "..", 2) != 0 || de->d_name[2] < '0' || de->d_name[2] > '9' ||
            (keep != NULL && strcmp(de->d_name, keep) == 0))
            continue;
        char sub[RDIR_PATH_MAX];
        if (path_fmt(sub, sizeof(sub), "%s/%s", dir, de->d_name) == 0)
            rdir_remove_folder(sub);
    }
    closedir(d);
}

int rdir_write_status(const char *dir, const json_t *status)
{
    char tmp[RDIR_PATH_MAX], path[RDIR_PATH_MAX];
    if (path_fmt(tmp, sizeof(tmp), "%s/%s", dir, STATUS_TMP) < 0 ||
        path_fmt(path, sizeof(path), "%s/%s", dir, RDIR_STATUS) < 0)
        return -1;
    char *text = json_dumps(status, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (text == NULL) {
        fprintf(stderr, "almanac: out of memory writing %s\n", path);
        return -1;
    }
    size_t len = strlen(text);
    rdir_item item = {.data = text, .len = len};
    snprintf(item.name, sizeof(item.name), "%s", STATUS_TMP);
    unlink(tmp);
    int rc = write_item(dir, &item, 0644);
    free(text);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = fail_errno("cannot write", path);
    if (rc != 0)
        unlink(tmp);
    return rc;
}
