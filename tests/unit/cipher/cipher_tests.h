/* Shared by the cipher unit test files: each contributes one group to main(). */
#ifndef ALMANAC_CIPHER_TESTS_H
#define ALMANAC_CIPHER_TESTS_H

#include "guard/cipher.h"

#include <stddef.h>

#define CIPHER_RES ALMANAC_TEST_RESOURCES "/cipher"
#define KEYS_DIR CIPHER_RES "/keys"

/* The test keyrings, by the names the vectors' expect.json files use ("none" is NULL). */
keyring *test_keyring(const char *name);
void test_keyrings_free(void);

/* Runs a shell command line; its stdout (NUL-terminated, free()) in *out when out is not NULL. */
int test_run(const char *cmd, char **out, size_t *out_len);
/* Writes len bytes to path; 0 or -1. */
int test_write_file(const char *path, const void *data, size_t len);
/* A fresh temporary directory (free()). */
char *test_tempdir(void);
void test_rmtree(const char *dir);

int run_interop_tests(void);
int run_route_tests(void);

#endif
