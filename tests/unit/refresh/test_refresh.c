/*
 * Unit tests for refresh's announcement: real Git repositories (and a plain directory for dir
 * mode) refreshed through refresh_now, with listeners subscribed as main.c subscribes its own.
 * What is asserted is what the listeners heard: how often, in which order, and what.
 */
#include "environment/gitfix.h"

#include "change/announce.h"
#include "change/refresh.h"
#include "compose/snapshot.h"
#include "log.h"

#include <jansson.h>

#define HEARD_MAX 8

typedef struct heard {
    char from[REPO_COMMIT_HEX], to[REPO_COMMIT_HEX];
    char *label;       /* NULL: the default label */
    bool versioned;
    json_t *applications; /* a copy; NULL if the notice had none */
} heard;

typedef struct ear {
    heard notices[HEARD_MAX];
    size_t count;
    char order[HEARD_MAX * 2 + 1]; /* one letter per call, listener by listener */
} ear;

static void record(ear *e, const change_notice *n)
{
    assert_true(e->count < HEARD_MAX);
    heard *h = &e->notices[e->count++];
    assert_string_equal(n->repository, "");
    snprintf(h->from, sizeof(h->from), "%s", n->from);
    snprintf(h->to, sizeof(h->to), "%s", n->to);
    h->label = n->label ? strdup(n->label) : NULL;
    h->versioned = n->versioned;
    h->applications = n->applications ? json_deep_copy(n->applications) : NULL;
}

static void first_listener(void *ctx, const change_notice *n)
{
    ear *e = ctx;
    record(e, n);
    strcat(e->order, "a");
}

static void second_listener(void *ctx, const change_notice *n)
{
    (void)n;
    strcat(((ear *)ctx)->order, "b");
}

static void ear_dispose(ear *e)
{
    for (size_t i = 0; i < e->count; i++) {
        free(e->notices[i].label);
        json_decref(e->notices[i].applications);
    }
    memset(e, 0, sizeof(*e));
}

/* What refresh is handed: the source, its snapshots, the announcer; no server around it. */
typedef struct rig {
    refresh_deps deps;
    snapcache *snapshots;
    change_announcer *changes;
} rig;

static void server_up(rig *srv, repo *r, ear *e)
{
    memset(srv, 0, sizeof(*srv));
    assert_int_equal(snapcache_new(&srv->snapshots, 4, NULL), 0);
    assert_int_equal(change_announcer_new(&srv->changes), 0);
    assert_int_equal(change_subscribe(srv->changes, first_listener, e), 0);
    assert_int_equal(change_subscribe(srv->changes, second_listener, e), 0);
    srv->deps.repo = r;
    srv->deps.snapshots = srv->snapshots;
    srv->deps.changes = srv->changes;
}

static void server_down(rig *srv)
{
    change_announcer_free(srv->changes);
    snapcache_free(srv->snapshots);
    repo_free(srv->deps.repo);
}

static void assert_names(const json_t *names, const char *expected)
{
    assert_non_null(names);
    char *text = json_dumps(names, JSON_COMPACT);
    assert_string_equal(text, expected);
    free(text);
}

static void git_commit_is_announced_once_to_each_listener_in_order(void **state)
{
    char origin[512], c1[REPO_COMMIT_HEX], c2[REPO_COMMIT_HEX];
    rig srv;
    ear e = {0};
    refresh_result result;
    (void)state;

    gitfix_init(origin, sizeof(origin));
    gitfix_write(origin, "application.yml", "a: 1\n");
    gitfix_write(origin, "orders.yml", "o: 1\n");
    gitfix_commit(origin, c1);
    server_up(&srv, gitfix_open(origin, false, 0), &e);

    /* Nothing new at the remote: nobody hears anything. */
    assert_int_equal(refresh_now(&srv.deps, &result), 0);
    assert_false(result.changed);
    assert_int_equal(e.count, 0);

    gitfix_write(origin, "orders.yml", "o: 2\n");
    gitfix_commit(origin, c2);
    assert_int_equal(refresh_now(&srv.deps, &result), 0);
    assert_true(result.changed);
    assert_string_equal(result.version, c2);
    assert_int_equal(e.count, 1);
    assert_string_equal(e.order, "ab");
    assert_string_equal(e.notices[0].from, c1);
    assert_string_equal(e.notices[0].to, c2);
    assert_null(e.notices[0].label);
    assert_true(e.notices[0].versioned);
    assert_names(e.notices[0].applications, "[\"orders\"]");

    ear_dispose(&e);
    server_down(&srv);
}

static void another_ref_moving_is_announced_without_applications(void **state)
{
    char origin[512], c1[REPO_COMMIT_HEX], cfeat[REPO_COMMIT_HEX];
    rig srv;
    ear e = {0};
    refresh_result result;
    (void)state;

    gitfix_init(origin, sizeof(origin));
    gitfix_write(origin, "orders.yml", "o: 1\n");
    gitfix_commit(origin, c1);
    server_up(&srv, gitfix_open(origin, false, 0), &e);

    /* A new branch: the default label stays where it was, a watcher of the branch cares. */
    gitfix_sh("git -C '%s' checkout -q -b feature && git -C '%s' rm -q orders.yml", origin,
              origin);
    gitfix_commit(origin, cfeat);
    assert_int_equal(refresh_now(&srv.deps, &result), 0);
    assert_true(result.changed);
    assert_int_equal(e.count, 1);
    assert_string_equal(e.notices[0].from, c1);
    assert_string_equal(e.notices[0].to, c1);
    assert_null(e.notices[0].applications);

    ear_dispose(&e);
    server_down(&srv);
}

static void dir_mode_announces_edits_that_change_what_is_parsed(void **state)
{
    char dir[512];
    rig srv;
    ear e = {0};
    refresh_result result;
    (void)state;

    gitfix_mkdir(dir, sizeof(dir), "native");
    gitfix_write(dir, "application.yml", "a: 1\n");
    gitfix_write(dir, "orders-api.yml", "o: 1\n");
    server_up(&srv, gitfix_open(dir, true, 0), &e);

    /* A rescan that finds nothing new announces nothing. */
    assert_int_equal(refresh_now(&srv.deps, &result), 0);
    assert_false(result.changed);
    assert_int_equal(e.count, 0);

    /* A comment changes no parsed value: still nothing. */
    gitfix_write(dir, "orders-api.yml", "# a comment\no: 1\n");
    assert_int_equal(refresh_now(&srv.deps, &result), 0);
    assert_false(result.changed);
    assert_int_equal(e.count, 0);

    gitfix_write(dir, "orders-api.yml", "o: 2\n");
    assert_int_equal(refresh_now(&srv.deps, &result), 0);
    assert_true(result.changed);
    assert_int_equal(e.count, 1);
    assert_string_equal(e.order, "ab");
    assert_false(e.notices[0].versioned);
    assert_string_equal(e.notices[0].from, "");
    assert_string_equal(e.notices[0].to, "");
    assert_names(e.notices[0].applications, "[\"orders-api\",\"orders\"]");

    /* A removed file names its application too. */
    gitfix_sh("rm '%s/orders-api.yml'", dir);
    assert_int_equal(refresh_now(&srv.deps, &result), 0);
    assert_int_equal(e.count, 2);
    assert_names(e.notices[1].applications, "[\"orders-api\",\"orders\"]");

    ear_dispose(&e);
    server_down(&srv);
}

/* A listener subscribed later hears the notices from then on, with the same fields. */
static void a_listener_added_later_hears_what_follows(void **state)
{
    char origin[512], c1[REPO_COMMIT_HEX], c2[REPO_COMMIT_HEX], c3[REPO_COMMIT_HEX];
    rig srv;
    ear e = {0}, late = {0};
    refresh_result result;
    (void)state;

    gitfix_init(origin, sizeof(origin));
    gitfix_write(origin, "orders.yml", "o: 1\n");
    gitfix_write(origin, "billing.yml", "b: 1\n");
    gitfix_commit(origin, c1);
    server_up(&srv, gitfix_open(origin, false, 0), &e);

    gitfix_write(origin, "orders.yml", "o: 2\n");
    gitfix_commit(origin, c2);
    assert_int_equal(refresh_now(&srv.deps, &result), 0);
    assert_int_equal(change_subscribe(srv.changes, first_listener, &late), 0);
    gitfix_write(origin, "billing.yml", "b: 2\n");
    gitfix_commit(origin, c3);
    assert_int_equal(refresh_now(&srv.deps, &result), 0);

    assert_int_equal(e.count, 2);
    assert_string_equal(e.order, "abab");
    assert_int_equal(late.count, 1);
    assert_string_equal(late.order, "a");
    assert_string_equal(late.notices[0].from, c2);
    assert_string_equal(late.notices[0].to, c3);
    assert_names(late.notices[0].applications, "[\"billing\"]");
    assert_string_equal(e.notices[1].to, c3);

    ear_dispose(&e);
    ear_dispose(&late);
    server_down(&srv);
}

static void nobody_listening(void *ctx, const change_notice *n)
{
    (void)ctx;
    (void)n;
    fail_msg("called after the list was full");
}

static void the_listener_list_is_bounded(void **state)
{
    change_announcer *a = NULL;
    ear e = {0};
    change_notice n = {.repository = "", .from = "", .to = "", .versioned = true};
    (void)state;

    assert_int_equal(change_announcer_new(&a), 0);
    for (int i = 0; i < CHANGE_MAX_LISTENERS; i++)
        assert_int_equal(change_subscribe(a, second_listener, &e), 0);
    assert_true(change_subscribe(a, nobody_listening, NULL) < 0);
    change_announce(a, &n);
    assert_int_equal(strlen(e.order), CHANGE_MAX_LISTENERS);
    change_announce(NULL, &n); /* nobody subscribed at all: a no-op */
    change_announcer_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(git_commit_is_announced_once_to_each_listener_in_order),
        cmocka_unit_test(another_ref_moving_is_announced_without_applications),
        cmocka_unit_test(dir_mode_announces_edits_that_change_what_is_parsed),
        cmocka_unit_test(a_listener_added_later_hears_what_follows),
        cmocka_unit_test(the_listener_list_is_bounded),
    };
    log_configure(LOG_LEVEL_ERROR, LOG_FORMAT_TEXT);
    return cmocka_run_group_tests(tests, gitfix_setup, gitfix_teardown);
}
