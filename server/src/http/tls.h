/*
 * tls — the server's TLS identity: the certificate chain and private key libmicrohttpd's GnuTLS
 * presents, loaded from PEM files and replaced at run time (SIGHUP) without dropping a
 * connection. The only module that includes <gnutls/gnutls.h>.
 */
#ifndef ALMANAC_TLS_H
#define ALMANAC_TLS_H

/*
 * Loads cert_file (a PEM chain, leaf first) and key_file (its PEM private key), checks that the
 * key belongs to the leaf certificate, and makes them the identity of every new handshake.
 * All or nothing: on any error the previous identity stays and the message names the file.
 */
int tls_load(const char *cert_file, const char *key_file);

/* The GnuTLS certificate-retrieval callback for libmicrohttpd's MHD_OPTION_HTTPS_CERT_CALLBACK,
 * as a generic function pointer (the type is GnuTLS's). Valid after a successful tls_load. */
typedef void (*tls_callback_fn)(void);
tls_callback_fn tls_certificate_callback(void);

/* Frees every identity ever loaded; only once no TLS session can remain (daemon stopped). */
void tls_shutdown(void);

#endif
