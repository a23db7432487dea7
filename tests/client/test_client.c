/*
 * alm_client without a server: option checking, a refused connection with retry, and the
 * fallback rules (cache stands in, fail-fast refuses it, a damaged cache is reported).
 */
#include "client_tests.h"

#include "internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A loopback URL on which nothing listens: bind port 0, note the port, close. */
static void closed_port_url(char *buf, size_t size)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    snprintf(buf, size, "http://127.0.0.1:%u", ntohs(a.sin_port));
    close(fd);
}

typedef struct log_capture {
    int warnings;
    int infos;
    int debugs;
    int lowest; /* the lowest level value received */
    char last[1024];
} log_capture;

static void capture_log(alm_log_level level, const char *message, void *payload)
{
    log_capture *c = payload;
    if (level == ALM_LOG_WARN)
        c->warnings++;
    if (level == ALM_LOG_INFO)
        c->infos++;
    if (level == ALM_LOG_DEBUG)
        c->debugs++;
    if (c->warnings + c->infos + c->debugs == 1 || (int)level < c->lowest)
        c->lowest = (int)level;
    snprintf(c->last, sizeof(c->last), "%s", message);
}

static void expect_invalid(const alm_client_options *opts, const char *needle)
{
    alm_client *c = (alm_client *)&needle;
    int rc = alm_client_new(&c, opts);
    if (rc != ALM_EINVALID)
        fail_msg("expected ALM_EINVALID for '%s', got %d", needle, rc);
    assert_null(c);
    if (strstr(alm_error_last()->message, needle) == NULL)
        fail_msg("message '%s' lacks '%s'", alm_error_last()->message, needle);
}

static void test_options(void **state)
{
    (void)state;
    alm_client_options opts = ALM_CLIENT_OPTIONS_INIT;
    assert_int_equal(opts.version, ALM_CLIENT_OPTIONS_VERSION);
    expect_invalid(NULL, "options are required");
    expect_invalid(&opts, "application name is required");

    opts.application = "orders";
    opts.server = "ftp://config:21";
    expect_invalid(&opts, "not http:// or https://");
    opts.server = "http://user:secret@config:8888";
    expect_invalid(&opts, "carries credentials");
    assert_null(strstr(alm_error_last()->message, "secret"));
    opts.server = " , ";
    expect_invalid(&opts, "no server URL");
    opts.server = "http://config:8888?x=1";
    expect_invalid(&opts, "query or fragment");
    opts.server = NULL;
    opts.token = "t";
    opts.password = "p";
    expect_invalid(&opts, "not both");
    opts.token = NULL;
    opts.password = NULL;
    opts.retry.multiplier = 0.5;
    expect_invalid(&opts, "multiplier");
    opts.retry.multiplier = 0;
    alm_retry_policy bad_watch = {0, 0, 0, 0.5, 0};
    opts.watch_retry = &bad_watch;
    expect_invalid(&opts, "watch_retry multiplier");
    opts.watch_retry = NULL;

    /* Found when the client is made, not as a 401 or a 404 at the first request. */
    opts.username = "svc";
    expect_invalid(&opts, "username 'svc' has no password");
    opts.username = NULL;
    opts.profiles = "prod,,eu";
    expect_invalid(&opts, "empty name");
    opts.profiles = "prod/eu";
    expect_invalid(&opts, "'/'");
    opts.profiles = NULL;
    opts.server = "http://:8888";
    expect_invalid(&opts, "not a valid URL");
    opts.server = "http://config:88x8";
    expect_invalid(&opts, "not a valid URL");
    opts.server = "http://con fig:8888";
    expect_invalid(&opts, "blank");
    opts.server = NULL;
    opts.log_level = (alm_log_level)9;
    expect_invalid(&opts, "log level");
    opts.log_level = ALM_LOG_DEFAULT;
    opts.version = 99;
    expect_invalid(&opts, "unknown options version 99");

    alm_client_options other;
    assert_int_equal(alm_client_options_init(&other, ALM_CLIENT_OPTIONS_VERSION), 0);
    assert_int_equal(other.version, ALM_CLIENT_OPTIONS_VERSION);
    assert_null(other.server);
    assert_int_equal(alm_client_options_init(&other, 99), ALM_EINVALID);
    assert_int_equal(alm_client_options_init(NULL, 1), ALM_EINVALID);

    /* Several servers, as an array and as a list; nothing is sent yet. */
    alm_client *c = NULL;
    const char *const servers[] = {"http://a:1/", "https://b:2", NULL};
    alm_client_options ok = ALM_CLIENT_OPTIONS_INIT;
    ok.application = "orders";
    ok.servers = servers;
    ok.label = "release/1.0";
    assert_int_equal(alm_client_new(&c, &ok), 0);
    alm_client_free(c);
    ok.servers = NULL;
    ok.server = "http://a:1, https://b:2/ ,";
    assert_int_equal(alm_client_new(&c, &ok), 0);
    alm_config *cfg = NULL;
    assert_int_equal(alm_client_poll(&cfg, c, "x", 0), ALM_EINVALID);
    assert_int_equal(alm_client_poll(&cfg, c, "x", 3601), ALM_EINVALID);
    assert_int_equal(alm_client_fetch(NULL, c), ALM_EINVALID);
    alm_client_free(c);
    alm_client_free(NULL);
}

typedef struct fixture {
    char *dir;
    char cache[1100];
    char url[64];
    log_capture log;
    alm_client_options opts;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    f->dir = test_mkdtemp();
    snprintf(f->cache, sizeof(f->cache), "%s/cache.json", f->dir);
    closed_port_url(f->url, sizeof(f->url));
    alm_client_options init = ALM_CLIENT_OPTIONS_INIT;
    f->opts = init;
    f->opts.server = f->url;
    f->opts.application = "orders";
    f->opts.profiles = "prod";
    f->opts.retry.max_attempts = 3;
    f->opts.retry.initial_backoff_ms = 1;
    f->opts.retry.max_backoff_ms = 2;
    f->opts.log_cb = capture_log;
    f->opts.log_payload = &f->log;
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

static const char cached_env[] =
    "{\"name\":\"orders\",\"profiles\":[\"prod\"],\"label\":null,\"version\":\"v1\","
    "\"state\":\"\",\"propertySources\":[{\"name\":\"orders-prod.yml\",\"source\":"
    "{\"db.pool.size\":12}}]}";

static void write_cache(const fixture *f)
{
    const alm__cache_key key = {"orders", "prod", NULL};
    assert_int_equal(alm__cache_write(f->cache, &key, cached_env, strlen(cached_env), "e1", 42), 0);
}

static int fetch(fixture *f, alm_config **cfg)
{
    alm_client *c = NULL;
    assert_int_equal(alm_client_new(&c, &f->opts), 0);
    int rc = alm_client_fetch(cfg, c);
    alm_client_free(c);
    return rc;
}

static void test_unreachable_without_cache(void **state)
{
    fixture *f = *state;
    alm_config *cfg = NULL;
    assert_int_equal(fetch(f, &cfg), ALM_ENETWORK);
    assert_null(cfg);
    assert_int_equal(alm_error_last()->code, ALM_ENETWORK);
    assert_non_null(strstr(alm_error_last()->message, f->url));
    assert_int_equal(f->log.warnings, 3); /* one per failed attempt */
    assert_int_equal(f->log.infos, 2);    /* one per pause between attempts */

    /* With a cache file configured but absent, the network error stands, and says so. */
    f->opts.cache_file = f->cache;
    assert_int_equal(fetch(f, &cfg), ALM_ENETWORK);
    assert_non_null(strstr(alm_error_last()->message, "no cache file"));
}

/* Profiles travel normalised: "prod, eu" is requested as prod,eu (seen in the error's URL). */
static void test_profiles_are_normalised(void **state)
{
    fixture *f = *state;
    alm_config *cfg = NULL;
    f->opts.profiles = " prod , eu ";
    f->opts.retry.max_attempts = 1;
    assert_int_equal(fetch(f, &cfg), ALM_ENETWORK);
    if (strstr(alm_error_last()->message, "/orders/prod%2Ceu") == NULL)
        fail_msg("%s", alm_error_last()->message);
}

/* Zero is not DEBUG: a zeroed level gives INFO and above; DEBUG has to be asked for. */
static void test_default_log_level_is_info(void **state)
{
    fixture *f = *state;
    alm_config *cfg = NULL;
    f->opts.retry.max_attempts = 2;
    assert_int_equal(f->opts.log_level, ALM_LOG_DEFAULT);
    assert_int_equal(fetch(f, &cfg), ALM_ENETWORK);
    assert_int_equal(f->log.debugs, 0);
    assert_true(f->log.infos > 0);

    memset(&f->log, 0, sizeof(f->log));
    f->opts.log_level = ALM_LOG_DEBUG;
    assert_int_equal(fetch(f, &cfg), ALM_ENETWORK);
    assert_true(f->log.debugs > 0); /* "GET http://…" per request */

    /* A caller built against version-1 options keeps its numbering: 0 was DEBUG, and the
     * callback receives 0 for a debug line. */
    memset(&f->log, 0, sizeof(f->log));
    f->opts.version = 1;
    f->opts.log_level = (alm_log_level)0;
    assert_int_equal(fetch(f, &cfg), ALM_ENETWORK);
    assert_int_equal(f->log.lowest, 0);
}

static void test_unreachable_with_cache(void **state)
{
    fixture *f = *state;
    write_cache(f);
    f->opts.cache_file = f->cache;
    alm_config *cfg = NULL;
    if (fetch(f, &cfg) != 0)
        fail_msg("%s", alm_error_last()->message);
    assert_int_equal(alm_config_is_stale(cfg), 1);
    assert_int_equal(alm_config_fetched_at(cfg), 42);
    int64_t n = 0;
    assert_int_equal(alm_config_get_int64(&n, cfg, "db.pool.size"), 0);
    assert_true(n == 12);
    assert_non_null(strstr(f->log.last, "using the configuration cached"));
    alm_config_free(cfg);
}

static void test_fail_fast_ignores_cache(void **state)
{
    fixture *f = *state;
    write_cache(f);
    f->opts.cache_file = f->cache;
    f->opts.fail_fast = 1;
    alm_config *cfg = NULL;
    assert_int_equal(fetch(f, &cfg), ALM_ENETWORK);
    assert_null(cfg);
}

static void test_damaged_cache_is_reported(void **state)
{
    fixture *f = *state;
    write_cache(f);
    size_t len;
    char *text = test_read_file(f->cache, &len);
    char *at = strstr(text, ":12}");
    assert_non_null(at);
    at[2] = '3';
    test_write_file(f->cache, text, len);
    free(text);
    f->opts.cache_file = f->cache;
    alm_config *cfg = NULL;
    assert_int_equal(fetch(f, &cfg), ALM_ECACHE);
    assert_null(cfg);
    assert_non_null(strstr(alm_error_last()->message, "checksum"));
    assert_non_null(strstr(alm_error_last()->message, f->url)); /* and why it was needed */

    /* Another application's cache cannot stand in either. */
    f->opts.application = "billing";
    write_cache(f);
    assert_int_equal(fetch(f, &cfg), ALM_ECACHE);
}

static void ignore_change(const alm_config *old_cfg, const alm_config *new_cfg,
                          const alm_diff *diff, void *payload)
{
    (void)old_cfg;
    (void)new_cfg;
    (void)diff;
    (*(int *)payload)++;
}

/*
 * A watch without a thread, against a closed port: it does nothing until the caller performs,
 * turns unreachable through alm_watch_perform alone (its log on this thread), waits out its
 * retry pause through alm_watch_timeout_ms, and after alm_watch_stop does nothing at all.
 */
static void test_event_loop_watch_lifecycle(void **state)
{
    fixture *f = *state;
    alm_client *c = NULL;
    alm_config *cfg = NULL;
    alm_watch *w = NULL;
    int changes = 0;
    assert_int_equal(alm_client_new(&c, &f->opts), 0);
    assert_int_equal(alm_config_parse(&cfg, cached_env, strlen(cached_env)), 0);
    alm_watch_options wopts = ALM_WATCH_OPTIONS_INIT;
    wopts.on_change = ignore_change;
    wopts.payload = &changes;

    wopts.manual_dispatch = 1;
    assert_int_equal(alm_watch_new(&w, c, cfg, &wopts), ALM_EINVALID);
    assert_null(w);
    wopts.manual_dispatch = 0;

    assert_int_equal(alm_watch_new(&w, c, cfg, &wopts), 0);
    int fd = alm_watch_fd(w);
    assert_true(fd >= 0);
    assert_int_equal(alm_watch_timeout_ms(w), 0); /* the first poll is due at once */
    assert_int_equal(alm_watch_dispatch(w), ALM_EINVALID);
    assert_int_equal(alm_watch_get_status(w), ALM_WATCH_FRESH);

    /* Nothing runs behind the caller's back: the status moves only through perform. */
    for (int rounds = 0; rounds < 1000 && alm_watch_get_status(w) == ALM_WATCH_FRESH; rounds++) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        long timeout = alm_watch_timeout_ms(w);
        poll(&pfd, 1, timeout < 0 || timeout > 1000 ? 1000 : (int)timeout);
        assert_true(alm_watch_perform(w) >= 0);
    }
    assert_int_equal(alm_watch_get_status(w), ALM_WATCH_UNREACHABLE);
    assert_true(f->log.warnings >= 1); /* "watch: server unreachable…", delivered here */
    assert_non_null(strstr(f->log.last, "server unreachable"));
    assert_int_equal(alm_watch_fd(w), fd);
    /* Paused before the next attempt: not due now (the default watch policy waits ~1 s). */
    assert_true(alm_watch_timeout_ms(w) > 0);
    assert_int_equal(changes, 0);
    assert_int_equal(alm_watch_wait_fresh(w, 50), ALM_ETIMEOUT);

    alm_watch_stop(w);
    assert_int_equal(alm_watch_fd(w), -1);
    assert_int_equal(alm_watch_timeout_ms(w), -1);
    assert_int_equal(alm_watch_perform(w), 0);
    alm_watch_free(w);

    /* The client is the caller's again, with its blocking calls. */
    alm_config *again = NULL;
    assert_int_equal(alm_client_fetch(&again, c), ALM_ENETWORK);
    alm_config_free(cfg);
    alm_client_free(c);

    /* alm_watch_perform and alm_watch_timeout_ms are for alm_watch_new's watches only. */
    assert_int_equal(alm_watch_perform(NULL), ALM_EINVALID);
    assert_int_equal(alm_watch_timeout_ms(NULL), -1);
}

int client_client_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options),
        cmocka_unit_test_setup_teardown(test_unreachable_without_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_with_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_profiles_are_normalised, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_log_level_is_info, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_fast_ignores_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_cache_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_loop_watch_lifecycle, setup, teardown),
    };
    return cmocka_run_group_tests_name("client_client", tests, NULL, NULL);
}
