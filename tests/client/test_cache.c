/*
 * The cache file: round trip, atomic replacement, mode 0600, and rejection of every kind of
 * damage (truncation, a changed byte, an edited date or ETag, a foreign file, a newer format,
 * another application's); version 1 files still read; killed writes' temporary files removed.
 */
#include "client_tests.h"

#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

static const char environment[] =
    "{\"name\":\"orders\",\"profiles\":[\"prod\"],\"label\":null,\"version\":\"abc123\","
    "\"state\":\"\",\"propertySources\":[{\"name\":\"orders-prod.yml\",\"source\":"
    "{\"db.url\":\"jdbc:pg://prod\",\"secret\":\"s3cr\\u00e9t\"}}]}";

static const alm__cache_key orders = {"orders", "prod", NULL};

void test_write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

char *test_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[1024];
    snprintf(tmpl, sizeof(tmpl), "%s/almanac-client-XXXXXX", base && *base ? base : "/tmp");
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    return strdup(dir);
}

void test_rmtree(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char sub[2048];
        snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
        struct stat st;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            test_rmtree(sub);
        else
            unlink(sub);
    }
    closedir(d);
    rmdir(path);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

typedef struct fixture {
    char *dir;
    char path[1100];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    f->dir = test_mkdtemp();
    snprintf(f->path, sizeof(f->path), "%s/orders.cache.json", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void write_good(const fixture *f)
{
    if (alm__cache_write(f->path, &orders, environment, strlen(environment), "etag-1",
                         1700000000) != 0)
        fail_msg("%s", alm_error_last()->message);
}

static void test_round_trip(void **state)
{
    fixture *f = *state;
    write_good(f);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(count_entries(f->dir), 1); /* no temporary file left behind */

    alm_config *cfg = NULL;
    if (alm__cache_read(&cfg, f->path, &orders) != 0)
        fail_msg("%s", alm_error_last()->message);
    assert_int_equal(alm_config_is_stale(cfg), 1);
    assert_string_equal(alm_config_etag(cfg), "etag-1");
    assert_int_equal(alm_config_fetched_at(cfg), 1700000000);
    assert_string_equal(alm_config_version(cfg), "abc123");
    const char *v = NULL;
    assert_int_equal(alm_config_get_string(&v, cfg, "secret"), 0);
    assert_string_equal(v, "s3cr\xc3\xa9t");
    alm_config_free(cfg);

    /* A second write replaces the first whole. */
    const char *other = "{\"propertySources\":[{\"name\":\"n\",\"source\":{\"k\":\"v2\"}}]}";
    assert_int_equal(alm__cache_write(f->path, &orders, other, strlen(other), NULL, 5), 0);
    assert_int_equal(alm__cache_read(&cfg, f->path, &orders), 0);
    assert_int_equal(alm_config_get_string(&v, cfg, "k"), 0);
    assert_string_equal(v, "v2");
    assert_null(alm_config_etag(cfg));
    assert_int_equal(alm_config_has(cfg, "db.url"), 0);
    alm_config_free(cfg);
    assert_int_equal(count_entries(f->dir), 1);
}

static void test_labels_must_match(void **state)
{
    fixture *f = *state;
    const alm__cache_key labelled = {"orders", "prod", "release/1.0"};
    assert_int_equal(
        alm__cache_write(f->path, &labelled, environment, strlen(environment), NULL, 1), 0);
    alm_config *cfg = NULL;
    assert_int_equal(alm__cache_read(&cfg, f->path, &labelled), 0);
    alm_config_free(cfg);
    assert_int_equal(alm__cache_read(&cfg, f->path, &orders), ALM_ECACHE);
    const alm__cache_key billing = {"billing", "prod", "release/1.0"};
    assert_int_equal(alm__cache_read(&cfg, f->path, &billing), ALM_ECACHE);
    assert_non_null(strstr(alm_error_last()->message, "another application"));
    const alm__cache_key dev = {"orders", "dev", "release/1.0"};
    assert_int_equal(alm__cache_read(&cfg, f->path, &dev), ALM_ECACHE);
    assert_null(cfg);
}

/* Replaces the first occurrence of `from` in the cache file by `to` (same JSON validity). */
static void edit_file(const fixture *f, const char *from, const char *to)
{
    size_t len;
    char *text = test_read_file(f->path, &len);
    char *at = strstr(text, from);
    assert_non_null(at);
    size_t flen = strlen(from), tlen = strlen(to);
    char *out = malloc(len - flen + tlen + 1);
    memcpy(out, text, (size_t)(at - text));
    memcpy(out + (at - text), to, tlen);
    memcpy(out + (at - text) + tlen, at + flen, len - (size_t)(at - text) - flen + 1);
    test_write_file(f->path, out, strlen(out));
    free(out);
    free(text);
}

static void expect_damaged(const fixture *f, const char *needle)
{
    alm_config *cfg = NULL;
    int rc = alm__cache_read(&cfg, f->path, &orders);
    if (rc != ALM_ECACHE)
        fail_msg("expected ALM_ECACHE, got %d (%s)", rc, alm_error_last()->message);
    assert_null(cfg);
    if (strstr(alm_error_last()->message, needle) == NULL)
        fail_msg("message '%s' lacks '%s'", alm_error_last()->message, needle);
    assert_non_null(strstr(alm_error_last()->message, f->path));
}

static void test_changed_byte(void **state)
{
    fixture *f = *state;
    write_good(f);
    edit_file(f, "jdbc:pg://prod", "jdbc:pg://evil");
    expect_damaged(f, "checksum");
}

static void test_truncated(void **state)
{
    fixture *f = *state;
    write_good(f);
    size_t len;
    char *text = test_read_file(f->path, &len);
    test_write_file(f->path, text, len / 2);
    free(text);
    expect_damaged(f, "damaged");
    test_write_file(f->path, "", 0);
    expect_damaged(f, "damaged");
}

static void test_foreign_and_newer(void **state)
{
    fixture *f = *state;
    const char *foreign = "{\"hello\":\"world\"}";
    test_write_file(f->path, foreign, strlen(foreign));
    expect_damaged(f, "not an almanac cache file");

    write_good(f);
    edit_file(f, "\"format_version\":2", "\"format_version\":3");
    expect_damaged(f, "format version 3");

    write_good(f);
    edit_file(f, "\"sha256\"", "\"sha257\"");
    expect_damaged(f, "fields missing");
}

/* Version 1 summed the Environment alone: an edited date made a stale copy look fresh. */
static void test_edited_date_or_etag(void **state)
{
    fixture *f = *state;
    write_good(f);
    edit_file(f, "\"fetched_at\":1700000000", "\"fetched_at\":1900000000");
    expect_damaged(f, "checksum");
    write_good(f);
    edit_file(f, "\"etag-1\"", "\"etag-2\"");
    expect_damaged(f, "checksum");
}

/* A file written by a library that wrote version 1 still stands in. */
static void test_reads_version_1(void **state)
{
    fixture *f = *state;
    char digest[65];
    assert_int_equal(alm__sha256_hex(digest, environment, strlen(environment)), 0);
    json_t *doc = json_pack("{s:s, s:i, s:s, s:s, s:n, s:s, s:I, s:s, s:s}", "format",
                            "almanac-cache", "format_version", 1, "application", "orders",
                            "profiles", "prod", "label", "etag", "etag-0", "fetched_at",
                            (json_int_t)1600000000, "sha256", digest, "environment", environment);
    char *text = json_dumps(doc, JSON_COMPACT);
    test_write_file(f->path, text, strlen(text));
    free(text);
    json_decref(doc);
    alm_config *cfg = NULL;
    if (alm__cache_read(&cfg, f->path, &orders) != 0)
        fail_msg("%s", alm_error_last()->message);
    assert_int_equal(alm_config_fetched_at(cfg), 1600000000);
    assert_string_equal(alm_config_etag(cfg), "etag-0");
    alm_config_free(cfg);
    /* and its Environment is still checked */
    edit_file(f, "jdbc:pg://prod", "jdbc:pg://evil");
    expect_damaged(f, "checksum");
}

static void make_file_aged(const fixture *f, const char *suffix, time_t age)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s%s", f->path, suffix);
    test_write_file(path, "partial", 7);
    struct utimbuf when = {time(NULL) - age, time(NULL) - age};
    assert_int_equal(utime(path, &when), 0);
}

static int exists_with(const fixture *f, const char *suffix)
{
    char path[1200];
    struct stat st;
    snprintf(path, sizeof(path), "%s%s", f->path, suffix);
    return stat(path, &st) == 0;
}

/* Writes killed between creating and renaming their temporary file left it behind. */
static void test_stale_temporary_files_removed(void **state)
{
    fixture *f = *state;
    make_file_aged(f, ".tmp-Ab12Cd", 3600);  /* a killed write's */
    make_file_aged(f, ".tmp-Xy98Zw", 0);     /* maybe another process writing right now */
    make_file_aged(f, ".tmp-notours", 3600); /* not mkostemp's pattern: not ours */
    write_good(f);
    assert_false(exists_with(f, ".tmp-Ab12Cd"));
    assert_true(exists_with(f, ".tmp-Xy98Zw"));
    assert_true(exists_with(f, ".tmp-notours"));
    assert_true(exists_with(f, ""));
}

/* A checksum that matches a payload that is not an Environment: still damaged, not "protocol". */
static void test_valid_checksum_bad_payload(void **state)
{
    fixture *f = *state;
    const char *junk = "[1,2,3]";
    assert_int_equal(alm__cache_write(f->path, &orders, junk, strlen(junk), NULL, 1), 0);
    expect_damaged(f, "damaged");
}

static void test_missing_and_unwritable(void **state)
{
    fixture *f = *state;
    alm_config *cfg = NULL;
    assert_int_equal(alm__cache_read(&cfg, f->path, &orders), ALM_ENOTFOUND);

    char bad[1200];
    snprintf(bad, sizeof(bad), "%s/no-such-dir/cache.json", f->dir);
    assert_int_equal(alm__cache_write(bad, &orders, environment, strlen(environment), NULL, 1),
                     ALM_ECACHE);
    assert_non_null(strstr(alm_error_last()->message, "no-such-dir"));

    /* A directory where the file should be: reported, never followed. */
    assert_int_equal(mkdir(f->path, 0700), 0);
    assert_int_equal(alm__cache_read(&cfg, f->path, &orders), ALM_ECACHE);
    assert_int_equal(alm__cache_write(f->path, &orders, environment, strlen(environment), NULL, 1),
                     ALM_ECACHE);
    assert_int_equal(count_entries(f->dir), 1); /* the temporary file was removed */
}

int client_cache_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_labels_must_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changed_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_and_newer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_valid_checksum_bad_payload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edited_date_or_etag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads_version_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_temporary_files_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_and_unwritable, setup, teardown),
    };
    return cmocka_run_group_tests_name("client_cache", tests, NULL, NULL);
}
