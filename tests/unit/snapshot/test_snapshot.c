/*
 * Unit tests for snapshot: a real repository's commits parsed into snapshots, reference
 * counting, the LRU bound, dir mode invalidation, and one build for concurrent misses.
 */
#include "environment/gitfix.h"

#include "log.h"
#include "compose/snapshot.h"

#include <pthread.h>

/* 300 bytes: over the 200-byte limit the repository is opened with */
#define BIG10 "0123456789"
#define BIG                                                                                        \
    BIG10 BIG10 BIG10 BIG10 BIG10 BIG10 BIG10 BIG10 BIG10 BIG10 BIG10 BIG10 BIG10 BIG10 BIG10      \
        BIG10 BIG10 BIG10 BIG10 BIG10 BIG10 BIG10 BIG10 BIG10 BIG10 BIG10 BIG10 BIG10 BIG10 BIG10

static char origin[512];
static char c1[REPO_COMMIT_HEX], c2[REPO_COMMIT_HEX], c3[REPO_COMMIT_HEX];
static repo *rp;

static int setup(void **state)
{
    if (gitfix_setup(state) != 0)
        return -1;
    log_configure(LOG_LEVEL_ERROR, LOG_FORMAT_TEXT);
    gitfix_init(origin, sizeof(origin));
    gitfix_write(origin, "application.yml",
                 "a: 1\nb:\n  c: [x, y]\n---\n"
                 "spring.config.activate.on-profile: dev\na: 2\n");
    gitfix_write(origin, "foo.properties", "p=q\n");
    gitfix_write(origin, "README.md", "not configuration\n");
    gitfix_write(origin, "sub/deeper/foo.yaml", "d: true\n");
    gitfix_write(origin, "a-c/x.txt", "x\n");
    gitfix_write(origin, "broken.yml", "ok: 1\nlist:\n  - a\n bad: [\n");
    gitfix_write(origin, "badexpr.yml",
                 "x: 1\n---\nspring.config.activate.on-profile: a & b | c\n"
                 "y: 2\n");
    gitfix_write(origin, "big.yml", "k: \"" BIG "\"\n");
    gitfix_commit(origin, c1);
    gitfix_write(origin, "foo.properties", "p=r\n");
    gitfix_commit(origin, c2);
    gitfix_write(origin, "bar.yml", "z: 1\n");
    gitfix_commit(origin, c3);
    rp = gitfix_open(origin, false, 200);
    return 0;
}

static int teardown(void **state)
{
    repo_free(rp);
    return gitfix_teardown(state);
}

static void test_build(void **state)
{
    snapshot *s = NULL;
    const snapshot_file *f;
    (void)state;

    assert_int_equal(snapshot_build(&s, rp, c1, NULL, NULL), 0);
    assert_string_equal(snapshot_commit(s), c1);
    /* Only configuration files, sorted by path. */
    assert_int_equal(snapshot_file_count(s), 6);
    assert_string_equal(snapshot_file_at(s, 0)->path, "application.yml");
    assert_null(snapshot_find(s, "README.md"));
    assert_null(snapshot_find(s, "nope.yml"));

    f = snapshot_find(s, "application.yml");
    assert_non_null(f);
    assert_false(f->failed);
    assert_int_equal(f->docs.count, 2);
    assert_string_equal(f->docs.docs[1].on_profile, "dev");
    assert_int_equal(json_integer_value(json_object_get(f->docs.docs[0].props, "a")), 1);
    assert_string_equal(json_string_value(json_object_get(f->docs.docs[0].props, "b.c[1]")), "y");

    f = snapshot_find(s, "foo.properties");
    assert_non_null(f);
    assert_string_equal(json_string_value(json_object_get(f->docs.docs[0].props, "p")), "q");
    f = snapshot_find(s, "sub/deeper/foo.yaml");
    assert_non_null(f);
    assert_true(json_is_true(json_object_get(f->docs.docs[0].props, "d")));

    /* A parse error is kept with its position; the rest of the commit still parses. */
    f = snapshot_find(s, "broken.yml");
    assert_non_null(f);
    assert_true(f->failed);
    assert_int_equal(f->docs.count, 0);
    assert_int_equal(f->error.line, 4);
    assert_true(f->error.message[0] != '\0');

    /* A malformed on-profile expression fails its file, positioned at the expression. */
    f = snapshot_find(s, "badexpr.yml");
    assert_non_null(f);
    assert_true(f->failed);
    assert_int_equal(f->error.line, 3);
    assert_non_null(strstr(f->error.message, "profile expression"));

    /* Over the repository's size limit: recorded as an error, not silently missing. */
    f = snapshot_find(s, "big.yml");
    assert_non_null(f);
    assert_true(f->failed);
    assert_non_null(strstr(f->error.message, "larger"));

    /* Directories in depth-first order, for wildcard search paths. */
    assert_int_equal(snapshot_dir_count(s), 3);
    assert_string_equal(snapshot_dir_at(s, 0), "a-c");
    assert_string_equal(snapshot_dir_at(s, 1), "sub");
    assert_string_equal(snapshot_dir_at(s, 2), "sub/deeper");
    assert_true(snapshot_has_dir(s, ""));
    assert_true(snapshot_has_dir(s, "a-c"));
    assert_true(snapshot_has_dir(s, "sub/deeper"));
    assert_false(snapshot_has_dir(s, "deeper"));
    assert_false(snapshot_has_dir(s, "sub/deeper/foo.yaml"));

    assert_ptr_equal(snapshot_retain(s), s);
    snapshot_release(s);
    snapshot_release(s);
    snapshot_release(NULL);
}

static void test_dir_order(void **state)
{
    char dir[512];
    repo *r;
    snapshot *s = NULL;
    (void)state;

    gitfix_mkdir(dir, sizeof(dir), "plain");
    gitfix_write(dir, "a/b/x.yml", "x: 1\n");
    gitfix_write(dir, "a-c/x.yml", "x: 1\n");
    gitfix_write(dir, "a/x.yml", "x: 1\n");
    gitfix_write(dir, "b.yml", "x: 1\n");
    r = gitfix_open(dir, true, 0);
    assert_int_equal(snapshot_build(&s, r, "", NULL, NULL), 0);
    assert_int_equal(snapshot_dir_count(s), 3);
    assert_string_equal(snapshot_dir_at(s, 0), "a");
    assert_string_equal(snapshot_dir_at(s, 1), "a/b");
    assert_string_equal(snapshot_dir_at(s, 2), "a-c");
    assert_string_equal(snapshot_commit(s), "");
    snapshot_release(s);
    repo_free(r);
}

static void test_cache_hit_and_lru(void **state)
{
    snapcache *c = NULL;
    snapshot *a = NULL, *a2 = NULL, *b = NULL, *d = NULL, *a3 = NULL;
    (void)state;

    assert_int_equal(snapcache_new(&c, 2, NULL), 0);
    assert_int_equal(snapcache_get(&a, c, rp, c1), 0);
    assert_int_equal(snapcache_get(&a2, c, rp, c1), 0);
    assert_ptr_equal(a, a2); /* a hit */
    assert_int_equal(snapcache_count(c), 1);
    assert_int_equal(snapcache_get(&b, c, rp, c2), 0);
    assert_ptr_not_equal(a, b);
    assert_string_equal(snapshot_commit(b), c2);
    /* c2 reuses c1's parses of the files that did not change (the broken one included, the one
     * over the size limit not: it has no digest), and parses the changed one. */
    assert_int_equal(snapshot_reused_count(a), 0);
    assert_int_equal(snapshot_reused_count(b), 4);
    assert_ptr_equal(snapshot_find(b, "application.yml")->docs.docs[1].props,
                     snapshot_find(a, "application.yml")->docs.docs[1].props);
    assert_string_equal(snapshot_find(b, "application.yml")->docs.docs[1].on_profile, "dev");
    assert_int_equal(snapshot_find(b, "application.yml")->docs.docs[1].index, 1);
    assert_true(snapshot_find(b, "broken.yml")->failed);
    assert_int_equal(snapshot_find(b, "broken.yml")->error.line, 4);
    assert_true(snapshot_find(b, "big.yml")->failed);
    assert_ptr_not_equal(snapshot_find(b, "foo.properties")->docs.docs[0].props,
                         snapshot_find(a, "foo.properties")->docs.docs[0].props);
    assert_string_equal(json_string_value(json_object_get(
                            snapshot_find(b, "foo.properties")->docs.docs[0].props, "p")),
                        "r");
    /* c2 is the most recent, so c3 evicts c1. */
    assert_int_equal(snapcache_get(&d, c, rp, c3), 0);
    assert_int_equal(snapcache_count(c), 2);
    assert_non_null(snapshot_find(d, "bar.yml"));
    /* The evicted snapshot is still valid for whoever holds it. */
    assert_string_equal(snapshot_commit(a), c1);
    assert_non_null(snapshot_find(a, "application.yml"));
    assert_int_equal(snapcache_get(&a3, c, rp, c1), 0);
    assert_ptr_not_equal(a3, a); /* rebuilt */
    assert_int_equal(snapcache_count(c), 2);

    snapshot_release(a);
    snapshot_release(a2);
    snapshot_release(a3);
    snapshot_release(b);
    snapshot_release(d);
    /* A hit refreshes recency: c3 and c1 are cached; touching c3 makes c1 the next to go. */
    assert_int_equal(snapcache_get(&d, c, rp, c3), 0);
    assert_int_equal(snapcache_get(&b, c, rp, c2), 0); /* evicts c1 */
    assert_int_equal(snapcache_get(&a, c, rp, c3), 0);
    assert_ptr_equal(a, d); /* c3 survived */
    snapshot_release(a);
    snapshot_release(b);
    snapshot_release(d);
    snapcache_free(c);
    snapcache_free(NULL);
}

static void test_cache_failure(void **state)
{
    snapcache *c = NULL;
    snapshot *s = (snapshot *)&s;
    (void)state;

    assert_int_equal(snapcache_new(&c, 4, NULL), 0);
    assert_true(snapcache_get(&s, c, rp, "0123456789012345678901234567890123456789") < 0);
    assert_null(s);
    assert_true(err_message()[0] != '\0');
    assert_int_equal(snapcache_count(c), 0); /* failures are not cached */
    snapcache_free(c);
}

typedef struct getter {
    pthread_barrier_t *barrier;
    snapcache *cache;
    const char *commit;
    snapshot *got;
    int error;
    char message[256];
} getter;

static void *get_thread(void *arg)
{
    getter *g = arg;
    pthread_barrier_wait(g->barrier);
    g->error = snapcache_get(&g->got, g->cache, rp, g->commit);
    snprintf(g->message, sizeof(g->message), "%s", err_message());
    return NULL;
}

/* Concurrent misses on a commit that cannot be built: every thread gets the error and its
 * message (the waiters from the one build), and nothing stays cached. */
static void test_concurrent_failure(void **state)
{
    enum { N = 4 };
    pthread_t threads[N];
    getter getters[N];
    pthread_barrier_t barrier;
    snapcache *c = NULL;
    (void)state;

    assert_int_equal(snapcache_new(&c, 4, NULL), 0);
    assert_int_equal(pthread_barrier_init(&barrier, NULL, N), 0);
    for (int i = 0; i < N; i++) {
        getters[i] = (getter){
            .barrier = &barrier, .cache = c, .commit = "0123456789012345678901234567890123456789"};
        assert_int_equal(pthread_create(&threads[i], NULL, get_thread, &getters[i]), 0);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    for (int i = 0; i < N; i++) {
        assert_true(getters[i].error < 0);
        assert_null(getters[i].got);
        assert_true(getters[i].message[0] != '\0');
    }
    assert_int_equal(snapcache_count(c), 0);
    pthread_barrier_destroy(&barrier);
    snapcache_free(c);
}

static void test_concurrent_misses(void **state)
{
    enum { N = 4 };
    pthread_t threads[N];
    getter getters[N];
    pthread_barrier_t barrier;
    snapcache *c = NULL;
    (void)state;

    for (int round = 0; round < 5; round++) {
        assert_int_equal(snapcache_new(&c, 4, NULL), 0);
        assert_int_equal(pthread_barrier_init(&barrier, NULL, N), 0);
        for (int i = 0; i < N; i++) {
            getters[i] = (getter){.barrier = &barrier, .cache = c, .commit = c2};
            assert_int_equal(pthread_create(&threads[i], NULL, get_thread, &getters[i]), 0);
        }
        for (int i = 0; i < N; i++)
            assert_int_equal(pthread_join(threads[i], NULL), 0);
        /* One build: every thread holds the very same snapshot. */
        for (int i = 0; i < N; i++) {
            assert_int_equal(getters[i].error, 0);
            assert_ptr_equal(getters[i].got, getters[0].got);
        }
        assert_int_equal(snapcache_count(c), 1);
        for (int i = 0; i < N; i++)
            snapshot_release(getters[i].got);
        pthread_barrier_destroy(&barrier);
        snapcache_free(c);
    }
}

static void test_dir_mode_invalidate(void **state)
{
    char dir[512];
    repo *r;
    snapcache *c = NULL;
    snapshot *s1 = NULL, *s2 = NULL, *s3 = NULL;
    (void)state;

    gitfix_mkdir(dir, sizeof(dir), "native");
    gitfix_write(dir, "application.yml", "a: 1\n");
    r = gitfix_open(dir, true, 0);
    assert_int_equal(snapcache_new(&c, 2, NULL), 0);
    assert_int_equal(snapcache_get(&s1, c, r, ""), 0);
    gitfix_write(dir, "foo.yml", "f: 1\n");
    assert_int_equal(snapcache_get(&s2, c, r, ""), 0);
    assert_ptr_equal(s1, s2); /* kept until a refresh */
    assert_null(snapshot_find(s2, "foo.yml"));
    snapcache_invalidate(c);
    assert_int_equal(snapcache_count(c), 0);
    assert_int_equal(snapcache_get(&s3, c, r, ""), 0);
    assert_ptr_not_equal(s3, s1);
    assert_non_null(snapshot_find(s3, "foo.yml"));
    /* The rebuild reused the unchanged file's parse from the invalidated snapshot. */
    assert_int_equal(snapshot_reused_count(s3), 1);
    assert_ptr_equal(snapshot_find(s3, "application.yml")->docs.docs[0].props,
                     snapshot_find(s1, "application.yml")->docs.docs[0].props);
    assert_null(snapshot_find(s1, "foo.yml")); /* the old one is unchanged */
    snapshot_release(s1);
    snapshot_release(s2);
    snapshot_release(s3);
    snapcache_free(c);
    repo_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_dir_order),
        cmocka_unit_test(test_cache_hit_and_lru),
        cmocka_unit_test(test_cache_failure),
        cmocka_unit_test(test_concurrent_misses),
        cmocka_unit_test(test_concurrent_failure),
        cmocka_unit_test(test_dir_mode_invalidate),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
