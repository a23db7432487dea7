/*
 * repo_dir — the plain-directory side of repo (dir:PATH, Spring's "native" mode), kept apart
 * from the Git side so that repo.c stays about libgit2. Only repo.c calls these.
 */
#ifndef ALMANAC_REPO_DIR_H
#define ALMANAC_REPO_DIR_H

#include "source/repo.h"

#include <stdbool.h>
#include <stddef.h>

#define REPO_PATH_MAX 4096 /* longest path inside a repository, walk and read alike */
#define REPO_DEPTH_MAX 64  /* nested directories a walk descends into */

/* Appends "/name" (or "name" when len is 0) to path[REPO_PATH_MAX + 1] holding len bytes;
 * false, path untouched, when the result would be too long. */
bool repo_path_append(char *path, size_t len, const char *name, size_t *newlen);

/* repo_walk over the directory root: regular files only, sorted as Git sorts a tree. */
int repo_dir_walk(const char *root, size_t max_file_bytes, repo_filter_fn filter, repo_file_fn fn,
                  void *payload);

/* repo_read_file below root; path has passed repo.c's checks (relative, no "." or ".."). */
int repo_dir_read(const char *root, size_t max_file_bytes, const char *path, char **data,
                  size_t *len);

#endif
