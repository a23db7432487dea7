/*
 * known_hosts_fuzzer — a hostile known_hosts file: the input is the file's text, looked up for
 * two host names (a plain one on port 22, a bracketed one on another port) with a fixed Ed25519
 * key and with a key made of the input's last bytes.
 */
#include "source/known_hosts.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* "ssh-ed25519" and 32 bytes, as a server sends it */
static const unsigned char ed25519[] = {
    0, 0, 0, 11, 's', 's', 'h', '-', 'e', 'd', '2', '5', '5', '1', '9', 0, 0, 0, 32,
    0x36, 0xd6, 0xf7, 0x3e, 0x82, 0x4e, 0x55, 0xa0, 0x88, 0x6f, 0xe8, 0xff, 0x8f, 0x4e, 0xdf, 0x90,
    0x87, 0xc7, 0x27, 0xed, 0x32, 0xb9, 0xb5, 0xc1, 0x9d, 0xf4, 0xb2, 0x31, 0xb5, 0xd9, 0xc4, 0xac};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    known_hosts_result r;
    const char *text = (const char *)data;
    size_t tail = size < 64 ? size : 64;

    known_hosts_check(text, size, "git.example.com", 22, ed25519, sizeof(ed25519), &r);
    known_hosts_check(text, size, "Git.Example.com", 2222, ed25519, sizeof(ed25519), &r);
    known_hosts_check(text, size, "::1", 2200, data + size - tail, tail, &r);
    if (r.verdict > KNOWN_HOSTS_REVOKED || strlen(r.fingerprint) >= KNOWN_HOSTS_FINGERPRINT_MAX)
        abort();
    return 0;
}
