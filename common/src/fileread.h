/*
 * fileread — the one reader of a whole file with a size cap: settings files, key files, the
 * auth file, overrides, the webhook secret, the client's cache file, stdin of the cipher
 * commands. Errors follow err.h.
 */
#ifndef ALMANAC_FILEREAD_H
#define ALMANAC_FILEREAD_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

typedef struct file_contents {
    char *data;  /* NUL-terminated (the NUL is not counted in len) */
    size_t len;
    mode_t mode; /* st_mode of the file read (0 for a stream) */
    bool secret; /* wiped by file_contents_dispose */
} file_contents;

#define FILE_READ_SECRET 1u       /* wipe every buffer let go of, and the result on dispose */
#define FILE_READ_REGULAR_ONLY 2u /* refuse directories, devices, FIFOs */

/*
 * Reads all of path, at most max bytes, into out. A file that grows past max while being read
 * is refused too. Errors: ERR_NOT_FOUND (no such file), ERR_TOO_LARGE (over max), ERR_CONFIG
 * (cannot open or read, not a regular file), ERR_NOMEM. Messages start with the path.
 */
int file_read(file_contents *out, const char *path, size_t max, unsigned flags);
/* The same for an open stream (stdin); name is what messages call it. */
int file_read_stream(file_contents *out, FILE *f, const char *name, size_t max, unsigned flags);
/* Frees (and wipes if secret) the data; out may be NULL or never filled (zeroed). */
void file_contents_dispose(file_contents *c);

#endif
