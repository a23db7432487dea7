/*
 * reposet — the repos: section and Spring's pattern matching (MultipleJGitEnvironmentRepository
 * and its PatternMatchingJGitEnvironmentRepository: setPattern's expansion, matches() per
 * profile, findOne's check of the whole profile list).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "err.h"
#include "reposet.h"
#include "yamlconf.h"

#include <stdlib.h>
#include <string.h>

/* Parses a config file's text; returns -1 with why filled (err_message) on a bad section. */
static int parse(repo_specs *out, const char *yaml, char *why, size_t size)
{
    confdoc_list list = {0};
    confdoc_error perr = {0};
    confdoc_limits limits = CONFDOC_LIMITS_DEFAULT;
    assert_int_equal(yamlconf_parse(&list, yaml, strlen(yaml), &limits, &perr), 0);
    const char *origin = NULL;
    err_clear();
    int rc = reposet_parse(out, list.docs[0].props, list.docs[0].origins, &origin);
    confdoc_list_dispose(&list);
    if (rc < 0) {
        /* The failure is this thread's last error, as everywhere else. */
        assert_int_equal(rc, ERR_CONFIG);
        assert_int_equal(err_last_code(), ERR_CONFIG);
        snprintf(why, size, "%s", err_message());
        return -1;
    }
    return rc;
}

static void simple_match_is_springs(void **state)
{
    (void)state;
    assert_true(reposet_simple_match("*", ""));
    assert_true(reposet_simple_match("a*", "abc"));
    assert_true(reposet_simple_match("*c", "abc"));
    assert_true(reposet_simple_match("a*c", "abxxc"));
    assert_true(reposet_simple_match("*b*", "abc"));
    assert_true(reposet_simple_match("a*b*c", "a-b-b-c"));
    assert_false(reposet_simple_match("a*c", "abcd"));
    assert_false(reposet_simple_match("abc", "ab"));
    assert_false(reposet_simple_match("a?c", "abc")); /* '?' is no wildcard in simpleMatch */
    assert_true(reposet_simple_match("a?c", "a?c"));
}

static void first_match_in_file_order(void **state)
{
    repo_specs s;
    char why[256];
    (void)state;
    assert_int_equal(parse(&s,
                           "repos:\n"
                           "  second:\n    pattern: '*test1*'\n    uri: file:///b\n"
                           "  first:\n    pattern: test1-svc\n    uri: file:///a\n",
                           why, sizeof(why)),
                     0);
    assert_int_equal(s.count, 2);
    assert_string_equal(s.items[0].name, "second");
    /* Spring's mappingRepo: test1-svc served by the repository whose pattern comes first. */
    assert_int_equal(reposet_match(&s, "test1-svc", "staging"), 0);
    assert_int_equal(reposet_match(&s, "bar", "staging"), -1);
    reposet_dispose(&s);
}

static void profile_patterns(void **state)
{
    repo_specs s;
    char why[256];
    (void)state;
    assert_int_equal(parse(&s,
                           "repos:\n"
                           "  dev:\n    pattern: ['*/development', '*/staging']\n"
                           "    uri: file:///dev\n"
                           "  one:\n    pattern: orders/prod\n    uri: file:///one\n"
                           "  any:\n    pattern: [payments, 'team-a-*']\n    uri: file:///any\n",
                           why, sizeof(why)),
                     0);
    assert_int_equal(reposet_match(&s, "foo", "development"), 0);
    assert_int_equal(reposet_match(&s, "foo", "staging"), 0);
    assert_int_equal(reposet_match(&s, "foo", "prod"), -1);
    /* A pattern with one profile: the request may list more after it ("orders/prod,*"). */
    assert_int_equal(reposet_match(&s, "orders", "prod"), 1);
    assert_int_equal(reposet_match(&s, "orders", "prod,eu"), 1);
    assert_int_equal(reposet_match(&s, "orders", "eu,prod"), -1);
    /* Without '/': any profile, any number of them. */
    assert_int_equal(reposet_match(&s, "payments", "a,b,c"), 2);
    assert_int_equal(reposet_match(&s, "team-a-x", "default"), 2);
    assert_int_equal(reposet_match(&s, "payments-x", "default"), -1);
    /* Spring's expansion, in its order. */
    assert_string_equal(s.items[2].expanded[0], "payments/*");
    assert_string_equal(s.items[2].expanded[1], "payments");
    assert_string_equal(s.items[2].expanded[2], "team-a-*/*");
    assert_string_equal(s.items[2].expanded[3], "team-a-*");
    assert_string_equal(s.items[2].expanded[4], "payments,*");
    assert_null(s.items[2].expanded[5]);
    reposet_dispose(&s);
}

static void comma_separated_pattern_text(void **state)
{
    repo_specs s;
    char why[256];
    (void)state;
    assert_int_equal(parse(&s,
                           "repos:\n  t:\n    pattern: 'a-*, b-*'\n    uri: x\n"
                           "    search-paths: ['{application}', shared]\n"
                           "    default-label: release\n    refresh-interval: 5\n"
                           "    git-known-hosts: /etc/kh\n    git-ssh-key-file: /k\n"
                           "    git-ca-file: /ca.pem\n    git-proxy: http://proxy:3128\n",
                           why, sizeof(why)),
                     0);
    assert_int_equal(reposet_match(&s, "b-1", "dev"), 0);
    assert_string_equal(s.items[0].search_paths, "{application},shared");
    assert_string_equal(s.items[0].default_label, "release");
    assert_int_equal(s.items[0].refresh_interval, 5);
    assert_string_equal(s.items[0].git_known_hosts, "/etc/kh");
    assert_string_equal(s.items[0].git_ssh_key_file, "/k");
    assert_string_equal(s.items[0].git_ca_file, "/ca.pem");
    assert_string_equal(s.items[0].git_proxy, "http://proxy:3128");
    reposet_dispose(&s);
}

static void bad_sections(void **state)
{
    repo_specs s;
    char why[256];
    (void)state;
    assert_int_equal(parse(&s, "repos:\n  t:\n    pattern: a\n", why, sizeof(why)), -1);
    assert_string_equal(why, "repos.t: no uri");
    assert_int_equal(parse(&s, "repos:\n  t:\n    uri: x\n", why, sizeof(why)), -1);
    assert_non_null(strstr(why, "no pattern"));
    assert_int_equal(parse(&s, "repos:\n  t:\n    uri: x\n    pattern: a\n    urls: y\n", why,
                           sizeof(why)),
                     -1);
    assert_non_null(strstr(why, "repos.t.urls: unknown field"));
    assert_int_equal(parse(&s, "repos:\n  'a b':\n    uri: x\n    pattern: a\n", why,
                           sizeof(why)),
                     -1);
    assert_non_null(strstr(why, "repository name"));
    assert_int_equal(parse(&s, "repos:\n  t:\n    uri: [x, y]\n    pattern: a\n", why,
                           sizeof(why)),
                     -1);
    assert_non_null(strstr(why, "not a list"));
    assert_int_equal(parse(&s, "repos:\n  t:\n    uri: x\n    pattern: a\n"
                               "    refresh-interval: soon\n",
                           why, sizeof(why)),
                     -1);
    assert_int_equal(parse(&s, "port: 1\n", why, sizeof(why)), 0);
    assert_int_equal(s.count, 0);
}

static void placeholders(void **state)
{
    (void)state;
    assert_true(reposet_is_template("https://h/{application}.git"));
    assert_false(reposet_is_template("https://h/a.git"));
    char *u = reposet_expand("https://h/{application}-{profile}/{label}/{application}", "orders",
                             "dev", "main");
    assert_string_equal(u, "https://h/orders-dev/main/orders");
    free(u);
    u = reposet_expand("file:///{profile}", "a", NULL, NULL);
    assert_string_equal(u, "file:///");
    free(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(simple_match_is_springs),
        cmocka_unit_test(first_match_in_file_order),
        cmocka_unit_test(profile_patterns),
        cmocka_unit_test(comma_separated_pattern_text),
        cmocka_unit_test(bad_sections),
        cmocka_unit_test(placeholders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
