#ifndef ALMANAC_CLIENT_TESTS_H
#define ALMANAC_CLIENT_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

int client_config_tests(void);
int client_cache_tests(void);
int client_client_tests(void);
int client_structured_tests(void);

/* Reads a whole file into a NUL-terminated buffer (test helper; fails the test on error). */
char *test_read_file(const char *path, size_t *len);
/* Writes `len` bytes to `path`, replacing it. */
void test_write_file(const char *path, const char *data, size_t len);
/* A fresh private directory under TMPDIR; caller removes it with test_rmtree. */
char *test_mkdtemp(void);
void test_rmtree(const char *path);

#endif
