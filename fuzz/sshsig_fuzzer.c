/*
 * sshsig_fuzzer — the two things sshsig.c takes from outside: an allowed signers file (first
 * byte 'F', the rest is the file) and a commit's signature (any other first byte: the rest is
 * the armored signature; first byte 'R': the rest is a raw SSHSIG blob, armored here, so that
 * mutations reach the binary parser instead of breaking the base64), checked over the fixed
 * data "fuzz data\n" against a fixed allowed signers file. Checks what must hold for any input:
 * a refused file leaves nothing and names its line, an accepted one has a key; a signature
 * either verifies with a principal of the fixed file or is refused with a reason.
 *
 * The corpus holds signatures the fixed keys made with ssh-keygen over the fixed data (see
 * fuzz/corpora/sshsig/README), so the fuzzer starts from inputs that verify.
 */
#include <openssl/evp.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "sshsig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fixed_signers[] =
    "ed@fuzz ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN9NDiYnYOW1jLmPVSHDvixAXqMuUInyb3HYAGubSiJT\n"
    "ec@fuzz namespaces=\"git\" ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBDc7ustij5OHuT1+I+wOBPjpnBwVGFZLEdfiLB79vcm6cSLYEohm1olRpPFO9NVHVYAK9g1ATfsz/0IXpP7PoLk=\n"
    "rsa@fuzz valid-after=\"20200101\" ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC1JhaGApKD6vnU8aHw6HLGyENI5s2TbD79T0u1VGJUNE8HslQsJ7wODTSQyxLnj36DgjzFfSjyBXwOBYjxXVtfa/5i9OzAkBYYGVbQv9rKyjd/QVzXsniVGg6UWZgnjffFd5Z4iJXBoTswY56YqjdAOdUglE/H7s8+J+J28HB1iXXalLeP2CLAvWPf5OsAbFB0ahyp65pbQBEJW96sNyl733zPB5AoSjF+4MRF8zjEpi5HrfPJDcLZhZurpmoeYepcMz6UZCAlRegqJmvLiE4zwOhKygPiv04ANzEuwmnBAMxEeqQwn5wrRL26zX/eBQFyDmyerhvRQkEf5QhNg90z\n";
static const char signed_data[] = "fuzz data\n";

static void check_verify(const allowed_signers *signers, const char *armored, size_t len)
{
    char principal[64];
    int rc = sshsig_verify(signers, armored, len, signed_data, strlen(signed_data), "git",
                           1700000000, principal, sizeof(principal));
    if (rc == 0 && strstr(principal, "@fuzz") == NULL)
        abort(); /* verified, but by no line of the file */
    if (rc < 0 && (rc != ERR_FORBIDDEN && rc != ERR_NOMEM && rc != ERR_INTERNAL))
        abort();
    if (rc < 0 && err_message()[0] == '\0')
        abort(); /* a refusal always says why */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static allowed_signers *fixed;
    if (fixed == NULL &&
        allowed_signers_parse(&fixed, fixed_signers, strlen(fixed_signers), "fixed") < 0)
        abort();
    if (size == 0 || size > SSHSIG_MAX_ARMORED)
        return 0;

    if (data[0] == 'F') {
        allowed_signers *parsed = NULL;
        int rc = allowed_signers_parse(&parsed, (const char *)data + 1, size - 1, "fuzz");
        if (rc == 0 && (parsed == NULL || allowed_signers_count(parsed) == 0))
            abort();
        if (rc < 0 && (parsed != NULL || strncmp(err_message(), "fuzz", 4) != 0))
            abort();
        allowed_signers_free(parsed);
        return 0;
    }
    if (data[0] == 'R') {
        size_t raw = size - 1;
        char *armored = malloc(raw / 3 * 4 + 128);
        if (armored == NULL)
            return 0;
        int n = sprintf(armored, "-----BEGIN SSH SIGNATURE-----\n");
        n += EVP_EncodeBlock((unsigned char *)armored + n, data + 1, (int)raw);
        n += sprintf(armored + n, "\n-----END SSH SIGNATURE-----\n");
        check_verify(fixed, armored, (size_t)n);
        free(armored);
        return 0;
    }
    check_verify(fixed, (const char *)data + 1, size - 1);
    return 0;
}
