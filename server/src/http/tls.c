/*
 * tls — certificate and key for HTTPS, swappable while serving (see tls.h).
 *
 * GnuTLS asks for the identity at each handshake through the callback below, which returns
 * the current one. A session keeps using the identity it was given, so identities replaced by
 * a reload are kept until shutdown instead of being freed under a live session: a reload costs
 * a few kilobytes, and operators reload certificates a handful of times in a process's life.
 * Private keys live in GnuTLS objects and are never logged.
 */
#include "http/tls.h"

#include "errors.h"
#include "log.h"

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define MODULE "tls"
#define MAX_CHAIN 16

typedef struct identity {
    gnutls_pcert_st certs[MAX_CHAIN];
    unsigned int ncerts;
    gnutls_privkey_t key;
    struct identity *previous; /* older identities, freed at shutdown */
} identity;

static _Atomic(identity *) current;
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;

static void identity_free(identity *id)
{
    if (id == NULL)
        return;
    for (unsigned int i = 0; i < id->ncerts; i++)
        gnutls_pcert_deinit(&id->certs[i]);
    if (id->key != NULL)
        gnutls_privkey_deinit(id->key);
    free(id);
}

/* Compares the leaf certificate's public key with the one derived from the private key. */
static bool key_matches_leaf(identity *id)
{
    gnutls_pubkey_t from_key = NULL;
    gnutls_datum_t a = {NULL, 0}, b = {NULL, 0};
    bool same = false;
    if (gnutls_pubkey_init(&from_key) == 0 &&
        gnutls_pubkey_import_privkey(from_key, id->key, 0, 0) == 0 &&
        gnutls_pubkey_export2(from_key, GNUTLS_X509_FMT_DER, &a) == 0 &&
        gnutls_pubkey_export2(id->certs[0].pubkey, GNUTLS_X509_FMT_DER, &b) == 0)
        same = a.size == b.size && memcmp(a.data, b.data, a.size) == 0;
    gnutls_free(a.data);
    gnutls_free(b.data);
    if (from_key != NULL)
        gnutls_pubkey_deinit(from_key);
    return same;
}

int tls_load(const char *cert_file, const char *key_file)
{
    int error = 0, rc;
    gnutls_datum_t cert_pem = {NULL, 0}, key_pem = {NULL, 0};
    identity *id = calloc(1, sizeof(*id));
    if (id == NULL)
        return err_set(ERR_NOMEM, "out of memory");

    if ((rc = gnutls_load_file(cert_file, &cert_pem)) < 0) {
        error = err_set(ERR_CONFIG, "--tls-cert %s: %s", cert_file, gnutls_strerror(rc));
        goto out;
    }
    if ((rc = gnutls_load_file(key_file, &key_pem)) < 0) {
        error = err_set(ERR_CONFIG, "--tls-key %s: %s", key_file, gnutls_strerror(rc));
        goto out;
    }
    id->ncerts = MAX_CHAIN;
    if ((rc = gnutls_pcert_list_import_x509_raw(id->certs, &id->ncerts, &cert_pem,
                                                GNUTLS_X509_FMT_PEM, 0)) < 0) {
        id->ncerts = 0;
        error = err_set(ERR_CONFIG, "--tls-cert %s: %s", cert_file, gnutls_strerror(rc));
        goto out;
    }
    if (id->ncerts == 0) {
        error = err_set(ERR_CONFIG, "--tls-cert %s: no certificate in it", cert_file);
        goto out;
    }
    if ((rc = gnutls_privkey_init(&id->key)) < 0 ||
        (rc = gnutls_privkey_import_x509_raw(id->key, &key_pem, GNUTLS_X509_FMT_PEM, NULL, 0)) <
            0) {
        error = err_set(ERR_CONFIG, "--tls-key %s: %s", key_file, gnutls_strerror(rc));
        goto out;
    }
    if (!key_matches_leaf(id)) {
        error = err_set(ERR_CONFIG, "--tls-key %s does not belong to the first certificate of %s",
                        key_file, cert_file);
        goto out;
    }
    pthread_mutex_lock(&load_lock);
    id->previous = atomic_load(&current);
    atomic_store(&current, id);
    pthread_mutex_unlock(&load_lock);
    id = NULL;
out:
    if (key_pem.data != NULL) {
        gnutls_memset(key_pem.data, 0, key_pem.size);
        gnutls_free(key_pem.data);
    }
    gnutls_free(cert_pem.data);
    identity_free(id);
    return error;
}

/* gnutls_certificate_retrieve_function2: the identity of the moment, not freed by GnuTLS. */
static int retrieve_identity(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn,
                             int nreqs, const gnutls_pk_algorithm_t *pk_algos,
                             int pk_algos_length, gnutls_pcert_st **pcert,
                             unsigned int *pcert_length, gnutls_privkey_t *pkey)
{
    (void)session;
    (void)req_ca_rdn;
    (void)nreqs;
    (void)pk_algos;
    (void)pk_algos_length;
    identity *id = atomic_load(&current);
    if (id == NULL)
        return -1;
    *pcert = id->certs;
    *pcert_length = id->ncerts;
    *pkey = id->key;
    return 0;
}

tls_callback_fn tls_certificate_callback(void)
{
    gnutls_certificate_retrieve_function2 *fn = retrieve_identity;
    return (tls_callback_fn)fn;
}

void tls_shutdown(void)
{
    pthread_mutex_lock(&load_lock);
    identity *id = atomic_exchange(&current, NULL);
    while (id != NULL) {
        identity *older = id->previous;
        identity_free(id);
        id = older;
    }
    pthread_mutex_unlock(&load_lock);
}
