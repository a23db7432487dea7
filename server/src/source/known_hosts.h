/*
 * known_hosts — decides whether an SSH server's host key is the one an OpenSSH known_hosts file
 * lists for it, so the Git channel's trust does not depend on what the libgit2 in use checks.
 *
 * Read: "hosts keytype base64-key [comment]" lines; hosts is a comma-separated list of names,
 * "[name]:port" forms, "*" / "?" wildcards and "!" negations, or one hashed entry
 * "|1|base64(salt)|base64(HMAC-SHA1(salt, name))" as `ssh-keygen -H` and HashKnownHosts write.
 * A port other than 22 is looked up as "[host]:port" only, as OpenSSH does. Keys of any type
 * (ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa, ...) are compared as their whole wire
 * encoding, which names the type, so an RSA key matches whichever rsa-sha2 signature the server
 * uses. "@revoked" lines refuse their key for the hosts they name. Not supported: "@cert-authority"
 * lines (host certificates; skipped), the old SSH-1 "bits exponent modulus" form (skipped), and
 * other files named by UserKnownHostsFile or GlobalKnownHostsFile. A malformed line is skipped,
 * never fatal: the file is someone else's and may hold entries for other tools.
 */
#ifndef ALMANAC_KNOWN_HOSTS_H
#define ALMANAC_KNOWN_HOSTS_H

#include <stddef.h>

/* "SHA256:" and 43 characters of unpadded base64, as `ssh-keygen -l` prints it */
#define KNOWN_HOSTS_FINGERPRINT_MAX 64
#define KNOWN_HOSTS_TYPE_MAX 64

typedef enum known_hosts_verdict {
    KNOWN_HOSTS_MATCH = 0,   /* a line for this host lists exactly this key */
    KNOWN_HOSTS_UNKNOWN,     /* no line for this host lists a key of this type */
    KNOWN_HOSTS_CHANGED,     /* lines for this host list other keys of this type */
    KNOWN_HOSTS_REVOKED,     /* an @revoked line names this key */
} known_hosts_verdict;

typedef struct known_hosts_result {
    known_hosts_verdict verdict;
    unsigned line;           /* the matching, changed or revoked line; 0 when none */
    unsigned other_types;    /* lines for this host with keys of other types */
    char key_type[KNOWN_HOSTS_TYPE_MAX];             /* of the key checked, "" if unreadable */
    char fingerprint[KNOWN_HOSTS_FINGERPRINT_MAX];   /* of the key checked */
} known_hosts_result;

/*
 * Checks key (the host key in SSH wire encoding, as a server sends it) for host (a name or an
 * address, without brackets) and port against the file's text (len bytes, need not end in NUL).
 */
void known_hosts_check(const char *text, size_t len, const char *host, unsigned port,
                       const unsigned char *key, size_t key_len, known_hosts_result *out);

/* The OpenSSH fingerprint of key ("SHA256:..."); "" if it cannot be computed. */
void known_hosts_fingerprint(const unsigned char *key, size_t key_len,
                             char out[KNOWN_HOSTS_FINGERPRINT_MAX]);

#endif
