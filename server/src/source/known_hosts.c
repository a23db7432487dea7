/*
 * known_hosts — OpenSSH known_hosts lookups for the SSH host key check (see known_hosts.h).
 *
 * Owns: reading the file's lines, host pattern and hashed-name matching, key comparison and
 * fingerprints. Does not own: reading the file from disk or deciding what a verdict means to a
 * fetch (repo.c does both). The text is outside input: every field is bounded by the line it is
 * on and every decoded key is checked before it is compared.
 */
#include "source/known_hosts.h"

#include "cipher_format.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FIELD_MAX (16u * 1024u) /* a 16384-bit RSA key in base64 is under 3 KiB */
#define NAME_MAX_LEN 300        /* "[" host "]:" port */

typedef struct span {
    const char *p;
    size_t n;
} span;

/* The next whitespace-separated field of line, advancing *pos. */
static bool next_field(span line, size_t *pos, span *out)
{
    size_t i = *pos;
    while (i < line.n && (line.p[i] == ' ' || line.p[i] == '\t'))
        i++;
    size_t start = i;
    while (i < line.n && line.p[i] != ' ' && line.p[i] != '\t')
        i++;
    *pos = i;
    out->p = line.p + start;
    out->n = i - start;
    return out->n > 0;
}

/*
 * Glob match of '*' and '?' over name, case-insensitive, as OpenSSH's match_pattern. Backtracks
 * to the last star only, which is enough for these two wildcards and keeps the work linear in
 * pattern times name (a pattern is outside input).
 */
static bool glob_match(const char *pat, size_t plen, const char *name, size_t nlen)
{
    size_t p = 0, n = 0, star = SIZE_MAX, star_n = 0;
    while (n < nlen) {
        if (p < plen && (pat[p] == '?' || (pat[p] != '*' && tolower((unsigned char)pat[p]) ==
                                                               tolower((unsigned char)name[n])))) {
            p++;
            n++;
        } else if (p < plen && pat[p] == '*') {
            star = p++;
            star_n = n;
        } else if (star != SIZE_MAX) {
            p = star + 1;
            n = ++star_n;
        } else {
            return false;
        }
    }
    while (p < plen && pat[p] == '*')
        p++;
    return p == plen;
}

/* "|1|salt|hash": HMAC-SHA1 keyed with the salt over the name. */
static bool hashed_match(span field, const char *name)
{
    const char *salt = field.p + 3, *end = field.p + field.n;
    const char *bar = memchr(salt, '|', (size_t)(end - salt));
    unsigned char *salt_bytes = NULL, *hash_bytes = NULL;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    size_t salt_len = 0, hash_len = 0;
    bool match = false;

    if (!bar || cipher_base64_decode(salt, (size_t)(bar - salt), &salt_bytes, &salt_len) != 0 ||
        cipher_base64_decode(bar + 1, (size_t)(end - bar - 1), &hash_bytes, &hash_len) != 0)
        goto out;
    if (salt_len != 20 || hash_len != 20) /* SHA-1 sized, as OpenSSH writes and requires */
        goto out;
    if (!HMAC(EVP_sha1(), salt_bytes, (int)salt_len, (const unsigned char *)name, strlen(name),
              mac, &mac_len) ||
        mac_len != hash_len)
        goto out;
    match = CRYPTO_memcmp(mac, hash_bytes, hash_len) == 0;
out:
    free(salt_bytes);
    free(hash_bytes);
    return match;
}

/* Whether the hosts field names name: one hashed entry, or patterns of which one matches and no
 * negated one does. */
static bool hosts_match(span field, const char *name)
{
    bool matched = false;
    size_t i = 0;

    if (field.n > 3 && memcmp(field.p, "|1|", 3) == 0)
        return hashed_match(field, name);
    while (i < field.n) {
        size_t start = i;
        while (i < field.n && field.p[i] != ',')
            i++;
        const char *pat = field.p + start;
        size_t plen = i - start;
        bool negated = plen > 0 && pat[0] == '!';
        if (negated) {
            pat++;
            plen--;
        }
        if (plen > 0 && glob_match(pat, plen, name, strlen(name))) {
            if (negated)
                return false;
            matched = true;
        }
        i++; /* past the comma */
    }
    return matched;
}

/* The type named at the head of an SSH wire-encoded key ("ssh-ed25519"), or false. */
static bool wire_key_type(const unsigned char *key, size_t len, char out[KNOWN_HOSTS_TYPE_MAX])
{
    uint32_t n;
    out[0] = '\0';
    if (len < 4)
        return false;
    n = (uint32_t)key[0] << 24 | (uint32_t)key[1] << 16 | (uint32_t)key[2] << 8 | key[3];
    if (n == 0 || n >= KNOWN_HOSTS_TYPE_MAX || n > len - 4)
        return false;
    for (uint32_t i = 0; i < n; i++)
        if (!isgraph(key[4 + i]))
            return false;
    memcpy(out, key + 4, n);
    out[n] = '\0';
    return true;
}

void known_hosts_fingerprint(const unsigned char *key, size_t key_len,
                             char out[KNOWN_HOSTS_FINGERPRINT_MAX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    char b64[48]; /* 32 bytes are 44 characters of base64 */
    int n;

    out[0] = '\0';
    if (!EVP_Digest(key, key_len, md, &md_len, EVP_sha256(), NULL) || md_len != 32)
        return;
    n = EVP_EncodeBlock((unsigned char *)b64, md, (int)md_len);
    while (n > 0 && b64[n - 1] == '=')
        n--;
    if (n < 0)
        return;
    b64[n] = '\0';
    memcpy(out, "SHA256:", 7);
    memcpy(out + 7, b64, (size_t)n + 1);
}

typedef enum { LINE_PLAIN, LINE_REVOKED, LINE_SKIP } line_kind;

/* One line against the name and key; updates out. */
static void check_line(span line, unsigned number, const char *name, const unsigned char *key,
                       size_t key_len, known_hosts_result *out, bool *changed, bool *matched)
{
    span hosts, type, blob;
    size_t pos = 0;
    line_kind kind = LINE_PLAIN;
    unsigned char *bytes = NULL;
    size_t bytes_len = 0;
    char blob_type[KNOWN_HOSTS_TYPE_MAX];

    if (!next_field(line, &pos, &hosts) || hosts.p[0] == '#')
        return;
    if (hosts.p[0] == '@') {
        if (hosts.n == 8 && memcmp(hosts.p, "@revoked", 8) == 0)
            kind = LINE_REVOKED;
        else
            kind = LINE_SKIP; /* @cert-authority and markers we do not know */
        if (!next_field(line, &pos, &hosts))
            return;
    }
    if (kind == LINE_SKIP || !next_field(line, &pos, &type) || !next_field(line, &pos, &blob) ||
        type.n >= KNOWN_HOSTS_TYPE_MAX || blob.n > FIELD_MAX || hosts.n > FIELD_MAX)
        return;
    if (!hosts_match(hosts, name))
        return;
    if (cipher_base64_decode(blob.p, blob.n, &bytes, &bytes_len) != 0)
        return;
    /* the key must name the type the line gives, or the line is not what it says */
    if (!wire_key_type(bytes, bytes_len, blob_type) || strlen(blob_type) != type.n ||
        memcmp(blob_type, type.p, type.n) != 0)
        goto out;
    bool same_key = bytes_len == key_len && memcmp(bytes, key, key_len) == 0;
    if (kind == LINE_REVOKED) {
        if (same_key) {
            out->verdict = KNOWN_HOSTS_REVOKED;
            out->line = number;
        }
        goto out;
    }
    if (strcmp(blob_type, out->key_type) != 0) {
        out->other_types++;
    } else if (same_key) {
        if (!*matched && out->verdict != KNOWN_HOSTS_REVOKED) {
            *matched = true;
            out->line = number;
        }
    } else if (!*changed) {
        *changed = true;
        if (!*matched && out->verdict != KNOWN_HOSTS_REVOKED)
            out->line = number;
    }
out:
    free(bytes);
}

void known_hosts_check(const char *text, size_t len, const char *host, unsigned port,
                       const unsigned char *key, size_t key_len, known_hosts_result *out)
{
    char name[NAME_MAX_LEN];
    bool changed = false, matched = false;
    unsigned number = 0;
    size_t i = 0;

    memset(out, 0, sizeof(*out));
    out->verdict = KNOWN_HOSTS_UNKNOWN;
    known_hosts_fingerprint(key, key_len, out->fingerprint);
    if (!wire_key_type(key, key_len, out->key_type) || !host || !*host ||
        strlen(host) > NAME_MAX_LEN - 10 || port > 65535)
        return;
    if (port == 0 || port == 22)
        snprintf(name, sizeof(name), "%s", host);
    else
        snprintf(name, sizeof(name), "[%.*s]:%u", NAME_MAX_LEN - 10, host, port & 0xffffu);
    for (char *c = name; *c; c++) /* OpenSSH compares host names in lower case */
        *c = (char)tolower((unsigned char)*c);

    while (i < len) {
        size_t start = i;
        while (i < len && text[i] != '\n')
            i++;
        span line = {text + start, i - start};
        while (line.n > 0 && (line.p[line.n - 1] == '\r'))
            line.n--;
        number++;
        i++;
        if (memchr(line.p, '\0', line.n) != NULL)
            continue; /* not text */
        check_line(line, number, name, key, key_len, out, &changed, &matched);
    }
    if (out->verdict == KNOWN_HOSTS_REVOKED)
        return;
    if (matched)
        out->verdict = KNOWN_HOSTS_MATCH;
    else if (changed)
        out->verdict = KNOWN_HOSTS_CHANGED;
}
