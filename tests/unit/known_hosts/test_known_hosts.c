/*
 * unit_known_hosts — host key lookups against known_hosts text written by OpenSSH: the keys,
 * hashed lines and fingerprints below come from ssh-keygen (-t, -H, -lf), so a match here is a
 * match with what OpenSSH wrote and printed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cipher_format.h"
#include "source/known_hosts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ED25519 "AAAAC3NzaC1lZDI1NTE5AAAAIDbW9z6CTlWgiG/o/49O35CHxyftMrm1wZ30sjG12cSs"
#define ED25519_FP "SHA256:3mjrC+xgUVrEpfh8jGm1scUFSvr5+PZHPvZ/36fXFqA"
#define ED25519_OTHER "AAAAC3NzaC1lZDI1NTE5AAAAIDQ7lLQv4FRcz4h1EDf7jan9grqjappKwxhiP2i/4TKJ"
#define ED25519_OTHER_FP "SHA256:x0DV+e7Ebysordk+tBDZyiQUQ7NddgKoaoglNNTAeho"
#define ECDSA                                                                                   \
    "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKFM0/HMDlwkSqdBm63+9X5J692FwqpFpqGN0RW" \
    "u6cjjTH5qWgILuh+pJE0mEwrtPaNcIt0e/lb41AJ5emmRR3A="
#define ECDSA_FP "SHA256:B8IhkAnE3ADoz9LM3aT1gptbkSVKKJe7zsEGvwxsbrA"
#define RSA                                                                                     \
    "AAAAB3NzaC1yc2EAAAADAQABAAAAgQDj84U0Ar7gvoMK7JEKKPrVXJD+/yrRBOIOQzXu4GSmkxW8GUjzvl4smNuAx1v" \
    "F2ba3+tdL/dRUyjMAbfg9dWVwXO6bsCjgPrWkCxa3mFoZBi0unj4woVgRoOXcNyxGcdTu28XooJcLDSnIPAkpPsO69tk" \
    "XRyNjWjlfTu57spLncw=="
#define RSA_FP "SHA256:5Cq8IsXXtXqCrCSGTeh+ZYWD0R+Zyv2qyB3EWE4cxpA"

/* `ssh-keygen -H` of "[git.example.com]:2222 <ed25519>" and "git.example.com <ed25519>" */
#define HASHED_2222 "|1|Ccurr11GRLUsq+tQzbf2Y8RSRkE=|rtFL+blL4oDcoLKfzw1SovBxnBA="
#define HASHED_22 "|1|bD+GLO5B2XQRPaVQo/TyCx1e8LI=|ilREaRHt53dGBbiejcvgx9H3YfE="
/* and of "[git.example.com]:2222 <ecdsa>", "[git.example.com]:2222 <rsa>" */
#define HASHED_2222_ECDSA "|1|PqQxgKqawagMCZtFYPAFdDViC1U=|0NjS7QfdLIL/ej0/H6XlafAVsGs="
#define HASHED_2222_RSA "|1|2Yxvp9FdkGBTlKfn2Mrpg5vf31Y=|FKwT3Ky1RW3T0TQNjVba9JYOpoE="

typedef struct key {
    unsigned char *bytes;
    size_t len;
} key;

static key decode(const char *b64)
{
    key k = {0};
    assert_int_equal(cipher_base64_decode(b64, strlen(b64), &k.bytes, &k.len), 0);
    return k;
}

static known_hosts_result check(const char *text, const char *host, unsigned port,
                                const char *b64)
{
    known_hosts_result r;
    key k = decode(b64);
    known_hosts_check(text, strlen(text), host, port, k.bytes, k.len, &r);
    free(k.bytes);
    return r;
}

static void test_fingerprints(void **state)
{
    (void)state;
    const char *keys[] = {ED25519, ECDSA, RSA, ED25519_OTHER};
    const char *fps[] = {ED25519_FP, ECDSA_FP, RSA_FP, ED25519_OTHER_FP};
    for (size_t i = 0; i < 4; i++) {
        char fp[KNOWN_HOSTS_FINGERPRINT_MAX];
        key k = decode(keys[i]);
        known_hosts_fingerprint(k.bytes, k.len, fp);
        assert_string_equal(fp, fps[i]);
        free(k.bytes);
    }
}

static void test_plain_match_by_type(void **state)
{
    (void)state;
    const char *text = "# a comment\n"
                       "\n"
                       "other.example.com ssh-ed25519 " ED25519_OTHER "\n"
                       "git.example.com,10.0.0.7 ssh-ed25519 " ED25519 " laptop\n"
                       "git.example.com ecdsa-sha2-nistp256 " ECDSA "\n"
                       "git.example.com ssh-rsa " RSA "\n";
    known_hosts_result r = check(text, "git.example.com", 22, ED25519);
    assert_int_equal(r.verdict, KNOWN_HOSTS_MATCH);
    assert_int_equal(r.line, 4);
    assert_string_equal(r.key_type, "ssh-ed25519");
    assert_string_equal(r.fingerprint, ED25519_FP);
    assert_int_equal(check(text, "GIT.Example.COM", 0, ECDSA).verdict, KNOWN_HOSTS_MATCH);
    assert_int_equal(check(text, "git.example.com", 22, RSA).verdict, KNOWN_HOSTS_MATCH);
    assert_int_equal(check(text, "10.0.0.7", 22, ED25519).verdict, KNOWN_HOSTS_MATCH);
    /* the same key for a host the file does not name */
    r = check(text, "evil.example.com", 22, ED25519);
    assert_int_equal(r.verdict, KNOWN_HOSTS_UNKNOWN);
    assert_int_equal(r.line, 0);
    assert_string_equal(r.fingerprint, ED25519_FP);
}

static void test_changed_and_other_types(void **state)
{
    (void)state;
    const char *text = "git.example.com ssh-ed25519 " ED25519_OTHER "\n"
                       "git.example.com ssh-rsa " RSA "\r\n";
    known_hosts_result r = check(text, "git.example.com", 22, ED25519);
    assert_int_equal(r.verdict, KNOWN_HOSTS_CHANGED);
    assert_int_equal(r.line, 1);
    assert_string_equal(r.fingerprint, ED25519_FP);
    /* only keys of other types: not known, and the result says why */
    r = check("git.example.com ssh-rsa " RSA "\n", "git.example.com", 22, ECDSA);
    assert_int_equal(r.verdict, KNOWN_HOSTS_UNKNOWN);
    assert_int_equal(r.other_types, 1);
    /* one line with the right key wins over another with a different one, as in OpenSSH */
    const char *both = "git.example.com ssh-ed25519 " ED25519_OTHER "\n"
                       "git.example.com ssh-ed25519 " ED25519 "\n";
    r = check(both, "git.example.com", 22, ED25519);
    assert_int_equal(r.verdict, KNOWN_HOSTS_MATCH);
    assert_int_equal(r.line, 2);
}

static void test_ports(void **state)
{
    (void)state;
    const char *text = "[git.example.com]:2222 ssh-ed25519 " ED25519 "\n"
                       "[::1]:2200 ssh-ed25519 " ED25519 "\n";
    assert_int_equal(check(text, "git.example.com", 2222, ED25519).verdict, KNOWN_HOSTS_MATCH);
    /* a bracketed entry is for its port only; a plain one for port 22 only */
    assert_int_equal(check(text, "git.example.com", 22, ED25519).verdict, KNOWN_HOSTS_UNKNOWN);
    assert_int_equal(check(text, "git.example.com", 2223, ED25519).verdict, KNOWN_HOSTS_UNKNOWN);
    assert_int_equal(check("git.example.com ssh-ed25519 " ED25519 "\n", "git.example.com", 2222,
                           ED25519)
                         .verdict,
                     KNOWN_HOSTS_UNKNOWN);
    assert_int_equal(check(text, "::1", 2200, ED25519).verdict, KNOWN_HOSTS_MATCH);
}

static void test_hashed(void **state)
{
    (void)state;
    const char *text = HASHED_2222 " ssh-ed25519 " ED25519 "\n" HASHED_22 " ssh-ed25519 " ED25519
                                   "\n" HASHED_2222_ECDSA " ecdsa-sha2-nistp256 " ECDSA
                                   "\n" HASHED_2222_RSA " ssh-rsa " RSA "\n";
    known_hosts_result r = check(text, "git.example.com", 2222, ED25519);
    assert_int_equal(r.verdict, KNOWN_HOSTS_MATCH);
    assert_int_equal(r.line, 1);
    r = check(text, "git.example.com", 22, ED25519);
    assert_int_equal(r.verdict, KNOWN_HOSTS_MATCH);
    assert_int_equal(r.line, 2);
    assert_int_equal(check(text, "git.example.com", 2222, ECDSA).verdict, KNOWN_HOSTS_MATCH);
    assert_int_equal(check(text, "git.example.com", 2222, RSA).verdict, KNOWN_HOSTS_MATCH);
    assert_int_equal(check(text, "git.example.org", 2222, ED25519).verdict, KNOWN_HOSTS_UNKNOWN);
    /* a hashed entry for the host with another key of the type: changed */
    r = check(text, "git.example.com", 2222, ED25519_OTHER);
    assert_int_equal(r.verdict, KNOWN_HOSTS_CHANGED);
    assert_int_equal(r.line, 1);
    /* a hash that is one character off names nobody */
    char broken[] = HASHED_22 " ssh-ed25519 " ED25519 "\n";
    broken[strlen("|1|bD+GLO5B2XQRPaVQo/TyCx1e8LI=|i")] = 'j';
    assert_int_equal(check(broken, "git.example.com", 22, ED25519).verdict, KNOWN_HOSTS_UNKNOWN);
}

static void test_patterns(void **state)
{
    (void)state;
    const char *text = "*.example.com,!bad.example.com ssh-ed25519 " ED25519 "\n"
                       "git?.corp ssh-ed25519 " ED25519 "\n";
    assert_int_equal(check(text, "git.example.com", 22, ED25519).verdict, KNOWN_HOSTS_MATCH);
    assert_int_equal(check(text, "bad.example.com", 22, ED25519).verdict, KNOWN_HOSTS_UNKNOWN);
    assert_int_equal(check(text, "example.com", 22, ED25519).verdict, KNOWN_HOSTS_UNKNOWN);
    assert_int_equal(check(text, "git1.corp", 22, ED25519).verdict, KNOWN_HOSTS_MATCH);
    assert_int_equal(check(text, "git12.corp", 22, ED25519).verdict, KNOWN_HOSTS_UNKNOWN);
}

static void test_markers(void **state)
{
    (void)state;
    const char *text = "@cert-authority *.example.com ssh-ed25519 " ED25519 "\n"
                       "@revoked * ssh-ed25519 " ED25519_OTHER "\n"
                       "git.example.com ssh-ed25519 " ED25519_OTHER "\n"
                       "@unheard-of git.example.com ssh-ed25519 " ED25519 "\n";
    /* a CA line does not make its own key a host key */
    assert_int_equal(check(text, "git.example.com", 22, ED25519).verdict, KNOWN_HOSTS_CHANGED);
    known_hosts_result r = check(text, "git.example.com", 22, ED25519_OTHER);
    assert_int_equal(r.verdict, KNOWN_HOSTS_REVOKED);
    assert_int_equal(r.line, 2);
}

static void test_malformed_lines_are_skipped(void **state)
{
    (void)state;
    char text[4096];
    snprintf(text, sizeof(text),
             "git.example.com\n"                                  /* no key */
             "git.example.com ssh-ed25519\n"                      /* no blob */
             "git.example.com ssh-ed25519 !!!notbase64\n"         /* bad base64 */
             "git.example.com ssh-rsa " ED25519 "\n"              /* type and key differ */
             "|1|short|hash ssh-ed25519 " ED25519 "\n"             /* bad hash */
             "|1|| ssh-ed25519 " ED25519 "\n"
             "git.example.com 1024 35 12345678901234567890\n"     /* SSH-1 */
             "   \t  # indented comment\n"
             "\tgit.example.com  ssh-ed25519\t" ED25519 "\n");    /* odd spacing, still good */
    known_hosts_result r = check(text, "git.example.com", 22, ED25519);
    assert_int_equal(r.verdict, KNOWN_HOSTS_MATCH);
    assert_int_equal(r.line, 9);
    /* a line with a NUL in it is not text */
    static const char nul[] = "git.example.com ssh-ed25519 \0" ED25519 "\n";
    key k = decode(ED25519);
    known_hosts_check(nul, sizeof(nul) - 1, "git.example.com", 22, k.bytes, k.len, &r);
    assert_int_equal(r.verdict, KNOWN_HOSTS_UNKNOWN);
    /* an unreadable key from the server: unknown, never a match */
    known_hosts_check(text, strlen(text), "git.example.com", 22, (const unsigned char *)"xx", 2,
                      &r);
    assert_int_equal(r.verdict, KNOWN_HOSTS_UNKNOWN);
    assert_string_equal(r.key_type, "");
    free(k.bytes);
}

static void test_empty_file(void **state)
{
    (void)state;
    known_hosts_result r = check("", "git.example.com", 22, ED25519);
    assert_int_equal(r.verdict, KNOWN_HOSTS_UNKNOWN);
    assert_string_equal(r.fingerprint, ED25519_FP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fingerprints),
        cmocka_unit_test(test_plain_match_by_type),
        cmocka_unit_test(test_changed_and_other_types),
        cmocka_unit_test(test_ports),
        cmocka_unit_test(test_hashed),
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_markers),
        cmocka_unit_test(test_malformed_lines_are_skipped),
        cmocka_unit_test(test_empty_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
