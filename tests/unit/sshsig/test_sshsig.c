/*
 * test_sshsig — SSH signatures and allowed signers files (common/src/sshsig.c) against the real
 * thing: keys made and messages signed by ssh-keygen (`ssh-keygen -Y sign`, as `git commit -S`
 * runs it with gpg.format=ssh) in a temporary directory at each run. Skipped when ssh-keygen
 * (openssh-client) is not installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "sshsig.h"
#include "test_files.h"

#define WHEN 1700000000 /* 2023-11-14T22:13:20Z: the "commit time" of every check */

static char dir[512];
static bool have_keygen;
static const char message[] = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n"
                              "author A <a@example.com> 1700000000 +0000\n"
                              "committer A <a@example.com> 1700000000 +0000\n\nsigned\n";

static int run(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char *slurp(const char *name, size_t *len)
{
    char path[512];
    size_t ignored;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    char *text = test_read_file(path, len ? len : &ignored);
    assert_non_null(text);
    return text;
}

/* "TYPE BASE64" of KEY.pub */
static char *public_key(const char *key)
{
    char name[64];
    snprintf(name, sizeof(name), "%s.pub", key);
    char *text = slurp(name, NULL);
    char *space = strchr(text, ' ');
    assert_non_null(space);
    space = strchr(space + 1, ' ');
    if (space)
        *space = '\0';
    text[strcspn(text, "\n")] = '\0';
    return text;
}

static int setup(void **state)
{
    (void)state;
    have_keygen = run("command -v ssh-keygen >/dev/null 2>&1") == 0;
    if (!have_keygen)
        return 0;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/test_sshsig.XXXXXX", tmp && *tmp ? tmp : P_tmpdir);
    if (mkdtemp(dir) == NULL)
        return -1;
    char path[512];
    snprintf(path, sizeof(path), "%s/message", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL || fwrite(message, 1, strlen(message), f) != strlen(message) || fclose(f) != 0)
        return -1;
    static const char *const keys[][2] = {{"ed", "-t ed25519"},  {"ec", "-t ecdsa -b 256"},
                                          {"rsa", "-t rsa -b 2048"}, {"stranger", "-t ed25519"},
                                          {"ec384", "-t ecdsa -b 384"}};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (run("cd %s && ssh-keygen -q %s -N '' -C %s -f %s", dir, keys[i][1], keys[i][0],
                keys[i][0]) != 0)
            return -1;
    /* each signature as `git commit -S` makes it: namespace git, ssh-keygen's default hash */
    static const char *const sigs[][3] = {
        {"ed", "-n git", "ed.sig"},       {"ec", "-n git", "ec.sig"},
        {"rsa", "-n git", "rsa.sig"},     {"stranger", "-n git", "stranger.sig"},
        {"ed", "-n file", "ed-file.sig"}, {"ed", "-n git -O hashalg=sha256", "ed-sha256.sig"},
        {"ec384", "-n git", "ec384.sig"}};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (run("cd %s && ssh-keygen -q -Y sign %s -f %s message >/dev/null 2>&1 && "
                "mv message.sig %s",
                dir, sigs[i][1], sigs[i][0], sigs[i][2]) != 0)
            return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (have_keygen)
        run("rm -rf %s", dir);
    return 0;
}

static allowed_signers *signers_of(const char *fmt, ...)
{
    char text[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    allowed_signers *s = NULL;
    int rc = allowed_signers_parse(&s, text, strlen(text), "signers");
    if (rc < 0)
        fail_msg("allowed signers refused: %s", err_message());
    return s;
}

/* sshsig_verify of the named signature over message (or over data when given). */
static int verify(const allowed_signers *s, const char *sig_name, const char *data, int64_t when,
                  char *principal, size_t size)
{
    size_t len;
    char *sig = slurp(sig_name, &len);
    if (data == NULL)
        data = message;
    int rc = sshsig_verify(s, sig, len, data, strlen(data), "git", when, principal, size);
    free(sig);
    return rc;
}

#define SKIP_WITHOUT_KEYGEN()                                                                      \
    do {                                                                                           \
        if (!have_keygen)                                                                          \
            skip();                                                                                \
    } while (0)

static void each_key_type_verifies(void **state)
{
    (void)state;
    SKIP_WITHOUT_KEYGEN();
    char *ed = public_key("ed"), *ec = public_key("ec"), *rsa = public_key("rsa");
    allowed_signers *s = signers_of("ed@example.com %s\nec@example.com %s\n"
                                    "rsa@example.com,r@example.com %s\n", ed, ec, rsa);
    char principal[64];
    assert_int_equal(allowed_signers_count(s), 3);
    assert_int_equal(verify(s, "ed.sig", NULL, WHEN, principal, sizeof(principal)), 0);
    assert_string_equal(principal, "ed@example.com");
    assert_int_equal(verify(s, "ec.sig", NULL, WHEN, principal, sizeof(principal)), 0);
    assert_string_equal(principal, "ec@example.com");
    assert_int_equal(verify(s, "rsa.sig", NULL, WHEN, principal, sizeof(principal)), 0);
    assert_string_equal(principal, "rsa@example.com,r@example.com");
    assert_int_equal(verify(s, "ed-sha256.sig", NULL, WHEN, principal, sizeof(principal)), 0);
    allowed_signers_free(s);
    free(ed);
    free(ec);
    free(rsa);
}

static void changed_data_is_refused(void **state)
{
    (void)state;
    SKIP_WITHOUT_KEYGEN();
    char *ed = public_key("ed"), *ec = public_key("ec"), *rsa = public_key("rsa");
    allowed_signers *s = signers_of("a %s\nb %s\nc %s\n", ed, ec, rsa);
    char changed[sizeof(message)];
    memcpy(changed, message, sizeof(message));
    changed[sizeof(message) - 3] ^= 1; /* one bit of the commit message */
    static const char *const sigs[] = {"ed.sig", "ec.sig", "rsa.sig"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(verify(s, sigs[i], changed, WHEN, NULL, 0), ERR_FORBIDDEN);
        assert_non_null(strstr(err_message(), "bad signature"));
    }
    allowed_signers_free(s);
    free(ed);
    free(ec);
    free(rsa);
}

static void a_damaged_signature_is_refused_not_crashed_on(void **state)
{
    (void)state;
    SKIP_WITHOUT_KEYGEN();
    char *ed = public_key("ed");
    allowed_signers *s = signers_of("a %s\n", ed);
    size_t len;
    char *sig = slurp("ed.sig", &len);
    /* every truncation of the armored text */
    for (size_t cut = 0; cut < len; cut += 7)
        assert_int_equal(sshsig_verify(s, sig, cut, message, strlen(message), "git", WHEN, NULL, 0),
                         ERR_FORBIDDEN);
    /* a changed base64 character in the body (line 2) */
    char *body = strchr(sig, '\n') + 1;
    for (size_t i = 0; i < 60; i++) {
        char saved = body[i];
        body[i] = saved == 'A' ? 'B' : 'A';
        assert_int_equal(sshsig_verify(s, sig, len, message, strlen(message), "git", WHEN, NULL, 0),
                         ERR_FORBIDDEN);
        body[i] = saved;
    }
    assert_int_equal(sshsig_verify(s, sig, len, message, strlen(message), "git", WHEN, NULL, 0), 0);
    static const char pgp[] = "-----BEGIN PGP SIGNATURE-----\n\niQ==\n-----END PGP SIGNATURE-----\n";
    assert_int_equal(sshsig_verify(s, pgp, strlen(pgp), message, strlen(message), "git", WHEN,
                                   NULL, 0),
                     ERR_FORBIDDEN);
    assert_non_null(strstr(err_message(), "OpenPGP"));
    free(sig);
    allowed_signers_free(s);
    free(ed);
}

static void a_key_not_in_the_file_is_named_by_its_fingerprint(void **state)
{
    (void)state;
    SKIP_WITHOUT_KEYGEN();
    char *ed = public_key("ed");
    allowed_signers *s = signers_of("a %s\n", ed);
    assert_int_equal(verify(s, "stranger.sig", NULL, WHEN, NULL, 0), ERR_FORBIDDEN);
    char expected[256];
    assert_int_equal(run("cd %s && ssh-keygen -l -E sha256 -f stranger.pub | cut -d' ' -f2 > fp",
                         dir),
                     0);
    char *fp = slurp("fp", NULL);
    fp[strcspn(fp, "\n")] = '\0';
    snprintf(expected, sizeof(expected),
             "signed by a key not in the allowed signers file (ssh-ed25519 %s)", fp);
    assert_string_equal(err_message(), expected);
    free(fp);
    allowed_signers_free(s);
    free(ed);
}

static void namespace_of_signature_and_of_line(void **state)
{
    (void)state;
    SKIP_WITHOUT_KEYGEN();
    char *ed = public_key("ed");
    allowed_signers *s = signers_of("a %s\n", ed);
    assert_int_equal(verify(s, "ed-file.sig", NULL, WHEN, NULL, 0), ERR_FORBIDDEN);
    assert_string_equal(err_message(), "signed for namespace \"file\", not \"git\"");
    allowed_signers_free(s);

    /* the first line admits only "file"; the second, the same key for "git", decides */
    s = signers_of("files@example.com namespaces=\"file\" %s\n"
                   "git@example.com namespaces=\"g*,!gitx\" %s\n", ed, ed);
    char principal[64];
    assert_int_equal(verify(s, "ed.sig", NULL, WHEN, principal, sizeof(principal)), 0);
    assert_string_equal(principal, "git@example.com");
    allowed_signers_free(s);

    s = signers_of("a namespaces=\"file,!git\" %s\n", ed);
    assert_int_equal(verify(s, "ed.sig", NULL, WHEN, NULL, 0), ERR_FORBIDDEN);
    assert_non_null(strstr(err_message(), "allowed for namespaces \"file,!git\" only"));
    allowed_signers_free(s);
    free(ed);
}

static void validity_is_checked_at_the_time_given(void **state)
{
    (void)state;
    SKIP_WITHOUT_KEYGEN();
    char *ed = public_key("ed");
    allowed_signers *s =
        signers_of("a valid-after=\"20231114Z\",valid-before=\"202311150000Z\" %s\n", ed);
    assert_int_equal(verify(s, "ed.sig", NULL, WHEN, NULL, 0), 0);
    assert_int_equal(verify(s, "ed.sig", NULL, 1699920000 - 1, NULL, 0), ERR_FORBIDDEN);
    assert_string_equal(err_message(), "the key of a is valid only after 2023-11-14T00:00:00Z "
                                       "(commit time 2023-11-13T23:59:59Z)");
    assert_int_equal(verify(s, "ed.sig", NULL, 1700006400 + 1, NULL, 0), ERR_FORBIDDEN);
    assert_non_null(strstr(err_message(), "valid only before 2023-11-15T00:00:00Z"));
    allowed_signers_free(s);
    free(ed);
}

static void file_errors_name_their_line(void **state)
{
    (void)state;
    SKIP_WITHOUT_KEYGEN();
    char *ed = public_key("ed"), *ec = public_key("ec");
    char text[4096];
    allowed_signers *s = NULL;
    static const struct {
        const char *fmt, *message;
    } cases[] = {
        {"# ok\n\na ssh-ed25519 !!!\n", "signers:3: the ssh-ed25519 key is not base64"},
        {"a bogus=\"1\" %s\n", "signers:1: \"bogus=\"1\"\" is neither an option list nor a key type"},
        {"a namespaces=\"git %s\n", "signers:1: unterminated quote in options"},
        {"a valid-after=\"2023\" %s\n",
         "signers:1: valid-after \"2023\" is not YYYYMMDD[HHMM[SS]][Z]"},
        {"a\n", "signers:1: no key"},
        {"# nothing\n", "signers: no usable key (every commit would be refused)"},
        {NULL, NULL},
    };
    for (size_t i = 0; cases[i].message; i++) {
        snprintf(text, sizeof(text), cases[i].fmt, ed);
        assert_int_equal(allowed_signers_parse(&s, text, strlen(text), "signers"), ERR_CONFIG);
        assert_null(s);
        assert_string_equal(err_message(), cases[i].message);
    }
    /* a key whose blob says another type than its line */
    snprintf(text, sizeof(text), "a ssh-ed25519 %s\n", strchr(ec, ' ') + 1);
    assert_int_equal(allowed_signers_parse(&s, text, strlen(text), "signers"), ERR_CONFIG);
    assert_string_equal(err_message(), "signers:1: the key is not of type ssh-ed25519");
    /* NUL bytes */
    int n = snprintf(text, sizeof(text), "a %s\n", ed);
    text[n - 1] = '\0';
    assert_int_equal(allowed_signers_parse(&s, text, (size_t)n, "signers"), ERR_CONFIG);
    free(ed);
    free(ec);
}

static void skipped_lines_are_not_keys(void **state)
{
    (void)state;
    SKIP_WITHOUT_KEYGEN();
    char *ed = public_key("ed"), *ec384 = public_key("ec384");
    /* cert-authority and key types this verifier does not do are skipped, the rest loads */
    allowed_signers *s = signers_of("ca@example.com cert-authority %s\n"
                                    "old@example.com %s\n"
                                    "\"a b@example.com\" %s comment here\n", ed, ec384, ed);
    assert_int_equal(allowed_signers_count(s), 1);
    char principal[64];
    assert_int_equal(verify(s, "ed.sig", NULL, WHEN, principal, sizeof(principal)), 0);
    assert_string_equal(principal, "a b@example.com");
    assert_int_equal(verify(s, "ec384.sig", NULL, WHEN, NULL, 0), ERR_FORBIDDEN);
    assert_non_null(strstr(err_message(), "not in the allowed signers file (ecdsa-sha2-nistp384"));
    allowed_signers_free(s);
    free(ed);
    free(ec384);
}

static void load_reads_a_file(void **state)
{
    (void)state;
    SKIP_WITHOUT_KEYGEN();
    char path[512];
    allowed_signers *s = NULL;
    assert_int_equal(run("cd %s && { printf 'me@example.com '; cat ed.pub; } > allowed", dir), 0);
    snprintf(path, sizeof(path), "%s/allowed", dir);
    assert_int_equal(allowed_signers_load(&s, path), 0);
    assert_int_equal(verify(s, "ed.sig", NULL, WHEN, NULL, 0), 0);
    allowed_signers_free(s);
    snprintf(path, sizeof(path), "%s/absent", dir);
    assert_int_equal(allowed_signers_load(&s, path), ERR_CONFIG);
    assert_non_null(strstr(err_message(), "cannot read the allowed signers file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_key_type_verifies),
        cmocka_unit_test(changed_data_is_refused),
        cmocka_unit_test(a_damaged_signature_is_refused_not_crashed_on),
        cmocka_unit_test(a_key_not_in_the_file_is_named_by_its_fingerprint),
        cmocka_unit_test(namespace_of_signature_and_of_line),
        cmocka_unit_test(validity_is_checked_at_the_time_given),
        cmocka_unit_test(file_errors_name_their_line),
        cmocka_unit_test(skipped_lines_are_not_keys),
        cmocka_unit_test(load_reads_a_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
