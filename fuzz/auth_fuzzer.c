/*
 * auth_fuzzer — the two things auth.c takes from outside: an --auth-file (first byte 'F', the
 * rest is the file) and an Authorization header checked against a fixed database (any other
 * first byte; the header runs up to the first newline, and what follows is a list of
 * application names asked for). Checks what must hold for any input: a rejected file leaves no
 * database and names its place, an accepted header yields a principal, and a principal never
 * reads an application its globs do not cover.
 *
 * The fixed database also trusts an issuer whose keys (one RSA, one P-256) are inline: the
 * corpus holds tokens those keys signed (jwt_*, valid until 2100) for the fuzzer to mutate, so
 * Bearer inputs reach the JWT decoder, the signature check, the claims and the subject rules.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guard/auth.h"
#include "errors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT 65536

/* One user (password "fuzz-pw", cheap SHA-256 crypt) and one token ("fuzz-token"). */
static const char fixed_file[] =
    "users:\n"
    "  u:\n"
    "    password: '$5$rounds=1000$fuzzsalt0123$pUgJGQ3uj3h3XRMeBzFvUkJjre0Hp5VNsYJ7ClNacyC'\n"
    "    applications: [orders, 'orders-*']\n"
    "tokens:\n"
    "  - sha256: 33cc09ba35314d19e32ed9a5a30fca56eebbfab5faec7247fd0403cd26e155b5\n"
    "    applications: ['[a-c]?x']\n"
    "issuers:\n"
    "  - name: fuzz\n"
    "    issuer: https://fuzz.issuer\n"
    "    audiences: [almanac]\n"
    "    subjects:\n"
    "      - match: 'system:serviceaccount:fuzz:*'\n"
    "        applications: ['[a-c]?x']\n"
    "    jwks: '"
    "{\"keys\":[{\"use\":\"sig\",\"kty\":\"RSA\",\"kid\":\"fuzz-rsa\",\"alg\":\"RS256\",\"n\":\"tjQvYGMNKv"
    "taVQxVsww2c1sNxuBXE6uzRZ0M9p2_nqZJ6wp8Gy31wgu-ZcejN7fY9tnqF0OMHXt8bgmW7DlgwvQYIb"
    "EY_2BzjZO-_djB8e3-GojYU4JEqpoMFdp-6EZjHUstvx4lRbRYT7ZQSPlTkVskCPCRPetboeuymK-rVq"
    "50XyFuQ3W4mSlMWj361ClLkJMF5OgIL7wBAxsDAP0TS-ABbecGM3T5sMu9NH_Uo1Qjr2T1W7h_9eE2zD"
    "UPKKJNyYQgUSRL6Btc5gE0mxAgSereyRee5LhVXNtq5Iibuk3Kz3hqNSxWQzFufVKsrgierp3k1qzujH"
    "QjQiPy9FjsLQ\",\"e\":\"AQAB\"},{\"use\":\"sig\",\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"fuzz-ec\","
    "\"alg\":\"ES256\",\"x\":\"GpxulCZycf71a3kQ3DxBAyB3GkO_aUejp0zUpUvOyp0\",\"y\":\"inEQ55B43lx"
    "DarNV7Vfb7iO-x7Z5CHZ2xV9LF5m5p7o\"}]}"
    "'\n";

static authdb *fixed(void)
{
    static authdb *db;
    if (db == NULL && authdb_parse(&db, fixed_file, sizeof(fixed_file) - 1, "fixed.yml") < 0)
        abort();
    return db;
}

static void fuzz_file(const char *text, size_t len)
{
    authdb *db = NULL;
    int error = authdb_parse(&db, text, len, "f.yml");
    if (error < 0) {
        if (db != NULL || strncmp(err_message(), "f.yml:", 6) != 0)
            abort();
        return;
    }
    if (db == NULL)
        abort();
    const auth_principal *who = NULL;
    if (auth_authenticate(db, "Bearer fuzz-token", &who) == 0 && who == NULL)
        abort();
    authdb_release(db);
}

static void fuzz_header(const char *text)
{
    char *header = strdup(text);
    if (header == NULL)
        return;
    char *names = strchr(header, '\n');
    if (names != NULL)
        *names++ = '\0';
    const auth_principal *who = NULL;
    int error = auth_authenticate(fixed(), header, &who);
    if ((error == 0) != (who != NULL) || (error < 0 && error != ERR_UNAUTHORIZED))
        abort();
    if (who != NULL && names != NULL && auth_allows_applications(who, names)) {
        /* Only the globs above can allow anything, and none matches a name with a ','-free
         * piece starting with 'z'. */
        if (names[0] == 'z')
            abort();
    }
    free(header);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > MAX_INPUT)
        return 0;
    char *text = malloc(size);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    if (data[0] == 'F')
        fuzz_file(text, size - 1);
    else
        fuzz_header(text);
    free(text);
    return 0;
}
