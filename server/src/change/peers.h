/*
 * peers — replicas telling each other "fetch now" over HTTP, without a broker. With `--peers`
 * (a headless Service's DNS name, resolved afresh for every notice, or a comma-separated list of
 * NAME[:PORT]) a replica that receives a verified webhook, or fetches a new commit, POSTs a
 * small signed notice to every address; a replica that receives one fetches at once unless it
 * already has the commit the notice names. Notices are signed with HMAC-SHA256 under the shared
 * `--peer-secret`; they carry no secret and a replayed one only causes a fetch.
 */
#ifndef ALMANAC_PEERS_H
#define ALMANAC_PEERS_H

#include "change/announce.h"

#include <stdbool.h>
#include <stddef.h>

#define PEERS_SIGNATURE_HEADER "X-Almanac-Peer-Signature"

typedef struct peers peers;

typedef struct peers_options {
    const char *targets;   /* "name[:port],name2:port"; NULL or "": receive only */
    unsigned default_port; /* for a target without a port: this server's own port */
    bool https;            /* peers speak TLS (this server does) */
    const char *secret;    /* the shared secret, copied */
    const char *self_id;   /* this replica's id, copied: its own notices are ignored */
} peers_options;

/* Starts the sender thread (when there are targets). ERR_CONFIG for a malformed target list. */
int peers_new(peers **out, const peers_options *opts);
/* Stops the sender (a notice in flight is given up after its timeout), wipes the secret. */
void peers_free(peers *p);

/*
 * Tells every peer, from the sender thread; never blocks. commit: the default label's commit
 * the peers should have (they skip the fetch if they do), NULL: fetch unconditionally (a
 * webhook arrived). Notices that pile up while one is being sent go out as one.
 */
void peers_notify(peers *p, const char *commit);

/* Change listener (announce.h): a moved default label is worth telling. ctx is the peers. */
void peers_on_change(void *ctx, const change_notice *notice);

typedef struct peer_notice {
    char origin[80];
    char commit[41]; /* "" when the notice names none */
    bool from_self;
} peer_notice;

/*
 * Checks a received notice: signature (hex HMAC-SHA256 of the body under the shared secret,
 * `sha256=` prefix allowed) and shape. ERR_UNAUTHORIZED (bad or missing signature) or
 * ERR_BAD_REQUEST, with a message; never says why a signature is wrong beyond that.
 */
int peers_accept(const peers *p, const char *signature, const char *body, size_t len,
                 peer_notice *out);

/* The signature header value for body under secret, into out (72 bytes). For tests and bench. */
int peers_sign(const char *secret, const char *body, size_t len, char out[72]);

#endif
