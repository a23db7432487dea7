/*
 * Unit tests of settings: every source (defaults, config file, environment, flags) and their
 * precedence, every value type with its bounds, and the exact error texts users see.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "settings.h"

#define MAX_ARGS 32

static char tmpdir[256];
static char errbuf[512];

static int make_tmpdir(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/settings-test-XXXXXX",
             base != NULL && base[0] != '\0' ? base : "/tmp");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes content to tmpdir/name and returns the path (static storage, one per slot). */
static const char *write_file(const char *name, const char *content)
{
    static char paths[4][512];
    static int next;
    char *path = paths[next++ % 4];
    snprintf(path, 512, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, strlen(content), f), strlen(content));
    assert_int_equal(fclose(f), 0);
    return path;
}

/*
 * Loads with argv from a NULL-terminated list (argv[0] added here) and the given synthetic
 * environment (never the test process's own).
 */
static int load_args(settings *s, const char *const *env, const char *const *args)
{
    char **envp = (char **)(uintptr_t)env;
    char *argv[MAX_ARGS] = {(char *)(uintptr_t) "almanac-server"};
    int argc = 1;
    for (; args != NULL && args[argc - 1] != NULL; argc++) {
        assert_true(argc < MAX_ARGS);
        argv[argc] = (char *)(uintptr_t)args[argc - 1];
    }
    err_clear();
    int rc = settings_load(s, argc, argv, envp);
    /* The message is err.h's, per thread; a success leaves none behind here. */
    snprintf(errbuf, sizeof(errbuf), "%s", rc < 0 ? err_message() : "");
    if (rc < 0)
        assert_int_equal(err_last_code(), rc);
    return rc;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define ENV(...) ((const char *const[]){__VA_ARGS__, NULL})

static const char *const empty_env[] = {NULL};

static void expect_error(const char *const *envp, const char *const *args, const char *message)
{
    settings s;
    memset(&s, 0xa5, sizeof(s));
    assert_int_equal(load_args(&s, envp, args), ERR_CONFIG);
    assert_string_equal(errbuf, message);
    /* All or nothing: whatever was filled before the error is gone. */
    settings zero = {0};
    assert_memory_equal(&s, &zero, sizeof(s));
}

static void expect_error_prefix(const char *const *envp, const char *const *args,
                                const char *prefix)
{
    settings s;
    assert_int_equal(load_args(&s, envp, args), ERR_CONFIG);
    if (strncmp(errbuf, prefix, strlen(prefix)) != 0)
        fail_msg("error \"%s\" does not start with \"%s\"", errbuf, prefix);
}

static void test_defaults(void **state)
{
    (void)state;
    settings s;
    assert_int_equal(load_args(&s, ENV("HOME=/home/u"), ARGS("--repo", "file:///srv/config")), 0);
    assert_string_equal(errbuf, "");
    assert_string_equal(s.repo, "file:///srv/config");
    assert_int_equal(s.port, 8888);
    assert_string_equal(s.listen, "0.0.0.0");
    assert_string_equal(s.cache_dir, "/home/u/.cache/almanac");
    assert_null(s.default_label);
    assert_null(s.search_paths);
    assert_int_equal(s.refresh_interval, 30);
    assert_null(s.encrypt_key_file);
    assert_string_equal(s.encrypt_salt, "deadbeef");
    assert_null(s.encrypt_rsa_key_file);
    assert_null(s.encrypt_keys_dir);
    assert_string_equal(s.encrypt_format, "almanac");
    assert_null(s.auth_file);
    assert_null(s.tls_cert);
    assert_null(s.tls_key);
    assert_null(s.webhook_secret);
    assert_null(s.overrides_file);
    assert_string_equal(s.log_format, "text");
    assert_string_equal(s.log_level, "info");
    assert_null(s.config_file);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(s.threads, cpus < 1 ? 1 : cpus > 1024 ? 1024 : cpus);
    assert_int_equal(s.max_connections, 16384);
    assert_int_equal(s.max_connections_per_ip, 256);
    assert_int_equal(s.max_watchers_per_ip, 1024);
    assert_int_equal(s.idle_timeout, 60);
    assert_int_equal(s.max_header_bytes, 36u << 10);
    assert_int_equal(s.auth_failures_per_minute, 30);
    assert_int_equal(s.max_body_bytes, 1u << 20);
    assert_int_equal(s.max_file_bytes, 4u << 20);
    assert_int_equal(s.snapshot_cache, 16);
    assert_int_equal(s.response_cache_bytes, 64u << 20);
    assert_int_equal(s.watch_timeout_max, 300);
    settings_dispose(&s);
}

static void test_cache_dir_default(void **state)
{
    (void)state;
    settings s;
    assert_int_equal(
        load_args(&s, ENV("HOME=/home/u", "XDG_CACHE_HOME=/var/xdg"), ARGS("--repo", "r")), 0);
    assert_string_equal(s.cache_dir, "/var/xdg/almanac");
    settings_dispose(&s);

    /* The XDG spec says a relative XDG_CACHE_HOME is invalid and to be ignored. */
    assert_int_equal(load_args(&s, ENV("XDG_CACHE_HOME=rel", "HOME=/h"), ARGS("--repo", "r")), 0);
    assert_string_equal(s.cache_dir, "/h/.cache/almanac");
    settings_dispose(&s);

    assert_int_equal(load_args(&s, ENV("HOME="), ARGS("--repo", "r")), 0);
    assert_string_equal(s.cache_dir, "/tmp/almanac-cache");
    settings_dispose(&s);

    assert_int_equal(load_args(&s, ENV("HOME=/h"), ARGS("--repo", "r", "--cache-dir", "/c")), 0);
    assert_string_equal(s.cache_dir, "/c");
    settings_dispose(&s);
}

static void test_precedence(void **state)
{
    (void)state;
    settings s;
    const char *file = write_file("prec.yml", "repo: file:///from-file\n"
                                              "port: 1001\n"
                                              "listen: 10.0.0.1\n"
                                              "log-level: debug\n"
                                              "refresh-interval: 5\n");
    char config_env[600];
    snprintf(config_env, sizeof(config_env), "ALMANAC_CONFIG=%s", file);

    /* file alone over defaults */
    assert_int_equal(load_args(&s, ENV(config_env), NULL), 0);
    assert_string_equal(s.repo, "file:///from-file");
    assert_int_equal(s.port, 1001);
    assert_string_equal(s.listen, "10.0.0.1");
    assert_string_equal(s.log_level, "debug");
    assert_int_equal(s.refresh_interval, 5);
    assert_string_equal(s.config_file, file);
    settings_dispose(&s);

    /* environment over file, flags over environment */
    assert_int_equal(load_args(&s,
                               ENV(config_env, "ALMANAC_PORT=1002", "ALMANAC_LISTEN=10.0.0.2",
                                   "ALMANAC_REPO=file:///from-env"),
                               ARGS("--port", "1003")),
                     0);
    assert_int_equal(s.port, 1003);
    assert_string_equal(s.listen, "10.0.0.2");
    assert_string_equal(s.repo, "file:///from-env");
    assert_string_equal(s.log_level, "debug");
    assert_int_equal(s.refresh_interval, 5);
    settings_dispose(&s);

    /* --config chooses the file over ALMANAC_CONFIG */
    const char *other = write_file("other.yml", "repo: other\nport: 2001\n");
    assert_int_equal(load_args(&s, ENV(config_env), ARGS("--config", other)), 0);
    assert_string_equal(s.repo, "other");
    assert_int_equal(s.port, 2001);
    assert_int_equal(s.refresh_interval, 30);
    assert_string_equal(s.config_file, other);
    settings_dispose(&s);

    /* the last of repeated flags wins */
    assert_int_equal(
        load_args(&s, empty_env, ARGS("--repo", "a", "--repo=b", "--port", "1", "--port", "2")), 0);
    assert_string_equal(s.repo, "b");
    assert_int_equal(s.port, 2);
    settings_dispose(&s);
}

static void test_equals_form(void **state)
{
    (void)state;
    settings s;
    assert_int_equal(load_args(&s, empty_env,
                               ARGS("--repo=https://git.example/c.git", "--port=9000",
                                    "--search-paths={application},shared", "--encrypt-salt=00ff",
                                    "--default-label=release=1")),
                     0);
    assert_string_equal(s.repo, "https://git.example/c.git");
    assert_int_equal(s.port, 9000);
    assert_string_equal(s.search_paths, "{application},shared");
    assert_string_equal(s.encrypt_salt, "00ff");
    assert_string_equal(s.default_label, "release=1"); /* only the first '=' splits */
    settings_dispose(&s);

    /* an empty optional string unsets it; a required one refuses */
    assert_int_equal(
        load_args(&s, empty_env, ARGS("--repo=r", "--default-label=x", "--default-label=")), 0);
    assert_null(s.default_label);
    settings_dispose(&s);
    expect_error(empty_env, ARGS("--repo=r", "--listen="), "--listen: must not be empty");
    expect_error(empty_env, ARGS("--repo", ""), "--repo: must not be empty");
}

static void test_uint(void **state)
{
    (void)state;
    settings s;
    assert_int_equal(load_args(&s, empty_env, ARGS("--repo=r", "--port=0")), 0);
    assert_int_equal(s.port, 0);
    settings_dispose(&s);
    assert_int_equal(load_args(&s, empty_env,
                               ARGS("--repo=r", "--port=65535", "--threads=1024",
                                    "--refresh-interval=0", "--max-connections=1000000",
                                    "--snapshot-cache=1", "--watch-timeout-max=86400",
                                    "--max-connections-per-ip=1", "--max-watchers-per-ip=7",
                                    "--idle-timeout=86400", "--max-header-bytes=1M",
                                    "--auth-failures-per-minute=0")),
                     0);
    assert_int_equal(s.auth_failures_per_minute, 0);
    assert_int_equal(s.max_connections_per_ip, 1);
    assert_int_equal(s.max_watchers_per_ip, 7);
    assert_int_equal(s.idle_timeout, 86400);
    assert_int_equal(s.max_header_bytes, 1u << 20);
    assert_int_equal(s.port, 65535);
    assert_int_equal(s.threads, 1024);
    assert_int_equal(s.refresh_interval, 0);
    assert_int_equal(s.max_connections, 1000000);
    assert_int_equal(s.snapshot_cache, 1);
    assert_int_equal(s.watch_timeout_max, 86400);
    settings_dispose(&s);

    static const char *const bad_ports[] = {
        "abc", "65536", "-1", "+1", " 1", "1 ", "1x", "0x10", "1.0", "99999999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad_ports) / sizeof(bad_ports[0]); i++) {
        char want[256];
        snprintf(want, sizeof(want), "--port: \"%s\" is not a number between 0 and 65535",
                 bad_ports[i]);
        expect_error(empty_env, ARGS("--repo=r", "--port", bad_ports[i]), want);
    }
    expect_error(empty_env, ARGS("--repo=r", "--port="),
                 "--port: \"\" is not a number between 0 and 65535");
    expect_error(empty_env, ARGS("--repo=r", "--threads=0"),
                 "--threads: \"0\" is not a number between 1 and 1024");
    expect_error(empty_env, ARGS("--repo=r", "--threads=1025"),
                 "--threads: \"1025\" is not a number between 1 and 1024");
    expect_error(empty_env, ARGS("--repo=r", "--snapshot-cache=0"),
                 "--snapshot-cache: \"0\" is not a number between 1 and 1024");
    expect_error(empty_env, ARGS("--repo=r", "--watch-timeout-max=86401"),
                 "--watch-timeout-max: \"86401\" is not a number between 1 and 86400");
    expect_error(empty_env, ARGS("--repo=r", "--refresh-interval=86401"),
                 "--refresh-interval: \"86401\" is not a number between 0 and 86400");
    expect_error(empty_env, ARGS("--repo=r", "--max-connections=0"),
                 "--max-connections: \"0\" is not a number between 1 and 1000000");
}

static void test_size(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t bytes;
    } good[] = {{"1024", 1024},   {"1k", 1024},          {"1K", 1024},
                {"3m", 3u << 20}, {"4M", 4u << 20},      {"1G", 1u << 30},
                {"1g", 1u << 30}, {"1048576", 1u << 20}, {"0001k", 1024}};
    settings s;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(
            load_args(&s, empty_env, ARGS("--repo=r", "--max-body-bytes", good[i].text)), 0);
        assert_int_equal(s.max_body_bytes, good[i].bytes);
        settings_dispose(&s);
    }
    assert_int_equal(load_args(&s, empty_env,
                               ARGS("--repo=r", "--response-cache-bytes=0", "--max-file-bytes=1G")),
                     0);
    assert_int_equal(s.response_cache_bytes, 0);
    assert_int_equal(s.max_file_bytes, 1u << 30);
    settings_dispose(&s);
    if (sizeof(size_t) >= 8) {
        assert_int_equal(load_args(&s, empty_env, ARGS("--repo=r", "--response-cache-bytes=64G")),
                         0);
        assert_true(s.response_cache_bytes == (size_t)64 << 30);
        settings_dispose(&s);
        expect_error(empty_env, ARGS("--repo=r", "--response-cache-bytes=65G"),
                     "--response-cache-bytes: \"65G\" is not a size between 0 and 64G (bytes, "
                     "or with k, M, G)");
    }

    static const char *const bad[] = {"1023", "2G",  "1025M", "1T", "k",  "1.5M",
                                      "-1k",  "1kB", "1 k",   "",   "M1", "99999999999999999999G"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char want[256];
        snprintf(want, sizeof(want),
                 "--max-body-bytes: \"%s\" is not a size between 1k and 1G (bytes, or with k, "
                 "M, G)",
                 bad[i]);
        expect_error(empty_env, ARGS("--repo=r", "--max-body-bytes", bad[i]), want);
    }
}

static void test_enum(void **state)
{
    (void)state;
    settings s;
    assert_int_equal(load_args(&s, empty_env,
                               ARGS("--repo=r", "--log-format=JSON", "--log-level", "Warn",
                                    "--encrypt-format", "spring")),
                     0);
    assert_string_equal(s.log_format, "json"); /* stored as spelled in the table */
    assert_string_equal(s.log_level, "warn");
    assert_string_equal(s.encrypt_format, "spring");
    settings_dispose(&s);
    expect_error(empty_env, ARGS("--repo=r", "--log-format=xml"),
                 "--log-format: \"xml\" is not one of text, json");
    expect_error(empty_env, ARGS("--repo=r", "--log-level="),
                 "--log-level: \"\" is not one of debug, info, warn, error");
    expect_error(empty_env, ARGS("--repo=r", "--encrypt-format", "jasypt"),
                 "--encrypt-format: \"jasypt\" is not one of almanac, spring");
}

static void test_hex(void **state)
{
    (void)state;
    settings s;
    assert_int_equal(load_args(&s, empty_env, ARGS("--repo=r", "--encrypt-salt=00FFaa")), 0);
    assert_string_equal(s.encrypt_salt, "00FFaa");
    settings_dispose(&s);
    static const char *const bad[] = {"abc", "zz", "", "de ad", "0x00"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char want[256];
        snprintf(want, sizeof(want),
                 "--encrypt-salt: \"%s\" is not an even-length hex string of at most 256 digits",
                 bad[i]);
        expect_error(empty_env, ARGS("--repo=r", "--encrypt-salt", bad[i]), want);
    }
}

static void test_strings_and_limits(void **state)
{
    (void)state;
    settings s;
    assert_int_equal(
        load_args(&s, empty_env,
                  ARGS("--repo", "dir:/srv/cfg", "--encrypt-key-file", "/k/key",
                       "--encrypt-rsa-key-file", "/k/rsa.pem", "--encrypt-keys-dir", "/k/keys",
                       "--auth-file", "/a.yml", "--tls-cert", "/c.pem", "--tls-key", "/k.pem",
                       "--webhook-secret", "/w", "--overrides-file", "/o.properties")),
        0);
    assert_string_equal(s.repo, "dir:/srv/cfg");
    assert_string_equal(s.encrypt_key_file, "/k/key");
    assert_string_equal(s.encrypt_rsa_key_file, "/k/rsa.pem");
    assert_string_equal(s.encrypt_keys_dir, "/k/keys");
    assert_string_equal(s.auth_file, "/a.yml");
    assert_string_equal(s.tls_cert, "/c.pem");
    assert_string_equal(s.tls_key, "/k.pem");
    assert_string_equal(s.webhook_secret, "/w");
    assert_string_equal(s.overrides_file, "/o.properties");
    settings_dispose(&s);

    expect_error(empty_env, ARGS("--repo=r", "--tls-cert=/c.pem"),
                 "--tls-cert and --tls-key go together: give both or neither");

    /* A value past the cap is refused, and errors never repeat more than a short prefix. */
    char *long_value = malloc(5000);
    assert_non_null(long_value);
    memset(long_value, 'a', 4999);
    long_value[4999] = '\0';
    expect_error(empty_env, ARGS("--repo", long_value), "--repo: value is longer than 4096 bytes");
    long_value[100] = '\0';
    expect_error(empty_env, ARGS("--repo=r", "--port", long_value),
                 "--port: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" "
                 "is not a number between 0 and 65535");
    free(long_value);
    expect_error(empty_env, ARGS("--repo=r", "--port", "1\n2\x1b"),
                 "--port: \"1?2?\" is not a number between 0 and 65535");
}

static void test_flag_errors(void **state)
{
    (void)state;
    expect_error(empty_env, ARGS("--repo=r", "--bogus", "1"), "unknown flag --bogus");
    expect_error(empty_env, ARGS("--repo=r", "--bogus=1"), "unknown flag --bogus");
    /* a near miss gets a hint */
    expect_error(empty_env, ARGS("--repo=r", "--Port=1"),
                 "unknown flag --Port (did you mean --port?)");
    expect_error(empty_env, ARGS("--repo=r", "--cache_dir=/x"),
                 "unknown flag --cache_dir (did you mean --cache-dir?)");
    expect_error(empty_env, ARGS("--repo=r", "--prot", "1"),
                 "unknown flag --prot (did you mean --port?)");
    expect_error(empty_env, ARGS("--repo=r", "--log-levels=info"),
                 "unknown flag --log-levels (did you mean --log-level?)");
    expect_error(empty_env, ARGS("--repo=r", "--xyzzy"), "unknown flag --xyzzy");
    expect_error(empty_env, ARGS("--repo=r", "-p", "1"), "unexpected argument \"-p\"");
    expect_error(empty_env, ARGS("--repo=r", "extra"), "unexpected argument \"extra\"");
    expect_error(empty_env, ARGS("--repo=r", "--"), "unexpected argument \"--\"");
    expect_error(empty_env, ARGS("--repo=r", "--port"), "--port: needs a value");
    expect_error(empty_env, ARGS("--repo", "--port", "1"), "--repo: needs a value");
    /* a flag error is reported before the file is read */
    expect_error(ENV("ALMANAC_CONFIG=/nonexistent/almanac.yml"), ARGS("--bogus"),
                 "unknown flag --bogus");
}

static void test_environment(void **state)
{
    (void)state;
    settings s;
    assert_int_equal(load_args(&s,
                               ENV("ALMANAC_REPO=file:///e", "ALMANAC_CACHE_DIR=/e/cache",
                                   "ALMANAC_MAX_BODY_BYTES=2M",
                                   "ALMANAC_PORT=", "ALMANAC_SERVER=http://not-ours",
                                   "ALMANAC_REPOSITORY=x", "OTHER=1", "ALMANAC_LOG_FORMAT=json"),
                               NULL),
                     0);
    assert_string_equal(s.repo, "file:///e");
    assert_string_equal(s.cache_dir, "/e/cache");
    assert_int_equal(s.max_body_bytes, 2u << 20);
    assert_int_equal(s.port, 8888); /* empty counts as unset */
    assert_string_equal(s.log_format, "json");
    settings_dispose(&s);

    expect_error(ENV("ALMANAC_REPO=r", "ALMANAC_PORT=abc"), NULL,
                 "ALMANAC_PORT: \"abc\" is not a number between 0 and 65535");
    expect_error(ENV("ALMANAC_REPO=r", "ALMANAC_ENCRYPT_SALT=xyz"), NULL,
                 "ALMANAC_ENCRYPT_SALT: \"xyz\" is not an even-length hex string of at most 256 "
                 "digits");

    /* envp NULL reads the process environment */
    assert_int_equal(setenv("ALMANAC_WATCH_TIMEOUT_MAX", "42", 1), 0);
    assert_int_equal(load_args(&s, NULL, ARGS("--repo=r")), 0);
    assert_int_equal(s.watch_timeout_max, 42);
    settings_dispose(&s);
    assert_int_equal(unsetenv("ALMANAC_WATCH_TIMEOUT_MAX"), 0);
}

/* A broker URL with a password would show in `ps`: only the environment or the file give one. */
static void test_bus_and_peers(void **state)
{
    (void)state;
    settings s;
    expect_error(empty_env, ARGS("--repo", "r", "--bus-amqp-url", "amqp://u:secret@h:5672/v"),
                 "--bus-amqp-url: a URL with a password does not belong on the command line "
                 "(other users see it in the process list); give it in the environment or the "
                 "--config file");
    expect_error_prefix(empty_env, ARGS("--repo", "r", "--bus-amqp-url=amqps://u:p@h/"),
                        "--bus-amqp-url: a URL with a password");
    assert_int_equal(load_args(&s, ENV("ALMANAC_BUS_AMQP_URL=amqp://u:secret@h:5672/v"),
                               ARGS("--repo", "r", "--bus-id", "almanac:1:ab")),
                     0);
    assert_string_equal(s.bus_amqp_url, "amqp://u:secret@h:5672/v");
    assert_string_equal(s.bus_destination, "springCloudBus");
    assert_string_equal(s.bus_id, "almanac:1:ab");
    settings_dispose(&s);
    /* No password, or an '@' only in the path: fine on the command line. */
    assert_int_equal(load_args(&s, empty_env,
                               ARGS("--repo", "r", "--bus-amqp-url", "amqp://guest@h/v@x:y")),
                     0);
    settings_dispose(&s);
    const char *file = write_file("bus.yml", "repo: r\nbus-amqp-url: amqp://u:p@h/\n");
    assert_int_equal(load_args(&s, empty_env, ARGS("--config", file)), 0);
    assert_string_equal(s.bus_amqp_url, "amqp://u:p@h/");
    settings_dispose(&s);
    expect_error(empty_env, ARGS("--repo", "r", "--bus-id", "a:*"),
                 "--bus-id: no '*', '?', '{' or '}' (it is matched as a pattern)");
    expect_error(empty_env, ARGS("--repo", "r", "--peers", "a,b"),
                 "--peers needs --peer-secret: peer notices are signed");
}

static void test_required_repo(void **state)
{
    (void)state;
    expect_error(empty_env, NULL, "no repository: give --repo URI or ALMANAC_REPO");
    expect_error(ENV("ALMANAC_REPO="), ARGS("--port=1"),
                 "no repository: give --repo URI or ALMANAC_REPO");

    /* no argv at all: everything from the environment */
    settings s;
    char *env[] = {(char *)(uintptr_t) "ALMANAC_REPO=file:///r", NULL};
    assert_int_equal(settings_load(&s, 0, NULL, env), 0);
    assert_string_equal(s.repo, "file:///r");
    settings_dispose(&s);
}

static void test_file_values(void **state)
{
    (void)state;
    settings s;
    const char *file = write_file("full.yml", "# a settings file\n"
                                              "repo: \"file:///srv/config\"\n"
                                              "port: \"8081\"\n"
                                              "max-body-bytes: 2M\n"
                                              "response-cache-bytes: 1048576\n"
                                              "encrypt-salt: 'cafe'\n"
                                              "log-format: json\n"
                                              "search-paths:\n"
                                              "  - '{application}'\n"
                                              "  - shared\n"
                                              "default-label: ''\n");
    assert_int_equal(load_args(&s, empty_env, ARGS("--config", file)), 0);
    assert_string_equal(s.repo, "file:///srv/config");
    assert_int_equal(s.port, 8081);
    assert_int_equal(s.max_body_bytes, 2u << 20);
    assert_int_equal(s.response_cache_bytes, 1u << 20);
    assert_string_equal(s.encrypt_salt, "cafe");
    assert_string_equal(s.log_format, "json");
    assert_string_equal(s.search_paths, "{application},shared");
    assert_null(s.default_label);
    settings_dispose(&s);

    /* null unsets an optional string; booleans read as Spring's text */
    file = write_file("null-ok.yml", "repo: r\ndefault-label: ~\nlisten: true\n");
    assert_int_equal(load_args(&s, empty_env, ARGS("--default-label=x", "--config", file)), 0);
    assert_string_equal(s.default_label, "x"); /* the flag still wins */
    assert_string_equal(s.listen, "true");
    settings_dispose(&s);
    assert_int_equal(load_args(&s, ENV("ALMANAC_DEFAULT_LABEL=y"), ARGS("--config", file)), 0);
    assert_string_equal(s.default_label, "y");
    settings_dispose(&s);
    assert_int_equal(load_args(&s, empty_env, ARGS("--config", file)), 0);
    assert_null(s.default_label);
    settings_dispose(&s);

    /* an empty file, or one holding only comments, sets nothing */
    file = write_file("empty.yml", "# nothing yet\n");
    assert_int_equal(load_args(&s, empty_env, ARGS("--repo=r", "--config", file)), 0);
    assert_int_equal(s.port, 8888);
    settings_dispose(&s);
}

static void test_file_errors(void **state)
{
    (void)state;
    char want[1024];
    const char *file = write_file("unknown.yml", "repo: r\nport: 1\nbogus: 2\n");
    snprintf(want, sizeof(want), "%s:3:8: bogus: unknown key", file);
    expect_error(empty_env, ARGS("--config", file), want);

    /* nested maps flatten to dotted keys, which no setting has */
    file = write_file("nested.yml", "repo: r\nencrypt:\n  salt: abcd\n");
    snprintf(want, sizeof(want), "%s:3:9: encrypt.salt: unknown key (did you mean encrypt-salt?)",
             file);
    expect_error(empty_env, ARGS("--config", file), want);

    file = write_file("typo.yml", "repo: r\nrefresh_interval: 10\n");
    snprintf(want, sizeof(want),
             "%s:2:19: refresh_interval: unknown key (did you mean refresh-interval?)", file);
    expect_error(empty_env, ARGS("--config", file), want);

    /* only search-paths takes a list */
    file = write_file("list.yml", "repo: r\nlisten:\n  - a\n");
    snprintf(want, sizeof(want), "%s:3:5: listen[0]: unknown key", file);
    expect_error(empty_env, ARGS("--config", file), want);

    file = write_file("badvalue.yml", "repo: r\n\nport:   abc\n");
    snprintf(want, sizeof(want), "%s:3:9: port: \"abc\" is not a number between 0 and 65535", file);
    expect_error(empty_env, ARGS("--config", file), want);

    file = write_file("negative.yml", "repo: r\nthreads: -3\n");
    snprintf(want, sizeof(want), "%s:2:10: threads: \"-3\" is not a number between 1 and 1024",
             file);
    expect_error(empty_env, ARGS("--config", file), want);

    file = write_file("config.yml", "repo: r\nconfig: other.yml\n");
    snprintf(want, sizeof(want), "%s:2:9: config: cannot be set inside the config file", file);
    expect_error(empty_env, ARGS("--config", file), want);

    file = write_file("twodocs.yml", "repo: r\n---\nport: 1\n");
    snprintf(want, sizeof(want), "%s:3:7: only one YAML document is allowed", file);
    expect_error(empty_env, ARGS("--config", file), want);

    /* a long file name is repeated whole */
    file = write_file("a-settings-file-with-a-rather-long-name-to-pass-sixty-four-bytes.yml",
                      "repo: r\nbogus: 1\n");
    snprintf(want, sizeof(want), "%s:2:8: bogus: unknown key", file);
    expect_error(empty_env, ARGS("--config", file), want);

    /* a YAML real is not a number of the kind settings take */
    file = write_file("real.yml", "repo: r\nport: 8080.0\n");
    snprintf(want, sizeof(want), "%s:2:7: port: \"8080.0\" is not a number between 0 and 65535",
             file);
    expect_error(empty_env, ARGS("--config", file), want);

    file = write_file("null.yml", "repo: r\nport: ~\n");
    snprintf(want, sizeof(want), "%s:2:7: port: \"\" is not a number between 0 and 65535", file);
    expect_error(empty_env, ARGS("--config", file), want);

    file = write_file("scalar.yml", "just text\n");
    snprintf(want, sizeof(want), "%s:1:1: document: unknown key", file);
    expect_error(empty_env, ARGS("--repo=r", "--config", file), want);

    /* the file's values fail even when a flag would have replaced them */
    file = write_file("shadowed.yml", "repo: r\nport: x\n");
    snprintf(want, sizeof(want), "%s:2:7: port: \"x\" is not a number between 0 and 65535", file);
    expect_error(empty_env, ARGS("--config", file, "--port=1"), want);

    /* a file past the 1 MiB cap is refused before parsing */
    char *big = malloc((2u << 20) + 1);
    assert_non_null(big);
    memset(big, '#', 2u << 20);
    big[2u << 20] = '\0';
    file = write_file("big.yml", big);
    free(big);
    snprintf(want, sizeof(want), "%s: larger than 1048576 bytes", file);
    expect_error(empty_env, ARGS("--config", file), want);

    snprintf(want, sizeof(want), "%s/missing.yml", tmpdir);
    char prefix[1024];
    snprintf(prefix, sizeof(prefix), "%s: cannot open: ", want);
    expect_error_prefix(empty_env, ARGS("--config", want), prefix);
    snprintf(prefix, sizeof(prefix), "%s: not a regular file", tmpdir);
    expect_error(empty_env, ARGS("--config", tmpdir), prefix);
}

static void test_file_syntax_error(void **state)
{
    (void)state;
    const char *file = write_file("syntax.yml", "repo: r\nport: 1\nlisten: [a, b\n");
    settings s;
    memset(&s, 0x5a, sizeof(s));
    assert_int_equal(load_args(&s, empty_env, ARGS("--config", file)), ERR_CONFIG);
    /* FILE:LINE:COL: parser message, at the line where the flow sequence breaks off */
    size_t n = strlen(file);
    assert_memory_equal(errbuf, file, n);
    unsigned line = 0, col = 0;
    char rest[256] = "";
    assert_int_equal(sscanf(errbuf + n, ":%u:%u: %255[^\n]", &line, &col, rest), 3);
    assert_true(line >= 3);
    assert_true(col >= 1);
    assert_true(strlen(rest) > 0);
    settings zero = {0};
    assert_memory_equal(&s, &zero, sizeof(s));

    file = write_file("tab.yml", "repo: r\n\tport: 1\n");
    assert_int_equal(load_args(&s, empty_env, ARGS("--config", file)), ERR_CONFIG);
    n = strlen(file);
    assert_memory_equal(errbuf, file, n);
    assert_int_equal(sscanf(errbuf + n, ":%u:%u: %255[^\n]", &line, &col, rest), 3);
    assert_int_equal(line, 2);
}

static void test_all_or_nothing(void **state)
{
    (void)state;
    settings s;
    /* A good load, then a failing one into the same place: nothing of the first is kept. */
    assert_int_equal(load_args(&s, empty_env, ARGS("--repo=r", "--listen=::1")), 0);
    settings_dispose(&s);
    memset(&s, 0xff, sizeof(s));
    assert_int_equal(load_args(&s, ENV("ALMANAC_LISTEN=127.0.0.1", "ALMANAC_REPO=r"),
                               ARGS("--auth-file=/a", "--port=70000")),
                     ERR_CONFIG);
    settings zero = {0};
    assert_memory_equal(&s, &zero, sizeof(s));
    assert_string_equal(errbuf, "--port: \"70000\" is not a number between 0 and 65535");

    /* dispose is safe on a zeroed struct, twice, and on NULL */
    settings_dispose(&s);
    settings_dispose(&s);
    settings_dispose(NULL);

    /* the failure is this thread's last error, code and message */
    char arg0[] = "almanac-server", arg1[] = "--bogus";
    char *argv[] = {arg0, arg1, NULL}, *no_env[] = {NULL};
    err_clear();
    assert_int_equal(settings_load(&s, 2, argv, no_env), ERR_CONFIG);
    assert_int_equal(err_last()->code, ERR_CONFIG);
    assert_string_equal(err_last()->message, "unknown flag --bogus");
}

/* Runs f with stdout sent to a file, and returns what it printed (caller frees). */
static char *capture_stdout(int (*f)(void), int *result)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/stdout.txt", tmpdir);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    assert_true(dup2(fd, STDOUT_FILENO) >= 0);
    close(fd);
    *result = f();
    fflush(stdout);
    assert_true(dup2(saved, STDOUT_FILENO) >= 0);
    close(saved);

    FILE *in = fopen(path, "rb");
    assert_non_null(in);
    char *text = calloc(1, 65536);
    assert_non_null(text);
    size_t got = fread(text, 1, 65535, in);
    fclose(in);
    text[got] = '\0';
    return text;
}

static int load_help(void)
{
    settings s;
    memset(&s, 0x11, sizeof(s));
    int result = load_args(&s, empty_env, ARGS("--port=1", "--help", "--bogus"));
    settings zero = {0};
    assert_memory_equal(&s, &zero, sizeof(s));
    return result;
}

static void test_help(void **state)
{
    (void)state;
    int result = 0;
    char *text = capture_stdout(load_help, &result);
    assert_int_equal(result, 1);
    assert_non_null(strstr(text, "Usage: almanac-server --repo URI"));

    /* Every setting is in the usage, with its flag, its variable and its default. */
    static const char *const expected[] = {"--repo URI",
                                           "ALMANAC_REPO",
                                           "--port PORT",
                                           "ALMANAC_PORT; default 8888, 0..65535",
                                           "--cache-dir DIR",
                                           "ALMANAC_CACHE_DIR",
                                           "--encrypt-format almanac|spring",
                                           "--log-level debug|info|warn|error",
                                           "ALMANAC_LOG_LEVEL; default info",
                                           "--max-body-bytes BYTES",
                                           "ALMANAC_MAX_BODY_BYTES; default 1M, 1k..1G",
                                           "--encrypt-salt HEX",
                                           "default deadbeef",
                                           "--watch-timeout-max SECONDS",
                                           "ALMANAC_RESPONSE_CACHE_BYTES; default 64M, 0..64G",
                                           "--threads N",
                                           "--help",
                                           "--default-label",
                                           "--search-paths",
                                           "--refresh-interval",
                                           "--encrypt-key-file",
                                           "--encrypt-rsa-key-file",
                                           "--encrypt-keys-dir",
                                           "--auth-file",
                                           "--tls-cert",
                                           "--tls-key",
                                           "--webhook-secret",
                                           "--overrides-file",
                                           "--log-format",
                                           "--config FILE",
                                           "ALMANAC_MAX_CONNECTIONS",
                                           "ALMANAC_MAX_FILE_BYTES",
                                           "ALMANAC_SNAPSHOT_CACHE",
                                           "ALMANAC_LISTEN"};
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        if (strstr(text, expected[i]) == NULL)
            fail_msg("usage lacks \"%s\":\n%s", expected[i], text);
    }
    /* a line fits 100 columns */
    for (char *line = text; *line != '\0';) {
        char *end = strchr(line, '\n');
        assert_non_null(end);
        if (end - line > 100)
            fail_msg("usage line too long: %.*s", (int)(end - line), line);
        line = end + 1;
    }
    free(text);

    /* -h is the same */
    settings s;
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, STDOUT_FILENO);
    close(devnull);
    result = load_args(&s, empty_env, ARGS("-h"));
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    assert_int_equal(result, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_cache_dir_default),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_equals_form),
        cmocka_unit_test(test_uint),
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_enum),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_strings_and_limits),
        cmocka_unit_test(test_flag_errors),
        cmocka_unit_test(test_environment),
        cmocka_unit_test(test_bus_and_peers),
        cmocka_unit_test(test_required_repo),
        cmocka_unit_test(test_file_values),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_file_syntax_error),
        cmocka_unit_test(test_all_or_nothing),
        cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
