/*
 * cipher_fuzzer — every byte string through the ciphertext decoders: the keyring's value
 * parsing ({cipher}, {key:...} prefixes, format detection) and the Almanac, Spring symmetric
 * and Spring RSA decryptions behind it, and the form-body handling of /encrypt and /decrypt.
 * Nothing may crash, leak or read out of bounds.
 *
 * The keys are fuzzing-only constants (a 1024-bit RSA key keeps each input fast), so the corpus
 * can hold ciphertexts that really decrypt and mutations start from deep inside the formats.
 */
#include "guard/cipher.h"
#include "api/routes_cipher.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_SECRET "fuzzing-only symmetric key"

static const char fuzz_rsa_pem[] =
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIICXwIBAAKBgQDLY3LIyWRu67PU9CfsXrXCy7NVs9AWj3I0PnTwl5qdLaYJEzGg\n"
    "n+7H9dM4yjG+brjy7dFc2GwmUjYWOcYNY5f7da2FTRqEvvoBHrF3AygaCfc+NfBD\n"
    "Ok6Nn7jbMb5gwV1QfMVz3sGQ9lzGH1qFdvwl26gIFHRX2Ei0rtqGx5w+EwIDAQAB\n"
    "AoGBALom8HUDlu/KvVJokW3PFY8Pv7juFcPAUOeuTnuyVmoL0M63iZGZMARGY6ez\n"
    "sCm6z35Q2nGfCAVe83AOOs4gXIXA7xsr4kIXXypmhARXSsou6PPkZ5wz5byp0v3V\n"
    "8FPFH7sDSWdeFF+0gQNnISyw3oogcsXU9ki4HIx5HN1wNR+RAkEA9J1RPo4gnxV4\n"
    "oTllVJOmOh7MVS7BOYe3AElTTj4PMKapT/tN/cWg1CaPnZHlnkjncqGYHHl1GBSz\n"
    "6H5l7tHNWQJBANTa59mEqX8H9jbcCCi0YNrzLf3ZDRUYqOGu4EbUwoEQuMEXn8r9\n"
    "FS3oLfHrbxgnalbs7m1NrfxAQgPZmOSyHUsCQQC87/Yc1zKjLbZq8SYvWYv/QGKb\n"
    "OO3OPeE/u2M4//5DmbcVLAplhQxgURiEoHg29iCvDdmrxLSI0RTU8yxQdoShAkEA\n"
    "l4npuoCqM1g1wETSQjh5JCgxPCKFH9nYkiPwZD0g5MZE4qOxDdE0fORpoWweQbH+\n"
    "ETjJXmQJVCdjWF5YbakpFQJBALicNaXa/2rQrFDzZvjdJkEjIwYnE4RAlB5EP7EB\n"
    "gxxmaffDKIgqEpp+yJ1enNNRb4jpQPVDMvgPm0fhSEvT+o8=\n"
    "-----END RSA PRIVATE KEY-----\n";

static keyring *ring;

static keyring *fuzz_keyring(void)
{
    static int done;
    if (done)
        return ring;
    done = 1;
    char path[] = "/tmp/almanac-cipher-fuzz-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        abort();
    size_t len = sizeof(fuzz_rsa_pem) - 1;
    if (write(fd, fuzz_rsa_pem, len) != (ssize_t)len)
        abort();
    close(fd);
    keyring_options opts = {.key_secret = FUZZ_SECRET, .rsa_key_file = path};
    int error = keyring_load(&ring, &opts);
    unlink(path);
    if (error < 0 || ring == NULL)
        abort();
    return ring;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    keyring *k = fuzz_keyring();
    char *text = malloc(size + 1), *plain = NULL, *out = NULL;
    size_t plain_len = 0, out_len = 0;
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    if (keyring_decrypt_value(k, text, &plain, &plain_len) == 0 && plain[plain_len] != '\0')
        abort();
    keyring_free_secret(plain, plain_len);
    plain = NULL;
    if (keyring_decrypt_text(k, text, size, &plain, &plain_len) == 0 && plain[plain_len] != '\0')
        abort();
    keyring_free_secret(plain, plain_len);
    if (keyring_decrypt_text(NULL, text, size, &plain, &plain_len) == 0)
        abort();

    for (int cipher = 0; cipher < 2; cipher++) {
        if (routes_cipher_strip_form(text, size, "application/x-www-form-urlencoded", cipher,
                                     &out, &out_len) == 0 && out_len > size)
            abort();
        keyring_free_secret(out, out_len);
        out = NULL;
    }
    free(text);
    return 0;
}
