/*
 * The pieces of the encryption endpoints that need no live connection: Spring's handling of
 * form-encoded bodies (EncryptionController.stripFormData), and the /encrypt/status and /key
 * answers with their exact bodies. The POST handlers themselves read headers from a live
 * connection and are exercised over HTTP by the integration tests.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cipher_tests.h"

#include "guard/cipher.h"
#include "errors.h"
#include "http/request.h"
#include "api/routes_cipher.h"
#include "server.h"

#include <stdlib.h>
#include <string.h>

#define FORM "application/x-www-form-urlencoded"

static void test_strip_form(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        const char *type;
        int cipher;
        int rc;
        const char *expect;
    } cases[] = {
        /* curl -d secret */
        {"secret=", FORM, 0, 0, "secret"},
        {"secret", FORM, 0, 0, "secret"},
        {"secret=", "text/plain", 0, 0, "secret="},
        {"secret=", "TEXT/PLAIN", 0, 0, "secret="},
        {"secret=", NULL, 0, 0, "secret="},
        /* Spring compares the whole media type: a charset parameter makes it "not text/plain". */
        {"secret=", "text/plain; charset=UTF-8", 0, 0, "secret"},
        {"secret=", "application/json", 0, 0, "secret"},
        {"a+b%21=", FORM, 0, 0, "a b!"},
        {"a%2Bb=", FORM, 0, 0, "a+b"},
        {"pw==", FORM, 0, 0, "pw="},
        {"a%zz=", FORM, 0, ERR_BAD_REQUEST, NULL},
        {"a%2=", FORM, 0, ERR_BAD_REQUEST, NULL},
        {"", FORM, 0, 0, ""},
        /* Ciphertexts: the '=' goes only when what remains is hex or base64 on its own. */
        {"abcd=", FORM, 1, 0, "abcd"},
        {"QUJD=", FORM, 1, 0, "QUJD"},
        {"QUI==", FORM, 1, 0, "QUI="},
        {"QUI=", FORM, 1, 0, "QUI="},
        {"ab+c=", FORM, 1, 0, "ab+c"},
        {"ab%2Bc=", FORM, 1, 0, "ab+c"},
        {"a@@@=", FORM, 1, 0, "a@@@="},
        {"abcd=", "text/plain", 1, 0, "abcd="},
        {"alm1:AQ=", FORM, 1, 0, "alm1:AQ="},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = NULL;
        size_t len = 0;
        int rc = routes_cipher_strip_form(cases[i].body, strlen(cases[i].body), cases[i].type,
                                          cases[i].cipher, &out, &len);
        if (rc != cases[i].rc)
            fail_msg("case %zu '%s': rc %d, expected %d", i, cases[i].body, rc, cases[i].rc);
        if (rc != 0) {
            assert_null(out);
            continue;
        }
        if (strcmp(out, cases[i].expect) != 0)
            fail_msg("case %zu '%s': '%s', expected '%s'", i, cases[i].body, out,
                     cases[i].expect);
        assert_int_equal(len, strlen(cases[i].expect));
        keyring_free_secret(out, len);
    }
}

static void response_dispose(response *res)
{
    free(res->body);
    free(res->content_type);
    for (size_t i = 0; i < res->nheaders; i++) {
        free(res->headers[i].name);
        free(res->headers[i].value);
    }
    memset(res, 0, sizeof(*res));
}

static void call(int (*handler)(request *, response *), keyring *k, const char *path,
                 response *res)
{
    static char segs[3][32];
    server srv;
    memset(&srv, 0, sizeof(srv));
    srv.keyring = k;
    request req;
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = path;
    req.server = &srv;
    const char *p = path + 1;
    while (*p && req.nsegments < 3) {
        size_t n = strcspn(p, "/");
        snprintf(segs[req.nsegments], sizeof(segs[0]), "%.*s", (int)n, p);
        req.segments[req.nsegments] = segs[req.nsegments];
        req.nsegments++;
        p += n + (p[n] == '/');
    }
    memset(res, 0, sizeof(*res));
    assert_int_equal(handler(&req, res), 0);
}

#define NO_KEY "{\"description\":\"No key was installed for encryption service\",\"status\":\"NO_KEY\"}"

static void test_status(void **state)
{
    (void)state;
    response res;
    call(route_encrypt_status, NULL, "/encrypt/status", &res);
    assert_int_equal(res.status, 404);
    assert_string_equal(res.body, NO_KEY);
    response_dispose(&res);
    call(route_encrypt_status, test_keyring("default"), "/encrypt/status", &res);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "{\"status\":\"OK\"}");
    assert_string_equal(res.content_type, "application/json");
    response_dispose(&res);
    /* Named keys only: nothing to encrypt with by default. */
    call(route_encrypt_status, test_keyring("rotation"), "/encrypt/status", &res);
    assert_int_equal(res.status, 404);
    response_dispose(&res);
}

static void test_key(void **state)
{
    (void)state;
    response res;
    call(route_key, NULL, "/key", &res);
    assert_int_equal(res.status, 404);
    assert_string_equal(res.body, NO_KEY);
    response_dispose(&res);

    call(route_key, test_keyring("rsa"), "/key", &res);
    assert_int_equal(res.status, 200);
    assert_memory_equal(res.body, "ssh-rsa AAAAB3NzaC1yc2E", 23);
    assert_memory_equal(res.content_type, "text/plain", 10);
    response_dispose(&res);
    call(route_key, test_keyring("rsa"), "/key/app/dev", &res);
    assert_int_equal(res.status, 200);
    response_dispose(&res);

    keyring_options opts = {.key_file = KEYS_DIR "/symmetric.key"};
    keyring *sym = NULL;
    assert_int_equal(keyring_load(&sym, &opts), 0);
    call(route_key, sym, "/key", &res);
    assert_int_equal(res.status, 404);
    assert_string_equal(res.body,
                        "{\"description\":\"No public key available\",\"status\":\"NOT_FOUND\"}");
    response_dispose(&res);
    keyring_free(sym);

    call(route_key, test_keyring("rsa"), "/key/../dev", &res);
    assert_int_equal(res.status, 400);
    response_dispose(&res);
}

int run_route_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strip_form),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_key),
    };
    return cmocka_run_group_tests_name("cipher_routes", tests, NULL, NULL);
}
