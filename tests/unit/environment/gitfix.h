/*
 * Test fixture shared by the snapshot and environment tests: real Git repositories built with
 * the git CLI in a temporary directory and opened through file:// remotes, plus plain
 * directories for dir mode. Header-only (static functions) because each test directory is its
 * own executable.
 */
#ifndef ALMANAC_TEST_GITFIX_H
#define ALMANAC_TEST_GITFIX_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "errors.h"
#include "source/repo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char gitfix_base[256];
static unsigned gitfix_serial;

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void
gitfix_sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof(cmd));
    if (system(cmd) != 0)
        fail_msg("command failed: %s", cmd);
}

/* Creates the temporary base directory and a Git identity for commits. */
static int gitfix_setup(void **state)
{
    (void)state;
    snprintf(gitfix_base, sizeof(gitfix_base), "%s/almanac-envtest-XXXXXX",
             getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(gitfix_base) == NULL)
        return -1;
    setenv("GIT_AUTHOR_NAME", "Test", 1);
    setenv("GIT_AUTHOR_EMAIL", "test@example.com", 1);
    setenv("GIT_COMMITTER_NAME", "Test", 1);
    setenv("GIT_COMMITTER_EMAIL", "test@example.com", 1);
    setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
    return 0;
}

static int gitfix_teardown(void **state)
{
    (void)state;
    if (gitfix_base[0] != '\0')
        gitfix_sh("rm -rf '%s'", gitfix_base);
    return 0;
}

/* A fresh empty directory under the base; written into dir. */
static void gitfix_mkdir(char *dir, size_t size, const char *what)
{
    int n = snprintf(dir, size, "%s/%s-%u", gitfix_base, what, ++gitfix_serial);
    assert_true(n > 0 && (size_t)n < size);
    assert_int_equal(mkdir(dir, 0700), 0);
}

/* A new non-bare repository on branch main. */
static void gitfix_init(char *dir, size_t size)
{
    gitfix_mkdir(dir, size, "origin");
    gitfix_sh("git init -q -b main '%s'", dir);
}

/* Writes dir/path (parents created), content as given. */
static void gitfix_write(const char *dir, const char *path, const char *content)
{
    char full[1024];
    FILE *f;
    int n = snprintf(full, sizeof(full), "%s/%s", dir, path);
    assert_true(n > 0 && (size_t)n < sizeof(full));
    for (char *p = full + strlen(dir) + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        if (mkdir(full, 0700) != 0 && errno != EEXIST)
            fail_msg("mkdir %s", full);
        *p = '/';
    }
    f = fopen(full, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, strlen(content), f), strlen(content));
    assert_int_equal(fclose(f), 0);
}

/* Commits everything in dir; the commit id into commit. */
static void gitfix_commit(const char *dir, char commit[REPO_COMMIT_HEX])
{
    char cmd[1200];
    FILE *p;
    gitfix_sh("git -C '%s' add -A && git -C '%s' commit -q --allow-empty -m change", dir, dir);
    snprintf(cmd, sizeof(cmd), "git -C '%s' rev-parse HEAD", dir);
    p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(commit, REPO_COMMIT_HEX, p));
    assert_int_equal(pclose(p), 0);
    assert_int_equal(strlen(commit), 40);
}

/* Opens origin through a file:// remote ("dir:" prefix for dir mode), with its own cache. */
static repo *gitfix_open(const char *origin, bool dir_mode, size_t max_file_bytes)
{
    char uri[1100], cache[512];
    repo *r = NULL;
    repo_options opts = {0};
    int n = snprintf(uri, sizeof(uri), "%s%s", dir_mode ? "dir:" : "file://", origin);
    assert_true(n > 0 && (size_t)n < sizeof(uri));
    gitfix_mkdir(cache, sizeof(cache), "cache");
    opts.uri = uri;
    opts.cache_dir = cache;
    opts.max_file_bytes = max_file_bytes != 0 ? max_file_bytes : 1u << 20;
    if (repo_open(&r, &opts) < 0)
        fail_msg("repo_open(%s): %s", uri, err_message());
    return r;
}

#endif
