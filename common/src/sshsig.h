/*
 * sshsig — SSH signatures as `git commit -S` makes them with gpg.format=ssh (OpenSSH's
 * PROTOCOL.sshsig, the armored "-----BEGIN SSH SIGNATURE-----" block in a commit's gpgsig
 * header), checked against an allowed signers file (ssh-keygen(1), ALLOWED SIGNERS; Git's
 * gpg.ssh.allowedSignersFile).
 *
 * Keys: ssh-ed25519, ecdsa-sha2-nistp256 and ssh-rsa (signatures rsa-sha2-256/512; SHA-1
 * "ssh-rsa" signatures are refused as ssh-keygen refuses them), verified with OpenSSL. An
 * allowed signers line is trusted for any commit whatever its author or committer says, as
 * `git verify-commit` does: the principals only name the signer in messages. Options honoured:
 * namespaces="..." (must admit the namespace asked for), valid-after / valid-before (compared
 * with the time given, Git's committer time). cert-authority lines and other key types are
 * skipped with a warning: certificates are not verified.
 *
 * Both inputs come from outside (the repository, the file): every length is checked before it
 * is read, and a failure says why in words fit for a health page.
 */
#ifndef ALMANAC_SSHSIG_H
#define ALMANAC_SSHSIG_H

#include <stddef.h>
#include <stdint.h>

#define SSHSIG_MAX_ARMORED (64 * 1024) /* an RSA-16384 signature is ~6 KiB armored */
#define ALLOWED_SIGNERS_MAX_BYTES (1024 * 1024)

typedef struct allowed_signers allowed_signers;

/*
 * Reads an allowed signers file. ERR_CONFIG with "FILE:LINE: why" for a line that cannot be
 * read (a malformed key, an unknown option, a bad time); lines skipped on purpose
 * (cert-authority, unsupported key types) are logged. A file with no usable key is an error:
 * it would refuse every commit.
 */
int allowed_signers_load(allowed_signers **out, const char *path);
/* The same from memory; name is used in messages. */
int allowed_signers_parse(allowed_signers **out, const char *text, size_t len, const char *name);
size_t allowed_signers_count(const allowed_signers *signers);
void allowed_signers_free(allowed_signers *signers);

/*
 * Checks the armored SSH signature over data: the SSHSIG blob is well formed, signed for
 * namespace, by a key of signers whose line admits namespace and the time when (seconds since
 * the Epoch), and the signature verifies. 0 and the line's principals in principal (truncated
 * to principal_size, may be NULL); otherwise ERR_FORBIDDEN with the reason, or ERR_NOMEM.
 */
int sshsig_verify(const allowed_signers *signers, const char *armored, size_t armored_len,
                  const void *data, size_t data_len, const char *namespace, int64_t when,
                  char *principal, size_t principal_size);

#endif
