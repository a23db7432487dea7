/*
 * Unit tests for environment: real repositories with the files of each scenario, composed the
 * way Spring Cloud Config composes them (order of files, documents, profiles, applications and
 * search locations), plus overrides, {cipher} values, broken files and the merged map.
 */
#include "gitfix.h"

#include "guard/cipher.h"
#include "compose/environment.h"
#include "log.h"
#include "server.h"
#include "compose/snapshot.h"

#include <dirent.h>
#include <pthread.h>

typedef struct scenario {
    char dir[512];
    char commit[REPO_COMMIT_HEX];
    repo *r;
    snapshot *snap;
    const char *const *search_paths;
    const overrides *ovr;
    const keyring *keys;
    const char *label;
    const char *cloud_platform;
} scenario;

/* files: path, content, path, content, ..., NULL */
static void scenario_open(scenario *sc, const char *const *files)
{
    memset(sc, 0, sizeof(*sc));
    gitfix_init(sc->dir, sizeof(sc->dir));
    for (size_t i = 0; files[i] != NULL; i += 2)
        gitfix_write(sc->dir, files[i], files[i + 1]);
    gitfix_commit(sc->dir, sc->commit);
    sc->r = gitfix_open(sc->dir, false, 0);
    if (snapshot_build(&sc->snap, sc->r, sc->commit, NULL, NULL) < 0)
        fail_msg("snapshot_build: %s", err_message());
}

static void scenario_close(scenario *sc)
{
    snapshot_release(sc->snap);
    repo_free(sc->r);
}

static int compose(environment *env, const scenario *sc, const char *apps, const char *profiles,
                   bool decrypt)
{
    env_compose_params p = {.snapshot = sc->snap,
                            .display_uri = repo_display_uri(sc->r),
                            .search_paths = sc->search_paths,
                            .overrides = sc->ovr,
                            .keyring = sc->keys,
                            .label_name = sc->label != NULL ? sc->label : "main",
                            .cloud_platform = sc->cloud_platform};
    env_query q = {.applications = apps, .profiles = profiles, .decrypt = decrypt};
    return environment_compose_snapshot(env, &p, &q);
}

/* Source names without the "<display uri>/" prefix, joined by " | ", for readable failures. */
static void source_list(const environment *env, const char *uri, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < env->count; i++) {
        const char *name = env->sources[i].name;
        if (strncmp(name, uri, strlen(uri)) == 0 && name[strlen(uri)] == '/')
            name += strlen(uri) + 1;
        int n = snprintf(buf + used, size - used, "%s%s", i > 0 ? " | " : "", name);
        assert_true(n > 0 && (size_t)n < size - used);
        used += (size_t)n;
    }
}

static void expect_sources(const scenario *sc, const char *apps, const char *profiles,
                           const char *expected)
{
    environment env;
    char got[4096];
    if (compose(&env, sc, apps, profiles, true) != 0)
        fail_msg("compose %s/%s: %s", apps, profiles, err_message());
    source_list(&env, repo_display_uri(sc->r), got, sizeof(got));
    if (strcmp(got, expected) != 0)
        fail_msg("%s/%s:\n  expected %s\n  got      %s", apps, profiles, expected, got);
    assert_string_equal(env.version, sc->commit);
    assert_ptr_equal(env.snapshot, sc->snap);
    environment_dispose(&env);
}

static const env_source *find_source(const environment *env, const char *suffix)
{
    for (size_t i = 0; i < env->count; i++) {
        size_t n = strlen(env->sources[i].name), m = strlen(suffix);
        if (n >= m && strcmp(env->sources[i].name + n - m, suffix) == 0)
            return &env->sources[i];
    }
    fail_msg("no source ending in %s", suffix);
    return NULL;
}

/* The keys of a flat map in order, joined by ",". */
static void key_list(const json_t *map, char *buf, size_t size)
{
    const char *key;
    json_t *value;
    size_t used = 0;
    buf[0] = '\0';
    json_object_foreach((json_t *)(uintptr_t)map, key, value)
    {
        int n = snprintf(buf + used, size - used, "%s%s", used > 0 ? "," : "", key);
        assert_true(n > 0 && (size_t)n < size - used);
        used += (size_t)n;
    }
}

/* ---- which files, in which order ---------------------------------------------------------- */

static void test_worked_example(void **state)
{
    /* clang-format off */
    static const char *const files[] = {
        "foo-mysql.yml", "db.pool.size: 10\n",
        "foo-dev.properties", "x=dev\n",
        "application-dev.yml", "y: appdev\n",
        "sub/foo.yml", "s: sub\n",
        "foo.yml", "f: foo\n",
        "application.properties", "ap=1\n",
        "application.yml", "a: 0\n---\nspring.config.activate.on-profile: dev\na: 1\n---\n"
                           "spring.config.activate.on-profile: prod\na: 2\n",
        "application-default.yml", "d: 1\n",
        "foo-prod.yml", "p: 1\n",
        "bar.yml", "b: 1\n",
        "sub/bar.yml", "b: 2\n",
        "other/foo.yml", "o: 1\n",
        "README.md", "# not configuration\n",
        NULL};
    /* clang-format on */
    static const char *const paths[] = {"sub", NULL};
    scenario sc;
    environment env;
    (void)state;

    scenario_open(&sc, files);
    sc.search_paths = paths;
    /* SPRING-COMPAT.md's example, verbatim. */
    expect_sources(&sc, "foo", "dev,mysql",
                   "foo-mysql.yml | foo-dev.properties | application-dev.yml | sub/foo.yml | "
                   "foo.yml | application.properties | application.yml (document #1) | "
                   "application.yml (document #0)");
    /* The default profile is only active when asked for by name. */
    expect_sources(&sc, "foo", "default",
                   "application-default.yml | sub/foo.yml | foo.yml | application.properties | "
                   "application.yml (document #0)");
    expect_sources(&sc, "foo", "prod",
                   "foo-prod.yml | sub/foo.yml | foo.yml | application.properties | "
                   "application.yml (document #2) | application.yml (document #0)");
    /* An unknown application still gets the shared files. */
    expect_sources(&sc, "nobody", "dev",
                   "application-dev.yml | application.properties | "
                   "application.yml (document #1) | application.yml (document #0)");

    /* Contents and origins of one source, and the full source name. */
    assert_int_equal(compose(&env, &sc, "foo", "dev,mysql", false), 0);
    char name[1200];
    snprintf(name, sizeof(name), "%s/foo-mysql.yml", repo_display_uri(sc.r));
    assert_string_equal(env.sources[0].name, name);
    assert_int_equal(json_integer_value(json_object_get(env.sources[0].props, "db.pool.size")), 10);
    assert_string_equal(json_string_value(json_object_get(env.sources[0].origins, "db.pool.size")),
                        "1:15");
    /* Kept on-profile documents keep their activation key. */
    const env_source *doc1 = find_source(&env, "application.yml (document #1)");
    assert_string_equal(
        json_string_value(json_object_get(doc1->props, "spring.config.activate.on-profile")),
        "dev");
    environment_dispose(&env);
    environment_dispose(&env); /* disposing twice is harmless */
    scenario_close(&sc);
}

static void test_extension_profile_location_order(void **state)
{
    /* clang-format off */
    static const char *const files[] = {
        "application.yml", "a: yml\n",
        "application.yaml", "a: yaml\n",
        "application.properties", "a=properties\n",
        "app-dev.yml", "d: yml\n",
        "app-dev.yaml", "d: yaml\n",
        "app-dev.properties", "d=properties\n",
        "conf/app-dev.yml", "d: conf\n",
        "conf/application-dev.yml", "d: conf-application\n",
        "app-qa.yml", "q: 1\n",
        NULL};
    /* clang-format on */
    static const char *const paths[] = {"conf", NULL};
    scenario sc;
    (void)state;

    scenario_open(&sc, files);
    sc.search_paths = paths;
    /* Later profile > earlier; within a profile later location > earlier; .properties > .yml
     * > .yaml; then every plain file. */
    expect_sources(&sc, "app", "dev,qa",
                   "app-qa.yml | conf/app-dev.yml | conf/application-dev.yml | "
                   "app-dev.properties | app-dev.yml | app-dev.yaml | application.properties | "
                   "application.yml | application.yaml");
    expect_sources(&sc, "app", "qa,dev",
                   "conf/app-dev.yml | conf/application-dev.yml | app-dev.properties | "
                   "app-dev.yml | app-dev.yaml | app-qa.yml | application.properties | "
                   "application.yml | application.yaml");
    /* A repeated profile counts once. */
    expect_sources(&sc, "app", "qa,qa",
                   "app-qa.yml | application.properties | application.yml | application.yaml");
    scenario_close(&sc);
}

static void test_several_applications(void **state)
{
    /* clang-format off */
    static const char *const files[] = {
        "foo.yml", "f: 1\n",
        "bar.yml", "b: 1\n",
        "application.yml", "a: 1\n",
        "foo-dev.yml", "f: 2\n",
        "bar-dev.yml", "b: 2\n",
        "application-dev.yml", "a: 2\n",
        NULL};
    /* clang-format on */
    scenario sc;
    (void)state;

    scenario_open(&sc, files);
    expect_sources(&sc, "foo,bar", "dev",
                   "bar-dev.yml | foo-dev.yml | application-dev.yml | bar.yml | foo.yml | "
                   "application.yml");
    expect_sources(&sc, "bar,foo", "dev",
                   "foo-dev.yml | bar-dev.yml | application-dev.yml | foo.yml | bar.yml | "
                   "application.yml");
    /* "application" itself is never listed twice. */
    expect_sources(&sc, "application", "dev", "application-dev.yml | application.yml");
    expect_sources(&sc, "foo,application", "dev",
                   "foo-dev.yml | application-dev.yml | foo.yml | application.yml");
    expect_sources(&sc, "foo,foo", "dev",
                   "foo-dev.yml | application-dev.yml | foo.yml | application.yml");
    scenario_close(&sc);
}

static void test_multi_document(void **state)
{
    /* clang-format off */
    static const char *const files[] = {
        "application.yml",
        "a: 0\n"
        "---\nspring.config.activate.on-profile: dev\na: 1\n"
        "---\nspring.config.activate.on-profile: '!dev'\na: 2\n"
        "---\nspring.config.activate.on-profile: dev & mysql\na: 3\n"
        "---\nb: later-plain\n"
        "---\nspring:\n  config:\n    activate:\n      on-profile: dev,prod\na: 5\n",
        "foo-dev.yml", "x: 0\n---\nspring.config.activate.on-profile: cloud\nx: 1\n",
        "legacy.yml", "l: 0\n---\nspring.profiles: dev\nl: 1\n",
        "props.properties", "p=0\n#---\nspring.config.activate.on-profile=dev\np=1\n",
        "empty.yml", "",
        "comments.yml", "# nothing here\n",
        NULL};
    /* clang-format on */
    scenario sc;
    environment env;
    (void)state;

    scenario_open(&sc, files);
    expect_sources(&sc, "x", "dev",
                   "application.yml (document #5) | application.yml (document #4) | "
                   "application.yml (document #1) | application.yml (document #0)");
    expect_sources(&sc, "x", "dev,mysql",
                   "application.yml (document #5) | application.yml (document #4) | "
                   "application.yml (document #3) | application.yml (document #1) | "
                   "application.yml (document #0)");
    expect_sources(&sc, "x", "prod",
                   "application.yml (document #5) | application.yml (document #4) | "
                   "application.yml (document #2) | application.yml (document #0)");
    /* A profile-specific file's documents filter by on-profile too. */
    expect_sources(&sc, "foo", "dev",
                   "foo-dev.yml (document #0) | application.yml (document #5) | "
                   "application.yml (document #4) | application.yml (document #1) | "
                   "application.yml (document #0)");
    expect_sources(&sc, "foo", "cloud,dev",
                   "foo-dev.yml (document #1) | foo-dev.yml (document #0) | "
                   "application.yml (document #5) | application.yml (document #4) | "
                   "application.yml (document #1) | application.yml (document #0)");
    /* Legacy spring.profiles and .properties documents. */
    expect_sources(&sc, "legacy,props", "dev",
                   "props.properties (document #1) | props.properties (document #0) | "
                   "legacy.yml (document #1) | legacy.yml (document #0) | "
                   "application.yml (document #5) | application.yml (document #4) | "
                   "application.yml (document #1) | application.yml (document #0)");
    /* Empty files give no source at all, as in Spring. */
    expect_sources(&sc, "empty,comments", "qa",
                   "application.yml (document #4) | application.yml (document #2) | "
                   "application.yml (document #0)");

    assert_int_equal(compose(&env, &sc, "x", "dev", true), 0);
    assert_int_equal(
        json_integer_value(json_object_get(find_source(&env, "(document #1)")->props, "a")), 1);
    assert_string_equal(
        json_string_value(json_object_get(find_source(&env, "(document #4)")->props, "b")),
        "later-plain");
    environment_dispose(&env);
    scenario_close(&sc);
}

static void test_search_paths(void **state)
{
    /* clang-format off */
    static const char *const files[] = {
        "foo.yml", "r: 1\n",
        "foo/foo.yml", "r: 2\n",
        "foo/application.yml", "r: 3\n",
        "conf/a/foo.yml", "r: 4\n",
        "conf/b/foo.yml", "r: 5\n",
        "conf/b/c/foo.yml", "r: 6\n",
        "deep/foo.yml", "r: 7\n",
        "deep/x/y/foo.yml", "r: 8\n",
        "dev/foo.yml", "r: 9\n",
        "main/foo.yml", "r: 10\n",
        "v1/foo.yml", "r: 11\n",
        "sub/foo-dev.yml", "r: 12\n",
        NULL};
    /* clang-format on */
    static const char *const paths[] = {"{application}", "conf/*",  "deep/**", "{profile}",
                                        "{label}",       "missing", "/sub/",   NULL};
    static const char *const unsafe_paths[] = {"../foo", "sub/../..", "{profile}", NULL};
    scenario sc;
    (void)state;

    scenario_open(&sc, files);
    sc.search_paths = paths;
    expect_sources(&sc, "foo", "dev",
                   "sub/foo-dev.yml | main/foo.yml | dev/foo.yml | deep/x/y/foo.yml | "
                   "deep/foo.yml | conf/b/foo.yml | conf/a/foo.yml | foo/foo.yml | "
                   "foo/application.yml | foo.yml");
    /* {label} follows the label; each placeholder is substituted per profile and app. */
    sc.label = "v1";
    expect_sources(&sc, "foo", "qa,dev",
                   "sub/foo-dev.yml | v1/foo.yml | dev/foo.yml | deep/x/y/foo.yml | "
                   "deep/foo.yml | conf/b/foo.yml | conf/a/foo.yml | foo/foo.yml | "
                   "foo/application.yml | foo.yml");
    /* A label with a slash may name a subdirectory; one that climbs out is ignored. */
    sc.label = "../main";
    expect_sources(&sc, "foo", "qa",
                   "deep/x/y/foo.yml | deep/foo.yml | conf/b/foo.yml | conf/a/foo.yml | "
                   "foo/foo.yml | foo/application.yml | foo.yml");

    /* Nothing outside the repository: substituted values that climb are refused, and search
     * paths that climb are ignored. */
    sc.search_paths = unsafe_paths;
    sc.label = NULL;
    expect_sources(&sc, "foo", "..", "foo.yml");
    expect_sources(&sc, "foo", "dev", "dev/foo.yml | foo.yml");
    expect_sources(&sc, "../foo", "x", "");
    expect_sources(&sc, "foo", "/etc", "foo.yml");
    expect_sources(&sc, "foo", "a\\..\\..", "foo.yml");
    scenario_close(&sc);
}

static void test_dir_mode_outside(void **state)
{
    char outside[512], cfg[512], rel[600];
    repo *r;
    snapshot *s = NULL;
    environment env;
    const char *paths[] = {"{profile}", NULL};
    const char *escape_paths[] = {rel, NULL};
    env_compose_params p = {0};
    env_query q = {.applications = "foo", .decrypt = true};
    (void)state;

    gitfix_mkdir(outside, sizeof(outside), "outside");
    gitfix_write(outside, "foo.yml", "stolen: 1\n");
    gitfix_mkdir(cfg, sizeof(cfg), "cfg");
    gitfix_write(cfg, "foo.yml", "mine: 1\n");
    r = gitfix_open(cfg, true, 0);
    assert_int_equal(snapshot_build(&s, r, "", NULL, NULL), 0);
    p.snapshot = s;
    p.display_uri = repo_display_uri(r);
    p.search_paths = paths;
    snprintf(rel, sizeof(rel), "../%s", strrchr(outside, '/') + 1);
    q.profiles = rel + 3; /* a name that exists only beside the repository */
    assert_int_equal(environment_compose_snapshot(&env, &p, &q), 0);
    assert_int_equal(env.count, 1);
    assert_non_null(json_object_get(env.sources[0].props, "mine"));
    assert_string_equal(env.version, "");
    environment_dispose(&env);
    p.search_paths = escape_paths;
    q.profiles = "dev";
    assert_int_equal(environment_compose_snapshot(&env, &p, &q), 0);
    assert_int_equal(env.count, 1);
    assert_non_null(json_object_get(env.sources[0].props, "mine"));
    environment_dispose(&env);
    snapshot_release(s);
    repo_free(r);
}

/* ---- failures ----------------------------------------------------------------------------- */

static void test_broken_file(void **state)
{
    /* clang-format off */
    static const char *const files[] = {
        "application.yml", "a: 1\n",
        "foo.yml", "ok: 1\nlist: [a, b\nmore: 2\n",
        "application-prod.yml", "a:\n  - 1\n b: 2\n",
        "bar.yml", "b: 1\n",
        "badexpr.yml", "b: 1\n---\nspring.config.activate.on-profile: a & b | c\nb: 2\n",
        NULL};
    /* clang-format on */
    scenario sc;
    environment env;
    (void)state;

    scenario_open(&sc, files);
    /* Requests that do not need the broken files work. */
    expect_sources(&sc, "bar", "dev", "bar.yml | application.yml");
    /* Requests that do fail with the file and its position. */
    assert_int_equal(compose(&env, &sc, "foo", "dev", true), ERR_CONFIG);
    assert_int_equal(strncmp(err_message(), "foo.yml:", 8), 0);
    assert_int_equal(env.count, 0);
    assert_null(env.sources);
    environment_dispose(&env);
    assert_int_equal(compose(&env, &sc, "bar", "dev,prod", true), ERR_CONFIG);
    assert_int_equal(strncmp(err_message(), "application-prod.yml:3:", 23), 0);
    environment_dispose(&env);
    assert_int_equal(compose(&env, &sc, "badexpr", "dev", true), ERR_CONFIG);
    assert_int_equal(strncmp(err_message(), "badexpr.yml:3:", 14), 0);
    assert_non_null(strstr(err_message(), "profile expression"));
    environment_dispose(&env);
    /* Caps on the request's lists. */
    char many[600] = "a";
    for (int i = 0; i < 40; i++)
        strcat(many, ",p");
    for (int i = 0; i < 40; i++)
        many[2 * i + 2] = (char)('A' + i % 26 + (i >= 26 ? 32 : 0));
    assert_int_equal(compose(&env, &sc, "bar", many, true), ERR_BAD_REQUEST);
    environment_dispose(&env);
    scenario_close(&sc);
}

/* ---- overrides ---------------------------------------------------------------------------- */

static void test_overrides(void **state)
{
    static const char *const files[] = {"application.yml", "a: 1\n", NULL};
    char dir[512], path[600];
    overrides *o = NULL;
    scenario sc;
    environment env;
    char keys[256];
    (void)state;

    gitfix_mkdir(dir, sizeof(dir), "overrides");
    gitfix_write(dir, "ovr.yml",
                 "o: 1\nz: text\nnested:\n  f: 1.50\n---\no: 2\n"
                 "p: '\\${user}'\nq: '\\{x}'\nboth: '\\{a} \\${b}'\n");
    snprintf(path, sizeof(path), "%s/ovr.yml", dir);
    if (overrides_load(&o, path) != 0)
        fail_msg("overrides_load: %s", err_message());
    /* Values are strings, as Spring binds them; later documents win. */
    key_list(overrides_props(o), keys, sizeof(keys));
    assert_string_equal(keys, "o,z,nested.f,p,q,both");
    /* Spring's escapes for a literal placeholder passed on to clients. */
    assert_string_equal(json_string_value(json_object_get(overrides_props(o), "p")), "${user}");
    assert_string_equal(json_string_value(json_object_get(overrides_props(o), "q")), "{x}");
    assert_string_equal(json_string_value(json_object_get(overrides_props(o), "both")),
                        "\\{a} ${b}");
    assert_string_equal(json_string_value(json_object_get(overrides_props(o), "o")), "2");
    assert_string_equal(json_string_value(json_object_get(overrides_props(o), "nested.f")), "1.5");

    scenario_open(&sc, files);
    sc.ovr = o;
    assert_int_equal(compose(&env, &sc, "foo", "dev", true), 0);
    assert_int_equal(env.count, 2);
    assert_string_equal(env.sources[0].name, "overrides");
    /* Spring's v2 origin for every override. */
    assert_string_equal(json_string_value(json_object_get(env.sources[0].origins, "z")),
                        "Config server overrides");
    assert_int_equal(json_object_size(env.sources[0].origins), 6);
    assert_string_equal(json_string_value(json_object_get(env.sources[0].props, "z")), "text");
    environment_dispose(&env);
    overrides_free(o);
    overrides_free(NULL);

    gitfix_write(dir, "ovr.properties", "k=v\nk2: v2\n");
    snprintf(path, sizeof(path), "%s/ovr.properties", dir);
    assert_int_equal(overrides_load(&o, path), 0);
    key_list(overrides_props(o), keys, sizeof(keys));
    assert_string_equal(keys, "k,k2");
    overrides_free(o);

    /* An empty overrides file adds no source. */
    gitfix_write(dir, "empty.yml", "");
    snprintf(path, sizeof(path), "%s/empty.yml", dir);
    assert_int_equal(overrides_load(&o, path), 0);
    sc.ovr = o;
    assert_int_equal(compose(&env, &sc, "foo", "dev", true), 0);
    assert_int_equal(env.count, 1);
    environment_dispose(&env);
    overrides_free(o);

    gitfix_write(dir, "ovr.conf", "k=v\n");
    snprintf(path, sizeof(path), "%s/ovr.conf", dir);
    assert_int_equal(overrides_load(&o, path), ERR_CONFIG);
    assert_null(o);
    snprintf(path, sizeof(path), "%s/missing.yml", dir);
    assert_int_equal(overrides_load(&o, path), ERR_CONFIG);
    gitfix_write(dir, "bad.yml", "a: [\n");
    snprintf(path, sizeof(path), "%s/bad.yml", dir);
    assert_int_equal(overrides_load(&o, path), ERR_CONFIG);
    assert_non_null(strstr(err_message(), "bad.yml:"));
    scenario_close(&sc);
}

/* ---- secrets ------------------------------------------------------------------------------ */

static void test_cipher_without_key(void **state)
{
    /* clang-format off */
    static const char *const files[] = {
        "application.yml",
        "a: 1\nsecret: '{cipher}deadbeef'\nb: 2\nlist:\n  - '{cipher}abcdef'\n  - plain\n"
        "invalid.secret: was-here\n",
        NULL};
    /* clang-format on */
    scenario sc;
    environment env;
    char keys[512];
    (void)state;

    scenario_open(&sc, files);
    assert_int_equal(compose(&env, &sc, "foo", "dev", true), 0);
    assert_int_equal(env.count, 1);
    key_list(env.sources[0].props, keys, sizeof(keys));
    /* Undecryptable keys are removed, invalid.<key> = "<n/a>" appended (or replaced where it
     * already was). */
    assert_string_equal(keys, "a,b,list[1],invalid.secret,invalid.list[0]");
    assert_string_equal(json_string_value(json_object_get(env.sources[0].props, "invalid.secret")),
                        "<n/a>");
    assert_string_equal(json_string_value(json_object_get(env.sources[0].props, "invalid.list[0]")),
                        "<n/a>");
    assert_null(json_object_get(env.sources[0].origins, "invalid.list[0]"));
    assert_null(json_object_get(env.sources[0].origins, "invalid.secret"));
    assert_non_null(json_object_get(env.sources[0].origins, "a"));
    environment_dispose(&env);

    /* Without decryption the values stay as written: the snapshot was never touched. */
    assert_int_equal(compose(&env, &sc, "foo", "dev", false), 0);
    key_list(env.sources[0].props, keys, sizeof(keys));
    assert_string_equal(keys, "a,secret,b,list[0],list[1],invalid.secret");
    assert_string_equal(json_string_value(json_object_get(env.sources[0].props, "secret")),
                        "{cipher}deadbeef");
    environment_dispose(&env);
    scenario_close(&sc);
}

static void test_cipher_with_key(void **state)
{
    char dir[512], keyfile[600], content[2048];
    keyring *k = NULL;
    keyring_options opts = {0};
    char *ct = NULL;
    scenario sc;
    environment env;
    char keys[512];
    const char *files[] = {"application.yml", content, NULL};
    (void)state;

    gitfix_mkdir(dir, sizeof(dir), "keys");
    gitfix_write(dir, "key", "correct horse battery staple\n");
    snprintf(keyfile, sizeof(keyfile), "%s/key", dir);
    opts.key_file = keyfile;
    if (keyring_load(&k, &opts) != 0)
        fail_msg("keyring_load: %s", err_message());
    assert_int_equal(keyring_encrypt(k, NULL, KEYRING_FORMAT_SPRING, "hunter2", 7, &ct), 0);
    snprintf(content, sizeof(content), "x: 1\npw: '{cipher}%s'\ny: 2\nbad: '{cipher}00ff'\n", ct);
    free(ct);
    scenario_open(&sc, files);
    sc.keys = k;
    assert_int_equal(compose(&env, &sc, "foo", "dev", true), 0);
    key_list(env.sources[0].props, keys, sizeof(keys));
    /* Decrypted values move to the end of their source, in their original order. */
    assert_string_equal(keys, "x,y,pw,invalid.bad");
    assert_string_equal(json_string_value(json_object_get(env.sources[0].props, "pw")), "hunter2");
    assert_null(json_object_get(env.sources[0].origins, "pw")); /* decrypted values stay plain */
    assert_non_null(json_object_get(env.sources[0].origins, "y"));
    environment_dispose(&env);
    scenario_close(&sc);
    keyring_free(k);
}

/* ---- through the server ------------------------------------------------------------------- */

static void test_compose_through_server(void **state)
{
    static const char *const files[] = {"application.yml", "a: 1\n", "main/foo.yml", "m: 1\n",
                                        NULL};
    static const char *const paths[] = {"{label}", NULL};
    scenario sc;
    server srv;
    snapcache *cache = NULL;
    environment env;
    env_query q = {.applications = "foo", .profiles = "dev", .decrypt = true};
    (void)state;

    scenario_open(&sc, files);
    assert_int_equal(snapcache_new(&cache, 4, NULL), 0);
    memset(&srv, 0, sizeof(srv));
    srv.repo = sc.r;
    srv.snapshots = cache;
    srv.search_paths = (char **)(uintptr_t)paths;
    /* A query reaches composition resolved, or not at all. */
    assert_int_equal(environment_compose(&env, &srv, &q), ERR_INTERNAL);
    assert_int_equal(env.count, 0);
    environment_dispose(&env);
    assert_int_equal(env_query_resolve(&q, srv.repo), 0);
    assert_string_equal(q.commit, sc.commit);
    assert_int_equal(environment_compose(&env, &srv, &q), 0);
    assert_string_equal(env.version, sc.commit);
    assert_int_equal(env.count, 2); /* {label} is the default label, main */
    assert_non_null(strstr(env.sources[0].name, "/main/foo.yml"));
    environment_dispose(&env);

    q.label = sc.commit;
    assert_int_equal(env_query_resolve(&q, srv.repo), 0);
    assert_int_equal(environment_compose(&env, &srv, &q), 0);
    assert_int_equal(env.count, 1); /* no directory named after the commit */
    environment_dispose(&env);

    q.label = "no-such-label";
    assert_int_equal(env_query_resolve(&q, srv.repo), ERR_NOT_FOUND);
    assert_false(q.resolved);
    assert_int_equal(environment_compose(&env, &srv, &q), ERR_INTERNAL);
    assert_int_equal(env.count, 0);
    environment_dispose(&env);
    assert_int_equal(snapcache_count(cache), 1);
    snapcache_free(cache);
    scenario_close(&sc);
}

/* A label that moves after the request resolved it does not move the answer: the commit the
 * query carries is the one composed. */
static void test_compose_keeps_the_commit_resolved_once(void **state)
{
    static const char *const files[] = {"foo.yml", "v: 1\n", NULL};
    scenario sc;
    server srv;
    snapcache *cache = NULL;
    environment env;
    env_query q = {.applications = "foo", .profiles = "default", .decrypt = true};
    char second[REPO_COMMIT_HEX];
    bool moved = false;
    (void)state;

    scenario_open(&sc, files);
    assert_int_equal(snapcache_new(&cache, 4, NULL), 0);
    memset(&srv, 0, sizeof(srv));
    srv.repo = sc.r;
    srv.snapshots = cache;
    assert_int_equal(env_query_resolve(&q, srv.repo), 0);
    assert_string_equal(q.commit, sc.commit);

    gitfix_write(sc.dir, "foo.yml", "v: 2\n");
    gitfix_commit(sc.dir, second);
    assert_int_equal(repo_fetch(sc.r, &moved), 0);
    assert_true(moved);

    assert_int_equal(environment_compose(&env, &srv, &q), 0);
    assert_string_equal(env.version, sc.commit);
    assert_int_equal(env.count, 1);
    assert_int_equal(json_integer_value(json_object_get(env.sources[0].props, "v")), 1);
    environment_dispose(&env);

    /* The next request resolves again and sees the new commit. */
    assert_int_equal(env_query_resolve(&q, srv.repo), 0);
    assert_string_equal(q.commit, second);
    assert_int_equal(environment_compose(&env, &srv, &q), 0);
    assert_string_equal(env.version, second);
    assert_int_equal(json_integer_value(json_object_get(env.sources[0].props, "v")), 2);
    environment_dispose(&env);
    snapcache_free(cache);
    scenario_close(&sc);
}

/* ---- the merged map ----------------------------------------------------------------------- */

static void test_merge(void **state)
{
    env_source sources[3];
    environment env = {.sources = sources, .count = 3};
    json_t *merged;
    char keys[512];
    (void)state;

    /* Highest first. */
    sources[0].props = json_pack("{s:s, s:s}", "b", "B0", "list[0]", "x0");
    sources[1].props =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "a", "A1", "b", "B1", "list[0]", "y",
                  "list[1]", "z", "spring.profiles", "dev", "c", "C1", "m[0].k", "v");
    sources[2].props = json_pack("{s:s, s:i, s:s, s:s, s:s, s:s}", "c", "C2", "a", 2, "list[0]",
                                 "o1", "list[1]", "o2", "list[2]", "o3", "other[0]", "q");
    assert_non_null(sources[0].props);
    assert_non_null(sources[1].props);
    assert_non_null(sources[2].props);
    merged = environment_merge(&env);
    assert_non_null(merged);
    key_list(merged, keys, sizeof(keys));
    /* First positions from the lowest source up, lists after scalars, a higher list replacing
     * the whole list below, spring.profiles dropped. */
    assert_string_equal(keys, "c,a,b,list[0],other[0],m[0].k");
    assert_string_equal(json_string_value(json_object_get(merged, "c")), "C1");
    assert_string_equal(json_string_value(json_object_get(merged, "a")), "A1");
    assert_string_equal(json_string_value(json_object_get(merged, "b")), "B0");
    assert_string_equal(json_string_value(json_object_get(merged, "list[0]")), "x0");
    json_decref(merged);

    environment empty = {0};
    merged = environment_merge(&empty);
    assert_int_equal(json_object_size(merged), 0);
    json_decref(merged);
    for (int i = 0; i < 3; i++)
        json_decref(sources[i].props);
}

/* ---- sharing ------------------------------------------------------------------------------ */

typedef struct composer {
    const scenario *sc;
    pthread_barrier_t *barrier;
    char *dump; /* the merged map of the last round, as JSON */
    int error;
} composer;

static void *compose_thread(void *arg)
{
    composer *c = arg;
    pthread_barrier_wait(c->barrier);
    for (int i = 0; i < 50 && c->error == 0; i++) {
        environment env;
        json_t *merged;
        c->error = compose(&env, c->sc, "foo,bar", "dev,mysql", true);
        if (c->error != 0)
            break;
        merged = environment_merge(&env);
        free(c->dump);
        c->dump = merged != NULL ? json_dumps(merged, JSON_COMPACT) : NULL;
        json_decref(merged);
        environment_dispose(&env);
    }
    return NULL;
}

/*
 * Request threads compose from one shared snapshot at once; nothing they do is visible to the
 * others. (Under TSan, jansson's json_incref reports a benign race: it reads the reference
 * count plainly to compare it with its "static object" marker before the atomic increment.)
 */
static void test_concurrent_compose(void **state)
{
    /* clang-format off */
    static const char *const files[] = {
        "application.yml", "a: 1\ns: '{cipher}00'\nl: [1, 2]\n",
        "foo-dev.yml", "a: 2\nl: [3]\n",
        "bar-mysql.properties", "b=1\n",
        NULL};
    /* clang-format on */
    enum { N = 4 };
    pthread_t threads[N];
    composer composers[N];
    pthread_barrier_t barrier;
    scenario sc;
    (void)state;

    scenario_open(&sc, files);
    assert_int_equal(pthread_barrier_init(&barrier, NULL, N), 0);
    for (int i = 0; i < N; i++) {
        composers[i] = (composer){.sc = &sc, .barrier = &barrier};
        assert_int_equal(pthread_create(&threads[i], NULL, compose_thread, &composers[i]), 0);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(composers[i].error, 0);
        assert_non_null(composers[i].dump);
        assert_string_equal(composers[i].dump, "{\"a\":2,\"invalid.s\":\"<n/a>\",\"b\":\"1\","
                                               "\"l[0]\":3}");
        free(composers[i].dump);
    }
    pthread_barrier_destroy(&barrier);
    scenario_close(&sc);
}

/* ---- cases as data: tests/resources/environment/NAME.json -------------------------------- */

static void check_query(scenario *sc, const char *casename, json_t *query)
{
    const char *apps = json_string_value(json_object_get(query, "applications"));
    const char *profiles = json_string_value(json_object_get(query, "profiles"));
    const char *error = json_string_value(json_object_get(query, "error"));
    json_t *sources = json_object_get(query, "sources");
    json_t *merged_expect = json_object_get(query, "merged");
    json_t *keys_expect = json_object_get(query, "merged_keys");
    environment env;
    char expected[4096] = "", got[4096];
    size_t used = 0, i;
    json_t *item;
    int rc;

    assert_non_null(apps);
    assert_non_null(profiles);
    sc->cloud_platform = json_string_value(json_object_get(query, "cloud_platform"));
    rc = compose(&env, sc, apps, profiles, true);
    sc->cloud_platform = NULL;
    if (error != NULL) {
        if (rc != ERR_CONFIG || strncmp(err_message(), error, strlen(error)) != 0)
            fail_msg("%s: %s/%s: expected ERR_CONFIG \"%s...\", got %d \"%s\"", casename, apps,
                     profiles, error, rc, err_message());
        environment_dispose(&env);
        return;
    }
    if (rc != 0)
        fail_msg("%s: %s/%s: %s", casename, apps, profiles, err_message());
    json_array_foreach(sources, i, item)
    {
        int n = snprintf(expected + used, sizeof(expected) - used, "%s%s", i > 0 ? " | " : "",
                         json_string_value(item));
        assert_true(n > 0 && (size_t)n < sizeof(expected) - used);
        used += (size_t)n;
    }
    source_list(&env, repo_display_uri(sc->r), got, sizeof(got));
    if (strcmp(got, expected) != 0)
        fail_msg("%s: %s/%s:\n  expected %s\n  got      %s", casename, apps, profiles, expected,
                 got);
    if (merged_expect != NULL || keys_expect != NULL) {
        json_t *merged = environment_merge(&env);
        assert_non_null(merged);
        if (merged_expect != NULL && !json_equal(merged, merged_expect)) {
            char *dump = json_dumps(merged, JSON_COMPACT);
            fail_msg("%s: %s/%s: merged map %s", casename, apps, profiles, dump);
        }
        if (keys_expect != NULL) {
            const char *key;
            json_t *value;
            i = 0;
            json_object_foreach(merged, key, value)
            {
                const char *want = json_string_value(json_array_get(keys_expect, i++));
                if (want == NULL || strcmp(want, key) != 0)
                    fail_msg("%s: merged key %zu is %s, expected %s", casename, i - 1, key,
                             want != NULL ? want : "(none)");
            }
            assert_int_equal(i, json_array_size(keys_expect));
        }
        json_decref(merged);
    }
    environment_dispose(&env);
}

static void run_case(const char *path, const char *casename)
{
    json_error_t jerr;
    json_t *c = json_load_file(path, 0, &jerr), *files, *paths, *query, *value;
    const char *file_list[64];
    const char *search[16];
    size_t n = 0, i;
    const char *key;
    scenario sc;

    if (c == NULL)
        fail_msg("%s:%d: %s", path, jerr.line, jerr.text);
    files = json_object_get(c, "files");
    assert_true(json_object_size(files) < 31);
    json_object_foreach(files, key, value)
    {
        file_list[n++] = key;
        file_list[n++] = json_string_value(value);
    }
    file_list[n] = NULL;
    scenario_open(&sc, file_list);
    paths = json_object_get(c, "search_paths");
    assert_true(json_array_size(paths) < 15);
    json_array_foreach(paths, i, value)
    {
        search[i] = json_string_value(value);
    }
    search[json_array_size(paths)] = NULL;
    sc.search_paths = search;
    sc.label = json_string_value(json_object_get(c, "label"));
    json_array_foreach(json_object_get(c, "queries"), i, query)
    {
        check_query(&sc, casename, query);
    }
    scenario_close(&sc);
    json_decref(c);
}

static void test_cases_as_data(void **state)
{
    const char *dirpath = ALMANAC_TEST_RESOURCES "/environment";
    DIR *dir = opendir(dirpath);
    struct dirent *de;
    unsigned ran = 0;
    (void)state;

    assert_non_null(dir);
    while ((de = readdir(dir)) != NULL) {
        char path[1024];
        size_t len = strlen(de->d_name);
        if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dirpath, de->d_name);
        run_case(path, de->d_name);
        ran++;
    }
    closedir(dir);
    assert_true(ran >= 11);
}

/* Search paths that match more directories than the cap fail as a configuration error. */
static void test_too_many_locations(void **state)
{
    static const char *const all[] = {"**", NULL};
    static const char *const some[] = {"d1*", NULL};
    scenario sc;
    environment env;
    (void)state;

    /* A plain directory (dir mode): 1030 directories are quicker to make than to commit. */
    memset(&sc, 0, sizeof(sc));
    gitfix_mkdir(sc.dir, sizeof(sc.dir), "many");
    for (int i = 0; i < 1030; i++) {
        char path[64];
        snprintf(path, sizeof(path), "d%d/foo.yml", i);
        gitfix_write(sc.dir, path, "x: 1\n");
    }
    sc.r = gitfix_open(sc.dir, true, 0);
    assert_int_equal(snapshot_build(&sc.snap, sc.r, "", NULL, NULL), 0);
    sc.search_paths = all;
    assert_int_equal(compose(&env, &sc, "foo", "dev", true), ERR_CONFIG);
    assert_non_null(strstr(err_message(), "search paths"));
    environment_dispose(&env);
    sc.search_paths = some; /* d1, d10-d19, d100-d199, d1000-d1029 */
    assert_int_equal(compose(&env, &sc, "foo", "dev", true), 0);
    assert_int_equal(env.count, 1 + 10 + 100 + 30);
    environment_dispose(&env);
    scenario_close(&sc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worked_example),
        cmocka_unit_test(test_extension_profile_location_order),
        cmocka_unit_test(test_several_applications),
        cmocka_unit_test(test_multi_document),
        cmocka_unit_test(test_search_paths),
        cmocka_unit_test(test_dir_mode_outside),
        cmocka_unit_test(test_broken_file),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_cipher_without_key),
        cmocka_unit_test(test_cipher_with_key),
        cmocka_unit_test(test_compose_through_server),
        cmocka_unit_test(test_compose_keeps_the_commit_resolved_once),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_concurrent_compose),
        cmocka_unit_test(test_cases_as_data),
        cmocka_unit_test(test_too_many_locations),
    };
    log_configure(LOG_LEVEL_ERROR, LOG_FORMAT_TEXT);
    return cmocka_run_group_tests(tests, gitfix_setup, gitfix_teardown);
}
