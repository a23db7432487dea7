/*
 * Unit tests for auth. The file format is covered as data: every tests/resources/auth/NAME.yml
 * is parsed and compared with NAME.expect.json, which holds either
 *   {"error":{"line":N,"col":N,"message_contains":"..."}}  (the message must read NAME.yml:N:N:)
 * or {"count":N,"checks":[CHECK, ...]} where each CHECK gives credentials as
 *   "basic":[user,password] | "bearer":token | "header":raw Authorization value or null
 * and what must follow: "name" (null: 401), "admin", and "allows" {names: bool}.
 * The C tests below cover what a file cannot: hashes of every crypt method made here with
 * libcrypt, the verification cache, reference counting and the file reader's limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_files.h"

#include <crypt.h>
#include <dirent.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guard/auth.h"
#include "errors.h"

#define CASES_DIR ALMANAC_TEST_RESOURCES "/auth"

/* A resource the test needs: its absence is a failure. */
static char *read_file(const char *path, size_t *len)
{
    char *data = test_read_file(path, len);
    assert_non_null(data);
    return data;
}

static char *basic_header(const char *user, const char *password)
{
    char plain[512];
    snprintf(plain, sizeof(plain), "%s:%s", user, password);
    size_t len = strlen(plain);
    char *header = malloc(6 + 4 * ((len + 2) / 3) + 1);
    assert_non_null(header);
    memcpy(header, "Basic ", 6);
    EVP_EncodeBlock((unsigned char *)header + 6, (const unsigned char *)plain, (int)len);
    return header;
}

static int failures;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
report(const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    failures++;
}

static void run_check(const char *name, authdb *db, size_t index, const json_t *check)
{
    char *header = NULL;
    const char *raw = NULL;
    json_t *basic = json_object_get(check, "basic");
    json_t *bearer = json_object_get(check, "bearer");
    if (basic != NULL) {
        header = basic_header(json_string_value(json_array_get(basic, 0)),
                              json_string_value(json_array_get(basic, 1)));
        raw = header;
    } else if (bearer != NULL) {
        size_t n = strlen(json_string_value(bearer)) + 8;
        header = malloc(n);
        assert_non_null(header);
        snprintf(header, n, "Bearer %s", json_string_value(bearer));
        raw = header;
    } else {
        raw = json_string_value(json_object_get(check, "header"));
    }
    const auth_principal *who = NULL;
    int error = auth_authenticate(db, raw, &who);
    const json_t *want_name = json_object_get(check, "name");
    if (json_is_null(want_name)) {
        if (error != ERR_UNAUTHORIZED || who != NULL)
            report(name, "check %zu: expected 401, got %d", index, error);
    } else if (error != 0 || who == NULL) {
        report(name, "check %zu: expected %s, got %d (%s)", index, json_string_value(want_name),
               error, err_message());
    } else {
        if (strcmp(auth_principal_name(who), json_string_value(want_name)) != 0)
            report(name, "check %zu: name %s", index, auth_principal_name(who));
        json_t *admin = json_object_get(check, "admin");
        if (admin != NULL && json_is_true(admin) != auth_principal_is_admin(who))
            report(name, "check %zu: admin %d", index, auth_principal_is_admin(who));
        const char *names;
        json_t *want;
        json_object_foreach(json_object_get(check, "allows"), names, want)
        {
            if (auth_allows_applications(who, names) != json_is_true(want))
                report(name, "check %zu: allows(\"%s\") is not %s", index, names,
                       json_is_true(want) ? "true" : "false");
        }
    }
    free(header);
}

static void run_case(const char *dir, const char *file)
{
    char path[1024], expect_path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    snprintf(expect_path, sizeof(expect_path), "%s/%.*s.expect.json", dir, (int)(strlen(file) - 4),
             file);
    json_error_t jerr;
    json_t *expect = json_load_file(expect_path, 0, &jerr);
    if (expect == NULL) {
        report(file, "cannot read %s: %s", expect_path, jerr.text);
        return;
    }
    size_t len = 0;
    char *data = read_file(path, &len);
    authdb *db = NULL;
    int error = authdb_parse(&db, data, len, file);
    json_t *want_error = json_object_get(expect, "error");
    if (want_error != NULL) {
        char prefix[300];
        snprintf(prefix, sizeof(prefix), "%s:%lld:%lld: ", file,
                 (long long)json_integer_value(json_object_get(want_error, "line")),
                 (long long)json_integer_value(json_object_get(want_error, "col")));
        const char *contains = json_string_value(json_object_get(want_error, "message_contains"));
        if (error >= 0)
            report(file, "parsed, but should fail with %s%s", prefix, contains);
        else if (db != NULL)
            report(file, "failed but left a database");
        else if (strncmp(err_message(), prefix, strlen(prefix)) != 0 ||
                 !strstr(err_message(), contains))
            report(file, "message \"%s\", want \"%s...%s\"", err_message(), prefix, contains);
    } else if (error < 0) {
        report(file, "failed: %s", err_message());
    } else {
        size_t count = (size_t)json_integer_value(json_object_get(expect, "count"));
        if (authdb_count(db) != count)
            report(file, "%zu entries, want %zu", authdb_count(db), count);
        size_t i;
        json_t *check;
        json_array_foreach(json_object_get(expect, "checks"), i, check)
            run_check(file, db, i, check);
    }
    authdb_release(db);
    free(data);
    json_decref(expect);
}

static void test_cases(void **state)
{
    (void)state;
    DIR *d = opendir(CASES_DIR);
    assert_non_null(d);
    struct dirent *ent;
    int cases = 0;
    failures = 0;
    while ((ent = readdir(d)) != NULL) {
        size_t n = strlen(ent->d_name);
        if (n > 4 && strcmp(ent->d_name + n - 4, ".yml") == 0) {
            run_case(CASES_DIR, ent->d_name);
            cases++;
        }
    }
    closedir(d);
    assert_true(cases >= 20);
    assert_int_equal(failures, 0);
}

/* A hash of password with the method of prefix, made by this system's libcrypt. */
static char *make_hash(const char *prefix, unsigned long cost, const char *password)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    if (crypt_gensalt_rn(prefix, cost, NULL, 0, setting, sizeof(setting)) == NULL)
        return NULL;
    struct crypt_data *data = calloc(1, sizeof(*data));
    assert_non_null(data);
    const char *hash = crypt_r(password, setting, data);
    char *copy = hash && hash[0] != '*' ? strdup(hash) : NULL;
    free(data);
    return copy;
}

static void test_every_crypt_method(void **state)
{
    (void)state;
    static const struct {
        const char *prefix;
        unsigned long cost;
    } methods[] = {{"$y$", 0}, {"$6$", 1000}, {"$5$", 1000}, {"$2b$", 4}};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        char *hash = make_hash(methods[i].prefix, methods[i].cost, "s3cret pass");
        if (hash == NULL) {
            fprintf(stderr, "libcrypt here cannot make %s hashes; skipped\n", methods[i].prefix);
            continue;
        }
        char file[512];
        snprintf(file, sizeof(file), "users:\n  u:\n    password: '%s'\n    applications: [a]\n",
                 hash);
        authdb *db = NULL;
        assert_int_equal(authdb_parse(&db, file, strlen(file), "m.yml"), 0);
        const auth_principal *who = NULL;
        char *good = basic_header("u", "s3cret pass");
        char *bad = basic_header("u", "s3cret pasS");
        /* Right, wrong, right again (from the cache), wrong again (never cached). */
        assert_int_equal(auth_authenticate(db, good, &who), 0);
        assert_string_equal(auth_principal_name(who), "u");
        assert_int_equal(auth_authenticate(db, bad, &who), ERR_UNAUTHORIZED);
        assert_null(who);
        assert_int_equal(auth_authenticate(db, good, &who), 0);
        assert_int_equal(auth_authenticate(db, bad, &who), ERR_UNAUTHORIZED);
        free(good);
        free(bad);
        authdb_release(db);
        free(hash);
    }
}

static void test_password_with_nul_or_too_long(void **state)
{
    (void)state;
    char *hash = make_hash("$6$", 1000, "pw");
    assert_non_null(hash);
    char file[512];
    snprintf(file, sizeof(file), "users:\n  u:\n    password: '%s'\n", hash);
    authdb *db = NULL;
    assert_int_equal(authdb_parse(&db, file, strlen(file), "n.yml"), 0);
    const auth_principal *who = NULL;
    /* "u:pw\0x": crypt would stop at the NUL and accept it. */
    unsigned char plain[] = {'u', ':', 'p', 'w', 0, 'x'};
    char header[64] = "Basic ";
    EVP_EncodeBlock((unsigned char *)header + 6, plain, sizeof(plain));
    assert_int_equal(auth_authenticate(db, header, &who), ERR_UNAUTHORIZED);
    char *huge = malloc(8192);
    assert_non_null(huge);
    memset(huge, 'A', 8191);
    huge[8191] = '\0';
    memcpy(huge, "Basic ", 6);
    assert_int_equal(auth_authenticate(db, huge, &who), ERR_UNAUTHORIZED);
    free(huge);
    char *ok = basic_header("u", "pw");
    assert_int_equal(auth_authenticate(db, ok, &who), 0);
    free(ok);
    authdb_release(db);
    free(hash);
}

static void test_swap_keeps_readers_alive(void **state)
{
    (void)state;
    const char *one = "tokens:\n  - sha256: 'bbbdd6f574623bac644e730b8521b5ee47903498771f073bf6c"
                      "026285e0ab371'\n    name: first\n";
    authdb *slot = NULL, *a = NULL, *b = NULL;
    assert_null(authdb_acquire(&slot));
    assert_int_equal(authdb_parse(&a, one, strlen(one), "a.yml"), 0);
    assert_int_equal(authdb_parse(&b, "", 0, "b.yml"), 0);
    authdb_swap(&slot, a);
    authdb *held = authdb_acquire(&slot);
    assert_ptr_equal(held, a);
    const auth_principal *who = NULL;
    assert_int_equal(auth_authenticate(held, "Bearer tok-payments", &who), 0);
    authdb_swap(&slot, b); /* the reader's reference keeps a and who alive */
    assert_string_equal(auth_principal_name(who), "first");
    authdb_release(held);
    authdb *now = authdb_acquire(&slot);
    assert_int_equal(auth_authenticate(now, "Bearer tok-payments", &who), ERR_UNAUTHORIZED);
    authdb_release(now);
    authdb_swap(&slot, NULL);
    assert_null(slot);
}

static void test_load_errors(void **state)
{
    (void)state;
    authdb *db = NULL;
    assert_int_equal(authdb_load(&db, CASES_DIR "/no-such-file.yml"), ERR_CONFIG);
    assert_null(db);
    assert_non_null(strstr(err_message(), "no-such-file.yml"));

    char path[] = "/tmp/almanac-auth-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char line[] = "# padding padding padding padding padding padding padding padding padding\n";
    for (size_t written = 0; written <= (1u << 20); written += sizeof(line) - 1)
        assert_int_equal(write(fd, line, sizeof(line) - 1), (ssize_t)(sizeof(line) - 1));
    close(fd);
    assert_int_equal(authdb_load(&db, path), ERR_CONFIG);
    assert_non_null(strstr(err_message(), "larger than"));
    unlink(path);

    assert_int_equal(authdb_load(&db, CASES_DIR "/tokens.yml"), 0);
    assert_int_equal(authdb_count(db), 3);
    authdb_release(db);
}

static void test_no_database_is_unauthorized(void **state)
{
    (void)state;
    const auth_principal *who = NULL;
    assert_int_equal(auth_authenticate(NULL, "Bearer x", &who), ERR_UNAUTHORIZED);
    assert_false(auth_allows_applications(NULL, "a"));
    assert_false(auth_principal_is_admin(NULL));
}

static void test_failure_limit(void **state)
{
    (void)state;
    authdb *db = NULL;
    assert_int_equal(authdb_parse(&db, "", 0, "t.yml"), 0);
    assert_false(auth_throttled(db, "192.0.2.1")); /* no limit by default */
    for (int i = 0; i < 100; i++)
        auth_note_failure(db, "192.0.2.1");
    assert_false(auth_throttled(db, "192.0.2.1"));
    authdb_limit_failures(db, 2);
    assert_false(auth_throttled(db, "192.0.2.2"));
    auth_note_failure(db, "192.0.2.2");
    assert_false(auth_throttled(db, "192.0.2.2"));
    auth_note_failure(db, "192.0.2.2");
    assert_true(auth_throttled(db, "192.0.2.2"));
    assert_false(auth_throttled(db, "2001:db8::1"));
    assert_false(auth_throttled(NULL, "192.0.2.2"));
    authdb_release(db);
}

/* Readers authenticate through the slot while it is swapped under them (run it under TSan). */
typedef struct race {
    authdb *slot;
    const char *header;
    int failures;
} race;

static void *reader(void *arg)
{
    race *r = arg;
    for (int i = 0; i < 200; i++) {
        authdb *db = authdb_acquire(&r->slot);
        const auth_principal *who = NULL;
        if (db == NULL || auth_authenticate(db, r->header, &who) != 0 ||
            !auth_allows_applications(who, "a") || auth_allows_applications(who, "b"))
            __atomic_add_fetch(&r->failures, 1, __ATOMIC_RELAXED);
        authdb_release(db);
    }
    return NULL;
}

static void test_concurrent_readers_and_swaps(void **state)
{
    (void)state;
    char *hash = make_hash("$5$", 1000, "pw");
    assert_non_null(hash);
    char file[512];
    snprintf(file, sizeof(file), "users:\n  u:\n    password: '%s'\n    applications: [a]\n", hash);
    race r = {.slot = NULL, .header = NULL, .failures = 0};
    char *header = basic_header("u", "pw");
    r.header = header;
    authdb *first = NULL;
    assert_int_equal(authdb_parse(&first, file, strlen(file), "r.yml"), 0);
    authdb_swap(&r.slot, first);
    pthread_t threads[4];
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, reader, &r), 0);
    for (int i = 0; i < 30; i++) {
        authdb *fresh = NULL;
        assert_int_equal(authdb_parse(&fresh, file, strlen(file), "r.yml"), 0);
        authdb_swap(&r.slot, fresh);
    }
    for (size_t i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    assert_int_equal(r.failures, 0);
    authdb_swap(&r.slot, NULL);
    free(header);
    free(hash);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_every_crypt_method),
        cmocka_unit_test(test_password_with_nul_or_too_long),
        cmocka_unit_test(test_swap_keeps_readers_alive),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_no_database_is_unauthorized),
        cmocka_unit_test(test_concurrent_readers_and_swaps),
        cmocka_unit_test(test_failure_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
