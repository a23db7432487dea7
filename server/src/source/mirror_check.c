/*
 * mirror_check — see mirror_check.h. Pack and index trailers are read with plain file I/O
 * (libgit2 1.5 has no call that verifies a pack short of indexing it again, which costs as
 * much as the fetch that brought it); SHA-1 comes from OpenSSL.
 */
#include "source/mirror_check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHA1_LEN 20
#define TREE_DEPTH_MAX 64

typedef struct check {
    git_repository *g;
    git_odb *odb;
    const char *git_dir;
    size_t git_dir_len;
    bool thorough;
    unsigned long long hash_left; /* of MIRROR_CHECK_HASH_BUDGET */
    size_t objects_left;          /* of MIRROR_CHECK_TREE_OBJECTS */
    char *why;
    size_t why_size;
    int verdict; /* 0 sound so far, 1 damaged, <0 could not check */
} check;

static const char *git_reason(void)
{
    const git_error *e = git_error_last();
    return e && e->message ? e->message : "unknown error";
}

static int found(check *c, int verdict, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int found(check *c, int verdict, const char *fmt, ...)
{
    va_list ap;
    if (c->verdict != 0) /* the first finding is the one reported */
        return c->verdict;
    va_start(ap, fmt);
    vsnprintf(c->why, c->why_size, fmt, ap);
    va_end(ap);
    c->verdict = verdict;
    return verdict;
}

bool mirror_error_means_damage(void)
{
    const git_error *e = git_error_last();
    if (!e || !e->message)
        return false;
    return e->klass == GIT_ERROR_ZLIB || strstr(e->message, "corrupt") != NULL ||
           strstr(e->message, "hash mismatch") != NULL ||
           strstr(e->message, "inflat") != NULL;
}

/* ---- refs ----------------------------------------------------------------------------------- */

static check *ref_walk_check; /* nftw has no payload: set under walk_lock (check_refs) */

static int ref_target_present(check *c, git_reference *ref)
{
    if (git_reference_type(ref) != GIT_REFERENCE_DIRECT)
        return 0;
    if (!git_odb_exists(c->odb, git_reference_target(ref))) {
        char hex[GIT_OID_HEXSZ + 1];
        git_oid_tostr(hex, sizeof(hex), git_reference_target(ref));
        return found(c, 1, "%s points at %s, which is not in the mirror", git_reference_name(ref),
                     hex);
    }
    return 0;
}

static int loose_ref_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    check *c = ref_walk_check;
    const char *name = path + c->git_dir_len + 1; /* "refs/heads/main" */
    git_reference *ref = NULL;
    size_t len = strlen(path + ftw->base);
    (void)st;

    if (type != FTW_F || (len > 5 && strcmp(path + ftw->base + len - 5, ".lock") == 0))
        return 0;
    if (git_reference_lookup(&ref, c->g, name) < 0)
        return found(c, 1, "the ref %s cannot be read (%s)", name, git_reason());
    int verdict = ref_target_present(c, ref);
    git_reference_free(ref);
    return verdict;
}

/* Loose ref files one by one (libgit2's iterator skips a file it cannot parse, which is how a
 * garbage ref went unnoticed), then every ref through the iterator (packed-refs too). */
static void check_refs(check *c)
{
    static pthread_mutex_t walk_lock = PTHREAD_MUTEX_INITIALIZER;
    git_reference_iterator *it = NULL;
    git_reference *ref = NULL;
    char refs[PATH_MAX];
    int error;

    snprintf(refs, sizeof(refs), "%.*s/refs", (int)c->git_dir_len, c->git_dir);
    pthread_mutex_lock(&walk_lock);
    ref_walk_check = c;
    nftw(refs, loose_ref_entry, 16, FTW_PHYS);
    ref_walk_check = NULL;
    pthread_mutex_unlock(&walk_lock);
    if (c->verdict != 0)
        return;
    if (git_reference_iterator_new(&it, c->g) < 0) {
        found(c, 1, "the refs cannot be listed (%s)", git_reason());
        return;
    }
    while ((error = git_reference_next(&ref, it)) == 0) {
        int verdict = ref_target_present(c, ref);
        git_reference_free(ref);
        if (verdict != 0)
            break;
    }
    if (error < 0 && error != GIT_ITEROVER && c->verdict == 0)
        found(c, 1, "the refs cannot be listed (%s)", git_reason());
    git_reference_iterator_free(it);
}

/* ---- packs ---------------------------------------------------------------------------------- */

static int read_at(int fd, void *buf, size_t len, off_t at)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, (char *)buf + got, len - got, at + (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

/* 1 when the SHA-1 of the file's first size-20 bytes is its last 20 bytes, 0 when not,
 * -1 on a read error. */
static int trailer_matches(int fd, off_t size)
{
    unsigned char buf[1 << 16], want[SHA1_LEN], got[EVP_MAX_MD_SIZE];
    unsigned int got_len = 0;
    off_t left = size - SHA1_LEN, at = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int result = -1;

    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) ||
        read_at(fd, want, SHA1_LEN, size - SHA1_LEN) < 0)
        goto out;
    while (left > 0) {
        size_t n = left < (off_t)sizeof(buf) ? (size_t)left : sizeof(buf);
        if (read_at(fd, buf, n, at) < 0 || !EVP_DigestUpdate(ctx, buf, n))
            goto out;
        at += (off_t)n;
        left -= (off_t)n;
    }
    if (!EVP_DigestFinal_ex(ctx, got, &got_len) || got_len != SHA1_LEN)
        goto out;
    result = memcmp(got, want, SHA1_LEN) == 0;
out:
    EVP_MD_CTX_free(ctx);
    return result;
}

/* A file's own SHA-1 trailer, hashed while the budget lasts. */
static void check_hashed(check *c, int fd, off_t size, const char *name)
{
    if (!c->thorough || (unsigned long long)size > c->hash_left)
        return;
    c->hash_left -= (unsigned long long)size;
    int matches = trailer_matches(fd, size);
    if (matches < 0)
        found(c, 1, "%s cannot be read: %s", name, strerror(errno ? errno : EIO));
    else if (!matches)
        found(c, 1, "%s does not match its checksum", name);
}

static int open_in(int dfd, const char *name, off_t *size)
{
    struct stat st;
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        return -1;
    }
    if (fd >= 0)
        *size = st.st_size;
    return fd;
}

/* One pack-<hex>.pack and its .idx (stem is "pack-<hex>"). */
static void check_pack(check *c, int dfd, const char *stem)
{
    char pack[NAME_MAX + 8], idx[NAME_MAX + 8];
    unsigned char head[12], pack_sum[SHA1_LEN], idx_tail[2 * SHA1_LEN];
    off_t pack_size = 0, idx_size = 0;
    int pfd, ifd;

    snprintf(pack, sizeof(pack), "%s.pack", stem);
    snprintf(idx, sizeof(idx), "%s.idx", stem);
    pfd = open_in(dfd, pack, &pack_size);
    ifd = open_in(dfd, idx, &idx_size);
    if (pfd < 0)
        found(c, 1, "objects/pack/%s has no pack beside it", idx);
    else if (ifd < 0)
        found(c, 1, "objects/pack/%s has no index (.idx)", pack);
    else if (pack_size < 12 + SHA1_LEN || read_at(pfd, head, sizeof(head), 0) < 0 ||
             memcmp(head, "PACK", 4) != 0)
        found(c, 1, "objects/pack/%s is not a pack (%lld bytes)", pack, (long long)pack_size);
    else if (idx_size < 2 * SHA1_LEN ||
             read_at(ifd, idx_tail, sizeof(idx_tail), idx_size - 2 * SHA1_LEN) < 0)
        found(c, 1, "objects/pack/%s is truncated", idx);
    else if (read_at(pfd, pack_sum, SHA1_LEN, pack_size - SHA1_LEN) < 0 ||
             memcmp(pack_sum, idx_tail, SHA1_LEN) != 0)
        found(c, 1, "objects/pack/%s does not end as its index says (truncated or overwritten)",
              pack);
    if (c->verdict == 0)
        check_hashed(c, ifd, idx_size, idx);
    if (c->verdict == 0)
        check_hashed(c, pfd, pack_size, pack);
    if (pfd >= 0)
        close(pfd);
    if (ifd >= 0)
        close(ifd);
}

static bool pack_stem(const char *name, char *stem, size_t size)
{
    const char *dot = strrchr(name, '.');
    if (strncmp(name, "pack-", 5) != 0 || !dot ||
        (strcmp(dot, ".pack") != 0 && strcmp(dot, ".idx") != 0) ||
        (size_t)(dot - name) >= size)
        return false;
    memcpy(stem, name, (size_t)(dot - name));
    stem[dot - name] = '\0';
    return true;
}

static void check_packs(check *c)
{
    char dir[PATH_MAX], stem[NAME_MAX + 1];
    DIR *d;
    struct dirent *de;

    snprintf(dir, sizeof(dir), "%.*s/objects/pack", (int)c->git_dir_len, c->git_dir);
    if (!(d = opendir(dir)))
        return; /* a mirror of an empty repository may have none */
    while (c->verdict == 0 && (de = readdir(d))) {
        /* each pair once: through its .pack, or through an .idx that has none */
        if (!pack_stem(de->d_name, stem, sizeof(stem)))
            continue;
        if (strcmp(strrchr(de->d_name, '.'), ".idx") == 0) {
            struct stat st;
            char pack[NAME_MAX + 8];
            snprintf(pack, sizeof(pack), "%s.pack", stem);
            if (fstatat(dirfd(d), pack, &st, AT_SYMLINK_NOFOLLOW) == 0)
                continue;
        }
        check_pack(c, dirfd(d), stem);
    }
    closedir(d);
}

/* ---- the served trees ----------------------------------------------------------------------- */

static void read_tree(check *c, const git_oid *id, int depth)
{
    git_tree *tree = NULL;
    char hex[GIT_OID_HEXSZ + 1];

    if (depth > TREE_DEPTH_MAX || c->objects_left == 0)
        return;
    c->objects_left--;
    if (git_tree_lookup(&tree, c->g, id) < 0) {
        found(c, 1, "tree %s cannot be read (%s)", git_oid_tostr(hex, sizeof(hex), id),
              git_reason());
        return;
    }
    for (size_t i = 0; i < git_tree_entrycount(tree) && c->verdict == 0 && c->objects_left; i++) {
        const git_tree_entry *e = git_tree_entry_byindex(tree, i);
        git_odb_object *obj = NULL;
        switch (git_tree_entry_type(e)) {
        case GIT_OBJECT_TREE:
            read_tree(c, git_tree_entry_id(e), depth + 1);
            break;
        case GIT_OBJECT_BLOB:
            c->objects_left--;
            if (git_odb_read(&obj, c->odb, git_tree_entry_id(e)) < 0)
                found(c, 1, "%s (blob %s) cannot be read (%s)", git_tree_entry_name(e),
                      git_oid_tostr(hex, sizeof(hex), git_tree_entry_id(e)), git_reason());
            git_odb_object_free(obj);
            break;
        default: /* submodules name commits of other repositories */
            break;
        }
    }
    git_tree_free(tree);
}

static void check_served(check *c, const git_oid *served, size_t count)
{
    for (size_t i = 0; i < count && c->verdict == 0; i++) {
        git_commit *commit = NULL;
        char hex[GIT_OID_HEXSZ + 1];
        bool seen = false;
        for (size_t j = 0; j < i; j++)
            seen = seen || git_oid_equal(&served[i], &served[j]);
        if (seen)
            continue;
        if (git_commit_lookup(&commit, c->g, &served[i]) < 0) {
            found(c, 1, "commit %s cannot be read (%s)",
                  git_oid_tostr(hex, sizeof(hex), &served[i]), git_reason());
            return;
        }
        read_tree(c, git_commit_tree_id(commit), 0);
        git_commit_free(commit);
    }
}

int mirror_check(git_repository *g, const char *git_dir, bool thorough, const git_oid *served,
                 size_t served_count, char *why, size_t why_size)
{
    check c = {.g = g,
               .git_dir = git_dir,
               .git_dir_len = strlen(git_dir),
               .thorough = thorough,
               .hash_left = MIRROR_CHECK_HASH_BUDGET,
               .objects_left = MIRROR_CHECK_TREE_OBJECTS,
               .why = why,
               .why_size = why_size};

    why[0] = '\0';
    while (c.git_dir_len > 1 && git_dir[c.git_dir_len - 1] == '/')
        c.git_dir_len--; /* libgit2 spells its paths with a trailing slash */
    if (git_repository_odb(&c.odb, g) < 0)
        return found(&c, 1, "the object database cannot be opened (%s)", git_reason());
    check_packs(&c);
    if (c.verdict == 0)
        check_refs(&c);
    if (c.verdict == 0 && thorough)
        check_served(&c, served, served_count);
    git_odb_free(c.odb);
    return c.verdict;
}
